//! Reading messages from CBOR, strictly and within [`Limits`].
//!
//! minicbor's `Decoder` reads one CBOR item at a time and hands out text and byte strings
//! borrowed from the input after checking their declared length against the bytes that are
//! really there, so nothing here allocates on the word of a length prefix. On top of it, this
//! module checks every container's declared count against the limits and against the bytes
//! left (each item takes at least one byte) before collecting anything.
//!
//! Decoding takes two passes over the message map. The first walks every entry, skipping
//! each value with the nesting and count limits applied, and notes where the values of the
//! fields we know start; it also rejects duplicate fields and trailing bytes. The second
//! reads the fields that the message's `type` needs from those positions. So the order of
//! fields does not matter (cbor-x keeps JavaScript's property order, which is the sender's
//! business), and an unknown field is skipped with exactly the same checks as a known one.

use std::collections::BTreeMap;

use minicbor::Decoder;
use minicbor::data::Type;

use super::{
    DecodeError, DocUnavailableMessage, EphemeralMessage, ErrorMessage, JoinMessage, LeaveMessage,
    Limits, MAX_SAFE_INTEGER, Message, MessageType, PeerId, PeerMessage, PeerMetadata, RemoteHeads,
    RemoteHeadsChangedMessage, RemoteSubscriptionChangeMessage, SessionId, StorageId, SyncMessage,
};
use crate::ids::DocumentId;

/// RFC 8746 tag for a `Uint8Array`. cbor-x adds it unless told `tagUint8Array: false`, as
/// automerge-repo does; accepting it costs nothing and admits clients that use plain cbor-x.
const TAG_UINT8_ARRAY: u64 = 64;

/// How much of an unknown `type` is echoed back in the error, so a peer cannot make our logs
/// carry its long strings.
const MAX_ECHOED_TYPE_LEN: usize = 64;

/// What a counter or timestamp must be: a JavaScript number that is a safe integer.
const JS_INTEGER: &str = "a non-negative integer of at most 2^53 - 1";

/// Decodes one frame, checking it against `limits`. Never panics.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let mut r = Reader {
        d: Decoder::new(bytes),
        limits,
    };
    let f = r.scan_message()?;
    let ty = r.message_type(&f)?;
    let message = match ty {
        MessageType::Join => Message::Join(JoinMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
            supported_protocol_versions: r.required_text_array(
                &f,
                Field::SupportedProtocolVersions,
                ty,
            )?,
            peer_metadata: r.peer_metadata(&f)?,
        }),
        MessageType::Peer => Message::Peer(PeerMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
            target_id: r.peer_id(&f, Field::TargetId, ty)?,
            selected_protocol_version: r
                .required_text(&f, Field::SelectedProtocolVersion, ty)?
                .to_owned(),
            peer_metadata: r.peer_metadata(&f)?,
        }),
        MessageType::Error => Message::Error(ErrorMessage {
            sender_id: r.optional_text(&f, Field::SenderId)?.map(PeerId::from),
            target_id: r.optional_text(&f, Field::TargetId)?.map(PeerId::from),
            message: r.required_text(&f, Field::Message, ty)?.to_owned(),
        }),
        MessageType::Leave => Message::Leave(LeaveMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
        }),
        MessageType::Request => Message::Request(r.sync_message(&f, ty)?),
        MessageType::Sync => Message::Sync(r.sync_message(&f, ty)?),
        MessageType::DocUnavailable => Message::DocUnavailable(DocUnavailableMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
            target_id: r.peer_id(&f, Field::TargetId, ty)?,
            document_id: r.document_id(&f, ty)?,
        }),
        MessageType::Ephemeral => Message::Ephemeral(EphemeralMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
            target_id: r.peer_id(&f, Field::TargetId, ty)?,
            count: r.required_js_integer(&f, Field::Count, ty)?,
            session_id: SessionId::from(r.required_text(&f, Field::SessionId, ty)?),
            document_id: r.document_id(&f, ty)?,
            data: r.required_bytes(&f, Field::Data, ty)?.to_vec(),
        }),
        MessageType::RemoteSubscriptionChange => {
            Message::RemoteSubscriptionChange(RemoteSubscriptionChangeMessage {
                sender_id: r.peer_id(&f, Field::SenderId, ty)?,
                target_id: r.peer_id(&f, Field::TargetId, ty)?,
                add: r.optional_storage_ids(&f, Field::Add)?,
                remove: r.optional_storage_ids(&f, Field::Remove)?,
            })
        }
        MessageType::RemoteHeadsChanged => Message::RemoteHeadsChanged(RemoteHeadsChangedMessage {
            sender_id: r.peer_id(&f, Field::SenderId, ty)?,
            target_id: r.peer_id(&f, Field::TargetId, ty)?,
            document_id: r.document_id(&f, ty)?,
            new_heads: r.new_heads(&f, ty)?,
        }),
    };
    Ok(message)
}

/// The fields of the message map that some message type reads.
#[derive(Debug, Clone, Copy)]
enum Field {
    Type,
    SenderId,
    TargetId,
    SupportedProtocolVersions,
    PeerMetadata,
    /// The README's name for `peerMetadata`; the JavaScript code sends `peerMetadata`.
    Metadata,
    SelectedProtocolVersion,
    Message,
    DocumentId,
    Data,
    Count,
    SessionId,
    Add,
    Remove,
    NewHeads,
}

impl Field {
    const ALL: [Field; 15] = [
        Field::Type,
        Field::SenderId,
        Field::TargetId,
        Field::SupportedProtocolVersions,
        Field::PeerMetadata,
        Field::Metadata,
        Field::SelectedProtocolVersion,
        Field::Message,
        Field::DocumentId,
        Field::Data,
        Field::Count,
        Field::SessionId,
        Field::Add,
        Field::Remove,
        Field::NewHeads,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::SenderId => "senderId",
            Field::TargetId => "targetId",
            Field::SupportedProtocolVersions => "supportedProtocolVersions",
            Field::PeerMetadata => "peerMetadata",
            Field::Metadata => "metadata",
            Field::SelectedProtocolVersion => "selectedProtocolVersion",
            Field::Message => "message",
            Field::DocumentId => "documentId",
            Field::Data => "data",
            Field::Count => "count",
            Field::SessionId => "sessionId",
            Field::Add => "add",
            Field::Remove => "remove",
            Field::NewHeads => "newHeads",
        }
    }

    fn from_key(key: &str) -> Option<Field> {
        Self::ALL.into_iter().find(|f| f.name() == key)
    }
}

/// Where the value of each known field starts, from the first pass.
#[derive(Default)]
struct Fields {
    positions: [Option<usize>; Field::ALL.len()],
}

impl Fields {
    fn get(&self, field: Field) -> Option<usize> {
        self.positions[field as usize]
    }
}

/// Progress through one map or array.
struct Seq {
    /// Items (map entries) still to read, or `None` for an indefinite-length container that
    /// ends at a break byte.
    left: Option<u64>,
    /// Items read so far from an indefinite-length container.
    seen: usize,
    max_items: usize,
    field: &'static str,
}

impl Seq {
    /// A capacity for collecting the items: the declared count, which was already checked
    /// against the limits and the input.
    fn capacity(&self) -> usize {
        self.left.and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
    }
}

fn cbor_error(e: minicbor::decode::Error) -> DecodeError {
    if e.is_end_of_input() {
        DecodeError::Truncated
    } else {
        DecodeError::Cbor(e.to_string())
    }
}

/// Keeps at most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// An IEEE 754 half-precision float, which minicbor reads only with its `half` feature.
fn f16_to_f64(bits: u16) -> f64 {
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        0x1f if mantissa == 0.0 => f64::INFINITY,
        0x1f => f64::NAN,
        _ => (1024.0 + mantissa) * 2f64.powi(exponent - 25),
    };
    if bits & 0x8000 == 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// The integer a float stands for, if it is a JavaScript safe integer that is not negative.
fn float_to_js_integer(f: f64) -> Option<u64> {
    let in_range = f.is_finite() && f >= 0.0 && f <= MAX_SAFE_INTEGER as f64;
    (in_range && f.fract() == 0.0).then_some(f as u64)
}

struct Reader<'b, 'l> {
    d: Decoder<'b>,
    limits: &'l Limits,
}

impl<'b> Reader<'b, '_> {
    fn remaining(&self) -> usize {
        self.d.input().len().saturating_sub(self.d.position())
    }

    fn datatype(&self) -> Result<Type, DecodeError> {
        self.d.datatype().map_err(cbor_error)
    }

    /// Moves past `n` bytes that the caller has already identified.
    fn advance(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        self.d.set_position(self.d.position() + n);
        Ok(())
    }

    /// The first pass: see the module documentation.
    fn scan_message(&mut self) -> Result<Fields, DecodeError> {
        if !matches!(self.datatype()?, Type::Map | Type::MapIndef) {
            return Err(DecodeError::NotAMap);
        }
        let mut fields = Fields::default();
        let mut seq = self.begin_map("message", 1)?;
        while self.next(&mut seq)? {
            let key = self.map_key("message", 2)?;
            let name = match key.and_then(Field::from_key) {
                Some(field) => {
                    let slot = &mut fields.positions[field as usize];
                    if slot.is_some() {
                        return Err(DecodeError::DuplicateField {
                            field: field.name(),
                        });
                    }
                    *slot = Some(self.d.position());
                    field.name()
                }
                None => "(unknown field)",
            };
            self.skip(name, 2)?;
        }
        match self.remaining() {
            0 => Ok(fields),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// Fails if a container would sit at nesting `level`, beyond the limit.
    fn enter(&self, level: usize) -> Result<(), DecodeError> {
        if level > self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(())
    }

    fn begin(
        &self,
        field: &'static str,
        len: Option<u64>,
        max_items: usize,
        min_item_bytes: u64,
    ) -> Result<Seq, DecodeError> {
        if let Some(n) = len {
            if n > max_items as u64 {
                return Err(DecodeError::TooManyItems {
                    field,
                    limit: max_items,
                });
            }
            // Each item takes at least `min_item_bytes`, so a count the input cannot hold
            // is a truncated message, found before anything is collected.
            if n.saturating_mul(min_item_bytes) > self.remaining() as u64 {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(Seq {
            left: len,
            seen: 0,
            max_items,
            field,
        })
    }

    /// Starts a map at nesting `level`; the caller has checked that a map is next.
    fn begin_map(&mut self, field: &'static str, level: usize) -> Result<Seq, DecodeError> {
        self.enter(level)?;
        let len = self.d.map().map_err(cbor_error)?;
        self.begin(field, len, self.limits.max_array_items, 2)
    }

    /// Starts an array at nesting `level`; the caller has checked that an array is next.
    fn begin_array(
        &mut self,
        field: &'static str,
        level: usize,
        max_items: usize,
    ) -> Result<Seq, DecodeError> {
        self.enter(level)?;
        let len = self.d.array().map_err(cbor_error)?;
        self.begin(field, len, max_items, 1)
    }

    /// Steps to the next item (map entry) of `seq`; `false` at its end.
    fn next(&mut self, seq: &mut Seq) -> Result<bool, DecodeError> {
        match &mut seq.left {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => {
                if self.datatype()? == Type::Break {
                    self.advance(1)?;
                    return Ok(false);
                }
                seq.seen += 1;
                if seq.seen > seq.max_items {
                    return Err(DecodeError::TooManyItems {
                        field: seq.field,
                        limit: seq.max_items,
                    });
                }
                Ok(true)
            }
        }
    }

    /// Reads a map key: its text, or `None` after skipping a key of another type (a
    /// JavaScript object has only text keys, so no field we know has another).
    fn map_key(
        &mut self,
        field: &'static str,
        level: usize,
    ) -> Result<Option<&'b str>, DecodeError> {
        if self.datatype()? == Type::String {
            self.d.str().map(Some).map_err(cbor_error)
        } else {
            self.skip(field, level)?;
            Ok(None)
        }
    }

    /// Skips one value whose containers would start at nesting `level`.
    fn skip(&mut self, field: &'static str, level: usize) -> Result<(), DecodeError> {
        match self.datatype()? {
            Type::Map | Type::MapIndef => {
                let mut seq = self.begin_map(field, level)?;
                while self.next(&mut seq)? {
                    self.skip(field, level + 1)?;
                    self.skip(field, level + 1)?;
                }
            }
            Type::Array | Type::ArrayIndef => {
                let mut seq = self.begin_array(field, level, self.limits.max_array_items)?;
                while self.next(&mut seq)? {
                    self.skip(field, level + 1)?;
                }
            }
            // A tag counts as a level, so a chain of tags cannot recurse without bound.
            Type::Tag => {
                self.enter(level)?;
                self.d.tag().map_err(cbor_error)?;
                self.skip(field, level + 1)?;
            }
            Type::Bytes => {
                self.d.bytes().map_err(cbor_error)?;
            }
            Type::String => {
                self.d.str().map_err(cbor_error)?;
            }
            Type::BytesIndef | Type::StringIndef => {
                return Err(DecodeError::Cbor(format!(
                    "indefinite-length string in `{field}` (cbor-x never writes one)"
                )));
            }
            Type::Break => {
                return Err(DecodeError::Cbor(format!("unexpected break in `{field}`")));
            }
            Type::Unknown(byte) => {
                return Err(DecodeError::Cbor(format!(
                    "reserved initial byte {byte:#04x} in `{field}`"
                )));
            }
            Type::F16 => self.advance(3)?,
            Type::F32 | Type::F64 => {
                self.d.f64().map_err(cbor_error)?;
            }
            Type::Bool => {
                self.d.bool().map_err(cbor_error)?;
            }
            Type::Null => self.d.null().map_err(cbor_error)?,
            Type::Undefined => self.d.undefined().map_err(cbor_error)?,
            Type::Simple => {
                self.d.simple().map_err(cbor_error)?;
            }
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => {
                self.d.int().map_err(cbor_error)?;
            }
        }
        Ok(())
    }

    /// At a value: `false` after consuming a `null` or `undefined`, which stand for an
    /// absent field, `true` otherwise.
    fn present(&mut self) -> Result<bool, DecodeError> {
        match self.datatype()? {
            Type::Null | Type::Undefined => {
                self.advance(1)?;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Moves to a known field's value; `false` if the field is absent, `null` or `undefined`.
    fn seek(&mut self, f: &Fields, field: Field) -> Result<bool, DecodeError> {
        match f.get(field) {
            Some(position) => {
                self.d.set_position(position);
                self.present()
            }
            None => Ok(false),
        }
    }

    fn seek_required(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<(), DecodeError> {
        if self.seek(f, field)? {
            Ok(())
        } else {
            Err(DecodeError::MissingField {
                msg_type: ty,
                field: field.name(),
            })
        }
    }

    fn text(&mut self, field: &'static str) -> Result<&'b str, DecodeError> {
        if self.datatype()? != Type::String {
            return Err(DecodeError::WrongType {
                field,
                expected: "text",
            });
        }
        let text = self.d.str().map_err(cbor_error)?;
        if text.len() > self.limits.max_string_len {
            return Err(DecodeError::TooLong {
                field,
                len: text.len(),
                limit: self.limits.max_string_len,
            });
        }
        Ok(text)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        if self.datatype()? != Type::Bool {
            return Err(DecodeError::WrongType {
                field,
                expected: "a boolean",
            });
        }
        self.d.bool().map_err(cbor_error)
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'b [u8], DecodeError> {
        let wrong = DecodeError::WrongType {
            field,
            expected: "a byte string",
        };
        if self.datatype()? == Type::Tag
            && self.d.tag().map_err(cbor_error)?.as_u64() != TAG_UINT8_ARRAY
        {
            return Err(wrong);
        }
        if self.datatype()? != Type::Bytes {
            return Err(wrong);
        }
        self.d.bytes().map_err(cbor_error)
    }

    /// A JavaScript number that must be a non-negative safe integer: a CBOR unsigned
    /// integer, or a float with an integral value (cbor-x writes numbers above `u32::MAX`
    /// as float64).
    fn js_integer(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let value = match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => Some(self.d.u64().map_err(cbor_error)?),
            Type::F16 => {
                let start = self.d.position() + 1;
                let bits = self
                    .d
                    .input()
                    .get(start..start + 2)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .ok_or(DecodeError::Truncated)?;
                self.advance(3)?;
                float_to_js_integer(f16_to_f64(u16::from_be_bytes(bits)))
            }
            Type::F32 | Type::F64 => float_to_js_integer(self.d.f64().map_err(cbor_error)?),
            _ => None,
        };
        value
            .filter(|n| *n <= MAX_SAFE_INTEGER)
            .ok_or(DecodeError::WrongType {
                field,
                expected: JS_INTEGER,
            })
    }

    /// An array of text at nesting `level`, with at most `max_items` items.
    fn text_array(
        &mut self,
        field: &'static str,
        level: usize,
        max_items: usize,
    ) -> Result<Vec<String>, DecodeError> {
        if !matches!(self.datatype()?, Type::Array | Type::ArrayIndef) {
            return Err(DecodeError::WrongType {
                field,
                expected: "an array of text",
            });
        }
        let mut seq = self.begin_array(field, level, max_items)?;
        let mut items = Vec::with_capacity(seq.capacity());
        while self.next(&mut seq)? {
            items.push(self.text(field)?.to_owned());
        }
        Ok(items)
    }

    fn message_type(&mut self, f: &Fields) -> Result<MessageType, DecodeError> {
        if !self.seek(f, Field::Type)? {
            return Err(DecodeError::MissingType);
        }
        let name = self.text("type")?;
        MessageType::from_wire(name)
            .ok_or_else(|| DecodeError::UnknownType(truncate(name, MAX_ECHOED_TYPE_LEN)))
    }

    fn required_text(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<&'b str, DecodeError> {
        self.seek_required(f, field, ty)?;
        self.text(field.name())
    }

    fn optional_text(&mut self, f: &Fields, field: Field) -> Result<Option<&'b str>, DecodeError> {
        if self.seek(f, field)? {
            self.text(field.name()).map(Some)
        } else {
            Ok(None)
        }
    }

    fn peer_id(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<PeerId, DecodeError> {
        self.required_text(f, field, ty).map(PeerId::from)
    }

    fn document_id(&mut self, f: &Fields, ty: MessageType) -> Result<DocumentId, DecodeError> {
        self.required_text(f, Field::DocumentId, ty)?
            .parse()
            .map_err(DecodeError::BadDocumentId)
    }

    fn required_bytes(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<&'b [u8], DecodeError> {
        self.seek_required(f, field, ty)?;
        self.bytes(field.name())
    }

    fn required_js_integer(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<u64, DecodeError> {
        self.seek_required(f, field, ty)?;
        self.js_integer(field.name())
    }

    fn required_text_array(
        &mut self,
        f: &Fields,
        field: Field,
        ty: MessageType,
    ) -> Result<Vec<String>, DecodeError> {
        self.seek_required(f, field, ty)?;
        self.text_array(field.name(), 2, self.limits.max_array_items)
    }

    fn optional_storage_ids(
        &mut self,
        f: &Fields,
        field: Field,
    ) -> Result<Option<Vec<StorageId>>, DecodeError> {
        if !self.seek(f, field)? {
            return Ok(None);
        }
        let ids = self.text_array(field.name(), 2, self.limits.max_array_items)?;
        Ok(Some(ids.into_iter().map(StorageId::from).collect()))
    }

    fn sync_message(&mut self, f: &Fields, ty: MessageType) -> Result<SyncMessage, DecodeError> {
        Ok(SyncMessage {
            sender_id: self.peer_id(f, Field::SenderId, ty)?,
            target_id: self.peer_id(f, Field::TargetId, ty)?,
            document_id: self.document_id(f, ty)?,
            data: self.required_bytes(f, Field::Data, ty)?.to_vec(),
        })
    }

    /// `peerMetadata` (or the README's `metadata`); absent means the default.
    fn peer_metadata(&mut self, f: &Fields) -> Result<PeerMetadata, DecodeError> {
        let field = match f.get(Field::PeerMetadata) {
            Some(_) => Field::PeerMetadata,
            None => Field::Metadata,
        };
        let mut meta = PeerMetadata::default();
        if !self.seek(f, field)? {
            return Ok(meta);
        }
        let name = field.name();
        if !matches!(self.datatype()?, Type::Map | Type::MapIndef) {
            return Err(DecodeError::WrongType {
                field: name,
                expected: "a map",
            });
        }
        let (mut seen_storage_id, mut seen_is_ephemeral) = (false, false);
        let mut seq = self.begin_map(name, 2)?;
        while self.next(&mut seq)? {
            match self.map_key(name, 3)? {
                Some("storageId") => {
                    once(&mut seen_storage_id, "peerMetadata.storageId")?;
                    if self.present()? {
                        meta.storage_id = Some(self.text("peerMetadata.storageId")?.into());
                    }
                }
                Some("isEphemeral") => {
                    once(&mut seen_is_ephemeral, "peerMetadata.isEphemeral")?;
                    if self.present()? {
                        meta.is_ephemeral = Some(self.bool("peerMetadata.isEphemeral")?);
                    }
                }
                _ => self.skip(name, 3)?,
            }
        }
        Ok(meta)
    }

    fn new_heads(
        &mut self,
        f: &Fields,
        ty: MessageType,
    ) -> Result<BTreeMap<StorageId, RemoteHeads>, DecodeError> {
        self.seek_required(f, Field::NewHeads, ty)?;
        if !matches!(self.datatype()?, Type::Map | Type::MapIndef) {
            return Err(DecodeError::WrongType {
                field: "newHeads",
                expected: "a map",
            });
        }
        let mut new_heads = BTreeMap::new();
        let mut seq = self.begin_map("newHeads", 2)?;
        while self.next(&mut seq)? {
            let storage_id = StorageId::from(self.text("newHeads")?);
            let heads = self.remote_heads(ty)?;
            if new_heads.insert(storage_id, heads).is_some() {
                return Err(DecodeError::DuplicateField { field: "newHeads" });
            }
        }
        Ok(new_heads)
    }

    /// One `{ heads, timestamp }` value of `newHeads`, at nesting level 3.
    fn remote_heads(&mut self, ty: MessageType) -> Result<RemoteHeads, DecodeError> {
        const HEADS: &str = "newHeads.heads";
        const TIMESTAMP: &str = "newHeads.timestamp";
        if !matches!(self.datatype()?, Type::Map | Type::MapIndef) {
            return Err(DecodeError::WrongType {
                field: "newHeads",
                expected: "a map of storage id to { heads, timestamp }",
            });
        }
        let (mut heads, mut timestamp) = (None, None);
        let (mut seen_heads, mut seen_timestamp) = (false, false);
        let mut seq = self.begin_map("newHeads", 3)?;
        while self.next(&mut seq)? {
            match self.map_key("newHeads", 4)? {
                Some("heads") => {
                    once(&mut seen_heads, HEADS)?;
                    if self.present()? {
                        heads = Some(self.text_array(HEADS, 4, self.limits.max_heads)?);
                    }
                }
                Some("timestamp") => {
                    once(&mut seen_timestamp, TIMESTAMP)?;
                    if self.present()? {
                        timestamp = Some(self.js_integer(TIMESTAMP)?);
                    }
                }
                _ => self.skip("newHeads", 4)?,
            }
        }
        let missing = |field| DecodeError::MissingField {
            msg_type: ty,
            field,
        };
        Ok(RemoteHeads {
            heads: heads.ok_or_else(|| missing(HEADS))?,
            timestamp: timestamp.ok_or_else(|| missing(TIMESTAMP))?,
        })
    }
}

/// Marks a key of a nested map as seen, failing if it was seen before.
fn once(seen: &mut bool, field: &'static str) -> Result<(), DecodeError> {
    if std::mem::replace(seen, true) {
        Err(DecodeError::DuplicateField { field })
    } else {
        Ok(())
    }
}
