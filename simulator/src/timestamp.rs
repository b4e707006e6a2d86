//! Time on the wire: Metering's epoch-second numbers, License Manager's
//! ISO-8601 strings, and `MeterUsage`'s hour rounding.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

/// Seconds in an hour: `MeterUsage` rounds timestamps down to the hour.
pub(crate) const HOUR: Duration = Duration::from_hours(1);

/// Whole seconds since the Unix epoch (negative before it), rounded down.
pub(crate) fn epoch_secs(time: SystemTime) -> i64 {
    DateTime::from(time).secs()
}

/// Seconds since the Unix epoch with the fraction, as `awsJson1_1` writes
/// timestamps.
pub(crate) fn epoch_secs_f64(time: SystemTime) -> f64 {
    DateTime::from(time).as_secs_f64()
}

/// How far from the Unix epoch a simulated time may be, either way, in
/// seconds: i64 seconds span ±292 billion years; anything beyond is garbage
/// input.
const MAX_EPOCH_SECS: f64 = 1e15;

/// The latest time the simulator takes or its clock shows.
pub(crate) fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(MAX_EPOCH_SECS)
}

/// The time `secs` seconds after the Unix epoch; fractions are kept (the Rust
/// SDK sends them, botocore sends whole numbers). `None` when not finite or
/// not representable.
pub(crate) fn from_epoch_secs(secs: f64) -> Option<SystemTime> {
    if !secs.is_finite() || secs.abs() > MAX_EPOCH_SECS {
        return None;
    }
    SystemTime::try_from(DateTime::from_secs_f64(secs)).ok()
}

/// The start of the hour `time` falls in, in epoch seconds. AWS: "The
/// timestamp value is rounded down to the hour".
pub(crate) fn hour_start(time: SystemTime) -> i64 {
    let hour = i64::try_from(HOUR.as_secs()).unwrap_or(3600);
    epoch_secs(time).div_euclid(hour) * hour
}

/// A time as License Manager writes it: ISO-8601 UTC, whole seconds
/// (`2026-11-26T12:00:00Z`), which matches the model's `ISO8601DateTime`
/// pattern.
pub(crate) fn iso8601(time: SystemTime) -> String {
    DateTime::from_secs(epoch_secs(time))
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 date-time with `Z` or a numeric offset.
pub(crate) fn parse_iso8601(text: &str) -> Option<SystemTime> {
    DateTime::from_str(text, Format::DateTimeWithOffset)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
}

/// `time` as epoch seconds for JSON output: a whole number when there is no
/// fraction.
pub(crate) fn epoch_json(time: SystemTime) -> serde_json::Value {
    let exact = epoch_secs_f64(time);
    let whole = epoch_secs(time);
    if time
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0)
    {
        serde_json::Value::from(whole)
    } else {
        serde_json::Value::from(exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn hours_round_down() {
        // 2026-11-26T12:34:56Z
        let t = at(1_795_696_496);
        assert_eq!(hour_start(t), 1_795_694_400);
        assert_eq!(hour_start(at(1_795_694_400)), 1_795_694_400);
        assert_eq!(hour_start(at(1_795_694_399)), 1_795_690_800);
    }

    #[test]
    fn fractional_epoch_seconds_are_kept() {
        let t = from_epoch_secs(1_795_694_399.75).expect("valid");
        assert_eq!(epoch_secs(t), 1_795_694_399);
        assert_eq!(hour_start(t), 1_795_690_800);
        let d = t.duration_since(UNIX_EPOCH).expect("after epoch");
        assert_eq!(d.subsec_millis(), 750);
    }

    #[test]
    fn garbage_epoch_seconds_are_refused() {
        assert!(from_epoch_secs(f64::NAN).is_none());
        assert!(from_epoch_secs(f64::INFINITY).is_none());
        assert!(from_epoch_secs(1e300).is_none());
    }

    #[test]
    fn iso8601_matches_the_license_manager_pattern() {
        assert_eq!(iso8601(at(1_795_696_496)), "2026-11-26T12:34:56Z");
        let with_fraction = at(1_795_696_496) + Duration::from_millis(900);
        assert_eq!(iso8601(with_fraction), "2026-11-26T12:34:56Z");
        assert_eq!(
            parse_iso8601("2026-11-26T12:34:56Z"),
            Some(at(1_795_696_496))
        );
        assert_eq!(
            parse_iso8601("2026-11-26T13:34:56+01:00"),
            Some(at(1_795_696_496))
        );
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn epoch_json_is_whole_when_possible() {
        assert_eq!(epoch_json(at(10)), serde_json::json!(10));
        assert_eq!(
            epoch_json(at(10) + Duration::from_millis(500)),
            serde_json::json!(10.5)
        );
    }
}
