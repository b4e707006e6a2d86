//! Procedural macros of [marketgate](https://docs.rs/marketgate).
//!
//! This crate is an implementation detail: depend on `marketgate`, which
//! re-exports these attributes, and never on this crate directly. Its
//! version is pinned exactly by `marketgate`.
//!
//! Layout: `lib.rs` holds only the entry points. `gate/` expands
//! `#[entitled]` and `#[metered]` (collect, validate, resolve, emit),
//! `entry` expands `#[marketgate::main]`, and `embed` writes the catalog as
//! static data (`catalog!()`, and the catalog `main` starts with). They
//! share `args` (attribute arguments), `function` (parsing the annotated
//! function and re-emitting its body), `manifest` (loading
//! `Marketplace.toml` through `marketgate-manifest`, which also serves
//! `marketgate-sim check-manifest`), `crate_path`, `suggest`, `literal` and
//! `errors`.

mod args;
mod crate_path;
mod embed;
mod entry;
mod errors;
mod function;
mod gate;
mod literal;
mod manifest;
mod suggest;
mod units;

use proc_macro::TokenStream;

/// Runs the function only if the process's verified entitlement grants a
/// feature.
///
/// ```
/// # use marketgate::Denied;
/// # #[derive(Debug)] struct AppError(Denied);
/// # impl From<Denied> for AppError { fn from(d: Denied) -> Self { AppError(d) } }
/// #[marketgate::entitled("export")]
/// fn export(report: &str) -> Result<String, AppError> {
///     Ok(format!("exported {report}"))
/// }
///
/// // Before start-up verification every check is denied: marketgate fails closed.
/// let denied = export("q3").unwrap_err().0;
/// assert_eq!(denied.name(), "export");
/// ```
///
/// The feature must be declared by some product in `Marketplace.toml`; a
/// name nobody declares is a compile error (with a suggestion for typos).
/// Several features may be listed: `#[entitled("export", "sso")]` requires
/// all of them.
///
/// # Denial
///
/// The check runs before the body. When it fails, the function returns
/// `Err(From::from(marketgate::Denied))`, so its return type must be
/// `Result<T, E>` with `E: From<marketgate::Denied>`. A function that
/// returns something else names the value to return instead:
///
/// ```
/// #[marketgate::entitled("export", on_denied = 402)]
/// fn export_status() -> u16 {
///     200
/// }
/// assert_eq!(export_status(), 402);
/// ```
///
/// # Options
///
/// - `on_denied = <expr>`: the value to return when denied (evaluated only
///   then).
/// - `crate = "path"`: where the `marketgate` crate is, if renamed.
///
/// # Cost
///
/// The feature name is resolved at compile time to an index. A check is one
/// relaxed atomic load and a bit test; no allocation, lock, string
/// comparison or syscall.
#[proc_macro_attribute]
pub fn entitled(args: TokenStream, item: TokenStream) -> TokenStream {
    gate::entitled(args.into(), item.into()).into()
}

/// Records usage of a custom pricing dimension for each call.
///
/// ```
/// # use marketgate::Denied;
/// # #[derive(Debug)] struct AppError(Denied);
/// # impl From<Denied> for AppError { fn from(d: Denied) -> Self { AppError(d) } }
/// #[marketgate::metered(api_calls)]
/// fn handle(request: &str) -> Result<usize, AppError> {
///     Ok(request.len())
/// }
///
/// #[marketgate::metered(gb_scanned, quantity = bytes.div_ceil(1 << 30))]
/// fn scan(bytes: u64) -> Result<u64, AppError> {
///     Ok(bytes)
/// }
///
/// #[marketgate::metered(api_calls, quantity = 3)]
/// fn batch_of_three() -> Result<(), AppError> {
///     Ok(())
/// }
/// # assert!(handle("x").is_err());
/// # assert!(batch_of_three().is_err());
/// ```
///
/// The dimension is written as an identifier, or as a string for names that
/// are not identifiers (`#[metered("gb-scanned")]`). It must be a dimension
/// of some product in `Marketplace.toml`.
///
/// # When a call counts
///
/// - **Denied calls never count.** Metering a dimension is a paid path: the
///   call is denied (like `#[entitled]`) unless the verified product meters
///   the dimension. A free product meters nothing.
/// - **By default a call counts when it succeeds**: the function returned
///   `Ok` (for a `Result`), or returned at all (for any other type, possible
///   with `on_denied`). `on = return` counts every return, `Ok` or `Err`;
///   `on = call` counts when the call is admitted, before the body runs.
/// - **At most once per call**: the quantity is recorded once, however the
///   body returns (`return`, `?`, tail expression).
/// - **Panics and cancelled futures** record nothing under `on = success`
///   and `on = return`: the body did not return. Under `on = call` the unit
///   is already recorded before the body starts.
/// - **`quantity = <expr>`** (default 1) is evaluated once, after the
///   entitlement check and before the body runs, so it may read the
///   arguments. It must be an unsigned integer (`u8`..`u64`, `usize`); an
///   unsuffixed literal (`quantity = 3`) or an expression whose type only
///   the quantity fixes (`n.into()`) is a `u64`. A signed or floating-point
///   quantity is a compile error.
///
/// Stacking `#[entitled]` and `#[metered]` on one function, in either
/// order, runs all checks first: a call denied by either never counts.
///
/// # Tags
///
/// `tags = <expr>` attributes the units to a tag set (any iterable of
/// `(key, value)` string pairs, evaluated with the quantity). AWS receives
/// them as the hour's `UsageAllocations`, aggregated per tag set. Tagged
/// calls take a lock and allocate; untagged ones do neither.
///
/// ```
/// # use marketgate::Denied;
/// #[marketgate::metered(api_calls, tags = [("tenant", tenant)])]
/// fn handle_for(tenant: &str) -> Result<(), Denied> {
///     Ok(())
/// }
/// # assert!(handle_for("acme").is_err());
/// ```
///
/// # Options
///
/// `quantity = <expr>`, `tags = <expr>`, `on = success | return | call`,
/// `on_denied = <expr>`, `crate = "path"`.
///
/// # Cost
///
/// A record is one relaxed `fetch_add` into a per-thread shard of counters;
/// no allocation, lock, clock read or syscall. The runtime reports hourly
/// totals to AWS in the background.
#[proc_macro_attribute]
pub fn metered(args: TokenStream, item: TokenStream) -> TokenStream {
    gate::metered(args.into(), item.into()).into()
}

/// Verifies AWS Marketplace entitlement before `main`'s body runs.
///
/// ```no_run
/// #[marketgate::main]
/// fn main() {
///     // Runs only once entitlement is verified.
/// }
/// ```
///
/// With an async runtime, put `#[marketgate::main]` first:
///
/// ```no_run
/// # #[derive(Debug)] struct AppError;
/// #[marketgate::main]
/// #[tokio::main]
/// async fn main() -> Result<(), AppError> {
///     Ok(())
/// }
/// ```
///
/// It embeds the catalog compiled from `Marketplace.toml` into the binary,
/// checks that every annotated function in every linked crate was compiled
/// against the same catalog, selects and verifies the product, and only
/// then runs the body. When verification fails it logs the error (and
/// prints it to stderr) and exits with status 1 before the body runs.
/// When the body returns, it flushes usage and releases licenses, then
/// returns the body's value unchanged: `main` may return `()` or any
/// `Result<(), E>`.
///
/// Option: `crate = "path"` for a renamed `marketgate` dependency.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(args.into(), item.into()).into()
}

/// The catalog compiled from this crate's `Marketplace.toml`, as a
/// `&'static marketgate::Catalog`: for [`marketgate::start`] and tests.
///
/// ```
/// let catalog: &'static marketgate::Catalog = marketgate::catalog!();
/// assert!(catalog.product_by_name("pro").is_some());
/// ```
///
/// Option: `crate = "path"` for a renamed `marketgate` dependency.
///
/// [`marketgate::start`]: https://docs.rs/marketgate/latest/marketgate/fn.start.html
#[proc_macro]
pub fn catalog(args: TokenStream) -> TokenStream {
    embed::catalog(args.into()).into()
}

/// What the buyer bought of a contract entitlement, as a
/// `Result<marketgate::Quantity, marketgate::Denied>`: `MaxCount`, unit,
/// overage, and the units this process holds or drew.
///
/// The name must be an entitlement of a product in `Marketplace.toml`: a
/// typo is a compile error with a suggestion.
///
/// ```ignore
/// let users = marketgate::entitlement!("Users")?;
/// if let Some(max) = users.max_count { /* provision `max` users */ }
/// ```
///
/// Option: `crate = "path"` for a renamed `marketgate` dependency.
#[proc_macro]
pub fn entitlement(args: TokenStream) -> TokenStream {
    units::expand(args.into(), units::Use::Read).into()
}

/// Takes floating units of a contract entitlement for as long as the
/// returned guard lives: a future of
/// `Result<marketgate::Units, marketgate::Denied>`.
///
/// The entitlement must be `model = "floating"` in `Marketplace.toml`
/// (checked at compile time). The guard's consumption is kept extended by
/// the runtime and checked in when the guard is dropped or at shutdown.
/// When the buyer's pool has no units free the denial's reason is
/// `DenialReason::Exhausted`: try again later.
///
/// ```ignore
/// let job = marketgate::checkout!("Jobs", 1).await?;
/// run_job().await;
/// drop(job); // checked in
/// ```
///
/// The count (default 1) is any unsigned integer expression. Option:
/// `crate = "path"`.
#[proc_macro]
pub fn checkout(args: TokenStream) -> TokenStream {
    units::expand(args.into(), units::Use::Checkout).into()
}

/// Draws units of a drawdown entitlement for good: a
/// `Result<(), marketgate::Denied>`, as cheap as a `#[metered]` call (no I/O,
/// no network). The runtime journals and draws the counted units in batches
/// every checkpoint interval (`CheckoutLicense`, `PERPETUAL`).
///
/// The entitlement must be `model = "drawdown"` in `Marketplace.toml`
/// (checked at compile time). Denied with `DenialReason::Exhausted` once
/// AWS has refused a batch because the balance is used up.
///
/// ```ignore
/// marketgate::draw!("Scans", gigabytes)?;
/// ```
///
/// The count (default 1) is any unsigned integer expression. Option:
/// `crate = "path"`.
#[proc_macro]
pub fn draw(args: TokenStream) -> TokenStream {
    units::expand(args.into(), units::Use::Draw).into()
}
