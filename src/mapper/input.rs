//! What a caller hands to a mapper, borrowed or owned, and which kind of mapper it is for.
//!
//! [`Claims`] is what callers pass: a JSON value, or JSON text that is passed on unparsed (a
//! worker process reads it straight into Jsonnet values) — both for a provider's claims mapper
//! (`std.extVar('claims')`) — or a [`ScimInput`] for its SCIM mapper (`std.extVar('scim')`).
//! The variant decides the [`MapperKind`], so a SCIM input can never reach a claims mapper nor
//! the reverse. [`OwnedClaims`] is the same for a job that waits in a queue beyond its caller's
//! borrow.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::ScimInput;

/// Which of a provider's mappers runs, and the ext var its input is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapperKind {
    /// `mapper.jsonnet`: an SSO login's claims as `std.extVar('claims')`.
    #[default]
    Claims,
    /// `scim.jsonnet`: a SCIM provisioning's input as `std.extVar('scim')`.
    Scim,
}

impl MapperKind {
    /// The ext var the input is bound to.
    pub fn ext_var(self) -> &'static str {
        match self {
            MapperKind::Claims => "claims",
            MapperKind::Scim => "scim",
        }
    }

    /// The file of a provider folder that holds this kind of mapper.
    pub fn file_name(self) -> &'static str {
        match self {
            MapperKind::Claims => "mapper.jsonnet",
            MapperKind::Scim => "scim.jsonnet",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MapperKind::Claims => "claims",
            MapperKind::Scim => "scim",
        }
    }
}

impl std::fmt::Display for MapperKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input handed to a mapper: claims as a JSON value, claims as JSON text passed on without
/// being parsed here (a web hook's carried claims go to the worker process as they arrived), or
/// a SCIM input.
#[derive(Debug, Clone, Copy)]
pub enum Claims<'a> {
    Json(&'a Value),
    Raw(&'a RawValue),
    /// For the provider's SCIM mapper.
    Scim(&'a ScimInput),
}

impl Claims<'_> {
    /// The mapper this input is for.
    pub fn kind(&self) -> MapperKind {
        match self {
            Claims::Json(_) | Claims::Raw(_) => MapperKind::Claims,
            Claims::Scim(_) => MapperKind::Scim,
        }
    }
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

impl<'a> From<&'a ScimInput> for Claims<'a> {
    fn from(input: &'a ScimInput) -> Self {
        Claims::Scim(input)
    }
}

impl Serialize for Claims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Claims::Json(value) => value.serialize(serializer),
            Claims::Raw(raw) => raw.serialize(serializer),
            Claims::Scim(input) => input.as_value().serialize(serializer),
        }
    }
}

/// [`Claims`] owned by a queued job.
pub(super) enum OwnedClaims {
    Json(Value),
    Raw(Box<RawValue>),
    Scim(ScimInput),
}

impl OwnedClaims {
    pub(super) fn borrow(&self) -> Claims<'_> {
        match self {
            OwnedClaims::Json(value) => Claims::Json(value),
            OwnedClaims::Raw(raw) => Claims::Raw(raw),
            OwnedClaims::Scim(input) => Claims::Scim(input),
        }
    }
}

impl From<Claims<'_>> for OwnedClaims {
    fn from(claims: Claims<'_>) -> Self {
        match claims {
            Claims::Json(value) => OwnedClaims::Json(value.clone()),
            Claims::Raw(raw) => OwnedClaims::Raw(raw.to_owned()),
            Claims::Scim(input) => OwnedClaims::Scim(input.clone()),
        }
    }
}
