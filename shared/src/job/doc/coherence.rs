//! Coherent merges (issue 15, DESIGN.md "Documents"): fields that belong together are
//! resolved together, and the same part added twice by two devices is flagged.
//!
//! Automerge merges field by field. For most fields that is what people want, but some fields
//! only make sense together: the fault cause, its category, the solution and the labour that
//! solution took (R7, R10, R4/R27) are one technician's account of the job; a part line's
//! number, quantity, unit price and warranty flag are one line of the bill (R7, R10, R18). Two
//! technicians offline on one job can leave such a group half one's and half the other's
//! without any single field being in conflict. So a group is checked as a whole:
//!
//! **The rule.** Each value of a group was written by some change (automerge keeps the op
//! that wrote it). A group is *coherent* when, for every two of its fields, the change that
//! wrote one had the change that wrote the other in its history (one writer saw the other's
//! value), or both were written by the same change. A field holding several concurrent values
//! (automerge's conflict) is incoherent too, unless they are all equal. An absent or cleared
//! field takes no part. A resolution writes every field of the group in one change, which
//! makes the group coherent by the same rule, and records who resolved it, when and to which
//! values under the root key `resolutions` (a map from a resolution id to a map of scalars:
//! `group`, `by`, `at`, `values` as canonical JSON of [`Resolution`]), so it syncs and the
//! device shows it. It is not part of `Job`, so the signed report's format is unchanged.
//!
//! **Duplicate parts.** Two part lines with the same part number (trimmed, case-insensitive;
//! an empty number is never a duplicate) whose lines were added by changes that had not seen
//! each other are a *possible duplicate*: two devices each billing the one part they both
//! fitted. A line added by someone who had the other line in view is deliberate and not
//! flagged. A technician or the desk confirms ([`Resolution::DuplicatePart`]): the lines kept
//! stay, the others are removed in the same change; lines a confirmation kept are never
//! flagged again among themselves.
//!
//! The signer refuses a job with anything here unresolved (`unresolved_conflict`,
//! `possible_duplicate_part`), and a device does not take the customer's signature over one.
//! The rule for every field is in `docs/MERGE-RULES.md`.

use std::collections::{HashMap, HashSet};

use automerge::transaction::Transactable;
use automerge::{
    AutoCommit, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use serde::{Deserialize, Serialize};

use super::read::Reader;
use super::schema::{int, k, money, string, ts};
use super::{EditError, JobDoc, find_part, root_map};
use crate::job::model::{Labour, PartLineId};
use crate::rules::Missing;
use crate::time::{Money, Timestamp};

/// The root key of the resolutions map.
pub const RESOLUTIONS: &str = "resolutions";

/// The work group's fields, as (map at the root, key): resolved together.
pub const WORK_FIELDS: [(&str, &str); 5] = [
    (k::DIAGNOSIS, k::FAULT_CAUSE),
    (k::DIAGNOSIS, k::FAULT_CATEGORY),
    (k::DIAGNOSIS, k::SOLUTION),
    (k::LABOUR, k::MINUTES),
    (k::LABOUR, k::RATE_PER_HOUR),
];

/// A part line's fields resolved together (name and specification merge field by field).
pub const PART_FIELDS: [&str; 4] = [k::PART_NUMBER, k::QUANTITY, k::UNIT_PRICE, k::WARRANTY];

/// The group name of the work fields.
pub const WORK: &str = "work";

/// The group name of a part line: `part:<line id>`.
pub fn part_group(id: &PartLineId) -> String {
    format!("part:{}", id.0)
}

/// The group name of a possible duplicate: `duplicate_part:<part number as normalised>`.
pub fn duplicate_group(part_number: &str) -> String {
    format!("duplicate_part:{}", normalise_number(part_number))
}

fn normalise_number(n: &str) -> String {
    n.trim().to_uppercase()
}

/// One thing that stands between the job and a signed report until someone resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    /// `work`, `part:<line id>` or `duplicate_part:<part number>`.
    pub group: String,
    /// `unresolved_conflict` or `possible_duplicate_part`.
    pub code: &'static str,
    /// The rule of DOMAIN.md the group serves.
    pub rule: &'static str,
    /// The fields in disagreement (`diagnosis.fault_cause`, `parts[id=…].quantity`), or for a
    /// duplicate the lines' paths.
    pub fields: Vec<String>,
    /// For a duplicate: the lines with that part number that nobody has confirmed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<PartLineId>,
    /// What a person should do about it.
    pub message: String,
}

impl From<Unresolved> for Missing {
    fn from(u: Unresolved) -> Self {
        Missing {
            rule: u.rule,
            code: u.code,
            message: u.message,
        }
    }
}

/// What a resolution decides, written into the group's fields in one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "group", rename_all = "snake_case")]
pub enum Resolution {
    /// The work group: every field as it is to stand (`None` clears it).
    Work {
        fault_cause: Option<String>,
        fault_category: Option<String>,
        solution: Option<String>,
        labour: Labour,
    },
    /// One part line's billed fields.
    Part {
        line: PartLineId,
        part_number: String,
        quantity: u32,
        unit_price: Money,
        warranty: bool,
    },
    /// Possible duplicates of one part number: the lines to keep (at least one); the other
    /// lines with that number are removed.
    DuplicatePart {
        part_number: String,
        keep: Vec<PartLineId>,
    },
}

impl Resolution {
    /// The group this resolves.
    pub fn group(&self) -> String {
        match self {
            Resolution::Work { .. } => WORK.to_owned(),
            Resolution::Part { line, .. } => part_group(line),
            Resolution::DuplicatePart { part_number, .. } => duplicate_group(part_number),
        }
    }
}

/// A resolution as recorded in the job document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolutionRecord {
    pub id: String,
    pub group: String,
    /// A technician id or `desk:<person or role>`.
    pub by: String,
    pub at: Timestamp,
    pub resolution: Resolution,
}

/// Every group of the job that is not coherent and every possible duplicate part, at the
/// document's current state, in a stable order (work, part lines in list order, duplicates
/// by part number). Reads leniently: a field of the wrong shape is left to `read_job`.
pub fn unresolved(doc: &Automerge) -> Vec<Unresolved> {
    let rd = Reader::new(doc, None);
    let mut history = History::new(doc);
    let mut out = Vec::new();

    // The work group.
    let mut fields = Vec::new();
    for (map, key) in WORK_FIELDS {
        if let Ok(Some((Value::Object(ObjType::Map), obj))) = rd.get(&ROOT, map) {
            fields.push((format!("{map}.{key}"), writers(&rd, doc, &obj, key)));
        }
    }
    let torn = history.torn(&fields);
    if !torn.is_empty() {
        out.push(Unresolved {
            group: WORK.to_owned(),
            code: "unresolved_conflict",
            rule: "R7",
            message: format!(
                "the fault cause, solution and labour were written by people who had not seen \
                 each other's ({}): resolve them together (`fieldsync-tech resolve JOB work` \
                 or the desk)",
                torn.join(", ")
            ),
            fields: torn,
            lines: Vec::new(),
        });
    }

    // Each part line, and who added it.
    let mut lines: Vec<(PartLineId, String, ChangeHash)> = Vec::new();
    if let Ok(Some((Value::Object(ObjType::List), list))) = rd.get(&ROOT, k::PARTS) {
        for i in 0..rd.length(&list) {
            let Ok(Some((Value::Object(ObjType::Map), line))) = rd.get(&list, i) else {
                continue;
            };
            let Some(id) = scalar_string(&rd, &line, k::ID) else {
                continue;
            };
            let path = format!("parts[id={id}]");
            let fields: Vec<(String, Vec<Written>)> = PART_FIELDS
                .iter()
                .map(|key| (format!("{path}.{key}"), writers(&rd, doc, &line, key)))
                .collect();
            let torn = history.torn(&fields);
            let id = PartLineId(id);
            if !torn.is_empty() {
                out.push(Unresolved {
                    group: part_group(&id),
                    code: "unresolved_conflict",
                    rule: "R10",
                    message: format!(
                        "part line {}: number, quantity, price and warranty were written by \
                         people who had not seen each other's ({}): resolve the line \
                         (`fieldsync-tech resolve JOB part {}` or the desk)",
                        id.0,
                        torn.join(", "),
                        id.0
                    ),
                    fields: torn,
                    lines: Vec::new(),
                });
            }
            if let (Some(number), Some(added)) = (
                scalar_string(&rd, &line, k::PART_NUMBER),
                doc.hash_for_opid(&line),
            ) && !number.trim().is_empty()
            {
                lines.push((id, normalise_number(&number), added));
            }
        }
    }

    // Possible duplicates: same number, lines added without seeing each other.
    let confirmed = confirmed_pairs(&resolutions(doc));
    let mut by_number: Vec<(String, Vec<(PartLineId, ChangeHash)>)> = Vec::new();
    for (id, number, added) in lines {
        match by_number.iter_mut().find(|(n, _)| *n == number) {
            Some((_, v)) => v.push((id, added)),
            None => by_number.push((number, vec![(id, added)])),
        }
    }
    by_number.sort_by(|a, b| a.0.cmp(&b.0));
    for (number, group) in by_number {
        let mut flagged: Vec<PartLineId> = Vec::new();
        for (i, (a, ha)) in group.iter().enumerate() {
            for (b, hb) in &group[i + 1..] {
                let pair_confirmed = confirmed
                    .get(&number)
                    .is_some_and(|kept| kept.iter().any(|k| k.contains(a) && k.contains(b)));
                if !pair_confirmed && !history.ordered(*ha, *hb) {
                    for id in [a, b] {
                        if !flagged.contains(id) {
                            flagged.push(id.clone());
                        }
                    }
                }
            }
        }
        if !flagged.is_empty() {
            // In list order.
            flagged.sort_by_key(|id| group.iter().position(|(g, _)| g == id));
            out.push(Unresolved {
                group: duplicate_group(&number),
                code: "possible_duplicate_part",
                rule: "R10",
                message: format!(
                    "part number {number} was added on {} lines by devices that had not seen \
                     each other's: confirm which to keep (`fieldsync-tech resolve JOB \
                     duplicate {number} --keep LINE…` or the desk), so one part is not billed \
                     twice",
                    flagged.len()
                ),
                fields: flagged
                    .iter()
                    .map(|id| format!("parts[id={}]", id.0))
                    .collect(),
                lines: flagged,
            });
        }
    }
    out
}

/// Per part number, the sets of lines a confirmation kept together.
fn confirmed_pairs(records: &[ResolutionRecord]) -> HashMap<String, Vec<HashSet<PartLineId>>> {
    let mut out: HashMap<String, Vec<HashSet<PartLineId>>> = HashMap::new();
    for r in records {
        if let Resolution::DuplicatePart { part_number, keep } = &r.resolution {
            out.entry(normalise_number(part_number))
                .or_default()
                .push(keep.iter().cloned().collect());
        }
    }
    out
}

/// A value of a field and the change that wrote it.
pub(super) type Written = (serde_json::Value, ChangeHash);

/// Every value `key` holds in `obj` (several when written concurrently), with its writer.
pub(super) fn writers(
    rd: &Reader<'_, Automerge>,
    doc: &Automerge,
    obj: &ObjId,
    key: &str,
) -> Vec<Written> {
    let Ok(all) = rd.get_all(obj, key) else {
        return Vec::new();
    };
    all.into_iter()
        .filter(|(v, _)| !matches!(v, Value::Scalar(s) if s.is_null()))
        .filter_map(|(v, id)| {
            let hash = doc.hash_for_opid(&id)?;
            Some((rd.json(&v, &id, 0), hash))
        })
        .collect()
}

pub(super) fn scalar_string(rd: &Reader<'_, Automerge>, obj: &ObjId, key: &str) -> Option<String> {
    match rd.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        Ok(Some((Value::Object(ObjType::Text), id))) => rd.text(&id).ok(),
        _ => None,
    }
}

/// The change graph, read once when first needed: which change had which in its history.
struct History<'a> {
    doc: &'a Automerge,
    deps: Option<HashMap<ChangeHash, Vec<ChangeHash>>>,
    ancestors: HashMap<ChangeHash, HashSet<ChangeHash>>,
}

impl<'a> History<'a> {
    fn new(doc: &'a Automerge) -> Self {
        Self {
            doc,
            deps: None,
            ancestors: HashMap::new(),
        }
    }

    /// Whether one of the two changes had the other in its history (or they are one).
    fn ordered(&mut self, a: ChangeHash, b: ChangeHash) -> bool {
        a == b || self.before(a, b) || self.before(b, a)
    }

    fn before(&mut self, a: ChangeHash, b: ChangeHash) -> bool {
        if !self.ancestors.contains_key(&b) {
            let deps = self.deps.get_or_insert_with(|| {
                self.doc
                    .get_changes_meta(&[])
                    .into_iter()
                    .map(|m| (m.hash, m.deps))
                    .collect()
            });
            let mut seen = HashSet::new();
            let mut todo: Vec<ChangeHash> = deps.get(&b).cloned().unwrap_or_default();
            while let Some(h) = todo.pop() {
                if seen.insert(h)
                    && let Some(more) = deps.get(&h)
                {
                    todo.extend(more.iter().copied());
                }
            }
            self.ancestors.insert(b, seen);
        }
        self.ancestors.get(&b).is_some_and(|s| s.contains(&a))
    }

    /// The paths of a group's fields that break the rule: a field with several different
    /// concurrent values, and both fields of every pair whose writers never saw each other.
    fn torn(&mut self, fields: &[(String, Vec<Written>)]) -> Vec<String> {
        let mut bad = vec![false; fields.len()];
        for (i, (_, ws)) in fields.iter().enumerate() {
            if ws.iter().any(|(v, _)| *v != ws[0].0) {
                bad[i] = true;
            }
        }
        for i in 0..fields.len() {
            for j in i + 1..fields.len() {
                let (a, b) = (&fields[i].1, &fields[j].1);
                if a.is_empty() || b.is_empty() {
                    continue;
                }
                let seen = a
                    .iter()
                    .any(|(_, ha)| b.iter().any(|(_, hb)| self.ordered(*ha, *hb)));
                if !seen {
                    bad[i] = true;
                    bad[j] = true;
                }
            }
        }
        fields
            .iter()
            .zip(bad)
            .filter(|(_, b)| *b)
            .map(|((p, _), _)| p.clone())
            .collect()
    }
}

/// The resolutions recorded in the job, oldest first (by time, then id). A record that does
/// not read is skipped: it decides nothing.
pub fn resolutions<R: ReadDoc>(doc: &R) -> Vec<ResolutionRecord> {
    let rd = Reader::new(doc, None);
    let Ok(Some((Value::Object(ObjType::Map), map))) = rd.get(&ROOT, RESOLUTIONS) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in rd.keys(&map) {
        let Ok(Some((Value::Object(ObjType::Map), rec))) = rd.get(&map, id.as_str()) else {
            continue;
        };
        let get = |key: &str| match rd.get(&rec, key) {
            Ok(Some((Value::Scalar(s), _))) => Some(s.into_owned()),
            _ => None,
        };
        let (
            Some(ScalarValue::Str(group)),
            Some(ScalarValue::Str(by)),
            Some(at),
            Some(ScalarValue::Str(values)),
        ) = (get(k::GROUP), get(k::BY), get(k::AT), get(k::VALUES))
        else {
            continue;
        };
        let at = match at {
            ScalarValue::Timestamp(ms) | ScalarValue::Int(ms) => Timestamp::from_millis(ms),
            _ => continue,
        };
        let Ok(resolution) = serde_json::from_str::<Resolution>(&values) else {
            continue;
        };
        out.push(ResolutionRecord {
            id,
            group: group.to_string(),
            by: by.to_string(),
            at,
            resolution,
        });
    }
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}

/// Makes the empty resolutions map if the job has none (the server does it with the job, so
/// devices do not create it concurrently; a job made before it existed gets it from its first
/// resolution).
pub fn init_resolutions(doc: &mut AutoCommit) -> Result<(), automerge::AutomergeError> {
    match doc.get(ROOT, RESOLUTIONS)? {
        Some((Value::Object(ObjType::Map), _)) => Ok(()),
        _ => doc.put_object(ROOT, RESOLUTIONS, ObjType::Map).map(|_| ()),
    }
}

impl JobDoc {
    /// Every group not coherent and every possible duplicate part (see the module docs).
    pub fn unresolved(&mut self) -> Vec<Unresolved> {
        unresolved(self.doc.document())
    }

    /// Resolves a group: writes every one of its fields in one change, with the record of who
    /// (`by`: a technician id or `desk:<person>`), when and what. Refused with
    /// [`EditError::NothingToResolve`] when the group is coherent (nothing to decide), and
    /// for a duplicate when `keep` names no line or a line without that part number.
    pub fn resolve(
        &mut self,
        resolution: &Resolution,
        by: &str,
        at: Timestamp,
    ) -> Result<ResolutionRecord, EditError> {
        let group = resolution.group();
        let open = self.unresolved();
        let Some(found) = open.iter().find(|u| u.group == group) else {
            return Err(EditError::NothingToResolve(group));
        };
        if let Resolution::DuplicatePart { keep, .. } = resolution {
            if keep.is_empty() {
                return Err(EditError::InvalidResolution(
                    "keep at least one line of the part number".into(),
                ));
            }
            if let Some(stray) = keep.iter().find(|id| !found.lines.contains(id)) {
                return Err(EditError::InvalidResolution(format!(
                    "line {} is not one of the possible duplicates ({})",
                    stray.0,
                    found
                        .lines
                        .iter()
                        .map(|l| l.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let removed: Vec<PartLineId> = match resolution {
            Resolution::DuplicatePart { keep, .. } => found
                .lines
                .iter()
                .filter(|l| !keep.contains(l))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let values = serde_json::to_string(resolution)
            .map_err(|e| EditError::InvalidResolution(e.to_string()))?;
        let record = ResolutionRecord {
            id: id.clone(),
            group: group.clone(),
            by: by.to_owned(),
            at,
            resolution: resolution.clone(),
        };
        self.edit(format!("Resolve {group} (issue 15)"), |d| {
            match resolution {
                Resolution::Work {
                    fault_cause,
                    fault_category,
                    solution,
                    labour,
                } => {
                    let diagnosis = root_map(d, k::DIAGNOSIS)?;
                    force(
                        d,
                        &diagnosis,
                        k::FAULT_CAUSE,
                        fault_cause.as_deref().map(string),
                    )?;
                    force(
                        d,
                        &diagnosis,
                        k::FAULT_CATEGORY,
                        fault_category.as_deref().map(string),
                    )?;
                    force(d, &diagnosis, k::SOLUTION, solution.as_deref().map(string))?;
                    let l = root_map(d, k::LABOUR)?;
                    force(d, &l, k::MINUTES, Some(int(labour.minutes)))?;
                    force(d, &l, k::RATE_PER_HOUR, Some(money(labour.rate_per_hour)))?;
                }
                Resolution::Part {
                    line,
                    part_number,
                    quantity,
                    unit_price,
                    warranty,
                } => {
                    let (_, _, m) = find_part(d, line)?;
                    force(d, &m, k::PART_NUMBER, Some(string(part_number)))?;
                    force(d, &m, k::QUANTITY, Some(int(*quantity)))?;
                    force(d, &m, k::UNIT_PRICE, Some(money(*unit_price)))?;
                    force(d, &m, k::WARRANTY, Some(ScalarValue::Boolean(*warranty)))?;
                }
                Resolution::DuplicatePart { .. } => {
                    for line in &removed {
                        let (list, index, _) = find_part(d, line)?;
                        d.delete(&list, index)?;
                    }
                }
            }
            init_resolutions(d)?;
            let map = root_map(d, RESOLUTIONS)?;
            let rec = d.put_object(&map, id.as_str(), ObjType::Map)?;
            d.put(&rec, k::GROUP, group.as_str())?;
            d.put(&rec, k::BY, by)?;
            d.put(&rec, k::AT, ts(at))?;
            d.put(&rec, k::VALUES, values.as_str())?;
            Ok(())
        })?;
        Ok(record)
    }
}

/// Puts `value` under `key` even when it is already there, so the resolution's change is
/// the writer of every field of the group; `None` deletes the key.
fn force(
    d: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    value: Option<ScalarValue>,
) -> Result<(), EditError> {
    match value {
        Some(v) => {
            // Automerge makes no op for a put of the value already there; deleting first
            // makes this change the writer (and ends a per-field conflict).
            if !d.get_all(obj, key)?.is_empty() {
                d.delete(obj, key)?;
            }
            d.put(obj, key, v)?;
        }
        None => {
            if !d.get_all(obj, key)?.is_empty() {
                d.delete(obj, key)?;
            }
        }
    }
    Ok(())
}

/// What a resolver gives for a group; a field not given keeps the value it reads as now
/// (automerge's winner). The technician's CLI and the desk API both build resolutions so.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Chosen {
    pub fault_cause: Option<String>,
    pub fault_category: Option<String>,
    pub solution: Option<String>,
    pub labour_minutes: Option<u32>,
    /// Minor units per hour.
    pub labour_rate_per_hour: Option<i64>,
    pub part_number: Option<String>,
    pub quantity: Option<u32>,
    /// Minor units.
    pub unit_price: Option<i64>,
    pub warranty: Option<bool>,
    /// For `duplicate_part:…`: the line ids to keep (the others with that number go).
    pub keep: Option<Vec<String>>,
}

/// Why a resolution could not be built from what a resolver gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChosenError {
    #[error("no group {0:?}: give work, part:<line id> or duplicate_part:<part number>")]
    UnknownGroup(String),
    #[error("the job has no part line {0:?}")]
    UnknownLine(String),
    #[error("{field} is not a field of group {group}")]
    NotInGroup { field: &'static str, group: String },
    #[error("say which lines to keep (keep)")]
    KeepRequired,
}

impl ChosenError {
    /// A stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            ChosenError::UnknownGroup(_) => "unknown_group",
            ChosenError::UnknownLine(_) => "unknown_part",
            ChosenError::NotInGroup { .. } => "invalid_field",
            ChosenError::KeepRequired => "keep_required",
        }
    }
}

impl Chosen {
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |name, given: bool| {
            if given {
                out.push(name)
            }
        };
        add("fault_cause", self.fault_cause.is_some());
        add("fault_category", self.fault_category.is_some());
        add("solution", self.solution.is_some());
        add("labour_minutes", self.labour_minutes.is_some());
        add("labour_rate_per_hour", self.labour_rate_per_hour.is_some());
        add("part_number", self.part_number.is_some());
        add("quantity", self.quantity.is_some());
        add("unit_price", self.unit_price.is_some());
        add("warranty", self.warranty.is_some());
        add("keep", self.keep.is_some());
        out
    }

    /// The resolution of `group` (`work`, `part:<line>`, `duplicate_part:<number>`) for
    /// `job` as it reads now, with what was given in place of the current values.
    pub fn resolution(
        self,
        job: &crate::job::model::Job,
        group: &str,
    ) -> Result<Resolution, ChosenError> {
        let allowed: &[&str] = if group == WORK {
            &[
                "fault_cause",
                "fault_category",
                "solution",
                "labour_minutes",
                "labour_rate_per_hour",
            ]
        } else if group.starts_with("part:") {
            &["part_number", "quantity", "unit_price", "warranty"]
        } else if group.starts_with("duplicate_part:") {
            &["keep"]
        } else {
            return Err(ChosenError::UnknownGroup(group.to_owned()));
        };
        if let Some(field) = self.given().into_iter().find(|f| !allowed.contains(f)) {
            return Err(ChosenError::NotInGroup {
                field,
                group: group.to_owned(),
            });
        }
        if group == WORK {
            let now = &job.diagnosis;
            let pick = |given: Option<String>, current: &Option<String>| match given {
                // An empty value given clears the field.
                Some(v) if v.trim().is_empty() => None,
                Some(v) => Some(v),
                None => current.clone(),
            };
            return Ok(Resolution::Work {
                fault_cause: pick(self.fault_cause, &now.fault_cause),
                fault_category: pick(self.fault_category, &now.fault_category),
                solution: pick(self.solution, &now.solution),
                labour: Labour {
                    minutes: self.labour_minutes.unwrap_or(job.labour.minutes),
                    rate_per_hour: self
                        .labour_rate_per_hour
                        .map(Money)
                        .unwrap_or(job.labour.rate_per_hour),
                },
            });
        }
        if let Some(line) = group.strip_prefix("part:") {
            let line = PartLineId(line.to_owned());
            let Some(p) = job.parts.iter().find(|p| p.id == line) else {
                return Err(ChosenError::UnknownLine(line.0));
            };
            return Ok(Resolution::Part {
                line,
                part_number: self.part_number.unwrap_or_else(|| p.part_number.clone()),
                quantity: self.quantity.unwrap_or(p.quantity),
                unit_price: self.unit_price.map(Money).unwrap_or(p.unit_price),
                warranty: self.warranty.unwrap_or(p.warranty),
            });
        }
        let number = group.strip_prefix("duplicate_part:").unwrap_or_default();
        let keep = self.keep.ok_or(ChosenError::KeepRequired)?;
        Ok(Resolution::DuplicatePart {
            part_number: number.to_owned(),
            keep: keep.into_iter().map(PartLineId).collect(),
        })
    }
}

/// The values a resolution keeps when the resolver names none: the fields as they read now
/// (automerge's winners), for the CLI's and the desk's defaults.
pub fn current_work(job: &crate::job::model::Job) -> Resolution {
    Resolution::Work {
        fault_cause: job.diagnosis.fault_cause.clone(),
        fault_category: job.diagnosis.fault_category.clone(),
        solution: job.diagnosis.solution.clone(),
        labour: job.labour,
    }
}

/// A part line's values as they read now, or `None` when the job has no such line.
pub fn current_part(job: &crate::job::model::Job, line: &PartLineId) -> Option<Resolution> {
    job.parts
        .iter()
        .find(|p| p.id == *line)
        .map(|p| Resolution::Part {
            line: p.id.clone(),
            part_number: p.part_number.clone(),
            quantity: p.quantity,
            unit_price: p.unit_price,
            warranty: p.warranty,
        })
}

#[cfg(test)]
mod tests;
