//! Usage quantities, exact to the millionth.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::constraints;

/// A usage quantity, exact to the millionth (the finest
/// `UsageQuantityAsDecimal` allows). Serializes as a JSON number: whole
/// numbers as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    micros: u64,
}

impl Quantity {
    const SCALE: u64 = 1_000_000;

    /// A whole-number quantity.
    #[must_use]
    pub fn whole(units: u64) -> Self {
        Self {
            micros: units.saturating_mul(Self::SCALE),
        }
    }

    /// The quantity in millionths.
    #[must_use]
    pub fn micros(self) -> u64 {
        self.micros
    }

    /// The quantity when it is a whole number.
    #[must_use]
    pub fn as_whole(self) -> Option<u64> {
        self.micros
            .is_multiple_of(Self::SCALE)
            .then_some(self.micros / Self::SCALE)
    }

    pub(crate) fn from_micros(micros: u64) -> Self {
        Self { micros }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.micros / Self::SCALE, self.micros % Self::SCALE);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(whole) = self.as_whole() {
            return s.serialize_u64(whole);
        }
        // Display gives the exact decimal; f64 parses it to the nearest
        // double, which prints back as the same decimal.
        let value: f64 = self
            .to_string()
            .parse()
            .map_err(serde::ser::Error::custom)?;
        s.serialize_f64(value)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::whole(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                u64::try_from(v)
                    .map(Quantity::whole)
                    .map_err(|_| E::custom("quantity is negative"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                constraints::parse_decimal_quantity(&format!("{v:.6}"))
                    .map(Quantity::from_micros)
                    .ok_or_else(|| E::custom(format!("{v} is not a usage quantity")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_print_and_serialize_exactly() {
        assert_eq!(Quantity::whole(17).to_string(), "17");
        assert_eq!(Quantity::from_micros(17_420_000).to_string(), "17.42");
        assert_eq!(
            serde_json::to_value(Quantity::whole(17)).expect("json"),
            json!(17)
        );
        assert_eq!(
            serde_json::to_value(Quantity::from_micros(17_420_000)).expect("json"),
            json!(17.42)
        );
        let back: Quantity = serde_json::from_value(json!(17.42)).expect("parses");
        assert_eq!(back, Quantity::from_micros(17_420_000));
        let back: Quantity = serde_json::from_value(json!(5)).expect("parses");
        assert_eq!(back.as_whole(), Some(5));
    }
}
