//! Helpers shared by the integration tests.

// Shared by several test binaries; each uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

/// Polls `done` every 20 ms until it holds; panics after 30 s with `what`
/// and the runtime's status. Background work is awaited by its effect, never
/// by a fixed sleep, so a slow machine only makes the test slower.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting for {what}; status: {:#?}",
        marketgate::status()
    );
}
