//! Lint regression: annotated code compiles with no diagnostics under
//! `#![deny(warnings, clippy::all, clippy::pedantic)]` (`tests/shapes.rs`
//! for function shapes, `tests/body_shapes.rs` for body shapes: one-line,
//! single-expression, block, `match` and `if` bodies under each attribute,
//! sync and async), and a deliberate lint in an annotated body is still
//! reported (`tests/lint_control.rs`). Every other file of the package must
//! be clean.
//!
//! Runs `cargo clippy` on this package in its own target directory (the
//! outer `cargo test` holds the lock on the usual one).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn annotated_code_is_pedantic_clean_and_user_lints_still_fire() {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("workspace root");
    let target = workspace.join("target").join("tests").join("lint");
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args([
            "clippy",
            "--quiet",
            "--package",
            "marketgate-tests",
            "--tests",
            // lint_control.rs fails to compile on purpose; without this,
            // cargo stops there and targets not yet checked go unlinted.
            "--keep-going",
            "--message-format=json",
            "--target-dir",
        ])
        .arg(&target)
        .env("RUSTFLAGS", "--cfg marketgate_lint_control")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo clippy");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut in_control = Vec::new();
    let mut elsewhere = Vec::new();
    for line in stdout.lines() {
        if !line.contains("\"reason\":\"compiler-message\"") {
            continue;
        }
        let Some(rendered) = field(line, "\"rendered\":\"") else {
            continue;
        };
        if rendered.starts_with("error: aborting") || rendered.contains("could not compile") {
            continue;
        }
        // Classify by the primary location, not by anything the text mentions.
        if rendered.contains("--> tests/tests/lint_control.rs") {
            in_control.push(rendered);
        } else {
            elsewhere.push(rendered);
        }
    }
    assert!(
        elsewhere.is_empty(),
        "annotated code produced diagnostics:\n{}",
        elsewhere.join("\n")
    );
    assert!(
        in_control.iter().any(|m| m.contains("manual_string_new")),
        "clippy did not report the deliberate lint inside an annotated body; \
         stderr:\n{}\nmessages: {in_control:#?}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The JSON string value after `key` (enough JSON for cargo's messages).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}
