//! `kratos-jit serve`: configuration, providers, logs, then the HTTP application until a signal.
//!
//! `--dev` puts fixed development secrets and an in-memory Kratos admin API (the stand-in, built
//! with the `standin` feature) on loopback underneath the configuration, so that the README's
//! walkthrough runs on a machine with nothing else installed. The file and real variables still
//! win over those defaults. It also turns the claims hop on for every provider with `[hop]`:
//! the committed development signing key (`dev/hop-signing-key.pem`), development client
//! secrets for the `client_secret_env` names those providers use (unless the variables are
//! set), and an embedded upstream OpenID Provider double on [`DEV_UPSTREAM`] standing in for
//! every provider's upstream, whose users are the providers' fixtures (`login_hint=<provider>/<case>`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::hop::KeyAlgorithm;
use crate::http::Application;
use crate::mapper::WorkerProgram;
use crate::provider::load_reporting;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to standard error, filtered by `KRATOS_JIT_LOG` (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KRATOS_JIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `serve --dev`: the secrets the README's walkthrough uses.
pub const DEV_API_SECRET: &str = "kratos-jit-dev-secret";
pub const DEV_HOOK_SECRET: &str = "kratos-jit-dev-hook-secret";
pub const DEV_SCIM_SECRET: &str = "kratos-jit-dev-scim-secret";
pub const DEV_KRATOS: &str = "127.0.0.1:4434";
/// `serve --dev`: the embedded upstream OpenID Provider double of the claims hop.
pub const DEV_UPSTREAM: &str = "127.0.0.1:4445";
/// `serve --dev`: the hop's issuer URLs start with this.
pub const DEV_PUBLIC_URL: &str = "http://127.0.0.1:4480";
/// `serve --dev`: the development-only hop signing key, relative to the repository root.
pub const DEV_HOP_KEY: &str = "dev/hop-signing-key.pem";
/// `serve --dev`: what Kratos's generic provider authenticates with at the hop.
pub const DEV_HOP_CLIENT_SECRET: &str = "kratos-jit-dev-hop-client-secret";
/// `serve --dev`: what kratos-jit authenticates with at the upstream double.
pub const DEV_UPSTREAM_SECRET: &str = "kratos-jit-dev-upstream-secret";

/// What `serve --dev` may change of its development set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevOptions {
    /// How the embedded upstream double signs its ID tokens: RS256 (as Ory Polis, Okta and
    /// Entra ID do; the default) or ES256 (for load benchmarks: an RS256 signature costs the
    /// double about 2 ms of CPU, which a 2-core machine cannot spare at hundreds of logins/s).
    pub upstream_alg: KeyAlgorithm,
}

impl Default for DevOptions {
    fn default() -> Self {
        DevOptions {
            upstream_alg: KeyAlgorithm::Rs256,
        }
    }
}

/// Runs `serve` until SIGINT/SIGTERM (`dev`: `serve --dev`). Exit status 2 for a
/// configuration or provider problem.
pub fn run(
    config_path: Option<&Path>,
    dev_options: Option<DevOptions>,
) -> anyhow::Result<ExitCode> {
    let dev = dev_options.is_some();
    if dev && !cfg!(feature = "standin") {
        anyhow::bail!(
            "serve --dev needs the in-memory Kratos, which this build leaves out (build with the `standin` feature)"
        );
    }
    // Development defaults come first so that the file and real variables still win.
    let dev_defaults = dev.then(dev_settings);
    let env = dev_defaults.into_iter().flatten().chain(std::env::vars());
    let mut config = match crate::config::load_from(config_path, env) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{} configuration problem(s); nothing started", errors.len());
            return Ok(ExitCode::from(2));
        }
    };
    let Some(providers) = load_reporting(&config.providers, &mut std::io::stderr()) else {
        eprintln!("nothing started");
        return Ok(ExitCode::from(2));
    };
    let worker = WorkerProgram::current_exe().context("locating the kratos-jit executable")?;
    let dev_kratos = dev
        .then(|| {
            std::net::TcpListener::bind(DEV_KRATOS).with_context(|| {
                format!("serve --dev: cannot start the in-memory Kratos on {DEV_KRATOS}")
            })
        })
        .transpose()?;
    let dev_upstream = dev
        .then(|| {
            std::net::TcpListener::bind(DEV_UPSTREAM).with_context(|| {
                format!("serve --dev: cannot start the upstream OpenID Provider double on {DEV_UPSTREAM}")
            })
        })
        .transpose()?;
    if let Some(listener) = &dev_upstream {
        let alg = dev_options.unwrap_or_default().upstream_alg;
        config.hop.dev = Some(dev_hop(&providers, listener.local_addr()?, alg));
    }
    if dev {
        config.scim.dev_secrets = dev_scim_secrets(&providers);
    }
    actix_web::rt::System::new().block_on(async move {
        let stand_in = dev_kratos.map(dev::start);
        if let Some(listener) = dev_upstream {
            let alg = dev_options.unwrap_or_default().upstream_alg;
            dev::start_upstream(listener, &config, &providers, alg)?;
        }
        let store = crate::http::open_scim_store(&config).await?;
        let app = Application::build_with_store(&config, providers, worker, store)?;
        tracing::info!(message = "Serving the provisioning API.", address = %config.listen.ip(), port = app.port());
        if let (Some(address), Some(port)) = (config.metrics.listen, app.metrics_port()) {
            tracing::info!(message = "Serving the metrics on /metrics.", address = %address.ip(), port);
        }
        if stand_in.is_some() {
            eprintln!("{}", dev_banner(app.port()));
        }
        app.run_until_stopped().await?;
        if let Some(stand_in) = stand_in {
            dev::stop(stand_in);
        }
        tracing::info!(message = "Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}

/// `serve --dev`'s settings, as `KRATOS_JIT__…` variables that the file and the real
/// environment override.
pub fn dev_settings() -> Vec<(String, String)> {
    [
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS",
            DEV_API_SECRET.to_owned(),
        ),
        ("KRATOS_JIT__HOOKS__SECRETS", DEV_HOOK_SECRET.to_owned()),
        (
            "KRATOS_JIT__KRATOS__ADMIN_URL",
            format!("http://{DEV_KRATOS}"),
        ),
        ("KRATOS_JIT__HOP__PUBLIC_URL", DEV_PUBLIC_URL.to_owned()),
        ("KRATOS_JIT__HOP__SIGNING_KEYS", DEV_HOP_KEY.to_owned()),
        (
            "KRATOS_JIT__SCIM__DATABASE_URL",
            "sqlite::memory:".to_owned(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into()
}

/// `serve --dev`'s SCIM secret for every `[scim] secrets_env` name the providers use; a variable
/// that is set still wins (it is read first).
pub fn dev_scim_secrets(
    providers: &crate::provider::Providers,
) -> Vec<(String, crate::secret::Secret)> {
    use crate::provider::SecretSource;
    providers
        .iter()
        .filter(|p| p.settings.scim.enabled)
        .flat_map(|p| &p.settings.scim.secrets)
        .filter_map(|source| match source {
            SecretSource::Env(name) => {
                Some((name.clone(), crate::secret::Secret::new(DEV_SCIM_SECRET)))
            }
            SecretSource::File(_) => None,
        })
        .collect()
}

/// `serve --dev`'s hop: the upstream double at `upstream` for every hop provider, and the
/// development secrets for the `client_secret_env` names those providers use.
pub fn dev_hop(
    providers: &crate::provider::Providers,
    upstream: std::net::SocketAddr,
    algorithm: KeyAlgorithm,
) -> crate::hop::DevUpstream {
    use crate::provider::SecretSource;
    let mut secrets = Vec::new();
    for hop in providers.iter().filter_map(|p| p.settings.hop.as_ref()) {
        for (source, value) in [
            (&hop.client_secret, DEV_HOP_CLIENT_SECRET),
            (&hop.upstream.client_secret, DEV_UPSTREAM_SECRET),
        ] {
            if let SecretSource::Env(name) = source {
                secrets.push((name.clone(), crate::secret::Secret::new(value)));
            }
        }
    }
    crate::hop::DevUpstream {
        issuer: format!("http://{upstream}"),
        secrets,
        algorithm,
    }
}

#[cfg(feature = "standin")]
pub use dev::start_upstream;

#[cfg(feature = "standin")]
mod dev {
    use std::collections::BTreeMap;

    use crate::config::Config;
    use crate::provider::{Providers, SecretSource};
    use crate::standin::upstream::{OpClient, OpShared, server};
    use crate::standin::{StandInState, run_until_stopped};

    /// Starts `serve --dev`'s upstream double (on the current actix system): one client per hop provider (its secret as the hop reads
    /// it), one user per fixture (`<provider>/<case>`, the fixture's `raw_claims`).
    pub fn start_upstream(
        listener: std::net::TcpListener,
        config: &Config,
        providers: &Providers,
        alg: super::KeyAlgorithm,
    ) -> anyhow::Result<()> {
        let dev = config.hop.dev.as_ref();
        let public_url = config
            .hop
            .public_url
            .as_deref()
            .unwrap_or(super::DEV_PUBLIC_URL);
        let mut clients = Vec::new();
        let mut users = BTreeMap::new();
        for provider in providers {
            let Some(hop) = &provider.settings.hop else {
                continue;
            };
            let secret = match &hop.upstream.client_secret {
                SecretSource::Env(name) => std::env::var(name).ok().or_else(|| {
                    dev.and_then(|d| d.secrets.iter().find(|(n, _)| n == name))
                        .map(|(_, s)| s.expose().to_owned())
                }),
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_owned()),
            };
            clients.push(OpClient {
                client_id: hop.upstream.client_id.clone(),
                client_secret: secret.unwrap_or_default(),
                redirect_uris: vec![format!(
                    "{}/hop/{}/callback",
                    public_url.trim_end_matches('/'),
                    provider.id
                )],
            });
            for fixture in &provider.fixtures {
                if let Some(raw) = fixture.claims.get("raw_claims") {
                    users.insert(format!("{}/{}", provider.id, fixture.name), raw.clone());
                }
            }
        }
        let op = OpShared::with_algorithm(clients, users, alg);
        actix_web::rt::spawn(server(listener, op)?);
        Ok(())
    }

    pub fn start(listener: std::net::TcpListener) -> StandInState {
        let state = StandInState::new();
        actix_web::rt::spawn(run_until_stopped(listener, state.clone()));
        state
    }

    pub fn stop(state: StandInState) {
        state.shutdown();
    }
}

#[cfg(not(feature = "standin"))]
mod dev {
    pub enum Never {}

    pub fn start_upstream(
        _: std::net::TcpListener,
        _: &crate::config::Config,
        _: &crate::provider::Providers,
        _: crate::hop::KeyAlgorithm,
    ) -> anyhow::Result<()> {
        unreachable!("refused before: --dev needs the standin feature")
    }

    pub fn start(_: std::net::TcpListener) -> Never {
        unreachable!("refused before: --dev needs the standin feature")
    }

    pub fn stop(never: Never) {
        match never {}
    }
}

fn dev_banner(port: u16) -> String {
    format!(
        "\n  kratos-jit is serving on http://127.0.0.1:{port} against an in-memory Kratos admin API on http://{DEV_KRATOS}\n\
         \n  Try (from the repository root; the README walks through each step):\n\
         \n    curl -sS http://127.0.0.1:{port}/v1/provision -H 'Authorization: Bearer {DEV_API_SECRET}' \\\n\
         \x20     -H 'Content-Type: application/json' -d @dev/requests/first-login.json\n\
         \n    curl -sS 'http://{DEV_KRATOS}/admin/identities?credentials_identifier=okta-acme:ada@acme.example'\n\
         \n  Claims hop: issuers {DEV_PUBLIC_URL}/hop/<provider>, upstream double on http://{DEV_UPSTREAM} (dev/README.md).\n\
         \n  Development secrets: API (trusted) {DEV_API_SECRET}, web hooks {DEV_HOOK_SECRET}, hop client {DEV_HOP_CLIENT_SECRET}, SCIM (every provider, in memory: http://127.0.0.1:{port}/scim/v2/<provider>) {DEV_SCIM_SECRET}. Never use --dev in production.\n"
    )
}

/// `kratos-jit standin`: the in-memory Kratos admin API alone (local experiments, load
/// benchmarks).
#[cfg(feature = "standin")]
pub fn run_standin(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use crate::standin::{StandInState, run_until_stopped};
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    actix_web::rt::System::new().block_on(async move {
        let state = StandInState::new();
        let stop = state.clone();
        let server = actix_web::rt::spawn(run_until_stopped(listener, state));
        eprintln!("Kratos admin API stand-in on http://{listen} (in memory; Ctrl-C stops it)");
        tokio::signal::ctrl_c().await?;
        stop.shutdown();
        server.await??;
        Ok(ExitCode::SUCCESS)
    })
}
