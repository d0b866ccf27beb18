//! The coherence rule (issue 15): groups resolved together, duplicate parts flagged.

use super::*;
use crate::job::doc::{JobDoc, PartDraft, PartUpdate};
use crate::job::fixtures::{actor, at, new_job};
use crate::job::model::Job;

/// The creator's document and two technicians' replicas with fixed actors.
fn two_technicians(job: &Job) -> (JobDoc, JobDoc) {
    let mut origin = JobDoc::create_with_actor(job, actor(0)).expect("create");
    let mut a = origin.fork();
    a.set_actor(actor(1));
    let mut b = origin.fork();
    b.set_actor(actor(2));
    (a, b)
}

fn sync(a: &mut JobDoc, b: &mut JobDoc) {
    a.merge(b).expect("merge b into a");
    b.merge(a).expect("merge a into b");
}

fn part(number: &str) -> PartDraft {
    PartDraft {
        part_number: number.into(),
        name: "Relay".into(),
        specification: String::new(),
        quantity: 1,
        unit_price: Money(2500),
        warranty: false,
    }
}

fn groups(doc: &mut JobDoc) -> Vec<(String, &'static str, Vec<String>)> {
    doc.unresolved()
        .into_iter()
        .map(|u| (u.group, u.code, u.fields))
        .collect()
}

#[test]
fn r7_one_technician_after_another_is_coherent() {
    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    sync(&mut a, &mut b);
    // B saw A's cause before writing the solution and labour.
    b.set_solution(Some("Replaced relay")).expect("edit");
    b.set_labour(Labour {
        minutes: 45,
        rate_per_hour: Money(12000),
    })
    .expect("edit");
    sync(&mut a, &mut b);
    assert!(a.unresolved().is_empty());
    assert!(b.unresolved().is_empty());
}

#[test]
fn r7_cause_from_one_and_solution_labour_from_the_other_is_an_unresolved_conflict() {
    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_solution(Some("Recharged refrigerant")).expect("edit");
    b.set_labour(Labour {
        minutes: 90,
        rate_per_hour: Money(12000),
    })
    .expect("edit");
    sync(&mut a, &mut b);
    // No single field is in conflict: automerge alone would show nothing.
    assert!(a.conflicts().is_empty());
    let found = groups(&mut a);
    assert_eq!(found, groups(&mut b), "every replica sees the same");
    assert_eq!(
        found,
        vec![(
            WORK.to_owned(),
            "unresolved_conflict",
            vec![
                "diagnosis.fault_cause".to_owned(),
                "diagnosis.solution".to_owned(),
                "labour.minutes".to_owned(),
                "labour.rate_per_hour".to_owned(),
            ]
        )]
    );
    // Working on after the merge does not make the torn values agree.
    a.set_fault_category(Some("electrical")).expect("edit");
    assert_eq!(a.unresolved().len(), 1);
}

#[test]
fn r7_two_different_causes_are_an_unresolved_conflict_and_equal_ones_are_not() {
    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_fault_cause(Some("Low refrigerant")).expect("edit");
    sync(&mut a, &mut b);
    assert_eq!(
        groups(&mut a),
        vec![(
            WORK.to_owned(),
            "unresolved_conflict",
            vec!["diagnosis.fault_cause".to_owned()]
        )]
    );

    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_fault_cause(Some("Worn relay")).expect("edit");
    sync(&mut a, &mut b);
    assert!(a.unresolved().is_empty(), "{:?}", a.unresolved());
}

#[test]
fn a_resolution_writes_the_group_in_one_change_records_who_and_syncs() {
    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_fault_cause(Some("Low refrigerant")).expect("edit");
    b.set_solution(Some("Recharged")).expect("edit");
    sync(&mut a, &mut b);
    let chosen = Resolution::Work {
        fault_cause: Some("Worn relay".into()),
        fault_category: None,
        solution: Some("Replaced relay".into()),
        labour: Labour {
            minutes: 30,
            rate_per_hour: Money(12000),
        },
    };
    let heads_before = a.heads().len();
    let record = a.resolve(&chosen, "tech-wang", at(1_000)).expect("resolve");
    assert!(heads_before >= 1);
    assert!(a.unresolved().is_empty());
    assert!(a.conflicts().is_empty(), "the per-field conflict ends too");
    sync(&mut a, &mut b);
    assert!(b.unresolved().is_empty());
    let job = b.read().expect("read");
    assert_eq!(job.diagnosis.fault_cause.as_deref(), Some("Worn relay"));
    assert_eq!(job.diagnosis.solution.as_deref(), Some("Replaced relay"));
    assert_eq!(job.labour.minutes, 30);
    let records = resolutions(b.inner());
    assert_eq!(records, vec![record]);
    assert_eq!(records[0].by, "tech-wang");
    assert_eq!(records[0].group, WORK);
    assert_eq!(records[0].resolution, chosen);
    // Nothing left to resolve: a second resolution is refused, and writes nothing.
    let heads = b.heads();
    assert!(matches!(
        b.resolve(&chosen, "tech-li", at(2_000)),
        Err(EditError::NothingToResolve(g)) if g == WORK
    ));
    assert_eq!(b.heads(), heads);
}

#[test]
fn an_edit_concurrent_with_the_resolution_tears_the_group_again() {
    let (mut a, mut b) = two_technicians(&new_job());
    a.set_fault_cause(Some("Worn relay")).expect("edit");
    b.set_solution(Some("Recharged")).expect("edit");
    sync(&mut a, &mut b);
    let current = current_work(&a.read().expect("read"));
    a.resolve(&current, "desk:manager", at(1)).expect("resolve");
    b.set_solution(Some("Recharged and tested")).expect("edit");
    sync(&mut a, &mut b);
    assert_eq!(a.unresolved().len(), 1);
}

#[test]
fn r10_a_part_line_written_by_two_is_an_unresolved_conflict_until_resolved() {
    let (mut a, mut b) = two_technicians(&new_job());
    let line = a.add_part(&part("PN-1")).expect("add");
    sync(&mut a, &mut b);
    a.set_part_quantity(&line, 2).expect("edit");
    b.update_part(
        &line,
        &PartUpdate {
            unit_price: Some(Money(9900)),
            ..PartUpdate::default()
        },
    )
    .expect("edit");
    sync(&mut a, &mut b);
    let path = format!("parts[id={}]", line.0);
    assert_eq!(
        groups(&mut a),
        vec![(
            part_group(&line),
            "unresolved_conflict",
            vec![format!("{path}.quantity"), format!("{path}.unit_price")]
        )]
    );
    let current = current_part(&a.read().expect("read"), &line).expect("line");
    b.resolve(&current, "tech-li", at(5)).expect("resolve");
    sync(&mut a, &mut b);
    assert!(a.unresolved().is_empty());
    let p = &a.read().expect("read").parts[0];
    assert_eq!((p.quantity, p.unit_price), (2, Money(9900)));
}

#[test]
fn r10_the_same_part_number_added_by_two_devices_is_a_possible_duplicate() {
    let (mut a, mut b) = two_technicians(&new_job());
    let la = a.add_part(&part("PN-7")).expect("add");
    let lb = b.add_part(&part(" pn-7 ")).expect("add");
    sync(&mut a, &mut b);
    let found = a.unresolved();
    assert_eq!(found, b.unresolved());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, "possible_duplicate_part");
    assert_eq!(found[0].group, "duplicate_part:PN-7");
    let mut lines = found[0].lines.clone();
    lines.sort();
    let mut want = vec![la.clone(), lb.clone()];
    want.sort();
    assert_eq!(lines, want);

    // Confirmed as two parts: both stay, and the flag is gone everywhere.
    let keep_both = Resolution::DuplicatePart {
        part_number: "PN-7".into(),
        keep: vec![la.clone(), lb.clone()],
    };
    a.resolve(&keep_both, "tech-wang", at(9)).expect("confirm");
    sync(&mut a, &mut b);
    assert!(b.unresolved().is_empty());
    assert_eq!(b.read().expect("read").parts.len(), 2);
}

#[test]
fn r10_confirming_one_line_of_a_duplicate_removes_the_other() {
    let (mut a, mut b) = two_technicians(&new_job());
    let la = a.add_part(&part("PN-7")).expect("add");
    let lb = b.add_part(&part("PN-7")).expect("add");
    sync(&mut a, &mut b);
    let stray = Resolution::DuplicatePart {
        part_number: "PN-7".into(),
        keep: vec![PartLineId("nope".into())],
    };
    assert!(matches!(
        a.resolve(&stray, "tech-wang", at(9)),
        Err(EditError::InvalidResolution(_))
    ));
    let keep_one = Resolution::DuplicatePart {
        part_number: "PN-7".into(),
        keep: vec![lb.clone()],
    };
    a.resolve(&keep_one, "tech-wang", at(9)).expect("confirm");
    sync(&mut a, &mut b);
    let parts = b.read().expect("read").parts;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].id, lb);
    assert_ne!(parts[0].id, la);
    assert!(b.unresolved().is_empty());
}

#[test]
fn the_same_part_number_added_knowingly_is_not_a_duplicate() {
    let (mut a, mut b) = two_technicians(&new_job());
    // One device, two of the same part: deliberate.
    a.add_part(&part("PN-7")).expect("add");
    a.add_part(&part("PN-7")).expect("add");
    // Another device that had both lines in view adds a third.
    sync(&mut a, &mut b);
    b.add_part(&part("PN-7")).expect("add");
    // An empty part number is never a duplicate.
    a.add_part(&part("")).expect("add");
    b.add_part(&part("")).expect("add");
    sync(&mut a, &mut b);
    assert!(a.unresolved().is_empty(), "{:?}", a.unresolved());
}
