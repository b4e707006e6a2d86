//! Wall-clock time in whole hours, the unit AWS Marketplace meters in.
//!
//! `MeterUsage` timestamps are rounded down to the hour, and AWS accepts one
//! record per dimension per hour per task
//! (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-metering-meterusage.html>).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;

/// Seconds in an hour.
pub(crate) const HOUR: i64 = 3600;

/// The wall clock. Production uses `SystemTime::now`; `dev` builds may
/// substitute the simulator's clock.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The hour (epoch seconds of its start) that `t` falls in.
pub(crate) fn hour_of(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    secs - secs.rem_euclid(HOUR)
}

pub(crate) fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn at_hour(hour: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(hour).unwrap_or(0))
}

pub(crate) fn hour_label(hour: i64) -> String {
    let t = DateTime::from_secs(hour);
    t.fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| hour.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_falls_in_the_hour_that_contains_it() {
        assert_eq!(hour_of(UNIX_EPOCH + Duration::from_secs(7199)), 3600);
        assert_eq!(hour_of(UNIX_EPOCH + Duration::from_hours(2)), 7200);
        assert_eq!(at_hour(3600), UNIX_EPOCH + Duration::from_hours(1));
    }
}
