//! AWS License Manager, as a contract product's container uses it:
//! `CheckoutLicense`, `ExtendLicenseConsumption`, `CheckInLicense`,
//! `GetLicense` and `ListReceivedLicenses`.
//!
//! The rules, from the service model (the API reference,
//! <https://docs.aws.amazon.com/license-manager/latest/APIReference/Welcome.html>)
//! and the seller guide's "Contract pricing for container products with AWS
//! License Manager"
//! (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-license-manager-integration.html>):
//! - A checkout names the license by `ProductSKU` and issuer
//!   `KeyFingerprint`; when several licenses match, the newest usable one is
//!   used (<https://github.com/aws/aws-sdk/issues/506>). Each requested
//!   entitlement is allowed when the license has it with the same unit and,
//!   for counted units, enough of `MaxCount` is free (or `Overage` is on).
//!   None allowed, or seats exhausted, is `NoEntitlementsAllowedException`.
//! - `PROVISIONAL` holds what it took for 60 minutes ("A floating checkout is
//!   automatically checked back in after 60 minutes"),
//!   `ExtendLicenseConsumption` keeps it "for another 60 minutes",
//!   `CheckInLicense` returns it.
//! - `PERPETUAL` is the drawdown model ("Counted units are drawn
//!   permanently"): the consumption never expires, so its response and
//!   `SignedToken` carry no expiration, its units stay drawn and further
//!   checkouts are refused with `NoEntitlementsAllowedException` once
//!   `MaxCount` is reached (unless `Overage`). Extending it is a
//!   `ValidationException` and checking it in a `ConflictException`,
//!   whatever the entitlement's `AllowCheckIn` (AWS documents neither
//!   error; `ConflictException` is the one `CheckInLicense` declares for a
//!   check-in the license does not allow). Checking in a `PROVISIONAL`
//!   checkout holding an entitlement with `AllowCheckIn` false is a
//!   `ConflictException` too.
//! - The inspection view splits each entitlement's use into `drawn`
//!   (`PERPETUAL`, for good) and `held` (`PROVISIONAL`, for now).
//! - Licenses that are not `AVAILABLE`, not yet valid or past their validity
//!   (read as `EXPIRED`) allow nothing: no checkout, and, the simulator's
//!   choice where AWS is silent, no extension of an existing consumption
//!   (`ValidationException`). Such a consumption keeps what it holds until
//!   its expiration.
//!
//! Parts: [`views`] (what the inspection API shows), [`state`] (licenses and
//! consumptions), one module per group of operations ([`checkout`],
//! [`consumption`], [`licenses`]) and [`signed_token`] (the checkout's JWS).

mod checkout;
mod consumption;
mod licenses;
mod signed_token;
pub(crate) mod state;
mod views;

pub(crate) use checkout::checkout_license;
pub(crate) use consumption::{check_in_license, extend_license_consumption};
pub(crate) use licenses::{get_license, list_received_licenses};
pub use views::{
    Checkout, CheckoutState, CheckoutType, EntitlementUsage, HeldEntitlement, LicenseInfo,
    LicensesView,
};
