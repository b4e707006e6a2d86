//! Runs only when the task's RegisterUsage signature verifies.

use marketgate_example_hourly::{export_csv, monthly_report};

#[marketgate::main]
fn main() {
    for (call, result) in [
        ("monthly_report", monthly_report("2026-11")),
        ("export_csv", export_csv(42)),
    ] {
        match result {
            Ok(value) => println!("{call}: {value}"),
            Err(denied) => println!("{call}: DENIED ({denied})"),
        }
    }
}
