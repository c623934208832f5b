//! `kratos-jit serve`: the HTTP adapters around the login use case (actix-web).
//!
//! - [`api`]: `POST /v1/provision`, the provisioning API;
//! - [`hooks`]: `POST /v1/hooks/registration` and `/v1/hooks/login`, Kratos's web hooks;
//! - [`hop`]: `/hop/{provider}/…`, the claims hop (kratos-jit as an OpenID Provider);
//! - [`scim`]: `/scim/v2/{provider}/…`, each provider's SCIM 2.0 endpoint (when
//!   `scim.database_url` names a store);
//! - [`auth`]: the secrets each of them accepts;
//! - `GET /health/alive` (the process serves HTTP) and `GET /health/ready` (it can serve
//!   logins: [`crate::health`]; 200, or 503 naming each check that fails);
//! - [`metrics`]: `GET /metrics`, on the `metrics.listen` address only (its own listener).
//!
//! Every request runs in its context ([`in_context`]): its W3C trace ([`crate::trace`]), read
//! from its `traceparent`, with a `request` span whose `trace_id` field every log line of the
//! request shows (calls to Kratos and upstream IdPs pass the trace on), and a request id that
//! its audit events carry and its answer names in `X-Request-Id`.
//!
//! [`Application::build`] wires the use case from validated configuration and loaded providers;
//! every route shares one [`AppState`]. Each protocol turns the use case's outcome into its own
//! answer in its own module, in one place.
//!
//! Every route reads its body through [`read_body`]: a declared `Content-Length` over the
//! route's limit is refused before anything is read, and the whole body must arrive within
//! `body_timeout`, so a slow or silent client cannot hold a connection. Each listener serves at
//! most `max_connections` connections at once; the next ones wait in the kernel's backlog.

pub mod api;
pub mod auth;
pub mod hooks;
pub mod hop;
pub mod metrics;
pub mod scim;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::config::Config;
use crate::kratos::http::HttpKratos;
use crate::login::Logins;
use crate::mapper::{Isolation, Limits, MapperEngine, WorkerProgram};
use crate::provider::Providers;
use crate::schema::IdentitySchemas;
use crate::token::{TokenVerifier, VerifierOptions};
use auth::Secrets;
use hooks::HookSettings;
use hooks::triggers::{Hook, TriggerCache};

/// Everything a request handler needs, shared by every worker.
pub struct AppState {
    logins: Logins<HttpKratos>,
    verifier: TokenVerifier,
    /// Accepted API secrets; trusted ones may also send raw claims.
    secrets: Secrets,
    trusted_secrets: Secrets,
    hooks: HookSettings,
    triggers: TriggerCache,
    max_body_bytes: usize,
    body_timeout: Duration,
    deadline: Duration,
    hop: crate::hop::Hop,
    /// `hop.server_timing`: the hop's answers carry `Server-Timing`.
    server_timing: bool,
    /// The SCIM routes' store and secrets; `None` when `scim.database_url` is unset.
    scim: Option<scim::ScimState>,
    /// What `GET /health/ready` checks.
    readiness: Arc<crate::health::Readiness>,
    /// The Kratos client the readiness probe uses (the one the logins use).
    kratos: HttpKratos,
    /// What the use case, the Kratos client and the SCIM routes count ([`crate::metrics`]).
    metrics: crate::metrics::Metrics,
}

impl AppState {
    /// Wires the use case from validated configuration and loaded providers.
    pub fn new(
        config: &Config,
        providers: Providers,
        worker: WorkerProgram,
        store: Option<crate::store::Store>,
    ) -> anyhow::Result<AppState> {
        let scim = match store.clone() {
            Some(store) => Some(
                scim::ScimState::new(
                    store,
                    &providers,
                    config.scim.max_body_bytes,
                    &config.scim.dev_secrets,
                )
                .map_err(|errors| anyhow::anyhow!("SCIM: {}", errors.join("; ")))?
                .with_server_timing(config.scim.server_timing),
            ),
            None => {
                let enabled: Vec<&str> = providers
                    .iter()
                    .filter(|p| p.settings.scim.enabled)
                    .map(|p| p.id.as_str())
                    .collect();
                if !enabled.is_empty() {
                    tracing::warn!(
                        message = "SCIM is off: scim.database_url is unset, so the providers with [scim] enabled get no SCIM endpoint.",
                        providers = ?enabled,
                    );
                }
                None
            }
        };
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
        let hop = crate::hop::Hop::new(config, &providers)
            .map_err(|errors| anyhow::anyhow!("claims hop: {}", errors.join("; ")))?;
        let metrics = {
            let engine = engine.clone();
            crate::metrics::Metrics::new(&providers, move || engine.worker_restarts())
        };
        let kratos = HttpKratos::new(config.kratos.clone())
            .map_err(|e| anyhow::anyhow!("Kratos admin API settings: {e}"))?
            .with_metrics(metrics.clone());
        let verifier = TokenVerifier::new(VerifierOptions {
            clock_skew: config.token.clock_skew,
            http_timeout: config.token.http_timeout,
            min_refresh_interval: config.token.jwks_min_refresh,
            ..VerifierOptions::default()
        });
        let schemas = Arc::new(IdentitySchemas::builtin());
        let mut readiness = crate::health::Readiness::new(kratos.contact(), config.health)
            .with_mapper(engine.clone());
        if let Some(store) = store {
            readiness = readiness.with_store(store);
        }
        if let Some(keys) = hop.key_check() {
            if let Err(problem) = &keys {
                tracing::error!(message = "The claims hop's signing key check failed; /health/ready reports not ready.", problem = %problem);
            }
            readiness = readiness.with_hop(keys);
        }
        readiness.providers_loaded(providers.len());
        Ok(AppState {
            readiness: Arc::new(readiness),
            kratos: kratos.clone(),
            logins: Logins::new(kratos, engine, Arc::new(providers), schemas)
                .with_audit(crate::audit::Audit::open(&config.audit))
                .with_metrics(metrics.clone()),
            verifier,
            secrets: Secrets::new(&config.api.secrets),
            trusted_secrets: Secrets::new(&config.api.trusted_secrets),
            hooks: HookSettings {
                secrets: Secrets::new(&config.hooks.secrets),
                deadline: config.hooks.deadline,
                claims_max_age: config.hooks.claims_max_age,
                max_body_bytes: config.hooks.max_body_bytes,
                body_timeout: config.body_timeout,
            },
            triggers: TriggerCache::new(config.hooks.retry_cache_bytes),
            max_body_bytes: config.api.max_body_bytes,
            body_timeout: config.body_timeout,
            deadline: config.api.deadline,
            hop,
            server_timing: config.hop.server_timing,
            scim,
            metrics,
        })
    }
}

async fn registration_hook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (logins, settings) = (&state.logins, &state.hooks);
    let run = |body| hooks::registration(logins, settings, body);
    let hook = Hook::Registration;
    hooks::handle(&request, payload, hook, settings, &state.triggers, run).await
}

async fn login_hook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (logins, settings) = (&state.logins, &state.hooks);
    let run = |body| hooks::login(logins, settings, body);
    let hook = Hook::Login;
    hooks::handle(&request, payload, hook, settings, &state.triggers, run).await
}

/// Why a request's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("could not read the request body: {0}")]
    Unreadable(actix_web::Error),
}

impl BodyError {
    /// The HTTP status that answers it: 413, 408 or 400.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            BodyError::TimedOut(_) => 408,
            BodyError::Unreadable(_) => 400,
        }
    }
}

/// A request's whole body, of at most `limit` bytes, arriving within `timeout`. A declared
/// `Content-Length` over the limit is refused at once, without waiting for the body. After an
/// error the rest of the body is unread: answer with the connection closed.
pub async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match tokio::time::timeout(timeout, payload.to_bytes_limited(limit)).await {
        Ok(Ok(Ok(body))) => Ok(body),
        Ok(Ok(Err(error))) => Err(BodyError::Unreadable(error)),
        Ok(Err(_)) => Err(BodyError::TooLarge(limit)),
        Err(_) => Err(BodyError::TimedOut(timeout)),
    }
}

async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /health/ready`: 200 `{"status":"ok","checks":{…}}` when every check passes, else 503
/// `{"status":"unavailable","checks":{name: reason}}`. Logs nothing (probes come every few
/// seconds).
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = state.readiness.report().await;
    let mut answer = if report.is_ready() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    answer
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(report.to_json())
}

async fn not_found() -> Result<HttpResponse, api::ApiError> {
    Err(api::ApiError::NotFound("no such endpoint".into()))
}

/// The routes, for the server and for in-process tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/provision", web::post().to(api::provision))
        .route("/v1/hooks/registration", web::post().to(registration_hook))
        .route("/v1/hooks/login", web::post().to(login_hook))
        .route("/health/alive", web::get().to(alive))
        .route("/health/ready", web::get().to(ready))
        .configure(hop::configure)
        .configure(scim::configure);
}

/// Runs every request in its context, set up once here:
///
/// - its W3C trace ([`crate::trace`]), from its `traceparent` (a new one when there is none or
///   it is invalid), and a `request` span whose `trace_id` field every log line of the request
///   shows. The span is at ERROR level so that it is enabled whatever `KRATOS_JIT_LOG` lets
///   through: a span's level only decides whether it exists, and its fields then show on the
///   lines of every level inside it;
/// - a fresh request id, the audit events' `request_id` ([`crate::audit`]), answered in
///   `X-Request-Id`.
pub fn in_context<S, B>(
    request: actix_web::dev::ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>>
+ use<S, B>
where
    S: actix_web::dev::Service<
            actix_web::dev::ServiceRequest,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
{
    use tracing::Instrument as _;
    let headers = request.headers();
    let trace = crate::trace::RequestTrace::from_headers(
        headers
            .get_all(crate::trace::TRACEPARENT)
            .map(|v| v.as_bytes()),
        headers.get(crate::trace::TRACESTATE).map(|v| v.as_bytes()),
    );
    let span = tracing::error_span!("request", trace_id = %trace.trace_id());
    let id = crate::audit::new_request_id();
    let header = actix_web::http::header::HeaderValue::from_str(&id).ok();
    let context = crate::audit::RequestContext {
        request_id: Some(id),
        trigger_id: None,
    };
    let call = service.call(request);
    let answered = async move {
        let mut response = crate::audit::scope(context, call).await?;
        if let Some(header) = header {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-request-id"),
                header,
            );
        }
        Ok(response)
    };
    crate::trace::scope(trace, answered.instrument(span))
}

/// The SCIM store `scim.database_url` names, opened and migrated; `None` when it is unset.
pub async fn open_scim_store(config: &Config) -> anyhow::Result<Option<crate::store::Store>> {
    match &config.scim.database_url {
        Some(url) => crate::store::Store::open(url)
            .await
            .map(Some)
            .map_err(|e| anyhow::anyhow!("scim.database_url: {e}")),
        None => Ok(None),
    }
}

/// A built server, bound and ready to run.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    /// The metrics server on `metrics.listen`, and its port; `None` when it is unset.
    metrics: Option<(actix_web::dev::Server, u16)>,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and builds the server.
    pub fn build(
        config: &Config,
        providers: Providers,
        worker: WorkerProgram,
    ) -> anyhow::Result<Application> {
        Self::build_with_store(config, providers, worker, None)
    }

    /// [`Application::build`] with the SCIM store opened by [`open_scim_store`] (`None`: SCIM
    /// off).
    pub fn build_with_store(
        config: &Config,
        providers: Providers,
        worker: WorkerProgram,
        store: Option<crate::store::Store>,
    ) -> anyhow::Result<Application> {
        let state = web::Data::new(AppState::new(config, providers, worker, store)?);
        // The readiness probe of Kratos runs beside the server until the state is dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(crate::health::probe_kratos(
                state.kratos.clone(),
                Arc::downgrade(&state.readiness),
                config.health.kratos_interval,
            ));
        }
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let port = listener.local_addr()?.port();
        let metrics = match config.metrics.listen {
            Some(address) => {
                let listener = TcpListener::bind(address).map_err(|e| {
                    anyhow::anyhow!("metrics.listen: cannot listen on {address}: {e}")
                })?;
                let port = listener.local_addr()?.port();
                Some((metrics::server(listener, state.metrics.clone())?, port))
            }
            None => None,
        };
        // actix caps connections per worker thread: the listener's cap is split evenly among
        // them, never exceeding `max_connections` (one worker per core, as actix's default).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = cores.min(config.max_connections).max(1);
        let server = HttpServer::new(move || {
            App::new()
                .wrap_fn(in_context)
                .app_data(state.clone())
                .configure(configure)
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .max_connections(config.max_connections / workers)
        // After an early answer (408, 413) actix reads and drops what the client still sends
        // for this long, so that the answer is not lost to a reset, then closes (its default).
        .client_disconnect_timeout(Duration::from_secs(1))
        .shutdown_timeout(10)
        // actix leaves Nagle's algorithm on; with delayed ACKs a response that leaves in two
        // segments can then wait 40 ms for the second.
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Application {
            server,
            port,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on (`metrics.listen`), if it is.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests (graceful shutdown); the
    /// metrics server stops after the application's.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            actix_web::rt::spawn(server);
            handle
        });
        let served = self.server.await;
        if let Some(handle) = metrics {
            handle.stop(true).await;
        }
        served
    }
}
