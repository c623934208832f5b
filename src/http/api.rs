//! `POST /v1/provision`: one login, described by an ID token (or, from a trusted caller, by
//! the claims themselves), run through the login use case.
//!
//! It takes `{"provider": ID, "id_token": JWT}` — or `{"provider": ID, "claims": {...}}` — and
//! answers `{"action": "created"|"updated"|"unchanged"|"denied", "identity_id", "changed",
//! "sessions_revoked", "reason", "code"}` (`sessions_revoked`: the identity's earlier Kratos
//! sessions were ended because a field of `[sessions] revoke_when_changed` changed): 200 for created/updated/unchanged, 403 for denied, 400 for a malformed
//! request (the input rules of [`crate::domain::input`] included) or an unusable subject, 401 for
//! a missing/wrong API secret or a rejected token, 403 for raw claims without a trusted secret,
//! 404 for an unknown provider, 408 for a body that did not arrive within the body deadline, 413
//! for a body over the limit, 502 when Kratos refuses a call for good, 503 when Kratos (or the
//! issuer's keys) cannot be reached within the deadline. Errors answer
//! `{"error": {"code", "message"}}` with a message that names the member and what is wrong with
//! it, never a value sent; all error-to-HTTP mapping is in [`ApiError`].
//!
//! Nothing from a request body — token, claims, traits — is ever logged; the use case logs the
//! provider, a hash of the subject, the identity id, the action and a denial's code.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value, json};

use crate::domain::input::{self, KeyPath, Problem};
use crate::domain::{ProviderId, Subject};
use crate::kratos::KratosError;
use crate::login::{Action, Current, EntryPoint, Login, LoginError, Outcome};
use crate::token::TokenError;

use super::auth::bearer;
use super::{AppState, BodyError, read_body};

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    TimedOut(std::time::Duration),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, ApiError::TooLarge(_) | ApiError::TimedOut(_)) {
            // The rest of the body was not read: the connection cannot carry another request.
            response.force_close();
        }
        response.json(json!({"error": {"code": status.as_u16(), "message": self.to_string()}}))
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Kratos(k) if k.is_retryable() => ApiError::Unavailable(format!(
                "Kratos could not be reached in time; nothing was written ({k})"
            )),
            LoginError::Kratos(k) => ApiError::BadGateway(format!(
                "Kratos refused the change; nothing was written ({})",
                kratos_reason(&k)
            )),
            LoginError::Engine(m) => ApiError::Unavailable(m.to_string()),
            LoginError::Audit(a) => ApiError::Unavailable(a.to_string()),
        }
    }
}

/// A Kratos refusal without the words of Kratos's own message, which may quote trait values.
fn kratos_reason(error: &KratosError) -> String {
    match error {
        KratosError::Rejected { status, .. } => format!("Kratos answered {status}"),
        KratosError::Protocol { .. } => "Kratos answered something kratos-jit cannot read".into(),
        other => other.to_string(),
    }
}

/// `{"provider": ID, "id_token": JWT}` or `{"provider": ID, "claims": {...}}`, read from a body
/// that met the input rules ([`input`]). Every refusal names the member and what is wrong with
/// it, never its value.
struct ProvisionRequest {
    provider: ProviderId,
    id_token: Option<String>,
    claims: Option<Map<String, Value>>,
}

const BODY_SHAPE: &str = "the body must be {\"provider\": ID, \"id_token\": JWT} or {\"provider\": ID, \"claims\": {...}}";

impl ProvisionRequest {
    fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let bad = |what: String| ApiError::BadRequest(what);
        let body = match input::parse(body) {
            Ok(Value::Object(body)) => body,
            Ok(other) => {
                return Err(bad(format!("{BODY_SHAPE}: it is {}", json_type(&other))));
            }
            // Not JSON at all: say what the body must be, and where reading it stopped.
            Err(e) if e.path().is_empty() || matches!(e.problem(), Problem::Syntax(_)) => {
                return Err(bad(format!("{BODY_SHAPE}: {e}")));
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        let (mut provider, mut id_token, mut claims) = (None, None, None);
        for (key, value) in body {
            match (key.as_str(), value) {
                (_, Value::Null) if key == "id_token" || key == "claims" => {}
                ("provider", Value::String(id)) => provider = Some(id),
                ("id_token", Value::String(token)) => id_token = Some(token),
                ("claims", Value::Object(map)) => claims = Some(map),
                ("provider" | "id_token", other) => {
                    return Err(bad(format!(
                        "{key}: invalid type: {}, expected a string",
                        json_type(&other)
                    )));
                }
                ("claims", other) => {
                    return Err(bad(format!(
                        "claims: invalid type: {}, expected an object",
                        json_type(&other)
                    )));
                }
                (unknown, _) => {
                    return Err(bad(format!(
                        "unknown field `{}`; {BODY_SHAPE}",
                        KeyPath::of_key(unknown)
                    )));
                }
            }
        }
        let provider = provider.ok_or_else(|| bad(format!("provider: missing; {BODY_SHAPE}")))?;
        // Every provider's id is a valid one, so anything else names none; it is not repeated.
        let provider = provider
            .parse::<ProviderId>()
            .map_err(|e| bad(format!("provider: not a provider id ({})", e.problem)))?;
        Ok(ProvisionRequest {
            provider,
            id_token,
            claims,
        })
    }
}

/// The JSON type of a value, in the words of serde's `invalid type: …` (never the value).
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The route: runs the request and logs a refusal that never reached the use case.
pub async fn provision(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = provision_request(request, payload, state).await;
    if let Err(error) = &result {
        let status = error.status_code().as_u16();
        match error {
            // What could not be reached (Kratos, an issuer's keys) names no caller data.
            ApiError::Unavailable(reason) => {
                tracing::warn!(message = "Refused a provisioning request.", status, %reason);
            }
            // Body and token reasons may quote the caller's data: the status only (a token's
            // refusal was logged with its code where it was refused).
            _ => tracing::info!(message = "Refused a provisioning request.", status),
        }
    }
    result
}

async fn provision_request(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let header = request
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    let secret = bearer(header);
    let trusted = match secret {
        Some(s) if state.trusted_secrets.accepts(s) => true,
        Some(s) if state.secrets.accepts(s) => false,
        _ => {
            return Err(ApiError::Unauthorized(
                "missing or unknown API secret (Authorization: Bearer <secret>)".into(),
            ));
        }
    };
    let body = read_body(&request, payload, state.max_body_bytes, state.body_timeout)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(limit) => ApiError::TooLarge(limit),
            BodyError::TimedOut(timeout) => ApiError::TimedOut(timeout),
            unreadable @ BodyError::Unreadable(_) => ApiError::BadRequest(unreadable.to_string()),
        })?;
    let body = ProvisionRequest::from_json(&body)?;
    let provider = state
        .logins
        .providers()
        .get(body.provider.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("unknown provider `{}`", body.provider)))?;
    let claims = match (body.id_token, body.claims) {
        (Some(token), None) => {
            let Some(issuer) = &provider.settings.token else {
                return Err(ApiError::BadRequest(format!(
                    "provider {} has no [token] settings, so it accepts no id_token",
                    provider.id
                )));
            };
            let verified = state
                .verifier
                .verify(provider.id.as_str(), issuer, &token)
                .await
                .map_err(|e| {
                    if e.is_unavailable() {
                        return ApiError::Unavailable(e.to_string());
                    }
                    tracing::info!(
                        message = "Refused an ID token.",
                        provider = provider.id.as_str(),
                        token_error = e.code()
                    );
                    ApiError::Unauthorized(token_reason(&e))
                })?;
            crate::claims::kratos_claims(&verified)
                .map_err(|e| ApiError::Unauthorized(e.to_string()))?
        }
        (None, Some(claims)) => {
            if !trusted {
                return Err(ApiError::Forbidden(
                    "this API secret may only send id_token; raw claims need a trusted secret (api.trusted_secrets)".into(),
                ));
            }
            for required in ["sub", "iss"] {
                if !claims.get(required).is_some_and(Value::is_string) {
                    return Err(ApiError::BadRequest(format!(
                        "claims.{required} must be a string"
                    )));
                }
            }
            Value::Object(claims)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "send either id_token or claims, not both".into(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "the body needs an id_token (or, for trusted callers, claims)".into(),
            ));
        }
    };
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("the claims have no `sub` (subject) string".into()))
        .and_then(|s| Subject::parse(s).map_err(|e| ApiError::BadRequest(e.to_string())))?;
    let login = Login {
        entry: EntryPoint::Api,
        provider,
        subject,
        claims: (&claims).into(),
        current: Current::ByCredential,
        kratos_budget: state.deadline,
        cleanup: vec![],
    };
    let outcome = tokio::time::timeout(state.deadline, state.logins.run(login))
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "Kratos did not answer within {}; nothing was written",
                humantime::format_duration(state.deadline)
            ))
        })??;
    let status = if outcome.action == Action::Denied {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(outcome_body(&outcome)))
}

fn token_reason(e: &TokenError) -> String {
    format!("the id_token was rejected: {e}")
}

/// The answer's body. A link is reported as the update it is (`credentials.oidc` first in
/// `changed`).
fn outcome_body(outcome: &Outcome) -> Value {
    let action = match outcome.action {
        Action::Linked => Action::Updated,
        other => other,
    };
    json!({
        "action": action.as_str(),
        "identity_id": outcome.identity_id.map(|id| id.to_string()),
        "changed": outcome.changed,
        "sessions_revoked": outcome.sessions_revoked,
        "reason": outcome.denial.as_ref().map(ToString::to_string),
        "code": outcome.denial.as_ref().map(|d| d.code()),
    })
}
