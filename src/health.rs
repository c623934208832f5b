//! Readiness: whether this replica can serve logins now, for `GET /health/ready`.
//!
//! [`Readiness::report`] runs every check and answers ready only when all pass:
//!
//! | check | ready when |
//! | --- | --- |
//! | `providers` | the provider tree was loaded and checked ([`Readiness::providers_loaded`]) |
//! | `kratos` | the Kratos admin API answered within `health.kratos_max_age`: the background probe of its `GET /health/ready` ([`probe_kratos`]) or any real admin call that got an answer |
//! | `scim_store` | (only with `scim.database_url`) a `SELECT 1` on the store answers within [`STORE_PING_TIMEOUT`] |
//! | `hop` | (only with `hop.signing_keys`) a JWS signed by the signing key verifies with the published JWK set; checked once at start, since the keys never change while serving |
//! | `mapper_workers` | at least one mapper worker process is running |
//!
//! Each check's value is `"ok"` or a sentence naming what is wrong: never a secret, a URL (a
//! database URL may hold a password), or personal data.
//!
//! The checks are cheap enough to run at every probe, and none logs per call: only the Kratos
//! probe logs, at DEBUG for each probe and once at WARN (INFO) when Kratos stops (starts
//! again) answering.
//!
//! **Before the providers are loaded** the report is not ready (`providers: not loaded yet`).
//! `serve` loads and checks the provider tree before it binds its listener, so that a broken
//! tree ends the process with status 2 instead of serving: until then a probe finds the port
//! closed, which Kubernetes and compose treat as not ready too. The state exists so that a
//! server started before its providers (a reload, a test) reports it honestly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kratos::HttpKratos;
use crate::mapper::MapperEngine;
use crate::store::Store;

/// How long the store's `SELECT 1` may take before the store counts as not ready.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The `[health]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// How often the background probe asks Kratos's `GET /health/ready` (default 5 s).
    pub kratos_interval: Duration,
    /// Kratos is ready while its last answer (probe or real call) is younger than this
    /// (default 15 s: three probes).
    pub kratos_max_age: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            kratos_interval: Duration::from_secs(5),
            kratos_max_age: Duration::from_secs(15),
        }
    }
}

/// When the Kratos admin API last answered, shared by the probe and every real call
/// ([`HttpKratos`] records each answer and each failure to get one).
#[derive(Debug)]
pub struct KratosContact {
    since: Instant,
    /// Milliseconds from `since` to the last answer, plus one; 0: never.
    answered: AtomicU64,
    /// The last failure to get an answer, for the report (no URL, no secret).
    problem: Mutex<Option<String>>,
}

impl Default for KratosContact {
    fn default() -> Self {
        KratosContact {
            since: Instant::now(),
            answered: AtomicU64::new(0),
            problem: Mutex::new(None),
        }
    }
}

impl KratosContact {
    /// Kratos answered (a probe's 200, or a real call's answer).
    pub fn answered(&self) {
        let millis = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.answered.fetch_max(millis + 1, Ordering::Relaxed);
    }

    /// A call got no usable answer: `problem` says why (no URL, no secret).
    pub fn failed(&self, problem: impl Into<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(problem.into());
    }

    /// How long ago Kratos last answered; `None` if it never did.
    pub fn since_last_answer(&self) -> Option<Duration> {
        match self.answered.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.since
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    fn last_problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The outcome of one check: `Ok` or what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ok,
    NotReady(String),
}

/// Every check by name, and whether all passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checks: BTreeMap<&'static str, Check>,
}

impl Report {
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|c| *c == Check::Ok)
    }

    /// `{"status": "ok"|"unavailable", "checks": {name: "ok"|reason}}`.
    pub fn to_json(&self) -> Value {
        let checks: serde_json::Map<String, Value> = self
            .checks
            .iter()
            .map(|(name, check)| {
                let value = match check {
                    Check::Ok => "ok".to_owned(),
                    Check::NotReady(reason) => reason.clone(),
                };
                ((*name).to_owned(), Value::String(value))
            })
            .collect();
        json!({
            "status": if self.is_ready() { "ok" } else { "unavailable" },
            "checks": checks,
        })
    }
}

/// Everything readiness looks at. Built by the HTTP application; `Send + Sync`.
pub struct Readiness {
    /// 0 until the providers are loaded, then how many (+1).
    providers: AtomicUsize,
    kratos: Arc<KratosContact>,
    kratos_max_age: Duration,
    store: Option<Store>,
    /// `None`: the hop is off. Otherwise the result of the start-up key check.
    hop: Option<Result<(), String>>,
    mapper: Option<MapperEngine>,
}

impl Readiness {
    /// Readiness with nothing loaded yet: providers and mapper workers not ready.
    pub fn new(kratos: Arc<KratosContact>, settings: HealthSettings) -> Readiness {
        Readiness {
            providers: AtomicUsize::new(0),
            kratos,
            kratos_max_age: settings.kratos_max_age,
            store: None,
            hop: None,
            mapper: None,
        }
    }

    /// The SCIM store to ping (SCIM on).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The hop is on; `keys` is its signing keys' start-up check.
    pub fn with_hop(mut self, keys: Result<(), String>) -> Self {
        self.hop = Some(keys);
        self
    }

    /// The mapper engine whose workers must be running.
    pub fn with_mapper(mut self, engine: MapperEngine) -> Self {
        self.mapper = Some(engine);
        self
    }

    /// The provider tree is loaded and checked: `count` providers.
    pub fn providers_loaded(&self, count: usize) {
        self.providers.store(count + 1, Ordering::Relaxed);
    }

    /// Runs every check.
    pub async fn report(&self) -> Report {
        let mut checks = BTreeMap::new();
        checks.insert(
            "providers",
            match self.providers.load(Ordering::Relaxed) {
                0 => Check::NotReady("not loaded yet".into()),
                _ => Check::Ok,
            },
        );
        checks.insert("kratos", self.kratos_check());
        if let Some(store) = &self.store {
            let check = match tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await {
                Ok(Ok(())) => Check::Ok,
                Ok(Err(error)) => Check::NotReady(format!("{} store: {error}", store.backend())),
                Err(_) => Check::NotReady(format!(
                    "the {} store did not answer within {} s",
                    store.backend(),
                    STORE_PING_TIMEOUT.as_secs()
                )),
            };
            checks.insert("scim_store", check);
        }
        if let Some(hop) = &self.hop {
            let check = match hop {
                Ok(()) => Check::Ok,
                Err(problem) => Check::NotReady(problem.clone()),
            };
            checks.insert("hop", check);
        }
        checks.insert(
            "mapper_workers",
            match &self.mapper {
                None => Check::NotReady("not started yet".into()),
                Some(engine) => {
                    let workers = engine.workers();
                    if workers.running > 0 {
                        Check::Ok
                    } else if workers.failing {
                        Check::NotReady(format!(
                            "no mapper worker is running (0 of {}): starting one failed, see the log",
                            workers.wanted
                        ))
                    } else {
                        Check::NotReady(format!(
                            "the mapper workers are starting (0 of {} running)",
                            workers.wanted
                        ))
                    }
                }
            },
        );
        Report { checks }
    }

    fn kratos_check(&self) -> Check {
        let last = self.kratos.since_last_answer();
        if last.is_some_and(|age| age <= self.kratos_max_age) {
            return Check::Ok;
        }
        let problem = self
            .kratos
            .last_problem()
            .map(|p| format!(" (last attempt: {p})"))
            .unwrap_or_default();
        Check::NotReady(match last {
            None => format!("no answer from the admin API yet{problem}"),
            Some(age) => format!(
                "no answer from the admin API for {} s{problem}",
                age.as_secs()
            ),
        })
    }
}

/// Asks Kratos's `GET /health/ready` every `interval` (the first time at once) until
/// `readiness` is dropped. Each probe is recorded in the [`KratosContact`] by
/// [`HttpKratos::probe_ready`]; this loop only logs the transitions.
pub async fn probe_kratos(kratos: HttpKratos, readiness: Weak<Readiness>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reachable: Option<bool> = None;
    loop {
        ticks.tick().await;
        if readiness.strong_count() == 0 {
            return;
        }
        let outcome = kratos.probe_ready().await;
        match (&outcome, reachable) {
            (Ok(()), Some(false)) => {
                tracing::info!(message = "The Kratos admin API answers again.")
            }
            (Err(problem), None | Some(true)) => tracing::warn!(
                message = "The Kratos admin API does not answer its readiness probe; this replica reports not ready once the last answer is older than health.kratos_max_age.",
                problem = %problem
            ),
            _ => tracing::debug!(message = "Kratos readiness probe.", ok = outcome.is_ok()),
        }
        reachable = Some(outcome.is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn before_the_providers_are_loaded_readiness_names_them_and_the_workers() {
        let contact = Arc::new(KratosContact::default());
        contact.answered();
        let readiness = Readiness::new(contact, HealthSettings::default());

        let report = readiness.report().await;
        assert!(!report.is_ready());
        let body = report.to_json();
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["providers"], "not loaded yet");
        assert_eq!(body["checks"]["kratos"], "ok");
        assert_eq!(body["checks"]["mapper_workers"], "not started yet");
        assert!(body["checks"].get("scim_store").is_none(), "SCIM is off");
        assert!(body["checks"].get("hop").is_none(), "the hop is off");

        readiness.providers_loaded(4);
        let body = readiness.report().await.to_json();
        assert_eq!(body["checks"]["providers"], "ok");
    }

    #[tokio::test]
    async fn kratos_is_ready_only_while_its_last_answer_is_recent() {
        let contact = Arc::new(KratosContact::default());
        let settings = HealthSettings {
            kratos_interval: Duration::from_millis(10),
            kratos_max_age: Duration::from_millis(50),
        };
        let readiness = Readiness::new(Arc::clone(&contact), settings);
        assert_eq!(
            readiness.kratos_check(),
            Check::NotReady("no answer from the admin API yet".into())
        );
        contact.failed("cannot connect");
        assert_eq!(
            readiness.kratos_check(),
            Check::NotReady(
                "no answer from the admin API yet (last attempt: cannot connect)".into()
            )
        );
        contact.answered();
        assert_eq!(readiness.kratos_check(), Check::Ok);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let Check::NotReady(reason) = readiness.kratos_check() else {
            panic!("an answer older than kratos_max_age is stale");
        };
        assert!(
            reason.starts_with("no answer from the admin API for 0 s"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_failing_hop_key_check_is_reported_under_hop() {
        let contact = Arc::new(KratosContact::default());
        contact.answered();
        let readiness = Readiness::new(contact, HealthSettings::default())
            .with_hop(Err("the signing key's JWS does not verify".into()));
        readiness.providers_loaded(1);
        let body = readiness.report().await.to_json();
        assert_eq!(
            body["checks"]["hop"],
            "the signing key's JWS does not verify"
        );
    }
}
