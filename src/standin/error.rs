//! Kratos's error body: the herodot `errorGeneric` envelope `{"error": {code, status, reason?, message}}`.
//!
//! Message strings are herodot's defaults (`error_defaults.go`) and `ory/x sqlcon`'s, so a client
//! that matches on them behaves the same against the stand-in and against Kratos. Empty fields are
//! omitted, as herodot's `DefaultError` does (`omitempty`).

use serde_json::{Map, Value, json};

/// An error answer: the status code plus what goes into the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: Option<String>,
    pub message: String,
}

impl ApiError {
    /// Any status with herodot's default message for it (used for injected faults too).
    pub(crate) fn status(code: u16) -> Self {
        let message = match code {
            400 => "The request was malformed or contained invalid parameters",
            401 => "The request could not be authorized",
            403 => "The requested action was forbidden",
            404 => "The requested resource could not be found",
            409 => "The resource could not be created due to a conflict",
            415 => "The request is using an unknown content type",
            500 => "An internal server error occurred, please contact the system administrator",
            other => status_text(other),
        };
        ApiError {
            code,
            reason: None,
            message: message.to_owned(),
        }
    }

    /// `herodot.ErrBadRequest.WithReason(reason)`.
    pub(crate) fn bad_request_reason(reason: impl Into<String>) -> Self {
        ApiError::status(400).with_reason(reason)
    }

    /// `herodot.ErrBadRequest.WithError(message)`: the detail replaces the default message.
    pub(crate) fn bad_request_message(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
            ..ApiError::status(400)
        }
    }

    /// `sqlcon.ErrNoRows`: what Kratos answers for an unknown identity (or no session to delete).
    pub(crate) fn no_rows() -> Self {
        ApiError {
            message: "Unable to locate the resource".to_owned(),
            ..ApiError::status(404)
        }
    }

    /// `POST /admin/identities` on a unique violation (`identity/handler.go create`, docs/kratos.md §3.9).
    pub(crate) fn create_conflict() -> Self {
        ApiError::status(409)
            .with_reason("This identity conflicts with another identity that already exists.")
    }

    /// PUT/PATCH on a unique violation: the bare `sqlcon.ErrUniqueViolation` (docs/kratos.md §3.9).
    pub(crate) fn update_conflict() -> Self {
        ApiError {
            message: "Unable to insert or update resource because a resource with that value exists already"
                .to_owned(),
            ..ApiError::status(409)
        }
    }

    pub(crate) fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The envelope as Kratos writes it.
    pub(crate) fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".to_owned(), json!(self.code));
        error.insert("status".to_owned(), json!(status_text(self.code)));
        if let Some(reason) = &self.reason {
            error.insert("reason".to_owned(), json!(reason));
        }
        error.insert("message".to_owned(), json!(self.message));
        json!({ "error": error })
    }
}

/// Go's `http.StatusText` for the codes the stand-in can answer with.
fn status_text(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_conflict_is_the_exact_herodot_envelope() {
        assert_eq!(
            ApiError::create_conflict().to_json(),
            json!({"error": {
                "code": 409,
                "status": "Conflict",
                "reason": "This identity conflicts with another identity that already exists.",
                "message": "The resource could not be created due to a conflict"
            }})
        );
    }

    #[test]
    fn empty_reason_is_omitted() {
        let body = ApiError::no_rows().to_json();
        assert_eq!(
            body,
            json!({"error": {"code": 404, "status": "Not Found", "message": "Unable to locate the resource"}})
        );
    }
}
