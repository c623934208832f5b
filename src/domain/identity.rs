//! An identity as the domain sees it: what Kratos holds, what to create, how to change it.
//!
//! These are kratos-jit's own types, not the Kratos client's: the decision produces them and
//! the Kratos port carries them over the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::ids::{IdentityId, ProviderId, Subject};

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
