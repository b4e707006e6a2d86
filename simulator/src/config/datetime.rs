//! TOML offset date-times (`2026-01-01T00:00:00Z`) as [`SystemTime`], for
//! serde's `with`.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::value::Datetime;

use crate::timestamp;

pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = timestamp::iso8601(*time);
    let value: Datetime = text.parse().map_err(serde::ser::Error::custom)?;
    value.serialize(s)
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let value = Datetime::deserialize(d)?;
    from_toml(&value).map_err(serde::de::Error::custom)
}

fn from_toml(value: &Datetime) -> Result<SystemTime, String> {
    if value.date.is_none() || value.time.is_none() || value.offset.is_none() {
        return Err(format!(
            "{value} needs a date, a time and an offset, e.g. 2026-01-01T00:00:00Z"
        ));
    }
    timestamp::parse_iso8601(&value.to_string())
        .ok_or_else(|| format!("{value} is not a representable time"))
}

pub(super) mod option {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};
    use toml::value::Datetime;

    #[allow(
        clippy::ref_option,
        reason = "serde's `with` passes the field by reference"
    )]
    pub(crate) fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::serialize(time, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let value = Option::<Datetime>::deserialize(d)?;
        value
            .map(|v| super::from_toml(&v).map_err(serde::de::Error::custom))
            .transpose()
    }
}
