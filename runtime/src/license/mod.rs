//! Contract products: the License Manager consumption a process holds (its
//! lease), and the features its allowed entitlements unlock.
//!
//! A `PROVISIONAL` checkout holds its seat for 60 minutes and is checked back
//! in automatically after that; `ExtendLicenseConsumption` keeps it "for
//! another 60 minutes"; AWS recommends re-checking entitlements every 15
//! minutes
//! (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-license-manager-integration.html>).
//! [`lease`] holds the rules, [`maintain`] carries them out.

mod checkout;
mod clock;
mod consumption;
mod lease;
mod maintain;

use std::time::Duration;

pub(crate) use checkout::{asks_for_counted, checkout, parse_time};
pub(crate) use clock::Monotonic;
pub(crate) use consumption::features_for;
pub(crate) use lease::{Grant, Lease, Policy, Sent};
#[cfg(all(feature = "testing", feature = "dev"))]
pub(crate) use maintain::Turn;
pub(crate) use maintain::{Driver, SharedLease, check_in, check_in_once};

use crate::aws::retry::Backoff;

/// Default interval between license re-checks (AWS recommends 15 minutes).
pub(crate) const LICENSE_CHECK: Duration = Duration::from_mins(15);
/// Default longest interval between consumption extensions. Extensions
/// happen at half the time left before the deadline (27.5 minutes after a
/// 60-minute checkout), so only a shorter interval changes anything.
pub(crate) const LICENSE_EXTEND: Duration = Duration::from_mins(30);
/// Longest allowed extension interval.
pub(crate) const LICENSE_EXTEND_MAX: Duration = Duration::from_mins(45);
/// The longest a provisional consumption lasts from the request that made or
/// extended it: AWS checks it back in after 60 minutes.
pub(crate) const PROVISIONAL_TTL: Duration = Duration::from_hours(1);
/// Taken off the consumption's expiry to give the lease's deadline.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_mins(5);

/// The lease's rules with the given extension and re-check intervals.
pub(crate) fn policy(extend_every: Duration, check_every: Duration) -> Policy {
    Policy {
        margin: DEADLINE_MARGIN,
        ttl_cap: PROVISIONAL_TTL,
        extend_every,
        check_every,
        // After a failed extension: 10 s, 20 s, ... up to 2 minutes apart,
        // some 15 tries before a deadline 27.5 minutes away.
        retry: Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_mins(2),
            budget: Duration::MAX,
        },
        // Once lapsed: 10 s, 20 s, ... up to 5 minutes apart, for as long as
        // the process runs.
        recover: Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_mins(5),
            budget: Duration::MAX,
        },
    }
}
