//! The time zone a report is printed in.
//!
//! The documents keep UTC instants; people read their own time (DESIGN.md, "Interfaces"). Our
//! users' zones keep one offset all year (China, Hong Kong, Macau, Taiwan, Singapore have no
//! daylight saving), so a zone here is a fixed offset with the name it was given. A zone with
//! daylight saving must be given as the offset in force: this crate carries no tz database.

use std::fmt;

use fieldsync_shared::time::Timestamp;
use time::{OffsetDateTime, UtcOffset};

/// A fixed UTC offset and the name to print it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    offset: UtcOffset,
    name: String,
}

/// Why a zone was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {0:?}: give an offset (+08:00, UTC+8) or one of Asia/Shanghai, Asia/Hong_Kong, Asia/Macau, Asia/Taipei, Asia/Singapore, UTC"
)]
pub struct ZoneError(pub String);

/// Named zones without daylight saving, by IANA name.
const NAMED: [(&str, i8); 7] = [
    ("Asia/Shanghai", 8),
    ("Asia/Chongqing", 8),
    ("Asia/Hong_Kong", 8),
    ("Asia/Macau", 8),
    ("Asia/Taipei", 8),
    ("Asia/Singapore", 8),
    ("UTC", 0),
];

impl Zone {
    /// China Standard Time, the default of our users.
    pub fn china() -> Self {
        Self::named("Asia/Shanghai", 8)
    }

    pub fn utc() -> Self {
        Self::named("UTC", 0)
    }

    fn named(name: &str, hours: i8) -> Self {
        Self {
            offset: UtcOffset::from_hms(hours, 0, 0).unwrap_or(UtcOffset::UTC),
            name: name.to_owned(),
        }
    }

    /// An IANA name of [`NAMED`], or an offset: `+08:00`, `-05:30`, `UTC+8`, `UTC`.
    pub fn parse(s: &str) -> Result<Self, ZoneError> {
        let s = s.trim();
        if let Some((name, hours)) = NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(Self::named(name, *hours));
        }
        let bad = || ZoneError(s.to_owned());
        let rest = s
            .strip_prefix("UTC")
            .or_else(|| s.strip_prefix("GMT"))
            .unwrap_or(s);
        let (sign, rest) = match rest.as_bytes().first() {
            Some(b'+') => (1i8, &rest[1..]),
            Some(b'-') => (-1i8, &rest[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let h: i8 = h.parse().map_err(|_| bad())?;
        let m: i8 = m.parse().map_err(|_| bad())?;
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        let offset = UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())?;
        Ok(Self {
            offset,
            name: format!("UTC{}", fmt_offset(offset)),
        })
    }

    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `2026-11-03 17:00` in this zone; an instant outside the calendar's range is printed as
    /// its milliseconds rather than failing the whole report.
    pub fn format(&self, at: Timestamp) -> String {
        match self.local(at) {
            Some(t) => format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
            None => format!("{} ms", at.as_millis()),
        }
    }

    /// The instant in this zone.
    pub fn local(&self, at: Timestamp) -> Option<OffsetDateTime> {
        let nanos = i128::from(at.as_millis()) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .map(|t| t.to_offset(self.offset))
    }
}

impl fmt::Display for Zone {
    /// `Asia/Shanghai (UTC+08:00)` or `UTC+05:30`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = format!("UTC{}", fmt_offset(self.offset));
        if self.name == offset {
            f.write_str(&offset)
        } else {
            write!(f, "{} ({offset})", self.name)
        }
    }
}

fn fmt_offset(o: UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    let sign = if h < 0 || m < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets_parse_and_anything_else_is_refused() {
        assert_eq!(
            Zone::parse("Asia/Shanghai").map(|z| z.to_string()),
            Ok("Asia/Shanghai (UTC+08:00)".into())
        );
        assert_eq!(
            Zone::parse("+05:30").map(|z| z.to_string()),
            Ok("UTC+05:30".into())
        );
        assert_eq!(
            Zone::parse("UTC-3").map(|z| z.offset().whole_hours()),
            Ok(-3)
        );
        assert_eq!(
            Zone::parse("UTC+0800").map(|z| z.offset().whole_hours()),
            Ok(8)
        );
        for bad in ["Europe/Paris", "+25:00", "8", "", "UTC+x"] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_instant_is_printed_in_the_zone() {
        // 2026-09-23T13:33:20Z.
        let at = Timestamp::from_millis(1_790_170_400_000);
        assert_eq!(Zone::utc().format(at), "2026-09-23 13:33");
        assert_eq!(Zone::china().format(at), "2026-09-23 21:33");
        assert_eq!(Timestamp::from_millis(i64::MAX).as_millis(), i64::MAX);
        assert_eq!(
            Zone::china().format(Timestamp::from_millis(i64::MAX)),
            format!("{} ms", i64::MAX)
        );
    }
}
