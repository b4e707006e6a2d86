//! marketgate depended on as `mg`: every macro takes `crate = "mg"`.
#![deny(warnings, clippy::all, clippy::pedantic)]

/// Errors of this crate.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub mg::Denied);

impl From<mg::Denied> for Refused {
    fn from(d: mg::Denied) -> Self {
        Refused(d)
    }
}

/// A paid feature, metered.
///
/// # Errors
/// When not entitled.
#[mg::entitled("export", crate = "mg")]
#[mg::metered(api_calls, crate = "mg")]
pub fn export(n: u32) -> Result<u32, Refused> {
    Ok(n)
}

/// The catalog, through the renamed crate.
#[must_use]
pub fn catalog() -> &'static mg::Catalog {
    mg::catalog!(crate = "mg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_crate_paths_work() {
        let _serial = mg::testing::serial();
        mg::testing::deactivate();
        assert!(export(1).is_err());
        mg::testing::activate(catalog(), "usage").expect("activate");
        let before = mg::testing::recorded(catalog(), "api_calls").expect("dimension");
        assert_eq!(export(4), Ok(4));
        assert_eq!(
            mg::testing::recorded(catalog(), "api_calls").expect("dimension") - before,
            1
        );
    }
}
