//! samod (the Rust automerge-repo, an independent implementation of the protocol) as a client
//! of our server (edge server issue, interop (b)).
//!
//! samod dials `/sync` through its `Dialer` trait with our own tokio-tungstenite, so the
//! device token travels as `Authorization: Bearer …` exactly as a device's would, and samod's
//! peer id is the device id that the server binds to the token.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use automerge::Automerge;
use fieldsync_shared::job::doc::{EditError, JobDoc, read_job};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_tests::{SETTLE, TestServer, temp_dir};
use futures_util::{SinkExt, StreamExt, future};
use samod::{BackoffConfig, DialError, DocHandle, Repo, Transport};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// Dials our server with a bearer token; samod calls it again on every reconnect.
struct BearerDialer {
    url: samod::Url,
    token: String,
}

impl samod::Dialer for BearerDialer {
    /// A refusal over HTTP (401: a bad or revoked token) is permanent; retrying cannot help.
    type Error = tungstenite::Error;

    fn url(&self) -> samod::Url {
        self.url.clone()
    }

    fn connect(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, DialError<Self::Error>>> + Send>> {
        let url = self.url.to_string();
        let header = format!("Bearer {}", self.token);
        Box::pin(async move {
            let mut request = url.into_client_request().map_err(DialError::transient)?;
            let value = header.parse().map_err(DialError::transient)?;
            request.headers_mut().insert("authorization", value);
            let (socket, _) = match tokio_tungstenite::connect_async(request).await {
                Ok(ok) => ok,
                Err(e @ tungstenite::Error::Http(_)) => return Err(DialError::PermanentFailure(e)),
                Err(e) => return Err(DialError::transient(e)),
            };
            let (sink, stream) = socket.split();
            // samod's transport carries whole protocol messages as bytes: binary frames in
            // both directions; control frames are tungstenite's business.
            let stream = stream
                .filter_map(|frame| {
                    future::ready(match frame {
                        Ok(WsMessage::Binary(bytes)) => Some(Ok(bytes.to_vec())),
                        Ok(WsMessage::Text(_)) => Some(Err(std::io::Error::other(
                            "text frame on a binary protocol",
                        ))),
                        Ok(_) => None,
                        Err(e) => Some(Err(std::io::Error::other(e))),
                    })
                })
                .boxed();
            let sink = sink
                .sink_map_err(std::io::Error::other)
                .with(|bytes: Vec<u8>| {
                    future::ready(Ok::<_, std::io::Error>(WsMessage::Binary(bytes.into())))
                });
            Ok(Transport::new(stream, sink))
        })
    }
}

/// A samod repo (in-memory storage) connected to the server as device `peer_id`.
async fn samod_repo(server: &TestServer, peer_id: &str, token: String) -> anyhow::Result<Repo> {
    let repo = Repo::build_tokio()
        .with_peer_id(samod::PeerId::from(peer_id))
        .load()
        .await;
    let dialer = Arc::new(BearerDialer {
        url: samod::Url::parse(&server.ws_url())?,
        token,
    });
    let handle = repo
        .dial(BackoffConfig::default(), dialer)
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?;
    let established = tokio::time::timeout(SETTLE, handle.established()).await;
    match established {
        Ok(Ok(_)) => Ok(repo),
        Ok(Err(e)) => anyhow::bail!("samod could not connect: {e:?}"),
        Err(_) => anyhow::bail!("samod did not connect within {SETTLE:?}"),
    }
}

/// Applies a typed job edit to a plain automerge document (samod's, or the engine's).
fn edit_job(
    doc: &mut Automerge,
    f: impl FnOnce(&mut JobDoc) -> Result<(), EditError>,
) -> Result<(), String> {
    let before = doc.get_heads();
    // JobDoc keeps the document's actor, so the change is this peer's own.
    let mut job = JobDoc::from_automerge(doc.clone()).map_err(|e| e.to_string())?;
    f(&mut job).map_err(|e| e.to_string())?;
    let changes = job.inner_mut().save_after(&before);
    doc.load_incremental(&changes).map_err(|e| e.to_string())?;
    Ok(())
}

fn set_fault_cause(text: &'static str) -> LocalEdit {
    LocalEdit::Change(Box::new(move |doc| {
        edit_job(doc, |job| job.set_fault_cause(Some(text)))
    }))
}

fn fault_cause(doc: &Automerge) -> Option<String> {
    read_job(doc).ok().and_then(|j| j.diagnosis.fault_cause)
}

/// Waits until `predicate` holds for samod's copy of the document, or `timeout` passes.
async fn samod_wait_for(
    handle: &DocHandle,
    timeout: Duration,
    mut predicate: impl FnMut(&Automerge) -> bool,
) -> bool {
    // Subscribe before the first look, so a change between the two is not missed.
    let mut changes = handle.changes();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if handle.with_document(|doc| predicate(doc)) {
            return true;
        }
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samod_finds_a_job_and_syncs_edits_both_ways_with_our_client() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let samod_device = server.enroll("tech-wang", "dev-samod")?;
    let rust_device = server.enroll("tech-wang", "dev-rust")?;
    let created = server.create_job("tech-wang").await?;

    // The server binds a device token to peer id `dev-samod` (or `dev-samod:…`), and samod
    // lets us choose its peer id, so samod joins as that device and no desk token is needed.
    let token = server.device_token(&samod_device, Duration::from_secs(600))?;
    let repo = samod_repo(&server, samod_device.as_str(), token).await?;
    let doc_id = samod::DocumentId::try_from(created.job.as_bytes().to_vec())?;
    let handle = tokio::time::timeout(SETTLE, repo.find(doc_id))
        .await
        .map_err(|_| anyhow::anyhow!("samod find did not finish within {SETTLE:?}"))?
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?
        .ok_or_else(|| anyhow::anyhow!("samod: the server says the job is unavailable"))?;
    let job = handle.with_document(|doc| read_job(doc))?;
    assert_eq!(
        job.customer.name, "Lotus Foods Ltd",
        "samod holds the whole job"
    );

    // (a) samod edits, our client sees it.
    handle
        .with_document_async(|doc| edit_job(doc, |job| job.set_fault_cause(Some("Worn relay"))))
        .await
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?
        .map_err(anyhow::Error::msg)?;
    let client = server.connect_device(&rust_device, devices.path()).await?;
    client.subscribe(created.job);
    assert!(
        client
            .wait_for(created.job, SETTLE, |d| fault_cause(d).as_deref()
                == Some("Worn relay"))
            .await,
        "our client sees samod's edit"
    );

    // (b) our client edits (over samod's value, causally after it), samod sees it.
    client
        .edit(created.job, set_fault_cause("Worn start capacitor"))
        .await?;
    assert!(
        samod_wait_for(&handle, SETTLE, |d| fault_cause(d).as_deref()
            == Some("Worn start capacitor"))
        .await,
        "samod sees our client's edit"
    );

    assert_eq!(
        server.refusals().await?,
        Vec::<String>::new(),
        "the server refused nothing samod sent"
    );

    // A job assigned to someone else: the server answers doc-unavailable, and samod's find
    // ends with "not found" rather than waiting.
    let other = server.create_job("tech-li").await?;
    let other_id = samod::DocumentId::try_from(other.job.as_bytes().to_vec())?;
    let found = tokio::time::timeout(SETTLE, repo.find(other_id))
        .await
        .map_err(|_| anyhow::anyhow!("samod find did not finish within {SETTLE:?}"))?
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?;
    assert!(
        found.is_none(),
        "samod cannot fetch another technician's job"
    );
    assert_eq!(server.state.metrics.refusals("forbidden"), 1);

    client.close();
    repo.stop().await;
    server.stop().await?;
    Ok(())
}
