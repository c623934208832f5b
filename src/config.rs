//! `kratos-jit serve` configuration: defaults, then a TOML file, then `KRATOS_JIT__…` variables.
//!
//! Every setting is read and checked before the server starts, and **every** problem is reported
//! at once, each naming where the bad value came from: `file:line:column` for the file, the
//! variable's name for the environment. Unknown keys and unknown `KRATOS_JIT__` variables are
//! errors (a misspelt setting silently falling back to its default is how outages start).
//!
//! An environment variable names a key with `__` between levels: `KRATOS_JIT__KRATOS__ADMIN_URL`
//! sets `kratos.admin_url`; lists are comma-separated. Secrets are [`Secret`]s: never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

pub use crate::kratos::http::KratosSettings;
pub use crate::secret::Secret;

/// The validated configuration of `kratos-jit serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Connections the listener serves at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request's whole body, on every route, arrives within this (else 408, connection closed).
    pub body_timeout: Duration,
    /// The `mappers/` tree.
    pub providers: PathBuf,
    pub kratos: KratosSettings,
    pub api: ApiConfig,
    pub hooks: HooksConfig,
    pub mapper: MapperConfig,
    pub token: TokenConfig,
    pub hop: HopConfig,
    pub scim: ScimConfig,
    /// `/health/ready` ([`crate::health`]).
    pub health: crate::health::HealthSettings,
    pub audit: crate::audit::AuditConfig,
    pub metrics: MetricsConfig,
}

/// The Prometheus metrics (`GET /metrics`, [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served, on a listener of its own; never on `listen`. `None` (the
    /// default): not served at all, since the exposition names the providers (the customers)
    /// and the address must be chosen with the network in mind. Counting goes on regardless.
    pub listen: Option<SocketAddr>,
}

/// The SCIM 2.0 service (`/scim/v2/<provider>/…`, [`crate::scim::service`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScimConfig {
    /// The SCIM store: `sqlite:<path>`, `sqlite::memory:` or `postgres://…`. Unset: SCIM is
    /// off and every `/scim/…` request is 404, whatever the providers' `[scim] enabled` says
    /// (kratos-jit never guesses where to keep groups; `serve --dev` uses `sqlite::memory:`).
    pub database_url: Option<String>,
    /// The largest SCIM request body (default 1 MiB): a group push of thousands of members.
    pub max_body_bytes: usize,
    /// Whether SCIM answers carry a `Server-Timing` header that splits their time into the
    /// calls to Kratos and the SCIM store (`dep`) and kratos-jit's own (`app`) (default off).
    /// For benchmarks (`bench/scim-load.sh`).
    pub server_timing: bool,
    /// `serve --dev` only, never read from a file or the environment: the secrets backing the
    /// providers' `[scim] secrets_env` names that are unset.
    pub dev_secrets: Vec<(String, Secret)>,
}

/// The claims hop (`/hop/<provider>/…`, [`crate::hop`]): kratos-jit as the OpenID Provider
/// Kratos's `generic` provider signs in with.
#[derive(Debug, Clone, PartialEq)]
pub struct HopConfig {
    /// The base URL Kratos and browsers reach kratos-jit at; the issuer of provider P is
    /// exactly `<public_url>/hop/<P>` (no trailing `/` is kept). Required with signing keys.
    pub public_url: Option<String>,
    /// The key set, loaded and checked from `hop.signing_keys` (PEM or JWK files); the last
    /// one signs, all are published. `None`: the hop is off.
    pub signing_keys: Option<crate::hop::SigningKeys>,
    /// How long Kratos has to exchange a code (default 60 s).
    pub code_ttl: Duration,
    /// How long a user has at the upstream sign-in page (default 10 min).
    pub state_ttl: Duration,
    /// The upstream code exchange and the Kratos admin calls of one callback end within this
    /// (default 10 s); past it, the user is sent back to Kratos with an error.
    pub login_deadline: Duration,
    /// The lifetime of the ID tokens and access tokens the hop issues (default 5 min).
    pub token_ttl: Duration,
    /// Whether the hop's answers carry a `Server-Timing` header that splits their time into
    /// the calls to the upstream and Kratos (`dep`) and kratos-jit's own (`app`) (default
    /// off: it tells a browser how long the identity lookup took). For benchmarks.
    pub server_timing: bool,
    /// `serve --dev` only, never read from a file or the environment: the embedded upstream
    /// double stands in for every provider's upstream, and these secrets back the
    /// `client_secret_env` names the sample providers use.
    pub dev: Option<crate::hop::DevUpstream>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Bearer secrets accepted by `POST /v1/provision` (ID tokens only).
    pub secrets: Vec<Secret>,
    /// Bearer secrets of trusted callers, who may also send `claims` directly.
    pub trusted_secrets: Vec<Secret>,
    pub max_body_bytes: usize,
    /// The whole request, Kratos calls included, ends within this.
    pub deadline: Duration,
}

/// The Kratos web hooks (`/v1/hooks/registration`, `/v1/hooks/login`).
#[derive(Debug, Clone, PartialEq)]
pub struct HooksConfig {
    /// What Kratos's `web_hook` sends (`api_key` value, bearer or bare, or the `basic_auth` password).
    pub secrets: Vec<Secret>,
    /// A login hook answers within this, Kratos admin calls included.
    pub deadline: Duration,
    /// Claims issued longer than this before the session's authentication are stale.
    pub claims_max_age: Duration,
    /// The largest hook body accepted. Kratos sends go-jsonnet's indented JSON, and an Ory
    /// Polis login carries the user's groups twice (`raw_claims.groups` and
    /// `raw_claims.raw.groups`), so a group of 20 characters costs about 95 bytes of body: a
    /// registration of a user in 5,000 groups is about 470 KB (tests/api/limits.rs). The
    /// default, 1 MiB, is twice that. (Kratos's own mapper limits, docs/kratos.md §2.4, are
    /// narrower today; this one must not be the narrowest.)
    pub max_body_bytes: usize,
    /// The byte budget of the retry cache (answers remembered per trigger id).
    pub retry_cache_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapperConfig {
    pub workers: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub clock_skew: Duration,
    pub jwks_min_refresh: Duration,
    pub http_timeout: Duration,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    Other(&'static str),
}

struct Entry {
    raw: Raw,
    origin: Origin,
}

/// Every known key, with what it holds (for "did you mean" and documentation).
const KEYS: &[&str] = &[
    "listen",
    "max_connections",
    "body_timeout",
    "providers",
    "kratos.admin_url",
    "kratos.bearer_token",
    "kratos.bearer_token_file",
    "kratos.basic_auth_username",
    "kratos.basic_auth_password",
    "kratos.basic_auth_password_file",
    "kratos.request_timeout",
    "kratos.deadline",
    "kratos.max_retries",
    "api.secrets",
    "api.secrets_file",
    "api.trusted_secrets",
    "api.trusted_secrets_file",
    "api.max_body_bytes",
    "api.deadline",
    "hooks.secrets",
    "hooks.secrets_file",
    "hooks.deadline",
    "hooks.claims_max_age",
    "hooks.max_body_bytes",
    "hooks.retry_cache_bytes",
    "mapper.workers",
    "mapper.timeout",
    "token.clock_skew",
    "token.jwks_min_refresh",
    "token.http_timeout",
    "hop.public_url",
    "hop.signing_keys",
    "hop.code_ttl",
    "hop.state_ttl",
    "hop.login_deadline",
    "hop.token_ttl",
    "hop.server_timing",
    "scim.database_url",
    "scim.max_body_bytes",
    "scim.server_timing",
    "health.kratos_interval",
    "health.kratos_max_age",
    "audit.sink",
    "audit.file",
    "audit.values",
    "audit.on_failure",
    "audit.fsync",
    "audit.hash_key",
    "audit.hash_key_file",
    "metrics.listen",
];

const ENV_PREFIX: &str = "KRATOS_JIT__";

/// Loads the configuration from an optional file and the process environment.
pub fn load(file: Option<&Path>) -> Result<Config, Vec<String>> {
    load_from(file, std::env::vars())
}

/// Loads the configuration from an optional file and the given environment.
pub fn load_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Vec<String>> {
    let mut errors = Vec::new();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(text) => read_file(path, &text, &mut entries, &mut errors),
            Err(e) => errors.push(format!(
                "{}: cannot read the configuration file: {e}",
                path.display()
            )),
        }
    }
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_lowercase().replace("__", ".");
        if !KEYS.contains(&key.as_str()) {
            errors.push(format!(
                "environment variable {name}: unknown setting `{key}`{}",
                suggest(&key)
            ));
            continue;
        }
        let raw = if key.ends_with("secrets") || key == "hop.signing_keys" {
            Raw::List(
                value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
        } else {
            Raw::Str(value)
        };
        entries.insert(
            key,
            Entry {
                raw,
                origin: Origin::Env(name),
            },
        );
    }
    let base = file
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut r = Reader {
        entries,
        errors,
        base,
    };
    let config = Config {
        listen: r.parse("listen", "127.0.0.1:4480", |s| {
            s.parse::<SocketAddr>().map_err(|e| e.to_string())
        }),
        // Well under the usual soft limit of 1,024 open files, which the mapper workers' pipes
        // and the Kratos client's connections share.
        max_connections: r.integer("max_connections", 512, 1, 1_000_000) as usize,
        // Kratos and API callers send a body at once with its headers; a few seconds is
        // generous, and as long as actix gives the headers themselves.
        body_timeout: r.duration("body_timeout", "5s"),
        providers: r.path("providers", "mappers"),
        kratos: KratosSettings {
            admin_url: r.parse("kratos.admin_url", "http://127.0.0.1:4434", parse_http_url),
            bearer_token: r.secret("kratos.bearer_token"),
            basic_auth: r.basic_auth("kratos.basic_auth_username", "kratos.basic_auth_password"),
            request_timeout: r.duration("kratos.request_timeout", "2s"),
            deadline: r.duration("kratos.deadline", "5s"),
            max_retries: r.integer("kratos.max_retries", 2, 0, 10) as u32,
        },
        api: ApiConfig {
            secrets: r.secrets("api.secrets"),
            trusted_secrets: r.secrets("api.trusted_secrets"),
            max_body_bytes: r.integer("api.max_body_bytes", 64 * 1024, 1024, 16 * 1024 * 1024)
                as usize,
            deadline: r.duration("api.deadline", "8s"),
        },
        hooks: HooksConfig {
            secrets: r.secrets("hooks.secrets"),
            deadline: r.duration("hooks.deadline", "4s"),
            claims_max_age: r.duration("hooks.claims_max_age", "5m"),
            max_body_bytes: r.integer("hooks.max_body_bytes", 1 << 20, 1024, 16 << 20) as usize,
            retry_cache_bytes: r.integer(
                "hooks.retry_cache_bytes",
                crate::http::hooks::triggers::DEFAULT_BUDGET_BYTES as i64,
                1 << 20,
                16 << 30,
            ) as u64,
        },
        mapper: MapperConfig {
            // Two per core: a worker waits on the pipe while its answer travels back, and a
            // second one keeps the core busy meanwhile (hook throughput on 2 cores: about
            // 14,000/s with 2 workers, 16,000/s with 4; bench/hook-load.sh).
            workers: r.integer(
                "mapper.workers",
                std::thread::available_parallelism().map_or(4, |n| 2 * n.get() as i64),
                1,
                256,
            ) as usize,
            timeout: r.duration("mapper.timeout", "1s"),
        },
        token: TokenConfig {
            clock_skew: r.duration("token.clock_skew", "60s"),
            jwks_min_refresh: r.duration("token.jwks_min_refresh", "30s"),
            http_timeout: r.duration("token.http_timeout", "5s"),
        },
        hop: r.hop(),
        scim: ScimConfig {
            database_url: r
                .entries
                .contains_key("scim.database_url")
                .then(|| {
                    r.parse("scim.database_url", "sqlite::memory:", |s| {
                        let s = s.trim();
                        if s.starts_with("sqlite:")
                            || s.starts_with("postgres://")
                            || s.starts_with("postgresql://")
                        {
                            Ok(s.to_owned())
                        } else {
                            Err("must be sqlite:<path>, sqlite::memory: or postgres://user@host:port/database".into())
                        }
                    })
                }),
            max_body_bytes: r.integer("scim.max_body_bytes", 1 << 20, 1024, 64 << 20) as usize,
            server_timing: r.boolean("scim.server_timing", false),
            dev_secrets: vec![],
        },
        health: r.health(),
        audit: r.audit(),
        metrics: r.metrics(),
    };
    if config.api.secrets.is_empty()
        && config.api.trusted_secrets.is_empty()
        && config.hooks.secrets.is_empty()
    {
        r.errors.push(
            "no API secret is configured: set api.secrets_file (or KRATOS_JIT__API__SECRETS) for POST /v1/provision and/or hooks.secrets_file (KRATOS_JIT__HOOKS__SECRETS) for the Kratos web hooks".into(),
        );
    }
    // The adapter's own checks (credentials in the URL, both kinds of auth, header-safe values),
    // reported with every other problem rather than at the first Kratos call.
    r.errors.extend(
        config
            .kratos
            .problems()
            .into_iter()
            .map(|p| format!("kratos: {p}")),
    );
    if config.kratos.request_timeout > config.kratos.deadline {
        r.errors.push(
            "kratos.request_timeout is longer than kratos.deadline: no call could complete".into(),
        );
    }
    if let Some(metrics) = config.metrics.listen
        && metrics == config.listen
        && metrics.port() != 0
    {
        r.errors.push(format!(
            "metrics.listen is the same address as listen ({metrics}): the metrics are never served on the public port; give them an address of their own"
        ));
    }
    if config.kratos.deadline >= config.api.deadline {
        r.errors
            .push("kratos.deadline must be shorter than api.deadline, which includes it".into());
    }
    if r.errors.is_empty() {
        Ok(config)
    } else {
        Err(r.errors)
    }
}

impl Reader {
    /// `[health]`: how the readiness of `GET /health/ready` learns that Kratos answers.
    fn health(&mut self) -> crate::health::HealthSettings {
        let settings = crate::health::HealthSettings {
            kratos_interval: self.duration("health.kratos_interval", "5s"),
            kratos_max_age: self.duration("health.kratos_max_age", "15s"),
        };
        if settings.kratos_max_age < settings.kratos_interval {
            self.errors.push(
                "`health.kratos_max_age` is shorter than `health.kratos_interval`: Kratos would count as not ready between two probes".into(),
            );
        }
        settings
    }

    /// The `[audit]` section ([`crate::audit`]): by default, events on standard output with
    /// hashed values, and a change refused when its event cannot be written.
    fn audit(&mut self) -> crate::audit::AuditConfig {
        use crate::audit::{AuditConfig, OnFailure, SinkConfig, ValueMode};
        let file = self
            .entries
            .contains_key("audit.file")
            .then(|| self.path("audit.file", ""));
        let default = if file.is_some() { "file" } else { "stdout" };
        let sink = self.parse("audit.sink", default, |s| match s.trim() {
            "stdout" => Ok(Some(SinkConfig::Stdout)),
            "off" => Ok(Some(SinkConfig::Off)),
            "file" => Ok(None),
            _ => Err("must be stdout, file or off".into()),
        });
        let sink = match (sink, file) {
            (Some(sink), None) => sink,
            (None, Some(path)) => SinkConfig::File(path),
            (None, None) => {
                self.errors.push(
                    "`audit.sink` is file but `audit.file` is not set (KRATOS_JIT__AUDIT__FILE)"
                        .into(),
                );
                SinkConfig::Off
            }
            (Some(_), Some(_)) => {
                self.errors.push(
                    "`audit.file` is set but `audit.sink` is not file: set audit.sink = \"file\""
                        .into(),
                );
                SinkConfig::Off
            }
        };
        AuditConfig {
            sink,
            values: self.parse("audit.values", "hashed", |s| match s.trim() {
                "hashed" => Ok(ValueMode::Hashed),
                "plain" => Ok(ValueMode::Plain),
                _ => Err("must be hashed or plain".into()),
            }),
            on_failure: self.parse("audit.on_failure", "refuse", |s| match s.trim() {
                "refuse" => Ok(OnFailure::Refuse),
                "proceed" => Ok(OnFailure::Proceed),
                _ => Err("must be refuse or proceed".into()),
            }),
            fsync: self.boolean("audit.fsync", false),
            hash_key: self.secret("audit.hash_key"),
        }
    }

    /// `[metrics]`: `listen` unset, or set empty in the environment, leaves `/metrics` off.
    fn metrics(&mut self) -> MetricsConfig {
        let set = self
            .entries
            .get("metrics.listen")
            .is_some_and(|e| !matches!(&e.raw, Raw::Str(s) if s.trim().is_empty()));
        if !set {
            self.entries.remove("metrics.listen");
        }
        MetricsConfig {
            listen: set.then(|| {
                self.parse("metrics.listen", "127.0.0.1:0", |s| {
                    s.trim().parse::<SocketAddr>().map_err(|e| {
                        format!("{e} (an address and port, such as \"127.0.0.1:9480\")")
                    })
                })
            }),
        }
    }

    fn hop(&mut self) -> HopConfig {
        let public_url = self.entries.contains_key("hop.public_url").then(|| {
            self.parse("hop.public_url", "http://127.0.0.1", |s| {
                let url = parse_http_url(s)?;
                let parsed = reqwest::Url::parse(&url).map_err(|e| e.to_string())?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(
                        "must not have a query or fragment: it is the start of every issuer URL"
                            .into(),
                    );
                }
                crate::token::check_transport(&parsed).map_err(str::to_owned)?;
                Ok(url)
            })
        });
        let paths = self.path_list("hop.signing_keys");
        let signing_keys = match paths {
            // An empty list (`KRATOS_JIT__HOP__SIGNING_KEYS=`) leaves the hop off, as unset does.
            Some(paths) if paths.is_empty() => None,
            Some(paths) => match crate::hop::SigningKeys::load(&paths) {
                Ok(keys) => Some(keys),
                Err(errors) => {
                    self.errors.extend(
                        errors
                            .into_iter()
                            .map(|e| format!("`hop.signing_keys`: {e}")),
                    );
                    None
                }
            },
            None => None,
        };
        let config = HopConfig {
            public_url,
            signing_keys,
            code_ttl: self.duration("hop.code_ttl", "60s"),
            state_ttl: self.duration("hop.state_ttl", "10m"),
            login_deadline: self.duration("hop.login_deadline", "10s"),
            token_ttl: self.duration("hop.token_ttl", "5m"),
            server_timing: self.boolean("hop.server_timing", false),
            dev: None,
        };
        if config.signing_keys.is_some() && config.public_url.is_none() {
            self.errors.push(
                "`hop.signing_keys` is set but `hop.public_url` is not: the hop's issuer URLs start with it (KRATOS_JIT__HOP__PUBLIC_URL)".into(),
            );
        }
        config
    }

    /// A list of file paths (a TOML array, or comma-separated in the environment), relative
    /// ones resolved against the configuration file's folder. `None` when unset.
    fn path_list(&mut self, key: &str) -> Option<Vec<PathBuf>> {
        let entry = self.entries.remove(key)?;
        let from_file = matches!(entry.origin, Origin::File { .. });
        let items = match entry.raw {
            Raw::List(items) => items,
            Raw::Str(s) => vec![s],
            other => {
                self.fail(
                    key,
                    &entry.origin,
                    format!("must be a list of file paths, not {}", describe(&other)),
                );
                return None;
            }
        };
        let items: Vec<PathBuf> = items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(|s| {
                let path = PathBuf::from(s);
                if from_file && path.is_relative() {
                    self.base.join(path)
                } else {
                    path
                }
            })
            .collect();
        Some(items)
    }
}

fn suggest(key: &str) -> String {
    crate::provider::did_you_mean(key, KEYS)
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http(s) URL with a host".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn read_file(
    path: &Path,
    text: &str,
    entries: &mut BTreeMap<String, Entry>,
    errors: &mut Vec<String>,
) {
    let locate = |offset: usize| {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Origin::File {
            path: path.to_owned(),
            line,
            column,
        }
    };
    let (document, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            errors.push(format!(
                "{}: TOML syntax error: {}",
                locate(e.span().unwrap_or(0..0).start),
                e.message().trim_end()
            ));
        }
        return;
    }
    fn walk(
        prefix: &str,
        table: &DeTable<'_>,
        locate: &dyn Fn(usize) -> Origin,
        entries: &mut BTreeMap<String, Entry>,
        errors: &mut Vec<String>,
    ) {
        for (key, value) in table.iter() {
            let name = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            let origin = locate(key.span().start);
            if let DeValue::Table(inner) = value.get_ref() {
                if KEYS.iter().any(|k| k.starts_with(&format!("{name}."))) {
                    walk(&name, inner, locate, entries, errors);
                } else {
                    errors.push(format!(
                        "{origin}: unknown section [{name}]{}",
                        suggest(&name)
                    ));
                }
                continue;
            }
            if !KEYS.contains(&name.as_str()) {
                errors.push(format!(
                    "{origin}: unknown setting `{name}`{}",
                    suggest(&name)
                ));
                continue;
            }
            let raw = match value.get_ref() {
                DeValue::String(s) => Raw::Str(s.to_string()),
                DeValue::Integer(i) => {
                    match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                        Ok(n) => Raw::Int(n),
                        Err(_) => Raw::Other("a too large integer"),
                    }
                }
                DeValue::Boolean(b) => Raw::Bool(*b),
                DeValue::Array(items) => {
                    let strings: Option<Vec<String>> = items
                        .iter()
                        .map(|v| v.get_ref().as_str().map(str::to_owned))
                        .collect();
                    strings.map_or(Raw::Other("a list of non-strings"), Raw::List)
                }
                other => Raw::Other(other.type_str()),
            };
            entries.insert(
                name,
                Entry {
                    raw,
                    origin: locate(value.span().start),
                },
            );
        }
    }
    walk("", document.get_ref(), &locate, entries, errors);
}

struct Reader {
    entries: BTreeMap<String, Entry>,
    errors: Vec<String>,
    base: PathBuf,
}

impl Reader {
    fn fail(&mut self, key: &str, origin: &Origin, message: impl fmt::Display) {
        self.errors.push(format!("{origin}: `{key}` {message}"));
    }

    /// A string setting parsed with `parse`; the default is parsed the same way.
    fn parse<T>(
        &mut self,
        key: &str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        if let Some(entry) = self.entries.remove(key) {
            match &entry.raw {
                Raw::Str(s) => match parse(s) {
                    Ok(v) => return v,
                    Err(e) => self.fail(key, &entry.origin, format!("is invalid: {e}")),
                },
                other => self.fail(
                    key,
                    &entry.origin,
                    format!("must be a string, not {}", describe(other)),
                ),
            }
        }
        parse(default).unwrap_or_else(|e| panic!("default of {key} is invalid: {e}"))
    }

    fn path(&mut self, key: &str, default: &str) -> PathBuf {
        let from_file = matches!(
            self.entries.get(key),
            Some(Entry {
                origin: Origin::File { .. },
                ..
            })
        );
        let path = self.parse(key, default, |s| Ok(PathBuf::from(s)));
        if from_file && path.is_relative() {
            self.base.join(path)
        } else {
            path
        }
    }

    fn duration(&mut self, key: &str, default: &str) -> Duration {
        let d = self.parse(key, default, |s| {
            humantime::parse_duration(s)
                .map_err(|e| format!("{e} (write durations like \"500ms\" or \"2s\")"))
        });
        if d.is_zero() {
            self.errors
                .push(format!("`{key}` must be longer than zero"));
        }
        d
    }

    /// A boolean: `true`/`false` in the file; `true`/`false` (any case) in the environment.
    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return default;
        };
        let value = match &entry.raw {
            Raw::Bool(b) => Some(*b),
            Raw::Str(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
            Raw::Str(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        value.unwrap_or_else(|| {
            self.fail(
                key,
                &entry.origin,
                format!("must be true or false, not {}", describe(&entry.raw)),
            );
            default
        })
    }

    fn integer(&mut self, key: &str, default: i64, min: i64, max: i64) -> i64 {
        let Some(entry) = self.entries.remove(key) else {
            return default;
        };
        let value = match &entry.raw {
            Raw::Int(n) => Some(*n),
            Raw::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match value {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.fail(
                    key,
                    &entry.origin,
                    format!("is {n}; it must be between {min} and {max}"),
                );
                default
            }
            None => {
                self.fail(
                    key,
                    &entry.origin,
                    format!("must be a whole number, not {}", describe(&entry.raw)),
                );
                default
            }
        }
    }

    /// A secret given inline (environment only, preferably) or read from `<key>_file`.
    fn secret(&mut self, key: &str) -> Option<Secret> {
        self.secret_values(key).into_iter().next()
    }

    /// A username and its password (`<password key>` or `<password key>_file`): both or neither.
    fn basic_auth(&mut self, user_key: &str, password_key: &str) -> Option<(String, Secret)> {
        let origin = self.entries.get(user_key).map(|e| e.origin.clone());
        let user = origin
            .is_some()
            .then(|| self.parse(user_key, "", |s| Ok(s.to_owned())));
        let password = self.secret(password_key);
        match (user, password) {
            (Some(user), Some(password)) if !user.is_empty() => Some((user, password)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.errors.push(format!("`{user_key}` must not be empty"));
                None
            }
            (Some(_), None) => {
                self.errors.push(format!(
                    "`{user_key}` is set but `{password_key}` (or `{password_key}_file`) is not: set both or neither"
                ));
                None
            }
            (None, Some(_)) => {
                self.errors.push(format!(
                    "`{password_key}` is set but `{user_key}` is not: set both or neither"
                ));
                None
            }
        }
    }

    fn secrets(&mut self, key: &str) -> Vec<Secret> {
        self.secret_values(key)
    }

    fn secret_values(&mut self, key: &str) -> Vec<Secret> {
        let mut out = Vec::new();
        if let Some(entry) = self.entries.remove(key) {
            match entry.raw {
                Raw::Str(s) if !s.is_empty() => out.push(Secret::new(s)),
                Raw::List(items) => out.extend(items.into_iter().map(Secret::new)),
                other => self.fail(
                    key,
                    &entry.origin,
                    format!("must be a non-empty string, not {}", describe(&other)),
                ),
            }
        }
        let file_key = format!("{key}_file");
        if self.entries.contains_key(&file_key) {
            let path = self.path(&file_key, "");
            match std::fs::read_to_string(&path) {
                // One secret per line; blank lines and `#` comments are ignored.
                Ok(text) => out.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(|l| Secret::new(l.to_owned())),
                ),
                Err(e) => self
                    .errors
                    .push(format!("`{file_key}`: cannot read {}: {e}", path.display())),
            }
        }
        for secret in &out {
            if secret.expose().len() < 16 {
                self.errors.push(format!(
                    "`{key}`: a secret is shorter than 16 characters; use a long random value"
                ));
                break;
            }
        }
        out
    }
}

fn describe(raw: &Raw) -> String {
    match raw {
        Raw::Str(_) => "a string".into(),
        Raw::Int(_) => "a number".into(),
        Raw::Bool(_) => "a boolean".into(),
        Raw::List(_) => "a list".into(),
        Raw::Other(what) => (*what).into(),
    }
}

#[cfg(test)]
mod tests;
