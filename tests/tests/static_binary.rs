//! The shipped binary is fully static: built as `examples/Dockerfile` builds
//! it (release, musl), it has no program interpreter and needs no shared
//! library, so the dynamic loader never runs and `LD_PRELOAD` cannot inject
//! code into it; and it still works: aws-lc (the `RegisterUsage` signature
//! check) and name resolution (the endpoint is given by host name, which
//! musl's own resolver looks up in `/etc/hosts`).
//!
//! The only difference from the image's build is `dev` (and the guard's
//! opt-out for an optimised build), so that this build can be pointed at the
//! simulator on loopback.
//!
//! Needs the musl target (`rustup target add x86_64-unknown-linux-musl`)
//! and `musl-gcc` (Debian: `musl-tools`); `.ci/run` installs both and sets
//! `MARKETGATE_REQUIRE_STATIC=1`, which turns their absence into a failure.
//! Without that variable the test says what is missing and passes, so that
//! `cargo test --workspace` works on a machine with only the Rust toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use marketgate_simulator::{Config, Simulator};

const TARGET: &str = "x86_64-unknown-linux-musl";
const EXAMPLE: &str = "marketgate-example-hourly";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// What this machine lacks to build for musl, if anything.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        missing.push(format!("the {TARGET} target (rustup target add {TARGET})"));
    }
    let musl_gcc = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("musl-gcc").is_file())
    });
    if !musl_gcc {
        missing.push("musl-gcc (Debian: apt-get install musl-tools)".to_owned());
    }
    missing
}

/// The program headers' types, and the number of `DT_NEEDED` entries in
/// the dynamic section, of a little-endian ELF64 file.
struct Elf {
    program_header_types: Vec<u32>,
    needed: usize,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

fn read_elf(bytes: &[u8]) -> Elf {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not ELF64");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let index = |v: u64| usize::try_from(v).expect("offset");
    let phoff = index(u64_at(0x20));
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    let mut elf = Elf {
        program_header_types: Vec::new(),
        needed: 0,
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32_at(ph);
        elf.program_header_types.push(kind);
        if kind == PT_DYNAMIC {
            let (offset, size) = (index(u64_at(ph + 8)), index(u64_at(ph + 32)));
            for entry in (offset..offset + size).step_by(16) {
                if u64_at(entry) == DT_NEEDED {
                    elf.needed += 1;
                }
            }
        }
    }
    elf
}

/// The ELF reader tells a dynamically linked binary from a static one:
/// this test binary itself is dynamically linked (glibc).
#[test]
fn the_elf_check_sees_a_dynamically_linked_binary() {
    let me = std::fs::read(std::env::current_exe().expect("test binary")).expect("read");
    let elf = read_elf(&me);
    assert!(elf.program_header_types.contains(&PT_INTERP));
    assert!(elf.needed > 0);
}

#[test]
fn the_static_release_binary_loads_nothing_and_verifies_against_the_simulator() {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        let message = format!(
            "cannot build the static binary; missing: {}",
            missing.join(", ")
        );
        assert!(
            std::env::var_os("MARKETGATE_REQUIRE_STATIC").is_none(),
            "{message}"
        );
        eprintln!("skipped: {message} (MARKETGATE_REQUIRE_STATIC=1 makes this a failure)");
        return;
    }

    // Its own target directory: `cargo test` may hold the workspace's.
    let target_dir = workspace().join("target/tests/static");
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--target",
            TARGET,
        ])
        .args(["-p", EXAMPLE])
        .args([
            "--features",
            "marketgate/dev,marketgate/allow-dev-in-optimized-builds",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "the static build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = target_dir.join(TARGET).join("release").join(EXAMPLE);
    let bytes = std::fs::read(&binary).expect("the built binary");
    eprintln!("{}: {} bytes", binary.display(), bytes.len());

    let elf = read_elf(&bytes);
    assert!(
        !elf.program_header_types.contains(&PT_INTERP),
        "the binary names a program interpreter (dynamically linked): {:?}",
        elf.program_header_types
    );
    assert_eq!(elf.needed, 0, "the binary needs shared libraries");
    if let Ok(ldd) = Command::new("ldd").arg(&binary).output() {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&ldd.stdout),
            String::from_utf8_lossy(&ldd.stderr)
        );
        assert!(
            said.contains("not a dynamic executable") || said.contains("statically linked"),
            "ldd: {said}"
        );
    }

    // It runs, verifies its registration's signature with aws-lc, and
    // reaches the simulator by host name.
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let sim = runtime
        .block_on(Simulator::start(Config::example()))
        .expect("simulator");
    let endpoint = sim.endpoint();
    let by_name = endpoint.replace("127.0.0.1", "localhost");
    assert_ne!(by_name, endpoint, "the endpoint names 127.0.0.1");
    let state = std::env::temp_dir().join(format!("marketgate-static-{}", std::process::id()));
    let run = sim
        .command(&binary, "AKIDSTATICBIN")
        .env("MARKETGATE_ENDPOINT", &by_name)
        .env("MARKETGATE_STATE_DIR", &state)
        // Would load a library into a dynamically linked process (and fail
        // it: the file does not exist).
        .env("LD_PRELOAD", "/nonexistent/interposer.so")
        .output()
        .expect("run the static binary");
    let _ = std::fs::remove_dir_all(&state);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(!stderr.contains("LD_PRELOAD"), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "monthly_report: report for 2026-11",
            "export_csv: 42 rows exported"
        ]
    );
}
