//! The one SCIM error type and its wire form, the RFC 7644 §3.12 error schema.
//!
//! Every function of [`crate::scim`] that can refuse a request returns a [`ScimError`]: the HTTP
//! status, the optional `scimType` and a `detail` for the client. The service answers with
//! [`ScimError::to_json`] as the body and [`ScimError::status`] as the status code.
//!
//! A `detail` names *what* is wrong (an attribute name, a position in a filter, the expected
//! form) and never echoes a value from the request, so it can be logged as it is: values are
//! user names, e-mails and names (personal data).

use serde_json::{Value, json};

/// The URN of the SCIM error message (RFC 7644 §3.12).
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 §3.12, Table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The keyword as it appears in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A refused SCIM request: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM {status}{}: {detail}", scim_type.map(|t| format!(" {}", t.as_str())).unwrap_or_default())]
pub struct ScimError {
    /// The HTTP status code (400, 404, 409, …).
    pub status: u16,
    /// The `scimType` keyword; RFC 7644 §3.12 defines them for 400 (and `uniqueness` with 409).
    pub scim_type: Option<ScimType>,
    /// A sentence for the client's operator; never holds a value from the request.
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }

    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::TooMany, detail)
    }

    /// 409 `uniqueness`: RFC 7644 §3.3 answers a duplicate with 409; Okta and Ory send the
    /// `uniqueness` keyword with it.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }

    /// 404 without a `scimType`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }

    /// 412: an `If-Match` that does not match the resource's version (RFC 7644 §3.14).
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(412, None, detail)
    }

    /// 413: a body over the service's limit (RFC 7644 §3.12 lists 413 for "too large").
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(413, None, detail)
    }

    /// The JSON body of RFC 7644 §3.12: `status` is a **string**, as in the RFC's examples.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = Value::from(scim_type.as_str());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_carries_the_status_as_a_string_and_the_scim_type() {
        let error = ScimError::invalid_filter("the filter ends early");
        assert_eq!(
            error.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "scimType": "invalidFilter",
                "detail": "the filter ends early",
            })
        );
    }

    #[test]
    fn an_error_without_a_scim_type_has_no_scim_type_member() {
        let body = ScimError::not_found("no such user").to_json();
        assert_eq!(body["status"], "404");
        assert!(body.get("scimType").is_none());
    }

    #[test]
    fn a_uniqueness_clash_is_a_409() {
        let error = ScimError::uniqueness("userName is taken");
        assert_eq!(error.status, 409);
        assert_eq!(error.to_json()["scimType"], "uniqueness");
        assert_eq!(error.to_string(), "SCIM 409 uniqueness: userName is taken");
    }
}
