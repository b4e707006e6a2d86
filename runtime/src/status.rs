//! A snapshot of what the runtime knows, for health endpoints and logs.
//!
//! Written by start-up and background work (never by the hot path), read by
//! [`status`]. Serialises with serde, so a health endpoint can return it as
//! JSON directly.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::aws::AwsFailure;
use crate::aws::credentials::CredentialSource;
use crate::catalog::{Pricing, Tier};
use crate::entitlement;
use crate::region::RegionSource;

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Nothing started yet: every check is denied.
    NotStarted,
    /// Verifying entitlement.
    Starting,
    /// Verified; checks answer from the verified product.
    Running,
    /// Start-up verification failed.
    Refused,
    /// Shutting down: flushing usage, checking in licenses.
    ShuttingDown,
    /// Shut down.
    Stopped,
}

/// The verified product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductStatus {
    /// Local name from the manifest.
    pub name: &'static str,
    /// AWS product code.
    pub code: &'static str,
    /// `paid` or `free`.
    #[serde(serialize_with = "as_display")]
    pub tier: Tier,
    /// Pricing model.
    #[serde(serialize_with = "as_display")]
    pub pricing: Pricing,
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The Region calls go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// Where it was found.
    pub source: RegionSource,
}

/// The credentials AWS calls are signed with (docs/aws-rules.md,
/// "Credentials").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialsStatus {
    /// Which source the AWS SDK's default chain took them from (or
    /// [`CredentialSource::DevStatic`], or [`CredentialSource::Unknown`]
    /// when start-up could not resolve them).
    pub source: CredentialSource,
    /// Whether AWS Marketplace accepts that source for this product:
    /// `Some(true)` for the ECS task role and IRSA (any source for contract
    /// products, whose License Manager calls take any IAM principal),
    /// `Some(false)` for those it is documented to refuse (EKS Pod Identity,
    /// the node role), `None` when it depends on the credentials themselves.
    pub marketplace_accepts: Option<bool>,
    /// The start-up warning about the source, with the fix, if there was one.
    pub warning: Option<String>,
    /// Why start-up could not resolve the credentials, if it could not.
    pub error: Option<String>,
}

/// Where a contract product's license lease stands (docs/contract.md, "The
/// lease").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// A consumption is held and its last extension (or the checkout)
    /// succeeded.
    Held,
    /// A consumption is held, but extending it has failed since: features
    /// stay on until the deadline while the runtime keeps trying.
    HeldPastFailure,
    /// The consumption is held until its deadline and will not be extended
    /// (AWS refused, or the license changed): then it is checked in and a
    /// new checkout decides what is granted.
    Ending,
    /// The deadline passed without renewal: every feature of the license is
    /// off while the runtime tries to check a license out again.
    Lapsed,
    /// Checked in at shutdown.
    CheckedIn,
}

/// The License Manager consumption this process holds (contract products).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenseStatus {
    /// Where the lease stands.
    pub state: LeaseState,
    /// The license.
    pub license_arn: String,
    /// The consumption token, shortened (enough to match a log line).
    pub consumption: Option<String>,
    /// When the consumption expires unless extended (as AWS wrote it).
    pub expiration: String,
    /// Until when (epoch seconds, this machine's clock) the features are
    /// held without a renewal: the expiry less a safety margin.
    pub deadline: Option<u64>,
    /// Entitlements AWS allowed at checkout.
    pub entitlements_allowed: Vec<String>,
    /// When the consumption was last extended (epoch seconds).
    pub last_extended: Option<u64>,
    /// The last failure to extend (or, once lapsed, to check out again).
    pub last_extension_error: Option<String>,
    /// Failed tries since the last success.
    pub failed_attempts: u32,
    /// Features are on although extending has failed since the last success.
    pub held_past_failure: bool,
    /// Why the consumption is ending or has lapsed.
    pub reason: Option<String>,
    /// When the lease acts next (an extension, a re-check, a retry, or the
    /// deadline), epoch seconds rounded up; `None` while a call is under way.
    pub next_action_at: Option<u64>,
    /// Since when (epoch seconds) a License Manager call has been under way;
    /// `None` when none is. An old value means a call is hanging.
    pub busy_since: Option<u64>,
    /// When the license was last re-checked (epoch seconds).
    pub last_checked: Option<u64>,
    /// License Manager's status of the license at the last check.
    pub license_state: Option<String>,
}

/// The last result of one AWS operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallStatus {
    /// Whether it succeeded.
    pub ok: bool,
    /// Error code, when it failed.
    pub code: Option<String>,
    /// Error message, when it failed.
    pub message: Option<String>,
    /// When (epoch seconds).
    pub at: u64,
}

/// A usage record waiting for AWS's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingRecord {
    /// The dimension.
    pub dimension: String,
    /// The hour it reports (epoch seconds of the hour's start).
    pub hour: i64,
    /// Units.
    pub quantity: u32,
    /// A request for it may have reached AWS without an answer; it is only
    /// ever resent identically.
    pub unconfirmed: bool,
}

/// Usage that can never be billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnbillableRecord {
    /// The dimension.
    pub dimension: String,
    /// The hour (epoch seconds of the hour's start).
    pub hour: i64,
    /// Units.
    pub quantity: u32,
    /// AWS's error code, or `Unconfirmed`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// The metering pipeline (custom-pricing products).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct MeteringStatus {
    /// The journal file, when one is open.
    pub journal: Option<String>,
    /// Why there is no journal (usage then lives in memory only).
    pub journal_error: Option<String>,
    /// What recovery could not read from a damaged journal.
    pub journal_damage: Option<String>,
    /// Units per dimension not yet in a record (the open hour, carried usage).
    pub unreported: BTreeMap<String, u64>,
    /// Records waiting for AWS.
    pub pending: Vec<PendingRecord>,
    /// Units per dimension AWS confirmed, by this process.
    pub reported: BTreeMap<String, u64>,
    /// Units this process moved to a later hour.
    pub carried: u64,
    /// Usage that can never be billed.
    pub unbillable: Vec<UnbillableRecord>,
    /// When the last flush finished (epoch seconds).
    pub last_flush: Option<u64>,
    /// Checkpoints taken by this process (grows every interval).
    pub checkpoints: u64,
    /// Age in seconds of the oldest unreported unit, counted from the start
    /// of the hour it was recorded in (or first carried to).
    pub oldest_unreported_secs: Option<u64>,
    /// How long usage that is due (its hour ended) has waited for a report,
    /// in seconds; reset by every successful report.
    pub overdue_secs: Option<u64>,
    /// The bound on `overdue_secs` before metered calls are denied: the
    /// product's `max-unreported`, or less if the deployment shortened it.
    pub max_unreported_secs: u64,
    /// Whether metered calls are denied because reporting is blocked.
    pub reporting_blocked: bool,
}

/// A snapshot of the runtime's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Where the runtime is in its life.
    pub state: RunState,
    /// The verified product, once verified.
    pub product: Option<ProductStatus>,
    /// The Region AWS calls go to.
    pub region: Option<RegionStatus>,
    /// Where the credentials AWS calls are signed with came from.
    pub credentials: Option<CredentialsStatus>,
    /// Features granted now.
    pub features: Vec<&'static str>,
    /// Dimensions that may be metered now.
    pub dimensions: Vec<&'static str>,
    /// Units recorded per dimension since the process started (reported to
    /// AWS or not).
    pub recorded: BTreeMap<&'static str, u64>,
    /// The license consumption held, for contract products.
    pub license: Option<LicenseStatus>,
    /// The metering pipeline, for custom-pricing products.
    pub metering: Option<MeteringStatus>,
    /// Last result per AWS operation.
    pub aws: BTreeMap<&'static str, CallStatus>,
    /// Why the runtime is degraded, if it is (empty when healthy).
    pub degraded: Vec<String>,
    /// Why start-up was refused, if it was.
    pub refusal: Option<String>,
    /// Built with the `testing` feature (entitlements can be granted by code).
    pub testing_build: bool,
    /// Built with the `dev` feature (`MARKETGATE_ENDPOINT` is honoured).
    pub dev_build: bool,
}

#[derive(Debug)]
struct Inner {
    state: RunState,
    product: Option<ProductStatus>,
    region: Option<RegionStatus>,
    credentials: Option<CredentialsStatus>,
    license: Option<LicenseStatus>,
    metering: Option<MeteringStatus>,
    aws: BTreeMap<&'static str, CallStatus>,
    degraded: BTreeMap<&'static str, String>,
    refusal: Option<String>,
}

static INNER: Mutex<Inner> = Mutex::new(Inner {
    state: RunState::NotStarted,
    product: None,
    region: None,
    credentials: None,
    license: None,
    metering: None,
    aws: BTreeMap::new(),
    degraded: BTreeMap::new(),
    refusal: None,
});

fn inner() -> MutexGuard<'static, Inner> {
    INNER.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn set_state(state: RunState) {
    inner().state = state;
}

pub(crate) fn set_refusal(reason: String) {
    let mut i = inner();
    i.state = RunState::Refused;
    i.refusal = Some(reason);
}

pub(crate) fn set_product(product: ProductStatus) {
    inner().product = Some(product);
}

pub(crate) fn set_region(region: RegionStatus) {
    inner().region = Some(region);
}

pub(crate) fn set_credentials(credentials: CredentialsStatus) {
    inner().credentials = Some(credentials);
}

pub(crate) fn set_metering(metering: MeteringStatus) {
    inner().metering = Some(metering);
}

/// Forgets what the previous run of the runtime left (a new start).
pub(crate) fn reset() {
    let mut i = inner();
    i.license = None;
    i.metering = None;
    i.degraded.clear();
    i.refusal = None;
    i.region = None;
    i.credentials = None;
    i.aws.clear();
}

pub(crate) fn update_license(update: impl FnOnce(&mut Option<LicenseStatus>)) {
    update(&mut inner().license);
}

/// The lease's state, if a license is held or was.
pub(crate) fn lease_state() -> Option<LeaseState> {
    inner().license.as_ref().map(|l| l.state)
}

pub(crate) fn record_call(operation: &'static str, result: Result<(), &AwsFailure>) {
    let status = match result {
        Ok(()) => CallStatus {
            ok: true,
            code: None,
            message: None,
            at: now_secs(),
        },
        Err(f) => CallStatus {
            ok: false,
            code: f.code.clone(),
            message: Some(f.message.clone()),
            at: now_secs(),
        },
    };
    inner().aws.insert(operation, status);
}

/// Marks the runtime degraded for `key` (replacing an earlier reason).
pub(crate) fn degrade(key: &'static str, reason: String) {
    inner().degraded.insert(key, reason);
}

/// The keys of the reasons the runtime is degraded now (a fixed set of
/// names in the code: `journal`, `metering`, `license`, ...).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn degraded_keys() -> Vec<&'static str> {
    inner().degraded.keys().copied().collect()
}

/// Clears the degraded reason for `key`.
pub(crate) fn recover(key: &'static str) {
    inner().degraded.remove(key);
}

/// A snapshot of the runtime's state.
///
/// ```
/// let status = marketgate::status();
/// // Nothing verified yet in a plain test process: every check is denied.
/// assert!(status.features.is_empty());
/// ```
#[must_use]
pub fn status() -> Status {
    let recorded = entitlement::catalog().map_or_else(BTreeMap::new, |catalog| {
        let totals = crate::counters::totals();
        catalog
            .dimensions()
            .iter()
            .zip(totals)
            .map(|(d, t)| (*d, t))
            .collect()
    });
    let (features, dimensions) = match entitlement::catalog() {
        Some(catalog) => (
            catalog.feature_names(entitlement::granted()).collect(),
            catalog
                .dimensions()
                .iter()
                .enumerate()
                .filter(|(i, _)| entitlement::dimension_enabled(*i))
                .map(|(_, d)| *d)
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let i = inner();
    Status {
        state: i.state,
        product: i.product.clone(),
        region: i.region.clone(),
        credentials: i.credentials.clone(),
        features,
        dimensions,
        recorded,
        license: i.license.clone(),
        metering: i.metering.clone(),
        aws: i.aws.clone(),
        degraded: i.degraded.values().cloned().collect(),
        refusal: i.refusal.clone(),
        testing_build: cfg!(feature = "testing"),
        dev_build: cfg!(feature = "dev"),
    }
}
