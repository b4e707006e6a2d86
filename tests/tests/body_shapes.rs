//! Lint regression for the shapes a function body can take: the expansion
//! keeps the seller's body as written, so nothing here may draw a warning
//! under the strictest lints a seller might use (`tests/lints.rs` also runs
//! clippy over this file). Every body is written out by hand, not generated
//! by `macro_rules!`: lints such as `unused_braces` skip macro-made code and
//! would hide the regression.
//!
//! Each shape is annotated with `#[entitled]` (checked in place), with
//! `#[metered]` (counted on success, so the body runs in a closure or an
//! `async` block), and with both stacked and `on = call` (in place, with a
//! record before the body); sync and async; written on one line and over
//! several lines.
#![deny(warnings, clippy::all, clippy::pedantic)]

use std::future::{Future, ready};
use std::sync::MutexGuard;
use std::task::{Context, Poll, Waker};

use marketgate::testing;
use marketgate::{DenialReason, entitled, metered};
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

/// Bodies on one line, as a seller's formatter might leave them: the body's
/// braces hold a single expression, the shape `unused_braces` looks for.
#[rustfmt::skip]
mod one_line {
    use std::future::ready;

    use marketgate::{entitled, metered};
    use marketgate_tests::AppError;

    #[entitled("export")]
    pub(crate) fn entitled_expr(x: u64) -> Result<u64, AppError> { Ok(x + 1) }

    #[entitled("export")]
    pub(crate) fn entitled_block(x: u64) -> Result<u64, AppError> { { let y = x + 1; Ok(y) } }

    #[entitled("export")]
    pub(crate) fn entitled_match(x: u64) -> Result<u64, AppError> { match x { 0 => Ok(1), n => Ok(n + 1) } }

    #[entitled("export")]
    pub(crate) fn entitled_if(x: u64) -> Result<u64, AppError> { if x == 0 { Ok(1) } else { Ok(x + 1) } }

    #[metered(api_calls)]
    pub(crate) fn metered_expr(x: u64) -> Result<u64, AppError> { Ok(x + 1) }

    #[metered(api_calls)]
    pub(crate) fn metered_block(x: u64) -> Result<u64, AppError> { { let y = x + 1; Ok(y) } }

    #[metered(api_calls)]
    pub(crate) fn metered_match(x: u64) -> Result<u64, AppError> { match x { 0 => Ok(1), n => Ok(n + 1) } }

    #[metered(api_calls)]
    pub(crate) fn metered_if(x: u64) -> Result<u64, AppError> { if x == 0 { Ok(1) } else { Ok(x + 1) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) fn stacked_expr(x: u64) -> Result<u64, AppError> { Ok(x + 1) }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) fn stacked_block(x: u64) -> Result<u64, AppError> { { let y = x + 1; Ok(y) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) fn stacked_match(x: u64) -> Result<u64, AppError> { match x { 0 => Ok(1), n => Ok(n + 1) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) fn stacked_if(x: u64) -> Result<u64, AppError> { if x == 0 { Ok(1) } else { Ok(x + 1) } }

    #[entitled("export")]
    pub(crate) async fn async_entitled_expr(x: u64) -> Result<u64, AppError> { Ok(ready(x).await + 1) }

    #[entitled("export")]
    pub(crate) async fn async_entitled_block(x: u64) -> Result<u64, AppError> { { let y = ready(x).await; Ok(y + 1) } }

    #[entitled("export")]
    pub(crate) async fn async_entitled_match(x: u64) -> Result<u64, AppError> { match ready(x).await { 0 => Ok(1), n => Ok(n + 1) } }

    #[entitled("export")]
    pub(crate) async fn async_entitled_if(x: u64) -> Result<u64, AppError> { if ready(x).await == 0 { Ok(1) } else { Ok(x + 1) } }

    #[metered(api_calls)]
    pub(crate) async fn async_metered_expr(x: u64) -> Result<u64, AppError> { Ok(ready(x).await + 1) }

    #[metered(api_calls)]
    pub(crate) async fn async_metered_block(x: u64) -> Result<u64, AppError> { { let y = ready(x).await; Ok(y + 1) } }

    #[metered(api_calls)]
    pub(crate) async fn async_metered_match(x: u64) -> Result<u64, AppError> { match ready(x).await { 0 => Ok(1), n => Ok(n + 1) } }

    #[metered(api_calls)]
    pub(crate) async fn async_metered_if(x: u64) -> Result<u64, AppError> { if ready(x).await == 0 { Ok(1) } else { Ok(x + 1) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) async fn async_stacked_expr(x: u64) -> Result<u64, AppError> { Ok(ready(x).await + 1) }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) async fn async_stacked_block(x: u64) -> Result<u64, AppError> { { let y = ready(x).await; Ok(y + 1) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) async fn async_stacked_match(x: u64) -> Result<u64, AppError> { match ready(x).await { 0 => Ok(1), n => Ok(n + 1) } }

    #[entitled("export")]
    #[metered(api_calls, on = call)]
    pub(crate) async fn async_stacked_if(x: u64) -> Result<u64, AppError> { if ready(x).await == 0 { Ok(1) } else { Ok(x + 1) } }
}

// ---- the same shapes over several lines, as rustfmt writes them ------------

#[entitled("export")]
fn entitled_expr(x: u64) -> Result<u64, AppError> {
    Ok(x + 1)
}

#[entitled("export")]
fn entitled_block(x: u64) -> Result<u64, AppError> {
    {
        let y = x + 1;
        Ok(y)
    }
}

#[entitled("export")]
fn entitled_match(x: u64) -> Result<u64, AppError> {
    match x {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[entitled("export")]
fn entitled_if(x: u64) -> Result<u64, AppError> {
    if x == 0 { Ok(1) } else { Ok(x + 1) }
}

#[metered(api_calls)]
fn metered_expr(x: u64) -> Result<u64, AppError> {
    Ok(x + 1)
}

#[metered(api_calls)]
fn metered_block(x: u64) -> Result<u64, AppError> {
    {
        let y = x + 1;
        Ok(y)
    }
}

#[metered(api_calls)]
fn metered_match(x: u64) -> Result<u64, AppError> {
    match x {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[metered(api_calls)]
fn metered_if(x: u64) -> Result<u64, AppError> {
    if x == 0 { Ok(1) } else { Ok(x + 1) }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
fn stacked_expr(x: u64) -> Result<u64, AppError> {
    Ok(x + 1)
}

#[entitled("export")]
#[metered(api_calls, on = call)]
fn stacked_block(x: u64) -> Result<u64, AppError> {
    {
        let y = x + 1;
        Ok(y)
    }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
fn stacked_match(x: u64) -> Result<u64, AppError> {
    match x {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
fn stacked_if(x: u64) -> Result<u64, AppError> {
    if x == 0 { Ok(1) } else { Ok(x + 1) }
}

#[entitled("export")]
async fn async_entitled_expr(x: u64) -> Result<u64, AppError> {
    Ok(ready(x).await + 1)
}

#[entitled("export")]
async fn async_entitled_block(x: u64) -> Result<u64, AppError> {
    {
        let y = ready(x).await;
        Ok(y + 1)
    }
}

#[entitled("export")]
async fn async_entitled_match(x: u64) -> Result<u64, AppError> {
    match ready(x).await {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[entitled("export")]
async fn async_entitled_if(x: u64) -> Result<u64, AppError> {
    if ready(x).await == 0 {
        Ok(1)
    } else {
        Ok(x + 1)
    }
}

#[metered(api_calls)]
async fn async_metered_expr(x: u64) -> Result<u64, AppError> {
    Ok(ready(x).await + 1)
}

#[metered(api_calls)]
async fn async_metered_block(x: u64) -> Result<u64, AppError> {
    {
        let y = ready(x).await;
        Ok(y + 1)
    }
}

#[metered(api_calls)]
async fn async_metered_match(x: u64) -> Result<u64, AppError> {
    match ready(x).await {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[metered(api_calls)]
async fn async_metered_if(x: u64) -> Result<u64, AppError> {
    if ready(x).await == 0 {
        Ok(1)
    } else {
        Ok(x + 1)
    }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
async fn async_stacked_expr(x: u64) -> Result<u64, AppError> {
    Ok(ready(x).await + 1)
}

#[entitled("export")]
#[metered(api_calls, on = call)]
async fn async_stacked_block(x: u64) -> Result<u64, AppError> {
    {
        let y = ready(x).await;
        Ok(y + 1)
    }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
async fn async_stacked_match(x: u64) -> Result<u64, AppError> {
    match ready(x).await {
        0 => Ok(1),
        n => Ok(n + 1),
    }
}

#[entitled("export")]
#[metered(api_calls, on = call)]
async fn async_stacked_if(x: u64) -> Result<u64, AppError> {
    if ready(x).await == 0 {
        Ok(1)
    } else {
        Ok(x + 1)
    }
}

type Shape = fn(u64) -> Result<u64, AppError>;
type AsyncShape = fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, AppError>>>>;

/// Every sync shape, with whether it is metered.
const SYNC: [(Shape, bool); 24] = [
    (one_line::entitled_expr, false),
    (one_line::entitled_block, false),
    (one_line::entitled_match, false),
    (one_line::entitled_if, false),
    (one_line::metered_expr, true),
    (one_line::metered_block, true),
    (one_line::metered_match, true),
    (one_line::metered_if, true),
    (one_line::stacked_expr, true),
    (one_line::stacked_block, true),
    (one_line::stacked_match, true),
    (one_line::stacked_if, true),
    (entitled_expr, false),
    (entitled_block, false),
    (entitled_match, false),
    (entitled_if, false),
    (metered_expr, true),
    (metered_block, true),
    (metered_match, true),
    (metered_if, true),
    (stacked_expr, true),
    (stacked_block, true),
    (stacked_match, true),
    (stacked_if, true),
];

/// Every async shape, with whether it is metered.
const ASYNC: [(AsyncShape, bool); 24] = [
    (|x| Box::pin(one_line::async_entitled_expr(x)), false),
    (|x| Box::pin(one_line::async_entitled_block(x)), false),
    (|x| Box::pin(one_line::async_entitled_match(x)), false),
    (|x| Box::pin(one_line::async_entitled_if(x)), false),
    (|x| Box::pin(one_line::async_metered_expr(x)), true),
    (|x| Box::pin(one_line::async_metered_block(x)), true),
    (|x| Box::pin(one_line::async_metered_match(x)), true),
    (|x| Box::pin(one_line::async_metered_if(x)), true),
    (|x| Box::pin(one_line::async_stacked_expr(x)), true),
    (|x| Box::pin(one_line::async_stacked_block(x)), true),
    (|x| Box::pin(one_line::async_stacked_match(x)), true),
    (|x| Box::pin(one_line::async_stacked_if(x)), true),
    (|x| Box::pin(async_entitled_expr(x)), false),
    (|x| Box::pin(async_entitled_block(x)), false),
    (|x| Box::pin(async_entitled_match(x)), false),
    (|x| Box::pin(async_entitled_if(x)), false),
    (|x| Box::pin(async_metered_expr(x)), true),
    (|x| Box::pin(async_metered_block(x)), true),
    (|x| Box::pin(async_metered_match(x)), true),
    (|x| Box::pin(async_metered_if(x)), true),
    (|x| Box::pin(async_stacked_expr(x)), true),
    (|x| Box::pin(async_stacked_block(x)), true),
    (|x| Box::pin(async_stacked_match(x)), true),
    (|x| Box::pin(async_stacked_if(x)), true),
];

fn serial() -> MutexGuard<'static, ()> {
    testing::serial()
}

fn recorded() -> u64 {
    testing::recorded(catalog(), "api_calls").expect("dimension")
}

fn every_shape(x: u64) -> Vec<Result<u64, AppError>> {
    let sync = SYNC.iter().map(|(f, _)| f(x));
    let async_ = ASYNC.iter().map(|(f, _)| block_on(f(x)));
    sync.chain(async_).collect()
}

fn metered_shapes() -> u64 {
    let metered = SYNC.iter().map(|s| s.1).chain(ASYNC.iter().map(|s| s.1));
    metered.map(u64::from).sum()
}

#[test]
fn every_body_shape_is_denied_before_verification() {
    let _serial = serial();
    testing::deactivate();
    let before = recorded();
    for (n, result) in every_shape(4).into_iter().enumerate() {
        match result {
            Err(AppError::Denied(d)) => assert_eq!(d.reason(), DenialReason::NotVerified, "#{n}"),
            other => panic!("shape #{n}: expected a denial, got {other:?}"),
        }
    }
    assert_eq!(recorded(), before);
}

#[test]
fn every_body_shape_runs_and_counts_once_granted() {
    let _serial = serial();
    testing::activate(catalog(), "usage").expect("activate");
    let before = recorded();
    for (n, result) in every_shape(4).into_iter().enumerate() {
        assert_eq!(result, Ok(5), "shape #{n}");
    }
    for (n, result) in every_shape(0).into_iter().enumerate() {
        assert_eq!(result, Ok(1), "shape #{n}");
    }
    assert_eq!(recorded() - before, 2 * metered_shapes());
}
