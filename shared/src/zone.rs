//! The time zone a branch or head office reads its calendar in (issue 16): which month a
//! report counts in (R22, R24, R25), which day a follow-up call falls on (R14), and the local
//! time people are shown.
//!
//! A zone is named by its IANA name (`Asia/Shanghai`, `UTC`) or given as a fixed offset
//! (`+08:00`, `UTC+8`). The zone database is compiled into the binary (jiff's bundled tzdb),
//! so the answer does not depend on the machine's `/usr/share/zoneinfo` and nothing here
//! does I/O. The same type decides the calendar at the branch and head office (`timezone` in
//! the config) and the times printed on the customer's report (`fieldsync-report-print`). Instants stay UTC milliseconds
//! everywhere they are stored and signed; a zone only decides how they are read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::{CalendarDate, Month, TimeError, Timestamp};

/// Why a zone name was refused, or an instant could not be read in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "{0:?} is not a time zone: give an IANA name such as Asia/Shanghai, Asia/Hong_Kong \
         or UTC, or an offset such as +08:00 or UTC+8"
    )]
    Unknown(String),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("{0:?} is not a date and time in the zone (YYYY-MM-DDTHH:MM)")]
    BadLocal(String),
}

/// A time zone by IANA name. Compares by name.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    /// UTC: the default where no zone is configured.
    pub fn utc() -> Self {
        Self {
            name: "UTC".to_owned(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// China Standard Time, the zone of our users and the report's default.
    pub fn china() -> Self {
        Self {
            name: "Asia/Shanghai".to_owned(),
            tz: jiff::tz::db()
                .get("Asia/Shanghai")
                .unwrap_or_else(|_| jiff::tz::TimeZone::fixed(jiff::tz::offset(8))),
        }
    }

    /// An IANA name (`Asia/Shanghai`) or a fixed offset (`+08:00`, `-05:30`, `UTC+8`,
    /// `UTC+0800`, `GMT-3`); an offset is named `UTC+08:00`.
    pub fn parse(s: &str) -> Result<Self, ZoneError> {
        s.parse()
    }

    /// The zone's name: the IANA name as configured, or `UTC+08:00` for an offset.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `2026-11-03 17:00` in this zone, as the printed report shows times; an instant outside
    /// the calendar's range is printed as its milliseconds rather than failing the report.
    pub fn format(&self, at: Timestamp) -> String {
        match self.zoned(at) {
            Ok(z) => format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                z.year(),
                z.month(),
                z.day(),
                z.hour(),
                z.minute()
            ),
            Err(_) => format!("{} ms", at.as_millis()),
        }
    }

    /// RFC 3339 in this zone, to the second: `2026-11-03T17:00:00+08:00` (`Z` where the
    /// offset is zero), what the technician's CLI shows; an instant outside the calendar's
    /// range is written as its milliseconds.
    pub fn rfc3339(&self, at: Timestamp) -> String {
        match self.zoned(at) {
            Ok(z) => {
                let seconds = z.offset().seconds();
                let offset = if seconds == 0 {
                    "Z".to_owned()
                } else {
                    fmt_offset(seconds)
                };
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
                    z.year(),
                    z.month(),
                    z.day(),
                    z.hour(),
                    z.minute(),
                    z.second()
                )
            }
            Err(_) => format!("{} ms", at.as_millis()),
        }
    }

    /// The zone with the offset in force at `at`: `Asia/Shanghai (UTC+08:00)`, or just
    /// `UTC+05:30` for an offset.
    pub fn label_at(&self, at: Timestamp) -> String {
        let offset = match self.zoned(at) {
            Ok(z) => format!("UTC{}", fmt_offset(z.offset().seconds())),
            Err(_) => return self.name.clone(),
        };
        if self.name == offset {
            offset
        } else {
            format!("{} ({offset})", self.name)
        }
    }

    /// `2026-11-03T17:00` in this zone: the value of an HTML `datetime-local` field (the
    /// console's forms default to now, read in the branch's zone).
    pub fn local_input(&self, at: Timestamp) -> String {
        self.format(at).replacen(' ', "T", 1)
    }

    /// A wall-clock time typed in this zone (`2026-11-03T17:00`, seconds optional, a space
    /// for the `T` accepted) as an instant. A time a clock change skips or repeats is read
    /// as jiff's "compatible" choice (the later offset for a gap, the earlier for a fold).
    pub fn parse_local(&self, s: &str) -> Result<Timestamp, ZoneError> {
        let typed = s.trim().replacen(' ', "T", 1);
        // A date alone would read as midnight: a time must be typed.
        if !typed.contains('T') {
            return Err(ZoneError::BadLocal(s.to_owned()));
        }
        let civil: jiff::civil::DateTime = typed
            .parse()
            .map_err(|_| ZoneError::BadLocal(s.to_owned()))?;
        let at = self
            .tz
            .to_timestamp(civil)
            .map_err(|_| ZoneError::BadLocal(s.to_owned()))?;
        Ok(Timestamp::from_millis(at.as_millisecond()))
    }

    fn zoned(&self, at: Timestamp) -> Result<jiff::ZonedDateTime, TimeError> {
        jiff::Timestamp::from_millisecond(at.as_millis())
            .map(|t| t.to_zoned_datetime(self.tz.clone()))
            .map_err(|_| TimeError::OutOfRange(at.as_millis()))
    }

    /// The calendar month `at` falls in, read in this zone.
    pub fn month_of(&self, at: Timestamp) -> Result<Month, TimeError> {
        let z = self.zoned(at)?;
        let month = u8::try_from(z.month()).map_err(|_| TimeError::OutOfRange(at.as_millis()))?;
        Month::new(i32::from(z.year()), month)
    }

    /// The calendar date `at` falls on, read in this zone.
    pub fn date_of(&self, at: Timestamp) -> Result<CalendarDate, TimeError> {
        let z = self.zoned(at)?;
        let (month, day) = (
            u8::try_from(z.month()).map_err(|_| TimeError::OutOfRange(at.as_millis()))?,
            u8::try_from(z.day()).map_err(|_| TimeError::OutOfRange(at.as_millis()))?,
        );
        CalendarDate::from_ymd(i32::from(z.year()), month, day)
    }

    /// The first instant of `month` in this zone (midnight of its 1st, local time).
    pub fn month_start(&self, month: Month) -> Result<Timestamp, TimeError> {
        let year =
            i16::try_from(month.year()).map_err(|_| TimeError::BadMonth(month.to_string()))?;
        let m = i8::try_from(month.month()).map_err(|_| TimeError::BadMonth(month.to_string()))?;
        let start = jiff::civil::Date::new(year, m, 1)
            .and_then(|d| d.to_zoned_datetime(self.tz.clone()))
            .map_err(|_| TimeError::BadMonth(month.to_string()))?;
        Ok(Timestamp::from_millis(start.timestamp().as_millisecond()))
    }

    /// The instants of `month` in this zone: `[start, end)`, for range queries.
    pub fn month_range(&self, month: Month) -> Result<(Timestamp, Timestamp), TimeError> {
        let start = self.month_start(month)?;
        let next = if month.month() == 12 {
            Month::new(month.year() + 1, 1)?
        } else {
            Month::new(month.year(), month.month() + 1)?
        };
        Ok((start, self.month_start(next)?))
    }
}

/// `+08:00`, `-05:30` from seconds east of UTC.
fn fmt_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// `+08:00`, `-05:30`, `UTC+8`, `UTC+0800`, `GMT-3` as seconds east of UTC (at most 14 hours).
fn parse_offset(s: &str) -> Option<i32> {
    let rest = s
        .strip_prefix("UTC")
        .or_else(|| s.strip_prefix("GMT"))
        .unwrap_or(s);
    let (sign, rest) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(h) || !all_digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let trimmed = name.trim();
        if let Some(seconds) = parse_offset(trimmed) {
            let offset = jiff::tz::Offset::from_seconds(seconds)
                .map_err(|_| ZoneError::Unknown(name.to_owned()))?;
            return Ok(Self {
                name: format!("UTC{}", fmt_offset(seconds)),
                tz: jiff::tz::TimeZone::fixed(offset),
            });
        }
        // A bare abbreviation (CST, EST) means different zones in different places: refused.
        if !trimmed.contains('/') && !trimmed.eq_ignore_ascii_case("UTC") {
            return Err(ZoneError::Unknown(name.to_owned()));
        }
        let tz = jiff::tz::db()
            .get(trimmed)
            .map_err(|_| ZoneError::Unknown(name.to_owned()))?;
        let name = tz.iana_name().unwrap_or(trimmed).to_owned();
        Ok(Self { name, tz })
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("an RFC 3339 instant")
    }

    #[test]
    fn a_time_typed_in_the_zone_reads_back_as_typed() {
        let shanghai = Zone::china();
        let t = shanghai
            .parse_local("2026-11-20T10:00")
            .expect("a local time");
        assert_eq!(t, at("2026-11-20T02:00:00Z"));
        assert_eq!(shanghai.local_input(t), "2026-11-20T10:00");
        assert_eq!(
            shanghai.parse_local("2026-11-20 10:00:30"),
            Ok(t.plus_millis(30_000))
        );
        for bad in ["", "2026-11-20", "20/11/2026 10:00", "2026-13-01T10:00"] {
            assert!(
                matches!(shanghai.parse_local(bad), Err(ZoneError::BadLocal(_))),
                "{bad}"
            );
        }
    }

    fn shanghai() -> Zone {
        "Asia/Shanghai".parse().expect("in the bundled database")
    }

    #[test]
    fn r24_a_report_signed_at_0730_on_the_first_in_utc8_counts_in_that_month() {
        // 2026-11-30T23:30Z is 07:30 on 1 December in Shanghai.
        let signed = at("2026-11-30T23:30:00Z");
        assert_eq!(
            Zone::utc().month_of(signed),
            Ok("2026-11".parse().expect("month"))
        );
        assert_eq!(
            shanghai().month_of(signed),
            Ok("2026-12".parse().expect("month"))
        );
        assert_eq!(
            shanghai().date_of(signed).map(|d| d.to_string()),
            Ok("2026-12-01".to_owned())
        );
    }

    #[test]
    fn r25_a_month_in_utc8_starts_at_1600_utc_the_day_before() {
        let (start, end) = shanghai()
            .month_range("2026-12".parse().expect("month"))
            .expect("in range");
        assert_eq!(start, at("2026-11-30T16:00:00Z"));
        assert_eq!(end, at("2026-12-31T16:00:00Z"));
        let (start, end) = Zone::utc()
            .month_range("2026-12".parse().expect("month"))
            .expect("in range");
        assert_eq!(
            (start, end),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn an_unknown_zone_is_refused_with_an_example() {
        let err = "Asia/Shangai".parse::<Zone>().expect_err("a typo");
        assert!(err.to_string().contains("Asia/Shangai"), "{err}");
        assert!(err.to_string().contains("Asia/Shanghai"), "{err}");
    }

    #[test]
    fn offsets_parse_and_are_named_by_their_offset() {
        let named = |s: &str| Zone::parse(s).map(|z| z.name().to_owned());
        assert_eq!(named("+05:30"), Ok("UTC+05:30".into()));
        assert_eq!(named("UTC-3"), Ok("UTC-03:00".into()));
        assert_eq!(named("UTC+0800"), Ok("UTC+08:00".into()));
        assert_eq!(named("asia/shanghai"), Ok("Asia/Shanghai".into()));
        for bad in ["+25:00", "8", "", "UTC+x", "CST", "EST", "+8:xx"] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
        let at = at("2026-09-23T13:33:20Z");
        assert_eq!(Zone::utc().format(at), "2026-09-23 13:33");
        assert_eq!(Zone::china().format(at), "2026-09-23 21:33");
        assert_eq!(Zone::china().label_at(at), "Asia/Shanghai (UTC+08:00)");
        assert_eq!(
            Zone::parse("+05:30").expect("offset").label_at(at),
            "UTC+05:30"
        );
        assert_eq!(
            Zone::china().format(Timestamp::from_millis(i64::MAX)),
            format!("{} ms", i64::MAX)
        );
    }

    #[test]
    fn rfc3339_is_written_in_the_zone() {
        let t = at("2026-11-03T09:00:00Z");
        assert_eq!(Zone::china().rfc3339(t), "2026-11-03T17:00:00+08:00");
        assert_eq!(Zone::utc().rfc3339(t), "2026-11-03T09:00:00Z");
        assert_eq!(
            Zone::parse("-05:30").expect("offset").rfc3339(t),
            "2026-11-03T03:30:00-05:30"
        );
        // A zone with daylight saving: the offset in force on the day.
        let new_york: Zone = "America/New_York".parse().expect("known");
        assert_eq!(
            new_york.rfc3339(at("2026-12-01T12:00:00Z")),
            "2026-12-01T07:00:00-05:00"
        );
        assert_eq!(
            new_york.rfc3339(at("2026-07-01T12:00:00Z")),
            "2026-07-01T08:00:00-04:00"
        );
    }

    #[test]
    fn a_month_starts_at_midnight_on_its_first_day() {
        // 2026-11-01T00:00:00Z, 1970-01-01, 2000-03-01 (after a leap day), in UTC.
        for (month, millis) in [
            ("2026-11", 1_793_491_200_000),
            ("1970-01", 0),
            ("2000-03", 951_868_800_000),
        ] {
            let month: Month = month.parse().expect("a month");
            let start = Zone::utc().month_start(month).expect("in range");
            assert_eq!(start.as_millis(), millis, "{month}");
            assert_eq!(start.month(), Ok(month));
        }
    }

    #[test]
    fn a_zone_round_trips_through_its_name() {
        let z: Zone = serde_json::from_str("\"Asia/Shanghai\"").expect("known");
        assert_eq!(
            serde_json::to_string(&z).expect("serialises"),
            "\"Asia/Shanghai\""
        );
        assert!(serde_json::from_str::<Zone>("\"Mars/Olympus\"").is_err());
    }
}
