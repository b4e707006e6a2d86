fn main() {
    let _ = marketgate::entitlement!("Seats");
}
