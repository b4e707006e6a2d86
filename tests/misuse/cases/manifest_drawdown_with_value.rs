fn main() {
    let _ = marketgate::draw!("Scans", 1);
}
