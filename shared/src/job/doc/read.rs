//! Strict reading of automerge values into typed values, with the path of every failure.
//!
//! A device can write anything into a document it can reach, so nothing here trusts the
//! document: every value is checked for its type and range, and every failure names the path
//! (`visit.arrival: expected timestamp, found str`) so the desk can tell what is broken and
//! where. Nothing here panics on document content.
//!
//! Two leniencies serve JavaScript apps on `@automerge/automerge-repo` reading and writing the
//! same document: a string field may hold a scalar string or a text object (the JS API writes
//! plain strings as text), and an optional field may hold `null` (read as absent).

use std::str::FromStr;

use automerge::{ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::SchemaError;
use crate::time::Timestamp;

/// How deep the generic walks (conflicts, JSON rendering) go before they stop: far deeper than
/// any job, shallow enough that a hostile document cannot exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// A document seen at its current state or at some heads.
#[derive(Debug)]
pub(crate) struct Reader<'a, R> {
    doc: &'a R,
    heads: Option<&'a [ChangeHash]>,
}

impl<R> Clone for Reader<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Reader<'_, R> {}

impl<'a, R: ReadDoc> Reader<'a, R> {
    pub(crate) fn new(doc: &'a R, heads: Option<&'a [ChangeHash]>) -> Self {
        Self { doc, heads }
    }

    pub(crate) fn get(
        &self,
        obj: &ObjId,
        prop: impl Into<Prop>,
    ) -> Result<Option<(Value<'a>, ObjId)>, automerge::AutomergeError> {
        match self.heads {
            Some(heads) => self.doc.get_at(obj, prop, heads),
            None => self.doc.get(obj, prop),
        }
    }

    pub(crate) fn get_all(
        &self,
        obj: &ObjId,
        prop: impl Into<Prop>,
    ) -> Result<Vec<(Value<'a>, ObjId)>, automerge::AutomergeError> {
        match self.heads {
            Some(heads) => self.doc.get_all_at(obj, prop, heads),
            None => self.doc.get_all(obj, prop),
        }
    }

    pub(crate) fn keys(&self, obj: &ObjId) -> Vec<String> {
        match self.heads {
            Some(heads) => self.doc.keys_at(obj, heads).collect(),
            None => self.doc.keys(obj).collect(),
        }
    }

    pub(crate) fn length(&self, obj: &ObjId) -> usize {
        match self.heads {
            Some(heads) => self.doc.length_at(obj, heads),
            None => self.doc.length(obj),
        }
    }

    pub(crate) fn text(&self, obj: &ObjId) -> Result<String, automerge::AutomergeError> {
        match self.heads {
            Some(heads) => self.doc.text_at(obj, heads),
            None => self.doc.text(obj),
        }
    }

    /// The root map.
    pub(crate) fn root(self) -> MapView<'a, R> {
        MapView {
            rd: self,
            obj: automerge::ROOT,
            path: String::new(),
        }
    }

    /// A string held as a scalar or as a text object.
    pub(crate) fn string(
        &self,
        path: &str,
        v: Value<'a>,
        id: &ObjId,
    ) -> Result<String, SchemaError> {
        match v {
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => Ok(s.to_string()),
                other => Err(wrong(path, "string", scalar_kind(other))),
            },
            Value::Object(ObjType::Text) => {
                self.text(id).map_err(|source| SchemaError::Automerge {
                    path: path.to_owned(),
                    source: Box::new(source),
                })
            }
            Value::Object(t) => Err(wrong(path, "string", object_kind(t))),
        }
    }

    pub(crate) fn map(
        &self,
        path: String,
        v: Value<'a>,
        id: ObjId,
    ) -> Result<MapView<'a, R>, SchemaError> {
        match v {
            Value::Object(ObjType::Map | ObjType::Table) => Ok(MapView {
                rd: *self,
                obj: id,
                path,
            }),
            other => Err(wrong(&path, "map", value_kind(&other))),
        }
    }

    pub(crate) fn list(
        &self,
        path: String,
        v: Value<'a>,
        id: ObjId,
    ) -> Result<ListView<'a, R>, SchemaError> {
        match v {
            Value::Object(ObjType::List) => Ok(ListView {
                rd: *self,
                obj: id,
                path,
            }),
            other => Err(wrong(&path, "list", value_kind(&other))),
        }
    }

    /// Renders any value as JSON, the way the model's serde form shows it: timestamps as
    /// milliseconds, bytes as base64, text as a string. Used to show conflicting values.
    pub(crate) fn json(&self, v: &Value<'a>, id: &ObjId, depth: usize) -> serde_json::Value {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return J::Null;
        }
        match v {
            Value::Scalar(s) => scalar_json(s.as_ref()),
            Value::Object(ObjType::Text) => self.text(id).map(J::String).unwrap_or(J::Null),
            Value::Object(ObjType::Map | ObjType::Table) => {
                let mut out = serde_json::Map::new();
                for key in self.keys(id) {
                    if let Ok(Some((cv, cid))) = self.get(id, key.as_str()) {
                        out.insert(key, self.json(&cv, &cid, depth + 1));
                    }
                }
                J::Object(out)
            }
            Value::Object(ObjType::List) => {
                let mut out = Vec::new();
                for i in 0..self.length(id) {
                    if let Ok(Some((cv, cid))) = self.get(id, i) {
                        out.push(self.json(&cv, &cid, depth + 1));
                    }
                }
                J::Array(out)
            }
        }
    }
}

fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    match s {
        ScalarValue::Bytes(b) => J::String(STANDARD.encode(b)),
        ScalarValue::Str(s) => J::String(s.to_string()),
        ScalarValue::Int(i) => J::from(*i),
        ScalarValue::Uint(u) => J::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        ScalarValue::Counter(c) => J::from(i64::from(c)),
        ScalarValue::Timestamp(t) => J::from(*t),
        ScalarValue::Boolean(b) => J::Bool(*b),
        ScalarValue::Unknown { .. } | ScalarValue::Null => J::Null,
    }
}

/// A map in the document, with its path for error messages.
#[derive(Debug)]
pub(crate) struct MapView<'a, R> {
    rd: Reader<'a, R>,
    obj: ObjId,
    path: String,
}

impl<'a, R: ReadDoc> MapView<'a, R> {
    pub(crate) fn obj(&self) -> &ObjId {
        &self.obj
    }

    /// The map's keys, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.rd.keys(&self.obj)
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The winning value under `key`, `None` when absent or `null`.
    fn value(&self, key: &str) -> Result<Option<(Value<'a>, ObjId)>, SchemaError> {
        let found = self
            .rd
            .get(&self.obj, key)
            .map_err(|source| SchemaError::Automerge {
                path: self.path_of(key),
                source: Box::new(source),
            })?;
        Ok(found.filter(|(v, _)| !is_null(v)))
    }

    fn required(&self, key: &str) -> Result<(Value<'a>, ObjId), SchemaError> {
        self.value(key)?.ok_or_else(|| SchemaError::Missing {
            path: self.path_of(key),
        })
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, SchemaError> {
        match self.value(key)? {
            Some((v, id)) => self.rd.string(&self.path_of(key), v, &id).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, SchemaError> {
        let (v, id) = self.required(key)?;
        self.rd.string(&self.path_of(key), v, &id)
    }

    /// A string parsed into a typed value (an id, an enum, a date).
    pub(crate) fn opt_parsed<T, E: std::fmt::Display>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, SchemaError> {
        match self.opt_string(key)? {
            Some(s) => parse(&s).map(Some).map_err(|e| SchemaError::Invalid {
                path: self.path_of(key),
                reason: e.to_string(),
            }),
            None => Ok(None),
        }
    }

    pub(crate) fn parsed<T, E: std::fmt::Display>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, SchemaError> {
        self.opt_parsed(key, parse)?
            .ok_or_else(|| SchemaError::Missing {
                path: self.path_of(key),
            })
    }

    /// A string read with `FromStr` (ids, dates).
    pub(crate) fn parse<T>(&self, key: &str) -> Result<T, SchemaError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.parsed(key, str::parse::<T>)
    }

    pub(crate) fn opt_parse<T>(&self, key: &str) -> Result<Option<T>, SchemaError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.opt_parsed(key, str::parse::<T>)
    }

    pub(crate) fn opt_timestamp(&self, key: &str) -> Result<Option<Timestamp>, SchemaError> {
        match self.value(key)? {
            Some((v, _)) => match scalar(&v) {
                Some(ScalarValue::Timestamp(ms)) => Ok(Some(Timestamp::from_millis(*ms))),
                _ => Err(wrong(&self.path_of(key), "timestamp", value_kind(&v))),
            },
            None => Ok(None),
        }
    }

    pub(crate) fn timestamp(&self, key: &str) -> Result<Timestamp, SchemaError> {
        self.opt_timestamp(key)?
            .ok_or_else(|| SchemaError::Missing {
                path: self.path_of(key),
            })
    }

    /// An integer (automerge int or uint) that fits `T`.
    pub(crate) fn int<T: TryFrom<i64>>(&self, key: &str) -> Result<T, SchemaError> {
        self.opt_int(key)?.ok_or_else(|| SchemaError::Missing {
            path: self.path_of(key),
        })
    }

    /// An integer that fits `T`, or `None` when the key is absent.
    pub(crate) fn opt_int<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<T>, SchemaError> {
        let Some((v, _)) = self.value(key)? else {
            return Ok(None);
        };
        let path = self.path_of(key);
        let wide: i64 = match scalar(&v) {
            Some(ScalarValue::Int(i)) => *i,
            Some(ScalarValue::Uint(u)) => i64::try_from(*u).map_err(|_| out_of_range(&path, *u))?,
            _ => return Err(wrong(&path, "int", value_kind(&v))),
        };
        T::try_from(wide)
            .map(Some)
            .map_err(|_| out_of_range(&path, wide))
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool, SchemaError> {
        let (v, _) = self.required(key)?;
        match scalar(&v) {
            Some(ScalarValue::Boolean(b)) => Ok(*b),
            _ => Err(wrong(&self.path_of(key), "boolean", value_kind(&v))),
        }
    }

    pub(crate) fn bytes(&self, key: &str) -> Result<Vec<u8>, SchemaError> {
        let (v, _) = self.required(key)?;
        match scalar(&v) {
            Some(ScalarValue::Bytes(b)) => Ok(b.clone()),
            _ => Err(wrong(&self.path_of(key), "bytes", value_kind(&v))),
        }
    }

    pub(crate) fn opt_map(&self, key: &str) -> Result<Option<MapView<'a, R>>, SchemaError> {
        match self.value(key)? {
            Some((v, id)) => self.rd.map(self.path_of(key), v, id).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn map(&self, key: &str) -> Result<MapView<'a, R>, SchemaError> {
        let (v, id) = self.required(key)?;
        self.rd.map(self.path_of(key), v, id)
    }

    pub(crate) fn list(&self, key: &str) -> Result<ListView<'a, R>, SchemaError> {
        let (v, id) = self.required(key)?;
        self.rd.list(self.path_of(key), v, id)
    }

    /// Free text: a text object, or a scalar string written by another client.
    pub(crate) fn text(&self, key: &str) -> Result<String, SchemaError> {
        self.string(key)
    }
}

/// A list in the document, with its path for error messages.
#[derive(Debug)]
pub(crate) struct ListView<'a, R> {
    rd: Reader<'a, R>,
    obj: ObjId,
    path: String,
}

impl<'a, R: ReadDoc> ListView<'a, R> {
    pub(crate) fn obj(&self) -> &ObjId {
        &self.obj
    }

    pub(crate) fn len(&self) -> usize {
        self.rd.length(&self.obj)
    }

    fn path_of(&self, i: usize) -> String {
        format!("{}[{i}]", self.path)
    }

    fn item(&self, i: usize) -> Result<(Value<'a>, ObjId), SchemaError> {
        let path = || self.path_of(i);
        self.rd
            .get(&self.obj, i)
            .map_err(|source| SchemaError::Automerge {
                path: path(),
                source: Box::new(source),
            })?
            .filter(|(v, _)| !is_null(v))
            .ok_or_else(|| SchemaError::Missing { path: path() })
    }

    /// Reads every element with `f`, which gets the element's path and value.
    pub(crate) fn items<T>(
        &self,
        mut f: impl FnMut(&Reader<'a, R>, String, Value<'a>, ObjId) -> Result<T, SchemaError>,
    ) -> Result<Vec<T>, SchemaError> {
        (0..self.len())
            .map(|i| {
                let (v, id) = self.item(i)?;
                f(&self.rd, self.path_of(i), v, id)
            })
            .collect()
    }

    pub(crate) fn maps(&self) -> Result<Vec<MapView<'a, R>>, SchemaError> {
        self.items(|rd, path, v, id| rd.map(path, v, id))
    }

    pub(crate) fn strings(&self) -> Result<Vec<String>, SchemaError> {
        self.items(|rd, path, v, id| rd.string(&path, v, &id))
    }

    pub(crate) fn lists(&self) -> Result<Vec<ListView<'a, R>>, SchemaError> {
        self.items(|rd, path, v, id| rd.list(path, v, id))
    }

    /// A list of integers that each fit `T`.
    pub(crate) fn ints<T: TryFrom<i64>>(&self) -> Result<Vec<T>, SchemaError> {
        self.items(|_, path, v, _| {
            let wide: i64 = match scalar(&v) {
                Some(ScalarValue::Int(i)) => *i,
                Some(ScalarValue::Uint(u)) => {
                    i64::try_from(*u).map_err(|_| out_of_range(&path, *u))?
                }
                _ => return Err(wrong(&path, "int", value_kind(&v))),
            };
            T::try_from(wide).map_err(|_| out_of_range(&path, wide))
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn wrong(path: &str, expected: &'static str, found: &'static str) -> SchemaError {
    SchemaError::WrongType {
        path: path.to_owned(),
        expected,
        found,
    }
}

fn out_of_range(path: &str, value: impl std::fmt::Display) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_owned(),
        reason: format!("{value} is out of range"),
    }
}

fn scalar<'v>(v: &'v Value<'_>) -> Option<&'v ScalarValue> {
    match v {
        Value::Scalar(s) => Some(s.as_ref()),
        Value::Object(_) => None,
    }
}

fn is_null(v: &Value<'_>) -> bool {
    matches!(scalar(v), Some(ScalarValue::Null))
}

/// The automerge type name of a value, as error messages show it.
pub(crate) fn value_kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Scalar(s) => scalar_kind(s),
        Value::Object(t) => object_kind(*t),
    }
}

fn scalar_kind(s: &ScalarValue) -> &'static str {
    match s {
        ScalarValue::Bytes(_) => "bytes",
        ScalarValue::Str(_) => "str",
        ScalarValue::Int(_) => "int",
        ScalarValue::Uint(_) => "uint",
        ScalarValue::F64(_) => "f64",
        ScalarValue::Counter(_) => "counter",
        ScalarValue::Timestamp(_) => "timestamp",
        ScalarValue::Boolean(_) => "boolean",
        ScalarValue::Unknown { .. } => "unknown",
        ScalarValue::Null => "null",
    }
}

fn object_kind(t: ObjType) -> &'static str {
    match t {
        ObjType::Map => "map",
        ObjType::Table => "table",
        ObjType::List => "list",
        ObjType::Text => "text",
    }
}

/// Whether `v` is exactly the scalar `want`.
pub(crate) fn is_scalar(v: &Value<'_>, want: &ScalarValue) -> bool {
    scalar(v) == Some(want)
}
