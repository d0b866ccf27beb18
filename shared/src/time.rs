//! Instants, calendar dates and money as the job document stores them.
//!
//! Instants are milliseconds since the Unix epoch (UTC), so they compare and canonicalise as
//! plain integers; money is an integer count of the currency's minor unit, so charges add up
//! exactly. Nothing here reads the clock: callers pass the time in (the core is sans-IO).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

/// Why a date or time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0:?} is not an RFC 3339 date-time (e.g. 2026-11-28T09:30:00Z)")]
    BadInstant(String),
    #[error("{0:?} is not a calendar date (YYYY-MM-DD)")]
    BadDate(String),
    #[error("{0:?} is not a month (YYYY-MM)")]
    BadMonth(String),
    #[error("{0} ms since the epoch is outside the supported range")]
    OutOfRange(i64),
}

/// An instant in UTC, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus a number of milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    fn to_offset(self) -> Result<time::OffsetDateTime, TimeError> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| TimeError::OutOfRange(self.0))
    }

    /// The calendar month (UTC) this instant falls in: what R24 and R25 group by.
    pub fn month(self) -> Result<Month, TimeError> {
        let t = self.to_offset()?;
        Ok(Month {
            year: t.year(),
            month: u8::from(t.month()),
        })
    }

    /// The calendar date (UTC) of this instant.
    pub fn date(self) -> Result<CalendarDate, TimeError> {
        Ok(CalendarDate(self.to_offset()?.date()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_offset().ok().and_then(|t| t.format(&Rfc3339).ok()) {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{}ms", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    /// Parses RFC 3339 (`2026-11-28T09:30:00Z`, any offset); sub-millisecond digits are dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = time::OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| TimeError::BadInstant(s.to_owned()))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(Self)
            .map_err(|_| TimeError::BadInstant(s.to_owned()))
    }
}

/// A calendar date without time, e.g. a purchase date or the end of a warranty.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalendarDate(time::Date);

impl CalendarDate {
    /// The day before, if representable.
    pub fn previous_day(self) -> Option<Self> {
        self.0.previous_day().map(Self)
    }

    /// The month this day falls in.
    pub fn month(self) -> Month {
        Month {
            year: self.0.year(),
            month: u8::from(self.0.month()),
        }
    }

    /// Year, month (1–12) and day (1–31).
    pub fn ymd(self) -> (i32, u8, u8) {
        (self.0.year(), u8::from(self.0.month()), self.0.day())
    }

    pub fn from_ymd(year: i32, month: u8, day: u8) -> Result<Self, TimeError> {
        let m = time::Month::try_from(month)
            .map_err(|_| TimeError::BadDate(format!("{year:04}-{month:02}-{day:02}")))?;
        time::Date::from_calendar_date(year, m, day)
            .map(Self)
            .map_err(|_| TimeError::BadDate(format!("{year:04}-{month:02}-{day:02}")))
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl fmt::Debug for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CalendarDate({self})")
    }
}

impl FromStr for CalendarDate {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TimeError::BadDate(s.to_owned());
        let mut it = s.splitn(3, '-');
        let (y, m, d) = (
            it.next().ok_or_else(bad)?,
            it.next().ok_or_else(bad)?,
            it.next().ok_or_else(bad)?,
        );
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let y: i32 = y.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        let d: u8 = d.parse().map_err(|_| bad())?;
        Self::from_ymd(y, m, d).map_err(|_| bad())
    }
}

impl Serialize for CalendarDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A calendar month, the period of the R24 statistics and the R25 archive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u8,
}

impl Month {
    pub fn new(year: i32, month: u8) -> Result<Self, TimeError> {
        if (1..=12).contains(&month) && (0..=9999).contains(&year) {
            Ok(Self { year, month })
        } else {
            Err(TimeError::BadMonth(format!("{year:04}-{month:02}")))
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// The month before (December of the year before January; year 0 has none before).
    pub fn previous(self) -> Option<Self> {
        if self.month > 1 {
            Some(Self {
                year: self.year,
                month: self.month - 1,
            })
        } else if self.year > 0 {
            Some(Self {
                year: self.year - 1,
                month: 12,
            })
        } else {
            None
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl fmt::Debug for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Month({self})")
    }
}

impl FromStr for Month {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TimeError::BadMonth(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        Self::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).map_err(|_| bad())
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An amount in the minor unit of the branch's currency (cents, fen).
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug,
)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Money as a person writes it: `2500`, `2500.5`, `2500.50` (at most two decimals, the
    /// minor unit), into minor units. What [`Display`](fmt::Display) writes reads back.
    pub fn parse_decimal(s: &str) -> Result<Money, String> {
        let t = s.trim();
        let bad = || format!("{s:?} is not an amount like 2500 or 2500.50");
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(bad());
        }
        if fraction.len() > 2 {
            return Err(format!(
                "{s:?} has more than two decimals: amounts are kept to the cent"
            ));
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
        let minor = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(cents))
            .ok_or_else(|| format!("{s:?} is too large"))?;
        Ok(Money(if negative { -minor } else { minor }))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_written() {
        for (text, minor) in [
            ("2500", 250_000),
            ("2500.5", 250_050),
            ("0.07", 7),
            ("-3.10", -310),
        ] {
            assert_eq!(Money::parse_decimal(text), Ok(Money(minor)), "{text}");
        }
        assert_eq!(Money(250_050).to_string(), "2500.50");
        assert_eq!(
            Money::parse_decimal(&Money(-310).to_string()),
            Ok(Money(-310))
        );
        for bad in [
            "",
            "abc",
            "1.234",
            "1,5",
            ".5",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(Money::parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_month_before_crosses_years() {
        let m = |s: &str| s.parse::<Month>().expect("valid");
        assert_eq!(m("2026-11").previous(), Some(m("2026-10")));
        assert_eq!(m("2026-01").previous(), Some(m("2025-12")));
        assert_eq!(m("0000-01").previous(), None);
    }

    #[test]
    fn timestamp_round_trips_rfc3339_and_knows_its_month() {
        let t: Timestamp = "2026-11-28T09:30:00.250Z".parse().expect("valid");
        assert_eq!(t.to_string(), "2026-11-28T09:30:00.25Z");
        assert_eq!(t.month().expect("in range").to_string(), "2026-11");
        let with_offset: Timestamp = "2026-12-01T01:00:00+08:00".parse().expect("valid");
        assert_eq!(
            with_offset.month().expect("in range").to_string(),
            "2026-11"
        );
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn dates_and_months_are_strict() {
        assert_eq!(
            "2026-02-28"
                .parse::<CalendarDate>()
                .expect("valid")
                .to_string(),
            "2026-02-28"
        );
        assert!("2026-02-30".parse::<CalendarDate>().is_err());
        assert!("2026-2-3".parse::<CalendarDate>().is_err());
        assert!("2026-13".parse::<Month>().is_err());
        assert_eq!("2026-07".parse::<Month>().expect("valid").month(), 7);
    }

    #[test]
    fn money_displays_minor_units() {
        assert_eq!(Money(12345).to_string(), "123.45");
        assert_eq!(Money(-5).to_string(), "-0.05");
    }
}
