//! What the domain needs to know of a provider: who it is, which tenants and domains it may
//! provision into, and what just-in-time provisioning may do for it.
//!
//! The provider loader reads these from `provider.toml`; the policy and the decision take them
//! as a [`Rules`] view, so that neither knows where they came from.

use crate::domain::ids::{ProviderId, TenantId};

/// A provider's rules, borrowed from wherever the provider was loaded.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub provider: &'a ProviderId,
    /// The Kratos identity schema of the identities this provider creates.
    pub schema_id: &'a str,
    pub jit: JitSettings,
    /// The tenants the provider may provision into; never empty.
    pub tenants: &'a [TenantBinding],
}

impl<'a> Rules<'a> {
    /// The binding for tenant `id`, if the provider is bound to it.
    pub fn tenant(&self, id: &str) -> Option<&'a TenantBinding> {
        self.tenants.iter().find(|t| t.id.as_str() == id)
    }
}

/// What just-in-time provisioning may do for this provider (`[jit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitSettings {
    /// Create the identity at its first sign-in.
    pub create: bool,
    /// Overwrite the IdP-owned traits at every sign-in.
    pub update: bool,
    /// Link a first sign-in to an existing identity with the same verified e-mail address.
    pub link_by_verified_email: bool,
}

impl Default for JitSettings {
    fn default() -> Self {
        JitSettings {
            create: true,
            update: true,
            link_by_verified_email: false,
        }
    }
}

/// A tenant the provider provisions into (`[[tenants]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantBinding {
    pub id: TenantId,
    /// Lower-cased DNS names; the e-mail domains the tenant has proven it owns.
    pub verified_domains: Vec<String>,
}
