//! Everything one stand-in shares between its HTTP workers and its owner: the store, the request
//! log, the active fault, and the listening lifecycle the server loop follows.
//!
//! All locks are held only for the length of a synchronous store operation, never across an
//! `.await`. A poisoned lock (a panicking test helper) is recovered rather than propagated, so a
//! failed assertion in one test never turns every later request into a panic.

use super::identity::CredentialView;
use super::store::{CreateIdentityBody, Store};
use super::{Fault, LoggedRequest};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use uuid::Uuid;

/// Requests the log keeps. Tests look at a handful; a long-running `serve --dev` or load test
/// would otherwise grow without bound (each entry holds the request's JSON body).
pub const LOG_CAPACITY: usize = 10_000;

/// How long [`StandInState::set_fault`] waits for the server loop to stop or resume listening.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared state of one stand-in. Cheap to clone (one `Arc`); every clone sees the same
/// identities, log and faults.
///
/// [`super::StandIn`] owns one; `serve --dev` creates one with [`StandInState::new`], passes a
/// clone to [`super::run_until_stopped`] and keeps the other to inspect or seed it.
#[derive(Clone)]
pub struct StandInState {
    shared: Arc<Shared>,
}

struct Shared {
    store: Mutex<Store>,
    /// The most recent [`LOG_CAPACITY`] requests, oldest first.
    log: Mutex<VecDeque<LoggedRequest>>,
    /// Requests to `/health/…`, counted apart from the log.
    health_checks: std::sync::atomic::AtomicU64,
    fault: Mutex<ActiveFault>,
    desired: watch::Sender<Mode>,
    status: Mutex<LoopStatus>,
    status_changed: Condvar,
    base_url: RwLock<String>,
}

/// What the owner wants the server loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Listen,
    Refuse,
    Shutdown,
}

/// What the server loop has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoopStatus {
    /// No server loop has picked this state up yet.
    NotServed,
    Listening,
    Refusing,
    /// The loop ended; with the error that ended it, if any.
    Stopped(Option<String>),
}

/// The per-request part of a [`Fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum ActiveFault {
    None,
    FailNext {
        remaining: u32,
        status: u16,
    },
    FailMatching {
        method: Option<String>,
        path_suffix: String,
        remaining: u32,
        status: u16,
    },
    Delay(Duration),
}

/// A status that is not an error status still gets the envelope; one that is not an HTTP
/// status at all becomes a 500.
fn valid_status(status: u16) -> u16 {
    if (100..=999).contains(&status) {
        status
    } else {
        500
    }
}

/// What the dispatcher must do with the request it just received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFault {
    None,
    /// Answer with this status (a valid HTTP status) and Kratos's error envelope.
    Fail(u16),
    Delay(Duration),
}

impl Default for StandInState {
    fn default() -> Self {
        Self::new()
    }
}

impl StandInState {
    /// An empty Kratos: no identities, no sessions, no fault.
    pub fn new() -> Self {
        let (desired, _) = watch::channel(Mode::Listen);
        StandInState {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::default()),
                log: Mutex::new(VecDeque::new()),
                health_checks: Default::default(),
                fault: Mutex::new(ActiveFault::None),
                desired,
                status: Mutex::new(LoopStatus::NotServed),
                status_changed: Condvar::new(),
                base_url: RwLock::new("http://127.0.0.1".to_owned()),
            }),
        }
    }

    /// Where the stand-in answers, e.g. `http://127.0.0.1:41234` (set by the server loop).
    pub fn base_url(&self) -> String {
        self.shared
            .base_url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every request received, in order (including ones answered by a fault); past
    /// [`LOG_CAPACITY`] requests, the most recent ones.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// The POST, PUT, PATCH and DELETE requests received, in order.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .cloned()
            .collect()
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Every identity as `GET /admin/identities/{id}` returns it, in creation order.
    pub fn identities(&self) -> Vec<Value> {
        let base_url = self.base_url();
        self.with_store(|store| {
            store
                .in_creation_order()
                .into_iter()
                .map(|i| i.render(&base_url, CredentialView::WithoutConfig, true))
                .collect()
        })
    }

    /// Seeds an identity from a `createIdentityBody`, with the same rules as
    /// `POST /admin/identities`, without logging a request. Returns it as GET would.
    ///
    /// # Panics
    /// When the body is invalid or conflicts with an existing identity (it is a test helper).
    pub fn insert_identity(&self, body: Value) -> Value {
        let base_url = self.base_url();
        let created = CreateIdentityBody::from_value(body).and_then(|body| {
            self.with_store(|store| {
                store
                    .create(body, SystemTime::now())
                    .map(|i| i.render(&base_url, CredentialView::WithoutConfig, true))
            })
        });
        created
            .unwrap_or_else(|error| panic!("stand-in: cannot insert identity: {}", error.to_json()))
    }

    /// Creates an active session for the identity and returns the session id.
    ///
    /// # Panics
    /// When `identity_id` is not the id of an existing identity (it is a test helper).
    pub fn add_session(&self, identity_id: &str) -> String {
        let id = Uuid::parse_str(identity_id)
            .unwrap_or_else(|_| panic!("stand-in: {identity_id:?} is not an identity id"));
        self.with_store(|store| store.add_session(id, SystemTime::now()))
            .unwrap_or_else(|_| panic!("stand-in: no identity {identity_id} to add a session to"))
            .to_string()
    }

    /// Injects (or clears, with [`Fault::None`]) a fault. Any fault other than
    /// [`Fault::RefuseConnections`] makes a refusing server listen again on the same address.
    /// When a server loop runs this state and the fault starts or ends a refusal, this blocks
    /// the calling thread until the loop has closed or rebound the port, so the very next
    /// connection sees the new behaviour; do not call it from the thread that drives the loop.
    pub fn set_fault(&self, fault: Fault) {
        let (active, mode) = match fault {
            Fault::None => (ActiveFault::None, Mode::Listen),
            Fault::FailNext { count: 0, .. } => (ActiveFault::None, Mode::Listen),
            Fault::FailNext { count, status } => (
                ActiveFault::FailNext {
                    remaining: count,
                    status,
                },
                Mode::Listen,
            ),
            Fault::FailMatching { count: 0, .. } => (ActiveFault::None, Mode::Listen),
            Fault::FailMatching {
                method,
                path_suffix,
                count,
                status,
            } => (
                ActiveFault::FailMatching {
                    method,
                    path_suffix,
                    remaining: count,
                    status,
                },
                Mode::Listen,
            ),
            Fault::Delay(delay) => (ActiveFault::Delay(delay), Mode::Listen),
            Fault::RefuseConnections => (ActiveFault::None, Mode::Refuse),
        };
        *lock(&self.shared.fault) = active;
        let changed = self.shared.desired.send_if_modified(|current| {
            let change = *current != mode && *current != Mode::Shutdown;
            if change {
                *current = mode;
            }
            change
        });
        if changed {
            let target = if mode == Mode::Refuse {
                LoopStatus::Refusing
            } else {
                LoopStatus::Listening
            };
            self.wait_while_served(|status| *status != target);
        }
    }

    /// Asks the server loop to stop for good; [`super::run_until_stopped`] returns once the
    /// server has stopped. Does not wait, so it is safe to call from the task that awaits the loop.
    pub fn shutdown(&self) {
        self.shared.desired.send_replace(Mode::Shutdown);
    }

    pub(crate) fn with_store<R>(&self, operation: impl FnOnce(&mut Store) -> R) -> R {
        operation(&mut lock(&self.shared.store))
    }

    pub(crate) fn record(&self, request: LoggedRequest) {
        let mut log = lock(&self.shared.log);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(request);
    }

    /// One more request to a health check (they are not in the request log).
    pub(crate) fn count_health_check(&self) {
        self.shared
            .health_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Health checks received so far.
    pub fn health_checks(&self) -> u64 {
        self.shared
            .health_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The fault for a health check: only a delay, or a [`Fault::FailMatching`] aimed at its
    /// path; [`Fault::FailNext`] is kept for the identity API's requests.
    pub(crate) fn health_fault(&self, method: &str, path: &str) -> RequestFault {
        if matches!(*lock(&self.shared.fault), ActiveFault::FailNext { .. }) {
            return RequestFault::None;
        }
        self.request_fault(method, path)
    }

    /// Consumes one unit of the active fault for an incoming request of `method` on `path`.
    pub(crate) fn request_fault(&self, method: &str, path: &str) -> RequestFault {
        let mut fault = lock(&self.shared.fault);
        match &mut *fault {
            ActiveFault::None => RequestFault::None,
            ActiveFault::Delay(delay) => RequestFault::Delay(*delay),
            ActiveFault::FailNext { remaining, status } => {
                let status = valid_status(*status);
                if *remaining > 1 {
                    *remaining -= 1;
                } else {
                    *fault = ActiveFault::None;
                }
                RequestFault::Fail(status)
            }
            ActiveFault::FailMatching {
                method: wanted,
                path_suffix,
                remaining,
                status,
            } => {
                let matches = wanted
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                    && path.ends_with(path_suffix.as_str());
                if !matches {
                    return RequestFault::None;
                }
                let status = valid_status(*status);
                if *remaining > 1 {
                    *remaining -= 1;
                } else {
                    *fault = ActiveFault::None;
                }
                RequestFault::Fail(status)
            }
        }
    }

    pub(crate) fn set_base_url(&self, base_url: String) {
        *self
            .shared
            .base_url
            .write()
            .unwrap_or_else(PoisonError::into_inner) = base_url;
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Mode> {
        self.shared.desired.subscribe()
    }

    pub(crate) fn report(&self, status: LoopStatus) {
        *lock(&self.shared.status) = status;
        self.shared.status_changed.notify_all();
    }

    /// Waits until the loop reports something other than `NotServed` that `keep_waiting` does
    /// not hold for, or the loop stopped. Returns the status seen.
    pub(crate) fn wait_for_loop(&self, keep_waiting: impl Fn(&LoopStatus) -> bool) -> LoopStatus {
        let status = lock(&self.shared.status);
        let (status, timeout) = self
            .shared
            .status_changed
            .wait_timeout_while(status, LIFECYCLE_TIMEOUT, |status| {
                *status == LoopStatus::NotServed
                    || (!matches!(status, LoopStatus::Stopped(_)) && keep_waiting(status))
            })
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            tracing::warn!(status = ?*status, "Kratos stand-in server loop did not answer in time.");
        }
        status.clone()
    }

    /// Like [`Self::wait_for_loop`], but returns at once when no loop serves this state.
    fn wait_while_served(&self, keep_waiting: impl Fn(&LoopStatus) -> bool) {
        if *lock(&self.shared.status) == LoopStatus::NotServed {
            return;
        }
        self.wait_for_loop(keep_waiting);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_fails_exactly_count_requests() {
        let state = StandInState::new();
        state.set_fault(Fault::FailNext {
            count: 2,
            status: 503,
        });
        assert_eq!(
            state.request_fault("GET", "/admin/identities"),
            RequestFault::Fail(503)
        );
        assert_eq!(
            state.request_fault("GET", "/admin/identities"),
            RequestFault::Fail(503)
        );
        assert_eq!(
            state.request_fault("GET", "/admin/identities"),
            RequestFault::None
        );
    }

    #[test]
    fn fail_matching_fails_only_the_matching_requests() {
        let state = StandInState::new();
        state.set_fault(Fault::FailMatching {
            method: Some("DELETE".into()),
            path_suffix: "/sessions".into(),
            count: 2,
            status: 500,
        });
        let sessions = "/admin/identities/x/sessions";
        assert_eq!(state.request_fault("GET", sessions), RequestFault::None);
        assert_eq!(
            state.request_fault("PATCH", "/admin/identities/x"),
            RequestFault::None
        );
        assert_eq!(
            state.request_fault("delete", sessions),
            RequestFault::Fail(500)
        );
        assert_eq!(
            state.request_fault("DELETE", sessions),
            RequestFault::Fail(500)
        );
        assert_eq!(state.request_fault("DELETE", sessions), RequestFault::None);
        state.set_fault(Fault::FailMatching {
            method: None,
            path_suffix: "/x".into(),
            count: 5,
            status: 503,
        });
        assert_eq!(
            state.request_fault("PUT", "/admin/identities/x"),
            RequestFault::Fail(503)
        );
        assert_eq!(state.request_fault("PUT", sessions), RequestFault::None);
        state.set_fault(Fault::None);
        assert_eq!(
            state.request_fault("PUT", "/admin/identities/x"),
            RequestFault::None
        );
    }

    #[test]
    fn an_impossible_status_fails_as_500() {
        let state = StandInState::new();
        state.set_fault(Fault::FailNext {
            count: 1,
            status: 42,
        });
        assert_eq!(
            state.request_fault("GET", "/admin/identities"),
            RequestFault::Fail(500)
        );
    }

    #[test]
    fn set_fault_does_not_block_when_no_server_runs_the_state() {
        let state = StandInState::new();
        let started = std::time::Instant::now();
        state.set_fault(Fault::RefuseConnections);
        state.set_fault(Fault::None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_log_keeps_the_most_recent_requests() {
        let state = StandInState::new();
        let request = |i: usize| LoggedRequest {
            method: "GET".into(),
            path: format!("/admin/identities/{i}"),
            query: String::new(),
            body: None,
            traceparent: None,
        };
        for i in 0..LOG_CAPACITY + 5 {
            state.record(request(i));
        }
        let log = state.requests();
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log[0].path, "/admin/identities/5");
        assert_eq!(
            log[LOG_CAPACITY - 1].path,
            format!("/admin/identities/{}", LOG_CAPACITY + 4)
        );
    }
}
