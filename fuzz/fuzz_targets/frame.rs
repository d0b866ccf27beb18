//! The WebSocket frame decoder (`protocol::decode`): no panic on any bytes, and a frame it
//! accepts re-encodes (`protocol::encode`) to a frame that decodes to the same message.

#![no_main]

use fieldsync_fuzz::wire_limits;
use fieldsync_shared::protocol::{Limits, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode(data, &wire_limits()) else {
        return;
    };
    let _ = (
        message.message_type(),
        message.sender_id(),
        message.document_id(),
    );
    let again = encode(&message);
    match decode(&again, &Limits::default()) {
        Ok(back) => assert_eq!(back, message, "the re-encoded frame decodes differently"),
        Err(e) => panic!("a decoded message re-encodes to a frame that does not decode: {e}"),
    }
});
