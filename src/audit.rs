//! The audit trail: one JSON event per identity change kratos-jit makes and per refusal, on a
//! sink of its own (a file, or standard output), apart from the operational log.
//!
//! The contract (the schema is `docs/audit-event.schema.json`, its reading `docs/audit.md`):
//!
//! - **Written before the change.** The use case ([`crate::login`]) and the SCIM lifecycle
//!   ([`crate::scim::service`]) call [`Audit::record`] for a decided change *before* the Kratos
//!   write that carries it out. When the event cannot be written and `audit.on_failure` is
//!   `refuse` (the default), the call fails with [`AuditError`] and the write never happens:
//!   the entry point answers 503 (or its own "unavailable" form). An unaudited change never
//!   happens silently.
//! - **A follow-up when the write fails.** If Kratos then refuses or cannot be reached, a
//!   `write_failed` event names the first one (`refers_to`), best effort. So an event without a
//!   `write_failed` after it is a change Kratos was asked to make and, unless the process died
//!   in between, made.
//! - **Refusals** are written when the use case answers them; nothing is written to Kratos for
//!   them, so a sink failure there is logged and the refusal answered all the same.
//! - **No subject, ever**: a subject appears only as [`Audit::subject_hash`], an HMAC-SHA-256 of
//!   `<provider>:<subject>` under `audit.hash_key` (or under a fixed, public salt without one).
//!   The values before and after a change are written as they are, or, with `audit.values =
//!   "hashed"` (the default), as HMACs of their JSON under the same key.
//!
//! Cost: an event is serialised into one buffer and written with one `write` call (append
//! mode) under a mutex, then flushed; `audit.fsync = true` adds an `fdatasync` per event. A
//! login that changes nothing writes no event.

mod changes;
mod sink;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use changes::{created_fields, failure_word, field_changes};
use sink::{Sink, open_file};

use crate::domain::{IdentityId, ProviderId, Subject};
use crate::secret::Secret;

/// The version of the event schema; a change that could break a reader raises it.
pub const SCHEMA_VERSION: u32 = 1;
/// Every event's `target`, so that a log pipeline reading standard output routes them.
pub const TARGET: &str = "kratos_jit::audit";
/// The key of the HMACs when `audit.hash_key` is unset: public, so only a salt.
const PUBLIC_SALT: &[u8] = b"kratos-jit audit v1 public salt";

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// No audit trail.
    Off,
    /// One JSON object per line on standard output (the operational log is on standard error).
    Stdout,
    /// Appended to this file, one JSON object per line (created with mode 0600).
    File(PathBuf),
}

/// How the values before and after a change are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMode {
    Plain,
    Hashed,
}

impl ValueMode {
    fn as_str(self) -> &'static str {
        match self {
            ValueMode::Plain => "plain",
            ValueMode::Hashed => "hashed",
        }
    }
}

/// What a change does when its event cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The change is refused (503); nothing is written to Kratos.
    Refuse,
    /// The change goes ahead; the failure is logged at ERROR.
    Proceed,
}

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub sink: SinkConfig,
    pub values: ValueMode,
    pub on_failure: OnFailure,
    /// `fdatasync` after every event (file sink only).
    pub fsync: bool,
    /// The HMAC key of subject and value hashes.
    pub hash_key: Option<Secret>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sink: SinkConfig::Stdout,
            values: ValueMode::Hashed,
            on_failure: OnFailure::Refuse,
            fsync: false,
            hash_key: None,
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Created,
    Updated,
    Linked,
    SessionsRevoked,
    Deactivated,
    Reactivated,
    Deleted,
    Denied,
    /// The Kratos write an earlier event announced failed (`refers_to`).
    WriteFailed,
}

/// One changed field: `traits.role`, its value before (`None`: absent) and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Already a hash (the subject hash of `credentials.oidc`): never hashed again.
    pub opaque: bool,
}

/// What the caller knows of an event; [`Audit`] adds the id, the time and the request.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub entry_point: &'static str,
    pub provider: &'a ProviderId,
    pub identity_id: Option<IdentityId>,
    pub subject: Option<&'a Subject>,
    pub action: AuditAction,
    pub denial_code: Option<&'static str>,
    pub changes: Vec<Change>,
    pub mapper_sha256: Option<&'a str>,
    pub refers_to: Option<Uuid>,
    /// A log-safe word for why a write failed (`write_failed` only).
    pub failure: Option<&'static str>,
}

impl<'a> Record<'a> {
    pub fn new(entry_point: &'static str, provider: &'a ProviderId, action: AuditAction) -> Self {
        Record {
            entry_point,
            provider,
            identity_id: None,
            subject: None,
            action,
            denial_code: None,
            changes: vec![],
            mapper_sha256: None,
            refers_to: None,
            failure: None,
        }
    }

    /// The follow-up of `event` when its Kratos write failed.
    pub fn failed(&self, event: Uuid, failure: &'static str) -> Record<'a> {
        Record {
            action: AuditAction::WriteFailed,
            denial_code: None,
            changes: vec![],
            refers_to: Some(event),
            failure: Some(failure),
            ..self.clone()
        }
    }
}

/// The sink could not be written, and the change must not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail could not be written ({0}); nothing was changed")]
pub struct AuditError(String);

/// The request an event belongs to: a request id (every HTTP request) and, for web hooks,
/// Kratos's `Ory-Webhook-Trigger-ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub trigger_id: Option<String>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// Runs `future` as the request `context` (see [`RequestContext`]).
pub async fn scope<F: Future>(context: RequestContext, future: F) -> F::Output {
    CONTEXT.scope(context, future).await
}

/// Runs `future` with the web hook's trigger id added to the current request.
pub async fn with_trigger<F: Future>(trigger: Option<&str>, future: F) -> F::Output {
    let mut context = current_context();
    context.trigger_id = trigger.map(str::to_owned);
    scope(context, future).await
}

fn current_context() -> RequestContext {
    CONTEXT.try_with(Clone::clone).unwrap_or_default()
}

/// A fresh request id.
pub fn new_request_id() -> String {
    Uuid::new_v4().to_string()
}

/// The event as written: see `docs/audit-event.schema.json`.
#[derive(Serialize)]
struct Event<'a> {
    schema_version: u32,
    target: &'static str,
    event_id: Uuid,
    time: String,
    entry_point: &'static str,
    provider: &'a str,
    identity_id: Option<String>,
    subject_hash: Option<String>,
    action: AuditAction,
    denial_code: Option<&'static str>,
    values: &'static str,
    changes: Vec<EventChange>,
    mapper_sha256: Option<&'a str>,
    request_id: Option<String>,
    trigger_id: Option<String>,
    trace_id: Option<String>,
    refers_to: Option<Uuid>,
    failure: Option<&'static str>,
}

#[derive(Serialize)]
struct EventChange {
    field: String,
    before: Value,
    after: Value,
}

struct Inner {
    sink: Sink,
    values: ValueMode,
    on_failure: OnFailure,
    key: ring::hmac::Key,
    keyed: bool,
}

/// The audit trail's writer, shared by every request (cheap to clone).
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Audit(on)"
        } else {
            "Audit(off)"
        })
    }
}

impl Audit {
    /// No audit trail (`kratos-jit check`, tests of other concerns).
    pub fn off() -> Audit {
        Audit { inner: None }
    }

    /// The trail `config` describes. A file that cannot be opened now is logged and retried
    /// at every event, so that the changes are refused until it can (fail closed).
    pub fn open(config: &AuditConfig) -> Audit {
        let sink = match &config.sink {
            SinkConfig::Off => return Audit::off(),
            SinkConfig::Stdout => Sink::Stdout,
            SinkConfig::File(path) => {
                let file = match open_file(path) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        tracing::error!(message = "The audit file cannot be opened; identity changes are refused until it can.", path = %path.display(), error = %e);
                        None
                    }
                };
                Sink::File {
                    path: path.clone(),
                    file: Mutex::new(file),
                    fsync: config.fsync,
                }
            }
        };
        let secret = config.hash_key.as_ref().map(|k| k.expose().as_bytes());
        Audit {
            inner: Some(Arc::new(Inner {
                sink,
                values: config.values,
                on_failure: config.on_failure,
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.unwrap_or(PUBLIC_SALT)),
                keyed: secret.is_some(),
            })),
        }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// The subject's hash as events carry it: `hmac-sha256:<hex>` of `<provider>:<subject>`
    /// under `audit.hash_key`, or `salted-sha256:<hex>` under the public salt without one.
    pub fn subject_hash(&self, provider: &ProviderId, subject: &Subject) -> Option<String> {
        let inner = self.inner.as_ref()?;
        Some(inner.hash(format!("{provider}:{}", subject.as_str()).as_bytes()))
    }

    /// Writes the event of `record` and returns its id (`None` when the trail is off, or a
    /// failure was let through by `on_failure = "proceed"`).
    pub fn record(&self, record: &Record<'_>) -> Result<Option<Uuid>, AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let event_id = Uuid::new_v4();
        let context = current_context();
        let event = Event {
            schema_version: SCHEMA_VERSION,
            target: TARGET,
            event_id,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            entry_point: record.entry_point,
            provider: record.provider.as_str(),
            identity_id: record.identity_id.map(|id| id.to_string()),
            subject_hash: record
                .subject
                .map(|s| inner.hash(format!("{}:{}", record.provider, s.as_str()).as_bytes())),
            action: record.action,
            denial_code: record.denial_code,
            values: inner.values.as_str(),
            changes: record
                .changes
                .iter()
                .map(|c| EventChange {
                    field: c.field.clone(),
                    before: inner.value(c.before.as_ref(), c.opaque),
                    after: inner.value(c.after.as_ref(), c.opaque),
                })
                .collect(),
            mapper_sha256: record.mapper_sha256.filter(|h| !h.is_empty()),
            request_id: context.request_id,
            trigger_id: context.trigger_id,
            trace_id: crate::trace::current_trace_id(),
            refers_to: record.refers_to,
            failure: record.failure,
        };
        let mut line = serde_json::to_vec(&event).expect("an event serialises");
        line.push(b'\n');
        match inner.sink.write(&line) {
            Ok(()) => Ok(Some(event_id)),
            Err(e) => {
                tracing::error!(message = "Could not write an audit event.", action = ?record.action, provider = record.provider.as_str(), error = %e);
                match inner.on_failure {
                    OnFailure::Refuse => Err(AuditError(e.kind().to_string())),
                    OnFailure::Proceed => Ok(None),
                }
            }
        }
    }

    /// Writes a refusal: nothing was written to Kratos, so a failure is only logged.
    pub fn refusal(&self, record: &Record<'_>) {
        let _ = self.record(record);
    }

    /// Writes the `write_failed` follow-up of `event`, best effort.
    pub fn write_failed(&self, record: &Record<'_>, event: Option<Uuid>, failure: &'static str) {
        if let Some(event) = event {
            let _ = self.record(&record.failed(event, failure));
        }
    }
}

impl Inner {
    fn hash(&self, bytes: &[u8]) -> String {
        let tag = ring::hmac::sign(&self.key, bytes);
        let scheme = if self.keyed {
            "hmac-sha256"
        } else {
            "salted-sha256"
        };
        format!("{scheme}:{}", hex::encode(tag.as_ref()))
    }

    fn value(&self, value: Option<&Value>, opaque: bool) -> Value {
        match (value, self.values) {
            (None, _) => Value::Null,
            (Some(v), _) if opaque => v.clone(),
            (Some(v), ValueMode::Plain) => v.clone(),
            (Some(v), ValueMode::Hashed) => Value::String(self.hash(v.to_string().as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> jsonschema::Validator {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-event.schema.json");
        let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    }

    fn trail(values: ValueMode, key: Option<&str>) -> (Audit, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            sink: SinkConfig::File(dir.path().join("audit.jsonl")),
            values,
            hash_key: key.map(|k| Secret::new(k.to_owned())),
            ..AuditConfig::default()
        };
        (Audit::open(&config), dir)
    }

    fn events(dir: &tempfile::TempDir) -> Vec<Value> {
        std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn update<'a>(provider: &'a ProviderId, subject: &'a Subject) -> Record<'a> {
        Record {
            subject: Some(subject),
            changes: vec![Change {
                field: "traits.role".into(),
                before: Some(json!("admin")),
                after: Some(json!("user")),
                opaque: false,
            }],
            mapper_sha256: Some("ab12"),
            ..Record::new("api", provider, AuditAction::Updated)
        }
    }

    #[tokio::test]
    async fn an_event_matches_the_schema_and_carries_the_request() {
        let (audit, dir) = trail(ValueMode::Plain, Some("0123456789abcdef-key"));
        let provider: ProviderId = "okta-acme".parse().unwrap();
        let subject = Subject::parse("ada@acme.example").unwrap();
        let context = RequestContext {
            request_id: Some("req-1".into()),
            trigger_id: None,
        };
        let id = scope(context, async {
            audit.record(&update(&provider, &subject))
        })
        .await
        .unwrap()
        .unwrap();

        let events = events(&dir);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        let errors: Vec<String> = schema().iter_errors(event).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{event}");
        assert_eq!(event["event_id"], id.to_string());
        assert_eq!(event["request_id"], "req-1");
        assert_eq!(event["changes"][0]["before"], "admin");
        assert!(
            event["subject_hash"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:")
        );
        assert!(!event.to_string().contains("ada@acme.example"));
    }

    #[test]
    fn hashed_values_and_keyed_subjects_hide_what_they_stand_for() {
        let provider: ProviderId = "okta-acme".parse().unwrap();
        let subject = Subject::parse("ada@acme.example").unwrap();
        let (audit, dir) = trail(ValueMode::Hashed, None);
        audit.record(&update(&provider, &subject)).unwrap();
        let (keyed, _keyed_dir) = trail(ValueMode::Hashed, Some("0123456789abcdef-key"));

        let event = &events(&dir)[0];
        let text = event.to_string();
        assert!(!text.contains("admin") && !text.contains("ada@"), "{text}");
        assert_eq!(event["values"], "hashed");
        assert!(
            event["changes"][0]["after"]
                .as_str()
                .unwrap()
                .starts_with("salted-sha256:")
        );
        assert_ne!(
            audit.subject_hash(&provider, &subject),
            keyed.subject_hash(&provider, &subject),
            "the key must change the hash"
        );
        assert!(schema().is_valid(event));
    }

    #[test]
    fn an_unwritable_sink_refuses_unless_told_to_proceed() {
        let provider: ProviderId = "okta-acme".parse().unwrap();
        let subject = Subject::parse("ada@acme.example").unwrap();
        let full = AuditConfig {
            sink: SinkConfig::File("/dev/full".into()),
            ..AuditConfig::default()
        };
        let refused = Audit::open(&full).record(&update(&provider, &subject));
        assert!(refused.is_err(), "{refused:?}");

        let proceed = AuditConfig {
            on_failure: OnFailure::Proceed,
            ..full
        };
        assert_eq!(
            Audit::open(&proceed).record(&update(&provider, &subject)),
            Ok(None)
        );
    }

    /// What an event costs (`cargo test --lib audit::tests::cost -- --ignored --nocapture`):
    /// an update of two fields, written to a file, per value mode.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost() {
        let provider: ProviderId = "okta-acme".parse().unwrap();
        let subject = Subject::parse("ada@acme.example").unwrap();
        let mut record = update(&provider, &subject);
        record.changes.push(Change {
            field: "traits.last_name".into(),
            before: Some(json!("Lovelace")),
            after: Some(json!("Byron")),
            opaque: false,
        });
        for values in [ValueMode::Plain, ValueMode::Hashed] {
            let (audit, _dir) = trail(values, Some("0123456789abcdef-key"));
            let n = 20_000;
            let start = std::time::Instant::now();
            for _ in 0..n {
                audit.record(&record).unwrap();
            }
            let each = start.elapsed() / n;
            println!("{values:?}: {each:?} per event");
        }
    }
}
