fn main() {
    let _ = marketgate::draw!("Subscribed");
}
