//! The claims a caller hands to a mapper, borrowed or owned.
//!
//! [`Claims`] is what callers pass: a JSON value, or JSON text that is passed on unparsed (a
//! worker process reads it straight into Jsonnet values). [`OwnedClaims`] is the same for a job
//! that waits in a queue beyond its caller's borrow.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The claims handed to a mapper: a JSON value, or JSON text passed on without being parsed
/// here (a web hook's carried claims go to the worker process as they arrived).
#[derive(Debug, Clone, Copy)]
pub enum Claims<'a> {
    Json(&'a Value),
    Raw(&'a RawValue),
}

impl<'a> From<&'a Value> for Claims<'a> {
    fn from(value: &'a Value) -> Self {
        Claims::Json(value)
    }
}

impl<'a> From<&'a RawValue> for Claims<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Claims::Raw(raw)
    }
}

impl Serialize for Claims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Claims::Json(value) => value.serialize(serializer),
            Claims::Raw(raw) => raw.serialize(serializer),
        }
    }
}

/// [`Claims`] owned by a queued job.
pub(super) enum OwnedClaims {
    Json(Value),
    Raw(Box<RawValue>),
}

impl OwnedClaims {
    pub(super) fn borrow(&self) -> Claims<'_> {
        match self {
            OwnedClaims::Json(value) => Claims::Json(value),
            OwnedClaims::Raw(raw) => Claims::Raw(raw),
        }
    }
}

impl From<Claims<'_>> for OwnedClaims {
    fn from(claims: Claims<'_>) -> Self {
        match claims {
            Claims::Json(value) => OwnedClaims::Json(value.clone()),
            Claims::Raw(raw) => OwnedClaims::Raw(raw.to_owned()),
        }
    }
}
