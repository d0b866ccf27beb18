//! Periodic visits (R26: each customer has a file used for periodic visits): a product's
//! maintenance plan is an interval in months and the date of the next visit. When that date
//! comes (in the branch's calendar) a maintenance job is made for it and the plan moves on.
//! Pure: the edge's worker (`edge::desk::products::run_maintenance`) asks [`due_visit`]
//! with the server's clock.

use crate::time::CalendarDate;

/// The longest interval a plan may have: ten years.
pub const MAX_INTERVAL_MONTHS: u32 = 120;

/// `date` plus `months` calendar months; a day the month lacks becomes its last day (31 Jan
/// plus one month is 28 or 29 Feb). `None` out of range.
pub fn plus_months(date: CalendarDate, months: u32) -> Option<CalendarDate> {
    let (year, month, day) = date.ymd();
    let index = i64::from(year) * 12 + i64::from(month) - 1 + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u8::try_from(index.rem_euclid(12) + 1).ok()?;
    (1..=day)
        .rev()
        .find_map(|d| CalendarDate::from_ymd(year, month, d).ok())
}

/// R26: whether an interval is one a plan may have.
pub fn check_interval(months: u32) -> Result<(), String> {
    if (1..=MAX_INTERVAL_MONTHS).contains(&months) {
        Ok(())
    } else {
        Err(format!(
            "interval_months: {months} is not within 1–{MAX_INTERVAL_MONTHS}"
        ))
    }
}

/// R26: on `today`, the visit a plan due `next_due` every `interval_months` needs, and the
/// plan's next date after it. Nothing before its date. Periods missed while nobody looked
/// (a server stopped for months) give one visit, not one per period: the next date is the
/// first of the plan's dates after today.
pub fn due_visit(
    next_due: CalendarDate,
    interval_months: u32,
    today: CalendarDate,
) -> Option<(CalendarDate, CalendarDate)> {
    if next_due > today || interval_months == 0 {
        return None;
    }
    let mut step = interval_months;
    loop {
        let next = plus_months(next_due, step)?;
        if next > today {
            return Some((next_due, next));
        }
        step = step.checked_add(interval_months)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> CalendarDate {
        s.parse().expect("a date")
    }

    #[test]
    fn r26_months_add_on_the_calendar_and_clamp_to_the_months_end() {
        assert_eq!(plus_months(d("2026-01-15"), 1), Some(d("2026-02-15")));
        assert_eq!(plus_months(d("2026-01-31"), 1), Some(d("2026-02-28")));
        assert_eq!(plus_months(d("2028-01-31"), 1), Some(d("2028-02-29")));
        assert_eq!(plus_months(d("2026-11-30"), 3), Some(d("2027-02-28")));
        assert_eq!(plus_months(d("2026-12-01"), 12), Some(d("2027-12-01")));
        assert_eq!(plus_months(d("2026-05-31"), 0), Some(d("2026-05-31")));
    }

    #[test]
    fn r26_a_visit_is_due_on_its_date_and_the_plan_moves_one_interval_on() {
        // Every 6 months from 2026-12-01.
        assert_eq!(due_visit(d("2026-12-01"), 6, d("2026-11-30")), None);
        assert_eq!(
            due_visit(d("2026-12-01"), 6, d("2026-12-01")),
            Some((d("2026-12-01"), d("2027-06-01")))
        );
        assert_eq!(
            due_visit(d("2026-12-01"), 6, d("2027-05-31")),
            Some((d("2026-12-01"), d("2027-06-01")))
        );
    }

    #[test]
    fn r26_missed_periods_give_one_visit_and_the_next_date_after_today() {
        // Every 3 months from 2026-01-10, nobody looked until 2026-11-20: one visit (the
        // 10 January one), next on 2027-01-10 (April, July, October are past).
        assert_eq!(
            due_visit(d("2026-01-10"), 3, d("2026-11-20")),
            Some((d("2026-01-10"), d("2027-01-10")))
        );
        assert_eq!(due_visit(d("2026-01-10"), 0, d("2026-11-20")), None);
    }

    #[test]
    fn r26_intervals_are_one_month_to_ten_years() {
        assert!(check_interval(0).is_err());
        assert!(check_interval(1).is_ok());
        assert!(check_interval(120).is_ok());
        assert!(check_interval(121).is_err());
    }
}
