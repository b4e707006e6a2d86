fn main() {
    let _ = marketgate::entitlement!("Scan");
}
