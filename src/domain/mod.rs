//! The pure domain: identifiers, the policy, the decision and the refusal.
//!
//! Nothing here performs I/O or knows of HTTP: a mapped identity and what Kratos holds go in,
//! a [`decision::Decision`] or a [`Denial`] comes out. The login use case ([`crate::login`])
//! wires it to the mapper engine and the Kratos port.

pub mod decision;
pub mod denial;
pub mod ids;
pub mod mapped;
pub mod policy;

pub use denial::{Denial, LinkRefusal};
pub use ids::{IdentityId, InvalidProviderId, ProviderId, Subject, SubjectTag, TenantId};
pub use mapped::{MappedIdentity, VerifiedAddress};
