//! `kratos-jit serve`: the HTTP adapters around the login use case (actix-web).
//!
//! - [`api`]: `POST /v1/provision`, the provisioning API;
//! - [`hooks`]: `POST /v1/hooks/registration` and `/v1/hooks/login`, Kratos's web hooks;
//! - [`auth`]: the secrets each of them accepts;
//! - `GET /health/alive`.
//!
//! [`Application::build`] wires the use case from validated configuration and loaded providers;
//! every route shares one [`AppState`]. Each protocol turns the use case's outcome into its own
//! answer in its own module, in one place.

pub mod api;
pub mod auth;
pub mod hooks;

use std::net::TcpListener;
use std::sync::Arc;

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
use hooks::triggers::TriggerCache;

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
    deadline: std::time::Duration,
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
        let kratos = HttpKratos::new(config.kratos.clone())
            .map_err(|e| anyhow::anyhow!("Kratos admin API settings: {e}"))?;
        let verifier = TokenVerifier::new(VerifierOptions {
            clock_skew: config.token.clock_skew,
            http_timeout: config.token.http_timeout,
            min_refresh_interval: config.token.jwks_min_refresh,
            ..VerifierOptions::default()
        });
        let schemas = Arc::new(IdentitySchemas::builtin());
        Ok(AppState {
            logins: Logins::new(kratos, engine, Arc::new(providers), schemas),
            verifier,
            secrets: Secrets::new(&config.api.secrets),
            trusted_secrets: Secrets::new(&config.api.trusted_secrets),
            hooks: HookSettings {
                secrets: Secrets::new(&config.hooks.secrets),
                deadline: config.hooks.deadline,
                claims_max_age: config.hooks.claims_max_age,
                max_body_bytes: config.api.max_body_bytes,
            },
            triggers: TriggerCache::new(std::time::Duration::from_secs(600), 100_000),
            max_body_bytes: config.api.max_body_bytes,
            deadline: config.api.deadline,
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
    hooks::handle(&request, payload, settings, &state.triggers, run).await
}

async fn login_hook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (logins, settings) = (&state.logins, &state.hooks);
    let run = |body| hooks::login(logins, settings, body);
    hooks::handle(&request, payload, settings, &state.triggers, run).await
}

async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, api::ApiError> {
    Err(api::ApiError::NotFound("no such endpoint".into()))
}

/// The routes, for the server and for in-process tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/provision", web::post().to(api::provision))
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
