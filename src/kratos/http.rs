//! [`HttpKratos`]: the [`KratosAdmin`] port spoken over HTTP to a real Kratos admin API (or to the
//! loopback stand-in, which speaks the same wire format).
//!
//! What it promises:
//!
//! - **Bounded time.** Every operation ends within [`KratosSettings::deadline`], retries
//!   included; each attempt is cut off after [`KratosSettings::request_timeout`].
//! - **Retries only where repeating is harmless.** Only [`KratosError::Unavailable`] outcomes
//!   (connection failures, timeouts, 5xx, 429) are retried, at most
//!   [`KratosSettings::max_retries`] times, with exponentially growing, fully jittered waits;
//!   a `Retry-After` on 429/503 is honoured when it fits in the deadline. Which calls are safe to
//!   repeat is stated on each method.
//! - **Errors by status.** The HTTP status alone picks the [`KratosError`] variant; the herodot
//!   envelope (`{"error":{"message","reason"}}`) only supplies the words (docs/kratos.md §3.9).
//! - **Lenient reads.** Answers are read into [`Identity`] without the generated client's closed
//!   enums, so a credential type, address channel or state added by a later Kratos never makes a
//!   read fail. Request bodies are built from the generated `ory-kratos-client` models.
//! - **Quiet about secrets and people.** Credentials never appear in `Debug` output; logs carry
//!   the method, path template, status, attempt and elapsed time — never URLs with their query,
//!   bodies, traits, identifiers or the `Authorization` header.

mod link;
mod retry;
mod settings;
mod wire;

pub use settings::{KratosSettings, SettingsError};

use crate::domain::IdentityId;

use super::{
    Identity, IdentityPage, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use retry::Replay;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

use crate::secret::Secret;

enum Auth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// The Kratos admin API over HTTP. Cheap to clone (the connection pools are shared).
#[derive(Clone)]
pub struct HttpKratos {
    clients: std::sync::Arc<Clients>,
    base: Url,
    auth: Option<std::sync::Arc<Auth>>,
    request_timeout: Duration,
    deadline: Duration,
    max_retries: u32,
    /// When Kratos last answered, for readiness (shared with [`crate::health`]).
    contact: std::sync::Arc<crate::health::KratosContact>,
    /// Where every attempt and retry is counted ([`HttpKratos::with_metrics`]).
    metrics: crate::metrics::Metrics,
}

impl fmt::Debug for HttpKratos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth.as_deref() {
            None => "none",
            Some(Auth::Bearer(_)) => "bearer [redacted]",
            Some(Auth::Basic { .. }) => "basic [redacted]",
        };
        f.debug_struct("HttpKratos")
            .field("base", &self.base.as_str())
            .field("auth", &auth)
            .field("request_timeout", &self.request_timeout)
            .field("deadline", &self.deadline)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// One HTTP call, described once and sent as many times as the retry policy allows.
struct Call {
    /// The port method, for logs.
    operation: &'static str,
    method: Method,
    /// The path with placeholders, for logs and error texts: the real path and query may hold
    /// an identity id or a `provider:subject` identifier.
    path: &'static str,
    url: Url,
    body: Option<Vec<u8>>,
    replay: Replay,
}

impl Call {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A complete answer: status, headers and the whole body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl HttpKratos {
    /// Checks every setting ([`KratosSettings::problems`]) and builds the HTTP client.
    pub fn new(settings: KratosSettings) -> Result<HttpKratos, SettingsError> {
        let problems = settings.problems();
        let base = Url::parse(settings.admin_url.trim()).ok();
        let Some(base) = base.filter(|_| problems.is_empty()) else {
            return Err(SettingsError::Invalid { problems });
        };
        let auth = match (settings.bearer_token, settings.basic_auth) {
            (Some(token), _) => Some(Auth::Bearer(token)),
            (None, Some((username, password))) => Some(Auth::Basic { username, password }),
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("kratos-jit/", env!("CARGO_PKG_VERSION"))),
        );
        let connect_timeout = settings.request_timeout;
        let build = move || {
            reqwest::Client::builder()
                .default_headers(headers.clone())
                .connect_timeout(connect_timeout)
                // The admin API never redirects; following one would resend the Authorization
                // header and the body somewhere nobody configured.
                .redirect(reqwest::redirect::Policy::none())
                .build()
        };
        let first = build().map_err(SettingsError::Client)?;
        Ok(HttpKratos {
            clients: std::sync::Arc::new(Clients {
                build: Box::new(build),
                first,
                by_thread: Default::default(),
            }),
            base,
            auth: auth.map(std::sync::Arc::new),
            request_timeout: settings.request_timeout,
            deadline: settings.deadline,
            max_retries: settings.max_retries,
            contact: Default::default(),
            metrics: Default::default(),
        })
    }

    /// When Kratos last answered this client (its clones share it), for readiness.
    pub fn contact(&self) -> std::sync::Arc<crate::health::KratosContact> {
        std::sync::Arc::clone(&self.contact)
    }

    /// One `GET <admin_url>/health/ready` (Kratos's readiness, `isReady` in its API spec:
    /// 200 once its database answers, 503 with the reasons otherwise), with the configured
    /// credentials, cut off after `request_timeout`, never retried. The outcome is recorded in
    /// [`Self::contact`]; the error says what went wrong without a URL or secret.
    pub async fn probe_ready(&self) -> Result<(), String> {
        let mut url = self.base.clone();
        let pushed = url
            .path_segments_mut()
            .map(|mut segments| {
                segments.pop_if_empty().extend(["health", "ready"]);
            })
            .is_ok();
        let outcome = if !pushed {
            Err("admin_url cannot carry a path".to_owned())
        } else {
            let call = Call {
                operation: "probe_ready",
                method: Method::GET,
                path: "/health/ready",
                url,
                body: None,
                replay: Replay::Safe,
            };
            match self.attempt(&call, self.request_timeout).await {
                Ok(answer) if answer.status == StatusCode::OK => Ok(()),
                Ok(answer) if answer.status == StatusCode::SERVICE_UNAVAILABLE => Err(
                    "Kratos reports itself not ready (GET /health/ready answered 503)".to_owned(),
                ),
                Ok(answer) => Err(format!(
                    "GET /health/ready answered HTTP {}",
                    answer.status.as_u16()
                )),
                Err(transport) => Err(format!(
                    "GET /health/ready: {}",
                    describe_transport(&transport, self.request_timeout)
                )),
            }
        };
        match &outcome {
            // `attempt` recorded the answer already.
            Ok(()) => {}
            Err(problem) => self.contact.failed(problem.clone()),
        }
        outcome
    }

    /// Counts every attempt (by operation and status class, with its time) and every retry
    /// into `metrics` (by default, into a registry nobody serves).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// `<admin_url>/admin/identities[/<segments>…]`, each segment percent-encoded.
    fn identities_url(&self, segments: &[&str]) -> Result<Url, KratosError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| KratosError::Protocol {
                detail: "admin_url cannot carry a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(["admin", "identities"])
            .extend(segments);
        Ok(url)
    }

    /// `<admin_url>/admin/identities/<id>[/<more>]`.
    fn identity_url(&self, id: &IdentityId, more: &[&str]) -> Result<Url, KratosError> {
        let id = id.to_string();
        let mut segments = vec![id.as_str()];
        segments.extend_from_slice(more);
        self.identities_url(&segments)
    }

    async fn expect_identity(&self, call: Call) -> Result<Identity, KratosError> {
        let label = call.label();
        let answer = self.execute(call).await?;
        wire::identity(&answer.body).map_err(|problem| KratosError::Protocol {
            detail: format!("{label}: {problem}"),
        })
    }

    /// Sends `call` until it succeeds, fails for good, or the deadline leaves no room for
    /// another attempt. Success means a 2xx answer; every other status is classified.
    async fn execute(&self, call: Call) -> Result<Answer, KratosError> {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let attempts = self.attempts(&call, started, deadline);
        match crate::timing::waiting(tokio::time::timeout_at(deadline, attempts)).await {
            Ok(outcome) => outcome,
            // Backstop: attempt timeouts and waits are already fitted to the deadline.
            Err(_) => {
                tracing::warn!(
                    operation = call.operation,
                    method = %call.method,
                    path = call.path,
                    elapsed_ms = elapsed_ms(started),
                    "Kratos admin call ran out of time."
                );
                Err(KratosError::Unavailable {
                    detail: format!(
                        "{}: no answer within the {:?} deadline",
                        call.label(),
                        self.deadline
                    ),
                })
            }
        }
    }

    async fn attempts(
        &self,
        call: &Call,
        started: Instant,
        deadline: Instant,
    ) -> Result<Answer, KratosError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let budget = self
                .request_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let timer = self.metrics.kratos_attempt(call.operation);
            let sent = self.attempt(call, budget).await;
            timer.finish(sent.as_ref().ok().map(|answer| answer.status.as_u16()));
            let (error, retry_after, maybe_applied) = match sent {
                Ok(answer) => {
                    tracing::debug!(
                        operation = call.operation,
                        method = %call.method,
                        path = call.path,
                        status = answer.status.as_u16(),
                        attempt,
                        elapsed_ms = elapsed_ms(started),
                        "Kratos admin call answered."
                    );
                    if answer.status.is_success() {
                        return Ok(answer);
                    }
                    let error = wire::classify(answer.status, &answer.body, &call.label());
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    (
                        error,
                        retry::retry_after(answer.status, &answer.headers),
                        true,
                    )
                }
                Err(transport) => {
                    let error = KratosError::Unavailable {
                        detail: format!(
                            "{}: {}",
                            call.label(),
                            describe_transport(&transport, budget)
                        ),
                    };
                    tracing::debug!(
                        operation = call.operation,
                        method = %call.method,
                        path = call.path,
                        attempt,
                        elapsed_ms = elapsed_ms(started),
                        timeout = transport.is_timeout(),
                        connect = transport.is_connect(),
                        "Kratos admin call got no answer."
                    );
                    // A refused or failed connection means the request never reached Kratos;
                    // after a timeout or reset mid-request its effect is unknown.
                    (error, None, !transport.is_connect())
                }
            };

            let give_up = |reason: String| {
                tracing::warn!(
                    operation = call.operation,
                    method = %call.method,
                    path = call.path,
                    attempt,
                    elapsed_ms = elapsed_ms(started),
                    reason = %reason,
                    "Kratos admin call failed; not retrying."
                );
                Err(with_outcome(error.clone(), attempt, &reason))
            };
            if attempt > self.max_retries {
                return give_up("no retries left".to_owned());
            }
            if maybe_applied && call.replay == Replay::OnlyIfUnsent {
                return give_up("not repeated: the call may already have been applied".to_owned());
            }
            let wait = retry_after.unwrap_or_else(|| retry::full_jitter(attempt));
            let next_start = Instant::now() + wait;
            if next_start + retry::MIN_ATTEMPT_BUDGET.min(self.request_timeout) > deadline {
                return give_up(match retry_after {
                    Some(asked) => format!(
                        "Kratos asked to retry after {}s, past the {:?} deadline",
                        asked.as_secs(),
                        self.deadline
                    ),
                    None => format!(
                        "no time left for another attempt within the {:?} deadline",
                        self.deadline
                    ),
                });
            }
            tracing::warn!(
                operation = call.operation,
                method = %call.method,
                path = call.path,
                attempt,
                elapsed_ms = elapsed_ms(started),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "Kratos admin call failed; retrying."
            );
            self.metrics.kratos_retry(call.operation);
            tokio::time::sleep_until(next_start).await;
        }
    }

    async fn attempt(&self, call: &Call, timeout: Duration) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .clients
            .for_this_thread()
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout);
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        // reqwest marks both Authorization values sensitive, so they never show in its Debug.
        request = match self.auth.as_deref() {
            None => request,
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        // The request's W3C trace goes on to Kratos (src/trace.rs).
        request = crate::trace::propagate(request);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.contact.failed(describe_transport(&error, timeout));
                return Err(error);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        // For readiness, Kratos answered when it served the request, even with a 4xx; a 5xx,
        // 429, or refused credentials is no usable answer.
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            )
        {
            self.contact.failed(format!(
                "{} {} answered HTTP {}",
                call.method,
                call.path,
                status.as_u16()
            ));
        } else {
            self.contact.answered();
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// One HTTP client per thread that calls Kratos. A pooled connection is driven by a task on the
/// runtime that opened it, and actix runs one runtime per worker thread: with one shared pool,
/// a call on one thread would often go out over a connection of another, which costs two
/// cross-thread wake-ups per call (the request over, the response back).
struct Clients {
    build: Box<dyn Fn() -> reqwest::Result<reqwest::Client> + Send + Sync>,
    /// Built (and checked) with the settings; also serves threads beyond the cap below.
    first: reqwest::Client,
    by_thread: std::sync::Mutex<Vec<(std::thread::ThreadId, reqwest::Client)>>,
}

/// Threads with a client of their own: actix has one per core, a multi-threaded Tokio runtime a
/// few more. Others share the first client.
const MAX_CLIENTS: usize = 64;

impl Clients {
    fn for_this_thread(&self) -> reqwest::Client {
        let me = std::thread::current().id();
        let mut clients = self
            .by_thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = clients.iter().find(|(thread, _)| *thread == me) {
            return client.clone();
        }
        if clients.len() >= MAX_CLIENTS {
            return self.first.clone();
        }
        // The same settings built `first`, so this only fails if the machine is out of
        // resources; `first` still works then.
        let client = (self.build)().unwrap_or_else(|_| self.first.clone());
        clients.push((me, client.clone()));
        client
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What went wrong on the wire, without reqwest's own text, which names the URL (its query may
/// hold a `provider:subject` identifier).
fn describe_transport(error: &reqwest::Error, budget: Duration) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {} ms", budget.as_millis())
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer could not be read".to_owned()
    } else {
        "the exchange failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Adds to an `Unavailable` error how many attempts were made and why there was no other.
fn with_outcome(error: KratosError, attempts: u32, reason: &str) -> KratosError {
    match error {
        KratosError::Unavailable { detail } => KratosError::Unavailable {
            detail: format!(
                "{detail} ({attempts} attempt{}; {reason})",
                if attempts == 1 { "" } else { "s" }
            ),
        },
        other => other,
    }
}

/// Whether replaying `ops` on a state they were already applied to leaves the same state.
/// `add` and `replace` of a whole value at a fixed path are: the second application writes the
/// same value again (RFC 6902 `add` on an existing member replaces it). `remove` is not — the
/// replay answers 400 because the member is gone — and neither is an array append (`/-`),
/// which would add the element twice.
fn replay_safe(ops: &[PatchOp]) -> bool {
    ops.iter().all(|op| match op {
        PatchOp::Add { path, .. } | PatchOp::Replace { path, .. } => !path.ends_with("/-"),
        PatchOp::Remove { .. } => false,
    })
}

impl KratosAdmin for HttpKratos {
    /// `GET /admin/identities?credentials_identifier=…&page_size=2`. Kratos matches exactly
    /// (OIDC and SAML identifiers verbatim, others after its normalization, docs/kratos.md §3.1);
    /// two answers would mean the filter was ignored, which is a [`KratosError::Protocol`].
    /// Retried (a read).
    async fn find_by_credential_identifier(
        &self,
        identifier: &str,
    ) -> Result<Option<Identity>, KratosError> {
        let mut url = self.identities_url(&[])?;
        url.query_pairs_mut()
            .append_pair("credentials_identifier", identifier)
            .append_pair("page_size", "2");
        let call = Call {
            operation: "find_by_credential_identifier",
            method: Method::GET,
            path: "/admin/identities?credentials_identifier={identifier}",
            url,
            body: None,
            replay: Replay::Safe,
        };
        let label = call.label();
        let answer = self.execute(call).await?;
        let mut found =
            wire::identities(&answer.body).map_err(|problem| KratosError::Protocol {
                detail: format!("{label}: {problem}"),
            })?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(KratosError::Protocol {
                detail: format!(
                    "{label}: Kratos answered {n} identities for the credential identifier \
                     '{identifier}', which must be unique; does this Kratos support the \
                     credentials_identifier filter?"
                ),
            }),
        }
    }

    /// `GET /admin/identities/{id}`; [`KratosError::NotFound`] if there is none. Retried (a read).
    async fn get(&self, id: &IdentityId) -> Result<Identity, KratosError> {
        let call = Call {
            operation: "get",
            method: Method::GET,
            path: "/admin/identities/{id}",
            url: self.identity_url(id, &[])?,
            body: None,
            replay: Replay::Safe,
        };
        self.expect_identity(call).await
    }

    /// `POST /admin/identities` with `state: active`, the OIDC credential
    /// (`credentials.oidc.config.providers[{provider, subject}]`) and the addresses marked
    /// verified imported as `status: completed` (unverified ones are left to Kratos).
    ///
    /// **Retried**, although POST is not idempotent: if an attempt created the identity but its
    /// answer was lost, the retry collides with it on the OIDC identifier and ends in
    /// [`KratosError::Conflict`]. Callers must therefore treat `Conflict` as "it may be ours":
    /// look the identity up with [`KratosAdmin::find_by_credential_identifier`] and continue
    /// with what is found, exactly as after a concurrent creation by another replica.
    async fn create(&self, identity: &NewIdentity) -> Result<Identity, KratosError> {
        let call = Call {
            operation: "create",
            method: Method::POST,
            path: "/admin/identities",
            url: self.identities_url(&[])?,
            body: Some(wire::create_body(identity)?),
            replay: Replay::Safe,
        };
        self.expect_identity(call).await
    }

    /// `PATCH /admin/identities/{id}` with the operations in order; Kratos applies them
    /// atomically. Retried when every operation is an `add`/`replace` of a whole value (see
    /// [`replay_safe`]); a patch with `remove` or an array append is retried only when the
    /// request never reached Kratos.
    async fn patch(&self, id: &IdentityId, ops: &[PatchOp]) -> Result<Identity, KratosError> {
        let call = Call {
            operation: "patch",
            method: Method::PATCH,
            path: "/admin/identities/{id}",
            url: self.identity_url(id, &[])?,
            body: Some(wire::patch_body(ops)?),
            replay: if replay_safe(ops) {
                Replay::Safe
            } else {
                Replay::OnlyIfUnsent
            },
        };
        self.expect_identity(call).await
    }

    /// `PUT /admin/identities/{id}` with `schema_id`, `state`, `traits`, `metadata_public`,
    /// `metadata_admin` and `external_id` as in `current` (PUT clears what is omitted) plus the
    /// OIDC credential, which Kratos adds to the existing ones. Changes made to the identity
    /// since `current` was read are overwritten: Kratos offers no conditional update. Retried
    /// (the same full body yields the same identity).
    async fn link_oidc(
        &self,
        current: &Identity,
        credential: &OidcCredential,
    ) -> Result<Identity, KratosError> {
        let call = Call {
            operation: "link_oidc",
            method: Method::PUT,
            path: "/admin/identities/{id}",
            url: self.identity_url(&current.id, &[])?,
            body: Some(wire::link_oidc_body(current, credential)?),
            replay: Replay::Safe,
        };
        self.expect_identity(call).await
    }

    /// `PATCH /admin/identities/{id}` replacing `/state` with `inactive`. Retried.
    async fn deactivate(&self, id: &IdentityId) -> Result<Identity, KratosError> {
        let ops = [PatchOp::Replace {
            path: "/state".to_owned(),
            value: serde_json::Value::from("inactive"),
        }];
        let call = Call {
            operation: "deactivate",
            method: Method::PATCH,
            path: "/admin/identities/{id}",
            url: self.identity_url(id, &[])?,
            body: Some(wire::patch_body(&ops)?),
            replay: Replay::Safe,
        };
        self.expect_identity(call).await
    }

    /// `PATCH /admin/identities/{id}` replacing `/state` with `active`. Retried.
    async fn reactivate(&self, id: &IdentityId) -> Result<Identity, KratosError> {
        let ops = [PatchOp::Replace {
            path: "/state".to_owned(),
            value: serde_json::Value::from("active"),
        }];
        let call = Call {
            operation: "reactivate",
            method: Method::PATCH,
            path: "/admin/identities/{id}",
            url: self.identity_url(id, &[])?,
            body: Some(wire::patch_body(&ops)?),
            replay: Replay::Safe,
        };
        self.expect_identity(call).await
    }

    /// `DELETE /admin/identities/{id}` (Kratos answers 204, or 404 for an unknown identity,
    /// which is read as already deleted). Retried: deleting twice ends the same way.
    async fn delete(&self, id: &IdentityId) -> Result<(), KratosError> {
        let call = Call {
            operation: "delete",
            method: Method::DELETE,
            path: "/admin/identities/{id}",
            url: self.identity_url(id, &[])?,
            body: None,
            replay: Replay::Safe,
        };
        match self.execute(call).await {
            Ok(_) | Err(KratosError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `DELETE /admin/identities/{id}/sessions`. Kratos answers 404 when there is no session to
    /// delete (docs/kratos.md §7) — also for an unknown identity — so 204 and 404 both mean "no
    /// session left". Retried.
    async fn revoke_sessions(&self, id: &IdentityId) -> Result<(), KratosError> {
        let call = Call {
            operation: "revoke_sessions",
            method: Method::DELETE,
            path: "/admin/identities/{id}/sessions",
            url: self.identity_url(id, &["sessions"])?,
            body: None,
            replay: Replay::Safe,
        };
        match self.execute(call).await {
            Ok(_) | Err(KratosError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `GET /admin/identities?page_size=N[&page_token=T]`; `page_size` is clamped to 1..=500 as
    /// Kratos would. The next token comes from the `rel="next"` target of the `Link` header
    /// (relative to the admin URL); none means this was the last page. Identities in a plain
    /// listing may come without credentials, so `credential_identifiers` can be empty.
    /// Retried (a read).
    async fn list(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<IdentityPage, KratosError> {
        let mut url = self.identities_url(&[])?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("page_size", &page_size.clamp(1, 500).to_string());
            if let Some(token) = page_token {
                query.append_pair("page_token", token);
            }
        }
        let call = Call {
            operation: "list",
            method: Method::GET,
            path: "/admin/identities?page_size={n}&page_token={token}",
            url,
            body: None,
            replay: Replay::Safe,
        };
        let label = call.label();
        let answer = self.execute(call).await?;
        let protocol = |problem: String| KratosError::Protocol {
            detail: format!("{label}: {problem}"),
        };
        let identities = wire::identities(&answer.body).map_err(protocol)?;
        let next_page_token =
            link::next_page_token(&answer.headers, &self.base).map_err(protocol)?;
        if next_page_token.is_some() && next_page_token.as_deref() == page_token {
            // Following it would loop forever.
            return Err(protocol(
                "the next page token equals the one just used".to_owned(),
            ));
        }
        Ok(IdentityPage {
            identities,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests;
