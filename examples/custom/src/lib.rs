//! A product billed by custom dimensions, with a free listing of the same
//! image: under the free code the paid paths (and all metering) are denied.

use marketgate::{Denied, entitled, metered};

/// Search: free in the community listing, included in the paid one.
///
/// # Errors
/// Before verification.
#[entitled("search")]
pub fn search(query: &str) -> Result<Vec<String>, Denied> {
    Ok(vec![format!("result for {query}")])
}

/// Export: a paid feature.
///
/// # Errors
/// Under the free listing.
#[entitled("export")]
pub fn export(report: &str) -> Result<String, Denied> {
    Ok(format!("{report}.csv"))
}

/// An API request: one `api_calls` unit when it succeeds.
///
/// # Errors
/// Unless the running product meters `api_calls`.
#[metered(api_calls)]
pub fn handle(path: &str) -> Result<String, Denied> {
    Ok(format!("200 OK {path}"))
}

/// A scan: `gb_scanned` units, rounded up per started GiB.
///
/// # Errors
/// Unless the running product meters `gb_scanned`.
#[metered(gb_scanned, quantity = bytes.div_ceil(1 << 30))]
pub fn scan(bytes: u64) -> Result<u64, Denied> {
    Ok(bytes)
}

/// The catalog compiled from this crate's `Marketplace.toml`.
#[must_use]
pub fn catalog() -> &'static marketgate::Catalog {
    marketgate::catalog!()
}

/// A fixed workload: what each call answered, one line per call.
#[must_use]
pub fn workload() -> Vec<String> {
    let mut lines = Vec::new();
    let mut show = |call: &str, result: Result<String, Denied>| {
        lines.push(match result {
            Ok(value) => format!("{call}: {value}"),
            Err(denied) => format!("{call}: DENIED ({denied})"),
        });
    };
    show("search(\"rust\")", search("rust").map(|r| r.join(", ")));
    show("export(\"q3\")", export("q3"));
    for path in ["/v1/items", "/v1/items/7", "/v1/orders"] {
        show(&format!("handle({path:?})"), handle(path));
    }
    show(
        "scan(3 GiB + 1 byte)",
        scan((3 << 30) + 1).map(|b| format!("{b} bytes")),
    );
    lines
}
