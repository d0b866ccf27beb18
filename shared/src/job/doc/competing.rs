//! Who wrote which competing value, and when (issue 14: the desk's conflict view).
//!
//! [`unresolved`] says which groups a merge left in disagreement; this says, for each, every
//! value each field of the group holds and the change that wrote it: its automerge actor, the
//! person the change names and the change's time. A change says who made it in its message's
//! last line, the trailer `by: <technician or desk:person>` ([`authored`]), with the writer's
//! clock as its time: [`super::JobDoc::stamp`] writes both, and the device stamps every typed
//! edit with its technician. A change without the trailer (an older device, an untyped edit)
//! takes the person another change of the same actor names (an actor is one device's store);
//! failing that the page shows the actor. The time is advisory (the device's clock; automerge
//! keeps it in seconds); the values and their order come from the document alone.
//!
//! A possible duplicate part lists its lines and who added each (the change that made the
//! line's map).

use std::collections::HashMap;

use automerge::{Automerge, ChangeHash, ObjId, ObjType, ROOT, Value};
use serde::Serialize;

use super::coherence::{scalar_string, writers};
use super::read::Reader;
use super::schema::k;
use super::{PART_FIELDS, Unresolved, WORK, WORK_FIELDS, unresolved};
use crate::job::model::PartLineId;
use crate::time::Timestamp;

/// What precedes the writer's name on the last line of a change's message.
pub const AUTHOR_TRAILER: &str = "\nby: ";

/// `message` with the trailer naming `by`.
pub fn authored(message: &str, by: &str) -> String {
    format!("{message}{AUTHOR_TRAILER}{by}")
}

fn author_in(message: &str) -> Option<String> {
    message
        .rsplit_once(AUTHOR_TRAILER)
        .map(|(_, by)| by.trim().to_owned())
        .filter(|by| !by.is_empty())
}

/// One value and the change that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Written {
    /// The value as JSON (money in minor units, minutes, booleans, text).
    pub value: serde_json::Value,
    /// The change that wrote it (hex).
    pub change: String,
    /// The change's automerge actor (hex): one device's store, or the server.
    pub actor: String,
    /// Who the change says made it (a technician id or `desk:<person>`), or who another
    /// change of the same actor says; `None` when no change of that actor says.
    pub by: Option<String>,
    /// The change's time (the writer's clock, to the second), when it has one.
    pub at: Option<Timestamp>,
}

/// A field of a group in disagreement and every value it holds or was written with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldValues {
    /// The field's path (`diagnosis.fault_cause`, `parts[id=…].quantity`).
    pub field: String,
    /// Its name in a resolution ([`super::Chosen`]): `fault_cause`, `labour_minutes`,
    /// `unit_price`, ….
    pub key: &'static str,
    /// Each value, with its writer. Several when written concurrently; one when the field
    /// is in disagreement with another field of the group.
    pub values: Vec<Written>,
}

/// A line of a possible duplicate and who added it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineAdded {
    pub line: PartLineId,
    /// `value` is the line as it reads now.
    pub added: Written,
}

/// One unresolved group with its competing values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Competing {
    #[serde(flatten)]
    pub unresolved: Unresolved,
    /// The fields in disagreement (work, part line), in the group's order.
    pub values: Vec<FieldValues>,
    /// The lines of a possible duplicate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<LineAdded>,
}

/// The name a resolution gives a work field.
fn work_key(map: &str, key: &str) -> &'static str {
    match (map, key) {
        (k::LABOUR, k::MINUTES) => "labour_minutes",
        (k::LABOUR, k::RATE_PER_HOUR) => "labour_rate_per_hour",
        (_, k::FAULT_CAUSE) => "fault_cause",
        (_, k::FAULT_CATEGORY) => "fault_category",
        _ => "solution",
    }
}

fn part_key(key: &str) -> &'static str {
    match key {
        k::PART_NUMBER => "part_number",
        k::QUANTITY => "quantity",
        k::UNIT_PRICE => "unit_price",
        _ => "warranty",
    }
}

/// The change history's authorship, read once.
struct Authors {
    changes: HashMap<ChangeHash, (String, Option<String>, i64)>,
    by_actor: HashMap<String, String>,
}

impl Authors {
    fn new(doc: &Automerge) -> Self {
        let mut changes = HashMap::new();
        let mut by_actor: HashMap<String, String> = HashMap::new();
        for m in doc.get_changes_meta(&[]) {
            let actor = m.actor.to_hex_string();
            let by = m.message.as_deref().and_then(author_in);
            if let Some(by) = &by {
                by_actor.entry(actor.clone()).or_insert_with(|| by.clone());
            }
            changes.insert(m.hash, (actor, by, m.timestamp));
        }
        Self { changes, by_actor }
    }

    fn written(&self, value: serde_json::Value, hash: ChangeHash) -> Written {
        let (actor, by, time) =
            self.changes
                .get(&hash)
                .cloned()
                .unwrap_or((String::new(), None, 0));
        Written {
            value,
            change: hash.to_string(),
            by: by.or_else(|| self.by_actor.get(&actor).cloned()),
            actor,
            at: (time > 0).then(|| Timestamp::from_millis(time.saturating_mul(1000))),
        }
    }
}

fn part_line(rd: &Reader<'_, Automerge>, id: &str) -> Option<ObjId> {
    let Ok(Some((Value::Object(ObjType::List), list))) = rd.get(&ROOT, k::PARTS) else {
        return None;
    };
    (0..rd.length(&list)).find_map(|i| match rd.get(&list, i) {
        Ok(Some((Value::Object(ObjType::Map), line)))
            if scalar_string(rd, &line, k::ID).as_deref() == Some(id) =>
        {
            Some(line)
        }
        _ => None,
    })
}

/// Every unresolved group ([`unresolved`], same order) with who wrote each competing value
/// and when.
pub fn competing(doc: &Automerge) -> Vec<Competing> {
    let open = unresolved(doc);
    if open.is_empty() {
        return Vec::new();
    }
    let rd = Reader::new(doc, None);
    let authors = Authors::new(doc);
    let field = |obj: &ObjId, key: &str, path: String, name: &'static str| FieldValues {
        field: path,
        key: name,
        values: writers(&rd, doc, obj, key)
            .into_iter()
            .map(|(v, h)| authors.written(v, h))
            .collect(),
    };
    open.into_iter()
        .map(|u| {
            let mut values = Vec::new();
            let mut added = Vec::new();
            if u.group == WORK {
                for (map, key) in WORK_FIELDS {
                    let path = format!("{map}.{key}");
                    if !u.fields.contains(&path) {
                        continue;
                    }
                    if let Ok(Some((Value::Object(ObjType::Map), obj))) = rd.get(&ROOT, map) {
                        values.push(field(&obj, key, path, work_key(map, key)));
                    }
                }
            } else if let Some(id) = u.group.strip_prefix("part:") {
                if let Some(line) = part_line(&rd, id) {
                    for key in PART_FIELDS {
                        let path = format!("parts[id={id}].{key}");
                        if u.fields.contains(&path) {
                            values.push(field(&line, key, path, part_key(key)));
                        }
                    }
                }
            } else {
                for id in &u.lines {
                    if let Some(line) = part_line(&rd, &id.0)
                        && let Some(hash) = doc.hash_for_opid(&line)
                    {
                        let value = rd.json(&Value::Object(ObjType::Map), &line, 0);
                        added.push(LineAdded {
                            line: id.clone(),
                            added: authors.written(value, hash),
                        });
                    }
                }
            }
            Competing {
                unresolved: u,
                values,
                added,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::doc::JobDoc;
    use crate::job::fixtures::{actor, new_job};

    #[test]
    fn the_trailer_names_the_writer() {
        assert_eq!(
            author_in(&authored("Set fault cause R7", "tech-1")).as_deref(),
            Some("tech-1")
        );
        assert_eq!(author_in("Set fault cause R7"), None);
        assert_eq!(author_in(&authored("x", " ")), None);
    }

    /// R7: two technicians write the fault cause offline; each value is listed with its
    /// writer and the change's time; a later unstamped change of one of them still names him.
    #[test]
    fn each_competing_value_names_its_writer_and_time() {
        let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
        let mut a = server.fork();
        a.doc.set_actor(actor(1));
        let mut b = server.fork();
        b.doc.set_actor(actor(2));
        a.stamp("tech-a", Timestamp::from_millis(1_790_000_000_000));
        a.set_fault_cause(Some("Worn relay")).expect("a");
        b.stamp("tech-b", Timestamp::from_millis(1_790_000_060_000));
        b.set_fault_cause(Some("Low refrigerant")).expect("b");
        a.set_solution(Some("Replaced the relay")).expect("a");
        b.stamp = None;
        b.set_solution(Some("Recharged")).expect("b");
        server.merge(&mut a).expect("merge a");
        server.merge(&mut b).expect("merge b");
        let doc = server.doc.document().clone();
        let groups = competing(&doc);
        assert_eq!(groups.len(), 1, "{groups:?}");
        let work = &groups[0];
        assert_eq!(work.unresolved.group, WORK);
        let cause = work
            .values
            .iter()
            .find(|f| f.key == "fault_cause")
            .expect("fault cause listed");
        let mut seen: Vec<(String, Option<String>, Option<Timestamp>)> = cause
            .values
            .iter()
            .map(|w| (w.value.to_string(), w.by.clone(), w.at))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (
                    "\"Low refrigerant\"".into(),
                    Some("tech-b".into()),
                    Some(Timestamp::from_millis(1_790_000_060_000))
                ),
                (
                    "\"Worn relay\"".into(),
                    Some("tech-a".into()),
                    Some(Timestamp::from_millis(1_790_000_000_000))
                ),
            ]
        );
        let solution = work
            .values
            .iter()
            .find(|f| f.key == "solution")
            .expect("solution listed");
        let b_wrote = solution
            .values
            .iter()
            .find(|w| w.value == serde_json::json!("Recharged"))
            .expect("b's solution");
        assert_eq!(
            b_wrote.by.as_deref(),
            Some("tech-b"),
            "named by b's other change"
        );
        assert_eq!(b_wrote.at, None, "an unstamped change has no time");
    }
}
