//! What the guides tell a seller to write and run must be true: every
//! `Marketplace.toml` block is a valid manifest that agrees with the one the
//! Rust blocks compile against, every product a guide tests locally is served
//! by the simulator config it names (with the key the manifest embeds), and
//! every package and repository path a guide mentions exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use marketgate_manifest::{Manifest, Product, pricing_name};
use marketgate_simulator::{Config, Simulator, Subscription};

const GUIDES: &[&str] = &[
    "README",
    "hourly",
    "monthly",
    "custom",
    "contract",
    "operations",
];

fn docs_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    docs_dir()
        .parent()
        .expect("docs/ is in the repository")
        .to_path_buf()
}

fn guide(name: &str) -> String {
    std::fs::read_to_string(docs_dir().join(format!("{name}.md"))).expect("guide exists")
}

/// The fenced blocks of `text` whose info string starts with `lang`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Inside a fence: whether it is a `lang` block, and its text so far.
    let mut open: Option<(bool, String)> = None;
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match open.take() {
                Some((true, block)) => out.push(block),
                Some((false, _)) => {}
                None => open = Some((info.split(',').next() == Some(lang), String::new())),
            }
        } else if let Some((_, block)) = open.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

fn parse(origin: &str, text: &str) -> Manifest {
    // Key paths resolve against docs/, where the guides' keys live.
    let path = docs_dir().join(format!("{origin}.Marketplace.toml"));
    marketgate_manifest::parse(&path, text).unwrap_or_else(|e| {
        panic!(
            "{origin}: invalid manifest block:\n{}",
            e.messages.join("\n")
        )
    })
}

/// Everything about a product that the catalog embeds, by name.
fn describe(m: &Manifest, p: &Product) -> String {
    let names = |all: &[String], set: &BTreeSet<usize>| {
        set.iter().map(|&i| all[i].clone()).collect::<Vec<_>>()
    };
    let license = p.license.as_ref().map(|l| {
        let ents: Vec<_> = l
            .entitlements
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.unit.clone(),
                    e.value.clone(),
                    names(&m.features, &e.features),
                )
            })
            .collect();
        (
            l.sku.clone(),
            l.key_fingerprint.clone(),
            names(&m.features, &l.base_features),
            ents,
        )
    });
    format!(
        "{} {} {:?} {} features={:?} dimensions={:?} key={:?} license={:?}",
        p.name,
        p.code,
        p.tier,
        pricing_name(p.pricing),
        names(&m.features, &p.features),
        names(&m.dimensions, &p.dimensions),
        p.key.as_ref().map(|(v, k)| (v, &k.spki)),
        license,
    )
}

fn guide_manifests() -> Vec<(&'static str, Manifest)> {
    let mut out = Vec::new();
    for name in GUIDES {
        for block in blocks(&guide(name), "toml") {
            if block.contains("[[product]]") {
                out.push((*name, parse(name, &block)));
            }
        }
    }
    out
}

#[test]
fn every_manifest_block_is_valid_and_matches_the_compiled_one() {
    let text = std::fs::read_to_string(docs_dir().join("Marketplace.toml")).expect("manifest");
    let compiled = parse("docs", &text);
    let manifests = guide_manifests();
    for guide in ["hourly", "monthly", "custom", "contract"] {
        assert!(
            manifests.iter().any(|(g, _)| *g == guide),
            "{guide}.md has no Marketplace.toml block"
        );
    }
    for (guide, m) in &manifests {
        for p in &m.products {
            let twin = compiled
                .products
                .iter()
                .find(|c| c.name == p.name)
                .unwrap_or_else(|| {
                    panic!(
                        "{guide}.md: product `{}` is not in docs/Marketplace.toml",
                        p.name
                    )
                });
            assert_eq!(
                describe(m, p),
                describe(&compiled, twin),
                "{guide}.md and docs/Marketplace.toml disagree on product `{}`",
                p.name
            );
        }
    }
}

/// The simulator config each guide's "Test locally" section uses.
fn simulator_config(guide: &str) -> Config {
    let own = docs_dir().join("sim").join(format!("{guide}.toml"));
    if own.is_file() {
        assert!(
            guide_text_mentions(guide, &format!("docs/sim/{guide}.toml")),
            "{guide}.md does not tell the reader to use docs/sim/{guide}.toml"
        );
        Config::from_file(&own).unwrap_or_else(|e| panic!("{}: {e}", own.display()))
    } else {
        Config::example()
    }
}

fn guide_text_mentions(name: &str, needle: &str) -> bool {
    guide(name).contains(needle)
}

#[tokio::test]
async fn the_simulator_a_guide_uses_serves_its_products_with_the_embedded_keys() {
    for (guide, m) in guide_manifests() {
        let sim = Simulator::start(simulator_config(guide))
            .await
            .expect("simulator starts");
        for p in &m.products {
            if let Some((version, key)) = &p.key {
                let version = i32::try_from(*version).expect("small version");
                let pem = sim
                    .product_public_key_pem(&p.code, version)
                    .unwrap_or_else(|| {
                        panic!(
                            "{guide}.md: the simulator has no key {version} for `{}`",
                            p.code
                        )
                    });
                let served = marketgate_manifest::keys::parse_rsa_spki_pem(pem.as_bytes())
                    .expect("simulator key parses");
                assert_eq!(
                    served.spki, key.spki,
                    "{guide}.md: `{}` embeds another key than the simulator signs with, so \
                     RegisterUsage would fail verification",
                    p.code
                );
            }
            let sub = sim.subscription(&p.code);
            assert!(
                matches!(sub, Ok(Subscription::Subscribed)),
                "{guide}.md: the simulator does not serve `{}` to a subscribed buyer: {sub:?}",
                p.code
            );
        }
        sim.shutdown().await;
    }
}

/// Package names of the workspace members.
fn workspace_packages() -> BTreeSet<String> {
    let root: toml::Table = std::fs::read_to_string(repo_root().join("Cargo.toml"))
        .expect("root Cargo.toml")
        .parse()
        .expect("root Cargo.toml parses");
    root["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let dir = repo_root().join(m.as_str().expect("member path"));
            let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
                .expect("member Cargo.toml")
                .parse()
                .expect("member Cargo.toml parses");
            manifest["package"]["name"]
                .as_str()
                .expect("package name")
                .to_owned()
        })
        .collect()
}

#[test]
fn every_package_and_path_a_guide_names_exists() {
    let packages = workspace_packages();
    let mut checked = 0;
    for name in GUIDES {
        let text = guide(name);
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "-p" {
                let package = pair[1].trim_end_matches(['`', ',', '.', ')']);
                assert!(
                    packages.contains(package),
                    "{name}.md runs package `{package}`, which is not in the workspace"
                );
                checked += 1;
            }
        }
        for word in &words {
            let word = word.trim_matches(|c: char| "`'\"(),.:;".contains(c));
            let word = word.split(['#', '`']).next().unwrap_or_default();
            let is_repo_path = ["examples/", "docs/", "simulator/"]
                .iter()
                .any(|prefix| word.starts_with(prefix));
            if is_repo_path && !word.contains('<') && !word.contains('{') {
                assert!(
                    repo_root().join(word).exists(),
                    "{name}.md names `{word}`, which does not exist"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} names checked: is the parser broken?"
    );
}
