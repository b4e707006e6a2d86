//! `#[tokio::main]` above `#[marketgate::main]`: marketgate wraps the
//! synchronous `main` that tokio generates. Used by the tests.

#[tokio::main]
#[marketgate::main]
async fn main() {
    println!("body ran");
}
