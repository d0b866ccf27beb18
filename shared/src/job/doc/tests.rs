use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value};
use proptest::prelude::*;

use super::*;
use crate::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use crate::job::fixtures::{actor, at, full_job, new_job, tech};
use crate::time::{CalendarDate, Money, Timestamp};

fn draft(name: &str, quantity: u32) -> PartDraft {
    PartDraft {
        part_number: format!("PN-{name}"),
        name: name.into(),
        specification: String::new(),
        quantity,
        unit_price: Money(500),
        warranty: false,
    }
}

/// The creator's document and `n` replicas of it, each with its own fixed actor.
fn replicas(job: &Job, n: u8) -> (JobDoc, Vec<JobDoc>) {
    let mut origin = JobDoc::create_with_actor(job, actor(0)).expect("create");
    let forks = (1..=n)
        .map(|i| {
            let mut r = origin.fork();
            r.set_actor(actor(i));
            r
        })
        .collect();
    (origin, forks)
}

/// Syncs two replicas both ways, as two devices meeting would.
fn sync(a: &mut JobDoc, b: &mut JobDoc) {
    a.merge(b).expect("merge b into a");
    b.merge(a).expect("merge a into b");
}

fn get_value(doc: &AutoCommit, path: &[&str]) -> (Value<'static>, ObjId) {
    let mut obj = ROOT;
    let mut found = None;
    for key in path {
        let (v, id) = doc
            .get(&obj, *key)
            .expect("get")
            .unwrap_or_else(|| panic!("{key} present"));
        found = Some((v.into_owned(), id.clone()));
        obj = id;
    }
    found.expect("non-empty path")
}

fn scalar_at(doc: &AutoCommit, path: &[&str]) -> ScalarValue {
    match get_value(doc, path).0 {
        Value::Scalar(s) => s.into_owned(),
        Value::Object(t) => panic!("{path:?} is a {t:?}"),
    }
}

fn object_at(doc: &AutoCommit, path: &[&str]) -> (ObjType, ObjId) {
    match get_value(doc, path) {
        (Value::Object(t), id) => (t, id),
        (Value::Scalar(s), _) => panic!("{path:?} is the scalar {s:?}"),
    }
}

fn message_of_last_change(doc: &mut JobDoc) -> String {
    let heads = doc.heads();
    let change = doc
        .inner()
        .get_change_by_hash(&heads[0])
        .expect("head change");
    change.message().unwrap_or_default().to_owned()
}

#[test]
fn created_job_reads_back_unchanged() {
    for job in [new_job(), full_job()] {
        let doc = create_job(&job, None).expect("create");
        assert_eq!(read_job(&doc).expect("read"), job);
        let mut wrapped = JobDoc::from_autocommit(doc);
        let reloaded = JobDoc::load(&wrapped.save()).expect("load");
        assert_eq!(reloaded.read().expect("read"), job);
    }
}

#[test]
fn representation_reads_naturally_from_javascript() {
    let doc = create_job(&full_job(), None).expect("create");
    assert_eq!(scalar_at(&doc, &["schema_version"]), ScalarValue::Int(1));
    assert_eq!(
        scalar_at(&doc, &["kind"]),
        ScalarValue::Str("repair".into())
    );
    assert_eq!(
        scalar_at(&doc, &["visit", "arrival"]),
        ScalarValue::Timestamp(1_790_049_000_000)
    );
    assert_eq!(
        scalar_at(&doc, &["product", "purchase_date"]),
        ScalarValue::Str("2024-03-01".into())
    );
    assert_eq!(
        scalar_at(&doc, &["labour", "rate_per_hour"]),
        ScalarValue::Int(8000)
    );
    assert_eq!(object_at(&doc, &["notes"]).0, ObjType::Text);
    assert_eq!(object_at(&doc, &["technicians"]).0, ObjType::List);
    let (parts_type, parts) = object_at(&doc, &["parts"]);
    assert_eq!(parts_type, ObjType::List);
    let (first, _) = doc.get(&parts, 0).expect("get").expect("one part");
    assert_eq!(first, Value::Object(ObjType::Map));
    let strokes = object_at(&doc, &["acknowledgement", "signature", "strokes"]);
    assert_eq!(doc.length(&strokes.1), 2);
    assert_eq!(
        scalar_at(&doc, &["acknowledgement", "survey", "attitude"]),
        ScalarValue::Int(5)
    );
    assert_eq!(
        scalar_at(&doc, &["report", "status"]),
        ScalarValue::Str("refused".into())
    );
    let (trainees_type, trainees) = object_at(&doc, &["visit", "training", "trainees"]);
    assert_eq!(trainees_type, ObjType::List);
    let (second, _) = doc.get(&trainees, 1).expect("get").expect("two trainees");
    assert_eq!(second.as_str(), Some("cold-room operators"));

    // An absent Option is an absent key, never a null.
    let fresh = create_job(&new_job(), None).expect("create");
    let (_, visit) = object_at(&fresh, &["visit"]);
    assert_eq!(fresh.keys(&visit).count(), 0);
    assert!(fresh.get(ROOT, "acknowledgement").expect("get").is_none());
    assert!(
        fresh
            .get(&object_at(&fresh, &["product"]).1, "warranty_end")
            .expect("get")
            .is_none()
    );

    let mut image = full_job();
    if let Some(ack) = &mut image.acknowledgement {
        ack.signature = SignatureMark::Image {
            mime: "image/png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
        };
    }
    let doc = create_job(&image, None).expect("create");
    assert_eq!(
        scalar_at(&doc, &["acknowledgement", "signature", "data"]),
        ScalarValue::Bytes(vec![0x89, b'P', b'N', b'G'])
    );
    assert_eq!(read_job(&doc).expect("read"), image);
}

#[test]
fn two_technicians_adding_parts_offline_keep_both_parts() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let relay = a.add_part(&draft("relay", 1)).expect("add");
    let fan = b.add_part(&draft("fan", 2)).expect("add");
    sync(a, b);
    let ja = a.read().expect("read");
    assert_eq!(ja, b.read().expect("read"));
    let ids: Vec<_> = ja.parts.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&relay) && ids.contains(&fan));
    assert!(a.conflicts().is_empty());
}

#[test]
fn edits_to_different_fields_keep_both() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    a.set_labour(Labour {
        minutes: 45,
        rate_per_hour: Money(8000),
    })
    .expect("edit");
    b.set_solution(Some("Replaced relay")).expect("edit");
    b.set_arrival(Some(at(1_790_049_000_000))).expect("edit");
    sync(a, b);
    let job = a.read().expect("read");
    assert_eq!(job, b.read().expect("read"));
    assert_eq!(job.diagnosis.fault_cause.as_deref(), Some("Worn relay"));
    assert_eq!(job.diagnosis.solution.as_deref(), Some("Replaced relay"));
    assert_eq!(job.labour.minutes, 45);
    assert_eq!(job.visit.arrival, Some(at(1_790_049_000_000)));
    assert!(a.conflicts().is_empty());
}

#[test]
fn concurrent_edits_to_same_field_pick_same_winner_on_every_replica_and_list_the_conflict() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_fault_cause(Some("Low refrigerant")).expect("edit");
    // Merge each way from copies, so neither side has seen the other's merge.
    let mut a_copy = JobDoc::load(&a.save()).expect("load");
    let mut b_copy = JobDoc::load(&b.save()).expect("load");
    a.merge(&mut b_copy).expect("merge");
    b.merge(&mut a_copy).expect("merge");
    let (ja, jb) = (a.read().expect("read"), b.read().expect("read"));
    assert_eq!(ja, jb);
    let winner = ja.diagnosis.fault_cause.clone().expect("a cause");
    let conflicts = a.conflicts();
    assert_eq!(conflicts, b.conflicts());
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, "diagnosis.fault_cause");
    assert_eq!(conflicts[0].values[0], serde_json::json!(winner));
    let mut values = conflicts[0].values.clone();
    values.sort_by_key(|v| v.to_string());
    assert_eq!(
        values,
        vec![
            serde_json::json!("Low refrigerant"),
            serde_json::json!("Worn relay")
        ]
    );
}

#[test]
fn writing_a_field_in_conflict_resolves_it() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_fault_cause(Some("Low refrigerant")).expect("edit");
    sync(a, b);
    let winner = a.read().expect("read").diagnosis.fault_cause;
    // The desk confirms the winning value: that is a write, and it ends the conflict.
    a.set_fault_cause(winner.as_deref()).expect("edit");
    sync(a, b);
    assert!(a.conflicts().is_empty());
    assert!(b.conflicts().is_empty());
    assert_eq!(b.read().expect("read").diagnosis.fault_cause, winner);
}

#[test]
fn concurrent_quantity_change_and_remove() {
    let mut job = new_job();
    job.parts = full_job().parts;
    let id = job.parts[0].id.clone();
    let (_, mut r) = replicas(&job, 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.set_part_quantity(&id, 5).expect("edit");
    b.remove_part(&id).expect("edit");
    sync(a, b);
    // The removal wins on every replica: the quantity went into the line that is gone.
    let (ja, jb) = (a.read().expect("read"), b.read().expect("read"));
    assert_eq!(ja, jb);
    assert!(ja.parts.is_empty());
    assert!(matches!(
        a.set_part_quantity(&id, 6),
        Err(EditError::UnknownPart(_))
    ));
}

#[test]
fn concurrent_quantity_changes_are_listed_by_part_id() {
    let mut job = new_job();
    job.parts = full_job().parts;
    let (_, mut r) = replicas(&job, 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let id = PartLineId("p1".into());
    a.set_part_quantity(&id, 3).expect("edit");
    b.update_part(
        &id,
        &PartUpdate {
            quantity: Some(4),
            warranty: Some(false),
            ..PartUpdate::default()
        },
    )
    .expect("edit");
    sync(a, b);
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path, "parts[id=p1].quantity");
    assert!(!a.read().expect("read").parts[0].warranty);
}

#[test]
fn records_written_concurrently_conflict_whole() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let briefing = |by: &str| SafetyBriefing {
        at: at(1),
        by: tech(by),
        notes: String::new(),
    };
    a.record_safety_briefing(&briefing("tech-wang"))
        .expect("edit");
    b.record_safety_briefing(&briefing("tech-li"))
        .expect("edit");
    sync(a, b);
    let job = a.read().expect("read");
    assert_eq!(job, b.read().expect("read"));
    let winner = job.visit.safety_briefing.expect("a briefing");
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path, "visit.safety_briefing");
    assert_eq!(
        conflicts[0].values[0],
        serde_json::to_value(&winner).expect("json")
    );
    assert_eq!(conflicts[0].values.len(), 2);
}

#[test]
fn notes_typed_concurrently_merge_both_texts() {
    let mut job = new_job();
    job.notes = "Ladder.".into();
    let (_, mut r) = replicas(&job, 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.splice_notes(0, 0, "Bring ").expect("edit");
    b.set_notes("Ladder. Gate code 4412.").expect("edit");
    sync(a, b);
    let notes = a.read().expect("read").notes;
    assert_eq!(notes, "Bring Ladder. Gate code 4412.");
    assert_eq!(b.read().expect("read").notes, notes);
    assert!(matches!(
        a.splice_notes(100, 0, "x"),
        Err(EditError::NotesOutOfRange { pos: 100, .. })
    ));
    assert!(matches!(
        a.splice_notes(1, usize::MAX, ""),
        Err(EditError::NotesOutOfRange { .. })
    ));
}

#[test]
fn read_at_old_heads_gives_the_old_state() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    let created = doc.heads();
    doc.set_fault_cause(Some("Worn relay")).expect("edit");
    let id = doc.add_part(&draft("relay", 1)).expect("add");
    let with_part = doc.heads();
    doc.remove_part(&id).expect("edit");
    assert_eq!(doc.read_at(&created).expect("read"), new_job());
    let then = doc.read_at(&with_part).expect("read");
    assert_eq!(then.parts.len(), 1);
    assert_eq!(then.diagnosis.fault_cause.as_deref(), Some("Worn relay"));
    assert!(doc.read().expect("read").parts.is_empty());

    let unknown = ChangeHash([9; 32]);
    assert!(matches!(
        doc.read_at(&[unknown]),
        Err(SchemaError::UnknownHeads { .. })
    ));
}

#[test]
fn each_edit_is_one_change_with_a_message_and_no_op_edits_add_none() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    let count = |d: &mut JobDoc| d.inner_mut().get_changes(&[]).len();
    assert_eq!(count(&mut doc), 1);
    assert!(message_of_last_change(&mut doc).starts_with("Create job"));

    doc.set_labour(Labour {
        minutes: 30,
        rate_per_hour: Money(100),
    })
    .expect("edit");
    assert_eq!(count(&mut doc), 2);
    assert_eq!(message_of_last_change(&mut doc), "Set labour");

    let id = doc.add_part(&draft("relay", 1)).expect("add");
    assert_eq!(count(&mut doc), 3);
    assert_eq!(
        message_of_last_change(&mut doc),
        format!("Add part relay ({}) (R7)", id.0)
    );

    doc.set_fault_cause(Some("Worn relay")).expect("edit");
    assert_eq!(
        message_of_last_change(&mut doc),
        "Set diagnosis.fault_cause (R7)"
    );
    assert_eq!(count(&mut doc), 4);

    // Setting what is already there changes nothing and leaves no history.
    doc.set_fault_cause(Some("Worn relay")).expect("edit");
    doc.set_part_quantity(&id, 1).expect("edit");
    doc.set_technicians(&[tech("tech-wang")]).expect("edit");
    assert_eq!(count(&mut doc), 4);
}

#[test]
fn failed_edits_change_nothing() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    let before = doc.heads();
    let unknown = PartLineId("nope".into());
    assert!(matches!(
        doc.set_part_quantity(&unknown, 1),
        Err(EditError::UnknownPart(_))
    ));
    assert!(matches!(
        doc.update_part(&unknown, &PartUpdate::default()),
        Err(EditError::UnknownPart(_))
    ));
    assert!(matches!(
        doc.remove_part(&unknown),
        Err(EditError::UnknownPart(_))
    ));
    let id = PartLineId("p1".into());
    doc.add_part_with_id(id.clone(), &draft("relay", 1))
        .expect("add");
    let after_add = doc.heads();
    assert!(matches!(
        doc.add_part_with_id(id, &draft("fan", 1)),
        Err(EditError::DuplicatePart(_))
    ));
    assert!(matches!(
        doc.add_part_with_id(PartLineId(String::new()), &draft("fan", 1)),
        Err(EditError::EmptyPartId)
    ));
    assert_ne!(before, after_add);
    assert_eq!(doc.heads(), after_add);
    assert_eq!(doc.read().expect("read").parts.len(), 1);
}

#[test]
fn create_refuses_a_job_it_could_not_read_back() {
    let mut job = full_job();
    job.parts.push(job.parts[0].clone());
    let err = create_job(&job, None).expect_err("duplicate part ids");
    assert!(
        err.to_string()
            .contains("parts[1].id: duplicate part line id"),
        "{err}"
    );
}

#[test]
fn set_technicians_edits_in_place_and_a_technician_added_twice_shows_once() {
    let (_, mut r) = replicas(&new_job(), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    a.set_technicians(&[tech("tech-wang"), tech("tech-li")])
        .expect("edit");
    b.set_technicians(&[tech("tech-wang"), tech("tech-li"), tech("tech-zhao")])
        .expect("edit");
    sync(a, b);
    let techs = a.read().expect("read").technicians;
    assert_eq!(techs, b.read().expect("read").technicians);
    assert_eq!(techs.len(), 3, "{techs:?}");
    assert_eq!(techs[0], tech("tech-wang"));

    a.set_technicians(&[tech("tech-zhao"), tech("tech-wang")])
        .expect("edit");
    assert_eq!(
        a.read().expect("read").technicians,
        vec![tech("tech-zhao"), tech("tech-wang")]
    );
}

#[test]
fn optional_records_are_recorded_and_cleared() {
    let full = full_job();
    let mut doc = JobDoc::create(&new_job()).expect("create");
    let visit = full.visit.clone();
    doc.set_appointment(visit.appointment).expect("edit");
    doc.set_arrival(visit.arrival).expect("edit");
    doc.record_safety_briefing(visit.safety_briefing.as_ref().expect("set"))
        .expect("edit");
    doc.check_out(visit.check_out.as_ref().expect("set"))
        .expect("edit");
    doc.record_training(visit.training.as_ref().expect("set"))
        .expect("edit");
    assert_eq!(
        message_of_last_change(&mut doc),
        "Record visit.training (R16)"
    );
    doc.set_fault_cause(full.diagnosis.fault_cause.as_deref())
        .expect("edit");
    doc.set_fault_category(full.diagnosis.fault_category.as_deref())
        .expect("edit");
    doc.set_solution(full.diagnosis.solution.as_deref())
        .expect("edit");
    let p = &full.parts[0];
    doc.add_part_with_id(
        p.id.clone(),
        &PartDraft {
            part_number: p.part_number.clone(),
            name: "placeholder".into(),
            specification: p.specification.clone(),
            quantity: 9,
            unit_price: Money(1),
            warranty: false,
        },
    )
    .expect("add");
    doc.update_part(
        &p.id,
        &PartUpdate {
            name: Some(p.name.clone()),
            quantity: Some(p.quantity),
            unit_price: Some(p.unit_price),
            warranty: Some(p.warranty),
            ..PartUpdate::default()
        },
    )
    .expect("edit");
    doc.set_labour(full.labour).expect("edit");
    doc.set_travel(full.travel).expect("edit");
    doc.set_billing_mode(full.billing.mode).expect("edit");
    doc.set_invoice_number(full.billing.invoice_number.as_deref())
        .expect("edit");
    doc.record_handover(full.handover.as_ref().expect("set"))
        .expect("edit");
    doc.set_customer_opinion(full.customer_opinion.as_deref())
        .expect("edit");
    doc.set_acknowledgement(full.acknowledgement.as_ref().expect("set"))
        .expect("edit");
    doc.request_completion(full.completion.as_ref().expect("set"))
        .expect("edit");
    doc.set_report_outcome(full.report.as_ref().expect("set"))
        .expect("edit");
    for e in &full.timeline {
        doc.add_timeline_event(e).expect("edit");
    }
    doc.set_notes(&full.notes).expect("edit");
    assert_eq!(doc.read().expect("read"), full);

    doc.clear_acknowledgement().expect("edit");
    doc.clear_completion().expect("edit");
    doc.set_customer_opinion(None).expect("edit");
    doc.set_arrival(None).expect("edit");
    let job = doc.read().expect("read");
    assert!(job.acknowledgement.is_none() && job.completion.is_none());
    assert!(job.customer_opinion.is_none() && job.visit.arrival.is_none());
    assert!(job.report.is_some(), "reopening keeps the last outcome");
}

/// Builds a job document and then breaks it with `f`, writing as a misbehaving device could.
fn broken(f: impl FnOnce(&mut AutoCommit)) -> Result<Job, SchemaError> {
    let mut doc = create_job(&full_job(), None).expect("create");
    f(&mut doc);
    doc.commit();
    read_job(&doc)
}

/// A write that breaks a job document.
type Breakage = Box<dyn FnOnce(&mut AutoCommit)>;

fn map_id(doc: &AutoCommit, path: &[&str]) -> ObjId {
    object_at(doc, path).1
}

#[test]
fn wrong_types_and_missing_fields_name_the_path() {
    let cases: Vec<(Breakage, &str)> = vec![
        (
            Box::new(|d| {
                let v = map_id(d, &["visit"]);
                d.put(&v, "arrival", "yesterday").expect("put");
            }),
            "visit.arrival: expected timestamp, found str",
        ),
        (
            Box::new(|d| d.delete(ROOT, "diagnosis").expect("delete")),
            "diagnosis: missing",
        ),
        (
            Box::new(|d| {
                d.put_object(ROOT, "visit", ObjType::List).expect("put");
            }),
            "visit: expected map, found list",
        ),
        (
            Box::new(|d| {
                let parts = map_id(d, &["parts"]);
                let (_, p) = d.get(&parts, 0).expect("get").expect("part");
                d.put(&p, "quantity", -1).expect("put");
            }),
            "parts[0].quantity: -1 is out of range",
        ),
        (
            Box::new(|d| {
                let parts = map_id(d, &["parts"]);
                let (_, p) = d.get(&parts, 0).expect("get").expect("part");
                d.put(&p, "quantity", 2.5).expect("put");
            }),
            "parts[0].quantity: expected int, found f64",
        ),
        (
            Box::new(|d| d.put(ROOT, "kind", "demolition").expect("put")),
            "kind: unknown job kind \"demolition\"",
        ),
        (
            Box::new(|d| d.put(ROOT, "job_id", "not-an-id").expect("put")),
            "job_id: document id \"not-an-id\" is not valid bs58check",
        ),
        (
            Box::new(|d| {
                let s = map_id(d, &["acknowledgement", "survey"]);
                d.put(&s, "skill", 300).expect("put");
            }),
            "acknowledgement.survey.skill: 300 is out of range",
        ),
        (
            Box::new(|d| {
                let strokes = map_id(d, &["acknowledgement", "signature", "strokes"]);
                let (_, s) = d.get(&strokes, 0).expect("get").expect("stroke");
                let (_, p) = d.get(&s, 1).expect("get").expect("point");
                d.insert(&p, 2, 7).expect("insert");
            }),
            "acknowledgement.signature.strokes[0][1]: a point is [x, y], found 3 numbers",
        ),
        (
            Box::new(|d| {
                let t = map_id(d, &["timeline"]);
                d.insert(&t, 1, "not a map").expect("insert");
            }),
            "timeline[1]: expected map, found str",
        ),
        (
            Box::new(|d| {
                let techs = map_id(d, &["technicians"]);
                d.insert(&techs, 0, "no spaces allowed").expect("insert");
            }),
            "technicians[0]: technician id must be 1 to 64 characters",
        ),
        (
            Box::new(|d| {
                let t = map_id(d, &["visit", "training"]);
                d.put(&t, "trainees", "Ms Lin").expect("put");
            }),
            "visit.training.trainees: expected list, found str",
        ),
        (
            Box::new(|d| {
                let t = map_id(d, &["visit", "training", "trainees"]);
                d.insert(&t, 0, 3).expect("insert");
            }),
            "visit.training.trainees[0]: expected string, found int",
        ),
        (
            Box::new(|d| {
                let t = map_id(d, &["visit", "training"]);
                d.delete(&t, "topics").expect("delete");
            }),
            "visit.training.topics: missing",
        ),
        (
            Box::new(|d| d.put(ROOT, "notes", 5).expect("put")),
            "notes: expected string, found int",
        ),
        (
            Box::new(|d| d.put(ROOT, "schema_version", "1").expect("put")),
            "schema_version: expected int, found str",
        ),
    ];
    for (breakage, expected) in cases {
        let err = broken(breakage).expect_err(expected);
        assert!(
            err.to_string().starts_with(expected),
            "expected {expected:?}, got {err}"
        );
        assert!(err.path().is_some());
    }
}

#[test]
fn strings_written_as_text_and_nulls_for_absent_values_are_read() {
    // A JavaScript app writes plain strings as text objects and may write null for "none".
    let job = broken(|d| {
        let diag = map_id(d, &["diagnosis"]);
        let cause = d
            .put_object(&diag, "fault_cause", ObjType::Text)
            .expect("put");
        d.splice_text(&cause, 0, 0, "From JS").expect("splice");
        d.put(&diag, "solution", ScalarValue::Null).expect("put");
    })
    .expect("read");
    assert_eq!(job.diagnosis.fault_cause.as_deref(), Some("From JS"));
    assert_eq!(job.diagnosis.solution, None);
}

/// R16: documents written before the training record existed have no `visit.training` key.
/// They read as "no training recorded", stay editable, and their JSON (what acknowledgements
/// and reports hash) has no `training` key, so earlier digests and report ids still hold.
#[test]
fn r16_a_document_without_training_reads_as_none_recorded() {
    // Written key by key as the code before R16 wrote it: no training under the visit.
    let mut job = full_job();
    job.visit.training = None;
    let mut doc = create_job(&job, None).expect("create");
    let visit = map_id(&doc, &["visit"]);
    assert!(doc.get(&visit, "training").expect("get").is_none());
    let read = read_job(&doc).expect("an old document reads");
    assert_eq!(read.visit.training, None);
    assert_eq!(read, job);

    let json = serde_json::to_value(&read).expect("json");
    assert!(json["visit"].get("training").is_none(), "{}", json["visit"]);
    let back: Job = serde_json::from_value(json).expect("JSON without training reads");
    assert_eq!(back.visit.training, None);

    // And the training can be added to it later.
    doc.commit();
    let mut doc = JobDoc::from_autocommit(doc);
    let training = full_job().visit.training.expect("set");
    doc.record_training(&training).expect("edit");
    assert_eq!(doc.read().expect("read").visit.training, Some(training));
}

#[test]
fn newer_schema_is_refused_for_reading_and_editing() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    doc.inner_mut()
        .put(ROOT, "schema_version", JOB_SCHEMA_VERSION as i64 + 1)
        .expect("put");
    doc.inner_mut().commit();
    assert!(matches!(
        doc.read(),
        Err(SchemaError::NewerSchema {
            found: 2,
            supported: 1
        })
    ));
    let before = doc.heads();
    assert!(matches!(
        doc.set_fault_cause(Some("x")),
        Err(EditError::Schema(SchemaError::NewerSchema { .. }))
    ));
    assert_eq!(doc.heads(), before);
}

#[test]
fn edits_on_a_document_of_the_wrong_shape_are_refused() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    doc.inner_mut().put(ROOT, "diagnosis", "gone").expect("put");
    doc.inner_mut().put(ROOT, "notes", "flat").expect("put");
    doc.inner_mut().commit();
    let err = doc.set_fault_cause(Some("x")).expect_err("not a map");
    assert_eq!(err.to_string(), "diagnosis: expected map, found str");
    let err = doc.set_notes("x").expect_err("not text");
    assert_eq!(err.to_string(), "notes: expected text, found str");
}

#[test]
fn from_automerge_keeps_content_and_actor() {
    let mut doc = JobDoc::create(&full_job()).expect("create");
    let plain = automerge::Automerge::load(&doc.save())
        .expect("load")
        .with_actor(actor(42));
    let wrapped = JobDoc::from_automerge(plain).expect("wrap");
    assert_eq!(wrapped.inner().get_actor(), &actor(42));
    assert_eq!(wrapped.read().expect("read"), full_job());
}

// ---- Property tests ----

fn arb_text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,10}"
}

fn arb_tech() -> impl Strategy<Value = TechnicianId> {
    arb_name().prop_map(|s| TechnicianId::new(s).expect("valid"))
}

fn arb_ts() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp::from_millis)
}

fn arb_date() -> impl Strategy<Value = CalendarDate> {
    (1900i32..2200, 1u8..=12, 1u8..=28)
        .prop_map(|(y, m, d)| CalendarDate::from_ymd(y, m, d).expect("valid"))
}

fn arb_money() -> impl Strategy<Value = Money> {
    any::<i64>().prop_map(Money)
}

fn arb_part() -> impl Strategy<Value = PartUsed> {
    (
        "[a-z0-9]{1,8}",
        arb_text(),
        arb_text(),
        arb_text(),
        any::<u32>(),
        arb_money(),
        any::<bool>(),
    )
        .prop_map(
            |(id, part_number, name, specification, quantity, unit_price, warranty)| PartUsed {
                id: PartLineId(id),
                part_number,
                name,
                specification,
                quantity,
                unit_price,
                warranty,
            },
        )
}

fn arb_signature() -> impl Strategy<Value = SignatureMark> {
    prop_oneof![
        prop::collection::vec(prop::collection::vec(any::<[i32; 2]>(), 0..4), 0..3)
            .prop_map(|strokes| SignatureMark::Strokes { strokes }),
        (arb_text(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(mime, data)| SignatureMark::Image { mime, data }),
    ]
}

fn arb_ack() -> impl Strategy<Value = Acknowledgement> {
    (
        arb_text(),
        arb_signature(),
        arb_ts(),
        (any::<[Option<u8>; 4]>(), arb_text()),
        arb_name(),
        arb_text(),
        prop::collection::vec(arb_text(), 0..3),
        arb_text(),
    )
        .prop_map(
            |(
                signer_name,
                signature,
                signed_at,
                (scores, suggestions),
                device,
                job_digest,
                heads,
                device_signature,
            )| {
                Acknowledgement {
                    signer_name,
                    signature,
                    signed_at,
                    survey: Survey {
                        attitude: scores[0],
                        skill: scores[1],
                        punctuality: scores[2],
                        service_items: scores[3],
                        suggestions,
                    },
                    device_id: DeviceId::new(device).expect("valid"),
                    job_digest,
                    heads,
                    device_signature,
                }
            },
        )
}

fn arb_report() -> impl Strategy<Value = ReportOutcome> {
    prop_oneof![
        (
            arb_ts(),
            arb_text(),
            arb_text(),
            proptest::option::of(arb_text())
        )
            .prop_map(
                |(at, report_id, digest, supersedes)| ReportOutcome::Signed {
                    at,
                    report_id,
                    digest,
                    supersedes,
                }
            ),
        (
            arb_ts(),
            prop::collection::vec((arb_text(), arb_text(), arb_text()), 0..3)
        )
            .prop_map(|(at, reasons)| ReportOutcome::Refused {
                at,
                reasons: reasons
                    .into_iter()
                    .map(|(rule, code, message)| RefusalReason {
                        rule,
                        code,
                        message,
                    })
                    .collect(),
            }),
    ]
}

fn arb_job() -> impl Strategy<Value = Job> {
    let head = (
        any::<[u8; 16]>(),
        arb_name(),
        prop::sample::select(JobKind::ALL.to_vec()),
        (
            prop::sample::select(Channel::ALL.to_vec()),
            arb_ts(),
            arb_text(),
            proptest::option::of(arb_ts()),
        ),
        (arb_name(), arb_text(), arb_text(), arb_text()),
        (
            arb_text(),
            arb_text(),
            arb_text(),
            proptest::option::of(arb_date()),
            proptest::option::of(arb_date()),
        ),
        prop::collection::btree_set(arb_tech(), 0..4),
    );
    let visit = (
        proptest::option::of(arb_ts()),
        proptest::option::of(arb_ts()),
        proptest::option::of((arb_ts(), arb_tech(), arb_text())),
        proptest::option::of((arb_ts(), arb_tech(), arb_text())),
        proptest::option::of((
            arb_ts(),
            arb_tech(),
            prop::collection::vec(arb_text(), 0..3),
            arb_text(),
        )),
        (
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
        ),
    );
    let money = (
        prop::collection::btree_map("[a-z0-9]{1,8}", arb_part(), 0..4),
        (any::<u32>(), arb_money(), any::<u32>(), arb_money()),
        (any::<bool>(), arb_text(), proptest::option::of(arb_text())),
    );
    let tail = (
        proptest::option::of((
            arb_text(),
            arb_text(),
            proptest::option::of(arb_ts()),
            arb_ts(),
            arb_tech(),
            arb_text(),
        )),
        proptest::option::of(arb_text()),
        proptest::option::of(arb_ack()),
        proptest::option::of((arb_ts(), arb_tech())),
        proptest::option::of(arb_report()),
        prop::collection::vec((arb_ts(), arb_text(), arb_text(), arb_text()), 0..3),
        arb_text(),
    );
    (head, visit, money, tail).prop_map(|(head, visit, money, tail)| {
        let (job_id, branch, kind, request, customer, product, techs) = head;
        let (appointment, arrival, briefing, check_out, training, diagnosis) = visit;
        let (parts, (minutes, rate, distance, cost), billing) = money;
        let (handover, opinion, ack, completion, report, timeline, notes) = tail;
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: DocumentId::from_bytes(job_id),
            branch_id: BranchId::new(branch).expect("valid"),
            kind,
            request: ServiceRequest {
                channel: request.0,
                received_at: request.1,
                fault_description: request.2,
                requested_arrival: request.3,
            },
            customer: Customer {
                id: CustomerId::new(customer.0).expect("valid"),
                name: customer.1,
                contact: customer.2,
                site_address: customer.3,
            },
            product: Product {
                model: product.0,
                serial: product.1,
                product_type: product.2,
                purchase_date: product.3,
                warranty_end: product.4,
            },
            technicians: techs.into_iter().collect(),
            visit: Visit {
                appointment,
                arrival,
                safety_briefing: briefing.map(|(at, by, notes)| SafetyBriefing { at, by, notes }),
                check_out: check_out.map(|(at, by, note)| CheckOut { at, by, note }),
                training: training.map(|(at, by, trainees, topics)| Training {
                    at,
                    by,
                    trainees,
                    topics,
                }),
            },
            diagnosis: Diagnosis {
                fault_cause: diagnosis.0,
                fault_category: diagnosis.1,
                solution: diagnosis.2,
            },
            // Keyed by id so the ids are unique, as a document requires.
            parts: parts
                .into_iter()
                .map(|(id, p)| PartUsed {
                    id: PartLineId(id),
                    ..p
                })
                .collect(),
            labour: Labour {
                minutes,
                rate_per_hour: rate,
            },
            travel: Travel {
                distance_m: distance,
                cost,
            },
            billing: Billing {
                mode: if billing.0 {
                    BillingMode::Warranty
                } else {
                    BillingMode::Billable
                },
                currency: billing.1,
                invoice_number: billing.2,
            },
            handover: handover.map(
                |(items, reason, promised_completion, taken_at, technician, customer_signer)| {
                    Handover {
                        items,
                        reason,
                        promised_completion,
                        taken_at,
                        technician,
                        customer_signer,
                    }
                },
            ),
            customer_opinion: opinion,
            acknowledgement: ack,
            completion: completion.map(|(at, by)| Completion { at, by }),
            report,
            timeline: timeline
                .into_iter()
                .map(|(at, actor, kind, text)| TimelineEvent {
                    at,
                    actor,
                    kind,
                    text,
                })
                .collect(),
            notes,
            attachments: Vec::new(),
            expenses: Vec::new(),
        }
    })
}

/// A typed edit with small value pools, so replicas often touch the same fields.
#[derive(Debug, Clone)]
enum Op {
    Appointment(Option<i64>),
    Arrival(Option<i64>),
    SafetyBriefing(i64, &'static str),
    Training(i64, &'static str),
    FaultCause(Option<&'static str>),
    FaultCategory(Option<&'static str>),
    Solution(Option<&'static str>),
    AddPart(&'static str, u32),
    SetQuantity(usize, u32),
    UpdatePart(usize, Option<&'static str>, Option<u32>, Option<bool>),
    RemovePart(usize),
    Labour(u32, i64),
    Travel(u32, i64),
    BillingMode(bool),
    Invoice(Option<&'static str>),
    Handover(&'static str),
    Opinion(Option<&'static str>),
    Acknowledge(&'static str),
    ClearAcknowledgement,
    CheckOut(&'static str),
    RequestCompletion(i64),
    ClearCompletion,
    Report(bool, i64),
    Timeline(&'static str),
    SetNotes(&'static str),
    SpliceNotes(usize, usize, &'static str),
    Technicians(Vec<usize>),
}

const WORDS: [&str; 4] = ["relay", "fan", "valve", "seal"];
const TECHS: [&str; 4] = ["tech-wang", "tech-li", "tech-zhao", "tech-chen"];

fn arb_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(WORDS.to_vec())
}

fn arb_op() -> impl Strategy<Value = Op> {
    let small = 0i64..3;
    prop_oneof![
        proptest::option::of(small.clone()).prop_map(Op::Appointment),
        proptest::option::of(small.clone()).prop_map(Op::Arrival),
        (small.clone(), arb_word()).prop_map(|(t, w)| Op::SafetyBriefing(t, w)),
        (small.clone(), arb_word()).prop_map(|(t, w)| Op::Training(t, w)),
        proptest::option::of(arb_word()).prop_map(Op::FaultCause),
        proptest::option::of(arb_word()).prop_map(Op::FaultCategory),
        proptest::option::of(arb_word()).prop_map(Op::Solution),
        (arb_word(), 0u32..3).prop_map(|(w, q)| Op::AddPart(w, q)),
        (any::<usize>(), 0u32..3).prop_map(|(i, q)| Op::SetQuantity(i, q)),
        (
            any::<usize>(),
            proptest::option::of(arb_word()),
            proptest::option::of(0u32..3),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(i, n, q, w)| Op::UpdatePart(i, n, q, w)),
        any::<usize>().prop_map(Op::RemovePart),
        (0u32..3, small.clone()).prop_map(|(m, r)| Op::Labour(m, r)),
        (0u32..3, small.clone()).prop_map(|(d, c)| Op::Travel(d, c)),
        any::<bool>().prop_map(Op::BillingMode),
        proptest::option::of(arb_word()).prop_map(Op::Invoice),
        arb_word().prop_map(Op::Handover),
        proptest::option::of(arb_word()).prop_map(Op::Opinion),
        arb_word().prop_map(Op::Acknowledge),
        Just(Op::ClearAcknowledgement),
        arb_word().prop_map(Op::CheckOut),
        small.clone().prop_map(Op::RequestCompletion),
        Just(Op::ClearCompletion),
        (any::<bool>(), small).prop_map(|(s, t)| Op::Report(s, t)),
        arb_word().prop_map(Op::Timeline),
        prop::sample::select(vec!["", "abc", "ab", "xyz abc"]).prop_map(Op::SetNotes),
        (any::<usize>(), 0usize..3, arb_word()).prop_map(|(p, d, w)| Op::SpliceNotes(p, d, w)),
        prop::collection::vec(0usize..4, 0..4).prop_map(Op::Technicians),
    ]
}

fn apply(doc: &mut JobDoc, op: &Op) -> Result<(), EditError> {
    let job = doc.read()?;
    let pick = |i: usize| {
        job.parts
            .get(i % job.parts.len().max(1))
            .map(|p| p.id.clone())
    };
    let by = tech("tech-wang");
    match op {
        Op::Appointment(t) => doc.set_appointment(t.map(at)),
        Op::Arrival(t) => doc.set_arrival(t.map(at)),
        Op::SafetyBriefing(t, w) => doc.record_safety_briefing(&SafetyBriefing {
            at: at(*t),
            by,
            notes: (*w).into(),
        }),
        Op::Training(t, w) => doc.record_training(&Training {
            at: at(*t),
            by,
            trainees: vec!["operator".into(), (*w).into()],
            topics: (*w).into(),
        }),
        Op::FaultCause(w) => doc.set_fault_cause(*w),
        Op::FaultCategory(w) => doc.set_fault_category(*w),
        Op::Solution(w) => doc.set_solution(*w),
        Op::AddPart(w, q) => doc.add_part(&draft(w, *q)).map(|_| ()),
        Op::SetQuantity(i, q) => match pick(*i) {
            Some(id) => doc.set_part_quantity(&id, *q),
            None => Ok(()),
        },
        Op::UpdatePart(i, name, quantity, warranty) => match pick(*i) {
            Some(id) => doc.update_part(
                &id,
                &PartUpdate {
                    name: name.map(str::to_owned),
                    quantity: *quantity,
                    warranty: *warranty,
                    ..PartUpdate::default()
                },
            ),
            None => Ok(()),
        },
        Op::RemovePart(i) => match pick(*i) {
            Some(id) => doc.remove_part(&id),
            None => Ok(()),
        },
        Op::Labour(minutes, rate) => doc.set_labour(Labour {
            minutes: *minutes,
            rate_per_hour: Money(*rate),
        }),
        Op::Travel(distance_m, cost) => doc.set_travel(Travel {
            distance_m: *distance_m,
            cost: Money(*cost),
        }),
        Op::BillingMode(w) => doc.set_billing_mode(if *w {
            BillingMode::Warranty
        } else {
            BillingMode::Billable
        }),
        Op::Invoice(w) => doc.set_invoice_number(*w),
        Op::Handover(w) => doc.record_handover(&Handover {
            items: (*w).into(),
            reason: String::new(),
            promised_completion: None,
            taken_at: at(1),
            technician: by,
            customer_signer: "Ms Lin".into(),
        }),
        Op::Opinion(w) => doc.set_customer_opinion(*w),
        Op::Acknowledge(w) => {
            let mut ack = full_job().acknowledgement.expect("set");
            ack.signer_name = (*w).into();
            doc.set_acknowledgement(&ack)
        }
        Op::ClearAcknowledgement => doc.clear_acknowledgement(),
        Op::CheckOut(w) => doc.check_out(&CheckOut {
            at: at(2),
            by,
            note: (*w).into(),
        }),
        Op::RequestCompletion(t) => doc.request_completion(&Completion { at: at(*t), by }),
        Op::ClearCompletion => doc.clear_completion(),
        Op::Report(signed, t) => doc.set_report_outcome(&if *signed {
            ReportOutcome::Signed {
                at: at(*t),
                report_id: "r1".into(),
                digest: "00".into(),
                supersedes: None,
            }
        } else {
            full_job().report.expect("set")
        }),
        Op::Timeline(w) => doc.add_timeline_event(&TimelineEvent {
            at: at(3),
            actor: "server".into(),
            kind: (*w).into(),
            text: String::new(),
        }),
        Op::SetNotes(s) => doc.set_notes(s),
        Op::SpliceNotes(pos, del, w) => {
            let len = job.notes.chars().count();
            let pos = pos % (len + 1);
            doc.splice_notes(pos, (*del).min(len - pos), w)
        }
        Op::Technicians(picks) => {
            let techs: Vec<_> = picks.iter().map(|i| tech(TECHS[*i])).collect();
            doc.set_technicians(&techs)
        }
    }
}

/// 2 to 5 replicas, each with its own edits and its own order of merging the others.
fn arb_scenario() -> impl Strategy<Value = (Vec<Vec<Op>>, Vec<Vec<usize>>)> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::collection::vec(arb_op(), 0..8), n),
            prop::collection::vec(Just((0..n).collect::<Vec<_>>()).prop_shuffle(), n),
        )
    })
}

/// Walks every map key and list element of a document (test-only, for hostile writes).
fn slots(doc: &AutoCommit, obj: &ObjId, out: &mut Vec<(ObjId, Prop)>) {
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => {
            for key in doc.keys(obj).collect::<Vec<_>>() {
                out.push((obj.clone(), Prop::Map(key.clone())));
                if let Ok(Some((Value::Object(_), child))) = doc.get(obj, key) {
                    slots(doc, &child, out);
                }
            }
        }
        Ok(ObjType::List) => {
            for i in 0..doc.length(obj) {
                out.push((obj.clone(), Prop::Seq(i)));
                if let Ok(Some((Value::Object(_), child))) = doc.get(obj, i) {
                    slots(doc, &child, out);
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Hostile {
    Scalar(ScalarValue),
    Object(ObjType),
    Delete,
}

fn arb_hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        prop_oneof![
            any::<i64>().prop_map(ScalarValue::Int),
            any::<u64>().prop_map(ScalarValue::Uint),
            any::<f64>().prop_map(ScalarValue::F64),
            any::<i64>().prop_map(ScalarValue::Timestamp),
            any::<i64>().prop_map(ScalarValue::counter),
            any::<bool>().prop_map(ScalarValue::Boolean),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(ScalarValue::Bytes),
            arb_text().prop_map(|s| ScalarValue::Str(s.into())),
            Just(ScalarValue::Null),
        ]
        .prop_map(Hostile::Scalar),
        prop::sample::select(vec![ObjType::Map, ObjType::List, ObjType::Text])
            .prop_map(Hostile::Object),
        Just(Hostile::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_job_reads_back_as_written(job in arb_job()) {
        let doc = create_job(&job, None).expect("create");
        prop_assert_eq!(read_job(&doc).expect("read"), job);
    }

    #[test]
    fn replicas_converge_on_one_job_and_one_list_of_conflicts(
        (edits, orders) in arb_scenario()
    ) {
        let n = u8::try_from(edits.len()).expect("small");
        let (_, mut docs) = replicas(&full_job(), n);
        for (doc, ops) in docs.iter_mut().zip(&edits) {
            for op in ops {
                apply(doc, op).expect("every generated edit applies");
            }
        }
        // Each replica merges every other's offline state, in its own order.
        let offline: Vec<Vec<u8>> = docs.iter_mut().map(JobDoc::save).collect();
        for (doc, order) in docs.iter_mut().zip(&orders) {
            for &j in order {
                let mut other = JobDoc::load(&offline[j]).expect("load");
                doc.merge(&mut other).expect("merge");
            }
        }
        let first = docs[0].read().expect("merged job reads");
        // The canonical report bytes (RFC 8785) must match too: that is what gets signed.
        let first_bytes = crate::report::report_content(&first)
            .map(|v| crate::canonical::to_canonical_bytes(&v).expect("canonical"))
            .expect("content");
        let first_conflicts = docs[0].conflicts();
        let mut first_heads = docs[0].heads();
        first_heads.sort();
        for doc in &mut docs[1..] {
            let job = doc.read().expect("merged job reads");
            prop_assert_eq!(&job, &first);
            let bytes = crate::report::report_content(&job)
                .map(|v| crate::canonical::to_canonical_bytes(&v).expect("canonical"))
                .expect("content");
            prop_assert_eq!(bytes, first_bytes.clone());
            prop_assert_eq!(doc.conflicts(), first_conflicts.clone());
            let mut heads = doc.heads();
            heads.sort();
            prop_assert_eq!(heads, first_heads.clone());
        }
    }

    #[test]
    fn hostile_writes_never_panic_the_reader_or_the_editor(
        writes in prop::collection::vec((any::<prop::sample::Index>(), arb_hostile()), 1..5)
    ) {
        let mut doc = create_job(&full_job(), None).expect("create");
        for (index, write) in &writes {
            let mut all = Vec::new();
            slots(&doc, &ROOT, &mut all);
            if all.is_empty() {
                break;
            }
            let (obj, prop) = all[index.index(all.len())].clone();
            let result = match write {
                Hostile::Scalar(v) => doc.put(&obj, prop, v.clone()),
                Hostile::Object(t) => doc.put_object(&obj, prop, *t).map(|_| ()),
                Hostile::Delete => doc.delete(&obj, prop),
            };
            // Automerge itself refuses some writes (e.g. a scalar into text); that is fine.
            let _ = result;
        }
        doc.commit();
        match read_job(&doc) {
            Ok(_) => {}
            Err(e) => prop_assert!(
                e.path().is_some() || matches!(e, SchemaError::NewerSchema { .. }),
                "an error names its path: {}", e
            ),
        }
        let _ = conflicts(&doc);
        let mut wrapped = JobDoc::from_autocommit(doc);
        let _ = wrapped.set_fault_cause(Some("x"));
        let _ = wrapped.add_part(&draft("relay", 1));
        let _ = wrapped.set_part_quantity(&PartLineId("p1".into()), 3);
        let _ = wrapped.set_notes("hello");
        let _ = wrapped.splice_notes(1, 1, "y");
        let _ = wrapped.set_technicians(&[tech("tech-li")]);
        let _ = wrapped.read();
    }
}

#[test]
fn a_completion_request_is_pending_until_an_outcome_as_recent_answers_it() {
    let mut doc = JobDoc::create(&new_job()).expect("create");
    let pending = |doc: &mut JobDoc| completion_pending(doc.inner());
    assert!(!pending(&mut doc), "no request yet");
    let by = tech("tech-wang");
    doc.request_completion(&Completion {
        at: at(1_000),
        by: by.clone(),
    })
    .expect("request");
    assert!(pending(&mut doc));
    doc.set_report_outcome(&ReportOutcome::Refused {
        at: at(1_000),
        reasons: vec![],
    })
    .expect("answer");
    assert!(!pending(&mut doc), "answered at the same instant");
    doc.clear_completion().expect("reopen");
    assert!(!pending(&mut doc), "reopened: nothing to answer");
    doc.request_completion(&Completion { at: at(2_000), by })
        .expect("request again");
    assert!(
        pending(&mut doc),
        "the older outcome does not answer the new request"
    );
    // Agrees with the strict read the signer makes.
    let job = read_job(doc.inner()).expect("read");
    let answered = match job.report {
        Some(ReportOutcome::Refused { at, .. } | ReportOutcome::Signed { at, .. }) => at,
        None => panic!("the outcome is gone"),
    };
    assert!(job.completion.is_some_and(|c| answered < c.at));
}
