//! Writing messages as CBOR.
//!
//! The writer is a few lines over a `Vec<u8>` rather than a CBOR library's encoder: every
//! item we write is a map, array, text, byte string, bool or number, writing to memory
//! cannot fail, and so `encode` needs no error path. It writes what cbor-x reads as the
//! JavaScript objects of automerge-repo: definite-length maps with text keys, plain byte
//! strings, absent optional fields left out, and numbers as cbor-x itself writes them.

use super::{
    ErrorMessage, JoinMessage, Message, PeerMessage, PeerMetadata, RemoteHeadsChangedMessage,
    RemoteSubscriptionChangeMessage, StorageId, SyncMessage,
};

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const FLOAT64: u8 = 0xfb;

/// Encodes one message as a CBOR map, ready to send as a binary WebSocket frame.
///
/// Counters and timestamps must not exceed
/// [`MAX_SAFE_INTEGER`](super::MAX_SAFE_INTEGER); above `u32::MAX` they are written as
/// float64, as cbor-x writes JavaScript numbers, because cbor-x would read a 64-bit CBOR
/// integer back as a `BigInt`.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer::default();
    match message {
        Message::Join(m) => w.join(m),
        Message::Peer(m) => w.peer(m),
        Message::Error(m) => w.error(m),
        Message::Leave(m) => {
            w.map(2);
            w.entry_text("type", "leave");
            w.entry_text("senderId", m.sender_id.as_str());
        }
        Message::Request(m) => w.sync("request", m),
        Message::Sync(m) => w.sync("sync", m),
        Message::DocUnavailable(m) => {
            w.map(4);
            w.entry_text("type", "doc-unavailable");
            w.entry_text("senderId", m.sender_id.as_str());
            w.entry_text("targetId", m.target_id.as_str());
            w.entry_text("documentId", &m.document_id.to_string());
        }
        Message::Ephemeral(m) => {
            w.map(7);
            w.entry_text("type", "ephemeral");
            w.entry_text("senderId", m.sender_id.as_str());
            w.entry_text("targetId", m.target_id.as_str());
            w.text("count");
            w.js_number(m.count);
            w.entry_text("sessionId", m.session_id.as_str());
            w.entry_text("documentId", &m.document_id.to_string());
            w.text("data");
            w.bytes(&m.data);
        }
        Message::RemoteSubscriptionChange(m) => w.remote_subscription_change(m),
        Message::RemoteHeadsChanged(m) => w.remote_heads_changed(m),
    }
    w.buf
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Writes an item head: the major type and its argument in the shortest form.
    fn head(&mut self, major: u8, n: u64) {
        let major = major << 5;
        if n < 24 {
            self.buf.push(major | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.buf.extend_from_slice(&[major | 24, n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.buf.push(major | 25);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            self.buf.push(major | 26);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else {
            self.buf.push(major | 27);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn map(&mut self, entries: usize) {
        self.head(MAJOR_MAP, entries as u64);
    }

    fn array(&mut self, items: usize) {
        self.head(MAJOR_ARRAY, items as u64);
    }

    fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn bool(&mut self, b: bool) {
        self.buf.push(if b { TRUE } else { FALSE });
    }

    /// Writes a non-negative integer as cbor-x writes a JavaScript number that holds it.
    fn js_number(&mut self, n: u64) {
        if n <= u64::from(u32::MAX) {
            self.head(MAJOR_UNSIGNED, n);
        } else {
            self.buf.push(FLOAT64);
            self.buf.extend_from_slice(&(n as f64).to_be_bytes());
        }
    }

    fn entry_text(&mut self, key: &str, value: &str) {
        self.text(key);
        self.text(value);
    }

    fn text_array<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.array(items.len());
        for item in items {
            self.text(item);
        }
    }

    fn peer_metadata(&mut self, m: &PeerMetadata) {
        self.map(usize::from(m.storage_id.is_some()) + usize::from(m.is_ephemeral.is_some()));
        if let Some(storage_id) = &m.storage_id {
            self.entry_text("storageId", storage_id.as_str());
        }
        if let Some(is_ephemeral) = m.is_ephemeral {
            self.text("isEphemeral");
            self.bool(is_ephemeral);
        }
    }

    fn join(&mut self, m: &JoinMessage) {
        self.map(4);
        self.entry_text("type", "join");
        self.entry_text("senderId", m.sender_id.as_str());
        self.text("peerMetadata");
        self.peer_metadata(&m.peer_metadata);
        self.text("supportedProtocolVersions");
        self.text_array(m.supported_protocol_versions.iter().map(String::as_str));
    }

    fn peer(&mut self, m: &PeerMessage) {
        self.map(5);
        self.entry_text("type", "peer");
        self.entry_text("senderId", m.sender_id.as_str());
        self.text("peerMetadata");
        self.peer_metadata(&m.peer_metadata);
        self.entry_text("selectedProtocolVersion", &m.selected_protocol_version);
        self.entry_text("targetId", m.target_id.as_str());
    }

    fn error(&mut self, m: &ErrorMessage) {
        self.map(2 + usize::from(m.sender_id.is_some()) + usize::from(m.target_id.is_some()));
        self.entry_text("type", "error");
        if let Some(sender_id) = &m.sender_id {
            self.entry_text("senderId", sender_id.as_str());
        }
        self.entry_text("message", &m.message);
        if let Some(target_id) = &m.target_id {
            self.entry_text("targetId", target_id.as_str());
        }
    }

    fn sync(&mut self, msg_type: &str, m: &SyncMessage) {
        self.map(5);
        self.entry_text("type", msg_type);
        self.entry_text("senderId", m.sender_id.as_str());
        self.entry_text("targetId", m.target_id.as_str());
        self.entry_text("documentId", &m.document_id.to_string());
        self.text("data");
        self.bytes(&m.data);
    }

    fn storage_ids(&mut self, ids: &[StorageId]) {
        self.text_array(ids.iter().map(StorageId::as_str));
    }

    fn remote_subscription_change(&mut self, m: &RemoteSubscriptionChangeMessage) {
        self.map(3 + usize::from(m.add.is_some()) + usize::from(m.remove.is_some()));
        self.entry_text("type", "remote-subscription-change");
        self.entry_text("senderId", m.sender_id.as_str());
        self.entry_text("targetId", m.target_id.as_str());
        if let Some(add) = &m.add {
            self.text("add");
            self.storage_ids(add);
        }
        if let Some(remove) = &m.remove {
            self.text("remove");
            self.storage_ids(remove);
        }
    }

    fn remote_heads_changed(&mut self, m: &RemoteHeadsChangedMessage) {
        self.map(5);
        self.entry_text("type", "remote-heads-changed");
        self.entry_text("senderId", m.sender_id.as_str());
        self.entry_text("targetId", m.target_id.as_str());
        self.entry_text("documentId", &m.document_id.to_string());
        self.text("newHeads");
        self.map(m.new_heads.len());
        for (storage_id, heads) in &m.new_heads {
            self.text(storage_id.as_str());
            self.map(2);
            self.text("heads");
            self.text_array(heads.heads.iter().map(String::as_str));
            self.text("timestamp");
            self.js_number(heads.timestamp);
        }
    }
}
