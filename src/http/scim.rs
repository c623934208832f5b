//! `/scim/v2/{provider}/…`: the SCIM 2.0 endpoints of each provider (RFC 7644), over
//! [`crate::scim::service`].
//!
//! - Discovery: `ServiceProviderConfig`, `ResourceTypes[/{id}]`, `Schemas[/{urn}]` (GET; any
//!   other method 405).
//! - `Users`, `Users/{id}`, `Groups`, `Groups/{id}` (GET, POST, PUT, PATCH, DELETE as RFC 7644
//!   §3 assigns them), `POST /.search` at the root and per type.
//!
//! Every request needs the provider's own bearer secret (`[scim] secrets_env` / `secrets_file`,
//! several for rotation): the header is trimmed and one case-insensitive `Bearer ` stripped
//! (Entra adds it, some clients do not), then compared in constant time against the digests of
//! that provider's secrets only. An unknown provider, or one without `[scim] enabled`, is 404.
//! Every error is a SCIM error body (`application/scim+json`); a 503 carries `Retry-After`.
//! Logs carry the provider, the route and the status — never a body value. Every answer is
//! counted (`kratos_jit_scim_requests_total`: provider, resource, method, status; an id that
//! names no provider is counted as `unknown`).
//!
//! With `scim.server_timing` on, every SCIM answer carries `Server-Timing: dep;dur=…,
//! app;dur=…` ([`crate::timing`]), as the hop's do: `dep` is the time the request spent in its
//! calls to the Kratos admin API and to the SCIM store, `app` the rest (kratos-jit's own work,
//! the mapper included). The SCIM benchmark (`bench/scim-load.sh`) subtracts `dep` from the
//! latency it measures.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, IF_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use tokio::time::Instant;

use super::auth::Secrets;
use super::{AppState, BodyError, read_body};
use crate::kratos::KratosAdmin;
use crate::provider::{Providers, SecretSource};
use crate::scim::service::{RETRY_AFTER_SECONDS, ScimService};
use crate::scim::{DEFAULT_PAGE_SIZE, ListQuery, Projection, ResourceKind, ScimError, discovery};
use crate::secret::Secret;
use crate::store::Store;

const SCIM_JSON: &str = "application/scim+json";

/// What the SCIM routes share: the store and each SCIM provider's secrets.
pub struct ScimState {
    store: Store,
    secrets: HashMap<String, Secrets>,
    max_body_bytes: usize,
    /// `scim.server_timing`: the answers carry `Server-Timing`.
    server_timing: bool,
}

impl ScimState {
    /// The secrets of every provider with `[scim] enabled`, read now (environment variables,
    /// then `dev` for the names it backs, or files). Every missing secret is reported.
    pub fn new(
        store: Store,
        providers: &Providers,
        max_body_bytes: usize,
        dev: &[(String, Secret)],
    ) -> Result<ScimState, Vec<String>> {
        let mut errors = Vec::new();
        let mut secrets = HashMap::new();
        for provider in providers.iter().filter(|p| p.settings.scim.enabled) {
            let mut found = Vec::new();
            for source in &provider.settings.scim.secrets {
                let value = match source {
                    SecretSource::Env(name) => std::env::var(name).ok().or_else(|| {
                        dev.iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, s)| s.expose().to_owned())
                    }),
                    SecretSource::File(path) => std::fs::read_to_string(path)
                        .ok()
                        .map(|text| text.trim().to_owned()),
                };
                match value.map(|v| v.trim().to_owned()) {
                    Some(v) if !v.is_empty() => found.push(Secret::new(v)),
                    _ => errors.push(format!(
                        "provider {}: the [scim] secret ({source}) is unset or empty",
                        provider.id
                    )),
                }
            }
            if provider.settings.scim.secrets.is_empty() {
                errors.push(format!(
                    "provider {}: [scim] enabled but no secrets_env or secrets_file",
                    provider.id
                ));
            }
            secrets.insert(provider.id.as_str().to_owned(), Secrets::new(&found));
        }
        if errors.is_empty() {
            Ok(ScimState {
                store,
                secrets,
                max_body_bytes,
                server_timing: false,
            })
        } else {
            Err(errors)
        }
    }
}

impl ScimState {
    /// With `on`, every SCIM answer carries `Server-Timing` (`scim.server_timing`).
    pub fn with_server_timing(mut self, on: bool) -> ScimState {
        self.server_timing = on;
        self
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/scim", web::to(handle))
        .route("/scim/{tail:.*}", web::to(handle));
}

fn answer(status: u16, body: &Value) -> HttpResponse {
    let mut response = HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    response.content_type(SCIM_JSON);
    if let Some(version) = body.pointer("/meta/version").and_then(Value::as_str)
        && let Ok(value) = HeaderValue::from_str(version)
    {
        response.insert_header(("ETag", value));
    }
    response.body(body.to_string())
}

fn error(error: &ScimError) -> HttpResponse {
    let mut response = answer(error.status, &error.to_json());
    if error.status == 503 {
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER_SECONDS),
        );
    }
    response
}

fn method_not_allowed() -> ScimError {
    ScimError::new(405, None, "this method is not allowed on this endpoint")
}

fn no_such_endpoint() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

/// The presented secret: trimmed, one case-insensitive `Bearer ` prefix removed.
fn presented_secret(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .trim();
    let secret = match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => &value[7..],
        _ => value,
    };
    Some(secret.trim())
}

fn query_value(request: &HttpRequest, key: &str) -> Option<String> {
    form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.into_owned())
}

fn projection(request: &HttpRequest, kind: ResourceKind) -> Result<Projection, ScimError> {
    let attributes = query_value(request, "attributes");
    let excluded = query_value(request, "excludedAttributes");
    Projection::parse(kind, attributes.as_deref(), excluded.as_deref())
}

async fn handle(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let response = timed(&request, payload, &state).await;
    let method = request.method().as_str();
    state
        .metrics
        .scim_request(request.path(), method, response.status().as_u16());
    response
}

/// The answer, with `Server-Timing` when `scim.server_timing` is on.
async fn timed(request: &HttpRequest, payload: web::Payload, state: &AppState) -> HttpResponse {
    if !state.scim.as_ref().is_some_and(|scim| scim.server_timing) {
        return respond(request, payload, state).await;
    }
    let started = Instant::now();
    let (mut response, waited) = crate::timing::measured(respond(request, payload, state)).await;
    if let Ok(value) =
        HeaderValue::from_str(&crate::timing::server_timing(started.elapsed(), waited))
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    response
}

async fn respond(request: &HttpRequest, payload: web::Payload, state: &AppState) -> HttpResponse {
    let path = request.path().to_owned();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (provider_id, rest) = match segments.as_slice() {
        ["scim", "v2", provider, rest @ ..] => (*provider, rest.to_vec()),
        _ => return error(&no_such_endpoint()),
    };
    let Some(scim) = state.scim.as_ref() else {
        return error(&no_such_endpoint());
    };
    let (Some(provider), Some(secrets)) = (
        state.logins.providers().get(provider_id),
        scim.secrets.get(provider_id),
    ) else {
        return error(&ScimError::not_found("no SCIM endpoint for this provider"));
    };
    if !presented_secret(request).is_some_and(|s| secrets.accepts(s)) {
        return error(&ScimError::new(
            401,
            None,
            "missing or wrong bearer secret for this provider's SCIM endpoint",
        ));
    }
    let base_url = {
        let info = request.connection_info();
        format!(
            "{}://{}/scim/v2/{}",
            info.scheme(),
            info.host(),
            provider.id
        )
    };
    let body = if matches!(
        *request.method(),
        actix_web::http::Method::POST
            | actix_web::http::Method::PUT
            | actix_web::http::Method::PATCH
    ) && !rest.first().is_some_and(|s| discovery::is_endpoint(s))
    {
        match read_body(request, payload, scim.max_body_bytes, state.body_timeout).await {
            Ok(bytes) => match crate::domain::input::parse(&bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    return error(&ScimError::invalid_syntax(format!(
                        "the request body is not valid JSON: {e}"
                    )));
                }
            },
            Err(e @ BodyError::TooLarge(_)) => {
                let mut response = error(&ScimError::payload_too_large(e.to_string()));
                response
                    .head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
                return response;
            }
            Err(e) => return error(&ScimError::new(e.status(), None, e.to_string())),
        }
    } else {
        None
    };
    let service = ScimService {
        logins: &state.logins,
        store: &scim.store,
        provider,
        base_url: &base_url,
        kratos_budget: state.deadline,
    };
    let deadline = state.deadline + Duration::from_secs(1);
    let result = tokio::time::timeout(deadline, route(request, &service, &rest, body.as_ref()))
        .await
        .unwrap_or_else(|_| {
            Err(ScimError::new(
                503,
                None,
                "the request did not complete in time; retry later",
            ))
        });
    match result {
        Ok((status, value)) => {
            let mut response = answer(status, &value);
            if status == 201
                && let Some(location) = value.pointer("/meta/location").and_then(Value::as_str)
                && let Ok(location) = HeaderValue::from_str(location)
            {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::LOCATION, location);
            }
            if status == 204 {
                // A PATCH's 204 still carries the new version.
                let mut no_content = HttpResponse::NoContent();
                if let Some(version) = value.pointer("/meta/version").and_then(Value::as_str)
                    && let Ok(version) = HeaderValue::from_str(version)
                {
                    no_content.insert_header(("ETag", version));
                }
                return no_content.finish();
            }
            response
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(
                    message = "A SCIM request failed.",
                    provider = provider.id.as_str(),
                    method = %request.method(),
                    status = e.status,
                );
            }
            error(&e)
        }
    }
}

fn resource_kind(name: &str) -> Option<ResourceKind> {
    match name {
        "Users" => Some(ResourceKind::User),
        "Groups" => Some(ResourceKind::Group),
        _ => None,
    }
}

async fn route<K: KratosAdmin>(
    request: &HttpRequest,
    service: &ScimService<'_, K>,
    rest: &[&str],
    body: Option<&Value>,
) -> Result<(u16, Value), ScimError> {
    use actix_web::http::Method;
    let method = request.method().clone();
    let base = service.base_url;
    let subject = service.provider.settings.scim.subject.as_str();
    let get_only = |value: Option<Value>| -> Result<(u16, Value), ScimError> {
        if method != Method::GET {
            return Err(method_not_allowed());
        }
        value
            .map(|v| (200, v))
            .ok_or_else(|| ScimError::not_found("no such resource type or schema"))
    };
    let body_or_empty = || body.cloned().unwrap_or(Value::Null);
    let if_match = request
        .headers()
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match rest {
        ["ServiceProviderConfig"] => get_only(Some(discovery::service_provider_config(
            base,
            DEFAULT_PAGE_SIZE,
        ))),
        ["ResourceTypes"] => get_only(Some(discovery::resource_types(base))),
        ["ResourceTypes", id] => get_only(discovery::resource_type_by_id(base, id)),
        ["Schemas"] => get_only(Some(discovery::schemas(base, subject))),
        ["Schemas", id] => get_only(discovery::schema_by_id(base, id, subject)),
        [".search"] => {
            if method != Method::POST {
                return Err(method_not_allowed());
            }
            let query = ListQuery::from_search_body(None, &body_or_empty())?;
            Ok((200, service.list(None, &query).await?))
        }
        [endpoint, ".search"] if resource_kind(endpoint).is_some() => {
            if method != Method::POST {
                return Err(method_not_allowed());
            }
            let kind = resource_kind(endpoint);
            let query = ListQuery::from_search_body(kind, &body_or_empty())?;
            Ok((200, service.list(kind, &query).await?))
        }
        [endpoint] if resource_kind(endpoint).is_some() => {
            let kind = resource_kind(endpoint).unwrap_or(ResourceKind::User);
            match method {
                Method::GET => {
                    let query = ListQuery::from_query_string(Some(kind), request.query_string())?;
                    Ok((200, service.list(Some(kind), &query).await?))
                }
                Method::POST => {
                    let projection = projection(request, kind)?;
                    let created = match kind {
                        ResourceKind::User => service.create_user(&body_or_empty()).await?,
                        ResourceKind::Group => service.create_group(&body_or_empty()).await?,
                    };
                    Ok((201, with_meta_kept(&projection, kind, &created)))
                }
                _ => Err(method_not_allowed()),
            }
        }
        [endpoint, id] if resource_kind(endpoint).is_some() => {
            let kind = resource_kind(endpoint).unwrap_or(ResourceKind::User);
            let projection = projection(request, kind)?;
            let if_match = if_match.as_deref();
            let value = match (kind, method) {
                (ResourceKind::User, Method::GET) => service.get_user(id).await?,
                (ResourceKind::Group, Method::GET) => service.get_group(id).await?,
                (ResourceKind::User, Method::PUT) => {
                    service.replace_user(id, &body_or_empty(), if_match).await?
                }
                (ResourceKind::Group, Method::PUT) => {
                    service
                        .replace_group(id, &body_or_empty(), if_match)
                        .await?
                }
                (ResourceKind::User, Method::PATCH) => {
                    service.patch_user(id, &body_or_empty(), if_match).await?
                }
                (ResourceKind::Group, Method::PATCH) => {
                    let patched = service.patch_group(id, &body_or_empty(), if_match).await?;
                    // Entra and Okta both document 204 for a group PATCH, which spares them a
                    // member list they do not read (RFC 7644 §3.5.2 allows either); a request
                    // that names `attributes` gets the group.
                    if projection.is_default() {
                        return Ok((204, patched));
                    }
                    patched
                }
                (ResourceKind::User, Method::DELETE) => {
                    service.delete_user(id).await?;
                    return Ok((204, Value::Null));
                }
                (ResourceKind::Group, Method::DELETE) => {
                    service.delete_group(id).await?;
                    return Ok((204, Value::Null));
                }
                _ => return Err(method_not_allowed()),
            };
            Ok((200, with_meta_kept(&projection, kind, &value)))
        }
        _ => Err(no_such_endpoint()),
    }
}

/// The projected resource, keeping `meta` (for the `Location` and `ETag` headers).
fn with_meta_kept(projection: &Projection, kind: ResourceKind, resource: &Value) -> Value {
    let mut out = projection.apply(kind, resource);
    if let (Some(object), Some(meta)) = (out.as_object_mut(), resource.get("meta"))
        && !object.contains_key("meta")
        && projection.is_default()
    {
        object.insert("meta".into(), meta.clone());
    }
    out
}
