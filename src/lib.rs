//! kratos-jit: just-in-time provisioning of Ory Kratos identities from enterprise IdP sign-ins.
//!
//! The crate is layered so that "what happens to a login" reads top-down:
//!
//! - [`domain`]: pure — identifiers, the policy, the decision, the refusal ([`domain::Denial`]);
//! - [`login`]: the one login use case every entry point calls;
//! - [`mapper`]: Kratos-compatible Jsonnet claims mappers, compiled once, evaluated under limits;
//! - [`provider`]: the per-customer provider folders (`mappers/<provider-id>/`) and their settings;
//! - [`scim`]: the SCIM 2.0 protocol core (schemas, filters, PATCH, projection, discovery), pure;
//! - [`schema`]: validation of mapped traits against the Kratos identity schema;
//! - [`claims`]: turning an ID token's claims into the exact claims object Kratos builds;
//! - [`token`]: ID token verification against a provider's issuer (JWKS, algorithms, time claims);
//! - [`kratos`]: the port to the Kratos admin API (our own types) and its HTTP adapter;
//! - [`hop`]: the claims hop, kratos-jit as the OpenID Provider Kratos signs in with (keys,
//!   sealed state and codes, the upstream client, the flow);
//! - [`http`]: the HTTP adapters — the provisioning API, the Kratos web hooks and the hop;
//! - [`store`]: SCIM resources, groups and memberships in SQLite or PostgreSQL (Kratos keeps
//!   the identities);
//! - [`metrics`]: the Prometheus metrics (logins, denials, Kratos calls, the mapper, SCIM),
//!   served on their own listener;
//! - [`timing`]: how long a request waited on Kratos and the upstream, for `Server-Timing`;
//! - [`health`]: readiness for `GET /health/ready` (providers, Kratos, the SCIM store, the
//!   hop's keys, the mapper workers);
//! - [`trace`]: the request's W3C trace (`traceparent` in, out to Kratos and the IdPs, and
//!   `trace_id` on every log line);
//! - [`audit`]: the audit trail of every identity change and refusal, on its own sink;
//! - [`config`], [`secret`]: `serve`'s settings, checked at start; secrets that never print;
//! - [`serve`], [`check`], [`carrier`]: the commands `serve`, `check`/`map`, `kratos-mapper`;
//! - `standin` (feature `standin`, on by default): an in-memory Kratos admin API on loopback,
//!   for tests and `serve --dev`.

pub mod audit;
pub mod carrier;
pub mod check;
pub mod claims;
pub mod config;
pub mod domain;
pub mod health;
pub mod hop;
pub mod http;
pub mod kratos;
pub mod login;
pub mod mapper;
pub mod metrics;
pub mod provider;
pub mod schema;
pub mod scim;
pub mod secret;
pub mod serve;
#[cfg(feature = "standin")]
pub mod standin;
pub mod store;
pub mod timing;
pub mod token;
pub mod trace;

/// Every allocation goes through the mapper guard so that a runaway Jsonnet evaluation can be
/// stopped on its own thread (see [`mapper::guard`]).
#[global_allocator]
static ALLOCATOR: mapper::guard::GuardedAllocator = mapper::guard::GuardedAllocator;
