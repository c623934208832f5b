//! The `kratos-jit` command line: arguments and dispatch. Each command's work, and its report,
//! lives in the module that owns it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kratos_jit::carrier::IdentityVar;
use kratos_jit::mapper::{WorkerProgram, process};
use kratos_jit::serve::{self, LogFormat};

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
    /// Print the Kratos-side claims mapper for a provider in web hook mode (it carries the claims to the hooks).
    KratosMapper {
        /// The provider: its folder name under `--dir`.
        #[arg(long)]
        provider: String,
        /// The providers directory.
        #[arg(long, default_value = "mappers")]
        dir: PathBuf,
        /// For a Kratos that passes `std.extVar('identity')` to its mappers (Kratos master, the
        /// enterprise build ≥ v26.2.2): needed with `update_identity_on_login: automatic`.
        /// Without it the carrier reads only the claims, as Kratos v26.2.0 (no such variable)
        /// passes them.
        #[arg(long)]
        identity_from_kratos: bool,
        /// The identity schema whose required traits the placeholders satisfy (default: the
        /// built-in one, deploy/kratos/identity.schema.json).
        #[arg(long)]
        identity_schema: Option<PathBuf>,
    },
    /// Serve the provisioning API (`POST /v1/provision`) and the Kratos web hooks.
    Serve {
        /// The configuration file (TOML); `KRATOS_JIT__…` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Try kratos-jit on this machine alone: an in-memory Kratos admin API on 127.0.0.1:4434,
        /// the sample providers and fixed development secrets. Never use it in production.
        #[arg(long)]
        dev: bool,
        /// With --dev: how the embedded upstream double signs its ID tokens, RS256 (as Ory
        /// Polis, Okta and Entra ID do) or ES256 (cheaper, for load benchmarks).
        #[arg(long, requires = "dev", default_value = "RS256", value_name = "ALG")]
        dev_upstream_alg: kratos_jit::hop::KeyAlgorithm,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: Format,
    },
    /// The claims hop's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the in-memory Kratos admin API stand-in alone (local experiments, load benchmarks).
    #[cfg(feature = "standin")]
    #[command(hide = true)]
    Standin {
        #[arg(long, default_value = "127.0.0.1:4434")]
        listen: std::net::SocketAddr,
    },
    /// Internal: a mapper evaluation worker, started by kratos-jit itself.
    #[command(name = process::WORKER_SUBCOMMAND, hide = true)]
    MapperWorker,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private signing key (PKCS#8 PEM, file mode 0600) for `hop.signing_keys`;
    /// an existing file is never overwritten.
    Generate {
        /// RS256 (RSA, 2048 bits) or ES256 (EC P-256).
        #[arg(long, value_enum)]
        alg: KeyAlg,
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyAlg {
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MapperWorker => return process::worker_main(),
        Command::Serve {
            config,
            log_format,
            dev,
            dev_upstream_alg,
        } => {
            serve::init_logs(match log_format {
                Format::Text => LogFormat::Text,
                Format::Json => LogFormat::Json,
            });
            let dev = dev.then_some(serve::DevOptions {
                upstream_alg: dev_upstream_alg,
            });
            serve::run(config.as_deref(), dev)
        }
        Command::Check { dir } => worker().and_then(|worker| {
            let passed = kratos_jit::check::check_command(
                &dir,
                worker,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )?;
            Ok(status(passed))
        }),
        Command::Map {
            provider,
            identity,
            dir,
            claims,
        } => run_map(&dir, &provider, identity.as_deref(), &claims),
        Command::KratosMapper {
            provider,
            dir,
            identity_from_kratos,
            identity_schema,
        } => {
            let identity = if identity_from_kratos {
                IdentityVar::FromKratos
            } else {
                IdentityVar::Registration
            };
            run_kratos_mapper(&dir, &provider, identity, identity_schema.as_deref())
        }
        Command::Keys {
            command: KeysCommand::Generate { alg, out },
        } => generate_key(alg, &out),
        #[cfg(feature = "standin")]
        Command::Standin { listen } => serve::run_standin(listen),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn generate_key(alg: KeyAlg, out: &Path) -> anyhow::Result<ExitCode> {
    use kratos_jit::hop::{KeyAlgorithm, generate};
    let alg = match alg {
        KeyAlg::Rs256 => KeyAlgorithm::Rs256,
        KeyAlg::Es256 => KeyAlgorithm::Es256,
    };
    match generate(alg, out) {
        Ok(kid) => {
            println!(
                "wrote a new {} signing key to {} (kid {kid}); add it at the END of hop.signing_keys on every replica to make it the signing key",
                alg.as_str(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("error: {problem}");
            Ok(ExitCode::from(2))
        }
    }
}

fn status(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn worker() -> anyhow::Result<WorkerProgram> {
    WorkerProgram::current_exe().context("locating the kratos-jit executable")
}

fn run_kratos_mapper(
    dir: &Path,
    provider: &str,
    identity: IdentityVar,
    schema: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let settings = dir.join(provider).join("provider.toml");
    anyhow::ensure!(
        settings.is_file(),
        "{} does not exist: no provider {provider} under {}",
        settings.display(),
        dir.display()
    );
    let placeholder =
        kratos_jit::carrier::placeholder_traits(schema).map_err(anyhow::Error::msg)?;
    print!(
        "{}",
        kratos_jit::carrier::kratos_mapper(provider, &placeholder, identity)
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
    let passed = kratos_jit::check::map_command(
        dir,
        provider,
        &claims,
        identity.as_ref(),
        worker()?,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )?;
    Ok(status(passed))
}
