//! Seller crates built outside the workspace, in their own target directory
//! (`target/tests/standalone`), with exactly the features they ask for: the
//! workspace build unifies features, so it cannot produce a binary without
//! `dev` or `testing`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where standalone crates and their shared target directory live.
pub(crate) fn scratch() -> PathBuf {
    workspace().join("target").join("tests").join("standalone")
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Creates (afresh) a binary crate `name` depending on marketgate with
/// `features`, with `main.rs` and a `Marketplace.toml`.
pub(crate) fn seller_crate(
    name: &str,
    features: &[&str],
    main_rs: &str,
    manifest: &str,
) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = workspace().join("runtime");
    let features = features
        .iter()
        .map(|f| format!("{f:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    write(
        &dir.join("Cargo.toml"),
        &format!(
            "[package]\nname = {name:?}\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nmarketgate = {{ path = {:?}, features = [{features}] }}\n\
             tracing-subscriber = \"0.3\"\n\n[workspace]\n",
            runtime.display().to_string()
        ),
    );
    // The workspace's lock file: resolves offline, to the same versions.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    write(&dir.join("src/main.rs"), main_rs);
    write(&dir.join("Marketplace.toml"), manifest);
    dir
}

/// Runs `cargo <command> --offline --target-dir <shared>` in `dir`, with
/// extra environment variables for the compiler.
pub(crate) fn cargo(dir: &Path, command: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO"))
        .current_dir(dir)
        .args(command)
        .args(["--quiet", "--offline", "--target-dir"])
        .arg(scratch().join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("MARKETGATE_MANIFEST")
        .envs(envs.iter().copied())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {command:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The path of a binary built by [`cargo`].
pub(crate) fn binary(name: &str) -> PathBuf {
    scratch().join("target").join("debug").join(name)
}
