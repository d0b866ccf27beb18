use std::collections::BTreeMap;
use std::convert::Infallible;

use minicbor::Encoder;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::*;

/// A CBOR value, written with minicbor's encoder, so the tests build frames independently of
/// our own writer (the way cbor-x or a hand-made hostile peer would).
#[derive(Debug, Clone)]
enum V {
    T(String),
    B(Vec<u8>),
    U(u64),
    I(i64),
    F(f64),
    Bool(bool),
    Null,
    Undef,
    A(Vec<V>),
    /// An array of indefinite length.
    AIndef(Vec<V>),
    M(Vec<(V, V)>),
    /// A map of indefinite length.
    MIndef(Vec<(V, V)>),
    Tag(u64, Box<V>),
}

fn t(s: &str) -> V {
    V::T(s.to_owned())
}

fn obj(fields: &[(&str, V)]) -> V {
    V::M(fields.iter().map(|(k, v)| (t(k), v.clone())).collect())
}

fn write(e: &mut Encoder<Vec<u8>>, v: &V) -> Result<(), minicbor::encode::Error<Infallible>> {
    match v {
        V::T(s) => e.str(s).map(drop),
        V::B(b) => e.bytes(b).map(drop),
        V::U(n) => e.u64(*n).map(drop),
        V::I(n) => e.i64(*n).map(drop),
        V::F(f) => e.f64(*f).map(drop),
        V::Bool(b) => e.bool(*b).map(drop),
        V::Null => e.null().map(drop),
        V::Undef => e.undefined().map(drop),
        V::A(items) => {
            e.array(items.len() as u64)?;
            items.iter().try_for_each(|i| write(e, i))
        }
        V::AIndef(items) => {
            e.begin_array()?;
            items.iter().try_for_each(|i| write(e, i))?;
            e.end().map(drop)
        }
        V::M(entries) | V::MIndef(entries) => {
            if matches!(v, V::M(_)) {
                e.map(entries.len() as u64)?;
            } else {
                e.begin_map()?;
            }
            for (k, val) in entries {
                write(e, k)?;
                write(e, val)?;
            }
            if matches!(v, V::MIndef(_)) {
                e.end()?;
            }
            Ok(())
        }
        V::Tag(tag, inner) => {
            e.tag(minicbor::data::Tag::new(*tag))?;
            write(e, inner)
        }
    }
}

fn cbor(v: &V) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    write(&mut e, v).expect("writing to a Vec cannot fail");
    e.into_writer()
}

fn dec(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode(bytes, &Limits::default())
}

const DOC: &str = "46VKE55UYzfMe1TpyDiEzM3CoTru";

fn doc_id() -> DocumentId {
    DOC.parse().expect("fixture document id")
}

/// The fields of a well-formed `sync`, for tests that break one thing at a time.
fn sync_fields() -> Vec<(&'static str, V)> {
    vec![
        ("type", t("sync")),
        ("senderId", t("client-1")),
        ("targetId", t("server-1")),
        ("documentId", t(DOC)),
        ("data", V::B(vec![0x42, 0, 0, 0, 0])),
    ]
}

fn with(fields: &[(&'static str, V)], key: &'static str, value: V) -> V {
    let mut fields = fields.to_vec();
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
    obj(&fields)
}

fn without(fields: &[(&'static str, V)], key: &str) -> V {
    let fields: Vec<_> = fields.iter().filter(|(k, _)| *k != key).cloned().collect();
    obj(&fields)
}

fn sample_messages() -> Vec<Message> {
    let peer = |s: &str| PeerId::from(s);
    vec![
        Message::Join(JoinMessage {
            sender_id: peer("tech-device-7"),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: PeerMetadata {
                storage_id: Some("3760df37-a4c6-4f66-9ecd-732039a9385d".into()),
                is_ephemeral: Some(false),
            },
        }),
        Message::Peer(PeerMessage {
            sender_id: peer("branch-north"),
            target_id: peer("tech-device-7"),
            selected_protocol_version: PROTOCOL_VERSION.into(),
            peer_metadata: PeerMetadata::default(),
        }),
        Message::Error(ErrorMessage {
            sender_id: Some(peer("branch-north")),
            target_id: None,
            message: "unsupported protocol version".into(),
        }),
        Message::Leave(LeaveMessage {
            sender_id: peer("tech-device-7"),
        }),
        Message::Request(SyncMessage {
            sender_id: peer("tech-device-7"),
            target_id: peer("branch-north"),
            document_id: doc_id(),
            data: vec![0x42, 0, 0, 1, 0, 0, 0],
        }),
        Message::Sync(SyncMessage {
            sender_id: peer("branch-north"),
            target_id: peer("tech-device-7"),
            document_id: DocumentId::random(),
            data: vec![0x43; 300],
        }),
        Message::DocUnavailable(DocUnavailableMessage {
            sender_id: peer("branch-north"),
            target_id: peer("tech-device-7"),
            document_id: doc_id(),
        }),
        Message::Ephemeral(EphemeralMessage {
            sender_id: peer("tech-device-8"),
            target_id: peer("tech-device-7"),
            count: 5_000_000_000,
            session_id: "k2j3h4".into(),
            document_id: doc_id(),
            data: vec![0xa1, 0x61, 0x78, 0x01],
        }),
        Message::RemoteSubscriptionChange(RemoteSubscriptionChangeMessage {
            sender_id: peer("tech-device-7"),
            target_id: peer("branch-north"),
            add: Some(vec!["s-1".into(), "s-2".into()]),
            remove: None,
        }),
        Message::RemoteHeadsChanged(RemoteHeadsChangedMessage {
            sender_id: peer("branch-north"),
            target_id: peer("tech-device-7"),
            document_id: doc_id(),
            new_heads: BTreeMap::from([(
                StorageId::from("s-2"),
                RemoteHeads {
                    heads: vec!["2v5iQpwarG1MDUpMsxq22oaxt5JN5bdDqY3zF4Ce6qWcF64vb3".into()],
                    timestamp: 1_752_230_000_123,
                },
            )]),
        }),
    ]
}

#[test]
fn every_message_type_round_trips() {
    let samples = sample_messages();
    let types: Vec<_> = samples.iter().map(Message::message_type).collect();
    assert_eq!(types, MessageType::ALL, "one sample per message type");
    for message in samples {
        let bytes = encode(&message);
        assert_eq!(dec(&bytes), Ok(message.clone()), "{}", hex::encode(&bytes));
    }
}

#[test]
fn message_types_have_their_wire_names() {
    for ty in MessageType::ALL {
        assert_eq!(MessageType::from_wire(ty.as_str()), Some(ty));
    }
    assert_eq!(MessageType::from_wire("Sync"), None);
}

#[test]
fn numbers_are_written_as_cbor_x_writes_them() {
    let Message::RemoteHeadsChanged(mut m) = sample_messages().swap_remove(9) else {
        panic!("sample 9 is remote-heads-changed");
    };
    // Date.now() is above u32::MAX, so cbor-x writes a float64, and JavaScript would read a
    // 64-bit CBOR integer as a BigInt.
    let bytes = encode(&Message::RemoteHeadsChanged(m.clone()));
    let float = [&[0xfb][..], &1_752_230_000_123f64.to_be_bytes()].concat();
    assert!(bytes.windows(9).any(|w| w == float.as_slice()));
    // Small numbers are plain unsigned integers.
    if let Some(heads) = m.new_heads.values_mut().next() {
        heads.timestamp = 7;
    }
    let bytes = encode(&Message::RemoteHeadsChanged(m));
    assert!(bytes.windows(10).any(|w| w == b"timestamp\x07"));
}

/// Frames as the JavaScript automerge-repo 2.5.6 puts them on the wire: each is the hex of
/// `cbor.encode(message)` from `@automerge/automerge-repo/slim` (cbor-x with
/// `tagUint8Array: false, useRecords: false`), for messages shaped as its WebSocket adapters
/// and Repo build them; the sync data comes from `@automerge/automerge` 3.5.0.
mod js {
    pub const JOIN: &str = "b900046474797065646a6f696e6873656e64657249646b636c69656e742d316132626c706565724d65746164617461b900026973746f726167654964782433373630646633372d613463362d346636362d396563642d3733323033396139333835646b6973457068656d6572616cf47819737570706f7274656450726f746f636f6c56657273696f6e73816131";
    /// A join whose `peerMetadata.storageId` is `undefined`.
    pub const JOIN_NO_STORAGE: &str = "b900046474797065646a6f696e6873656e64657249646b636c69656e742d316132626c706565724d65746164617461b900026973746f726167654964f76b6973457068656d6572616cf57819737570706f7274656450726f746f636f6c56657273696f6e73816131";
    pub const PEER: &str = "b90005647479706564706565726873656e6465724964687365727665722d396c706565724d65746164617461b900026973746f72616765496463732d316b6973457068656d6572616cf47773656c656374656450726f746f636f6c56657273696f6e61316874617267657449646b636c69656e742d31613262";
    /// A peer from a server adapter connected without metadata: `peerMetadata: undefined`.
    pub const PEER_UNDEFINED_METADATA: &str = "b90005647479706564706565726873656e6465724964687365727665722d396c706565724d65746164617461f77773656c656374656450726f746f636f6c56657273696f6e61316874617267657449646b636c69656e742d31613262";
    pub const REQUEST: &str = "b9000564747970656772657175657374687461726765744964687365727665722d396a646f63756d656e744964781c3436564b45353555597a664d65315470794469457a4d33436f54727564646174614a420000010000000202846873656e64657249646b636c69656e742d31613262";
    pub const SYNC: &str = "b9000564747970656473796e636874617267657449646b636c69656e742d316132626464617461582f4201fc393f7c0995a86f565d53e13b836d8362de11c95ffd2bf5993f6b55c47fbfa400010005010a073012000202846a646f63756d656e744964781c3436564b45353555597a664d65315470794469457a4d33436f5472756873656e6465724964687365727665722d39";
    pub const DOC_UNAVAILABLE: &str = "b9000464747970656f646f632d756e617661696c61626c656a646f63756d656e744964781c3436564b45353555597a664d65315470794469457a4d33436f5472756874617267657449646b636c69656e742d316132626873656e6465724964687365727665722d39";
    pub const EPHEMERAL: &str = "b90007647479706569657068656d6572616c687461726765744964687365727665722d396a646f63756d656e744964781c3436564b45353555597a664d65315470794469457a4d33436f54727564646174614bb9000166637572736f720365636f756e74016973657373696f6e4964666b326a3368346873656e64657249646b636c69656e742d31613262";
    /// `remove: undefined`, as the Repo sends when it only adds.
    pub const SUBSCRIPTION_CHANGE: &str = "b900056474797065781a72656d6f74652d737562736372697074696f6e2d6368616e6765687461726765744964687365727665722d39636164648163732d326672656d6f7665f76873656e64657249646b636c69656e742d31613262";
    /// Heads as bs58check (automerge-repo 2.x), the timestamp as cbor-x's float64.
    pub const REMOTE_HEADS: &str = "b9000564747970657472656d6f74652d68656164732d6368616e6765646874617267657449646b636c69656e742d316132626a646f63756d656e744964781c3436564b45353555597a664d65315470794469457a4d33436f547275686e65774865616473b9000163732d32b9000265686561647381783232763569517077617247314d4455704d73787132326f617874354a4e356264447159337a46344365367157634636347662336974696d657374616d70fb42797f90bf5fb0006873656e6465724964687365727665722d39";
    pub const ERROR: &str = "b900046474797065656572726f726873656e6465724964687365727665722d39676d657373616765781c756e737570706f727465642070726f746f636f6c2076657273696f6e6874617267657449646b636c69656e742d31613262";
    /// The hex head that the bs58check head in `REMOTE_HEADS` stands for.
    pub const HEAD_HEX: &str = "fc393f7c0995a86f565d53e13b836d8362de11c95ffd2bf5993f6b55c47fbfa4";
}

fn js(hex_frame: &str) -> Message {
    let bytes = hex::decode(hex_frame).expect("fixture hex");
    let message = dec(&bytes).expect("JavaScript frame decodes");
    // What we decode, we can write back and read again unchanged.
    assert_eq!(dec(&encode(&message)), Ok(message.clone()));
    message
}

#[test]
fn decodes_frames_written_by_javascript_automerge_repo() {
    let client = PeerId::from("client-1a2b");
    let server = PeerId::from("server-9");

    let Message::Join(join) = js(js::JOIN) else {
        panic!("join")
    };
    assert_eq!(join.sender_id, client);
    assert_eq!(join.supported_protocol_versions, vec!["1".to_owned()]);
    assert_eq!(join.select_protocol_version(), Some("1"));
    assert_eq!(
        join.peer_metadata,
        PeerMetadata {
            storage_id: Some("3760df37-a4c6-4f66-9ecd-732039a9385d".into()),
            is_ephemeral: Some(false),
        }
    );

    let Message::Join(join) = js(js::JOIN_NO_STORAGE) else {
        panic!("join")
    };
    assert_eq!(join.peer_metadata.storage_id, None);
    assert_eq!(join.peer_metadata.is_ephemeral, Some(true));

    let Message::Peer(peer) = js(js::PEER) else {
        panic!("peer")
    };
    assert_eq!((&peer.sender_id, &peer.target_id), (&server, &client));
    assert_eq!(peer.selected_protocol_version, "1");
    assert_eq!(peer.peer_metadata.storage_id, Some("s-1".into()));

    let Message::Peer(peer) = js(js::PEER_UNDEFINED_METADATA) else {
        panic!("peer")
    };
    assert_eq!(peer.peer_metadata, PeerMetadata::default());

    let Message::Request(request) = js(js::REQUEST) else {
        panic!("request")
    };
    assert_eq!(request.document_id, doc_id());
    assert_eq!(
        request.data,
        hex::decode("42000001000000020284").expect("hex")
    );

    let Message::Sync(sync) = js(js::SYNC) else {
        panic!("sync")
    };
    assert_eq!((&sync.sender_id, &sync.target_id), (&server, &client));
    assert_eq!(sync.data.len(), 47);
    assert_eq!(sync.data[0], 0x42);

    let Message::DocUnavailable(unavailable) = js(js::DOC_UNAVAILABLE) else {
        panic!("unavailable")
    };
    assert_eq!(unavailable.document_id, doc_id());

    let Message::Ephemeral(ephemeral) = js(js::EPHEMERAL) else {
        panic!("ephemeral")
    };
    assert_eq!(ephemeral.count, 1);
    assert_eq!(ephemeral.session_id, SessionId::from("k2j3h4"));
    assert_eq!(
        ephemeral.data,
        hex::decode("b9000166637572736f7203").expect("hex")
    );

    let Message::RemoteSubscriptionChange(sub) = js(js::SUBSCRIPTION_CHANGE) else {
        panic!("sub")
    };
    assert_eq!(sub.add, Some(vec![StorageId::from("s-2")]));
    assert_eq!(sub.remove, None);

    let Message::RemoteHeadsChanged(heads) = js(js::REMOTE_HEADS) else {
        panic!("heads")
    };
    let entry = &heads.new_heads[&StorageId::from("s-2")];
    assert_eq!(entry.timestamp, 1_752_230_000_123);
    let head = parse_head(&entry.heads[0]).expect("bs58check head");
    assert_eq!(hex::encode(head.as_ref()), js::HEAD_HEX);
    assert_eq!(encode_head(&head), entry.heads[0]);
    assert_eq!(parse_head(js::HEAD_HEX), Ok(head));

    let Message::Error(error) = js(js::ERROR) else {
        panic!("error")
    };
    assert_eq!(error.message, "unsupported protocol version");
    assert_eq!(error.sender_id, Some(server));
    assert_eq!(error.target_id, Some(client));
}

#[test]
fn decodes_a_generic_map_built_the_way_cbor_x_builds_it() {
    // Field order differs from ours, an unknown field is present, and `data` carries the
    // Uint8Array tag that plain cbor-x adds.
    let frame = obj(&[
        ("data", V::Tag(64, Box::new(V::B(vec![0x42, 0, 0, 0, 0])))),
        ("documentId", t(DOC)),
        ("targetId", t("server-1")),
        ("trace", obj(&[("hops", V::A(vec![V::U(1), V::F(2.5)]))])),
        ("type", t("request")),
        ("senderId", t("client-1")),
    ]);
    let Ok(Message::Request(m)) = dec(&cbor(&frame)) else {
        panic!("request decodes");
    };
    assert_eq!(m.data, vec![0x42, 0, 0, 0, 0]);
    assert_eq!(m.sender_id, PeerId::from("client-1"));
}

#[test]
fn accepts_indefinite_lengths_the_readme_alias_and_integral_floats() {
    let frame = V::MIndef(vec![
        (t("type"), t("join")),
        (t("senderId"), t("c")),
        (
            t("supportedProtocolVersions"),
            V::AIndef(vec![t("2"), t("1")]),
        ),
        (
            t("metadata"),
            obj(&[("storageId", t("s")), ("isEphemeral", V::Null)]),
        ),
    ]);
    let Ok(Message::Join(join)) = dec(&cbor(&frame)) else {
        panic!("join decodes");
    };
    assert_eq!(
        join.supported_protocol_versions,
        vec!["2".to_owned(), "1".to_owned()]
    );
    assert_eq!(join.peer_metadata.storage_id, Some("s".into()));
    assert_eq!(join.peer_metadata.is_ephemeral, None);

    let ephemeral = |count: V| {
        obj(&[
            ("type", t("ephemeral")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("count", count),
            ("sessionId", t("s")),
            ("documentId", t(DOC)),
            ("data", V::B(vec![0xf6])),
        ])
    };
    let count = |frame: &V| match dec(&cbor(frame)) {
        Ok(Message::Ephemeral(m)) => Ok(m.count),
        Ok(other) => panic!("decoded as {other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(count(&ephemeral(V::F(42.0))), Ok(42));
    // A half-precision 3.0, as a CBOR library with preferred float encoding writes it.
    let mut half = cbor(&ephemeral(V::U(0)));
    let at = half
        .windows(6)
        .position(|w| w == b"count\x00")
        .expect("count")
        + 5;
    half.splice(at..at + 1, [0xf9, 0x42, 0x00]);
    assert!(matches!(dec(&half), Ok(Message::Ephemeral(m)) if m.count == 3));
    let wrong = Err(DecodeError::WrongType {
        field: "count",
        expected: "a non-negative integer of at most 2^53 - 1",
    });
    assert_eq!(count(&ephemeral(V::F(1.5))), wrong);
    assert_eq!(count(&ephemeral(V::F(f64::NAN))), wrong);
    assert_eq!(count(&ephemeral(V::I(-1))), wrong);
    assert_eq!(count(&ephemeral(V::U(MAX_SAFE_INTEGER + 1))), wrong);
    assert_eq!(count(&ephemeral(t("1"))), wrong);
    assert_eq!(
        count(&ephemeral(V::U(MAX_SAFE_INTEGER))),
        Ok(MAX_SAFE_INTEGER)
    );
}

#[test]
fn ignores_unknown_fields_but_checks_them() {
    let fields = sync_fields();
    let extra = with(
        &fields,
        "x-client",
        obj(&[("v", V::A(vec![t("a"), V::Bool(true)]))]),
    );
    assert!(matches!(dec(&cbor(&extra)), Ok(Message::Sync(_))));

    // A non-text key is skipped like an unknown field.
    let mut entries = match obj(&fields) {
        V::M(entries) => entries,
        _ => unreachable!(),
    };
    entries.push((V::U(7), V::Null));
    assert!(matches!(dec(&cbor(&V::M(entries))), Ok(Message::Sync(_))));

    // An unknown field still may not nest too deep.
    let mut deep = V::U(0);
    for _ in 0..10 {
        deep = V::A(vec![deep]);
    }
    let too_deep = with(&fields, "x-deep", deep);
    assert_eq!(
        dec(&cbor(&too_deep)),
        Err(DecodeError::TooDeep { limit: 8 })
    );
}

#[test]
fn rejects_malformed_cbor() {
    // 0x1c is a reserved additional-information value.
    assert!(matches!(
        dec(&[0xa1, 0x64, b't', b'y', b'p', b'e', 0x1c]),
        Err(DecodeError::Cbor(_))
    ));
    // A break byte where a value should be.
    assert!(matches!(
        dec(&[0xa1, 0x61, b'x', 0xff]),
        Err(DecodeError::Cbor(_))
    ));
    // Text that is not UTF-8.
    assert!(matches!(
        dec(&[0xa1, 0x61, b'x', 0x62, 0xc3, 0x28]),
        Err(DecodeError::Cbor(_))
    ));
    // Indefinite-length text, which cbor-x never writes.
    let frame = [0xa1, 0x61, b'x', 0x7f, 0x61, b'a', 0xff];
    assert!(matches!(dec(&frame), Err(DecodeError::Cbor(_))));
    assert_eq!(dec(&cbor(&V::A(vec![]))), Err(DecodeError::NotAMap));
    assert_eq!(dec(&cbor(&t("sync"))), Err(DecodeError::NotAMap));
}

#[test]
fn rejects_truncated_input_at_every_length() {
    let bytes = encode(&sample_messages()[9]);
    for len in 0..bytes.len() {
        assert_eq!(
            dec(&bytes[..len]),
            Err(DecodeError::Truncated),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn rejects_declared_lengths_that_the_input_cannot_hold() {
    // A map claiming 60,000 entries in a few bytes fails before anything is collected.
    let frame = [0xb9, 0xea, 0x60, 0x64, b't', b'y', b'p', b'e'];
    let limits = Limits {
        max_array_items: 100_000,
        ..Limits::default()
    };
    assert_eq!(decode(&frame, &limits), Err(DecodeError::Truncated));
    // A byte string claiming 2^63 bytes.
    let mut frame = vec![0xa1, 0x64, b'd', b'a', b't', b'a', 0x5b];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(dec(&frame), Err(DecodeError::Truncated));
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = encode(&sample_messages()[3]);
    bytes.extend_from_slice(&[0xf6, 0xf6]);
    assert_eq!(dec(&bytes), Err(DecodeError::TrailingBytes { count: 2 }));
}

#[test]
fn rejects_too_large_before_parsing() {
    let limits = Limits {
        max_message_bytes: 16,
        ..Limits::default()
    };
    let bytes = vec![0xff; 17];
    assert_eq!(
        decode(&bytes, &limits),
        Err(DecodeError::TooLarge {
            size: 17,
            limit: 16
        })
    );
    let default_limit = Limits::default().max_message_bytes;
    assert_eq!(default_limit, 8 * 1024 * 1024);
    let big = vec![0u8; default_limit + 1];
    assert!(matches!(dec(&big), Err(DecodeError::TooLarge { .. })));
}

#[test]
fn rejects_too_deep_nesting_including_tag_chains() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let fields = sync_fields();
    let ok = with(&fields, "x", V::A(vec![V::A(vec![])]));
    assert!(decode(&cbor(&ok), &limits).is_ok());
    let deep = with(&fields, "x", V::A(vec![V::A(vec![V::A(vec![])])]));
    assert_eq!(
        decode(&cbor(&deep), &limits),
        Err(DecodeError::TooDeep { limit: 3 })
    );
    let mut tags = V::Null;
    for _ in 0..3 {
        tags = V::Tag(1, Box::new(tags));
    }
    let tagged = with(&fields, "x", tags);
    assert_eq!(
        decode(&cbor(&tagged), &limits),
        Err(DecodeError::TooDeep { limit: 3 })
    );
    // A megabyte of nested arrays is refused at the limit, without deep recursion.
    let mut frame = vec![0xa1, 0x61, b'x'];
    frame.extend(std::iter::repeat_n(0x81, 1 << 20));
    frame.push(0x00);
    assert_eq!(dec(&frame), Err(DecodeError::TooDeep { limit: 8 }));
}

#[test]
fn rejects_unknown_and_missing_types() {
    let fields = sync_fields();
    let unknown = with(&fields, "type", t("teleport"));
    assert_eq!(
        dec(&cbor(&unknown)),
        Err(DecodeError::UnknownType("teleport".into()))
    );
    let long = with(&fields, "type", t(&"é".repeat(100)));
    match dec(&cbor(&long)) {
        Err(DecodeError::UnknownType(echoed)) => assert!(echoed.len() <= 64),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        dec(&cbor(&without(&fields, "type"))),
        Err(DecodeError::MissingType)
    );
    assert_eq!(
        dec(&cbor(&with(&fields, "type", V::Undef))),
        Err(DecodeError::MissingType)
    );
    assert_eq!(
        dec(&cbor(&with(&fields, "type", V::U(1)))),
        Err(DecodeError::WrongType {
            field: "type",
            expected: "text"
        })
    );
}

#[test]
fn rejects_missing_required_fields() {
    let fields = sync_fields();
    for field in ["senderId", "targetId", "documentId", "data"] {
        let expected = Err(DecodeError::MissingField {
            msg_type: MessageType::Sync,
            field,
        });
        assert_eq!(dec(&cbor(&without(&fields, field))), expected);
        // `undefined` and `null` count as absent.
        assert_eq!(dec(&cbor(&with(&fields, field, V::Undef))), expected);
        assert_eq!(dec(&cbor(&with(&fields, field, V::Null))), expected);
    }
    let join = obj(&[("type", t("join")), ("senderId", t("c"))]);
    assert_eq!(
        dec(&cbor(&join)),
        Err(DecodeError::MissingField {
            msg_type: MessageType::Join,
            field: "supportedProtocolVersions"
        })
    );
    let heads = obj(&[
        ("type", t("remote-heads-changed")),
        ("senderId", t("a")),
        ("targetId", t("b")),
        ("documentId", t(DOC)),
        ("newHeads", obj(&[("s", obj(&[("heads", V::A(vec![]))]))])),
    ]);
    assert_eq!(
        dec(&cbor(&heads)),
        Err(DecodeError::MissingField {
            msg_type: MessageType::RemoteHeadsChanged,
            field: "newHeads.timestamp"
        })
    );
    let error = obj(&[("type", t("error"))]);
    assert_eq!(
        dec(&cbor(&error)),
        Err(DecodeError::MissingField {
            msg_type: MessageType::Error,
            field: "message"
        })
    );
}

#[test]
fn rejects_wrong_field_types() {
    let fields = sync_fields();
    let cases = [
        ("senderId", V::U(7), "text"),
        ("targetId", V::B(b"server-1".to_vec()), "text"),
        ("documentId", V::A(vec![]), "text"),
        ("data", t("QgAAAA=="), "a byte string"),
        ("data", V::Tag(2, Box::new(V::B(vec![1]))), "a byte string"),
        ("data", V::A(vec![V::U(0x42)]), "a byte string"),
    ];
    for (field, value, expected) in cases {
        assert_eq!(
            dec(&cbor(&with(&fields, field, value))),
            Err(DecodeError::WrongType { field, expected }),
            "{field}"
        );
    }
    let join = |versions: V, meta: V| {
        cbor(&obj(&[
            ("type", t("join")),
            ("senderId", t("c")),
            ("supportedProtocolVersions", versions),
            ("peerMetadata", meta),
        ]))
    };
    assert_eq!(
        dec(&join(t("1"), obj(&[]))),
        Err(DecodeError::WrongType {
            field: "supportedProtocolVersions",
            expected: "an array of text"
        })
    );
    assert_eq!(
        dec(&join(V::A(vec![V::U(1)]), obj(&[]))),
        Err(DecodeError::WrongType {
            field: "supportedProtocolVersions",
            expected: "text"
        })
    );
    assert_eq!(
        dec(&join(V::A(vec![t("1")]), t("meta"))),
        Err(DecodeError::WrongType {
            field: "peerMetadata",
            expected: "a map"
        })
    );
    assert_eq!(
        dec(&join(V::A(vec![t("1")]), obj(&[("isEphemeral", t("no"))]))),
        Err(DecodeError::WrongType {
            field: "peerMetadata.isEphemeral",
            expected: "a boolean"
        })
    );
    let heads = |new_heads: V| {
        cbor(&obj(&[
            ("type", t("remote-heads-changed")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("documentId", t(DOC)),
            ("newHeads", new_heads),
        ]))
    };
    assert!(matches!(
        dec(&heads(V::A(vec![]))),
        Err(DecodeError::WrongType {
            field: "newHeads",
            ..
        })
    ));
    assert!(matches!(
        dec(&heads(V::M(vec![(V::U(1), obj(&[]))]))),
        Err(DecodeError::WrongType {
            field: "newHeads",
            ..
        })
    ));
    let entry = obj(&[("heads", V::A(vec![V::B(vec![1])])), ("timestamp", V::U(1))]);
    assert_eq!(
        dec(&heads(obj(&[("s", entry)]))),
        Err(DecodeError::WrongType {
            field: "newHeads.heads",
            expected: "text"
        })
    );
}

#[test]
fn rejects_duplicate_fields() {
    let mut fields = sync_fields();
    fields.push(("senderId", t("someone-else")));
    assert_eq!(
        dec(&cbor(&obj(&fields))),
        Err(DecodeError::DuplicateField { field: "senderId" })
    );
    let meta = obj(&[("storageId", t("a")), ("storageId", t("b"))]);
    let join = obj(&[
        ("type", t("join")),
        ("senderId", t("c")),
        ("supportedProtocolVersions", V::A(vec![t("1")])),
        ("peerMetadata", meta),
    ]);
    assert_eq!(
        dec(&cbor(&join)),
        Err(DecodeError::DuplicateField {
            field: "peerMetadata.storageId"
        })
    );
}

#[test]
fn rejects_bad_document_ids() {
    let fields = sync_fields();
    let mut bad_checksum = DOC.to_owned().into_bytes();
    bad_checksum[3] = if bad_checksum[3] == b'2' { b'3' } else { b'2' };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ascii");
    let short = bs58::encode([7u8; 8]).with_check().into_string();
    let uuid = "3760df37-a4c6-4f66-9ecd-732039a9385d";
    for id in [bad_checksum.as_str(), short.as_str(), uuid, ""] {
        let result = dec(&cbor(&with(&fields, "documentId", t(id))));
        assert!(
            matches!(result, Err(DecodeError::BadDocumentId(_))),
            "{id}: {result:?}"
        );
    }
}

#[test]
fn enforces_string_and_count_limits() {
    let fields = sync_fields();
    let short_strings = Limits {
        max_string_len: 8,
        ..Limits::default()
    };
    assert_eq!(
        decode(
            &cbor(&with(&fields, "senderId", t("123456789"))),
            &short_strings
        ),
        Err(DecodeError::TooLong {
            field: "senderId",
            len: 9,
            limit: 8
        })
    );

    let few_items = Limits {
        max_array_items: 5,
        ..Limits::default()
    };
    let sub = |add: V| {
        cbor(&obj(&[
            ("type", t("remote-subscription-change")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("add", add),
        ]))
    };
    let items = |n: usize| (0..n).map(|i| t(&i.to_string())).collect::<Vec<_>>();
    let too_many = Err(DecodeError::TooManyItems {
        field: "add",
        limit: 5,
    });
    assert_eq!(decode(&sub(V::A(items(6))), &few_items), too_many);
    assert_eq!(decode(&sub(V::AIndef(items(6))), &few_items), too_many);
    assert!(decode(&sub(V::AIndef(items(5))), &few_items).is_ok());
    assert!(decode(&sub(V::A(items(5))), &few_items).is_ok());
    // The message map itself counts, unknown fields included.
    let crowded = with(&fields, "x1", V::Null);
    assert_eq!(
        decode(&cbor(&crowded), &few_items),
        Err(DecodeError::TooManyItems {
            field: "message",
            limit: 5
        })
    );

    let heads = cbor(&obj(&[
        ("type", t("remote-heads-changed")),
        ("senderId", t("a")),
        ("targetId", t("b")),
        ("documentId", t(DOC)),
        (
            "newHeads",
            obj(&[(
                "s",
                obj(&[("heads", V::A(items(3))), ("timestamp", V::U(1))]),
            )]),
        ),
    ]));
    let few_heads = Limits {
        max_heads: 2,
        ..Limits::default()
    };
    assert_eq!(
        decode(&heads, &few_heads),
        Err(DecodeError::TooManyItems {
            field: "newHeads.heads",
            limit: 2
        })
    );
    assert!(dec(&heads).is_ok());
}

#[test]
fn error_codes_are_distinct_and_short() {
    let errors = [
        DecodeError::TooLarge { size: 2, limit: 1 },
        DecodeError::TooDeep { limit: 1 },
        DecodeError::Truncated,
        DecodeError::TrailingBytes { count: 1 },
        DecodeError::Cbor(String::new()),
        DecodeError::NotAMap,
        DecodeError::MissingType,
        DecodeError::UnknownType(String::new()),
        DecodeError::MissingField {
            msg_type: MessageType::Sync,
            field: "data",
        },
        DecodeError::DuplicateField { field: "data" },
        DecodeError::WrongType {
            field: "data",
            expected: "bytes",
        },
        DecodeError::TooLong {
            field: "data",
            len: 2,
            limit: 1,
        },
        DecodeError::TooManyItems {
            field: "add",
            limit: 1,
        },
        DecodeError::BadDocumentId(crate::ids::IdError::NotBs58Check(String::new())),
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(DecodeError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert!(
        codes
            .iter()
            .all(|c| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
}

#[test]
fn selects_version_one_or_nothing() {
    assert_eq!(select_protocol_version(&["1"]), Some("1"));
    assert_eq!(select_protocol_version(&["2", "1"]), Some("1"));
    assert_eq!(select_protocol_version(&["2"]), None);
    assert_eq!(select_protocol_version::<&str>(&[]), None);
}

#[test]
fn heads_parse_from_both_encodings() {
    let hash = automerge::ChangeHash([9; 32]);
    assert_eq!(parse_head(&encode_head(&hash)), Ok(hash));
    assert_eq!(parse_head(&hex::encode([9u8; 32])), Ok(hash));
    assert!(parse_head("zz").is_err());
    assert!(parse_head(&bs58::encode([9u8; 31]).with_check().into_string()).is_err());
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn js_integer() -> impl Strategy<Value = u64> {
    prop_oneof![0..=u64::from(u32::MAX), 0..=MAX_SAFE_INTEGER]
}

fn peer_metadata() -> impl Strategy<Value = PeerMetadata> {
    (
        proptest::option::of(text()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(s, e)| PeerMetadata {
            storage_id: s.map(StorageId::from),
            is_ephemeral: e,
        })
}

fn storage_ids() -> impl Strategy<Value = Option<Vec<StorageId>>> {
    proptest::option::of(vec(text().prop_map(StorageId::from), 0..4))
}

fn arb_message() -> impl Strategy<Value = Message> {
    let peer = || text().prop_map(PeerId::from);
    let doc = || any::<[u8; 16]>().prop_map(DocumentId::from_bytes);
    let data = || vec(any::<u8>(), 0..48);
    let sync = || {
        (peer(), peer(), doc(), data()).prop_map(|(s, t, d, data)| SyncMessage {
            sender_id: s,
            target_id: t,
            document_id: d,
            data,
        })
    };
    prop_oneof![
        (peer(), vec(text(), 0..3), peer_metadata()).prop_map(|(s, v, m)| {
            Message::Join(JoinMessage {
                sender_id: s,
                supported_protocol_versions: v,
                peer_metadata: m,
            })
        }),
        (peer(), peer(), text(), peer_metadata()).prop_map(|(s, t, v, m)| {
            Message::Peer(PeerMessage {
                sender_id: s,
                target_id: t,
                selected_protocol_version: v,
                peer_metadata: m,
            })
        }),
        (
            proptest::option::of(peer()),
            proptest::option::of(peer()),
            text()
        )
            .prop_map(|(s, t, m)| Message::Error(ErrorMessage {
                sender_id: s,
                target_id: t,
                message: m,
            })),
        peer().prop_map(|s| Message::Leave(LeaveMessage { sender_id: s })),
        sync().prop_map(Message::Request),
        sync().prop_map(Message::Sync),
        (peer(), peer(), doc()).prop_map(|(s, t, d)| {
            Message::DocUnavailable(DocUnavailableMessage {
                sender_id: s,
                target_id: t,
                document_id: d,
            })
        }),
        (peer(), peer(), js_integer(), text(), doc(), data()).prop_map(
            |(s, t, count, session, d, data)| Message::Ephemeral(EphemeralMessage {
                sender_id: s,
                target_id: t,
                count,
                session_id: session.into(),
                document_id: d,
                data,
            })
        ),
        (peer(), peer(), storage_ids(), storage_ids()).prop_map(|(s, t, add, remove)| {
            Message::RemoteSubscriptionChange(RemoteSubscriptionChangeMessage {
                sender_id: s,
                target_id: t,
                add,
                remove,
            })
        }),
        (
            peer(),
            peer(),
            doc(),
            btree_map(
                text().prop_map(StorageId::from),
                (vec(text(), 0..3), js_integer())
                    .prop_map(|(heads, timestamp)| RemoteHeads { heads, timestamp }),
                0..3
            )
        )
            .prop_map(|(s, t, d, new_heads)| {
                Message::RemoteHeadsChanged(RemoteHeadsChangedMessage {
                    sender_id: s,
                    target_id: t,
                    document_id: d,
                    new_heads,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_messages_round_trip(message in arb_message()) {
        prop_assert_eq!(dec(&encode(&message)), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = dec(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        message in arb_message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = encode(&message);
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        let tight = Limits { max_depth: 3, max_string_len: 16, max_array_items: 4, max_heads: 1, ..Limits::default() };
        let _ = dec(&bytes);
        let _ = decode(&bytes, &tight);
    }
}
