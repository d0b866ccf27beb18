//! Reading the job's attachment references (`job::attachments`) strictly, like every field.

use automerge::ReadDoc;

use super::SchemaError;
use super::read::MapView;
use crate::job::attachments::{ATTACHMENTS, AttachmentKind, AttachmentRef, is_blob_digest, key};

/// The references under the root key `attachments`, sorted by digest; none when the map is
/// absent (a job made before attachments existed).
pub(super) fn read_attachments<R: ReadDoc>(
    root: &MapView<'_, R>,
) -> Result<Vec<AttachmentRef>, SchemaError> {
    let Some(map) = root.opt_map(ATTACHMENTS)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for digest in map.keys() {
        if !is_blob_digest(&digest) {
            return Err(SchemaError::Invalid {
                path: map.path_of(&digest),
                reason: "an attachment is named by its SHA-256 in lowercase hex".into(),
            });
        }
        let Some(entry) = map.opt_map(&digest)? else {
            continue;
        };
        found.push(AttachmentRef {
            kind: entry.parsed(key::KIND, |s| {
                AttachmentKind::parse(s).ok_or_else(|| format!("unknown attachment kind {s:?}"))
            })?,
            media_type: entry.string(key::MEDIA_TYPE)?,
            size: entry.int(key::SIZE)?,
            name: entry.string(key::NAME)?,
            at: entry.timestamp(key::AT)?,
            by: entry.parse(key::BY)?,
            digest,
        });
    }
    found.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(found)
}
