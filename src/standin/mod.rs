//! An in-memory Kratos admin identity API on loopback, for integration tests and
//! `kratos-jit serve --dev`.
//!
//! It owns the endpoints a JIT-provisioning sidecar uses and promises Kratos v26.2.0's wire
//! contract for them (`openapi-v26.2.0.json`, docs/kratos.md §3 and §7): the same JSON shapes,
//! status codes, `Link` pagination and herodot error envelopes, and the same data rules —
//! credential identifiers, verifiable and recovery addresses and `external_id` are unique, a
//! clash is a 409, and every write is atomic.
//!
//! | endpoint | behaviour |
//! | --- | --- |
//! | `GET /admin/identities` | keyset pages in id order (`page_size` 1..=500, default 250, clamped), relative `Link` with `rel="first"` and `rel="next"` (none on the last page); one filter of `ids`, `credentials_identifier` (exact; `oidc`/`saml` verbatim, others trimmed and lowercased), `preview_credentials_identifier_similar`, `organization_id`; more is a 400 |
//! | `POST /admin/identities` | strict body; 201 + `Location`; 409 on any unique clash |
//! | `GET /admin/identities/{id}`, `…/by/external/{externalID}` | with credentials (no config unless `include_credential`); a malformed id is a 404 like Kratos's `x.ParseUUID` |
//! | `PUT /admin/identities/{id}` | replaces traits, both metadata and `external_id`; `state` only when sent; `credentials.oidc` adds providers |
//! | `PATCH /admin/identities/{id}` | JSON Patch: `add`/`remove`/`replace` only, `/id`, `/stateChangedAt`, `/credentials…` denied, all or nothing |
//! | `DELETE /admin/identities/{id}` | 204 / 404; the identity's sessions go too |
//! | `GET`/`DELETE /admin/identities/{id}/sessions` | list (unknown identity: `[]`); delete is 204, or 404 when there was no session; `POST` (not Kratos's: a login's session, for the walkthrough) 201 |
//! | `GET /health/alive`, `/health/ready` (and the same under `/admin`) | `{"status":"ok"}` (Kratos's `isAlive` and `isReady`); not in the request log, and reached only by `Delay`, `RefuseConnections` and a `FailMatching` on their path |
//!
//! Anything else is a 404 (405 for a wrong method) in the `errorGeneric` envelope.
//!
//! The identity schema is fixed: `traits.email` is the e-mail address, verifiable via e-mail and
//! usable for recovery, and the identifier of an imported password credential.
//!
//! [`upstream`] is its companion for the claims hop: an upstream OpenID Provider double.
//!
//! Tests steer it with [`Fault`]s: failing the next requests (all, or those of one method and
//! path), delaying every request, or refusing connections until the fault is cleared (the same
//! port is bound again).
//!
//! ```no_run
//! use kratos_jit::standin::{Fault, StandIn};
//!
//! let kratos = StandIn::start().expect("stand-in starts");
//! let admin_url = kratos.base_url(); // http://127.0.0.1:<port>
//! kratos.set_fault(Fault::FailNext { count: 1, status: 503 });
//! # let _ = admin_url;
//! ```

mod error;
mod http;
mod identity;
mod patch;
mod server;
mod state;
mod store;
pub mod upstream;

pub use server::run_until_stopped;
pub use state::{LOG_CAPACITY, StandInState};

use serde_json::Value;
use state::LoopStatus;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

/// A running stand-in: a real HTTP server on its own thread with its own actix `System`, so it
/// works from sync tests, `#[tokio::test]` and `#[actix_web::test]` alike. Dropping it stops the
/// server and releases the port.
pub struct StandIn {
    state: StandInState,
    addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

/// One request as the stand-in received it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The raw query string, without `?` (empty when there was none).
    pub query: String,
    /// `None` for an empty body; the JSON when it parses; otherwise the text as a JSON string.
    pub body: Option<Value>,
    /// The W3C `traceparent` header as sent (the only header kept: it carries no secret).
    pub traceparent: Option<String>,
}

/// A failure to inject. Each [`StandIn::set_fault`] replaces the previous fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The next `count` requests get this status with Kratos's error envelope (e.g. 500, 503, 429)
    /// and change nothing.
    FailNext {
        count: u32,
        status: u16,
    },
    /// The next `count` requests whose method is `method` (any, when `None`) and whose path
    /// ends with `path_suffix` get this status and change nothing; other requests are served.
    /// With a `count` larger than the client's retries, the failure lasts until it is cleared:
    /// e.g. one identity's writes, or `DELETE …/sessions`, fail in the middle of a sequence.
    FailMatching {
        method: Option<String>,
        path_suffix: String,
        count: u32,
        status: u16,
    },
    /// Every request waits this long before being handled (without blocking other requests).
    Delay(Duration),
    /// Connections are refused until the fault is cleared: the server stops listening and binds
    /// the same port again on any other fault (normally [`Fault::None`]).
    RefuseConnections,
}

impl StandIn {
    /// Starts on 127.0.0.1 with an OS-assigned port.
    pub fn start() -> io::Result<StandIn> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts on `addr` (port 0 picks a free port). Returns once the server accepts requests.
    pub fn start_on(addr: SocketAddr) -> io::Result<StandIn> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = StandInState::new();
        let served = state.clone();
        let thread = thread::Builder::new()
            .name(format!("kratos-standin-{}", addr.port()))
            .spawn(move || {
                let system = actix_web::rt::System::new();
                if let Err(error) = system.block_on(run_until_stopped(listener, served)) {
                    tracing::error!(%error, "Kratos stand-in stopped with an error.");
                }
            })?;
        let mut stand_in = StandIn {
            state,
            addr,
            thread: Some(thread),
        };
        match stand_in
            .state
            .wait_for_loop(|status| *status != LoopStatus::Listening)
        {
            LoopStatus::Listening => Ok(stand_in),
            other => {
                if let Some(thread) = stand_in.thread.take() {
                    let _ = thread.join();
                }
                Err(io::Error::other(format!(
                    "Kratos stand-in did not start: {other:?}"
                )))
            }
        }
    }

    /// E.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state, e.g. to hand to code that expects a [`StandInState`].
    pub fn state(&self) -> &StandInState {
        &self.state
    }

    /// Every request received, in order (past [`LOG_CAPACITY`], the most recent ones).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.requests()
    }

    /// How many health checks (`/health/…`, `/admin/health/…`) it answered. They are not in
    /// [`Self::requests`], and only [`Fault::Delay`], [`Fault::RefuseConnections`] and a
    /// [`Fault::FailMatching`] on their path reach them: a sidecar's readiness probe never
    /// shifts what a test logs or counts down.
    pub fn health_checks(&self) -> u64 {
        self.state.health_checks()
    }

    /// Only the POST, PUT, PATCH and DELETE requests, in order.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.state.writes()
    }

    pub fn clear_log(&self) {
        self.state.clear_log();
    }

    /// Current identities exactly as `GET /admin/identities/{id}` returns each (with
    /// `metadata_admin` and credentials without config), in creation order.
    pub fn identities(&self) -> Vec<Value> {
        self.state.identities()
    }

    /// Seeds an identity directly; `body` is a `createIdentityBody`. Returns the identity JSON.
    ///
    /// # Panics
    /// On an invalid body or a conflict with an existing identity.
    pub fn insert_identity(&self, body: Value) -> Value {
        self.state.insert_identity(body)
    }

    /// Creates an active session for the identity; returns the session id.
    ///
    /// # Panics
    /// When there is no identity with that id.
    pub fn add_session(&self, identity_id: &str) -> String {
        self.state.add_session(identity_id)
    }

    /// Injects a fault; returns once it is in effect (for `RefuseConnections`: once the port is
    /// closed; when clearing it: once the port is bound again).
    pub fn set_fault(&self, fault: Fault) {
        self.state.set_fault(fault);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.state.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
