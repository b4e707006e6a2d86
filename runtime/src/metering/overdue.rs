//! How long due usage has waited for a report: what the `max-unreported`
//! bound is measured against.

use std::time::{Duration, SystemTime};

/// How long usage that is due (its hour ended) has waited for a report.
///
/// The wait runs from the end of the oldest hour still unreported (or from
/// when the wait began, if earlier) until nothing is due and no write-off
/// is left unanswered by a report that went through. One report that goes
/// through does not reset it while older usage still waits; a write-off
/// (unconfirmed, or refused for good) cannot stand in for a report; and
/// the wait also accumulates on the monotonic clock, so setting the wall
/// clock back does not shorten it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Overdue {
    since: Option<SystemTime>,
    waited: Duration,
    /// A record was written off since the last report that went through.
    awaiting_report: bool,
}

impl Overdue {
    /// Updates the wait at `now`, given the end of the oldest hour still due
    /// (if any), whether a report just went through, and the monotonic
    /// time since the last update. Returns the wait.
    pub(super) fn update(
        &mut self,
        now: SystemTime,
        due: Option<SystemTime>,
        reported: bool,
        ticked: Duration,
    ) -> Duration {
        if reported {
            self.awaiting_report = false;
        }
        if due.is_none() && !self.awaiting_report {
            *self = Overdue::default();
            return Duration::ZERO;
        }
        let since = match (self.since, due) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => now,
        };
        self.since = Some(since);
        let wall = now.duration_since(since).unwrap_or_default();
        self.waited = (self.waited + ticked).max(wall);
        self.waited
    }

    /// How long due usage has waited, if any is waiting.
    pub(super) fn waiting(&self) -> Option<Duration> {
        self.since.map(|_| self.waited)
    }

    /// A record was written off: only a report that goes through ends the
    /// wait now.
    pub(super) fn written_off(&mut self) {
        self.awaiting_report = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    #[test]
    fn one_report_that_goes_through_does_not_reset_the_wait_of_older_usage() {
        let mut o = Overdue::default();
        assert_eq!(
            o.update(at(0), Some(at(0)), false, Duration::ZERO),
            Duration::ZERO
        );
        let waited = o.update(at(7200), Some(at(0)), true, Duration::ZERO);
        assert_eq!(waited, Duration::from_hours(2), "older usage still waits");
        // Everything reported: the wait ends.
        assert_eq!(
            o.update(at(7300), None, true, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_write_off_keeps_the_wait_running_until_a_report_goes_through() {
        let mut o = Overdue::default();
        o.update(at(0), Some(at(0)), false, Duration::ZERO);
        o.written_off();
        // Nothing is due any more, but nothing was reported either.
        let waited = o.update(at(9000), None, false, Duration::ZERO);
        assert_eq!(waited, Duration::from_mins(150));
        assert_eq!(
            o.update(at(9100), None, true, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn setting_the_clock_back_does_not_shorten_the_wait() {
        let mut o = Overdue::default();
        o.update(at(0), Some(at(0)), false, Duration::ZERO);
        assert_eq!(
            o.update(at(3600), Some(at(0)), false, Duration::from_hours(1)),
            Duration::from_hours(1)
        );
        // The wall clock is set back an hour; a minute passes.
        let waited = o.update(at(0), Some(at(0)), false, Duration::from_mins(1));
        assert_eq!(waited, Duration::from_mins(61));
    }
}
