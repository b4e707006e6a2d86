fn main() {
    let _ = marketgate::draw!("Jobs", 2);
}
