//! `#[marketgate::main]` in real binaries: it must refuse to run the body
//! when entitlement cannot be verified, and say why on stderr.

use std::process::Command;

fn run(binary: &str) -> std::process::Output {
    // Nothing here may reach beyond loopback: no Region, no instance metadata.
    Command::new(binary)
        .env_remove("MARKETGATE_PRODUCT_CODE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run test binary")
}

fn assert_refused(binary: &str) {
    let out = run(binary);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !stdout.contains("body ran"),
        "main's body ran although start-up failed: {stdout}"
    );
    assert!(
        stderr.contains("marketgate: refusing to start:"),
        "stderr does not explain the refusal: {stderr}"
    );
}

#[test]
fn async_main_under_tokio_refuses_before_the_body() {
    assert_refused(env!("CARGO_BIN_EXE_tokio_main"));
}

#[test]
fn tokio_outside_marketgate_refuses_before_the_body() {
    assert_refused(env!("CARGO_BIN_EXE_tokio_outer_main"));
}

#[test]
fn sync_main_returning_result_refuses_before_the_body() {
    assert_refused(env!("CARGO_BIN_EXE_plain_main"));
}

#[test]
fn a_library_compiled_against_another_manifest_is_refused_at_start_up() {
    let out = run(env!("CARGO_BIN_EXE_mismatched_main"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("body ran"));
    assert!(
        stderr.contains("compiled against a Marketplace.toml that does not match"),
        "{stderr}"
    );
    // The renamed crate's manifest puts `export` at index 0; ours has `basic` there.
    assert!(
        stderr.contains("was compiled with feature `export` as index 0")
            && stderr.contains("the catalog has `basic` there"),
        "{stderr}"
    );
}
