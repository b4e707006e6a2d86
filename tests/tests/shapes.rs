//! The pass suite: every function shape the attributes must support,
//! compiled under the strictest lints a seller might use, and run both
//! denied and granted.
#![deny(warnings, clippy::all, clippy::pedantic)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};

use marketgate::testing;
use marketgate::{DenialReason, Subject, entitled, metered};
use marketgate_tests::{AppError, catalog};

/// Runs a future to completion on this thread (the futures here never wait).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn as_product(name: &str) -> MutexGuard<'static, ()> {
    let guard = testing::serial();
    testing::activate(catalog(), name).expect("activate");
    guard
}

/// Changes the active product inside a test that already holds the lock.
fn switch_to(name: &str) {
    testing::activate(catalog(), name).expect("activate");
}

fn unverified() -> MutexGuard<'static, ()> {
    let guard = testing::serial();
    testing::deactivate();
    guard
}

fn recorded(dimension: &str) -> u64 {
    testing::recorded(catalog(), dimension).expect("dimension")
}

fn reason(result: Result<impl Sized, AppError>) -> DenialReason {
    match result {
        Err(AppError::Denied(d)) => d.reason(),
        Err(other) => panic!("expected a denial, got {other:?}"),
        Ok(_) => panic!("expected a denial, got Ok"),
    }
}

// ---- free functions, sync and async ------------------------------------

#[entitled("export")]
fn sync_free(n: u32) -> Result<u32, AppError> {
    Ok(n * 2)
}

#[entitled("export")]
async fn async_free(n: u32) -> Result<u32, AppError> {
    std::future::ready(()).await;
    Ok(n + 1)
}

#[test]
fn free_functions_are_denied_until_verified_then_run() {
    let _serial = unverified();
    assert_eq!(reason(sync_free(2)), DenialReason::NotVerified);
    assert_eq!(reason(block_on(async_free(2))), DenialReason::NotVerified);
    switch_to("pro");
    assert_eq!(sync_free(2), Ok(4));
    assert_eq!(block_on(async_free(2)), Ok(3));
}

#[test]
fn library_call_sites_use_the_same_catalog() {
    let _serial = as_product("pro");
    assert_eq!(marketgate_tests::export("q3"), Ok("report q3".to_owned()));
    assert_eq!(marketgate_tests::basic(), Ok("basic"));
    let denied = marketgate_tests::api_call("x").unwrap_err();
    assert_eq!(
        denied.denied().map(marketgate::Denied::subject),
        Some(Subject::Dimension("api_calls"))
    );
}

// ---- methods --------------------------------------------------------------

struct Counter {
    value: u64,
    name: String,
}

impl Counter {
    #[entitled("export")]
    fn by_value(self) -> Result<u64, AppError> {
        Ok(self.value)
    }

    #[entitled("export")]
    fn by_ref(&self) -> Result<u64, AppError> {
        Ok(self.value)
    }

    #[entitled("export")]
    fn by_mut(&mut self) -> Result<u64, AppError> {
        self.value += 1;
        Ok(self.value)
    }

    #[entitled("export")]
    #[allow(clippy::needless_pass_by_value)] // the receiver shape is what is tested
    fn by_arc(self: Arc<Self>) -> Result<u64, AppError> {
        Ok(self.value * 10)
    }

    /// Elided lifetime in the return type, borrowed from `self`.
    #[metered(api_calls)]
    fn name(&self) -> Result<&str, AppError> {
        Ok(&self.name)
    }

    #[metered(api_calls)]
    async fn async_by_mut(&mut self, add: u64) -> Result<u64, AppError> {
        self.value += add;
        Ok(self.value)
    }
}

#[test]
fn every_receiver_shape_works() {
    let _serial = as_product("usage");
    let c = || Counter {
        value: 1,
        name: "c".to_owned(),
    };
    assert_eq!(c().by_value(), Ok(1));
    assert_eq!(c().by_ref(), Ok(1));
    let mut m = c();
    assert_eq!(m.by_mut(), Ok(2));
    assert_eq!(m.value, 2);
    assert_eq!(Arc::new(c()).by_arc(), Ok(10));
    let before = recorded("api_calls");
    assert_eq!(c().name().map(str::len), Ok(1));
    assert_eq!(block_on(m.async_by_mut(5)), Ok(7));
    assert_eq!(recorded("api_calls") - before, 2);
}

#[test]
fn every_receiver_shape_is_denied_without_running() {
    let _serial = unverified();
    let mut m = Counter {
        value: 1,
        name: String::new(),
    };
    assert_eq!(reason(m.by_mut()), DenialReason::NotVerified);
    assert_eq!(m.value, 1, "the body must not run when denied");
    assert_eq!(
        reason(block_on(m.async_by_mut(5))),
        DenialReason::NotVerified
    );
    assert_eq!(m.value, 1);
}

// ---- generics, where clauses, lifetimes, impl Trait -------------------------

#[entitled("export")]
fn generic<T: std::fmt::Display, U>(label: T, amount: U) -> Result<String, AppError>
where
    U: Into<u64> + Copy,
{
    Ok(format!("{label}={}", amount.into()))
}

#[entitled("export")]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> Result<&'a str, AppError> {
    Ok(if a.len() >= b.len() { a } else { b })
}

#[metered(api_calls)]
fn evens(numbers: impl IntoIterator<Item = u32>) -> Result<impl Iterator<Item = u32>, AppError> {
    Ok(numbers.into_iter().filter(|n| n % 2 == 0))
}

#[metered(api_calls)]
async fn async_impl_trait(n: u32) -> Result<impl std::fmt::Debug, AppError> {
    Ok(vec![n; 2])
}

#[test]
fn generics_lifetimes_and_impl_trait() {
    let _serial = as_product("usage");
    assert_eq!(generic("n", 3u8), Ok("n=3".to_owned()));
    let owned = String::from("longer");
    assert_eq!(longest("ab", &owned), Ok("longer"));
    let before = recorded("api_calls");
    let collected: Vec<u32> = evens(1..=6).expect("granted").collect();
    assert_eq!(collected, [2, 4, 6]);
    assert_eq!(
        format!("{:?}", block_on(async_impl_trait(3)).expect("granted")),
        "[3, 3]"
    );
    assert_eq!(recorded("api_calls") - before, 2);
}

// ---- traits, including async fn in traits ------------------------------------

trait Service {
    fn call(&self, input: u32) -> Result<u32, AppError>;

    #[entitled("export")]
    fn provided(&self) -> Result<u32, AppError> {
        self.call(1)
    }
}

trait AsyncService {
    async fn fetch(&self, key: u32) -> Result<u32, AppError>;
}

struct Impl;

impl Service for Impl {
    #[metered(api_calls)]
    fn call(&self, input: u32) -> Result<u32, AppError> {
        Ok(input + 100)
    }
}

impl AsyncService for Impl {
    #[entitled("export")]
    #[metered(gb_scanned, quantity = key)]
    async fn fetch(&self, key: u32) -> Result<u32, AppError> {
        Ok(key * 3)
    }
}

#[test]
fn trait_impls_and_default_methods() {
    let _serial = as_product("usage");
    let before = (recorded("api_calls"), recorded("gb_scanned"));
    assert_eq!(Impl.call(1), Ok(101));
    assert_eq!(Impl.provided(), Ok(101));
    assert_eq!(block_on(Impl.fetch(7)), Ok(21));
    assert_eq!(recorded("api_calls") - before.0, 2);
    assert_eq!(recorded("gb_scanned") - before.1, 7);
}

// ---- control flow: early return and ? -----------------------------------------

#[metered(api_calls)]
fn parse_positive(text: &str) -> Result<u32, AppError> {
    let n: u32 = text.parse()?;
    if n == 0 {
        return Err(AppError::Invalid("zero".to_owned()));
    }
    if n > 1000 {
        return Ok(1000);
    }
    Ok(n)
}

#[metered(api_calls)]
async fn parse_positive_async(text: &str) -> Result<u32, AppError> {
    let n: u32 = text.parse()?;
    if n == 0 {
        return Err(AppError::Invalid("zero".to_owned()));
    }
    Ok(n)
}

#[test]
fn early_return_and_question_mark_reach_the_wrapper() {
    let _serial = as_product("usage");
    let before = recorded("api_calls");
    assert_eq!(parse_positive("12"), Ok(12));
    assert_eq!(parse_positive("5000"), Ok(1000));
    assert!(matches!(parse_positive("x"), Err(AppError::Invalid(_))));
    assert!(matches!(parse_positive("0"), Err(AppError::Invalid(_))));
    // Only the two Ok returns count (on = success, the default).
    assert_eq!(recorded("api_calls") - before, 2);
    let before = recorded("api_calls");
    assert_eq!(block_on(parse_positive_async("9")), Ok(9));
    assert!(block_on(parse_positive_async("0")).is_err());
    assert!(block_on(parse_positive_async("y")).is_err());
    assert_eq!(recorded("api_calls") - before, 1);
}

// ---- counting rules ---------------------------------------------------------------

#[metered(gb_scanned, quantity = bytes.div_ceil(1 << 30))]
fn scan(bytes: u64, fail: bool) -> Result<u64, AppError> {
    if fail {
        return Err(AppError::Invalid("failed".to_owned()));
    }
    Ok(bytes)
}

#[metered("gb-egress", quantity = u32::from(size), on = return)]
fn egress(size: u8, fail: bool) -> Result<(), AppError> {
    if fail {
        Err(AppError::Invalid("failed".to_owned()))
    } else {
        Ok(())
    }
}

#[metered(api_calls, on = call)]
fn counted_on_call(panic: bool) -> Result<(), AppError> {
    assert!(!panic, "boom");
    Ok(())
}

#[metered(api_calls)]
fn panics_before_success() -> Result<(), AppError> {
    panic!("the body panicked")
}

#[metered(api_calls)]
async fn pending_forever() -> Result<(), AppError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[test]
fn quantity_is_evaluated_from_the_arguments_and_counted_on_success() {
    let _serial = as_product("usage");
    let before = recorded("gb_scanned");
    assert_eq!(scan(3 << 30, false), Ok(3 << 30));
    assert_eq!(scan((2 << 30) + 1, false), Ok((2 << 30) + 1));
    assert!(scan(5 << 30, true).is_err());
    assert_eq!(recorded("gb_scanned") - before, 3 + 3);
}

#[test]
fn on_return_counts_errors_too() {
    let _serial = as_product("usage");
    let before = recorded("gb-egress");
    assert_eq!(egress(4, false), Ok(()));
    assert!(egress(6, true).is_err());
    assert_eq!(recorded("gb-egress") - before, 10);
}

#[test]
fn on_call_counts_even_a_panicking_call_and_success_does_not() {
    let _serial = as_product("usage");
    let before = recorded("api_calls");
    assert_eq!(counted_on_call(false), Ok(()));
    assert!(std::panic::catch_unwind(|| counted_on_call(true)).is_err());
    assert_eq!(recorded("api_calls") - before, 2);
    let before = recorded("api_calls");
    assert!(std::panic::catch_unwind(panics_before_success).is_err());
    assert_eq!(recorded("api_calls") - before, 0);
}

#[test]
fn a_dropped_future_records_nothing() {
    let _serial = as_product("usage");
    let before = recorded("api_calls");
    let mut future = Box::pin(pending_forever());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    drop(future);
    assert_eq!(recorded("api_calls") - before, 0);
}

// A quantity may be any unsigned integer expression; one whose type only the
// quantity fixes (an unsuffixed literal, `.into()`) is a `u64`.

#[metered(gb_scanned, quantity = 3)]
fn literal_quantity() -> Result<(), AppError> {
    Ok(())
}

#[metered(gb_scanned, quantity = 3u32)]
fn suffixed_quantity() -> Result<(), AppError> {
    Ok(())
}

#[metered(gb_scanned, quantity = n)]
fn variable_quantity(n: u64) -> Result<u64, AppError> {
    Ok(n)
}

#[metered(gb_scanned, quantity = v.len())]
fn length_quantity(v: &[u8]) -> Result<usize, AppError> {
    Ok(v.len())
}

#[metered(gb_scanned, quantity = 1 << 4)]
fn shifted_quantity() -> Result<(), AppError> {
    Ok(())
}

#[metered(gb_scanned, quantity = if big { 10 } else { 1 })]
fn conditional_quantity(big: bool) -> Result<bool, AppError> {
    Ok(big)
}

#[metered(gb_scanned, quantity = small.into())]
fn converted_quantity(small: u16) -> Result<u16, AppError> {
    Ok(small)
}

/// A quantity expression as written, a call that should be admitted, and
/// the units it should record.
type QuantityCase = (&'static str, fn() -> bool, u64);

#[test]
fn quantity_takes_literals_and_any_unsigned_expression() {
    let _serial = as_product("usage");
    let cases: [QuantityCase; 9] = [
        ("3", || literal_quantity().is_ok(), 3),
        ("3u32", || suffixed_quantity().is_ok(), 3),
        ("n", || variable_quantity(7).is_ok(), 7),
        ("v.len()", || length_quantity(&[1, 2, 3, 4]).is_ok(), 4),
        ("v.len() of nothing", || length_quantity(&[]).is_ok(), 0),
        ("1 << 4", || shifted_quantity().is_ok(), 16),
        ("if (true)", || conditional_quantity(true).is_ok(), 10),
        ("if (false)", || conditional_quantity(false).is_ok(), 1),
        ("small.into()", || converted_quantity(9).is_ok(), 9),
    ];
    for (expr, call, units) in cases {
        let before = recorded("gb_scanned");
        assert!(call(), "quantity = {expr}: the call was denied");
        assert_eq!(recorded("gb_scanned") - before, units, "quantity = {expr}");
    }
}

static QUANTITY_EVALUATIONS: AtomicU64 = AtomicU64::new(0);

fn observed_quantity(units: u64) -> u64 {
    QUANTITY_EVALUATIONS.fetch_add(1, Ordering::SeqCst);
    units
}

#[metered(gb_scanned, quantity = observed_quantity(units))]
fn observed(units: u64) -> Result<(), AppError> {
    Ok(())
}

#[test]
fn denied_calls_never_count_and_never_evaluate_the_quantity() {
    let _serial = as_product("pro"); // hourly: meters nothing
    let evaluations = QUANTITY_EVALUATIONS.load(Ordering::SeqCst);
    assert!(observed(5).is_err());
    assert_eq!(QUANTITY_EVALUATIONS.load(Ordering::SeqCst), evaluations);
    switch_to("usage");
    let before = recorded("gb_scanned");
    assert_eq!(observed(5), Ok(()));
    assert_eq!(QUANTITY_EVALUATIONS.load(Ordering::SeqCst), evaluations + 1);
    assert_eq!(recorded("gb_scanned") - before, 5);
    switch_to("pro");
    let before = recorded("gb_scanned");
    let denied = scan(1 << 30, false).unwrap_err();
    assert_eq!(
        denied.denied().map(|d| (d.subject(), d.reason())),
        Some((
            Subject::Dimension("gb_scanned"),
            DenialReason::NotInProduct { product: "pro" }
        ))
    );
    assert_eq!(recorded("gb_scanned") - before, 0);
}

// ---- both attributes, either order ---------------------------------------------------

#[entitled("sso")]
#[metered(api_calls)]
fn entitled_then_metered() -> Result<(), AppError> {
    Ok(())
}

#[metered(api_calls, on = call)]
#[entitled("sso")]
fn metered_then_entitled() -> Result<(), AppError> {
    Ok(())
}

#[test]
fn stacked_attributes_check_everything_before_counting() {
    // `usage` meters api_calls but does not grant sso: even `on = call`,
    // written outside `#[entitled]`, must not count the denied call.
    let _serial = as_product("usage");
    let before = recorded("api_calls");
    assert_eq!(
        reason(entitled_then_metered()),
        DenialReason::NotInProduct { product: "usage" }
    );
    assert_eq!(
        reason(metered_then_entitled()),
        DenialReason::NotInProduct { product: "usage" }
    );
    assert_eq!(recorded("api_calls") - before, 0);
    // `pro` grants sso but meters nothing.
    switch_to("pro");
    assert!(entitled_then_metered().is_err());
    assert!(metered_then_entitled().is_err());
}

// ---- free versus paid ---------------------------------------------------------------

#[entitled("basic")]
fn free_feature() -> Result<(), AppError> {
    Ok(())
}

#[entitled("export", "sso")]
fn two_features() -> Result<(), AppError> {
    Ok(())
}

#[entitled("seat")]
fn seat_feature() -> Result<(), AppError> {
    Ok(())
}

#[test]
fn a_free_product_unlocks_free_features_only() {
    let _serial = as_product("community");
    assert_eq!(free_feature(), Ok(()));
    assert_eq!(
        reason(sync_free(1)),
        DenialReason::FreeTier {
            product: "community"
        }
    );
    assert_eq!(
        reason(scan(1, false)),
        DenialReason::NotInProduct {
            product: "community"
        }
    );
}

#[test]
fn several_features_are_all_required() {
    let _serial = as_product("usage"); // export, not sso
    assert!(two_features().is_err());
    switch_to("pro");
    assert_eq!(two_features(), Ok(()));
}

#[test]
fn contract_features_follow_the_license() {
    let _serial = testing::serial();
    testing::activate_licensed(catalog(), "enterprise", &["export", "sso"]).expect("activate");
    assert_eq!(two_features(), Ok(()));
    assert_eq!(
        reason(seat_feature()),
        DenialReason::NotLicensed {
            product: "enterprise"
        }
    );
}

// ---- attributes, visibility, docs, cfg, on_denied, unsafe, extern --------------------

mod inner {
    use marketgate::entitled;

    /// Visible to the parent module only through `pub(crate)`.
    #[entitled("export")]
    #[must_use = "the report is the point"]
    #[inline]
    pub(crate) fn crate_visible() -> Result<u8, marketgate_tests::AppError> {
        Ok(1)
    }

    // The `cfg` is kept: were it dropped, the two items would collide.
    #[entitled("export")]
    #[cfg(any())]
    pub(crate) fn configured() -> Result<u8, marketgate_tests::AppError> {
        Ok(1)
    }

    #[cfg(not(any()))]
    pub(crate) fn configured() -> Result<u8, marketgate_tests::AppError> {
        Ok("2".parse()?)
    }
}

#[entitled("export", on_denied = 402)]
fn status_code() -> u16 {
    200
}

#[metered(api_calls, on_denied = None)]
fn optional(n: u8) -> Option<u8> {
    Some(n)
}

#[entitled("export", on_denied = ())]
fn unit_returning(out: &mut Vec<u8>) {
    out.push(1);
}

/// # Safety
/// `ptr` must be valid for reads.
#[allow(unsafe_code)] // the workspace denies unsafe code; this test is about `unsafe fn`
#[entitled("export")]
unsafe fn read_raw(ptr: *const u32) -> Result<u32, AppError> {
    // SAFETY: the caller guarantees `ptr` is valid.
    Ok(unsafe { *ptr })
}

#[entitled("export", on_denied = -1)]
extern "C" fn c_abi(x: i32) -> i32 {
    x
}

#[test]
fn attributes_visibility_and_fallbacks() {
    let _serial = unverified();
    assert!(inner::crate_visible().is_err());
    assert_eq!(inner::configured(), Ok(2));
    assert_eq!(status_code(), 402);
    assert_eq!(optional(3), None);
    assert_eq!(c_abi(5), -1);
    let mut out = Vec::new();
    unit_returning(&mut out);
    assert!(out.is_empty());
    switch_to("usage");
    assert_eq!(inner::crate_visible(), Ok(1));
    assert_eq!(status_code(), 200);
    assert_eq!(optional(3), Some(3));
    unit_returning(&mut out);
    assert_eq!(out, [1]);
    let value = 7u32;
    #[allow(unsafe_code)]
    // SAFETY: `&value` is valid.
    let read = unsafe { read_raw(&raw const value) };
    assert_eq!(read, Ok(7));
    assert_eq!(c_abi(5), 5);
}

// ---- hygiene ----------------------------------------------------------------------------

mod hygiene {
    // Local items named like the paths expansions use must not capture them.
    mod marketgate {}
    mod core {}
    #[allow(dead_code)]
    struct Result;
    #[allow(dead_code)]
    struct Option;

    #[::marketgate::entitled("export")]
    #[::marketgate::metered(api_calls)]
    pub(super) fn shadowed(
        marketgate_result: u32,
    ) -> ::core::result::Result<u32, marketgate_tests::AppError> {
        // A parameter with the name of the expansion's own local.
        ::core::result::Result::Ok(marketgate_result)
    }
}

mod no_prelude {
    #![no_implicit_prelude]

    #[::marketgate::entitled("export")]
    #[::marketgate::metered(api_calls, quantity = 2u8)]
    pub(super) fn bare(n: u32) -> ::core::result::Result<u32, ::marketgate_tests::AppError> {
        ::core::result::Result::Ok(n)
    }
}

#[test]
fn expansions_are_hygienic() {
    let _serial = as_product("usage");
    let before = recorded("api_calls");
    assert_eq!(hygiene::shadowed(5), Ok(5));
    assert_eq!(no_prelude::bare(6), Ok(6));
    assert_eq!(recorded("api_calls") - before, 3);
}

// ---- denial carries what and why -------------------------------------------------------

#[test]
fn denial_names_the_feature_and_reason() {
    let _serial = unverified();
    let err = sync_free(1).unwrap_err();
    let denied = err.denied().copied().expect("a denial");
    assert_eq!(denied.subject(), Subject::Feature("export"));
    assert!(
        denied.to_string().starts_with(
            "feature `export` denied: AWS Marketplace entitlement has not been verified"
        ),
        "{denied}"
    );
}
