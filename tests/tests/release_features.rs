//! The workspace's release binaries are what `examples/Dockerfile` says they
//! are: built with `--no-default-features`, no binary links marketgate with
//! `dev` or `testing`, and an optimised build that does is a compile error.

mod support;

use std::process::{Command, Output};

use support::standalone::workspace;

const EXAMPLES: &[&str] = &[
    "marketgate-example-hourly",
    "marketgate-example-custom",
    "marketgate-example-contract",
    "marketgate-example-tiers",
    "marketgate-example-http",
];

fn cargo(args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(args)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo")
}

/// The features of `marketgate` that `cargo tree` resolves for `selection`,
/// counting normal and build dependencies only (what `cargo build` links).
fn marketgate_features(selection: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "--offline", "--locked", "--quiet"];
    args.extend_from_slice(selection);
    args.extend_from_slice(&[
        "-e",
        "normal,build",
        "-e",
        "features",
        "-i",
        "marketgate",
        "--prefix",
        "none",
    ]);
    let out = cargo(&args);
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut features: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("marketgate feature \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect();
    features.sort();
    features.dedup();
    features
}

#[test]
fn a_release_build_of_the_workspace_links_no_dev_or_testing() {
    let features = marketgate_features(&["--workspace", "--no-default-features"]);
    assert!(
        features.contains(&"default".to_owned()),
        "cargo tree's output was not understood: {features:?}"
    );
    for banned in ["dev", "testing", "allow-dev-in-optimized-builds"] {
        assert!(
            !features.contains(&banned.to_owned()),
            "`cargo build --release --workspace --no-default-features` links marketgate with \
             `{banned}`: {features:?}"
        );
    }
}

#[test]
fn each_example_built_as_the_dockerfile_builds_it_links_no_dev_or_testing() {
    for example in EXAMPLES {
        let mut features = marketgate_features(&["-p", example, "--no-default-features"]);
        // `metrics` only publishes what the runtime knows (the HTTP example
        // serves it at /metrics): it trusts and grants nothing.
        features.retain(|f| f != "metrics");
        assert_eq!(features, ["default"], "{example}");
        // Control: the same query sees `dev` where the default features
        // (for `cargo run` against the simulator) switch it on.
        let features = marketgate_features(&["-p", example]);
        assert!(
            features.contains(&"dev".to_owned()),
            "{example} with default features: {features:?}"
        );
    }
}

#[test]
fn an_optimised_build_with_dev_does_not_compile() {
    // A seller's image built with `cargo build --release` but without
    // `--no-default-features`: the example's default `dev` feature reaches
    // marketgate in an optimised build. The target directory is the tamper
    // suite's, whose release builds of the examples compiled the same
    // dependencies, so only marketgate itself is compiled here.
    let target = workspace().join("target").join("tests").join("tamper");
    let out = cargo(&[
        "build",
        "--offline",
        "--locked",
        "--release",
        "-p",
        "marketgate-example-custom",
        "--target-dir",
        target.to_str().expect("UTF-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it compiled:\n{stderr}");
    assert!(
        stderr.contains("`dev` or `testing` feature is enabled in an optimised build")
            && stderr.contains("--no-default-features"),
        "{stderr}"
    );
}
