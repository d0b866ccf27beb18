//! Identifiers shared by every tier.
//!
//! Document ids follow automerge-repo: 16 random (UUID v4) bytes, written as bs58check and
//! linked as `automerge:<id>` URLs (see `../shared/DESIGN.md`, "Three tiers, one protocol").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The scheme prefix of an automerge-repo document URL.
pub const AUTOMERGE_URL_PREFIX: &str = "automerge:";

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("document id {0:?} is not valid bs58check")]
    NotBs58Check(String),
    #[error("document id {0:?} decodes to {1} bytes, expected 16")]
    WrongLength(String, usize),
    #[error("{0:?} is not an automerge URL (expected `automerge:<document id>`)")]
    NotAutomergeUrl(String),
    #[error("{kind} must be 1 to 64 characters of [A-Za-z0-9._-], got {value:?}")]
    BadName { kind: &'static str, value: String },
}

/// An automerge-repo document id: 16 bytes, shown as bs58check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

impl DocumentId {
    /// A fresh random id (UUID v4 bytes, as automerge-repo makes them).
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The `automerge:<id>` URL of this document.
    pub fn url(&self) -> String {
        format!("{AUTOMERGE_URL_PREFIX}{self}")
    }

    /// Parses an `automerge:<id>` URL (any `#heads` suffix is not accepted here).
    pub fn from_url(url: &str) -> Result<Self, IdError> {
        let rest = url
            .strip_prefix(AUTOMERGE_URL_PREFIX)
            .ok_or_else(|| IdError::NotAutomergeUrl(url.to_owned()))?;
        rest.parse()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|_| IdError::NotBs58Check(s.to_owned()))?;
        let arr: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdError::WrongLength(s.to_owned(), bytes.len()))?;
        Ok(Self(arr))
    }
}

impl Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Declares a string identifier restricted to `[A-Za-z0-9._-]{1,64}`, so it is safe in file
/// names, URLs and log lines.
macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                let ok = !value.is_empty()
                    && value.len() <= 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if ok {
                    Ok(Self(value))
                } else {
                    Err(IdError::BadName { kind: $kind, value })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
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

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_id!(
    /// A branch office (服務網點), e.g. `north-01`.
    BranchId,
    "branch id"
);
name_id!(
    /// A technician (售後服務人員), e.g. `tech-wang`.
    TechnicianId,
    "technician id"
);
name_id!(
    /// An enrolled technician device.
    DeviceId,
    "device id"
);
name_id!(
    /// A customer's file number (R26).
    CustomerId,
    "customer id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_id_round_trips_through_url() {
        let id = DocumentId::random();
        let url = id.url();
        assert!(url.starts_with("automerge:"));
        assert_eq!(DocumentId::from_url(&url), Ok(id));
    }

    #[test]
    fn document_id_rejects_bad_checksum_and_length() {
        let good = DocumentId::random().to_string();
        let mut bad = good.clone().into_bytes();
        // Changing one character breaks the 4-byte checksum.
        bad[3] = if bad[3] == b'2' { b'3' } else { b'2' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(matches!(
            bad.parse::<DocumentId>(),
            Err(IdError::NotBs58Check(_))
        ));
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert_eq!(
            short.parse::<DocumentId>(),
            Err(IdError::WrongLength(short.clone(), 8))
        );
        assert!(DocumentId::from_url(&good).is_err());
    }

    #[test]
    fn names_are_restricted() {
        assert!(BranchId::new("north-01").is_ok());
        assert!(BranchId::new("").is_err());
        assert!(BranchId::new("a/b").is_err());
        assert!(TechnicianId::new("x".repeat(65)).is_err());
    }
}
