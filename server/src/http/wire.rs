//! Types the desk API shares between endpoints: instants as RFC 3339 strings, dates, the
//! error body, customers and products as the desk registers them.

use std::fmt;

use fieldsync_shared::ids::CustomerId;
use fieldsync_shared::time::{CalendarDate, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An instant on the wire: an RFC 3339 string (`2026-11-28T09:30:00Z`, any offset), stored
/// and answered in UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub Timestamp);

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Instant).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Instant {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples([serde_json::json!("2026-11-28T09:30:00Z")])
            .into()
    }
}

impl ToSchema for Instant {}

/// A calendar date on the wire: `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub CalendarDate);

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Date).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Date {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .examples([serde_json::json!("2026-11-28")])
            .into()
    }
}

impl ToSchema for Date {}

/// Every error: a stable code to branch on and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, e.g. `invalid_body`, `invalid_field`, `forbidden`, `unknown_request`,
    /// `step_out_of_order`, `conflict`.
    pub code: String,
    pub message: String,
}

/// R1: the customer as the desk registers them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerIn {
    /// The customer's file number (R26).
    #[schema(value_type = String, example = "c-1001")]
    pub id: CustomerId,
    pub name: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub site_address: String,
}

/// R1: the product (model, serial).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductIn {
    #[serde(default)]
    pub model: String,
    pub serial: String,
    pub product_type: String,
    #[serde(default)]
    pub purchase_date: Option<Date>,
    #[serde(default)]
    pub warranty_end: Option<Date>,
}
