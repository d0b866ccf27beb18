//! The job page's conflicts (issue 14, point 2; issue 15's coherent merges): each group a
//! merge left unresolved (`job::doc::competing`: the work R7/R10, a part line R10, a part
//! possibly added twice R10/R18), every competing value in plain language (money with its
//! currency, minutes, yes/no) with WHO wrote it (the technician the change names, or the
//! desk person) and WHEN (the change's time in the branch's zone); the resolutions already
//! recorded (who, when, what); and for dispatchers and managers a resolve form per group
//! (its handler is `conflict_forms`, above the job page, which this module is below).
//!
//! The form: per field a radio for each competing value (its value as the form carries it:
//! text as written, minutes as a number, money as a decimal amount, yes/no) or "another
//! value" with a text box; for a possible duplicate, a checkbox per line to keep. A value
//! that does not read (money, minutes, a quantity) is refused in words (`invalid_value`), like
//! the API's refusals (unknown group, a line that is not a duplicate, nothing left to resolve).

use fieldsync_shared::job::Job;
use fieldsync_shared::job::doc::{
    Competing, Resolution, ResolutionRecord, Written, competing, resolutions,
};
use fieldsync_shared::time::Money;

use crate::console::Console;
use crate::console::i18n::Lang;
use crate::console::money;

/// The value of the "another value" radio; the text box is `<field>__other`.
pub(super) const OTHER: &str = "__other";

/// Who wrote a value and when, as people read it.
pub(super) struct Writer {
    pub by: String,
    pub at: String,
}

/// One competing value of a field.
pub(super) struct ValueChoice {
    /// As the form carries it.
    pub value: String,
    /// As people read it.
    pub shown: String,
    pub writers: Vec<Writer>,
}

pub(super) struct FieldView {
    /// The form's name for it (`fault_cause`, `labour_minutes`, `unit_price`, …).
    pub key: &'static str,
    pub label: &'static str,
    /// The unit of "another value" (currency, minutes), or empty.
    pub hint: String,
    pub choices: Vec<ValueChoice>,
}

pub(super) struct LineView {
    pub line: String,
    pub shown: String,
    pub writer: Writer,
}

pub(super) struct GroupView {
    pub group: String,
    /// The id the page's anchors and the tests use (`group` with `:` replaced).
    pub anchor: String,
    pub title: String,
    pub rule: &'static str,
    pub fields: Vec<FieldView>,
    pub lines: Vec<LineView>,
}

pub(super) struct ResolvedView {
    pub at: String,
    pub by: String,
    pub title: String,
    pub what: String,
}

fn field_label(key: &str) -> &'static str {
    match key {
        "fault_cause" => "fault_cause",
        "fault_category" => "fault_category",
        "solution" => "solution",
        "labour_minutes" => "labour_minutes",
        "labour_rate_per_hour" => "labour_rate",
        "part_number" => "part_number",
        "quantity" => "quantity",
        "unit_price" => "unit_price",
        _ => "under_warranty",
    }
}

fn is_money(key: &str) -> bool {
    matches!(key, "labour_rate_per_hour" | "unit_price")
}

/// Digits after the point for `currency` (as `console::money` writes it).
pub(super) fn decimals(currency: &str) -> u32 {
    if matches!(currency, "JPY" | "KRW") {
        0
    } else {
        2
    }
}

/// A field's value as the form carries it, and as people read it.
pub(super) fn value_of(
    lang: Lang,
    key: &str,
    v: &serde_json::Value,
    currency: &str,
) -> (String, String) {
    match v {
        serde_json::Value::Bool(b) => {
            let word = if *b { "yes" } else { "no" };
            (word.to_owned(), lang.t(word).to_owned())
        }
        serde_json::Value::Number(n) if is_money(key) => {
            let minor = n.as_i64().unwrap_or_default();
            let shown = money(Money(minor), currency);
            let plain = shown
                .trim_end_matches(currency)
                .trim()
                .replace(',', "")
                .to_owned();
            (plain, shown)
        }
        serde_json::Value::Number(n) if key == "labour_minutes" => {
            (n.to_string(), format!("{n} {}", lang.t("minutes_unit")))
        }
        serde_json::Value::String(s) => (s.clone(), s.clone()),
        other => (other.to_string(), other.to_string()),
    }
}

fn writer(console: &Console, lang: Lang, w: &Written) -> Writer {
    Writer {
        by: w.by.clone().unwrap_or_else(|| {
            format!(
                "{} {}",
                lang.t("unknown_writer"),
                &w.actor[..w.actor.len().min(8)]
            )
        }),
        at: w
            .at
            .map(|at| console.time(at))
            .unwrap_or_else(|| lang.t("time_unknown").to_owned()),
    }
}

fn group_title(lang: Lang, job: &Job, group: &str) -> String {
    if group == "work" {
        return lang.t("group_work").to_owned();
    }
    if let Some(line) = group.strip_prefix("part:") {
        let name = job
            .parts
            .iter()
            .find(|p| p.id.0 == line)
            .map(|p| format!("{} {}", p.part_number, p.name))
            .unwrap_or_else(|| line.to_owned());
        return format!("{} · {name}", lang.t("group_part"));
    }
    let number = group.strip_prefix("duplicate_part:").unwrap_or(group);
    format!("{} · {number}", lang.t("group_duplicate"))
}

fn line_shown(lang: Lang, job: &Job, line: &str, currency: &str) -> String {
    match job.parts.iter().find(|p| p.id.0 == line) {
        Some(p) => format!(
            "{} {} × {} · {} · {}: {}",
            p.part_number,
            p.name,
            p.quantity,
            money(p.unit_price, currency),
            lang.t("under_warranty"),
            lang.t(if p.warranty { "yes" } else { "no" })
        ),
        None => line.to_owned(),
    }
}

/// The page's view of what is unresolved in `doc` and what was resolved.
pub(super) fn views(
    console: &Console,
    lang: Lang,
    job: &Job,
    doc: &automerge::Automerge,
) -> (Vec<GroupView>, Vec<ResolvedView>) {
    let currency = job.billing.currency.as_str();
    let groups = competing(doc)
        .into_iter()
        .map(|c: Competing| {
            let u = &c.unresolved;
            let fields = c
                .values
                .iter()
                .map(|f| {
                    let mut choices: Vec<ValueChoice> = Vec::new();
                    for w in &f.values {
                        let (value, shown) = value_of(lang, f.key, &w.value, currency);
                        let who = writer(console, lang, w);
                        match choices.iter_mut().find(|c| c.value == value) {
                            Some(c) => c.writers.push(who),
                            None => choices.push(ValueChoice {
                                value,
                                shown,
                                writers: vec![who],
                            }),
                        }
                    }
                    FieldView {
                        key: f.key,
                        label: lang.t(field_label(f.key)),
                        hint: if is_money(f.key) {
                            currency.to_owned()
                        } else if f.key == "labour_minutes" {
                            lang.t("minutes_unit").to_owned()
                        } else if f.key == "warranty" {
                            format!("{} / {}", lang.t("yes"), lang.t("no"))
                        } else {
                            String::new()
                        },
                        choices,
                    }
                })
                .collect();
            let lines = c
                .added
                .iter()
                .map(|l| LineView {
                    line: l.line.0.clone(),
                    shown: line_shown(lang, job, &l.line.0, currency),
                    writer: writer(console, lang, &l.added),
                })
                .collect();
            GroupView {
                group: u.group.clone(),
                anchor: format!("group-{}", u.group.replace([':', ' '], "-")),
                title: group_title(lang, job, &u.group),
                rule: u.rule,
                fields,
                lines,
            }
        })
        .collect();
    let resolved = resolutions(doc)
        .iter()
        .map(|r| resolved_view(console, lang, job, r))
        .collect();
    (groups, resolved)
}

fn resolved_view(console: &Console, lang: Lang, job: &Job, r: &ResolutionRecord) -> ResolvedView {
    let currency = job.billing.currency.as_str();
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| lang.t("cleared").to_owned());
    let what = match &r.resolution {
        Resolution::Work {
            fault_cause,
            fault_category,
            solution,
            labour,
        } => format!(
            "{}: {} · {}: {} · {}: {} · {}: {} {} · {}: {}",
            lang.t("fault_cause"),
            text(fault_cause),
            lang.t("fault_category"),
            text(fault_category),
            lang.t("solution"),
            text(solution),
            lang.t("labour_minutes"),
            labour.minutes,
            lang.t("minutes_unit"),
            lang.t("labour_rate"),
            money(labour.rate_per_hour, currency),
        ),
        Resolution::Part {
            part_number,
            quantity,
            unit_price,
            warranty,
            ..
        } => format!(
            "{}: {part_number} · {}: {quantity} · {}: {} · {}: {}",
            lang.t("part_number"),
            lang.t("quantity"),
            lang.t("unit_price"),
            money(*unit_price, currency),
            lang.t("under_warranty"),
            lang.t(if *warranty { "yes" } else { "no" }),
        ),
        Resolution::DuplicatePart { keep, .. } => format!(
            "{}: {}",
            lang.t("lines_kept"),
            keep.iter()
                .map(|l| line_shown(lang, job, &l.0, currency))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    ResolvedView {
        at: console.time(r.at),
        by: r.by.clone(),
        title: group_title(lang, job, &r.group),
        what,
    }
}
