//! Editing `Marketplace.toml`, a key file, or `MARKETGATE_MANIFEST` rebuilds
//! the crates that embed it: a stale catalog would gate by yesterday's rules.
//!
//! Builds a small seller crate outside the workspace, changes one input at
//! a time and checks what the binary prints.

mod support;

use std::path::Path;

use support::standalone::{cargo, seller_crate, write};

fn manifest(features: &str, key: &str) -> String {
    format!(
        "[[product]]\nname = \"pro\"\ncode = \"pro1234567890abcdef\"\ntier = \"paid\"\n\
         pricing = \"hourly\"\npublic-key = \"{key}\"\npublic-key-version = 3\n\
         features = [{features}]\n"
    )
}

const MAIN: &str = "fn main() {\n    let c = marketgate::catalog!();\n    let p = &c.products()[0];\n    \
    let key = p.registration().expect(\"key\");\n    \
    let sum: u32 = key.spki_der().iter().map(|b| u32::from(*b)).sum();\n    \
    println!(\"{:?} v{} key{}\", c.features(), key.version(), sum);\n}\n";

fn run(dir: &Path, manifest_env: Option<&str>) -> String {
    let envs: Vec<(&str, &str)> = manifest_env
        .map(|path| ("MARKETGATE_MANIFEST", path))
        .into_iter()
        .collect();
    let out = cargo(dir, &["run"], &envs);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn manifest_key_and_env_changes_rebuild_the_catalog() {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = seller_crate(
        "rebuild-seller",
        &[],
        MAIN,
        &manifest("\"alpha\"", "key.pem"),
    );
    std::fs::copy(tests_dir.join("keys/pro.pem"), dir.join("key.pem")).expect("key");

    let first = run(&dir, None);
    assert!(first.starts_with("[\"alpha\"] v3 key"), "{first}");

    write(
        &dir.join("Marketplace.toml"),
        &manifest("\"beta\", \"gamma\"", "key.pem"),
    );
    let edited = run(&dir, None);
    assert!(
        edited.starts_with("[\"beta\", \"gamma\"] v3 key"),
        "{edited}"
    );

    std::fs::copy(tests_dir.join("fixtures/second.pem"), dir.join("key.pem")).expect("key");
    let rekeyed = run(&dir, None);
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
    let elsewhere = run(&dir, Some("other/Marketplace.toml"));
    assert!(elsewhere.starts_with("[\"delta\"] v3 key"), "{elsewhere}");
    let back = run(&dir, None);
    assert_eq!(back, rekeyed);
}

/// A crate with only `#[entitled]`/`#[metered]` functions (no catalog of its
/// own, as a seller's library) rebuilds when its manifest changes too: the
/// gates make the manifest an input of the crate once per crate (from the
/// first function expanded), and the indices it registers follow the edit.
const GATES_ONLY: &str = "use marketgate::{entitled, metered, Denied};\n\
    #[entitled(\"alpha\")]\nfn first() -> Result<(), Denied> { Ok(()) }\n\
    #[metered(calls)]\nfn second() -> Result<(), Denied> { Ok(()) }\n\
    #[entitled(\"alpha\")]\nfn third() -> Result<(), Denied> { Ok(()) }\n\
    fn main() {\n    let _ = (first, second, third);\n    \
    let m = marketgate::__private::COMPILED_MANIFESTS.iter().map(|m| format!(\"{m:?}\"));\n    \
    println!(\"{}\", m.collect::<Vec<_>>().join(\"\\n\"));\n}\n";

fn custom(features: &str) -> String {
    format!(
        "[[product]]\nname = \"usage\"\ncode = \"usage1234567890abcd\"\ntier = \"paid\"\n\
         pricing = \"custom\"\ndimensions = [\"calls\"]\nfeatures = [{features}]\n"
    )
}

#[test]
fn a_crate_with_only_gates_rebuilds_and_registers_once() {
    let dir = seller_crate("rebuild-gates", &[], GATES_ONLY, &custom("\"alpha\""));
    let first = run(&dir, None);
    assert_eq!(
        first.lines().count(),
        1,
        "one registration per crate: {first}"
    );
    assert!(first.contains("features: [\"alpha\"]"), "{first}");

    write(
        &dir.join("Marketplace.toml"),
        &custom("\"aardvark\", \"alpha\""),
    );
    let edited = run(&dir, None);
    assert_eq!(edited.lines().count(), 1, "{edited}");
    assert!(
        edited.contains("features: [\"aardvark\", \"alpha\"]"),
        "the crate was not rebuilt after its manifest changed: {edited}"
    );
}
