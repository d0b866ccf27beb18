//! The messages of the automerge-repo WebSocket protocol, version "1", and their CBOR codec.
//!
//! The message shapes follow automerge-repo 2.x (`automerge-repo-network-websocket`
//! `src/messages.ts` and its README, and `automerge-repo` `src/network/messages.ts`), checked
//! against what the JavaScript code really puts on the wire:
//!
//! - Every frame is one CBOR map with text keys, written by cbor-x with
//!   `{ tagUint8Array: false, useRecords: false }`. Byte fields (`data`) are plain CBOR byte
//!   strings. cbor-x writes map headers with a 16-bit length even for small maps, and writes a
//!   property whose value is `undefined` as the key followed by CBOR `undefined`, so an
//!   optional field may arrive as absent, `undefined` or `null`: all three mean "absent" here.
//! - JavaScript numbers: cbor-x writes integers up to `u32::MAX` as CBOR unsigned integers
//!   and larger ones (a `Date.now()` timestamp) as float64, and it decodes a 64-bit CBOR
//!   integer as a `BigInt`, not a number. So [`encode`] writes numbers the way cbor-x does,
//!   and [`decode`] accepts integral floats as well as integers.
//! - Remote heads (`remote-heads-changed`) are, since automerge-repo 2.0, bs58check strings
//!   of the 32-byte change hashes (1.x sent hex); they are kept as opaque strings here and
//!   converted with [`encode_head`] and [`parse_head`].
//!
//! Decoding is strict, because every byte comes from a peer we do not trust: a size limit
//! before anything else, a nesting limit, limits on string lengths and item counts checked
//! against both [`Limits`] and the bytes actually left before anything is allocated, an
//! error for an unknown `type`, a missing required field or a field of the wrong type, and
//! no panic on any input. Fields we do not know are skipped (JavaScript peers add their own),
//! but only after the same checks.

use std::collections::BTreeMap;
use std::fmt;

use crate::ids::{DocumentId, IdError};

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::decode;
pub use encode::encode;

/// The only version of the WebSocket protocol that exists, and the one we speak.
pub const PROTOCOL_VERSION: &str = "1";

/// The largest integer a JavaScript number holds exactly (`Number.MAX_SAFE_INTEGER`).
///
/// Counters and timestamps above it cannot reach a JavaScript peer intact, so [`decode`]
/// rejects them and [`encode`] must not be given them.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Picks the protocol version for a connection from a `join`'s `supportedProtocolVersions`:
/// [`PROTOCOL_VERSION`] when the peer offers it, `None` when it offers nothing we speak (the
/// receiving peer then answers with an `error` message and closes the connection).
pub fn select_protocol_version<S: AsRef<str>>(supported: &[S]) -> Option<&'static str> {
    supported
        .iter()
        .any(|v| v.as_ref() == PROTOCOL_VERSION)
        .then_some(PROTOCOL_VERSION)
}

/// Declares a newtype over a peer-chosen string. The protocol puts no rule on these
/// strings (JavaScript peers use random ids of their own making), so any text is accepted;
/// the decoder only bounds its length.
macro_rules! wire_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

wire_string!(
    /// The id a peer gives itself for one connection's lifetime (a browser tab, a process).
    PeerId
);
wire_string!(
    /// The id of a peer's persistent storage; many peer ids may share one. A peer that
    /// announces one expects its sync state to be kept for the next time it connects.
    StorageId
);
wire_string!(
    /// The random id of one sender's stream of ephemeral messages.
    SessionId
);

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// The peer's persistent storage, if it has one.
    pub storage_id: Option<StorageId>,
    /// Whether the peer expects never to come back with this storage id (then its sync state
    /// need not be kept).
    pub is_ephemeral: Option<bool>,
}

/// `join`: the first message of the initiating peer (the WebSocket client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMessage {
    pub sender_id: PeerId,
    /// The versions the client speaks; today always `["1"]`.
    pub supported_protocol_versions: Vec<String>,
    /// Absent, `null` or `undefined` on the wire decodes as the default (the README marks it
    /// optional even though the TypeScript type does not); it is always written.
    pub peer_metadata: PeerMetadata,
}

impl JoinMessage {
    /// The version to answer this join with, if we speak any that it offers.
    pub fn select_protocol_version(&self) -> Option<&'static str> {
        select_protocol_version(&self.supported_protocol_versions)
    }
}

/// `peer`: the receiving peer's (the server's) answer to a `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMessage {
    pub sender_id: PeerId,
    /// The joining peer.
    pub target_id: PeerId,
    pub selected_protocol_version: String,
    /// Absent, `null` or `undefined` decodes as the default; always written.
    pub peer_metadata: PeerMetadata,
}

/// `error`: a protocol error; the sender closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// The JavaScript server sets it; the README's schema does not require it.
    pub sender_id: Option<PeerId>,
    pub target_id: Option<PeerId>,
    pub message: String,
}

/// `leave`: an advisory message before a peer disconnects (in the README; the JavaScript
/// repo does not send it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMessage {
    pub sender_id: PeerId,
}

/// The body of both `request` and `sync`: one automerge sync message for one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    /// The automerge sync message; check it with
    /// [`check_sync_message`](crate::protocol::sync_check::check_sync_message) before
    /// automerge sees it.
    pub data: Vec<u8>,
}

/// `doc-unavailable`: the sender does not have the document and none of its peers do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocUnavailableMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
}

/// `ephemeral`: application data about a document that is relayed but never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralMessage {
    /// The peer that created the message, which is not necessarily the peer that sent this
    /// frame: repos forward ephemeral messages unchanged apart from `targetId`.
    pub sender_id: PeerId,
    pub target_id: PeerId,
    /// Increases with every message of one session; with `session_id` and `sender_id` it
    /// identifies a message, so a forwarded duplicate can be dropped. At most
    /// [`MAX_SAFE_INTEGER`].
    pub count: u64,
    pub session_id: SessionId,
    pub document_id: DocumentId,
    /// CBOR written by the sending application; opaque here.
    pub data: Vec<u8>,
}

/// `remote-subscription-change`: the sender changes which storage ids' heads it wants to
/// hear about through the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSubscriptionChangeMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    /// `None` when the field is absent (JavaScript often sends `undefined`), which is not the
    /// same as an empty list on the wire, so both are kept apart.
    pub add: Option<Vec<StorageId>>,
    pub remove: Option<Vec<StorageId>>,
}

/// The heads that a storage id had for a document, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    /// Change hashes as automerge-repo 2.x writes them (bs58check); see [`parse_head`].
    pub heads: Vec<String>,
    /// Milliseconds since the Unix epoch on the peer that first saw these heads; at most
    /// [`MAX_SAFE_INTEGER`].
    pub timestamp: u64,
}

/// `remote-heads-changed`: a storage id that the receiver subscribed to has new heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeadsChangedMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    pub new_heads: BTreeMap<StorageId, RemoteHeads>,
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Join(JoinMessage),
    Peer(PeerMessage),
    Error(ErrorMessage),
    Leave(LeaveMessage),
    /// A sync message from a peer that does not have the document yet: it asks for a
    /// `doc-unavailable` answer if the receiver cannot supply the document.
    Request(SyncMessage),
    Sync(SyncMessage),
    DocUnavailable(DocUnavailableMessage),
    Ephemeral(EphemeralMessage),
    RemoteSubscriptionChange(RemoteSubscriptionChangeMessage),
    RemoteHeadsChanged(RemoteHeadsChangedMessage),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Join(_) => MessageType::Join,
            Message::Peer(_) => MessageType::Peer,
            Message::Error(_) => MessageType::Error,
            Message::Leave(_) => MessageType::Leave,
            Message::Request(_) => MessageType::Request,
            Message::Sync(_) => MessageType::Sync,
            Message::DocUnavailable(_) => MessageType::DocUnavailable,
            Message::Ephemeral(_) => MessageType::Ephemeral,
            Message::RemoteSubscriptionChange(_) => MessageType::RemoteSubscriptionChange,
            Message::RemoteHeadsChanged(_) => MessageType::RemoteHeadsChanged,
        }
    }

    /// The sender, which every message but `error` must name.
    pub fn sender_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join(m) => Some(&m.sender_id),
            Message::Peer(m) => Some(&m.sender_id),
            Message::Error(m) => m.sender_id.as_ref(),
            Message::Leave(m) => Some(&m.sender_id),
            Message::Request(m) | Message::Sync(m) => Some(&m.sender_id),
            Message::DocUnavailable(m) => Some(&m.sender_id),
            Message::Ephemeral(m) => Some(&m.sender_id),
            Message::RemoteSubscriptionChange(m) => Some(&m.sender_id),
            Message::RemoteHeadsChanged(m) => Some(&m.sender_id),
        }
    }

    /// The document the message is about, for the messages that have one.
    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Request(m) | Message::Sync(m) => Some(m.document_id),
            Message::DocUnavailable(m) => Some(m.document_id),
            Message::Ephemeral(m) => Some(m.document_id),
            Message::RemoteHeadsChanged(m) => Some(m.document_id),
            Message::Join(_)
            | Message::Peer(_)
            | Message::Error(_)
            | Message::Leave(_)
            | Message::RemoteSubscriptionChange(_) => None,
        }
    }
}

/// The `type` of a message, as written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Join,
    Peer,
    Error,
    Leave,
    Request,
    Sync,
    DocUnavailable,
    Ephemeral,
    RemoteSubscriptionChange,
    RemoteHeadsChanged,
}

impl MessageType {
    pub const ALL: [MessageType; 10] = [
        MessageType::Join,
        MessageType::Peer,
        MessageType::Error,
        MessageType::Leave,
        MessageType::Request,
        MessageType::Sync,
        MessageType::DocUnavailable,
        MessageType::Ephemeral,
        MessageType::RemoteSubscriptionChange,
        MessageType::RemoteHeadsChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Join => "join",
            MessageType::Peer => "peer",
            MessageType::Error => "error",
            MessageType::Leave => "leave",
            MessageType::Request => "request",
            MessageType::Sync => "sync",
            MessageType::DocUnavailable => "doc-unavailable",
            MessageType::Ephemeral => "ephemeral",
            MessageType::RemoteSubscriptionChange => "remote-subscription-change",
            MessageType::RemoteHeadsChanged => "remote-heads-changed",
        }
    }

    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds on what [`decode`] accepts from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame; checked before any parsing.
    pub max_message_bytes: usize,
    /// How deeply maps, arrays and tags may nest, the message map itself being level 1. The
    /// deepest real message (`remote-heads-changed`) needs 4. Keep it small: skipping an
    /// unknown field recurses once per level.
    pub max_depth: usize,
    /// The longest text value, in bytes (ids, versions, error text).
    pub max_string_len: usize,
    /// The most items in any array, and the most entries in any map, including the message
    /// map and unknown fields.
    pub max_array_items: usize,
    /// The most heads for one storage id in `remote-heads-changed`.
    pub max_heads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_depth: 8,
            max_string_len: 4096,
            max_array_items: 1024,
            max_heads: 256,
        }
    }
}

/// Why a frame was rejected. Each variant has a stable [`code`](DecodeError::code) for close
/// reasons and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("message ends inside a CBOR item")]
    Truncated,
    #[error("{count} bytes follow the message")]
    TrailingBytes { count: usize },
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    #[error("message is not a CBOR map")]
    NotAMap,
    #[error("message has no `type` field")]
    MissingType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("`{msg_type}` message lacks required field `{field}`")]
    MissingField {
        msg_type: MessageType,
        field: &'static str,
    },
    #[error("field `{field}` appears more than once")]
    DuplicateField { field: &'static str },
    #[error("field `{field}` should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` is {len} bytes long, over the limit of {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("field `{field}` has more than {limit} items")]
    TooManyItems { field: &'static str, limit: usize },
    #[error("bad document id: {0}")]
    BadDocumentId(IdError),
}

impl DecodeError {
    /// A short, stable name for the error: safe in a WebSocket close reason (well under its
    /// 123 bytes) and as a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::Truncated => "truncated",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::Cbor(_) => "malformed_cbor",
            DecodeError::NotAMap => "not_a_map",
            DecodeError::MissingType => "missing_type",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::DuplicateField { .. } => "duplicate_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::TooManyItems { .. } => "too_many_items",
            DecodeError::BadDocumentId(_) => "bad_document_id",
        }
    }
}

/// Why a head string is not a change hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a bs58check nor a hex change hash")]
pub struct BadHead(pub String);

/// Writes a change hash the way automerge-repo 2.x does in `remote-heads-changed` and in
/// URLs: bs58check of its 32 bytes.
pub fn encode_head(hash: &automerge::ChangeHash) -> String {
    bs58::encode(hash.as_ref()).with_check().into_string()
}

/// Reads a head from `remote-heads-changed`: bs58check (automerge-repo 2.x) or 64 hex digits
/// (1.x, and automerge's own `getHeads`).
pub fn parse_head(head: &str) -> Result<automerge::ChangeHash, BadHead> {
    let bytes = if head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(head).ok()
    } else {
        bs58::decode(head).with_check(None).into_vec().ok()
    };
    bytes
        .and_then(|b| automerge::ChangeHash::try_from(b.as_slice()).ok())
        .ok_or_else(|| BadHead(head.to_owned()))
}
