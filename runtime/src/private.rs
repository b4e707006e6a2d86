//! What macro expansions call. **Not public API**: anything here may change
//! in any release; do not use it directly.

pub use linkme;

pub use crate::call_site::{COMPILED_MANIFESTS, CallSite, CompiledManifest, SiteKind};
pub use crate::catalog::{
    Catalog, EntitlementSpec, FeatureSet, LicenseSpec, Pricing, Product, RegistrationKey, Tier,
    UnitModel,
};
pub use crate::counters::record;
pub use crate::denied::Denied;
pub use crate::entitlement::{dimension_enabled, explain, feature_granted};
pub use crate::start::{main_finish, main_finish_blocking, main_start, main_start_blocking};
pub use crate::usage::record_tagged;
pub use crate::usage::{TagPair, tags};

/// Counted units of contract products (`entitlement!`, `checkout!`,
/// `draw!`).
pub mod units {
    pub use crate::units::{DrawSite, checkout, entitlement};
}

/// Return types that can carry a denial.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a marketgate denial",
    label = "an `#[entitled]` or `#[metered]` function must be able to return a denial",
    note = "return `Result<T, E>` where `E: From<marketgate::Denied>`, \
            or give the value to return when denied: `on_denied = <expr>`"
)]
pub trait CarriesDenial {
    /// The value a denied call returns.
    fn from_denial(denied: Denied) -> Self;
}

impl<T, E: From<Denied>> CarriesDenial for Result<T, E> {
    #[inline]
    fn from_denial(denied: Denied) -> Self {
        Err(E::from(denied))
    }
}

/// Converts a denial into the function's return type.
#[cold]
#[inline(never)]
#[must_use]
pub fn deny<R: CarriesDenial>(denied: Denied) -> R {
    R::from_denial(denied)
}

/// Types a `#[metered(.., quantity = <expr>)]` expression may have.
#[diagnostic::on_unimplemented(
    message = "a `#[metered]` quantity (or a `checkout!`/`draw!` count) must be an unsigned integer, not `{Self}`",
    label = "expected `u64`, `u32`, `u16`, `u8` or `usize`",
    note = "convert explicitly, e.g. `u64::try_from(n).unwrap_or(0)` for a signed count"
)]
pub trait IntoQuantity {
    /// The quantity as units.
    fn into_quantity(self) -> u64;
}

macro_rules! lossless_quantity {
    ($($t:ty),*) => {$(
        impl IntoQuantity for $t {
            #[inline]
            fn into_quantity(self) -> u64 {
                u64::from(self)
            }
        }
    )*};
}
lossless_quantity!(u8, u16, u32, u64);

impl IntoQuantity for usize {
    #[inline]
    fn into_quantity(self) -> u64 {
        // usize is at most 64 bits on every target Rust supports.
        u64::try_from(self).unwrap_or(u64::MAX)
    }
}

/// Evaluates a quantity expression.
#[inline]
pub fn quantity<Q: IntoQuantity>(quantity: Q) -> u64 {
    quantity.into_quantity()
}

/// Wraps a function's return value to ask whether the call succeeded.
///
/// `(&Outcome(&value)).succeeded()` picks [`ResultOutcome`] for a `Result`
/// (success is `Ok`) and falls back to [`AnyOutcome`] for every other type
/// (success is returning at all), by autoref-based method resolution.
pub struct Outcome<'a, T>(pub &'a T);

/// Success of a `Result`: `Ok`.
pub trait ResultOutcome {
    /// Whether the call succeeded.
    fn succeeded(&self) -> bool;
}

impl<T, E> ResultOutcome for Outcome<'_, Result<T, E>> {
    #[inline]
    fn succeeded(&self) -> bool {
        self.0.is_ok()
    }
}

/// Success of any other type: the call returned.
pub trait AnyOutcome {
    /// Whether the call succeeded.
    fn succeeded(&self) -> bool;
}

impl<T> AnyOutcome for &Outcome<'_, T> {
    #[inline]
    fn succeeded(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_borrow)] // written exactly as expansions write it
    fn results_succeed_only_when_ok_and_other_types_always() {
        let ok: Result<u8, ()> = Ok(1);
        let err: Result<u8, ()> = Err(());
        assert!((&Outcome(&ok)).succeeded());
        assert!(!(&Outcome(&err)).succeeded());
        assert!((&Outcome(&5u32)).succeeded());
        assert!((&Outcome(&())).succeeded());
    }

    #[test]
    fn denial_converts_through_from() {
        #[derive(Debug, PartialEq)]
        struct MyError(Denied);
        impl From<Denied> for MyError {
            fn from(d: Denied) -> Self {
                MyError(d)
            }
        }
        let d = Denied::new(
            crate::Subject::Feature("x"),
            crate::DenialReason::NotVerified,
        );
        let r: Result<(), MyError> = deny(d);
        assert_eq!(r, Err(MyError(d)));
    }

    #[test]
    fn quantities_widen_losslessly() {
        assert_eq!(quantity(7u8), 7);
        assert_eq!(quantity(u32::MAX), u64::from(u32::MAX));
        assert_eq!(quantity(usize::MAX), u64::MAX);
    }
}
