//! A release build cannot be pointed at a fake AWS: `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_MARKETPLACE_METERING`, `AWS_ENDPOINT_URL_LICENSE_MANAGER`,
//! `endpoint_url` in an AWS config file and `MARKETGATE_ENDPOINT` are all
//! ignored by a binary built without the `dev` feature, which then fails
//! closed.
//!
//! The binaries run in a network namespace of their own (`unshare -rn`)
//! together with the simulator, so the release binary's attempt to reach
//! AWS's real endpoint fails at once and nothing leaves loopback. A `dev`
//! build in the same namespace proves the simulator was reachable.

mod standalone;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use marketgate_simulator::{Config, Simulator};
use standalone::{binary, cargo, seller_crate};

const MAIN: &str = r#"fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    match marketgate::start_blocking(marketgate::catalog!()) {
        Ok(guard) => {
            println!("VERIFIED");
            guard.shutdown_blocking();
        }
        Err(e) => {
            eprintln!("REFUSED: {e}");
            std::process::exit(1);
        }
    }
}
"#;

const MANIFEST: &str = "[[product]]\nname = \"pro\"\ncode = \"mgsim-pro-hourly\"\ntier = \"paid\"\n\
    pricing = \"hourly\"\npublic-key = \"pro.pem\"\npublic-key-version = 1\nfeatures = [\"export\"]\n";

const INNER: &str = "MARKETGATE_TAMPER_INNER";

fn build(name: &str, features: &[&str]) -> PathBuf {
    let dir = seller_crate(name, features, MAIN, MANIFEST);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/pro.pem"),
        dir.join("pro.pem"),
    )
    .expect("key");
    cargo(&dir, &["build"], &[]);
    binary(name)
}

#[test]
fn a_release_build_ignores_endpoint_overrides_and_fails_closed() {
    let release = build("tamper-release-seller", &[]);
    let dev = build("tamper-dev-seller", &["dev"]);
    let test_binary = std::env::current_exe().expect("this test binary");
    let out = Command::new("unshare")
        .args(["--net", "--map-root-user", "sh", "-c"])
        .arg("ip link set lo up && exec \"$@\"")
        .arg("sh")
        .arg(test_binary)
        .args([
            "--exact",
            "inside_a_network_namespace",
            "--ignored",
            "--nocapture",
        ])
        .env(INNER, format!("{}\n{}", release.display(), dev.display()))
        .output()
        .expect("run unshare (util-linux) to create a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the checks inside the namespace failed:\n{stdout}\n{stderr}"
    );
}

fn run(binary: &Path, task: &str, envs: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", task)
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("MARKETGATE_STARTUP_TIMEOUT_SECS", "2")
        .envs(envs.iter().copied())
        .output()
        .expect("run seller binary")
}

/// Runs inside the namespace, started by the test above.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run inside a network namespace by a_release_build_ignores_endpoint_overrides_and_fails_closed"]
async fn inside_a_network_namespace() {
    let Ok(binaries) = std::env::var(INNER) else {
        panic!("run through a_release_build_ignores_endpoint_overrides_and_fails_closed");
    };
    let (release, dev) = binaries.split_once('\n').expect("two binaries");
    let (release, dev) = (Path::new(release), Path::new(dev));
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let endpoint = sim.endpoint();

    // Control: a dev build reaches the simulator through MARKETGATE_ENDPOINT.
    let out = tokio::task::block_in_place(|| {
        run(dev, "AKIDDEVBUILD", &[("MARKETGATE_ENDPOINT", &endpoint)])
    });
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("VERIFIED"),
        "the dev build did not verify against the simulator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sim.calls()
            .iter()
            .any(|c| c.access_key_id.as_deref() == Some("AKIDDEVBUILD"))
    );

    // Every override at once, against the release build.
    let scratch = std::env::temp_dir().join(format!("marketgate-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let config_file = scratch.join("aws-config");
    std::fs::write(
        &config_file,
        format!(
            "[default]\nendpoint_url = {endpoint}\nservices = fake\n\n[services fake]\n\
             marketplace_metering =\n  endpoint_url = {endpoint}\nlicense_manager =\n  \
             endpoint_url = {endpoint}\n"
        ),
    )
    .expect("config file");
    let config_path = config_file.display().to_string();
    let overrides = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_MARKETPLACE_METERING", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_LICENSE_MANAGER", endpoint.as_str()),
        ("MARKETGATE_ENDPOINT", endpoint.as_str()),
        ("AWS_CONFIG_FILE", config_path.as_str()),
    ];
    let out = tokio::task::block_in_place(|| run(release, "AKIDRELEASE", &overrides));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("REFUSED:"), "{stderr}");
    assert!(!stdout.contains("VERIFIED"));
    assert!(
        !sim.calls()
            .iter()
            .any(|c| c.access_key_id.as_deref() == Some("AKIDRELEASE")),
        "the release build reached the simulator: {:?}",
        sim.calls()
    );
    for ignored in [
        "ignoring AWS endpoint overrides",
        "AWS_ENDPOINT_URL,",
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
        "AWS_ENDPOINT_URL_LICENSE_MANAGER",
        "endpoint_url in ",
        "MARKETGATE_ENDPOINT (only builds with the `dev` feature read it)",
    ] {
        assert!(
            stderr.contains(ignored),
            "no `{ignored}` in the log:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
