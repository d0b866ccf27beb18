//! The RFC 8785 canonicaliser (`canonical`): for any JSON value it accepts, the canonical
//! bytes parse back to an equal value (numbers compared as the doubles JCS makes of them),
//! and canonicalising them again gives the same bytes.

#![no_main]

use fieldsync_shared::canonical::to_canonical_bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Equal as JSON values, numbers as IEEE 754 doubles (JCS prints `1.0` as `1`; -0 as 0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(first) = to_canonical_bytes(&value) else {
        return;
    };
    let reparsed: Value = serde_json::from_slice(&first).unwrap_or_else(|e| {
        panic!(
            "canonical output is not JSON ({e}): {}",
            String::from_utf8_lossy(&first)
        )
    });
    assert!(
        same(&value, &reparsed),
        "canonical output parses to another value: {}",
        String::from_utf8_lossy(&first)
    );
    let second = to_canonical_bytes(&reparsed)
        .unwrap_or_else(|e| panic!("canonical output has no canonical form: {e}"));
    assert_eq!(
        first,
        second,
        "canonicalising twice differs: {} vs {}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
});
