//! The assignment index document: one per technician, listing the `automerge:` URLs of the jobs
//! their devices should sync (DESIGN.md, "Documents").
//!
//! Only the server writes it; devices read it and follow the links. It is a convenience for
//! the device, never an access decision: the server decides access from its own assignment
//! records, because a device could write anything into a document it can reach. Adding and
//! removing are idempotent, so the server can replay its records into the index at any time.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, AutomergeError, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue,
};

use super::doc::read::Reader;
use super::doc::{EditError, SchemaError, check_version};
use super::model::AssignmentIndex;
use crate::ids::DocumentId;

/// The schema version of the index this code writes; a newer one is refused.
pub const INDEX_SCHEMA_VERSION: u64 = 1;

const SCHEMA_VERSION: &str = "schema_version";
const BRANCH_ID: &str = "branch_id";
const TECHNICIAN: &str = "technician";
const JOBS: &str = "jobs";

/// Reads an assignment index strictly: every entry must be an `automerge:` URL. An entry added
/// twice concurrently shows once.
pub fn read_index<R: ReadDoc>(doc: &R) -> Result<AssignmentIndex, SchemaError> {
    read_with(Reader::new(doc, None))
}

/// [`read_index`] as at `heads`.
pub fn read_index_at<R: ReadDoc>(
    doc: &R,
    heads: &[ChangeHash],
) -> Result<AssignmentIndex, SchemaError> {
    read_with(Reader::new(doc, Some(heads)))
}

fn read_with<R: ReadDoc>(rd: Reader<'_, R>) -> Result<AssignmentIndex, SchemaError> {
    let root = rd.root();
    let schema_version = check_version(&root, INDEX_SCHEMA_VERSION)?;
    let urls = root.list(JOBS)?.items(|rd, path, v, id| {
        let url = rd.string(&path, v, &id)?;
        DocumentId::from_url(&url).map_err(|e| SchemaError::Invalid {
            path,
            reason: e.to_string(),
        })?;
        Ok(url)
    })?;
    let mut jobs: Vec<String> = Vec::with_capacity(urls.len());
    for url in urls {
        if !jobs.contains(&url) {
            jobs.push(url);
        }
    }
    Ok(AssignmentIndex {
        schema_version,
        branch_id: root.parse(BRANCH_ID)?,
        technician: root.parse(TECHNICIAN)?,
        jobs,
    })
}

/// An assignment index document with its (server-side) edits.
#[derive(Debug)]
pub struct IndexDoc {
    doc: AutoCommit,
}

impl IndexDoc {
    /// A new index holding `index` (its schema version is this code's). Entries that are not
    /// `automerge:` URLs are refused; repeats are written once.
    pub fn create(index: &AssignmentIndex, actor: Option<ActorId>) -> Result<Self, EditError> {
        let mut doc = AutoCommit::new();
        if let Some(actor) = actor {
            doc.set_actor(actor);
        }
        // An int, as the job's version and as JavaScript writes numbers.
        doc.put(
            ROOT,
            SCHEMA_VERSION,
            ScalarValue::Int(INDEX_SCHEMA_VERSION as i64),
        )?;
        doc.put(ROOT, BRANCH_ID, index.branch_id.as_str())?;
        doc.put(ROOT, TECHNICIAN, index.technician.as_str())?;
        let jobs = doc.put_object(ROOT, JOBS, ObjType::List)?;
        let mut written: Vec<&str> = Vec::new();
        for url in &index.jobs {
            if !written.contains(&url.as_str()) {
                doc.insert(&jobs, written.len(), url.as_str())?;
                written.push(url);
            }
        }
        doc.commit_with(
            CommitOptions::default()
                .with_message(format!("Create assignment index of {}", index.technician)),
        );
        // Read back, so an index that could not be read again is refused here.
        read_index(&doc)?;
        Ok(Self { doc })
    }

    pub fn load(bytes: &[u8]) -> Result<Self, AutomergeError> {
        Ok(Self {
            doc: AutoCommit::load(bytes)?,
        })
    }

    pub fn from_autocommit(doc: AutoCommit) -> Self {
        Self { doc }
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn fork(&mut self) -> Self {
        Self {
            doc: self.doc.fork(),
        }
    }

    pub fn merge(&mut self, other: &mut IndexDoc) -> Result<Vec<ChangeHash>, AutomergeError> {
        self.doc.merge(&mut other.doc)
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn inner(&self) -> &AutoCommit {
        &self.doc
    }

    pub fn inner_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn into_inner(self) -> AutoCommit {
        self.doc
    }

    pub fn read(&self) -> Result<AssignmentIndex, SchemaError> {
        read_index(&self.doc)
    }

    /// Lists a job; returns whether the index changed (it does not when already listed).
    pub fn add_job(&mut self, job: &DocumentId) -> Result<bool, EditError> {
        let url = job.url();
        self.edit(format!("Assign {url}"), |d| {
            let list = Reader::new(&*d, None).root().list(JOBS)?;
            if list.strings()?.contains(&url) {
                return Ok(false);
            }
            let (obj, len) = (list.obj().clone(), list.len());
            d.insert(&obj, len, url.as_str())?;
            Ok(true)
        })
    }

    /// Unlists a job, every copy of it; returns whether the index changed.
    pub fn remove_job(&mut self, job: &DocumentId) -> Result<bool, EditError> {
        let url = job.url();
        self.edit(format!("Unassign {url}"), |d| {
            let list = Reader::new(&*d, None).root().list(JOBS)?;
            let obj = list.obj().clone();
            let entries = list.strings()?;
            let mut changed = false;
            for (i, entry) in entries.iter().enumerate().rev() {
                if *entry == url {
                    d.delete(&obj, i)?;
                    changed = true;
                }
            }
            Ok(changed)
        })
    }

    /// One edit as one change; a failed or empty edit leaves no change behind.
    fn edit<T>(
        &mut self,
        message: String,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, EditError>,
    ) -> Result<T, EditError> {
        self.doc.commit();
        check_version(&Reader::new(&self.doc, None).root(), INDEX_SCHEMA_VERSION)?;
        match f(&mut self.doc) {
            Ok(v) => {
                self.doc
                    .commit_with(CommitOptions::default().with_message(message));
                Ok(v)
            }
            Err(e) => {
                self.doc.rollback();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BranchId, TechnicianId};

    fn index(jobs: Vec<String>) -> AssignmentIndex {
        AssignmentIndex {
            schema_version: INDEX_SCHEMA_VERSION,
            branch_id: BranchId::new("north-01").expect("valid"),
            technician: TechnicianId::new("tech-wang").expect("valid"),
            jobs,
        }
    }

    #[test]
    fn index_reads_back_as_created() {
        let a = DocumentId::random();
        let idx = index(vec![a.url()]);
        let mut doc = IndexDoc::create(&idx, None).expect("create");
        assert_eq!(doc.read().expect("read"), idx);
        let reloaded = IndexDoc::load(&doc.save()).expect("load");
        assert_eq!(read_index(reloaded.inner()).expect("read"), idx);
    }

    #[test]
    fn adding_and_removing_jobs_is_idempotent() {
        let (a, b) = (DocumentId::random(), DocumentId::random());
        let mut doc = IndexDoc::create(&index(vec![]), None).expect("create");
        assert!(doc.add_job(&a).expect("add"));
        assert!(doc.add_job(&b).expect("add"));
        let heads = doc.heads();
        assert!(!doc.add_job(&a).expect("add again"));
        assert_eq!(doc.heads(), heads, "a repeated add leaves no change");
        assert_eq!(doc.read().expect("read").jobs, vec![a.url(), b.url()]);
        assert!(doc.remove_job(&a).expect("remove"));
        assert!(!doc.remove_job(&a).expect("remove again"));
        assert_eq!(doc.read().expect("read").jobs, vec![b.url()]);
        assert_eq!(
            read_index_at(doc.inner(), &heads).expect("read").jobs,
            vec![a.url(), b.url()]
        );
    }

    #[test]
    fn a_job_added_on_two_replicas_shows_once_and_one_remove_unlists_it() {
        let a = DocumentId::random();
        let mut one = IndexDoc::create(&index(vec![]), None).expect("create");
        let mut two = one.fork();
        one.add_job(&a).expect("add");
        two.add_job(&a).expect("add");
        one.merge(&mut two).expect("merge");
        assert_eq!(one.read().expect("read").jobs, vec![a.url()]);
        assert!(one.remove_job(&a).expect("remove"));
        assert!(one.read().expect("read").jobs.is_empty());
    }

    #[test]
    fn entries_that_are_not_automerge_urls_are_refused() {
        let err = IndexDoc::create(&index(vec!["https://example.com".into()]), None)
            .expect_err("not a URL");
        assert!(err.to_string().starts_with("jobs[0]: "), "{err}");

        let mut doc = IndexDoc::create(&index(vec![]), None).expect("create");
        let (_, jobs) = doc
            .inner()
            .get(ROOT, JOBS)
            .expect("get")
            .expect("jobs list");
        doc.inner_mut()
            .insert(&jobs, 0, "automerge:nope")
            .expect("insert");
        doc.inner_mut().commit();
        let err = doc.read().expect_err("bad entry");
        assert_eq!(err.path(), Some("jobs[0]"));
    }

    #[test]
    fn newer_index_schema_is_refused() {
        let mut doc = IndexDoc::create(&index(vec![]), None).expect("create");
        doc.inner_mut().put(ROOT, SCHEMA_VERSION, 2).expect("put");
        doc.inner_mut().commit();
        assert!(matches!(
            doc.read(),
            Err(SchemaError::NewerSchema {
                found: 2,
                supported: 1
            })
        ));
        assert!(doc.add_job(&DocumentId::random()).is_err());
    }
}
