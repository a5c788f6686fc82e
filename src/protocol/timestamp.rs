//! Timestamps as the wire carries them: ISO 8601 strings.
//!
//! chatkitd writes UTC with a `Z` suffix and microseconds
//! (`2026-11-23T23:06:46.605090Z`), so a browser in another time zone reads the
//! right instant. It reads whatever the reference's parser accepts: an explicit
//! offset, or none at all (then taken as UTC).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A point in time, stored with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds so that it survives a round
    /// trip through JSON and every store unchanged.
    pub fn now() -> Self {
        Timestamp(Utc::now().trunc_subsecs(6))
    }

    /// The wrapped UTC time.
    pub fn as_utc(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses any ISO 8601 form the reference accepts.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(Timestamp(t.with_timezone(&Utc)));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| Timestamp(naive.and_utc()))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.trunc_subsecs(6))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| de::Error::custom(format!("invalid ISO 8601 timestamp: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_utc_with_microseconds() {
        let t = Timestamp::parse("2026-11-23T23:06:46.605090").expect("naive");
        assert_eq!(t.to_string(), "2026-11-23T23:06:46.605090Z");
        let z = Timestamp::parse("2026-11-23T23:06:46Z").expect("zulu");
        assert_eq!(z.to_string(), "2026-11-23T23:06:46.000000Z");
        let off = Timestamp::parse("2026-11-24T01:06:46.5+02:00").expect("offset");
        assert_eq!(off.to_string(), "2026-11-23T23:06:46.500000Z");
        assert!(Timestamp::parse("yesterday").is_none());
    }

    #[test]
    fn now_round_trips_through_json() {
        let t = Timestamp::now();
        let json = serde_json::to_string(&t).expect("serialize");
        let back: Timestamp = serde_json::from_str(&json).expect("parse");
        assert_eq!(t, back);
    }
}
