//! Links a library compiled against a different Marketplace.toml (the
//! `marketgate-renamed-tests` crate) into a binary whose catalog comes from
//! this crate's manifest. Start-up must refuse instead of mis-gating.

#[marketgate::main]
fn main() {
    println!("body ran");
    let _ = marketgate_renamed_tests::export(1);
}
