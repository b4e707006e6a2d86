//! What the buyer bought: each entitlement of the license as `GetLicense`
//! returns it, read at start-up and again by every re-check of the lease
//! (every 15 minutes by default), so an upgrade shows without a restart.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_licensemanager::types::License;

use super::drawdown;
use super::state::{Purchased, Shared, lock, spec_of};
use crate::aws::classify;
use crate::catalog::UnitModel;
use crate::denied::{DenialReason, Denied, Subject};

/// What the buyer bought of one counted entitlement, and what this process
/// uses of it.
///
/// License Manager tells a buyer's software what the license grants
/// (`GetLicense`), not how much other tasks use: `held` and `drawn` count
/// this process only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quantity {
    /// The entitlement's `Name`.
    pub name: &'static str,
    /// The entitlement's `Unit` on the license (`Count`, `Gigabytes`, ...).
    pub unit: String,
    /// How its units are used, as `Marketplace.toml` declares it (`None` for
    /// a tier).
    pub model: Option<UnitModel>,
    /// How many units the buyer bought (`MaxCount`); `None` when the license
    /// gives no limit.
    pub max_count: Option<u64>,
    /// Whether the buyer may use more than `max_count` (`Overage`).
    pub overage: bool,
    /// Whether units can be checked back in (`AllowCheckIn`): true for
    /// floating units, false for drawdown.
    pub allow_check_in: bool,
    /// Floating units this process holds now: its lease's `value` and its
    /// live [`Units`](crate::Units) guards.
    pub held: u64,
    /// Drawdown units this process drew from the balance, over the life of
    /// its state directory's journal.
    pub drawn: u64,
    /// Drawdown units counted by `draw!` and not yet drawn (journaled or
    /// waiting for the next batch).
    pub pending: u64,
    /// When the license was read.
    pub read_at: SystemTime,
}

/// Reads the license once (start-up); a failure leaves the quantities
/// unknown until the lease's next re-check.
pub(super) async fn read_license(shared: &Shared, arn: &str) {
    let answer = shared
        .clients
        .licenses
        .get_license()
        .license_arn(arn)
        .send()
        .await
        .map_err(|e| classify("GetLicense", &e));
    crate::status::record_call("GetLicense", answer.as_ref().map(|_| ()));
    match answer {
        Ok(output) => {
            if let Some(license) = output.license() {
                store(shared, license);
            }
        }
        Err(failure) => tracing::warn!(
            target: "marketgate",
            %failure,
            "cannot read the license's quantities yet; the lease's re-check reads them again"
        ),
    }
}

/// Keeps what `license` says of each entitlement.
pub(super) fn store(shared: &Shared, license: &License) {
    let read: BTreeMap<String, Purchased> = license
        .entitlements()
        .iter()
        .map(|e| {
            (
                e.name().to_owned(),
                Purchased {
                    unit: e.unit().as_str().to_owned(),
                    max_count: e.max_count().and_then(|n| u64::try_from(n).ok()),
                    overage: e.overage().unwrap_or(false),
                    allow_check_in: e.allow_check_in().unwrap_or(false),
                },
            )
        })
        .collect();
    drawdown::set_limits(shared, &read);
    let changed: Vec<String> = {
        let mut slot = lock(&shared.read);
        // Entitlements whose count (or overage) is not what it was.
        let changed = slot.as_ref().map_or_else(Vec::new, |(old, _)| {
            read.iter()
                .filter(|(name, new)| {
                    old.get(*name)
                        .is_none_or(|o| (o.max_count, o.overage) != (new.max_count, new.overage))
                })
                .map(|(name, _)| name.clone())
                .collect()
        });
        *slot = Some((read, (shared.wall)()));
        changed
    };
    if !changed.is_empty() {
        tracing::info!(target: "marketgate", ?changed, "the license's entitlements changed");
        // A drawdown balance the buyer topped up may be drawn from again.
        drawdown::reopen_exhausted(shared, &changed);
    }
}

pub(super) fn quantity(shared: &Shared, name: &'static str) -> Result<Quantity, Denied> {
    let spec = spec_of(shared, name)?;
    let denied = |reason| Denied::new(Subject::Entitlement(name), reason);
    let read = lock(&shared.read);
    let Some((entitlements, read_at)) = read.as_ref() else {
        return Err(denied(DenialReason::Unavailable {
            product: shared.product.name(),
        }));
    };
    let Some(bought) = entitlements.get(name) else {
        return Err(denied(DenialReason::NotLicensed {
            product: shared.product.name(),
        }));
    };
    let lease_value = if spec.held_by_process() {
        spec.value()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let (drawn, pending) = drawdown::totals(shared, name);
    Ok(Quantity {
        name,
        unit: bought.unit.clone(),
        model: spec.model(),
        max_count: bought.max_count,
        overage: bought.overage,
        allow_check_in: bought.allow_check_in,
        held: lease_value + lock(&shared.pool).held(name),
        drawn,
        pending,
        read_at: *read_at,
    })
}
