//! Prometheus metrics: what kratos-jit counts and times, and its exposition.
//!
//! One [`Metrics`] per application holds every metric family in one `prometheus-client`
//! registry; cheap to clone (an `Arc`), shared by the login use case, the Kratos admin client and
//! the SCIM routes. Its exposition ([`Metrics::encode`], OpenMetrics text) is served only on the
//! `metrics.listen` address ([`crate::http::metrics`]), never on the public port.
//! `docs/metrics.md` documents every metric; the names follow Prometheus's conventions
//! (`kratos_jit_` prefix, `_total` counters, `_seconds` histograms in base units).
//!
//! **Labels are bounded and hold no personal data.** A label value is a configured provider id
//! (looked up in the table built at start, so an id taken from a URL that names no provider is
//! [`UNKNOWN`]), a mapper hash of the configuration, or a word of a fixed set (entry point,
//! action, denial code, operation, status). Never a subject, an e-mail, a claim, a tenant value
//! from claims or an identity id: the number of series grows with the number of providers only.
//! Provider ids are `[a-z0-9_-]`, so no label value needs escaping.
//!
//! **The hot path is cheap.** Counters are atomics; a family lookup hashes a small label struct
//! of `&'static str`s and one `Arc<str>` (cloned, never allocated) under a read lock; a histogram
//! observation takes a short uncontended lock. Nothing is formatted until a scrape.
//!
//! Histograms are registered with their unit in the name (`_seconds`) but without a `# UNIT`
//! line: the line is optional, and a strict parser (the tests' openmetrics-parser 0.4) refuses it
//! on histograms.
//!
//! Histograms are labelled by fixed words only (entry point, mapper kind, Kratos operation), not
//! by provider, so that their bucket series do not multiply with the number of customers; the
//! per-provider counters tell which customer is affected.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::domain::Denial;
use crate::login::{EntryPoint, LoginError, Outcome};
use crate::mapper::{MapperError, MapperKind};
use crate::provider::Providers;

/// The label value for a provider id that no configured provider has (a SCIM URL's).
pub const UNKNOWN: &str = "unknown";

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Kratos port's operations (`src/kratos/http.rs`), whose request and retry series exist
/// from the start.
const KRATOS_OPERATIONS: [&str; 10] = [
    "find_by_credential_identifier",
    "get",
    "create",
    "patch",
    "link_oidc",
    "deactivate",
    "reactivate",
    "delete",
    "revoke_sessions",
    "list",
];

/// How many hex digits of a mapper's SHA-256 the info metric shows.
const HASH_PREFIX: usize = 12;

/// End-to-end login time: from a few hundred microseconds (a hook, no Kratos call) to the
/// entry points' deadlines (4–10 s).
const LOGIN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One mapper evaluation: tens of microseconds for the sample mappers, up to `mapper.timeout`.
const MAPPER_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// One Kratos admin API attempt: under a millisecond on loopback, up to `kratos.request_timeout`.
const KRATOS_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn login_histogram() -> Histogram {
    Histogram::new(LOGIN_BUCKETS.iter().copied())
}
fn mapper_histogram() -> Histogram {
    Histogram::new(MAPPER_BUCKETS.iter().copied())
}
fn kratos_histogram() -> Histogram {
    Histogram::new(KRATOS_BUCKETS.iter().copied())
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    provider: Arc<str>,
    entry_point: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    provider: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryLabels {
    entry_point: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KratosLabels {
    operation: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScimLabels {
    provider: Arc<str>,
    resource: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// How a Kratos admin API attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// No HTTP answer: connection refused or reset, a timeout, the call abandoned.
    Error,
}

impl StatusClass {
    /// The class of an HTTP status.
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
        }
    }
}

/// The providers in force and their mapper hashes, as an OpenMetrics info metric.
#[derive(Debug)]
struct ProviderInfo(Vec<ProviderInfoLabels>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderInfoLabels {
    provider: Arc<str>,
    mapper_sha256: String,
    scim_mapper_sha256: String,
}

impl Collector for ProviderInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "kratos_jit_provider",
            "A provider in force, with the SHA-256 prefixes of its mappers (scim_mapper_sha256 empty without scim.jsonnet).",
            None,
            MetricType::Info,
        )?;
        for labels in &self.0 {
            metric.encode_info(labels)?;
        }
        Ok(())
    }
}

/// Worker processes the mapper engine started to replace one it lost, read at each scrape.
struct WorkerRestarts(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for WorkerRestarts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerRestarts")
    }
}

impl Collector for WorkerRestarts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new((self.0)());
        let metric = encoder.encode_descriptor(
            "kratos_jit_mapper_worker_restarts",
            "Mapper worker processes started to replace one that was lost (killed at its deadline, crashed, or abandoned mid-evaluation).",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

struct Inner {
    registry: Registry,
    providers: HashSet<Arc<str>>,
    unknown: Arc<str>,
    logins: Family<LoginLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    login_duration: Histograms<EntryLabels>,
    mapper_duration: Histograms<KindLabels>,
    mapper_timeouts: Family<ProviderLabels, Counter>,
    kratos_requests: Family<KratosLabels, Counter>,
    kratos_duration: Histograms<OperationLabels>,
    kratos_retries: Family<OperationLabels, Counter>,
    scim_requests: Family<ScimLabels, Counter>,
}

/// The application's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics that count into a registry nobody serves (`kratos-jit check`, unit tests).
    fn default() -> Self {
        Metrics::new(&Providers::default(), || 0)
    }
}

impl Metrics {
    /// Every metric family registered, the providers' ids as the only provider label values,
    /// the info metric of `providers`, and their load at start counted as one successful
    /// provider load. `worker_restarts` is read at each scrape.
    pub fn new(
        providers: &Providers,
        worker_restarts: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Metrics {
        let mut registry = Registry::default();
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "kratos_jit_logins",
            "Logins the use case finished, by provider, entry point and action (error: could not be carried out, or cut off by the entry point's deadline)",
            logins.clone(),
        );
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "kratos_jit_denials",
            "Refused logins, by provider and denial code",
            denials.clone(),
        );
        let login_duration: Histograms<EntryLabels> = Family::new_with_constructor(login_histogram);
        registry.register(
            "kratos_jit_login_duration_seconds",
            "Time of one login use case, Kratos calls and the mapper included, by entry point",
            login_duration.clone(),
        );
        let mapper_duration: Histograms<KindLabels> =
            Family::new_with_constructor(mapper_histogram);
        registry.register(
            "kratos_jit_mapper_evaluation_duration_seconds",
            "Time of one mapper evaluation as the login waited for it, by mapper kind (claims, scim)",
            mapper_duration.clone(),
        );
        let mapper_timeouts = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "kratos_jit_mapper_timeouts",
            "Mapper evaluations that did not finish within mapper.timeout, by provider",
            mapper_timeouts.clone(),
        );
        registry.register_collector(Box::new(WorkerRestarts(Box::new(worker_restarts))));
        let kratos_requests = Family::<KratosLabels, Counter>::default();
        registry.register(
            "kratos_jit_kratos_requests",
            "Kratos admin API attempts, retries included, by operation and status class (2xx, 3xx, 4xx, 5xx, error: no answer)",
            kratos_requests.clone(),
        );
        let kratos_duration: Histograms<OperationLabels> =
            Family::new_with_constructor(kratos_histogram);
        registry.register(
            "kratos_jit_kratos_request_duration_seconds",
            "Time of one Kratos admin API attempt, by operation",
            kratos_duration.clone(),
        );
        let kratos_retries = Family::<OperationLabels, Counter>::default();
        registry.register(
            "kratos_jit_kratos_retries",
            "Kratos admin API attempts repeated after a retryable failure, by operation",
            kratos_retries.clone(),
        );
        let scim_requests = Family::<ScimLabels, Counter>::default();
        registry.register(
            "kratos_jit_scim_requests",
            "SCIM requests answered, by provider, resource, method and HTTP status",
            scim_requests.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "kratos_jit_provider_reloads",
            "Loads of the providers directory, by result (the load at start counts as one ok; hot reload is not implemented yet)",
            reloads.clone(),
        );
        reloads.get_or_create(&ReloadLabels { result: "ok" }).inc();
        drop(reloads.get_or_create(&ReloadLabels { result: "error" }));
        // Series the example alerts read exist at 0 from the start, so that `increase()` sees
        // their first increment (a family without a series is not exposed at all). Bounded: one
        // per provider, and the fixed operations times the classes of failure.
        for provider in providers.iter() {
            drop(mapper_timeouts.get_or_create(&ProviderLabels {
                provider: Arc::from(provider.id.as_str()),
            }));
        }
        for operation in KRATOS_OPERATIONS {
            drop(kratos_retries.get_or_create(&OperationLabels { operation }));
            for class in [
                StatusClass::Success,
                StatusClass::ServerError,
                StatusClass::Error,
            ] {
                drop(kratos_requests.get_or_create(&KratosLabels {
                    operation,
                    status_class: class.as_str(),
                }));
            }
        }

        let ids: Vec<Arc<str>> = providers.iter().map(|p| Arc::from(p.id.as_str())).collect();
        let info = providers
            .iter()
            .zip(&ids)
            .map(|(p, id)| ProviderInfoLabels {
                provider: Arc::clone(id),
                mapper_sha256: prefix(&p.mapper.sha256),
                scim_mapper_sha256: p
                    .scim_mapper
                    .as_ref()
                    .map(|m| prefix(&m.sha256))
                    .unwrap_or_default(),
            })
            .collect();
        registry.register_collector(Box::new(ProviderInfo(info)));

        Metrics {
            inner: Arc::new(Inner {
                registry,
                providers: ids.into_iter().collect(),
                unknown: Arc::from(UNKNOWN),
                logins,
                denials,
                login_duration,
                mapper_duration,
                mapper_timeouts,
                kratos_requests,
                kratos_duration,
                kratos_retries,
                scim_requests,
            }),
        }
    }

    /// The label value of a provider id: the configured one, or [`UNKNOWN`].
    fn provider(&self, id: &str) -> Arc<str> {
        Arc::clone(self.inner.providers.get(id).unwrap_or(&self.inner.unknown))
    }

    /// The exposition, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; a collector's own error would end the text early.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// A login of `provider` through `entry` starts: [`LoginTimer::finish`] counts it. A timer
    /// dropped unfinished (the entry point's deadline cut the login off) counts an `error`.
    pub fn login(&self, entry: EntryPoint, provider: &str) -> LoginTimer<'_> {
        LoginTimer {
            metrics: self,
            entry,
            provider: self.provider(provider),
            started: Instant::now(),
            finished: false,
        }
    }

    fn login_ended(
        &self,
        entry: EntryPoint,
        provider: Arc<str>,
        action: &'static str,
        denial: Option<&'static str>,
        elapsed: Duration,
    ) {
        let inner = &*self.inner;
        if let Some(code) = denial {
            inner
                .denials
                .get_or_create(&DenialLabels {
                    provider: Arc::clone(&provider),
                    code,
                })
                .inc();
        }
        inner
            .logins
            .get_or_create(&LoginLabels {
                provider,
                entry_point: entry.as_str(),
                action,
            })
            .inc();
        inner
            .login_duration
            .get_or_create(&EntryLabels {
                entry_point: entry.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One mapper evaluation for `provider` ended with `result` after `elapsed`.
    pub fn mapper_evaluated(
        &self,
        provider: &str,
        kind: MapperKind,
        result: &Result<Value, MapperError>,
        elapsed: Duration,
    ) {
        let kind = match kind {
            MapperKind::Claims => "claims",
            MapperKind::Scim => "scim",
        };
        self.inner
            .mapper_duration
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
        if matches!(result, Err(MapperError::Timeout(_))) {
            self.inner
                .mapper_timeouts
                .get_or_create(&ProviderLabels {
                    provider: self.provider(provider),
                })
                .inc();
        }
    }

    /// A Kratos admin API attempt of `operation` starts: [`KratosAttempt::finish`] counts it. An
    /// attempt dropped unfinished (its caller's deadline) counts as `error`.
    pub fn kratos_attempt(&self, operation: &'static str) -> KratosAttempt<'_> {
        KratosAttempt {
            metrics: self,
            operation,
            started: Instant::now(),
            finished: false,
        }
    }

    fn kratos_ended(&self, operation: &'static str, class: StatusClass, elapsed: Duration) {
        self.inner
            .kratos_requests
            .get_or_create(&KratosLabels {
                operation,
                status_class: class.as_str(),
            })
            .inc();
        self.inner
            .kratos_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// A Kratos admin API call of `operation` is attempted again.
    pub fn kratos_retry(&self, operation: &'static str) {
        self.inner
            .kratos_retries
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// A SCIM request to `path` (`/scim/v2/<provider>/<resource>…`) with `method` was answered
    /// with `status`.
    pub fn scim_request(&self, path: &str, method: &str, status: u16) {
        let mut segments = path.trim_start_matches('/').split('/').skip(2);
        let provider = segments
            .next()
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
            .map_or_else(|| Arc::clone(&self.inner.unknown), |id| self.provider(&id));
        let resource = match (segments.next(), segments.next()) {
            (Some("Users"), _) => "Users",
            (Some("Groups"), _) => "Groups",
            (Some(".search"), None) => "search",
            (Some("ServiceProviderConfig"), _) => "ServiceProviderConfig",
            (Some("ResourceTypes"), _) => "ResourceTypes",
            (Some("Schemas"), _) => "Schemas",
            _ => "other",
        };
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            _ => "other",
        };
        self.inner
            .scim_requests
            .get_or_create(&ScimLabels {
                provider,
                resource,
                method,
                status,
            })
            .inc();
    }
}

fn prefix(sha256: &str) -> String {
    sha256.chars().take(HASH_PREFIX).collect()
}

/// A login in progress; see [`Metrics::login`].
pub struct LoginTimer<'m> {
    metrics: &'m Metrics,
    entry: EntryPoint,
    provider: Arc<str>,
    started: Instant,
    finished: bool,
}

impl LoginTimer<'_> {
    /// Counts the login with its outcome (`error` when it could not be carried out).
    pub fn finish(mut self, result: &Result<Outcome, LoginError>) {
        self.finished = true;
        let (action, denial) = match result {
            Ok(outcome) => (
                outcome.action.as_str(),
                outcome.denial.as_ref().map(Denial::code),
            ),
            Err(_) => ("error", None),
        };
        let provider = Arc::clone(&self.provider);
        self.metrics
            .login_ended(self.entry, provider, action, denial, self.started.elapsed());
    }
}

impl Drop for LoginTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let provider = Arc::clone(&self.provider);
            self.metrics
                .login_ended(self.entry, provider, "error", None, self.started.elapsed());
        }
    }
}

/// A Kratos admin API attempt in progress; see [`Metrics::kratos_attempt`].
pub struct KratosAttempt<'m> {
    metrics: &'m Metrics,
    operation: &'static str,
    started: Instant,
    finished: bool,
}

impl KratosAttempt<'_> {
    /// Counts the attempt: answered with an HTTP `status`, or `None` for no answer.
    pub fn finish(mut self, status: Option<u16>) {
        self.finished = true;
        let class = status.map_or(StatusClass::Error, StatusClass::of);
        self.metrics
            .kratos_ended(self.operation, class, self.started.elapsed());
    }
}

impl Drop for KratosAttempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .kratos_ended(self.operation, StatusClass::Error, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_metrics() -> Metrics {
        let (providers, _) = Providers::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mappers")
                .as_path(),
        )
        .unwrap();
        Metrics::new(&providers, || 3)
    }

    #[test]
    fn a_provider_id_no_provider_has_is_counted_as_unknown() {
        let metrics = sample_metrics();
        metrics.scim_request("/scim/v2/okta-acme/Users/abc", "PATCH", 200);
        metrics.scim_request("/scim/v2/ada%40acme.example/Users", "GET", 404);
        metrics.scim_request("/scim/v2/okta%2Dacme/.search", "POST", 200);
        let text = metrics.encode();
        assert!(text.contains(
            r#"kratos_jit_scim_requests_total{provider="okta-acme",resource="Users",method="PATCH",status="200"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"kratos_jit_scim_requests_total{provider="unknown",resource="Users",method="GET",status="404"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"kratos_jit_scim_requests_total{provider="okta-acme",resource="search",method="POST",status="200"} 1"#
        ), "{text}");
        assert!(!text.contains("ada"), "{text}");
    }

    #[test]
    fn the_info_metric_names_every_provider_with_its_mapper_hash_prefix() {
        let text = sample_metrics().encode();
        let info: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kratos_jit_provider_info{"))
            .collect();
        assert_eq!(info.len(), 4, "{text}");
        assert!(
            info.iter()
                .any(|l| l.contains(r#"provider="okta-acme",mapper_sha256=""#)),
            "{info:?}"
        );
        assert!(
            text.contains("kratos_jit_mapper_worker_restarts_total 3"),
            "{text}"
        );
        assert!(
            text.contains(r#"kratos_jit_provider_reloads_total{result="ok"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn an_abandoned_kratos_attempt_counts_as_an_error() {
        let metrics = Metrics::default();
        metrics.kratos_attempt("get").finish(Some(503));
        drop(metrics.kratos_attempt("get"));
        metrics.kratos_attempt("create").finish(Some(201));
        metrics.kratos_attempt("create").finish(None);
        let text = metrics.encode();
        for line in [
            r#"kratos_jit_kratos_requests_total{operation="get",status_class="5xx"} 1"#,
            r#"kratos_jit_kratos_requests_total{operation="get",status_class="error"} 1"#,
            r#"kratos_jit_kratos_requests_total{operation="create",status_class="2xx"} 1"#,
            r#"kratos_jit_kratos_requests_total{operation="create",status_class="error"} 1"#,
            r#"kratos_jit_kratos_request_duration_seconds_count{operation="get"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
