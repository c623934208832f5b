//! The port to the Kratos admin identity API, in our own types.
//!
//! The domain (provisioning decision, web hooks) talks to Kratos only through [`KratosAdmin`];
//! it never sees HTTP or generated-client types. [`http::HttpKratos`] is the adapter for a real
//! Kratos (and for the loopback stand-in, which speaks the same wire format).
//!
//! Wire facts this port relies on (see docs/kratos.md §3): OIDC credentials are found by the exact
//! identifier `<provider-id>:<subject>`; credential identifiers, verifiable addresses and
//! `external_id` are unique and a clash answers 409; PUT replaces `traits`, `metadata_public`,
//! `metadata_admin` and `external_id` wholesale; JSON Patch accepts only `add`, `remove`, `replace`.

use std::future::Future;

use crate::domain::IdentityId;
pub use crate::domain::identity::{
    Identity, NewIdentity, OidcCredential, PatchOp, VerifiableAddress,
};

pub mod fixture;
pub mod http;

pub use http::{HttpKratos, KratosSettings};

/// One page of identities and the token of the next page, if any (from the `Link` header).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityPage {
    pub identities: Vec<Identity>,
    pub next_page_token: Option<String>,
}

/// Why a Kratos call failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KratosError {
    /// Connection refused/reset, timeout, 5xx or 429: Kratos could not answer in time.
    #[error("Kratos admin API unavailable: {detail}")]
    Unavailable { detail: String },
    /// 409: a credential identifier, verifiable address or external_id is taken.
    #[error("Kratos reports a conflict: {reason}")]
    Conflict { reason: String },
    /// 404 on an identity or resource.
    #[error("not found in Kratos: {detail}")]
    NotFound { detail: String },
    /// Any other 4xx: Kratos refused the request as malformed or invalid.
    #[error("Kratos rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Kratos answered something we could not understand.
    #[error("unexpected answer from Kratos: {detail}")]
    Protocol { detail: String },
}

impl KratosError {
    /// Whether the same call may succeed if repeated later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KratosError::Unavailable { .. })
    }
}

/// The Kratos admin identity API as the domain needs it.
pub trait KratosAdmin: Send + Sync {
    /// The identity holding exactly this credential identifier (`provider:subject` for OIDC,
    /// an e-mail for password/code credentials), if any.
    fn find_by_credential_identifier(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<Option<Identity>, KratosError>> + Send;
    fn get(&self, id: &IdentityId) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Creates an identity; [`KratosError::Conflict`] when an identifier or address is taken.
    fn create(
        &self,
        identity: &NewIdentity,
    ) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Applies a JSON Patch atomically on Kratos's side (fields not named are left alone).
    fn patch(
        &self,
        id: &IdentityId,
        ops: &[PatchOp],
    ) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Adds an OIDC credential to an existing identity (PUT keeps existing OIDC credentials and
    /// adds the new one; everything else is sent back unchanged).
    fn link_oidc(
        &self,
        current: &Identity,
        credential: &OidcCredential,
    ) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Sets `state: inactive`.
    fn deactivate(
        &self,
        id: &IdentityId,
    ) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Sets `state: active` (SCIM `active: true` after a deactivation).
    fn reactivate(
        &self,
        id: &IdentityId,
    ) -> impl Future<Output = Result<Identity, KratosError>> + Send;
    /// Deletes the identity (`DELETE /admin/identities/{id}`); an identity already gone is not
    /// an error, so that a retried delete converges.
    fn delete(&self, id: &IdentityId) -> impl Future<Output = Result<(), KratosError>> + Send;
    /// Deletes every session of the identity; an identity without sessions is not an error.
    fn revoke_sessions(
        &self,
        id: &IdentityId,
    ) -> impl Future<Output = Result<(), KratosError>> + Send;
    /// One page of identities (`page_size` 1..=500), following Kratos's keyset pagination.
    fn list(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<IdentityPage, KratosError>> + Send;
}
