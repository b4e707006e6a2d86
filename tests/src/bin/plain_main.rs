//! A synchronous `#[marketgate::main]` returning `Result`, used by the tests.

use marketgate_tests::{AppError, basic};

#[marketgate::main]
fn main() -> Result<(), AppError> {
    println!("body ran");
    println!("{}", basic()?);
    Ok(())
}
