//! Editing `Marketplace.toml`, a key file, or `MARKETGATE_MANIFEST` rebuilds
//! the crates that embed it: a stale catalog would gate by yesterday's rules.
//!
//! Builds a small seller crate outside the workspace, in its own target
//! directory, changes one input at a time and checks what the binary prints.

use std::path::{Path, PathBuf};
use std::process::Command;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn manifest(features: &str, key: &str) -> String {
    format!(
        "[[product]]\nname = \"pro\"\ncode = \"pro1234567890abcdef\"\ntier = \"paid\"\n\
         pricing = \"hourly\"\npublic-key = \"{key}\"\npublic-key-version = 3\n\
         features = [{features}]\n"
    )
}

fn run(dir: &Path, target: &Path, manifest_env: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .args(["run", "--quiet", "--offline", "--target-dir"])
        .arg(target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS");
    match manifest_env {
        Some(path) => cmd.env("MARKETGATE_MANIFEST", path),
        None => cmd.env_remove("MARKETGATE_MANIFEST"),
    };
    let out = cmd.output().expect("cargo run");
    assert!(
        out.status.success(),
        "fixture failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn manifest_key_and_env_changes_rebuild_the_catalog() {
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = tests_dir.parent().expect("workspace");
    let scratch = workspace.join("target").join("tests").join("rebuild");
    let dir = scratch.join("seller");
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = workspace.join("runtime");
    write(
        &dir.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"seller\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nmarketgate = {{ path = {:?} }}\n\n[workspace]\n",
            runtime.display().to_string()
        ),
    );
    // Reuse the workspace's lock file so the build resolves offline to the
    // same versions.
    std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    write(
        &dir.join("src/main.rs"),
        "fn main() {\n    let c = marketgate::catalog!();\n    let p = &c.products()[0];\n    \
         let key = p.registration().expect(\"key\");\n    \
         let sum: u32 = key.spki_der().iter().map(|b| u32::from(*b)).sum();\n    \
         println!(\"{:?} v{} key{}\", c.features(), key.version(), sum);\n}\n",
    );
    let keys = tests_dir.join("keys").join("pro.pem");
    let second = tests_dir.join("fixtures").join("second.pem");
    std::fs::copy(&keys, dir.join("key.pem")).expect("key");
    write(
        &dir.join("Marketplace.toml"),
        &manifest("\"alpha\"", "key.pem"),
    );
    let target = scratch.join("target");

    let first = run(&dir, &target, None);
    assert!(first.starts_with("[\"alpha\"] v3 key"), "{first}");

    write(
        &dir.join("Marketplace.toml"),
        &manifest("\"beta\", \"gamma\"", "key.pem"),
    );
    let edited = run(&dir, &target, None);
    assert!(
        edited.starts_with("[\"beta\", \"gamma\"] v3 key"),
        "{edited}"
    );

    std::fs::copy(&second, dir.join("key.pem")).expect("key");
    let rekeyed = run(&dir, &target, None);
    assert!(
        rekeyed.starts_with("[\"beta\", \"gamma\"] v3 key"),
        "{rekeyed}"
    );
    assert_ne!(
        edited, rekeyed,
        "a changed key file must change the catalog"
    );

    write(
        &dir.join("other/Marketplace.toml"),
        &manifest("\"delta\"", "../key.pem"),
    );
    let elsewhere = run(&dir, &target, Some("other/Marketplace.toml"));
    assert!(elsewhere.starts_with("[\"delta\"] v3 key"), "{elsewhere}");
    let back = run(&dir, &target, None);
    assert_eq!(back, rekeyed);
}
