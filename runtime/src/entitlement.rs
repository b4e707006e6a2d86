//! The process's entitlement snapshot: which features are granted and which
//! dimensions may be metered, as bits in atomics.
//!
//! Every `#[entitled]` check is one relaxed load and a bit test; every
//! `#[metered]` check likewise. Only start-up verification and the periodic
//! license refresh write here. Until something writes, every bit is clear:
//! marketgate fails closed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::call_site::{self, CallSite, CatalogMismatch, SiteKind};
use crate::catalog::{Catalog, FEATURE_WORDS, FeatureSet, Pricing, Product, Tier};
use crate::denied::{DenialReason, Denied, Subject};

// Relaxed suffices: a bit publishes nothing but itself, and threads started
// after verification see it through the spawn's happens-before edge.
static GRANTED: [AtomicU64; FEATURE_WORDS] = [const { AtomicU64::new(0) }; FEATURE_WORDS];
static METERED: AtomicU64 = AtomicU64::new(0);

static CATALOG: OnceLock<&'static Catalog> = OnceLock::new();
/// Index + 1 of the active product in the catalog; 0 while none is verified.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether the feature with this index is granted. The hot path of
/// `#[entitled]`: the index is a compile-time constant.
#[inline]
#[must_use]
pub fn feature_granted(index: usize) -> bool {
    GRANTED[index / 64].load(Ordering::Relaxed) & (1 << (index % 64)) != 0
}

/// Whether the dimension with this index may be metered.
#[inline]
#[must_use]
pub fn dimension_enabled(index: usize) -> bool {
    METERED.load(Ordering::Relaxed) & (1 << (index % 64)) != 0
}

/// Errors installing a catalog.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Call sites disagree with the catalog's indices.
    #[error(transparent)]
    Mismatch(#[from] CatalogMismatch),
    /// A different catalog was already installed in this process.
    #[error(
        "a different catalog (from {installed}) is already installed in this process; \
         only one Marketplace.toml can govern a binary"
    )]
    AlreadyInstalled {
        /// Manifest of the catalog already installed.
        installed: &'static str,
    },
}

/// Makes `catalog` the process's catalog after checking every call site
/// against it. Installing the same catalog again is a no-op.
pub(crate) fn install(catalog: &'static Catalog) -> Result<(), InstallError> {
    call_site::verify(catalog)?;
    let installed = *CATALOG.get_or_init(|| catalog);
    if installed.fingerprint() != catalog.fingerprint() {
        return Err(InstallError::AlreadyInstalled {
            installed: installed.manifest_path(),
        });
    }
    Ok(())
}

/// The installed catalog, if any.
pub(crate) fn catalog() -> Option<&'static Catalog> {
    CATALOG.get().copied()
}

/// The verified active product, if any.
pub(crate) fn active_product() -> Option<&'static Product> {
    let index = ACTIVE.load(Ordering::Acquire).checked_sub(1)?;
    catalog()?.products().get(index)
}

/// What a verified product grants. `licensed` is what the license allowed
/// (contract products); other models grant their declared features.
///
/// A free product grants only free features, whatever AWS said: a paid path
/// needs a verified paid product (the README's "The manifest").
pub(crate) fn grants(catalog: &Catalog, product: &Product, licensed: FeatureSet) -> FeatureSet {
    let declared = match product.pricing() {
        Pricing::Contract => licensed.intersection(product.features()),
        Pricing::Hourly | Pricing::Monthly | Pricing::Custom => product.features(),
    };
    match product.tier() {
        Tier::Paid => declared,
        Tier::Free => declared.intersection(catalog.free_features()),
    }
}

/// Publishes a verified product and the features it grants.
pub(crate) fn activate(catalog: &'static Catalog, product: &'static Product, granted: FeatureSet) {
    let Some(index) = catalog
        .products()
        .iter()
        .position(|p| std::ptr::eq(p, product))
    else {
        return;
    };
    let granted = grants(catalog, product, granted);
    for (word, bits) in GRANTED.iter().zip(granted.0) {
        word.store(bits, Ordering::Relaxed);
    }
    // Metered dimensions are always paid paths: a free product meters nothing.
    let dimensions = match product.tier() {
        Tier::Paid => product.dimension_mask(),
        Tier::Free => 0,
    };
    METERED.store(dimensions, Ordering::Relaxed);
    METER_STATE.store(METER_ON, Ordering::Relaxed);
    LICENSE_LAPSED.store(false, Ordering::Relaxed);
    ACTIVE.store(index + 1, Ordering::Release);
}

/// Whether a contract product's lease has lapsed (for [`explain`]).
static LICENSE_LAPSED: AtomicBool = AtomicBool::new(false);

/// Publishes what a contract product's license grants now; `lapsed` when
/// the lease reached its deadline without renewal (nothing is granted).
pub(crate) fn activate_license(
    catalog: &'static Catalog,
    product: &'static Product,
    granted: FeatureSet,
    lapsed: bool,
) {
    let granted = grants(catalog, product, granted);
    LICENSE_LAPSED.store(lapsed, Ordering::Relaxed);
    for (word, bits) in GRANTED.iter().zip(granted.0) {
        word.store(bits, Ordering::Relaxed);
    }
}

/// Whether the license's lease has lapsed.
pub(crate) fn license_lapsed() -> bool {
    LICENSE_LAPSED.load(Ordering::Relaxed)
}

/// Why metering is off while the product meters (for [`explain`]).
const METER_ON: u8 = 0;
const METER_BLOCKED: u8 = 1;
const METER_STOPPED: u8 = 2;
static METER_STATE: AtomicU8 = AtomicU8::new(METER_ON);

/// Stops metering: every `#[metered]` call is denied from now on (the final
/// report is being made).
pub(crate) fn stop_metering() {
    METER_STATE.store(METER_STOPPED, Ordering::Relaxed);
    METERED.store(0, Ordering::Relaxed);
}

/// Usage has gone unreported for longer than the product allows: deny
/// `#[metered]` calls (the hot path reads the same mask as always).
pub(crate) fn block_metering() {
    if METER_STATE
        .compare_exchange(
            METER_ON,
            METER_BLOCKED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        METERED.store(0, Ordering::Relaxed);
    }
}

/// A report went through: allow `#[metered]` calls again (unless metering
/// has stopped for good).
pub(crate) fn unblock_metering() {
    if METER_STATE
        .compare_exchange(
            METER_BLOCKED,
            METER_ON,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
        && let Some(product) = active_product()
        && product.tier() == Tier::Paid
    {
        METERED.store(product.dimension_mask(), Ordering::Relaxed);
    }
}

/// Clears every grant (the process is no longer entitled to anything).
pub(crate) fn revoke_all() {
    for word in &GRANTED {
        word.store(0, Ordering::Relaxed);
    }
    METERED.store(0, Ordering::Relaxed);
    LICENSE_LAPSED.store(false, Ordering::Relaxed);
    ACTIVE.store(0, Ordering::Release);
}

/// The features currently granted.
pub(crate) fn granted() -> FeatureSet {
    let mut words = [0; FEATURE_WORDS];
    for (w, atomic) in words.iter_mut().zip(&GRANTED) {
        *w = atomic.load(Ordering::Relaxed);
    }
    FeatureSet(words)
}

/// Explains why the check at `site` failed. Off the hot path.
#[cold]
#[inline(never)]
#[must_use]
pub fn explain(site: &'static CallSite) -> Denied {
    let subject = match site.kind() {
        SiteKind::Feature => Subject::Feature(site.name()),
        SiteKind::Dimension => Subject::Dimension(site.name()),
    };
    let reason = match (catalog(), active_product()) {
        (Some(catalog), _) if !site.agrees_with(catalog) => DenialReason::CatalogMismatch,
        (Some(catalog), Some(product)) => {
            let product_name = product.name();
            match site.kind() {
                SiteKind::Feature
                    if product.tier() == Tier::Free
                        && !catalog.free_features().contains(site.index()) =>
                {
                    DenialReason::FreeTier {
                        product: product_name,
                    }
                }
                SiteKind::Feature
                    if product.pricing() == Pricing::Contract
                        && product.features().contains(site.index())
                        && license_lapsed() =>
                {
                    DenialReason::LicenseNotRenewed {
                        product: product_name,
                    }
                }
                SiteKind::Feature
                    if product.pricing() == Pricing::Contract
                        && product.features().contains(site.index()) =>
                {
                    DenialReason::NotLicensed {
                        product: product_name,
                    }
                }
                SiteKind::Dimension
                    if product.meters(site.index())
                        && METER_STATE.load(Ordering::Relaxed) == METER_BLOCKED =>
                {
                    DenialReason::ReportingBlocked
                }
                SiteKind::Dimension if product.meters(site.index()) => DenialReason::Stopped,
                SiteKind::Feature | SiteKind::Dimension => DenialReason::NotInProduct {
                    product: product_name,
                },
            }
        }
        _ => DenialReason::NotVerified,
    };
    let denied = Denied::new(subject, reason);
    tracing::debug!(target: "marketgate", site = site.location(), %denied, "call denied");
    denied
}
