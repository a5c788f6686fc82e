//! Timestamps as the wire carries them: ISO 8601 strings.
//!
//! chatkitd writes UTC with a `Z` suffix and microseconds
//! (`2026-11-23T23:06:46.605090Z`), so a browser in another time zone reads the
//! right instant. It reads whatever the reference's parser accepts: an explicit
//! offset, or none at all (then taken as UTC).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The wire form as a chrono pattern (what [`Timestamp`]'s `Display` writes).
const WIRE_PATTERN: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

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
    /// Written field by field: every stored item and streamed event carries
    /// a timestamp, and chrono's `format` interprets its pattern on each call.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            // Outside four digits, ISO 8601 needs a sign: chrono knows how.
            return write!(f, "{}", t.format(WIRE_PATTERN));
        }
        // A leap second is nanosecond 1_000_000_000 and more: kept as chrono
        // writes it, as second 60.
        let (second, micros) = match t.nanosecond() / 1000 {
            m if m >= 1_000_000 => (t.second() + 1, m - 1_000_000),
            m => (t.second(), m),
        };
        write!(
            f,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{second:02}.{micros:06}Z",
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
        )
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
    fn writes_what_chrono_writes() {
        for text in [
            "0000-01-01T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "2026-02-28T09:05:03.000001Z",
            "2016-12-31T23:59:60.250000Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let t = Timestamp::parse(text).expect(text);
            assert_eq!(t.to_string(), t.as_utc().format(WIRE_PATTERN).to_string());
            assert_eq!(t.to_string(), text);
        }
        let far = Timestamp::from(
            NaiveDateTime::parse_from_str("+12345-01-02T03:04:05", "%Y-%m-%dT%H:%M:%S")
                .expect("a five-digit year")
                .and_utc(),
        );
        assert_eq!(
            far.to_string(),
            far.as_utc().format(WIRE_PATTERN).to_string()
        );
    }

    #[test]
    fn now_round_trips_through_json() {
        let t = Timestamp::now();
        let json = serde_json::to_string(&t).expect("serialize");
        let back: Timestamp = serde_json::from_str(&json).expect("parse");
        assert_eq!(t, back);
    }
}
