//! The demo: a seller app whose functions are gated and metered by
//! marketgate. It shows what was compiled into the binary and what the
//! runtime answers before and after start-up verification.

use marketgate::{Denied, entitled, metered};

#[derive(Debug)]
enum AppError {
    NotEntitled(Denied),
}

impl From<Denied> for AppError {
    fn from(denied: Denied) -> Self {
        AppError::NotEntitled(denied)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::NotEntitled(d) => write!(f, "{d}"),
        }
    }
}

/// A paid feature.
#[entitled("export")]
fn export(report: &str) -> Result<String, AppError> {
    Ok(format!("exported {report}"))
}

/// A free feature.
#[entitled("search")]
fn search(query: &str) -> Result<usize, AppError> {
    Ok(query.len())
}

/// One unit of `api_calls` per successful call.
#[metered(api_calls)]
fn api_call(path: &str) -> Result<&str, AppError> {
    Ok(path)
}

/// `gb_scanned` units computed from the argument.
#[metered(gb_scanned, quantity = bytes.div_ceil(1 << 30))]
fn scan(bytes: u64) -> Result<u64, AppError> {
    Ok(bytes)
}

fn show<T: std::fmt::Debug>(call: &str, result: &Result<T, AppError>) {
    match result {
        Ok(value) => println!("  {call:<28} -> ok: {value:?}"),
        Err(e) => println!("  {call:<28} -> DENIED: {e}"),
    }
}

fn main() {
    let catalog = marketgate::catalog!();
    println!("Catalog compiled from {}:", catalog.manifest_path());
    for p in catalog.products() {
        println!(
            "  {:<10} {:<22} tier={} pricing={} features={:?} dimensions={:?}",
            p.name(),
            p.code(),
            p.tier(),
            p.pricing(),
            catalog.feature_names(p.features()).collect::<Vec<_>>(),
            catalog.dimension_names(p).collect::<Vec<_>>()
        );
    }

    println!("\nBefore start-up verification every call is denied (fail closed):");
    show("export(\"q3\")", &export("q3"));
    show("search(\"rust\")", &search("rust"));
    show("api_call(\"/v1/items\")", &api_call("/v1/items"));
    show("scan(3 GiB)", &scan(3 << 30));

    println!("\nStart-up verification:");
    match marketgate::start_blocking(catalog) {
        Ok(guard) => {
            println!("  verified");
            guard.shutdown_blocking();
        }
        Err(e) => println!("  refused: {e}"),
    }
}
