//! `#[marketgate::main]` stacked on `#[tokio::main]`, used by the tests.

use marketgate_tests::{AppError, export};

#[marketgate::main]
#[tokio::main]
async fn main() -> Result<(), AppError> {
    println!("body ran");
    tokio::task::yield_now().await;
    println!("{}", export("q3")?);
    Ok(())
}
