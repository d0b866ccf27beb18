//! JCS written straight from a value's `Serialize` impl (issue 17).
//!
//! [`super::canonicalize`] used to build a `serde_json::Value` tree of the value (an
//! allocation per string, member and map node) only to walk it once and drop it; a report's
//! check does that for the acknowledged content and the acknowledgement statement of every
//! report. This serializer writes the same text directly: members are written as they come
//! and, when an object ends, put in RFC 8785 order (the UTF-16 code units of their names) in
//! place, a member named twice keeping the last value, as the tree's map does. Numbers,
//! strings and the `Value` conversions (`None` and `()` as `null`, a non-finite float as
//! `null`, bytes as an array of numbers, an enum variant with data as a one-member object)
//! are those of `serde_json::to_value`, so the bytes are exactly
//! `to_canonical_bytes(&serde_json::to_value(value)?)`, which the tests check.

use std::ops::Range;

use serde::ser::{self, Serialize};
use serde_json::Number;

use super::{CanonicalError, write_f64, write_number, write_string};

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError::Serialize(msg.to_string())
    }
}

/// The writer: the text so far, and the members of the objects still open.
#[derive(Default)]
pub(super) struct Jcs {
    pub(super) out: String,
    /// Members of every open object, innermost last.
    members: Vec<Member>,
    /// Their names, unescaped (`Member::key` indexes here).
    keys: String,
    /// Room to lay an object's members out again, and their order.
    scratch: String,
    order: Vec<usize>,
}

struct Member {
    key: Range<usize>,
    /// `"name":value` in `out`, without the comma before it.
    text: Range<usize>,
}

/// RFC 8785 §3.2.3: names compared by their UTF-16 code units (for ASCII, their bytes).
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// An object being written.
pub(super) struct Object {
    /// Its first member in `Jcs::members`, and its first name's byte in `Jcs::keys`.
    base: usize,
    keys_base: usize,
    /// The byte after its `{` in `out`.
    start: usize,
    /// The name given by `serialize_key`, waiting for its value.
    pending: Range<usize>,
}

impl Jcs {
    fn number(&mut self, n: Number) -> Result<(), CanonicalError> {
        write_number(&mut self.out, &n)
    }

    fn float(&mut self, f: f64) -> Result<(), CanonicalError> {
        // `serde_json::to_value` makes a non-finite float `null`.
        if f.is_finite() {
            write_f64(&mut self.out, f)
        } else {
            self.out.push_str("null");
            Ok(())
        }
    }

    fn open(&mut self) -> Object {
        self.out.push('{');
        Object {
            base: self.members.len(),
            keys_base: self.keys.len(),
            start: self.out.len(),
            pending: 0..0,
        }
    }

    /// Writes the member `key` (a range of `self.keys`) with `value`.
    fn member<T: Serialize + ?Sized>(
        &mut self,
        object: &Object,
        key: Range<usize>,
        value: &T,
    ) -> Result<(), CanonicalError> {
        if self.members.len() > object.base {
            self.out.push(',');
        }
        let at = self.out.len();
        write_string(&mut self.out, &self.keys[key.clone()]);
        self.out.push(':');
        value.serialize(&mut *self)?;
        self.members.push(Member {
            key,
            text: at..self.out.len(),
        });
        Ok(())
    }

    fn named_member<T: Serialize + ?Sized>(
        &mut self,
        object: &Object,
        name: &str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let from = self.keys.len();
        self.keys.push_str(name);
        self.member(object, from..self.keys.len(), value)
    }

    /// Ends `object`: its members in canonical order (the last of a name kept), then `}`.
    fn close(&mut self, object: Object) {
        let members = &self.members[object.base..];
        let keys = &self.keys;
        let name = |m: &Member| &keys[m.key.clone()];
        let in_order = members
            .windows(2)
            .all(|w| key_order(name(&w[0]), name(&w[1])).is_lt());
        if !in_order {
            let mut order = std::mem::take(&mut self.order);
            order.clear();
            order.extend(0..members.len());
            // Stable: members of one name stay in the order written, and the last is kept.
            order.sort_by(|&a, &b| key_order(name(&members[a]), name(&members[b])));
            self.scratch.clear();
            self.scratch.push_str(&self.out[object.start..]);
            self.out.truncate(object.start);
            let mut first = true;
            for (i, &m) in order.iter().enumerate() {
                if order
                    .get(i + 1)
                    .is_some_and(|&next| name(&members[next]) == name(&members[m]))
                {
                    continue;
                }
                if !first {
                    self.out.push(',');
                }
                first = false;
                let text = &members[m].text;
                self.out
                    .push_str(&self.scratch[text.start - object.start..text.end - object.start]);
            }
            self.order = order;
        }
        self.out.push('}');
        self.members.truncate(object.base);
        self.keys.truncate(object.keys_base);
    }
}

/// A compound value being written: an array, an object, or either inside a one-member
/// object naming an enum variant.
pub(super) enum Compound<'a> {
    Array {
        w: &'a mut Jcs,
        first: bool,
        /// Inside `{"variant":`, to close after the array.
        variant: Option<Object>,
    },
    Object {
        w: &'a mut Jcs,
        object: Object,
        variant: Option<Object>,
    },
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        match self {
            Compound::Array { w, first, .. } => {
                if !*first {
                    w.out.push(',');
                }
                *first = false;
                value.serialize(&mut **w)
            }
            Compound::Object { .. } => Err(CanonicalError::Serialize(
                "an element written to an object".into(),
            )),
        }
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        match self {
            Compound::Object { w, object, .. } => w.named_member(object, name, value),
            Compound::Array { .. } => Err(CanonicalError::Serialize(
                "a member written to an array".into(),
            )),
        }
    }

    fn finish(self) -> Result<(), CanonicalError> {
        let (w, variant) = match self {
            Compound::Array { w, variant, .. } => {
                w.out.push(']');
                (w, variant)
            }
            Compound::Object { w, object, variant } => {
                w.close(object);
                (w, variant)
            }
        };
        if let Some(outer) = variant {
            // The variant's object has its one member, written by hand.
            w.out.push('}');
            w.keys.truncate(outer.keys_base);
        }
        Ok(())
    }
}

impl Jcs {
    /// `{"variant":` before a variant's data.
    fn variant(&mut self, variant: &str) -> Object {
        let outer = self.open();
        write_string(&mut self.out, variant);
        self.out.push(':');
        outer
    }
}

impl<'a> ser::Serializer for &'a mut Jcs {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        // As `serde_json::to_value`: within u64 or i64, else an error.
        if let Ok(u) = u64::try_from(v) {
            self.number(Number::from(u))
        } else if let Ok(i) = i64::try_from(v) {
            self.number(Number::from(i))
        } else {
            Err(CanonicalError::Serialize("number out of range".into()))
        }
    }

    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.number(Number::from(v))
    }

    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        let u = u64::try_from(v)
            .map_err(|_| CanonicalError::Serialize("number out of range".into()))?;
        self.number(Number::from(u))
    }

    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(&mut self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(&mut self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        // `serde_json::to_value` makes bytes an array of numbers.
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let outer = self.open();
        self.named_member(&outer, variant, value)?;
        self.close(outer);
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, CanonicalError> {
        self.out.push('[');
        Ok(Compound::Array {
            w: self,
            first: true,
            variant: None,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        let outer = self.variant(variant);
        self.out.push('[');
        Ok(Compound::Array {
            w: self,
            first: true,
            variant: Some(outer),
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, CanonicalError> {
        let object = self.open();
        Ok(Compound::Object {
            w: self,
            object,
            variant: None,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        let outer = self.variant(variant);
        let object = self.open();
        Ok(Compound::Object {
            w: self,
            object,
            variant: Some(outer),
        })
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        match self {
            Compound::Object { w, object, .. } => {
                let from = w.keys.len();
                key.serialize(KeyWriter(&mut w.keys))?;
                object.pending = from..w.keys.len();
                Ok(())
            }
            Compound::Array { .. } => Err(CanonicalError::Serialize(
                "a key written to an array".into(),
            )),
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        match self {
            Compound::Object { w, object, .. } => {
                let key = std::mem::replace(&mut object.pending, 0..0);
                w.member(object, key, value)
            }
            Compound::Array { .. } => Err(CanonicalError::Serialize(
                "a value written to an array".into(),
            )),
        }
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

/// A map's key, written unescaped into the names: what `serde_json::to_value` accepts as
/// one (a string, a char, an integer or a bool as its text, a unit variant's name).
struct KeyWriter<'a>(&'a mut String);

fn not_a_key() -> CanonicalError {
    CanonicalError::Serialize("key must be a string".into())
}

impl KeyWriter<'_> {
    fn text(self, v: impl std::fmt::Display) -> Result<(), CanonicalError> {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{v}");
        Ok(())
    }
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = ser::Impossible<(), CanonicalError>;
    type SerializeTuple = ser::Impossible<(), CanonicalError>;
    type SerializeTupleStruct = ser::Impossible<(), CanonicalError>;
    type SerializeTupleVariant = ser::Impossible<(), CanonicalError>;
    type SerializeMap = ser::Impossible<(), CanonicalError>;
    type SerializeStruct = ser::Impossible<(), CanonicalError>;
    type SerializeStructVariant = ser::Impossible<(), CanonicalError>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        self.text(v)
    }
    fn serialize_f32(self, _v: f32) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        self.0.push(v);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        self.0.push_str(v);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(not_a_key())
    }
}
