//! Write authority: which principal may write which paths of each kind of document.
//!
//! Access (`sync::Access`) says who may read and write a document at all. A job holds what
//! different people decide, though: the technician's on-site record, the manager's approval
//! decisions, the server's report outcome and assignment. So every change a peer sends is
//! checked op by op against the [`WriteTable`] of its document's kind before the engine
//! applies or stores it (DESIGN.md: write authority is per path, not only per document), and
//! one forbidden op refuses the whole message with the path and the rule named.
//!
//! The tables are the one place this is written down; ARCHITECTURE.md shows them
//! ([`render_markdown`], kept equal by a test). Only what a table grants is allowed: a path
//! no rule matches (an unknown root field, say) is refused. The server's own writes (the
//! desk API, the signer) are local edits and are not checked here; a branch writing the
//! documents it owns at head office is not checked here either (head office verifies those
//! by signature, not by path).
//!
//! A path is the chain of map keys from the root, with `*` for an element of a list or
//! text: the op `put quantity` on the map of the second part line is at
//! `parts.*.quantity`. An op that adds a map key no one wrote before, or inserts an element,
//! *creates*; one that overwrites or deletes what the writer saw does not. Some rules allow
//! creating only: a technician asks for an approval by adding a request, and may not rewrite
//! one afterwards.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use automerge::legacy::{Key as OpKey, ObjectId, OpType};
use automerge::{ActorId, Automerge, Change, ObjId, Prop, ReadDoc};

/// The kinds of document the engine serves, each with its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    Job,
    AssignmentIndex,
    Report,
    Complaint,
    /// A document the server keeps no record of: nobody writes it over `/sync`.
    Unknown,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Job => "job",
            DocKind::AssignmentIndex => "assignment index",
            DocKind::Report => "report document",
            DocKind::Complaint => "complaint document",
            DocKind::Unknown => "document",
        }
    }
}

/// Who writes over `/sync`, as far as write authority goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Writer {
    /// A technician's enrolled device.
    Device,
    /// A desk token (dispatcher, manager, analyst): the desk writes through the HTTP API,
    /// where its role is checked, so over `/sync` it writes only what a table grants it.
    Desk,
}

impl Writer {
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::Device => "device",
            Writer::Desk => "desk",
        }
    }
}

/// One segment of a rule's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    /// This map key.
    Key(&'static str),
    /// Any map key or list element.
    Any,
}

/// How much of the tree under a rule's path it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The path only.
    Exactly,
    /// The path and everything below it.
    AndBelow,
}

/// What a rule lets its writers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Write,
    /// Add what is not there yet; never overwrite or delete.
    CreateOnly,
}

/// One line of a table.
#[derive(Debug, Clone, Copy)]
pub struct PathRule {
    pub path: &'static [Seg],
    pub reach: Reach,
    /// Who may write here; empty: only the server, through its own edits.
    pub writers: &'static [Writer],
    pub allow: Allow,
    /// Why, as the refused peer reads it (with the rule of DOMAIN.md where there is one).
    pub why: &'static str,
}

/// The write authority of one kind of document.
#[derive(Debug)]
pub struct WriteTable {
    pub kind: DocKind,
    pub rules: &'static [PathRule],
    /// The reason given for a path no rule matches.
    pub otherwise: &'static str,
}

use Allow::{CreateOnly, Write};
use Reach::{AndBelow, Exactly};
use Seg::{Any, Key};

const DEVICE: &[Writer] = &[Writer::Device];
const SERVER: &[Writer] = &[];

const fn rule(
    path: &'static [Seg],
    reach: Reach,
    writers: &'static [Writer],
    allow: Allow,
    why: &'static str,
) -> PathRule {
    PathRule {
        path,
        reach,
        writers,
        allow,
        why,
    }
}

/// The job document (`job::doc`). The server creates every nested map, list and the notes
/// text with the job; a device then writes inside them, never replaces them.
pub static JOB: WriteTable = WriteTable {
    kind: DocKind::Job,
    rules: &[
        rule(
            &[Key("visit"), Any],
            AndBelow,
            DEVICE,
            Write,
            "the technician's visit: appointment (R3), arrival (R2), safety briefing (R32), training (R16), check-out (R11)",
        ),
        rule(
            &[Key("diagnosis"), Any],
            AndBelow,
            DEVICE,
            Write,
            "the technician's diagnosis: fault cause, category, solution (R7)",
        ),
        rule(
            &[Key("parts"), Any],
            AndBelow,
            DEVICE,
            Write,
            "the parts used, line by line (R7, R18)",
        ),
        rule(
            &[Key("labour"), Any],
            Exactly,
            DEVICE,
            Write,
            "labour (R10)",
        ),
        rule(
            &[Key("travel"), Any],
            Exactly,
            DEVICE,
            Write,
            "travel (R10)",
        ),
        rule(
            &[Key("billing"), Key("mode")],
            Exactly,
            DEVICE,
            Write,
            "warranty or billable, decided on site (R10)",
        ),
        rule(
            &[Key("billing"), Key("invoice_number")],
            Exactly,
            DEVICE,
            Write,
            "the invoice written on site (R10)",
        ),
        rule(
            &[Key("handover")],
            AndBelow,
            DEVICE,
            Write,
            "the hand-over of a product taken back (R5)",
        ),
        rule(
            &[Key("customer_opinion")],
            Exactly,
            DEVICE,
            Write,
            "the customer's opinion (R7)",
        ),
        rule(
            &[Key("acknowledgement")],
            AndBelow,
            DEVICE,
            Write,
            "the customer's signed acknowledgement and survey (R8, R9)",
        ),
        rule(
            &[Key("completion")],
            AndBelow,
            DEVICE,
            Write,
            "the technician's request to complete the job",
        ),
        rule(
            &[Key("notes"), Any],
            Exactly,
            DEVICE,
            Write,
            "the free notes",
        ),
        rule(
            &[Key("timeline"), Any],
            AndBelow,
            DEVICE,
            Write,
            "events of the visit",
        ),
        rule(
            &[Key("approvals")],
            Exactly,
            DEVICE,
            CreateOnly,
            "the approvals map, made by the first request of a job that has none",
        ),
        rule(
            &[Key("approvals"), Any],
            Exactly,
            DEVICE,
            CreateOnly,
            "a technician asks for an approval by adding a request (R12, R18, R31)",
        ),
        rule(
            &[Key("approvals"), Any, Any],
            AndBelow,
            DEVICE,
            CreateOnly,
            "the fields of a new approval request, written once with it",
        ),
        rule(
            &[Key("approvals"), Any, Key("decision")],
            AndBelow,
            SERVER,
            Write,
            "approval decisions are the manager's, written by the server through the desk API (R12, R18, R31)",
        ),
        rule(
            &[Key("resolutions")],
            Exactly,
            DEVICE,
            CreateOnly,
            "the resolutions map, made by the first resolution of a job that has none",
        ),
        rule(
            &[Key("resolutions"), Any],
            Exactly,
            DEVICE,
            CreateOnly,
            "a technician resolves disagreeing fields by adding a resolution (R7, R10)",
        ),
        rule(
            &[Key("resolutions"), Any, Any],
            AndBelow,
            DEVICE,
            CreateOnly,
            "the fields of a new resolution, written once with it",
        ),
        rule(
            &[Key("attachments")],
            Exactly,
            DEVICE,
            CreateOnly,
            "the attachments map, made by the first attachment of a job that has none",
        ),
        rule(
            &[Key("attachments"), Any],
            Exactly,
            DEVICE,
            CreateOnly,
            "a technician attaches a photo, receipt or signature image by its SHA-256 (issue 15)",
        ),
        rule(
            &[Key("attachments"), Any, Any],
            AndBelow,
            DEVICE,
            CreateOnly,
            "the fields of an attachment reference, written once with it",
        ),
        rule(
            &[Key("report")],
            AndBelow,
            SERVER,
            Write,
            "the report outcome is written by the server's signer",
        ),
        rule(
            &[Key("technicians")],
            AndBelow,
            SERVER,
            Write,
            "the assignment is the desk's, through the API",
        ),
        rule(
            &[Key("request")],
            AndBelow,
            SERVER,
            Write,
            "the service request is the desk's (R1)",
        ),
        rule(
            &[Key("customer")],
            AndBelow,
            SERVER,
            Write,
            "the customer record is the desk's (R26, R33)",
        ),
        rule(
            &[Key("product")],
            AndBelow,
            SERVER,
            Write,
            "the product record is the desk's",
        ),
        rule(
            &[Key("billing"), Key("currency")],
            Exactly,
            SERVER,
            Write,
            "the currency is the branch's",
        ),
        rule(
            &[Key("schema_version")],
            Exactly,
            SERVER,
            Write,
            "set when the job is created",
        ),
        rule(
            &[Key("job_id")],
            Exactly,
            SERVER,
            Write,
            "set when the job is created",
        ),
        rule(
            &[Key("branch_id")],
            Exactly,
            SERVER,
            Write,
            "set when the job is created",
        ),
        rule(
            &[Key("kind")],
            Exactly,
            SERVER,
            Write,
            "set when the job is created",
        ),
    ],
    otherwise: "not a field a device may write in a job: the job's structure is the server's, and unknown fields are refused",
};

/// The assignment index (`job::index`): only the server writes it; devices follow it.
pub static ASSIGNMENT_INDEX: WriteTable = WriteTable {
    kind: DocKind::AssignmentIndex,
    rules: &[],
    otherwise: "the assignment index is written by the server only",
};

/// The report document (`report_doc`): written by the branch that signed the report.
pub static REPORT: WriteTable = WriteTable {
    kind: DocKind::Report,
    rules: &[],
    otherwise: "a report document is written by the branch's signer only",
};

/// The complaint document (`complaint_doc`): written by the branch's desk.
pub static COMPLAINT: WriteTable = WriteTable {
    kind: DocKind::Complaint,
    rules: &[],
    otherwise: "a complaint document is written by the branch only",
};

/// A document the server does not know.
pub static UNKNOWN: WriteTable = WriteTable {
    kind: DocKind::Unknown,
    rules: &[],
    otherwise: "the server keeps no record of this document",
};

/// The table of a kind of document.
pub fn table(kind: DocKind) -> &'static WriteTable {
    match kind {
        DocKind::Job => &JOB,
        DocKind::AssignmentIndex => &ASSIGNMENT_INDEX,
        DocKind::Report => &REPORT,
        DocKind::Complaint => &COMPLAINT,
        DocKind::Unknown => &UNKNOWN,
    }
}

/// One segment of an op's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    /// An element of a list or text.
    Elem,
}

/// A path in a document, from the root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DocPath(pub Vec<PathSeg>);

impl DocPath {
    fn child(&self, seg: PathSeg) -> DocPath {
        let mut segs = self.0.clone();
        segs.push(seg);
        DocPath(segs)
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match seg {
                PathSeg::Key(k) => f.write_str(k)?,
                PathSeg::Elem => f.write_str("*")?,
            }
        }
        Ok(())
    }
}

/// A write a table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{writer} may not write {path} in a {kind}: {why}")]
pub struct Violation {
    pub kind: &'static str,
    pub writer: &'static str,
    /// Where, e.g. `approvals.req-1.decision`.
    pub path: String,
    /// The rule, as the table words it.
    pub why: String,
}

/// The last segment of an op's path, borrowed from the op.
#[derive(Debug, Clone, Copy)]
pub enum LastSeg<'a> {
    Key(&'a str),
    Elem,
}

impl PathRule {
    /// How specifically this rule matches the path `parent` + `last`, or `None`: the longer
    /// the rule, the more specific; then an exact match over one from above; then named keys
    /// over `*`.
    fn matches(&self, parent: &[PathSeg], last: LastSeg<'_>) -> Option<(usize, bool, usize)> {
        let len = parent.len() + 1;
        let exact = len == self.path.len();
        let reaches = exact || (self.reach == Reach::AndBelow && len > self.path.len());
        if !reaches {
            return None;
        }
        let fits = self.path.iter().enumerate().all(|(i, pattern)| {
            let seg = match parent.get(i) {
                Some(PathSeg::Key(k)) => LastSeg::Key(k),
                Some(PathSeg::Elem) => LastSeg::Elem,
                None => last,
            };
            match (pattern, seg) {
                (Seg::Any, _) => true,
                (Seg::Key(k), LastSeg::Key(s)) => *k == s,
                (Seg::Key(_), LastSeg::Elem) => false,
            }
        });
        let named = self
            .path
            .iter()
            .filter(|s| matches!(s, Seg::Key(_)))
            .count();
        fits.then_some((self.path.len(), exact, named))
    }
}

impl WriteTable {
    /// The rule that governs `path`: the most specific match.
    pub fn rule_for(&self, path: &[PathSeg]) -> Option<&PathRule> {
        let (last, parent) = path.split_last()?;
        let last = match last {
            PathSeg::Key(k) => LastSeg::Key(k),
            PathSeg::Elem => LastSeg::Elem,
        };
        self.rule_at(parent, last)
    }

    fn rule_at(&self, parent: &[PathSeg], last: LastSeg<'_>) -> Option<&PathRule> {
        self.rules
            .iter()
            .filter_map(|r| r.matches(parent, last).map(|m| (m, r)))
            .max_by_key(|(m, _)| *m)
            .map(|(_, r)| r)
    }

    /// Whether `writer` may write at `path`; `creates` says the op adds a key or an element
    /// rather than overwriting or deleting one.
    pub fn check(&self, writer: Writer, path: &DocPath, creates: bool) -> Result<(), Violation> {
        match path.0.split_last() {
            Some((PathSeg::Key(k), parent)) => {
                self.check_at(writer, parent, LastSeg::Key(k), creates)
            }
            Some((PathSeg::Elem, parent)) => self.check_at(writer, parent, LastSeg::Elem, creates),
            None => Err(Violation {
                kind: self.kind.as_str(),
                writer: writer.as_str(),
                path: path.to_string(),
                why: self.otherwise.to_owned(),
            }),
        }
    }

    /// [`check`](Self::check) of the path `parent` + `last`, without building it (the path
    /// is spelled out only in a refusal).
    pub fn check_at(
        &self,
        writer: Writer,
        parent: &[PathSeg],
        last: LastSeg<'_>,
        creates: bool,
    ) -> Result<(), Violation> {
        let refuse = |why: &str| {
            let mut path = DocPath(parent.to_vec());
            path.0.push(match last {
                LastSeg::Key(k) => PathSeg::Key(k.to_owned()),
                LastSeg::Elem => PathSeg::Elem,
            });
            Violation {
                kind: self.kind.as_str(),
                writer: writer.as_str(),
                path: path.to_string(),
                why: why.to_owned(),
            }
        };
        let Some(rule) = self.rule_at(parent, last) else {
            return Err(refuse(self.otherwise));
        };
        if !rule.writers.contains(&writer) {
            return Err(refuse(rule.why));
        }
        if rule.allow == Allow::CreateOnly && !creates {
            return Err(refuse(&format!(
                "{} (it may be added, not changed or removed)",
                rule.why
            )));
        }
        Ok(())
    }
}

/// The tables as the Markdown ARCHITECTURE.md shows.
pub fn render_markdown() -> String {
    let mut out = String::new();
    for table in [&JOB, &ASSIGNMENT_INDEX, &REPORT, &COMPLAINT] {
        out.push_str(&format!("**{}**\n\n", table.kind.as_str()));
        if table.rules.is_empty() {
            out.push_str(&format!(
                "No device or desk token writes any of it over `/sync`: {}.\n\n",
                table.otherwise
            ));
            continue;
        }
        out.push_str("| path | who writes it over `/sync` | why |\n| --- | --- | --- |\n");
        for rule in table.rules {
            let mut path: Vec<String> = rule
                .path
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => (*k).to_owned(),
                    Seg::Any => "*".to_owned(),
                })
                .collect();
            if rule.reach == Reach::AndBelow {
                path.push("**".to_owned());
            }
            let who = if rule.writers.is_empty() {
                "server only".to_owned()
            } else {
                let names: Vec<&str> = rule.writers.iter().map(|w| w.as_str()).collect();
                let mut who = names.join(", ");
                if rule.allow == Allow::CreateOnly {
                    who.push_str(" (create only)");
                }
                who
            };
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                path.join("."),
                who,
                rule.why
            ));
        }
        out.push_str(&format!(
            "| anything else | server only | {} |\n\n",
            table.otherwise
        ));
    }
    out
}

/// Checks changes op by op against a table, for one writer and one document.
///
/// Paths are resolved against the document as it stands (objects never move: an object
/// created under a key stays there) and against the objects made by changes this checker
/// accepted before. A change must be checked only once every change it depends on is in
/// the document or was accepted here: the caller orders them.
pub struct Checker<'a> {
    doc: &'a Automerge,
    table: &'static WriteTable,
    writer: Writer,
    /// Objects made by accepted changes, and objects of the document already resolved.
    paths: HashMap<(u64, ActorId), Rc<DocPath>>,
    root: Rc<DocPath>,
}

impl fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("kind", &self.table.kind)
            .field("writer", &self.writer)
            .finish()
    }
}

impl<'a> Checker<'a> {
    pub fn new(doc: &'a Automerge, table: &'static WriteTable, writer: Writer) -> Self {
        Self {
            doc,
            table,
            writer,
            paths: HashMap::new(),
            root: Rc::new(DocPath::default()),
        }
    }

    /// Checks every op of `change`. On success the objects it makes are known to later
    /// checks.
    pub fn check(&mut self, change: &Change) -> Result<(), Violation> {
        let expanded = change.decode();
        let actor = expanded.actor_id.clone();
        let start = expanded.start_op.get();
        let mut made = Vec::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let obj_path = self.object_path(&op.obj, &made)?;
            let (last, creates) = match &op.key {
                OpKey::Map(k) => (LastSeg::Key(k.as_str()), op.pred.is_empty()),
                OpKey::Seq(_) => (LastSeg::Elem, op.insert),
            };
            self.table
                .check_at(self.writer, &obj_path.0, last, creates)?;
            if matches!(op.action, OpType::Make(_)) {
                let seg = match last {
                    LastSeg::Key(k) => PathSeg::Key(k.to_owned()),
                    LastSeg::Elem => PathSeg::Elem,
                };
                made.push((
                    (start + i as u64, actor.clone()),
                    Rc::new(obj_path.child(seg)),
                ));
            }
        }
        self.paths.extend(made);
        Ok(())
    }

    /// The path of an object: the root, one made earlier in this change (`made`) or by a
    /// change accepted before, or one of the document.
    fn object_path(
        &mut self,
        obj: &ObjectId,
        made: &[((u64, ActorId), Rc<DocPath>)],
    ) -> Result<Rc<DocPath>, Violation> {
        let ObjectId::Id(id) = obj else {
            return Ok(Rc::clone(&self.root));
        };
        let key = (id.counter(), id.actor().clone());
        if let Some((_, path)) = made.iter().find(|(k, _)| *k == key) {
            return Ok(path.clone());
        }
        if let Some(path) = self.paths.get(&key) {
            return Ok(path.clone());
        }
        let unknown = || Violation {
            kind: self.table.kind.as_str(),
            writer: self.writer.as_str(),
            path: format!("object {}@{}", id.counter(), id.actor()),
            why: "the change writes into an object the document does not hold".to_owned(),
        };
        // The actor index is looked up by the actor when it does not match.
        let exid = ObjId::Id(key.0, key.1.clone(), usize::MAX);
        let parents = self.doc.parents(&exid).map_err(|_| unknown())?;
        let mut segs: Vec<PathSeg> = parents
            .map(|p| match p.prop {
                Prop::Map(k) => PathSeg::Key(k),
                Prop::Seq(_) => PathSeg::Elem,
            })
            .collect();
        segs.reverse();
        let path = Rc::new(DocPath(segs));
        self.paths.insert(key, Rc::clone(&path));
        Ok(path)
    }
}

#[cfg(test)]
mod tests;
