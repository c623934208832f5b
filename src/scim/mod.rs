//! SCIM 2.0 (RFC 7643, RFC 7644): the protocol core, pure — no HTTP, no storage, no Kratos.
//!
//! Each customer IdP (a provider) pushes its users and groups to kratos-jit over SCIM. This
//! module knows what SCIM means; the service (`src/scim/service.rs`, `src/http/scim.rs`) ties
//! it to HTTP, the store and the login use case. The pieces:
//!
//! - [`schema`]: the attribute tables (core User, enterprise extension, Group, common
//!   attributes) — the one source for every rule below;
//! - [`resource`]: validating a POST/PUT body into the stored form, and reading the indexed
//!   values (`userName`, e-mails, `active`, members…) out of it;
//! - [`filter`]: parsing (the `scim_v2` crate), checking and evaluating filters; the index
//!   lookup a store can answer ([`IndexKey`], [`IndexLookup`], owned here);
//! - [`patch`]: applying a PATCH atomically and reporting member changes;
//! - [`project`]: `attributes` / `excludedAttributes`;
//! - [`query`]: list query parameters, `SearchRequest`, `ListResponse`;
//! - [`meta`]: `id`, `meta`, ETags, member/group references;
//! - [`discovery`]: `ServiceProviderConfig`, `ResourceTypes`, `Schemas`;
//! - [`error`]: [`ScimError`] and the RFC 7644 §3.12 error body.
//!
//! [`service`] is the exception to "pure": it ties the core to the store, the login use case and
//! the Kratos port (still without HTTP).
//!
//! No function here logs, and no error detail holds a value from a request (only attribute
//! names, positions and URNs), so details may be logged.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod meta;
pub mod patch;
pub mod project;
pub mod query;
pub mod resource;
pub mod schema;
pub mod service;

pub use error::{ScimError, ScimType};
pub use filter::{IndexKey, IndexLookup, ScimFilter};
pub use patch::{PatchOutcome, apply_patch};
pub use project::Projection;
pub use query::{DEFAULT_PAGE_SIZE, ListQuery, SortOrder, list_response};
pub use schema::ResourceKind;
