//! Finding and reading the manifest and the key files it names: the only
//! file-system access of the crate. Key paths are relative to the manifest.

use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostics, Position};
use crate::keys::{self, PublicKey};
use crate::model::{FILE_NAME, Manifest};
use crate::raw::RawManifest;
use crate::{fingerprint, validate};

/// The env var naming the manifest explicitly (e.g. set in a workspace's
/// `.cargo/config.toml` `[env]` so that every crate shares one manifest).
pub const MANIFEST_ENV: &str = "MARKETGATE_MANIFEST";

/// Why the manifest could not be used. Each entry is one complete message.
pub struct ManifestError {
    /// One message per problem found.
    pub messages: Vec<String>,
}

/// Locates (from `CARGO_MANIFEST_DIR` and [`MANIFEST_ENV`]), reads, parses
/// and validates the manifest of the crate being compiled.
///
/// # Errors
/// When there is no manifest or it breaks a rule; each message says how to
/// fix it.
pub fn load() -> Result<Manifest, ManifestError> {
    let path = locate().map_err(|m| ManifestError { messages: vec![m] })?;
    read(&path)
}

/// Reads, parses and validates the manifest at `path`; key files are
/// resolved relative to its directory.
///
/// # Errors
/// When the file cannot be read or breaks a rule.
pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path).map_err(|e| ManifestError {
        messages: vec![format!("cannot read {}: {e}", path.display())],
    })?;
    parse(&path, &text)
}

/// Parses and validates manifest `text` read from `path`.
///
/// # Errors
/// When `text` breaks a rule; one message per problem.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| format!(":{}", Position::of(text, span.start)))
            .unwrap_or_default();
        ManifestError {
            messages: vec![format!(
                "{}{at}: {FILE_NAME} is not valid: {}",
                path.display(),
                e.message()
            )],
        }
    })?;
    let mut files = vec![path.to_path_buf()];
    let base = path.parent().unwrap_or(Path::new("."));
    let mut diagnostics = Diagnostics::new(path, text);
    let catalog = validate::manifest(raw, &mut diagnostics, &mut |relative| {
        let key_path = base.join(relative);
        files.push(key_path.clone());
        read_key(&key_path, relative)
    });
    match catalog {
        Some(catalog) if diagnostics.is_empty() => Ok(Manifest {
            path: path.to_path_buf(),
            files,
            fingerprint: fingerprint::of(&catalog),
            products: catalog.products,
            features: catalog.features,
            dimensions: catalog.dimensions,
        }),
        _ => Err(ManifestError {
            messages: diagnostics.into_messages(),
        }),
    }
}

/// Finds the manifest for the crate being compiled.
fn locate() -> Result<PathBuf, String> {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let explicit = std::env::var_os(MANIFEST_ENV).filter(|v| !v.is_empty());
    let path = match (explicit, &crate_dir) {
        (Some(path), Some(dir)) => dir.join(path),
        (Some(path), None) => PathBuf::from(path),
        (None, Some(dir)) => dir.join(FILE_NAME),
        (None, None) => {
            return Err(format!(
                "cannot find {FILE_NAME}: CARGO_MANIFEST_DIR is not set (build with cargo) and \
                 {MANIFEST_ENV} is not set"
            ));
        }
    };
    if path.is_file() {
        return Ok(path);
    }
    let how = if std::env::var_os(MANIFEST_ENV).is_some() {
        format!(
            "{MANIFEST_ENV} points to it; fix the path (relative paths start at the crate's directory)"
        )
    } else {
        format!(
            "create {FILE_NAME} next to Cargo.toml, or point {MANIFEST_ENV} at a shared one \
             (in .cargo/config.toml: [env] {MANIFEST_ENV} = {{ value = \"{FILE_NAME}\", relative = true }})"
        )
    };
    Err(format!(
        "no marketplace manifest at {}: {how}",
        path.display()
    ))
}

/// Reads and parses the key file at `path`, which the manifest names
/// `relative`.
fn read_key(path: &Path, relative: &str) -> Result<PublicKey, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read `{}` ({e}); paths are relative to {FILE_NAME}",
            path.display()
        )
    })?;
    keys::parse_rsa_spki_pem(&bytes)
        .map_err(|why| format!("public key `{relative}` is unusable: {why}"))
}
