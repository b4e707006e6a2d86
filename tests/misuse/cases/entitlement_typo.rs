fn main() {
    let _ = marketgate::entitlement!("Jbos");
}
