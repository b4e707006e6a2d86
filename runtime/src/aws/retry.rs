//! Exponential backoff with jitter, bounded by a time budget.
//!
//! AWS's guidance for RegisterUsage and MeterUsage is to retry transient
//! errors "for up to 30 minutes, with exponential back off"
//! (docs/aws-rules.md, "Retries"); the budget is configurable.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{AwsFailure, Retry};

/// How to retry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    /// First delay.
    pub(crate) initial: Duration,
    /// Longest delay between attempts.
    pub(crate) max: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub(crate) budget: Duration,
}

/// The outcome of retrying.
#[derive(Debug)]
pub(crate) enum Exhausted {
    /// A permanent failure: retrying cannot help.
    Permanent(AwsFailure),
    /// Transient failures until the budget ran out.
    GaveUp {
        /// The last failure.
        last: AwsFailure,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
    },
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        exp.min(self.max).mul_f64(crate::random::jitter())
    }

    /// Runs `call` until it succeeds, fails permanently, or the budget is
    /// spent. `on_failure` sees every failure (for logs and status).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        mut call: F,
        mut on_failure: impl FnMut(&AwsFailure, Option<Duration>),
    ) -> Result<T, Exhausted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsFailure>>,
    {
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(failure) if failure.retry == Retry::Permanent => {
                    on_failure(&failure, None);
                    return Err(Exhausted::Permanent(failure));
                }
                Err(failure) => {
                    let delay = self.delay(attempts);
                    let elapsed = start.elapsed();
                    if elapsed + delay > self.budget {
                        on_failure(&failure, None);
                        return Err(Exhausted::GaveUp {
                            last: failure,
                            attempts,
                            elapsed,
                        });
                    }
                    on_failure(&failure, Some(delay));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(retry: Retry) -> AwsFailure {
        AwsFailure {
            operation: "Op",
            code: Some("ThrottlingException".to_owned()),
            message: "slow down".to_owned(),
            status: Some(400),
            retry,
            delivery: crate::aws::Delivery::Answered,
        }
    }

    #[test]
    fn delays_grow_exponentially_with_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            budget: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = b.delay(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            assert!(b.delay(40) <= Duration::from_secs(1));
        }
    }

    // Paused time: sleeps complete at once and the budget is measured on
    // tokio's clock, so the outcome does not depend on the machine's load.
    #[tokio::test(start_paused = true)]
    async fn retries_transient_until_success_and_stops_on_permanent() {
        let b = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            budget: Duration::from_secs(5),
        };
        let mut calls = 0;
        let mut seen = 0;
        let out = b
            .run(
                || {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 4 {
                            Err(failure(Retry::Transient))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_, _| seen += 1,
            )
            .await;
        assert_eq!(out.ok(), Some(4));
        assert_eq!(seen, 3);

        let out: Result<(), _> = b
            .run(|| async { Err(failure(Retry::Permanent)) }, |_, _| {})
            .await;
        assert!(matches!(out, Err(Exhausted::Permanent(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent() {
        let b = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(10),
            budget: Duration::from_millis(60),
        };
        let out: Result<(), _> = b
            .run(|| async { Err(failure(Retry::Transient)) }, |_, _| {})
            .await;
        match out {
            // Delays of 2.5 to 10 ms within 60 ms: at least 6 attempts, at
            // most 25.
            Err(Exhausted::GaveUp {
                attempts, elapsed, ..
            }) => {
                assert!((6..=25).contains(&attempts), "{attempts}");
                assert!(elapsed <= Duration::from_millis(60), "{elapsed:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
