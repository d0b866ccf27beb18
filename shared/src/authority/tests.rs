use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjType, ROOT};

use super::*;
use crate::job::approvals::{Approval, ApprovalKind, Decision, decide, request_approval};
use crate::job::doc::{JobDoc, PartDraft};
use crate::job::fixtures::{actor, at, new_job, tech};
use crate::job::{CheckOut, ReportOutcome};
use crate::time::{Money, Timestamp};

/// The server's job and a device's replica of it.
fn job_and_device() -> (Automerge, JobDoc) {
    let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
    let mut device = server.fork();
    device.set_actor(actor(1));
    (server.inner_mut().document().clone(), device)
}

/// The changes `doc` made since `heads`.
fn changes_since(doc: &mut AutoCommit, heads: &[ChangeHash]) -> Vec<Change> {
    doc.get_changes(heads)
}

/// Checks what `edit` does to the device's replica, as the server would on receiving it.
fn check_edit(writer: Writer, edit: impl FnOnce(&mut AutoCommit)) -> Result<(), Violation> {
    let (server, mut device) = job_and_device();
    let before = device.heads();
    edit(device.inner_mut());
    let changes = changes_since(device.inner_mut(), &before);
    assert!(!changes.is_empty(), "the edit made no change");
    let mut checker = Checker::new(&server, &JOB, writer);
    changes.iter().try_for_each(|c| checker.check(c))
}

fn ask(id: &str) -> Approval {
    Approval {
        id: id.into(),
        kind: ApprovalKind::WarrantyPart,
        reason: "compressor under warranty".into(),
        requested_by: "tech-wang".into(),
        requested_at: at(10),
        amount: Some(Money(250_000)),
        expense: None,
        decision: None,
    }
}

fn decision() -> Decision {
    Decision {
        approved: true,
        by: "desk:manager".into(),
        at: at(20),
        note: "ok".into(),
    }
}

/// A typed edit of a job, as a device makes one.
type Edit = Box<dyn FnOnce(&mut JobDoc)>;

#[test]
fn a_device_writes_its_on_site_record() {
    let edits: Vec<Edit> = vec![
        Box::new(|j| j.set_arrival(Some(at(5))).expect("edit")),
        Box::new(|j| j.set_fault_cause(Some("worn relay")).expect("edit")),
        Box::new(|j| {
            let id = j.add_part(&PartDraft {
                part_number: "RL-12".into(),
                name: "Relay".into(),
                specification: "24 V".into(),
                quantity: 1,
                unit_price: Money(1250),
                warranty: true,
            });
            j.set_part_quantity(&id.expect("part"), 3).expect("edit");
        }),
        Box::new(|j| {
            j.check_out(&CheckOut {
                at: at(9),
                by: tech("tech-wang"),
                note: "called the desk".into(),
            })
            .expect("edit")
        }),
        Box::new(|j| j.splice_notes(0, 0, "Bring the ladder").expect("edit")),
        Box::new(|j| j.set_customer_opinion(Some("tidy")).expect("edit")),
        Box::new(|j| {
            request_approval(j.inner_mut(), &ask("req-1")).expect("request");
        }),
    ];
    for edit in edits {
        let (server, mut device) = job_and_device();
        let before = device.heads();
        edit(&mut device);
        let changes = changes_since(device.inner_mut(), &before);
        let mut checker = Checker::new(&server, &JOB, Writer::Device);
        for change in &changes {
            assert_eq!(checker.check(change), Ok(()));
        }
    }
}

#[test]
fn r12_r18_r31_a_device_cannot_decide_its_own_approval_request() {
    let (server, mut device) = job_and_device();
    let before = device.heads();
    request_approval(device.inner_mut(), &ask("req-1")).expect("request");
    device.inner_mut().commit();
    decide(device.inner_mut(), "req-1", &decision()).expect("decide");
    let changes = changes_since(device.inner_mut(), &before);
    let mut checker = Checker::new(&server, &JOB, Writer::Device);
    // The request passes; the decision written into it (a change of its own) does not.
    let results: Vec<_> = changes.iter().map(|c| checker.check(c)).collect();
    assert_eq!(results[0], Ok(()));
    let refused = results[1].clone().expect_err("the decision is refused");
    assert_eq!(refused.path, "approvals.req-1.decision");
    assert!(refused.why.contains("manager"), "{refused}");
}

#[test]
fn a_device_cannot_change_an_approval_request_once_made() {
    // The server already holds the request; the device rewrites its amount.
    let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
    let mut device = server.fork();
    device.set_actor(actor(1));
    request_approval(device.inner_mut(), &ask("req-1")).expect("request");
    server.merge(&mut device).expect("merge");
    let before = device.heads();
    let request = device
        .inner()
        .get(ROOT, "approvals")
        .ok()
        .flatten()
        .and_then(|(_, map)| device.inner().get(&map, "req-1").ok().flatten())
        .map(|(_, id)| id)
        .expect("the request");
    device
        .inner_mut()
        .put(&request, "amount", 9_999_999)
        .expect("put");
    let changes = changes_since(device.inner_mut(), &before);
    let doc = server.inner_mut().document().clone();
    let refused = Checker::new(&doc, &JOB, Writer::Device)
        .check(&changes[0])
        .expect_err("refused");
    assert_eq!(refused.path, "approvals.req-1.amount");
    assert!(refused.why.contains("added, not changed"), "{refused}");
}

#[test]
fn a_device_cannot_write_the_report_outcome_the_assignment_or_a_new_root_field() {
    let outcome = check_edit(Writer::Device, |d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_report_outcome(&ReportOutcome::Refused {
            at: Timestamp::from_millis(1),
            reasons: vec![],
        })
        .expect("edit");
        *d = job.into_inner();
    })
    .expect_err("refused");
    assert_eq!(outcome.path, "report");
    assert!(outcome.why.contains("signer"), "{outcome}");

    let assignment = check_edit(Writer::Device, |d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_technicians(&[tech("tech-wang"), tech("tech-li")])
            .expect("edit");
        *d = job.into_inner();
    })
    .expect_err("refused");
    assert!(assignment.path.starts_with("technicians"), "{assignment}");

    let new_field = check_edit(Writer::Device, |d| {
        d.put(ROOT, "bonus", 100).expect("put");
    })
    .expect_err("refused");
    assert_eq!(new_field.path, "bonus");
    assert!(new_field.why.contains("unknown fields"), "{new_field}");

    // Replacing a whole record the server made is not writing inside it.
    let replaced = check_edit(Writer::Device, |d| {
        d.put_object(ROOT, "visit", ObjType::Map).expect("put");
    })
    .expect_err("refused");
    assert_eq!(replaced.path, "visit");
    let customer = check_edit(Writer::Device, |d| {
        let (_, c) = d.get(ROOT, "customer").ok().flatten().expect("customer");
        d.put(&c, "name", "someone else").expect("put");
    })
    .expect_err("refused");
    assert_eq!(customer.path, "customer.name");
}

#[test]
fn issue_20_a_device_cannot_write_the_price_list_the_desk_gave_the_job() {
    let list = check_edit(Writer::Device, |d| {
        crate::job::price_list::write_price_list(
            d,
            &[crate::job::price_list::PriceItem {
                part_number: "TC-220".into(),
                name: "thermostat".into(),
                specification: "220V".into(),
                unit_price: Money(1),
            }],
        )
        .expect("write");
    })
    .expect_err("refused");
    assert_eq!(list.path, "price_list");
}

#[test]
fn a_desk_token_writes_nothing_over_sync() {
    let refused = check_edit(Writer::Desk, |d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_fault_cause(Some("desk guess")).expect("edit");
        *d = job.into_inner();
    })
    .expect_err("refused");
    assert_eq!(refused.path, "diagnosis.fault_cause");
    assert_eq!(refused.writer, "desk");
}

#[test]
fn objects_made_by_an_earlier_change_of_the_same_batch_are_resolved() {
    let (server, mut device) = job_and_device();
    let before = device.heads();
    let d = device.inner_mut();
    // A job from before approvals existed: the device makes the map, then a request, in
    // two changes; the second writes into an object only the first made.
    request_approval(d, &ask("req-1")).expect("request");
    d.commit();
    request_approval(d, &ask("req-2")).expect("request");
    let changes = changes_since(device.inner_mut(), &before);
    assert!(changes.len() >= 2);
    let mut checker = Checker::new(&server, &JOB, Writer::Device);
    for change in &changes {
        assert_eq!(checker.check(change), Ok(()));
    }
    // Alone, without the first change, the second names an object the job does not hold.
    let mut fresh = Checker::new(&server, &JOB, Writer::Device);
    let unknown = fresh.check(&changes[1]).expect_err("unknown object");
    assert!(unknown.why.contains("does not hold"), "{unknown}");
}

#[test]
fn the_index_report_and_complaint_documents_take_no_device_writes() {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "jobs", "x").expect("put");
    let server = doc.document().clone();
    let mut device = doc.fork();
    device.put(ROOT, "jobs", "y").expect("put");
    let changes = device.get_changes(&doc.get_heads());
    for table in [&ASSIGNMENT_INDEX, &REPORT, &COMPLAINT] {
        let refused = Checker::new(&server, table, Writer::Device)
            .check(&changes[0])
            .expect_err("refused");
        assert_eq!(refused.why, table.otherwise);
    }
}

#[test]
fn the_most_specific_rule_wins() {
    let path = |segs: &[&str]| {
        DocPath(
            segs.iter()
                .map(|s| match *s {
                    "*" => PathSeg::Elem,
                    k => PathSeg::Key(k.to_owned()),
                })
                .collect(),
        )
    };
    let decision = path(&["approvals", "r", "decision", "approved"]);
    assert!(JOB.check(Writer::Device, &decision, true).is_err());
    assert!(
        JOB.check(Writer::Device, &path(&["approvals", "r", "reason"]), true)
            .is_ok()
    );
    assert!(
        JOB.check(Writer::Device, &path(&["billing", "currency"]), false)
            .is_err()
    );
    assert!(
        JOB.check(Writer::Device, &path(&["billing", "mode"]), false)
            .is_ok()
    );
    assert!(
        JOB.check(Writer::Device, &path(&["parts", "*", "quantity"]), false)
            .is_ok()
    );
    assert!(JOB.check(Writer::Device, &path(&["parts"]), false).is_err());
    assert!(
        JOB.check(Writer::Device, &path(&["notes", "*"]), true)
            .is_ok()
    );
}

/// ARCHITECTURE.md shows the tables as they are in the code.
#[test]
fn architecture_md_shows_the_tables() {
    let architecture = include_str!("../../../ARCHITECTURE.md");
    assert!(
        architecture.contains(&render_markdown()),
        "ARCHITECTURE.md must contain the output of authority::render_markdown():\n{}",
        render_markdown()
    );
}
