//! The error an annotated function returns when the process is not entitled.

use std::fmt;

/// What a denied call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A feature named in `#[entitled("...")]`.
    Feature(&'static str),
    /// A dimension named in `#[metered(...)]`.
    Dimension(&'static str),
    /// A contract's counted entitlement named in `marketgate::entitlement!`,
    /// `marketgate::checkout!` or `marketgate::draw!`.
    Entitlement(&'static str),
}

/// Why a call was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenialReason {
    /// Entitlement has not been verified in this process: `#[marketgate::main]`
    /// (or [`start`](crate::start)) has not run, or it failed. marketgate
    /// fails closed.
    NotVerified,
    /// The active product is free and the feature is a paid path (no free
    /// product grants it).
    FreeTier {
        /// The active (free) product's name.
        product: &'static str,
    },
    /// The active product does not grant this feature, or does not meter
    /// this dimension.
    NotInProduct {
        /// The active product's name.
        product: &'static str,
    },
    /// The active contract product's license did not allow an entitlement
    /// that unlocks this feature (or the license expired).
    NotLicensed {
        /// The active product's name.
        product: &'static str,
    },
    /// The active contract product's license consumption could not be
    /// renewed with AWS License Manager before its deadline (or it ended and
    /// the license allows nothing now): its features are off until the
    /// runtime, which keeps trying, checks a license out again.
    LicenseNotRenewed {
        /// The active product's name.
        product: &'static str,
    },
    /// The runtime is shutting down: the final usage report is being made
    /// and metered calls are no longer accepted.
    Stopped,
    /// Usage has waited longer than the product's `max-unreported` bound for
    /// a report to AWS (the metering endpoint or the task's credentials are
    /// failing): metered calls are denied until a report succeeds.
    ReportingBlocked,
    /// The call site was compiled against a different `Marketplace.toml` than
    /// the binary's catalog. Start-up refuses this; the check is a second line.
    CatalogMismatch,
    /// Every unit of the counted entitlement is taken: a floating pool has
    /// none free (try again later: units come back when other holders check
    /// them in), or a drawdown balance is used up (the buyer must buy more).
    Exhausted {
        /// The active product.
        product: &'static str,
    },
    /// AWS License Manager could not be reached to take the units (throttled,
    /// unreachable, failing): nothing was taken; try again later.
    Unavailable {
        /// The active product.
        product: &'static str,
    },
    /// A checkout or draw of zero units: there is nothing to take.
    ZeroUnits,
    /// The drawdown journal in the state directory cannot be opened or
    /// written, so drawn units could not be kept across a crash; the log and
    /// `status()` say why. Draws are accepted again once it works.
    JournalUnavailable,
}

/// A call was refused because the process is not entitled to it.
///
/// `#[entitled]` and `#[metered]` return it through `From<Denied>` into the
/// function's error type. It carries no allocation, so it is cheap to create
/// on a denied hot path.
///
/// ```
/// # use marketgate::{Denied, DenialReason, Subject};
/// #[derive(Debug)]
/// enum AppError {
///     NotEntitled(Denied),
/// }
/// impl From<Denied> for AppError {
///     fn from(denied: Denied) -> Self {
///         AppError::NotEntitled(denied)
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Denied {
    subject: Subject,
    reason: DenialReason,
}

impl Denied {
    /// A denial of `subject` for `reason`.
    #[must_use]
    pub const fn new(subject: Subject, reason: DenialReason) -> Self {
        Denied { subject, reason }
    }

    /// The feature or dimension that was asked for.
    #[must_use]
    pub const fn subject(&self) -> Subject {
        self.subject
    }

    /// Why it was refused.
    #[must_use]
    pub const fn reason(&self) -> DenialReason {
        self.reason
    }

    /// The feature or dimension name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self.subject {
            Subject::Feature(name) | Subject::Dimension(name) | Subject::Entitlement(name) => name,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match self.subject {
            Subject::Feature(name) => ("feature", name),
            Subject::Dimension(name) => ("metered dimension", name),
            Subject::Entitlement(name) => ("entitlement", name),
        };
        write!(f, "{kind} `{name}` denied: ")?;
        match self.reason {
            DenialReason::NotVerified => f.write_str(
                "AWS Marketplace entitlement has not been verified in this process \
                 (start-up verification did not run or did not succeed)",
            ),
            DenialReason::FreeTier { product } => write!(
                f,
                "the active product `{product}` is free and `{name}` is a paid feature"
            ),
            DenialReason::NotInProduct { product } => match self.subject {
                Subject::Feature(_) => {
                    write!(f, "the active product `{product}` does not include it")
                }
                Subject::Dimension(_) => {
                    write!(f, "the active product `{product}` does not meter it")
                }
                Subject::Entitlement(_) => {
                    write!(f, "the active product `{product}` does not have it")
                }
            },
            DenialReason::NotLicensed { product } => write!(
                f,
                "the license of product `{product}` does not allow an entitlement that grants it"
            ),
            DenialReason::LicenseNotRenewed { product } => write!(
                f,
                "the license of product `{product}` could not be renewed with AWS License \
                 Manager before its deadline; the runtime keeps trying to check a license out \
                 and restores the feature when one is granted"
            ),
            DenialReason::Stopped => {
                f.write_str("the runtime is shutting down and has sent its final usage report")
            }
            DenialReason::ReportingBlocked => f.write_str(
                "usage reporting to AWS Marketplace is blocked: recorded usage has waited longer \
                 than the product allows for a report (check the metering endpoint and the \
                 task's credentials)",
            ),
            DenialReason::CatalogMismatch => f.write_str(
                "this call site was compiled against a different Marketplace.toml than the \
                 binary's catalog",
            ),
            DenialReason::Exhausted { product } => write!(
                f,
                "every unit the buyer's license of `{product}` has is taken (a floating pool \
                 frees units as holders check them in: try again later; a drawdown balance \
                 comes back only when the buyer buys more)"
            ),
            DenialReason::Unavailable { product } => write!(
                f,
                "AWS License Manager could not be reached to take units of `{product}`'s \
                 license; nothing was taken, try again later"
            ),
            DenialReason::ZeroUnits => f.write_str("asked for zero units"),
            DenialReason::JournalUnavailable => f.write_str(
                "the drawdown journal in the state directory cannot be written, so drawn units \
                 would not survive a crash (see the log or status() for why)",
            ),
        }
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_subject_and_the_reason() {
        let d = Denied::new(
            Subject::Feature("export"),
            DenialReason::FreeTier {
                product: "community",
            },
        );
        assert_eq!(
            d.to_string(),
            "feature `export` denied: the active product `community` is free and `export` is a paid feature"
        );
        let d = Denied::new(
            Subject::Dimension("api_calls"),
            DenialReason::NotInProduct { product: "pro" },
        );
        assert_eq!(
            d.to_string(),
            "metered dimension `api_calls` denied: the active product `pro` does not meter it"
        );
        assert_eq!(d.name(), "api_calls");
    }

    #[test]
    fn is_a_std_error_that_crosses_threads() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<Denied>();
    }
}
