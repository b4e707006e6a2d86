//! Finding and reading the manifest and the key files it names: the only
//! file-system access of the crate. Key paths are relative to the manifest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    parse_with_inputs(path, text).1
}

/// The files a manifest was read from, each with the bytes read (`None`:
/// unreadable): the manifest first, then each key file it names.
type Inputs = Vec<(PathBuf, Option<Vec<u8>>)>;

/// [`parse`], and every file it read.
fn parse_with_inputs(path: &Path, text: &str) -> (Inputs, Result<Manifest, ManifestError>) {
    let mut inputs = vec![(path.to_path_buf(), Some(text.as_bytes().to_vec()))];
    let result = parse_into(path, text, &mut inputs);
    (inputs, result)
}

fn parse_into(path: &Path, text: &str, inputs: &mut Inputs) -> Result<Manifest, ManifestError> {
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
    let base = path.parent().unwrap_or(Path::new("."));
    let mut diagnostics = Diagnostics::new(path, text);
    let catalog = validate::manifest(raw, &mut diagnostics, &mut |relative| {
        let key_path = base.join(relative);
        let bytes = std::fs::read(&key_path);
        inputs.push((key_path.clone(), bytes.as_ref().ok().cloned()));
        read_key(&key_path, relative, bytes)
    });
    match catalog {
        Some(catalog) if diagnostics.is_empty() => Ok(Manifest {
            path: path.to_path_buf(),
            files: inputs.iter().map(|(file, _)| file.clone()).collect(),
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

/// What [`load_cached`] keeps of one load: the files it read and what they
/// gave.
struct Cached {
    inputs: Inputs,
    result: Result<Arc<Manifest>, Vec<String>>,
}

/// Results of [`load_cached`] in this process, by manifest path.
static CACHE: Mutex<Vec<(PathBuf, Cached)>> = Mutex::new(Vec::new());

/// [`load`], parsed and validated once per process for as long as the
/// files do not change.
///
/// A proc macro is expanded once per annotated function, in one compiler
/// process per crate (and, under an IDE, in one long-lived process for many
/// crates and edits); each expansion needs the same manifest. The result is
/// kept by manifest path together with the bytes of every file it was read
/// from (the manifest and each key file, or that a file was unreadable),
/// and reused only while each file still reads the same: an edit, a new or
/// a removed key file, or a different manifest path (`MARKETGATE_MANIFEST`)
/// loads afresh. Reading the files again is cheap; parsing the TOML,
/// validating it and parsing the keys is what is saved.
///
/// # Errors
/// As [`load`], the same messages for as long as the files are unchanged.
pub fn load_cached() -> Result<Arc<Manifest>, ManifestError> {
    let path = locate().map_err(|m| ManifestError { messages: vec![m] })?;
    read_cached(&path)
}

/// [`read`], kept as [`load_cached`] keeps it.
///
/// # Errors
/// As [`read`].
pub fn read_cached(path: &Path) -> Result<Arc<Manifest>, ManifestError> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let hit = cache.iter().find(|(p, cached)| {
        *p == path
            && cached
                .inputs
                .iter()
                .all(|(file, bytes)| std::fs::read(file).ok() == *bytes)
    });
    if let Some((_, cached)) = hit {
        return cached
            .result
            .clone()
            .map_err(|messages| ManifestError { messages });
    }
    let text = std::fs::read(&path);
    let (inputs, result) = match text.as_deref().map(std::str::from_utf8) {
        Ok(Ok(text)) => {
            let (inputs, result) = parse_with_inputs(&path, text);
            (inputs, result.map(Arc::new).map_err(|e| e.messages))
        }
        // Unreadable or not UTF-8: `read` words the error; not kept.
        _ => return read(&path).map(Arc::new),
    };
    let cached = Cached { inputs, result };
    let result = cached
        .result
        .clone()
        .map_err(|messages| ManifestError { messages });
    cache.retain(|(p, _)| *p != path);
    cache.push((path, cached));
    result
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
fn read_key(
    path: &Path,
    relative: &str,
    bytes: std::io::Result<Vec<u8>>,
) -> Result<PublicKey, String> {
    let bytes = bytes.map_err(|e| {
        format!(
            "cannot read `{}` ({e}); paths are relative to {FILE_NAME}",
            path.display()
        )
    })?;
    keys::parse_rsa_spki_pem(&bytes)
        .map_err(|why| format!("public key `{relative}` is unusable: {why}"))
}
