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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;

use crate::domain::{IdentityId, ProviderId, Subject};

pub mod fixture;
pub mod http;

pub use http::{HttpKratos, KratosSettings};

/// A Kratos identity as far as kratos-jit needs it. Deserialized leniently: unknown credential
/// types, address channels or states never make a read fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub id: IdentityId,
    #[serde(default)]
    pub schema_id: String,
    /// `active` or `inactive`; kept as a string so a future state does not break reads.
    #[serde(default = "default_state")]
    pub state: String,
    #[serde(default)]
    pub traits: Value,
    #[serde(default)]
    pub metadata_public: Option<Value>,
    #[serde(default)]
    pub metadata_admin: Option<Value>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub verifiable_addresses: Vec<VerifiableAddress>,
    /// Credential type → its identifiers (e.g. `oidc` → [`okta-acme:00u1`]). Configs are never kept.
    #[serde(default)]
    pub credential_identifiers: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_state() -> String {
    "active".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiableAddress {
    pub value: String,
    pub via: String,
    #[serde(default)]
    pub verified: bool,
}

/// What to create. The OIDC credential is imported so that Kratos finds the identity at the
/// user's own login (`credentials.oidc.config.providers[{provider, subject}]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentity {
    pub schema_id: String,
    pub traits: Value,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    /// Addresses to import as verified (`status: completed`).
    pub verified_addresses: Vec<VerifiableAddress>,
    pub oidc: OidcCredential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcCredential {
    pub provider: ProviderId,
    pub subject: Subject,
}

impl OidcCredential {
    /// Kratos's credential identifier for an OIDC login: `<provider-id>:<subject>`
    /// (`identity/credentials_oidc.go OIDCUniqueID`).
    pub fn identifier(&self) -> String {
        format!("{}:{}", self.provider, self.subject.as_str())
    }
}

/// One JSON Patch operation (RFC 6902), restricted to what Kratos accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    Add { path: String, value: Value },
    Replace { path: String, value: Value },
    Remove { path: String },
}

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
