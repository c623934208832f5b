//! The `kratos-jit` command line.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kratos_jit::carrier::IdentityVar;
use kratos_jit::check;
use kratos_jit::mapper::{Isolation, Limits, MapperEngine, WorkerProgram, process};
use kratos_jit::provider::Providers;
use kratos_jit::schema::IdentitySchemas;

#[derive(Parser)]
#[command(
    name = "kratos-jit",
    version,
    about = "Just-in-time provisioning of Ory Kratos identities from enterprise IdP sign-ins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every provider, compile every mapper, run every fixture; non-zero exit on any failure.
    Check {
        /// The providers directory.
        #[arg(default_value = "mappers")]
        dir: PathBuf,
    },
    /// Print a provider mapper's output for a claims file, as Kratos would compute it.
    Map {
        /// The provider (Kratos OIDC provider id).
        #[arg(long)]
        provider: String,
        /// The current identity ({traits, metadata_public, metadata_admin}) as JSON.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// The providers directory.
        #[arg(long, default_value = "mappers")]
        dir: PathBuf,
        /// The claims object as JSON; `-` reads standard input.
        claims: PathBuf,
    },
    /// Print the Kratos-side claims mapper for a provider (its mapper, carrying the claims to the hooks).
    KratosMapper {
        /// The provider: its folder name under `--dir`.
        #[arg(long)]
        provider: String,
        /// The providers directory.
        #[arg(long, default_value = "mappers")]
        dir: PathBuf,
        /// For a Kratos that passes `std.extVar('identity')` to its mappers (Kratos master, the
        /// enterprise build ≥ v26.2.2): needed with `update_identity_on_login: automatic`.
        /// Without it the mapper reads the identity of a registration, which is when Kratos
        /// v26.2.0 (no such variable) runs it.
        #[arg(long)]
        identity_from_kratos: bool,
    },
    /// Serve the provisioning API (`POST /v1/provision`).
    Serve {
        /// The configuration file (TOML); `KRATOS_JIT__…` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Try kratos-jit on this machine alone: an in-memory Kratos admin API on 127.0.0.1:4434,
        /// the sample providers and fixed development secrets. Never use it in production.
        #[arg(long)]
        dev: bool,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Run the in-memory Kratos admin API stand-in alone (local experiments, load benchmarks).
    #[command(hide = true)]
    Standin {
        #[arg(long, default_value = "127.0.0.1:4434")]
        listen: std::net::SocketAddr,
    },
    /// Internal: a mapper evaluation worker, started by kratos-jit itself.
    #[command(name = process::WORKER_SUBCOMMAND, hide = true)]
    MapperWorker,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
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
const DEV_API_SECRET: &str = "kratos-jit-dev-secret";
const DEV_HOOK_SECRET: &str = "kratos-jit-dev-hook-secret";
const DEV_KRATOS: &str = "127.0.0.1:4434";

fn run_serve(config_path: Option<&Path>, dev: bool) -> anyhow::Result<ExitCode> {
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
    let config = match kratos_jit::config::load_from(config_path, env) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{} configuration problem(s); nothing started", errors.len());
            return Ok(ExitCode::from(2));
        }
    };
    let providers = match Providers::load(&config.providers) {
        Ok((providers, warnings)) => {
            for warning in warnings {
                tracing::warn!(message = "Provider folder warning.", %warning);
            }
            providers
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!(
                "{} problem(s) in {}; nothing started",
                errors.len(),
                config.providers.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let worker = WorkerProgram::current_exe().context("locating the kratos-jit executable")?;
    let dev_kratos = if dev {
        let listener = std::net::TcpListener::bind(DEV_KRATOS).with_context(|| {
            format!("serve --dev: cannot start the in-memory Kratos on {DEV_KRATOS}")
        })?;
        Some(listener)
    } else {
        None
    };
    actix_web::rt::System::new().block_on(async move {
        let stand_in = dev_kratos.map(|listener| {
            let state = kratos_jit::standin::StandInState::new();
            actix_web::rt::spawn(kratos_jit::standin::run_until_stopped(listener, state.clone()));
            state
        });
        let app = kratos_jit::server::Application::build(&config, providers, worker)?;
        tracing::info!(message = "Serving the provisioning API.", address = %config.listen.ip(), port = app.port());
        if stand_in.is_some() {
            eprintln!("{}", dev_banner(app.port()));
        }
        app.run_until_stopped().await?;
        if let Some(state) = stand_in {
            state.shutdown();
        }
        tracing::info!(message = "Stopped.");
        Ok(ExitCode::SUCCESS)
    })
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

fn run_standin(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use kratos_jit::standin::{StandInState, run_until_stopped};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::MapperWorker = cli.command {
        return process::worker_main();
    }
    let result = match cli.command {
        Command::Serve {
            config,
            log_format,
            dev,
        } => {
            init_logs(log_format);
            run_serve(config.as_deref(), dev)
        }
        Command::Check { dir } => run_check(&dir),
        Command::KratosMapper {
            provider,
            dir,
            identity_from_kratos,
        } => {
            let identity = if identity_from_kratos {
                IdentityVar::FromKratos
            } else {
                IdentityVar::Registration
            };
            run_kratos_mapper(&dir, &provider, identity)
        }
        Command::Standin { listen } => run_standin(listen),
        Command::Map {
            provider,
            identity,
            dir,
            claims,
        } => run_map(&dir, &provider, identity.as_deref(), &claims),
        Command::MapperWorker => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn load(dir: &Path) -> anyhow::Result<Option<(Providers, MapperEngine, IdentitySchemas)>> {
    let providers = match Providers::load(dir) {
        Ok((providers, warnings)) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            providers
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{} problem(s) in {}", errors.len(), dir.display());
            return Ok(None);
        }
    };
    let schemas = IdentitySchemas::builtin();
    let isolation = Isolation::Processes(
        WorkerProgram::current_exe().context("locating the kratos-jit executable")?,
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let engine = match MapperEngine::start(
        providers.mapper_sources(),
        Limits::default(),
        threads,
        isolation,
    ) {
        Ok(engine) => engine,
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            return Ok(None);
        }
    };
    Ok(Some((providers, engine, schemas)))
}

fn run_check(dir: &Path) -> anyhow::Result<ExitCode> {
    let Some((providers, engine, schemas)) = load(dir)? else {
        return Ok(ExitCode::FAILURE);
    };
    let reports = check::run(&providers, &engine, &schemas);
    let width = reports.iter().map(|r| r.provider.len()).max().unwrap_or(0);
    let mut failed = 0;
    for report in &reports {
        let total = report.fixtures.len();
        match report.failed() {
            0 => println!(
                "ok    {:width$}  {total} fixture(s) passed",
                report.provider
            ),
            n => {
                failed += n;
                println!(
                    "FAIL  {:width$}  {n} of {total} fixture(s) failed",
                    report.provider
                );
                for fixture in report.fixtures.iter().filter(|f| f.failure.is_some()) {
                    println!(
                        "  {}: {}",
                        fixture.name,
                        fixture.failure.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    }
    if failed == 0 {
        println!("{} provider(s), all fixtures passed", reports.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} fixture(s) failed");
        Ok(ExitCode::FAILURE)
    }
}

fn run_kratos_mapper(
    dir: &Path,
    provider: &str,
    identity: IdentityVar,
) -> anyhow::Result<ExitCode> {
    let path = dir.join(provider).join("mapper.jsonnet");
    let source =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    print!(
        "{}",
        kratos_jit::carrier::kratos_mapper(provider, &source, identity)
    );
    Ok(ExitCode::SUCCESS)
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn run_map(
    dir: &Path,
    provider: &str,
    identity: Option<&Path>,
    claims: &Path,
) -> anyhow::Result<ExitCode> {
    let claims = read_json(claims)?;
    let identity = identity.map(read_json).transpose()?;
    let Some((providers, engine, schemas)) = load(dir)? else {
        return Ok(ExitCode::FAILURE);
    };
    let Some(provider) = providers.get(provider) else {
        anyhow::bail!("no provider `{provider}` in {}", dir.display());
    };
    let evaluation = match check::evaluate(&engine, &schemas, provider, &claims, identity.as_ref())
    {
        Ok(evaluation) => evaluation,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(output) = &evaluation.output {
        println!("{}", check::pretty(output));
    }
    match evaluation.denial {
        None => Ok(ExitCode::SUCCESS),
        Some(denial) => {
            eprintln!("denied: {denial}");
            Ok(ExitCode::FAILURE)
        }
    }
}
