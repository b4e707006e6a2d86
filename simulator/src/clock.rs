//! The simulated wall clock every time rule uses.
//!
//! Tests set and advance it so hours pass instantly: `MeterUsage`'s hour
//! rounding and 6-hour window, task start times, License Manager's 60-minute
//! provisional consumptions and license validity all read this clock, never
//! the system's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A shared handle to the simulated clock. Clones see the same time.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use marketgate_simulator::Clock;
///
/// let clock = Clock::new(UNIX_EPOCH + Duration::from_secs(1_795_694_400), true);
/// clock.advance(Duration::from_secs(3 * 3600));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_795_705_200));
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// The simulated time at `anchor`.
    base: SystemTime,
    /// When `base` was taken; the clock runs from here unless frozen.
    anchor: Instant,
    frozen: bool,
}

impl State {
    fn now(&self) -> SystemTime {
        if self.frozen {
            self.base
        } else {
            self.base + self.anchor.elapsed()
        }
    }
}

impl Clock {
    /// A clock showing `start`; frozen clocks only move when set or advanced,
    /// running ones also move at real speed.
    #[must_use]
    pub fn new(start: SystemTime, frozen: bool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                base: start,
                anchor: Instant::now(),
                frozen,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain values that are always consistent, so a
        // panic elsewhere while holding the lock cannot corrupt it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The simulated time now.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.state().now()
    }

    /// Jumps to `time` (backwards too); a running clock keeps running from
    /// there.
    pub fn set(&self, time: SystemTime) {
        let mut state = self.state();
        state.base = time;
        state.anchor = Instant::now();
    }

    /// Moves the clock forward by `by` at once.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state();
        state.base = state.now() + by;
        state.anchor = Instant::now();
    }

    /// Moves the clock forward by `by` at once, unless it would then show a
    /// time after `latest` (or one `SystemTime` cannot hold); whether it
    /// moved.
    pub(crate) fn advance_until(&self, by: Duration, latest: SystemTime) -> bool {
        let mut state = self.state();
        match state.now().checked_add(by).filter(|t| *t <= latest) {
            Some(time) => {
                state.base = time;
                state.anchor = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Stops the clock where it is; it then only moves when set or advanced.
    pub fn freeze(&self) {
        let mut state = self.state();
        state.base = state.now();
        state.frozen = true;
    }

    /// Lets a frozen clock run at real speed again from where it stands.
    pub fn resume(&self) {
        let mut state = self.state();
        state.base = state.now();
        state.anchor = Instant::now();
        state.frozen = false;
    }

    /// Whether the clock is frozen.
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        self.state().frozen
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn frozen_clock_moves_only_when_told() {
        let clock = Clock::new(at(1000), true);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), at(1000));
        clock.advance(Duration::from_hours(2));
        assert_eq!(clock.now(), at(8200));
        clock.set(at(50));
        assert_eq!(clock.now(), at(50));
    }

    #[test]
    fn running_clock_runs_from_where_it_was_set() {
        let clock = Clock::new(at(1000), false);
        clock.set(at(5000));
        std::thread::sleep(Duration::from_millis(5));
        let now = clock.now();
        assert!(now > at(5000) && now < at(5010), "{now:?}");
        clock.freeze();
        let frozen = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), frozen);
        assert!(clock.is_frozen());
        clock.resume();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.now() > frozen);
    }

    #[test]
    fn advancing_stops_at_the_latest_time() {
        let clock = Clock::new(at(1000), true);
        assert!(clock.advance_until(Duration::from_secs(500), at(1500)));
        assert_eq!(clock.now(), at(1500));
        assert!(!clock.advance_until(Duration::from_secs(1), at(1500)));
        // Past what `SystemTime` holds: refused, not an overflow panic.
        assert!(!clock.advance_until(Duration::MAX, at(u64::MAX >> 2)));
        assert_eq!(clock.now(), at(1500));
    }

    #[test]
    fn clones_share_time() {
        let clock = Clock::new(at(0), true);
        let other = clock.clone();
        other.advance(Duration::from_mins(1));
        assert_eq!(clock.now(), at(60));
    }
}
