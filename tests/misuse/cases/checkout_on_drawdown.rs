async fn job() {
    let _ = marketgate::checkout!("Scans", 1).await;
}

fn main() {
    drop(job());
}
