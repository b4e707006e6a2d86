//! A long-running service for the signal tests: with `--handles-signals` it
//! returns from `main` on SIGTERM like a graceful server; without, it never
//! returns and relies on marketgate to exit after the grace period.

#[marketgate::main]
#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--handles-signals") {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        println!("ready");
        term.recv().await;
        println!("main returning");
    } else {
        println!("ready");
        loop {
            tokio::time::sleep(std::time::Duration::from_hours(1)).await;
        }
    }
}
