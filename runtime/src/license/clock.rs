//! The lease's clock: monotonic time since the runtime started, and waiting
//! on it.
//!
//! Production reads tokio's monotonic clock, so changing the wall clock
//! (or a buyer faking it) moves no deadline. `dev` builds whose wall clock
//! was replaced (tests following the simulator's clock) derive monotonic
//! time from that clock instead, so that a simulated hour passes for the
//! lease as it does for AWS; it never runs backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::time::Clock;

/// How often a wall-clock-derived lease clock is re-read while waiting: the
/// simulated clock jumps when a test moves it.
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// Monotonic time for the lease.
#[derive(Clone)]
pub(crate) enum Monotonic {
    /// tokio's clock (paused and advanced in unit tests).
    Tokio(tokio::time::Instant),
    /// Elapsed time of a replaced wall clock, never going back.
    Follow {
        wall: Clock,
        origin: SystemTime,
        /// The largest reading so far, in nanoseconds.
        last: Arc<AtomicU64>,
    },
}

impl Monotonic {
    /// tokio's monotonic clock, starting now.
    pub(crate) fn tokio() -> Self {
        Monotonic::Tokio(tokio::time::Instant::now())
    }

    /// Monotonic time derived from `wall` (a replaced clock in `dev` builds).
    pub(crate) fn follow(wall: Clock) -> Self {
        let origin = wall();
        Monotonic::Follow {
            wall,
            origin,
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Time since the origin.
    pub(crate) fn now(&self) -> Duration {
        match self {
            Monotonic::Tokio(origin) => origin.elapsed(),
            Monotonic::Follow { wall, origin, last } => {
                let elapsed = wall().duration_since(*origin).unwrap_or_default();
                let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                let newest = last.fetch_max(nanos, Ordering::Relaxed).max(nanos);
                Duration::from_nanos(newest)
            }
        }
    }

    /// Waits until [`Monotonic::now`] reaches `at`.
    pub(crate) async fn sleep_until(&self, at: Duration) {
        match self {
            Monotonic::Tokio(origin) => tokio::time::sleep_until(*origin + at).await,
            Monotonic::Follow { .. } => loop {
                let now = self.now();
                if now >= at {
                    return;
                }
                tokio::time::sleep(at.saturating_sub(now).min(FOLLOW_POLL)).await;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_followed_clock_never_runs_backwards() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
        let wall = Arc::new(Mutex::new(start));
        let read = Arc::clone(&wall);
        let clock = Monotonic::follow(Arc::new(move || *read.lock().expect("clock")));
        assert_eq!(clock.now(), Duration::ZERO);
        *wall.lock().expect("clock") = start + Duration::from_mins(30);
        assert_eq!(clock.now(), Duration::from_mins(30));
        // Set back (NTP step, or a buyer): the lease clock stands still.
        *wall.lock().expect("clock") = start + Duration::from_mins(5);
        assert_eq!(clock.now(), Duration::from_mins(30));
        *wall.lock().expect("clock") = start + Duration::from_mins(31);
        assert_eq!(clock.now(), Duration::from_mins(31));
    }
}
