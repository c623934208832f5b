//! `kratos-jit serve`: configuration, providers, logs, then the HTTP application until a signal.
//!
//! `--dev` puts fixed development secrets and an in-memory Kratos admin API (the stand-in, built
//! with the `standin` feature) on loopback underneath the configuration, so that the README's
//! walkthrough runs on a machine with nothing else installed. The file and real variables still
//! win over those defaults.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

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
pub const DEV_KRATOS: &str = "127.0.0.1:4434";

/// Runs `serve` until SIGINT/SIGTERM. Exit status 2 for a configuration or provider problem.
pub fn run(config_path: Option<&Path>, dev: bool) -> anyhow::Result<ExitCode> {
    if dev && !cfg!(feature = "standin") {
        anyhow::bail!(
            "serve --dev needs the in-memory Kratos, which this build leaves out (build with the `standin` feature)"
        );
    }
    // Development defaults come first so that the file and real variables still win.
    let dev_defaults = dev.then(|| {
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
        ]
        .map(|(k, v)| (k.to_owned(), v))
    });
    let env = dev_defaults.into_iter().flatten().chain(std::env::vars());
    let config = match crate::config::load_from(config_path, env) {
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
    actix_web::rt::System::new().block_on(async move {
        let stand_in = dev_kratos.map(dev::start);
        let app = Application::build(&config, providers, worker)?;
        tracing::info!(message = "Serving the provisioning API.", address = %config.listen.ip(), port = app.port());
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

#[cfg(feature = "standin")]
mod dev {
    use crate::standin::{StandInState, run_until_stopped};

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
         \n  Development secrets: API (trusted) {DEV_API_SECRET}, web hooks {DEV_HOOK_SECRET}. Never use --dev in production.\n"
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
