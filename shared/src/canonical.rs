//! RFC 8785 JSON Canonicalization Scheme (JCS) and SHA-256 digests.
//!
//! Reports and acknowledgements are signed over these bytes, and head office recomputes them
//! from its own copy of a document, so every tier must produce byte-identical output for the
//! same value: object keys sorted by UTF-16 code units, no whitespace, strings escaped as
//! ECMAScript's `JSON.stringify` does, and numbers printed as ECMAScript's
//! `Number.prototype.toString` prints an IEEE 754 double.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use sha2::{Digest as _, Sha256};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("number {0} is not finite")]
    NonFiniteNumber(String),
    #[error("integer {0} cannot be held exactly by an IEEE 754 double, which JCS requires")]
    IntegerNotExact(String),
    #[error("cannot serialise to JSON: {0}")]
    Serialize(String),
    #[error("{0:?} is not a SHA-256 digest in hex")]
    BadDigest(String),
}

/// The canonical JSON text of `value`.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// The canonical JSON bytes of `value` (UTF-8).
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_canonical_string(value).map(String::into_bytes)
}

/// The canonical JSON bytes of the object `value` and where, within them, the canonical form
/// of its top-level member `member` lies (`None` when `value` is not an object or has no such
/// member). JCS is compositional, so those bytes are exactly `to_canonical_bytes(&value[member])`:
/// a verifier that needs both (a report's body for its signature, the body's content for its
/// digest) canonicalises once.
pub fn to_canonical_bytes_marking(
    value: &Value,
    member: &str,
) -> Result<(Vec<u8>, Option<std::ops::Range<usize>>), CanonicalError> {
    let mut out = String::new();
    let range = match value {
        Value::Object(map) => write_object(&mut out, map, Some(member))?,
        other => {
            write_value(&mut out, other)?;
            None
        }
    };
    Ok((out.into_bytes(), range))
}

mod ser;

/// The canonical JSON bytes of `value` as serde serialises it: exactly
/// `to_canonical_bytes(&serde_json::to_value(value)?)`, written straight from the value
/// rather than through a `Value` tree (issue 17: `ser`).
pub fn canonicalize<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut writer = ser::Jcs::default();
    value.serialize(&mut writer)?;
    Ok(writer.out.into_bytes())
}

/// SHA-256 of the canonical form of `value`.
pub fn digest_of<T: Serialize + ?Sized>(value: &T) -> Result<Digest, CanonicalError> {
    Ok(Digest::of(&canonicalize(value)?))
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            write_object(out, map, None)?;
        }
    }
    Ok(())
}

/// Writes `map` with its members sorted (RFC 8785 §3.2.3: by the UTF-16 code units of the
/// keys) and returns where the value of the member named `mark` lies in `out`, if asked and
/// present.
fn write_object(
    out: &mut String,
    map: &serde_json::Map<String, Value>,
    mark: Option<&str>,
) -> Result<Option<std::ops::Range<usize>>, CanonicalError> {
    let mut range = None;
    out.push('{');
    // Members already in order are written as they come (issue 17: serde_json's map keeps
    // them sorted by their names' bytes, which for ASCII names is the UTF-16 order, so most
    // objects are); the others are sorted first.
    let sorted: Vec<(&String, &Value)>;
    let entries: &mut dyn Iterator<Item = (&String, &Value)> = if in_ascii_order(map) {
        &mut map.iter()
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
        sorted = entries;
        &mut sorted.iter().copied()
    };
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        let start = out.len();
        write_value(out, item)?;
        if mark == Some(key.as_str()) {
            range = Some(start..out.len());
        }
    }
    out.push('}');
    Ok(range)
}

/// Whether `map`'s names come in strictly increasing order and are all ASCII (so that their
/// byte order is their UTF-16 order).
fn in_ascii_order(map: &serde_json::Map<String, Value>) -> bool {
    let mut names = map.keys();
    let Some(mut previous) = names.next() else {
        return true;
    };
    previous.is_ascii()
        && names.all(|name| {
            let increasing = name.is_ascii() && previous.as_bytes() < name.as_bytes();
            previous = name;
            increasing
        })
}

/// RFC 8785 §3.2.2.2: the escapes of `JSON.stringify`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs of characters that need no escape are copied as slices (issue 17: a report is
    // canonicalised several times, character by character was a good part of it). Every
    // escaped character is ASCII, so splitting at its byte keeps the rest valid UTF-8.
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0C => "\\f",
            b'\r' => "\\r",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// 2^53: every integer of smaller magnitude is held exactly by a double.
const EXACT_INTEGERS: i64 = 1 << 53;

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    // An integer a double holds exactly prints as its decimal digits in ECMAScript (below
    // 10^21 there is no exponent): written directly, without ryu's round trip.
    if let Some(i) = n
        .as_i64()
        .filter(|i| i.unsigned_abs() <= EXACT_INTEGERS as u64)
    {
        let _ = write!(out, "{i}");
        return Ok(());
    }
    let value = if let Some(i) = n.as_i64() {
        exact_integer(i as f64, i128::from(i), n)?
    } else if let Some(u) = n.as_u64() {
        exact_integer(u as f64, i128::from(u), n)?
    } else {
        n.as_f64()
            .ok_or_else(|| CanonicalError::NonFiniteNumber(n.to_string()))?
    };
    write_f64(out, value)
}

/// An integer is taken as the double it denotes only if nothing is lost: either the double
/// holds it exactly, or it is the very text JCS prints for that double (a large double such
/// as `1e+20`'s neighbours printed without exponent). Anything else (say 2^53 + 1 from our
/// own data) would be signed as a different number than the one stored, so it is refused.
fn exact_integer(f: f64, i: i128, n: &Number) -> Result<f64, CanonicalError> {
    if f as i128 == i {
        return Ok(f);
    }
    let mut printed = String::new();
    write_f64(&mut printed, f)?;
    if printed == n.to_string() {
        Ok(f)
    } else {
        Err(CanonicalError::IntegerNotExact(n.to_string()))
    }
}

/// RFC 8785 §3.2.2.3: ECMAScript `Number.prototype.toString` for a finite double.
fn write_f64(out: &mut String, value: f64) -> Result<(), CanonicalError> {
    if !value.is_finite() {
        return Err(CanonicalError::NonFiniteNumber(value.to_string()));
    }
    if value == 0.0 {
        // Both +0 and -0.
        out.push('0');
        return Ok(());
    }
    if value < 0.0 {
        out.push('-');
    }
    // Ryu prints the shortest digits that round-trip and, on a tie, the even one, as
    // ECMAScript requires (Rust's own `{:e}` picks the odd one on ties, e.g. for
    // 1424953923781206.25). Its layout differs from ECMAScript's, so only the digits and the
    // exponent are taken from it.
    let mut buffer = ryu::Buffer::new();
    let printed = buffer.format_finite(value.abs());
    let (mantissa, exponent) = printed.split_once('e').unwrap_or((printed, "0"));
    let exponent: i32 = exponent
        .parse()
        .map_err(|_| CanonicalError::NonFiniteNumber(printed.to_owned()))?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    // The value is 0.<all> × 10^(len(int) + exponent); drop leading and trailing zeros.
    let trimmed = all.trim_start_matches('0');
    let leading = (all.len() - trimmed.len()) as i32;
    let digits = trimmed.trim_end_matches('0');
    let k = digits.len() as i32;
    let n = int.len() as i32 + exponent - leading;
    if k <= n && n <= 21 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(digits);
    } else {
        let e = n - 1;
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let _ = write!(out, "{}", e.abs());
    }
    Ok(())
}

/// A SHA-256 digest. Shown and serialised as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, CanonicalError> {
        let bytes = hex::decode(s).map_err(|_| CanonicalError::BadDigest(s.to_owned()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CanonicalError::BadDigest(s.to_owned()))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn number(bits: u64) -> String {
        let mut out = String::new();
        write_f64(&mut out, f64::from_bits(bits)).expect("finite");
        out
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in cases {
            assert_eq!(number(*bits), *expected, "bits {bits:#018x}");
        }
    }

    /// RFC 8785 §3.2.2: the example object, parsed from its JSON text.
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).expect("valid JSON");
        assert_eq!(
            to_canonical_string(&value).expect("canonical"),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: keys sorted by UTF-16 code units, not by UTF-8 bytes or scalars.
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let value: Value = serde_json::from_str(input).expect("valid JSON");
        let out = to_canonical_string(&value).expect("canonical");
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh",
        ]
        .to_vec();
        let positions: Vec<usize> = order
            .iter()
            .map(|v| out.find(v).expect("present"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    }

    #[test]
    fn every_control_character_is_escaped_like_json_stringify() {
        let s: String = (0u8..0x20).map(char::from).collect();
        let out = to_canonical_string(&json!(s)).expect("canonical");
        assert_eq!(
            out,
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        // Non-ASCII, DEL and U+2028 stay literal.
        let out = to_canonical_string(&json!("é\u{7f}\u{2028}/")).expect("canonical");
        assert_eq!(out, "\"é\u{7f}\u{2028}/\"");
    }

    #[test]
    fn nested_structures_have_no_whitespace() {
        let v = json!({"b": [1, {"z": null, "a": [true]}], "a": {}});
        assert_eq!(
            to_canonical_string(&v).expect("canonical"),
            r#"{"a":{},"b":[1,{"a":[true],"z":null}]}"#
        );
    }

    #[test]
    fn integers_that_a_double_cannot_hold_are_refused() {
        assert!(to_canonical_string(&json!(9_007_199_254_740_992_i64)).is_ok());
        assert_eq!(
            to_canonical_string(&json!(9_007_199_254_740_993_i64)),
            Err(CanonicalError::IntegerNotExact("9007199254740993".into()))
        );
        assert!(to_canonical_string(&json!(i64::MAX)).is_err());
        assert!(to_canonical_string(&json!(u64::MAX)).is_err());
        assert_eq!(to_canonical_string(&json!(-42)).expect("exact"), "-42");
    }

    #[test]
    fn digest_hex_round_trip_and_known_vector() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Ok(d));
        assert!(Digest::from_hex("abc").is_err());
        let json = serde_json::to_string(&d).expect("serialise");
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("parse"), d);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// What `canonicalize` wrote before issue 17: the `Value` tree, then its canonical form.
    fn through_a_tree<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
        let value =
            serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
        to_canonical_bytes(&value)
    }

    /// A map that names a member twice, as no `Value` can: the tree keeps the last.
    struct Twice;

    impl Serialize for Twice {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("b", &1)?;
            map.serialize_entry("a", &2)?;
            map.serialize_entry("b", &3)?;
            map.serialize_entry("c", &[4])?;
            map.serialize_entry("a", &5)?;
            map.end()
        }
    }

    #[derive(Serialize)]
    enum Shapes {
        Unit,
        Newtype(Option<u8>),
        Tuple(i64, String),
        Struct { z: (), a: f64, m: Vec<u8> },
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Tagged {
        Strokes { strokes: Vec<Vec<[i32; 2]>> },
        Empty {},
    }

    #[derive(Serialize)]
    struct Everything {
        zeta: Vec<Shapes>,
        tagged: Vec<Tagged>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        none: Option<String>,
        unit: (),
        chars: (char, char),
        #[serde(with = "serde_bytes_as_seq")]
        bytes: Vec<u8>,
        int_keys: std::collections::BTreeMap<i32, bool>,
        char_keys: std::collections::BTreeMap<char, String>,
        floats: [f64; 4],
        small: (i8, i16, u8, u16, u32, f32),
        big: (i128, u128),
        twice: Twice,
        nested: serde_json::Value,
        #[serde(rename = "ключ")]
        cyrillic: u8,
    }

    mod serde_bytes_as_seq {
        pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(bytes)
        }
    }

    #[test]
    fn written_straight_from_serde_as_through_a_tree() {
        // Issue 17: `canonicalize` writes without the `Value` tree; the bytes are the same,
        // for every shape serde gives and every conversion `to_value` makes.
        let everything = Everything {
            zeta: vec![
                Shapes::Unit,
                Shapes::Newtype(Some(7)),
                Shapes::Newtype(None),
                Shapes::Tuple(-3, "t\u{1}".into()),
                Shapes::Struct {
                    z: (),
                    a: 0.5,
                    m: vec![1, 2],
                },
            ],
            tagged: vec![
                Tagged::Strokes {
                    strokes: vec![vec![[1, -2], [3, 4]], vec![]],
                },
                Tagged::Empty {},
            ],
            skipped: None,
            none: None,
            unit: (),
            chars: ('"', '\u{20ac}'),
            bytes: vec![0, 255, 16],
            int_keys: [(10, true), (-1, false), (2, true)].into_iter().collect(),
            char_keys: [
                ('\u{20ac}', "euro".into()),
                ('\r', "cr".into()),
                ('1', "one".into()),
            ]
            .into_iter()
            .collect(),
            floats: [f64::NAN, f64::INFINITY, -0.0, 1e21],
            small: (-8, 300, 255, 65535, 7, 0.25),
            big: (-5, 6),
            twice: Twice,
            nested: json!({"\u{fb33}": 1, "\u{1f600}": [{"b": null, "a": {}}], "\u{80}": "x"}),
            cyrillic: 1,
        };
        let direct = canonicalize(&everything).expect("canonical");
        assert_eq!(
            String::from_utf8(direct).expect("utf-8"),
            String::from_utf8(through_a_tree(&everything).expect("canonical")).expect("utf-8")
        );
        assert_eq!(
            canonicalize(&Twice).expect("canonical"),
            br#"{"a":5,"b":3,"c":[4]}"#.to_vec()
        );
        // What cannot be canonicalised is refused either way.
        for refused in [json!(u64::MAX), json!([1, {"a": i64::MAX}])] {
            assert_eq!(canonicalize(&refused), through_a_tree(&refused));
            assert!(canonicalize(&refused).is_err());
        }
        assert!(canonicalize(&(1u128 << 64)).is_err());
        assert!(through_a_tree(&(1u128 << 64)).is_err());
        let float_keys: std::collections::BTreeMap<bool, u8> = [(true, 1)].into_iter().collect();
        assert_eq!(canonicalize(&float_keys), through_a_tree(&float_keys));
    }

    proptest! {
        /// Issue 17: any JSON value is written as its tree was.
        #[test]
        fn any_value_is_written_straight_as_through_a_tree(v in arb_json()) {
            prop_assert_eq!(canonicalize(&v).expect("canonical"), through_a_tree(&v).expect("canonical"));
        }

        #[test]
        fn numbers_round_trip_through_their_canonical_text(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut out = String::new();
            write_f64(&mut out, f).expect("finite");
            let back: f64 = out.parse().expect("a number");
            prop_assert_eq!(back, if f == 0.0 { 0.0 } else { f });
        }

        /// Issue 17: an integer a double holds exactly is printed from its digits, as the
        /// double's ECMAScript text would print it.
        #[test]
        fn exact_integers_print_as_their_double_does(i in -(1i64 << 53)..=(1i64 << 53)) {
            let mut fast = String::new();
            write_number(&mut fast, &Number::from(i)).expect("exact");
            let mut slow = String::new();
            write_f64(&mut slow, i as f64).expect("finite");
            prop_assert_eq!(fast, slow);
        }

        /// Issue 17: strings are copied by runs between escapes; the text is what escaping
        /// character by character gives.
        #[test]
        fn strings_escape_as_character_by_character(s in "(.|[\\x00-\\x1f\"\\\\])*") {
            let mut out = String::new();
            write_string(&mut out, &s);
            let mut expected = String::from('"');
            for c in s.chars() {
                match c {
                    '"' => expected.push_str("\\\""),
                    '\\' => expected.push_str("\\\\"),
                    '\u{08}' => expected.push_str("\\b"),
                    '\t' => expected.push_str("\\t"),
                    '\n' => expected.push_str("\\n"),
                    '\u{0C}' => expected.push_str("\\f"),
                    '\r' => expected.push_str("\\r"),
                    c if (c as u32) < 0x20 => expected.push_str(&format!("\\u{:04x}", c as u32)),
                    c => expected.push(c),
                }
            }
            expected.push('"');
            prop_assert_eq!(out, expected);
        }

        /// Issue 17: the member's bytes marked in an object's canonical form are the
        /// member's own canonical form.
        #[test]
        fn a_marked_member_is_its_own_canonical_form(v in arb_json(), inner in arb_json()) {
            let mut object = serde_json::Map::new();
            object.insert("content".into(), inner.clone());
            object.insert("other".into(), v);
            let object = Value::Object(object);
            let (bytes, at) = to_canonical_bytes_marking(&object, "content").expect("canonical");
            prop_assert_eq!(&bytes, &to_canonical_bytes(&object).expect("canonical"));
            let at = at.expect("marked");
            let inner_bytes = to_canonical_bytes(&inner).expect("canonical");
            prop_assert_eq!(&bytes[at], inner_bytes.as_slice());
            let (_, none) = to_canonical_bytes_marking(&object, "absent").expect("canonical");
            prop_assert!(none.is_none());
        }

        #[test]
        fn canonicalising_is_idempotent(v in arb_json()) {
            let once = to_canonical_string(&v).expect("canonical");
            let parsed: Value = serde_json::from_str(&once).expect("valid JSON");
            prop_assert_eq!(to_canonical_string(&parsed).expect("canonical"), once);
        }
    }
}
