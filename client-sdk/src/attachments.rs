//! Attachments on the device (issue 15): photos, receipts and signature images captured
//! offline into the device's own blob directory and uploaded to the edge when it can be
//! reached.
//!
//! Beside the store file `X` lives `X.attachments/`: each blob as a file named by its
//! SHA-256, and `pending/<job>.<sha256>`, an empty marker per blob the edge has not confirmed
//! yet. A capture writes the blob (temporary file, fsync, rename, directory fsync), then the
//! marker, then the reference into the job document (`Device::attach`), so a reference the
//! server may see always has its bytes on the device. While connected the sync supervisor
//! uploads every pending blob ([`upload_pending`]): it asks the edge how many bytes it holds
//! (`GET …/status`), sends the rest in parts of [`PART_BYTES`] with `Content-Range`, and
//! drops the marker once the edge answered `complete` (the edge checked the SHA-256). A blob
//! whose bytes on the device no longer hash to its name is never sent: it is reported as
//! [`UploadOutcome::Corrupt`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::attachments::{blob_digest, is_blob_digest};
use serde::Deserialize;

use crate::events::Event;
use crate::node::Hooks;
use crate::tls::ClientTls;
use crate::url::http_url;

/// The largest part one PUT carries: a lost connection costs at most this much again.
pub const PART_BYTES: usize = 4 * 1024 * 1024;

/// The device's blob directory.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    dir: PathBuf,
}

/// What became of one pending blob in an upload round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The edge holds the whole blob and checked it.
    Uploaded {
        job: DocumentId,
        digest: String,
        bytes: u64,
    },
    /// The bytes on the device do not hash to the blob's name (changed on disk): not sent.
    Corrupt {
        job: DocumentId,
        digest: String,
        computed: String,
    },
    /// The edge refused it (too large, not this device's job, bytes that did not match).
    Refused {
        job: DocumentId,
        digest: String,
        code: String,
        message: String,
    },
    /// A network or server trouble: it stays pending for the next round.
    Later {
        job: DocumentId,
        digest: String,
        reason: String,
    },
}

fn io_err(e: std::io::Error) -> crate::ClientError {
    crate::ClientError::Attachment(e.to_string())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl LocalBlobs {
    /// The blob directory of the store file `store_path`.
    pub fn for_store(store_path: &Path) -> Self {
        let mut dir = store_path.as_os_str().to_owned();
        dir.push(".attachments");
        Self {
            dir: PathBuf::from(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is kept.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    fn pending_dir(&self) -> PathBuf {
        self.dir.join("pending")
    }

    /// Stores `bytes` durably under their SHA-256 and marks them pending upload for `job`.
    /// Returns the digest. Blocking: call it on the blocking pool.
    pub fn capture(&self, job: DocumentId, bytes: &[u8]) -> Result<String, crate::ClientError> {
        use std::io::Write;
        let digest = blob_digest(bytes);
        std::fs::create_dir_all(self.pending_dir()).map_err(io_err)?;
        let path = self.path(&digest);
        let intact = std::fs::read(&path).is_ok_and(|held| blob_digest(&held) == digest);
        if !intact {
            let tmp = self.dir.join(format!(".{digest}.tmp"));
            let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
            file.write_all(bytes).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            std::fs::rename(&tmp, &path).map_err(io_err)?;
            sync_dir(&self.dir).map_err(io_err)?;
        }
        let marker = self.pending_dir().join(format!("{job}.{digest}"));
        if !marker.exists() {
            std::fs::File::create(&marker).map_err(io_err)?;
            sync_dir(&self.pending_dir()).map_err(io_err)?;
        }
        Ok(digest)
    }

    /// Every blob not yet confirmed by the edge, with its job.
    pub fn pending(&self) -> Vec<(DocumentId, String)> {
        let Ok(entries) = std::fs::read_dir(self.pending_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(DocumentId, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (job, digest) = name.split_once('.')?;
                let job: DocumentId = job.parse().ok()?;
                is_blob_digest(digest).then(|| (job, digest.to_owned()))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    fn done(&self, job: DocumentId, digest: &str) {
        let _ = std::fs::remove_file(self.pending_dir().join(format!("{job}.{digest}")));
        let _ = sync_dir(&self.pending_dir());
    }
}

#[derive(Deserialize)]
struct Status {
    received: u64,
    complete: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Uploads every pending blob once, in order; returns what became of each.
pub async fn upload_pending(
    blobs: &LocalBlobs,
    ws_url: &str,
    tls: &ClientTls,
    token: &str,
) -> Vec<UploadOutcome> {
    let mut out = Vec::new();
    let pending = {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || blobs.pending())
            .await
            .unwrap_or_default()
    };
    for (job, digest) in pending {
        let outcome = upload_one(blobs, ws_url, tls, token, job, &digest).await;
        if matches!(outcome, UploadOutcome::Uploaded { .. }) {
            let blobs = blobs.clone();
            let d = digest.clone();
            let _ = tokio::task::spawn_blocking(move || blobs.done(job, &d)).await;
        }
        out.push(outcome);
    }
    out
}

async fn upload_one(
    blobs: &LocalBlobs,
    ws_url: &str,
    tls: &ClientTls,
    token: &str,
    job: DocumentId,
    digest: &str,
) -> UploadOutcome {
    let later = |reason: String| UploadOutcome::Later {
        job,
        digest: digest.to_owned(),
        reason,
    };
    let path = blobs.path(digest);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) => return later(format!("cannot read {}: {e}", path.display())),
    };
    // Hashing megabytes belongs on the blocking pool.
    let (bytes, computed) = tokio::task::spawn_blocking(move || {
        let c = blob_digest(&bytes);
        (bytes, c)
    })
    .await
    .unwrap_or_else(|_| (Vec::new(), String::new()));
    if computed != digest {
        tracing::warn!(%job, %digest, %computed, "attachment changed on the device; not uploaded");
        return UploadOutcome::Corrupt {
            job,
            digest: digest.to_owned(),
            computed,
        };
    }
    let base = format!("/api/jobs/{job}/attachments/{digest}");
    let total = bytes.len() as u64;
    let (Some(status_url), Some(put_url)) = (
        http_url(ws_url, &format!("{base}/status")).map(|mut url| {
            url.set_query(Some(&format!("size={total}")));
            url
        }),
        http_url(ws_url, &base),
    ) else {
        return later(format!("no HTTP address for {ws_url}"));
    };
    let client = match tls.http() {
        Ok(c) => c,
        Err(e) => return later(e.to_string()),
    };
    let mut offset = match client
        .get(status_url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => match r.json::<Status>().await {
            Ok(s) if s.complete => {
                return UploadOutcome::Uploaded {
                    job,
                    digest: digest.to_owned(),
                    bytes: s.received,
                };
            }
            Ok(s) => s.received.min(total),
            Err(e) => return later(e.to_string()),
        },
        Ok(r) => return refused_or_later(job, digest, r).await,
        Err(e) => return later(e.to_string()),
    };
    loop {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = (start + PART_BYTES).min(bytes.len());
        let mut request = client
            .put(put_url.clone())
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(Duration::from_secs(300));
        request = if total == 0 {
            request.header(reqwest::header::CONTENT_RANGE, "bytes */0")
        } else {
            request.header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", end - 1),
            )
        };
        let response = match request.body(bytes[start..end].to_vec()).send().await {
            Ok(r) => r,
            Err(e) => return later(e.to_string()),
        };
        let code = response.status().as_u16();
        if code == 409 {
            // The edge holds another amount than we thought: go on from what it says.
            let held = response
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            match held {
                Some(held) if held != offset && held <= total => {
                    offset = held;
                    continue;
                }
                _ => return refused_or_later(job, digest, response).await,
            }
        }
        if !response.status().is_success() {
            return refused_or_later(job, digest, response).await;
        }
        match response.json::<Status>().await {
            Ok(s) if s.complete => {
                return UploadOutcome::Uploaded {
                    job,
                    digest: digest.to_owned(),
                    bytes: s.received,
                };
            }
            Ok(s) if s.received > offset && s.received <= total => offset = s.received,
            Ok(s) => return later(format!("the edge holds {} bytes, no progress", s.received)),
            Err(e) => return later(e.to_string()),
        }
    }
}

async fn refused_or_later(
    job: DocumentId,
    digest: &str,
    response: reqwest::Response,
) -> UploadOutcome {
    let status = response.status();
    let body: ErrorBody = response.json().await.unwrap_or_default();
    if status.is_server_error() || status.as_u16() == 401 || body.code == "upload_in_progress" {
        return UploadOutcome::Later {
            job,
            digest: digest.to_owned(),
            reason: format!("{status} {}: {}", body.code, body.message),
        };
    }
    tracing::warn!(%job, %digest, %status, code = %body.code, message = %body.message, "the edge refused an attachment");
    UploadOutcome::Refused {
        job,
        digest: digest.to_owned(),
        code: body.code,
        message: body.message,
    }
}

/// Tells the app what became of an upload (nothing for one to retry later).
pub(crate) fn emit_upload(hooks: &Hooks, outcome: &UploadOutcome) {
    match outcome {
        UploadOutcome::Uploaded { job, digest, .. } => hooks.emit(Event::AttachmentUploaded {
            job: *job,
            digest: digest.clone(),
        }),
        UploadOutcome::Corrupt {
            job,
            digest,
            computed,
        } => hooks.emit(Event::AttachmentRefused {
            job: *job,
            digest: digest.clone(),
            code: "attachment_corrupt".into(),
            message: format!("the bytes on this device now hash to {computed}"),
        }),
        UploadOutcome::Refused {
            job,
            digest,
            code,
            message,
        } => hooks.emit(Event::AttachmentRefused {
            job: *job,
            digest: digest.clone(),
            code: code.clone(),
            message: message.clone(),
        }),
        UploadOutcome::Later { .. } => {}
    }
}

/// Uploads pending blobs now, then again whenever one is captured, while connected.
pub(crate) async fn upload_while_connected(
    hooks: std::sync::Arc<Hooks>,
    blobs: LocalBlobs,
    url: String,
    tls: ClientTls,
    token: String,
) {
    loop {
        let wake = hooks.attachments.notified();
        for outcome in upload_pending(&blobs, &url, &tls, &token).await {
            emit_upload(&hooks, &outcome);
        }
        wake.await;
    }
}
