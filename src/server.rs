//! `kratos-jit serve`: the provisioning API over HTTP (actix-web).
//!
//! `POST /v1/provision` takes `{"provider": ID, "id_token": JWT}` — or, from a trusted caller,
//! `{"provider": ID, "claims": {...}}` — and answers
//! `{"action": "created"|"updated"|"unchanged"|"denied", "identity_id", "changed", "reason"}`:
//! 200 for created/updated/unchanged, 403 for denied, 400 for a malformed request, 401 for a
//! missing/wrong API secret or a rejected token, 404 for an unknown provider, 413 for a body over
//! the limit, 503 when Kratos (or the issuer's keys) cannot be reached within the deadline.
//! Errors answer `{"error": {"code", "message"}}` with a message that says what is wrong; all
//! error-to-HTTP mapping is in [`ApiError`].
//!
//! Nothing from a request body — token, claims, traits — is ever logged; the logs carry the
//! provider, a hash of the subject, the identity id and the action.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::hooks::{self, HookSettings, TriggerCache};
use crate::kratos::http::{HttpKratos, KratosSettings};
use crate::mapper::{Isolation, Limits, MapperEngine, WorkerProgram};
use crate::provider::Providers;
use crate::provision::{Action, Outcome, ProvisionError, Provisioner};
use crate::schema::IdentitySchemas;
use crate::token::{IssuerSettings, TokenError, TokenVerifier, VerifierOptions};

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
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(json!({"error": {"code": status.as_u16(), "message": self.to_string()}}))
    }
}

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::UnknownProvider(p) => {
                ApiError::NotFound(format!("unknown provider `{p}`"))
            }
            ProvisionError::NoSubject => ApiError::BadRequest(e.to_string()),
            ProvisionError::Kratos(k) if k.is_retryable() => ApiError::Unavailable(format!(
                "Kratos could not be reached in time; nothing was written ({k})"
            )),
            ProvisionError::Kratos(k) => ApiError::BadGateway(format!(
                "Kratos refused the change; nothing was written ({k})"
            )),
            ProvisionError::Engine(m) => ApiError::Unavailable(m.to_string()),
        }
    }
}

/// Everything a request handler needs, shared by every worker.
pub struct AppState {
    provisioner: Provisioner<HttpKratos>,
    verifier: TokenVerifier,
    issuers: HashMap<String, IssuerSettings>,
    /// SHA-256 of each accepted secret; trusted ones may also send raw claims.
    secrets: Vec<[u8; 32]>,
    trusted_secrets: Vec<[u8; 32]>,
    hooks: HookSettings,
    triggers: TriggerCache,
    max_body_bytes: usize,
    deadline: std::time::Duration,
}

pub(crate) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `presented` is one of the secrets whose digests are `known`. Digests are compared in
/// constant time, against every known secret, so neither timing nor length tells how close a
/// guess was.
pub(crate) fn secret_matches(known: &[[u8; 32]], presented: &str) -> bool {
    let presented = digest(presented);
    known
        .iter()
        .fold(false, |found, k| found | bool::from(k.ct_eq(&presented)))
}

impl AppState {
    /// Wires the use case from validated configuration and loaded providers.
    pub fn new(
        config: &Config,
        providers: Providers,
        worker: WorkerProgram,
    ) -> anyhow::Result<AppState> {
        let limits = Limits {
            timeout: config.mapper.timeout,
            ..Limits::default()
        };
        let engine = MapperEngine::start(
            providers.mapper_sources(),
            limits,
            config.mapper.workers,
            Isolation::Processes(worker),
        )
        .map_err(|errors| anyhow::anyhow!("mappers failed to compile: {errors:?}"))?;
        let kratos = HttpKratos::new(KratosSettings {
            admin_url: config.kratos.admin_url.clone(),
            bearer_token: config.kratos.bearer_token.clone(),
            basic_auth: None,
            request_timeout: config.kratos.request_timeout,
            deadline: config.kratos.deadline,
            max_retries: config.kratos.max_retries,
        })
        .map_err(|e| anyhow::anyhow!("Kratos admin API settings: {e:?}"))?;
        // The provider loader has checked every `[token]` table already.
        let issuers: HashMap<String, IssuerSettings> = providers
            .iter()
            .filter_map(|p| Some((p.id.to_string(), p.settings.token.clone()?)))
            .collect();
        let digests = |list: &[Secret]| -> Vec<[u8; 32]> {
            list.iter().map(|s| digest(s.expose())).collect()
        };
        let verifier = TokenVerifier::new(VerifierOptions {
            clock_skew: config.token.clock_skew,
            http_timeout: config.token.http_timeout,
            min_refresh_interval: config.token.jwks_min_refresh,
            ..VerifierOptions::default()
        });
        let schemas = Arc::new(IdentitySchemas::builtin());
        Ok(AppState {
            provisioner: Provisioner::new(kratos, engine, Arc::new(providers), schemas),
            verifier,
            issuers,
            secrets: digests(&config.api.secrets),
            trusted_secrets: digests(&config.api.trusted_secrets),
            hooks: HookSettings {
                secrets: digests(&config.hooks.secrets),
                deadline: config.hooks.deadline,
                claims_max_age: config.hooks.claims_max_age,
                max_body_bytes: config.api.max_body_bytes,
            },
            triggers: TriggerCache::new(std::time::Duration::from_secs(600), 100_000),
            max_body_bytes: config.api.max_body_bytes,
            deadline: config.api.deadline,
        })
    }

    /// `Some(trusted)` for a known secret (see [`secret_matches`]).
    fn authenticate(&self, request: &HttpRequest) -> Option<bool> {
        let header = request.headers().get("Authorization")?.to_str().ok()?;
        let (scheme, secret) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let secret = secret.trim();
        if secret_matches(&self.trusted_secrets, secret) {
            Some(true)
        } else if secret_matches(&self.secrets, secret) {
            Some(false)
        } else {
            None
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionRequest {
    provider: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
}

async fn provision(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = provision_request(request, payload, state).await;
    if let Err(error) = &result {
        let status = error.status_code().as_u16();
        match error {
            // Token and authentication reasons name only alg, kid, iss, aud and times: safe to log.
            ApiError::Unauthorized(reason)
            | ApiError::Unavailable(reason)
            | ApiError::BadGateway(reason) => {
                tracing::warn!(message = "Refused a provisioning request.", status, %reason);
            }
            // Body errors may quote the caller's data: log the status only.
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
    let Some(trusted) = state.authenticate(&request) else {
        return Err(ApiError::Unauthorized(
            "missing or unknown API secret (Authorization: Bearer <secret>)".into(),
        ));
    };
    let limit = state.max_body_bytes;
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::TooLarge(limit))?
        .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
    let body: ProvisionRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be {{\"provider\": ID, \"id_token\": JWT}} or {{\"provider\": ID, \"claims\": {{...}}}}: {e}"
        ))
    })?;
    let provider = state
        .provisioner
        .providers()
        .get(&body.provider)
        .ok_or_else(|| ApiError::NotFound(format!("unknown provider `{}`", body.provider)))?;
    let claims = match (body.id_token, body.claims) {
        (Some(token), None) => {
            let Some(issuer) = state.issuers.get(provider.id.as_str()) else {
                return Err(ApiError::BadRequest(format!(
                    "provider {} has no [token] settings, so it accepts no id_token",
                    provider.id
                )));
            };
            let verified = state
                .verifier
                .verify(provider.id.as_str(), issuer, &token)
                .await
                .map_err(|e| match e {
                    e if e.is_unavailable() => ApiError::Unavailable(e.to_string()),
                    e => ApiError::Unauthorized(token_reason(&e)),
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
    let outcome = tokio::time::timeout(
        state.deadline,
        state.provisioner.provision(provider.id.as_str(), &claims),
    )
    .await
    .map_err(|_| {
        ApiError::Unavailable(format!(
            "Kratos did not answer within {:?}; nothing was written",
            state.deadline
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

fn outcome_body(outcome: &Outcome) -> Value {
    json!({
        "action": outcome.action,
        "identity_id": outcome.identity_id,
        "changed": outcome.changed,
        "reason": outcome.reason,
    })
}

async fn registration_hook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let provisioner = &state.provisioner;
    hooks::handle(
        &request,
        payload,
        &state.hooks,
        &state.triggers,
        |body| async move { hooks::registration(provisioner, body).await },
    )
    .await
}

async fn login_hook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (provisioner, settings) = (&state.provisioner, &state.hooks);
    hooks::handle(
        &request,
        payload,
        &state.hooks,
        &state.triggers,
        |body| async move {
            hooks::login(
                provisioner,
                body,
                settings.claims_max_age,
                settings.deadline,
            )
            .await
        },
    )
    .await
}

async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

/// The routes, for the server and for in-process tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/provision", web::post().to(provision))
        .route("/v1/hooks/registration", web::post().to(registration_hook))
        .route("/v1/hooks/login", web::post().to(login_hook))
        .route("/health/alive", web::get().to(alive));
}

/// A built server, bound and ready to run.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and builds the server.
    pub fn build(
        config: &Config,
        providers: Providers,
        worker: WorkerProgram,
    ) -> anyhow::Result<Application> {
        let state = web::Data::new(AppState::new(config, providers, worker)?);
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(configure)
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(10)
        // actix leaves Nagle's algorithm on; with delayed ACKs a response that leaves in two
        // segments can then wait 40 ms for the second.
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Application { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests (graceful shutdown).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
