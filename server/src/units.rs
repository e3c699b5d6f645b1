//! Sizes and durations as configuration and limits write them (`256KB`,
//! `168h`), read with the one set of unit readers in
//! [`balsa_logql::units`]. The lowest layer of the server: it imports no
//! other module of the crate.

use std::time::Duration;

use serde::Deserialize;

use balsa_logql::units;

/// A size in bytes, written as a number or with a base-2 unit like Loki's
/// flagext.ByteSize: `256KB` = 262144, `100MB`, `1GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = units::UnitError;
    fn from_str(s: &str) -> Result<Self, units::UnitError> {
        units::parse_base2_bytes(s).map(ByteSize)
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl serde::Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&units::prometheus_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(ByteSize(n)),
            NumberOrText::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written like Loki's (Prometheus') durations: `30m`, `168h`,
/// `7d`, `1h30m`; a bare number means seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(Dur(Duration::from_secs(n))),
            NumberOrText::Text(s) => units::parse_duration(&s).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

/// A size or duration as YAML has it: a bare number, or text with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}
