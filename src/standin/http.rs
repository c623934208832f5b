//! The stand-in's HTTP surface: one dispatcher that logs the request, applies the active fault,
//! routes by method and path, and turns every error into Kratos's `errorGeneric` envelope.
//!
//! Routing is done by hand rather than with actix extractors so that no request, however
//! malformed, is answered by actix's own (non-Kratos) error bodies.

use super::LoggedRequest;
use super::error::ApiError;
use super::identity::{CREDENTIAL_TYPES, CredentialView};
use super::state::{RequestFault, StandInState};
use super::store::{CreateIdentityBody, ListFilter, UpdateIdentityBody};
use actix_web::http::header::{LINK, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::time::SystemTime;
use uuid::Uuid;

/// Kratos's default and maximum keyset page sizes (docs/kratos.md §3.1, §7).
const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 500;
/// `ids` accepts at most this many values (`parseListIdentitiesParameters`).
const MAX_IDS: usize = 500;
/// The first page's token: the nil UUID (`identity.DefaultPageToken`).
const FIRST_PAGE_TOKEN: Uuid = Uuid::nil();

type Answer = Result<HttpResponse, ApiError>;

/// The one actix service of the stand-in.
pub(crate) async fn dispatch(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<StandInState>,
) -> HttpResponse {
    // A sidecar's readiness probe asks the health checks every few seconds: they are counted
    // apart and only faults aimed at them touch them, so a test's log and fault counts see
    // the identity API alone.
    let health = is_health_check(request.path());
    let fault = if health {
        state.count_health_check();
        state.health_fault(request.method().as_str(), request.path())
    } else {
        state.record(LoggedRequest {
            method: request.method().as_str().to_owned(),
            path: request.path().to_owned(),
            query: request.query_string().to_owned(),
            body: logged_body(&body),
            traceparent: request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        state.request_fault(request.method().as_str(), request.path())
    };
    let response = match fault {
        RequestFault::Fail(code) => error_response(&ApiError::status(code)),
        RequestFault::Delay(delay) => {
            actix_web::rt::time::sleep(delay).await;
            route(&request, &body, &state).unwrap_or_else(|e| error_response(&e))
        }
        RequestFault::None => route(&request, &body, &state).unwrap_or_else(|e| error_response(&e)),
    };
    tracing::debug!(
        method = %request.method(),
        path = request.path(),
        status = response.status().as_u16(),
        "Kratos stand-in answered."
    );
    response
}

/// Kratos's health checks on the admin port: `/health/{alive,ready}`, also under `/admin`.
fn is_health_check(path: &str) -> bool {
    matches!(
        path,
        "/health/alive" | "/health/ready" | "/admin/health/alive" | "/admin/health/ready"
    )
}

fn route(request: &HttpRequest, body: &[u8], state: &StandInState) -> Answer {
    let segments: Vec<String> = request
        .path()
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method();
    match segments.as_slice() {
        ["admin", "identities"] => match *method {
            Method::GET => list_identities(request, state),
            Method::POST => create_identity(body, state),
            // `batchPatchIdentities` exists in Kratos; a JIT sidecar has no use for it.
            Method::PATCH => Err(ApiError::status(501)
                .with_reason("The Kratos stand-in does not implement batchPatchIdentities (PATCH /admin/identities).")),
            _ => Err(method_not_allowed()),
        },
        ["admin", "identities", "by", "external", external_id] if !external_id.is_empty() => match *method {
            Method::GET => get_identity_by_external_id(request, external_id, state),
            _ => Err(method_not_allowed()),
        },
        ["admin", "identities", id] if !id.is_empty() => {
            // `x.ParseUUID` is `uuid.FromStringOrNil`: a malformed id looks up the nil UUID and
            // answers 404, not 400.
            let id = Uuid::parse_str(id).unwrap_or(Uuid::nil());
            match *method {
                Method::GET => get_identity(request, id, state),
                Method::PUT => update_identity(id, body, state),
                Method::PATCH => patch_identity(id, body, state),
                Method::DELETE => delete_identity(id, state),
                _ => Err(method_not_allowed()),
            }
        }
        ["admin", "identities", id, "sessions"] if !id.is_empty() => {
            // The session handlers parse strictly (`uuid.FromString`) and answer 400.
            let id = parse_uuid_strictly(id)?;
            match *method {
                Method::GET => list_sessions(request, id, state),
                Method::POST => create_session(id, state),
                Method::DELETE => delete_sessions(id, state),
                _ => Err(method_not_allowed()),
            }
        }
        // Kratos serves its health checks on the admin port both at the root (`isAlive`,
        // `isReady` in its API spec) and under `/admin` (what docker-compose.yml probes).
        ["health", "alive" | "ready"] | ["admin", "health", "alive" | "ready"] => match *method {
            Method::GET => Ok(HttpResponse::Ok().json(json!({ "status": "ok" }))),
            _ => Err(method_not_allowed()),
        },
        _ => Err(ApiError::status(404)),
    }
}

fn list_identities(request: &HttpRequest, state: &StandInState) -> Answer {
    let query = query_pairs(request)?;
    let mut filters = Vec::new();
    let ids = all_values(&query, "ids");
    if !ids.is_empty() {
        let ids = ids
            .iter()
            .map(|v| {
                Uuid::parse_str(v).map_err(|_| {
                    ApiError::bad_request_reason(format!(
                        "Invalid UUID value `{v}` for parameter `ids`."
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.len() > MAX_IDS {
            return Err(ApiError::bad_request_reason(
                "The number of ids to filter must not exceed 500.",
            ));
        }
        filters.push(ListFilter::Ids(ids));
    }
    if let Some(organization) = first_value(&query, "organization_id") {
        let organization = Uuid::parse_str(organization).map_err(|_| {
            ApiError::bad_request_reason(format!(
                "Invalid UUID value `{organization}` for parameter `organization_id`."
            ))
        })?;
        filters.push(ListFilter::Organization(organization));
    }
    let mut expand_credentials = false;
    if let Some(identifier) = first_value(&query, "credentials_identifier") {
        filters.push(ListFilter::CredentialsIdentifier(identifier.to_owned()));
        expand_credentials = true;
    }
    if let Some(prefix) = first_value(&query, "preview_credentials_identifier_similar") {
        filters.push(ListFilter::CredentialsIdentifierSimilar(prefix.to_owned()));
        expand_credentials = true;
    }
    let declassify = include_credential(&query)?;
    expand_credentials |= !declassify.is_empty();
    if filters.len() > 1 {
        return Err(ApiError::bad_request_reason(
            "You cannot combine multiple filters in this API",
        ));
    }
    let filter = filters.pop().unwrap_or(ListFilter::All);
    let page_size = match first_value(&query, "page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw.parse::<i64>().map_err(|_| {
            ApiError::bad_request_message(format!("strconv.Atoi: parsing {raw:?}: invalid syntax"))
        })?,
    }
    // Out-of-range sizes are clamped, not refused (docs/kratos.md §7).
    .clamp(1, MAX_PAGE_SIZE);
    let after = match first_value(&query, "page_token") {
        None => None,
        Some(token) => Some(Uuid::parse_str(token).map_err(|_| {
            ApiError::bad_request_reason(
                "The page_token is invalid; use the one from the Link header.",
            )
        })?),
    };
    let size = usize::try_from(page_size).unwrap_or(1);
    let view = if expand_credentials {
        CredentialView::Declassified(&declassify)
    } else {
        CredentialView::Hidden
    };
    let base_url = state.base_url();
    let (page, next) = state.with_store(|store| {
        let (page, next) = store.list(&filter, after, size);
        let page: Vec<Value> = page
            .iter()
            .map(|i| i.render(&base_url, view, true))
            .collect();
        (page, next)
    });
    Ok(HttpResponse::Ok()
        .insert_header((LINK, link_header(request.path(), &query, page_size, next)))
        .json(page))
}

fn create_identity(body: &[u8], state: &StandInState) -> Answer {
    let body = CreateIdentityBody::from_slice(body)?;
    let base_url = state.base_url();
    let (id, identity) = state.with_store(|store| {
        store.create(body, SystemTime::now()).map(|i| {
            (
                i.id,
                i.render(&base_url, CredentialView::WithoutConfig, true),
            )
        })
    })?;
    // `WriteCreated(SelfAdminURL + /identities/<id>)`, docs/kratos.md §3.3.
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("{base_url}/identities/{id}")))
        .json(identity))
}

fn get_identity(request: &HttpRequest, id: Uuid, state: &StandInState) -> Answer {
    // Kratos looks the identity up (404) before it validates `include_credential` (400).
    let declassify = query_pairs(request).and_then(|query| include_credential(&query));
    let base_url = state.base_url();
    state.with_store(|store| {
        let identity = store.get(id).ok_or_else(ApiError::no_rows)?;
        let declassify = declassify?;
        let rendered = identity.render(&base_url, CredentialView::Declassified(&declassify), true);
        Ok(HttpResponse::Ok().json(rendered))
    })
}

fn get_identity_by_external_id(
    request: &HttpRequest,
    external_id: &str,
    state: &StandInState,
) -> Answer {
    let declassify = query_pairs(request).and_then(|query| include_credential(&query));
    let base_url = state.base_url();
    state.with_store(|store| {
        let identity = store
            .get_by_external_id(external_id)
            .ok_or_else(ApiError::no_rows)?;
        let declassify = declassify?;
        let rendered = identity.render(&base_url, CredentialView::Declassified(&declassify), true);
        Ok(HttpResponse::Ok().json(rendered))
    })
}

fn update_identity(id: Uuid, body: &[u8], state: &StandInState) -> Answer {
    let body = UpdateIdentityBody::from_slice(body)?;
    let base_url = state.base_url();
    let identity = state.with_store(|store| {
        store
            .update(id, body, SystemTime::now())
            .map(|i| i.render(&base_url, CredentialView::WithoutConfig, true))
    })?;
    Ok(HttpResponse::Ok().json(identity))
}

fn patch_identity(id: Uuid, body: &[u8], state: &StandInState) -> Answer {
    let base_url = state.base_url();
    let identity = state.with_store(|store| {
        store
            .patch(id, body, &base_url, SystemTime::now())
            .map(|i| i.render(&base_url, CredentialView::WithoutConfig, true))
    })?;
    Ok(HttpResponse::Ok().json(identity))
}

fn delete_identity(id: Uuid, state: &StandInState) -> Answer {
    state.with_store(|store| store.delete(id))?;
    Ok(HttpResponse::NoContent().finish())
}

fn list_sessions(request: &HttpRequest, id: Uuid, state: &StandInState) -> Answer {
    let query = query_pairs(request)?;
    let active = match first_value(&query, "active") {
        None => None,
        Some(raw) => Some(
            parse_go_bool(raw)
                .ok_or_else(|| ApiError::bad_request_message("could not parse parameter active"))?,
        ),
    };
    let base_url = state.base_url();
    let sessions = state.with_store(|store| store.sessions_of(id, active, &base_url));
    Ok(HttpResponse::Ok().json(sessions))
}

/// Not a Kratos endpoint: the stand-in's door for what Kratos does when a login completes (it
/// starts a session), so that `serve --dev`'s walkthrough can show a session end. 201 with the
/// session as the list shows it; an unknown identity is a 404.
fn create_session(id: Uuid, state: &StandInState) -> Answer {
    let base_url = state.base_url();
    let session = state.with_store(|store| {
        let session = store.add_session(id, SystemTime::now())?.to_string();
        Ok::<_, ApiError>(
            store
                .sessions_of(id, None, &base_url)
                .into_iter()
                .find(|s| s["id"] == session.as_str()),
        )
    })?;
    Ok(HttpResponse::Created().json(session))
}

fn delete_sessions(id: Uuid, state: &StandInState) -> Answer {
    state.with_store(|store| store.delete_sessions_of(id))?;
    Ok(HttpResponse::NoContent().finish())
}

fn error_response(error: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(error.to_json())
}

fn method_not_allowed() -> ApiError {
    ApiError::status(405)
}

/// `include_credential` values; an unknown credential type is a 400.
fn include_credential(query: &[(String, String)]) -> Result<Vec<String>, ApiError> {
    all_values(query, "include_credential")
        .into_iter()
        .map(|v| {
            if CREDENTIAL_TYPES.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(ApiError::bad_request_reason(format!(
                    "Invalid value `{v}` for parameter `include_credential`."
                )))
            }
        })
        .collect()
}

/// The `Link` header of a keyset page, relative like Kratos's (docs/kratos.md §7): the request's path
/// and query with `page_size` and `page_token` set, keys sorted as Go's `url.Values.Encode`.
fn link_header(
    path: &str,
    query: &[(String, String)],
    page_size: i64,
    next: Option<Uuid>,
) -> String {
    let link = |token: Uuid, rel: &str| {
        let mut pairs: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| k != "page_size" && k != "page_token")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push(("page_size", page_size.to_string()));
        pairs.push(("page_token", token.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect();
        format!("<{path}?{}>; rel=\"{rel}\"", encoded.join("&"))
    };
    let mut header = link(FIRST_PAGE_TOKEN, "first");
    if let Some(next) = next {
        header.push(',');
        header.push_str(&link(next, "next"));
    }
    header
}

fn query_pairs(request: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request_message(format!("invalid query string: {e}")))
}

/// `url.Values.Get(key)` treated as absent when empty, as Kratos's handlers do.
fn first_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn all_values<'a>(query: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    query
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `uuid.FromString` with gofrs/uuid's error wording, for the session endpoints.
fn parse_uuid_strictly(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        let message = if [32, 36, 38, 41, 45].contains(&raw.len()) {
            format!("uuid: incorrect UUID format in string {raw:?}")
        } else {
            format!(
                "uuid: incorrect UUID length {} in string {raw:?}",
                raw.len()
            )
        };
        ApiError::bad_request_message(message)
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The body as the request log keeps it: `None` when empty, the JSON when it parses, else the
/// raw text as a JSON string.
fn logged_body(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    )
}

/// Decodes `%XX` escapes of one path segment (a `+` stays a `+` in a path).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `url.QueryEscape`: unreserved characters stay, space becomes `+`, the rest `%XX`.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_matches_go() {
        assert_eq!(query_escape("acme-okta:00u1 x/y"), "acme-okta%3A00u1+x%2Fy");
        assert_eq!(query_escape("a.b_c~d"), "a.b_c~d");
    }

    #[test]
    fn percent_decode_keeps_invalid_escapes_and_plus() {
        assert_eq!(percent_decode("a%3Ab%2Fc"), "a:b/c");
        assert_eq!(percent_decode("100%+x%zz"), "100%+x%zz");
    }

    #[test]
    fn link_header_is_relative_sorted_and_keeps_other_parameters() {
        let token = Uuid::parse_str("11111111-1111-4111-8111-111111111111").expect("uuid");
        let query = vec![
            ("page_size".to_owned(), "3".to_owned()),
            ("ids".to_owned(), "b".to_owned()),
            ("ids".to_owned(), "a".to_owned()),
        ];
        assert_eq!(
            link_header("/admin/identities", &query, 3, Some(token)),
            "</admin/identities?ids=b&ids=a&page_size=3&page_token=00000000-0000-0000-0000-000000000000>; rel=\"first\",\
             </admin/identities?ids=b&ids=a&page_size=3&page_token=11111111-1111-4111-8111-111111111111>; rel=\"next\""
        );
        assert!(!link_header("/admin/identities", &[], 250, None).contains("rel=\"next\""));
    }

    #[test]
    fn session_ids_are_parsed_strictly_with_gofrs_wording() {
        assert_eq!(
            parse_uuid_strictly("abc").unwrap_err().message,
            "uuid: incorrect UUID length 3 in string \"abc\""
        );
    }

    #[test]
    fn logged_bodies_keep_non_json_text() {
        assert_eq!(logged_body(b""), None);
        assert_eq!(logged_body(b"{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(logged_body(b"not json"), Some(json!("not json")));
    }
}
