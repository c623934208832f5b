//! SCIM 2.0 (RFC 7643, RFC 7644): the protocol core, pure — no HTTP, no storage.

pub mod error;
pub mod filter;
pub mod meta;
pub mod patch;
pub mod project;
pub mod query;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
pub use schema::ResourceKind;
pub use filter::{IndexKey, IndexLookup, ScimFilter};
pub use patch::{PatchOutcome, apply_patch};
pub use project::Projection;
pub use query::{ListQuery, SortOrder, list_response};
