//! The pure domain: identifiers, the policy, the decision and the refusal.
//!
//! Nothing here performs I/O or knows of HTTP, Jsonnet or Kratos's client: a mapped identity,
//! the provider's rules and what Kratos holds go in, a [`decision::Decision`] or a [`Denial`]
//! comes out. The login use case wires it to the mapper engine and the Kratos port; this module
//! imports neither.

pub mod decision;
pub mod denial;
pub mod identity;
pub mod ids;
pub mod input;
pub mod mapped;
pub mod policy;
pub mod rules;
pub mod scim;
pub mod sessions;

pub use denial::{Denial, LinkRefusal};
pub use ids::{IdentityId, InvalidProviderId, ProviderId, Subject, SubjectTag, TenantId};
pub use mapped::{MappedIdentity, VerifiedAddress};
pub use rules::{JitSettings, Rules, TenantBinding};
pub use scim::{OnDelete, ScimGroup, ScimInput, ScimSubject};
pub use sessions::SessionSettings;
