//! The strict-by-default rules every mapped identity must pass before anything is written.
//!
//! - the mapped tenant must be one the provider is bound to (an IdP provisions only into its
//!   own tenant);
//! - the e-mail must lie in one of that tenant's verified domains, and so must every address the
//!   mapper marks verified;
//! - the traits must be valid against the identity schema.
//!
//! Each refusal is a [`Denial`] whose text a support engineer can act on. These checks are pure:
//! they run the same in `kratos-jit check`, `kratos-jit map` and at a live login.

use serde_json::Value;

use crate::domain::denial::Denial;
use crate::domain::mapped::MappedIdentity;
use crate::domain::rules::{Rules, TenantBinding};
use crate::schema::IdentitySchemas;

/// The traits the policy reads. They are fixed by the shipped identity schema.
pub const TENANT_TRAIT: &str = "tenant_id";
pub const EMAIL_TRAIT: &str = "email";

/// The provider is not bound to `tenant`: the reason lists the tenants it is bound to.
pub fn foreign_tenant(rules: &Rules<'_>, tenant: &str) -> Denial {
    Denial::foreign_tenant(rules.provider, tenant, rules.tenants.iter().map(|t| &t.id))
}

/// The domain part of an e-mail address, lower-cased; `None` when there is no `@`.
pub fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain.trim().trim_end_matches('.').to_lowercase())
}

/// The tenant binding the mapped identity falls under, or why it is refused.
pub fn admit<'p>(
    rules: &Rules<'p>,
    mapped: &MappedIdentity,
    schemas: &IdentitySchemas,
) -> Result<&'p TenantBinding, Denial> {
    let tenant = match mapped.traits.get(TENANT_TRAIT) {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => {
            return Err(Denial::NoTenant {
                provider: rules.provider.clone(),
            });
        }
    };
    let binding = rules
        .tenant(tenant)
        .ok_or_else(|| foreign_tenant(rules, tenant))?;
    let email = match mapped.traits.get(EMAIL_TRAIT) {
        Some(Value::String(e)) => e,
        _ => return Err(Denial::NoEmail),
    };
    let in_domains = |address: &str| {
        email_domain(address).is_some_and(|d| binding.verified_domains.contains(&d))
    };
    // An address Kratos would refuse (`Ada <ada@…>`, a comment, a UTF-8 domain) has no domain
    // the check below could trust: refused as what it is, before the domain is read.
    let Some(domain) = email_domain(email).filter(|_| crate::schema::is_email(email)) else {
        return Err(Denial::NotAnEmail);
    };
    if !in_domains(email) {
        return Err(Denial::ForeignDomain {
            domain,
            tenant: binding.id.clone(),
        });
    }
    for address in mapped
        .verified_addresses
        .iter()
        .filter(|a| a.via == "email")
    {
        if !address.value.eq_ignore_ascii_case(email.trim()) || !in_domains(&address.value) {
            return Err(Denial::ForeignVerifiedAddress {
                domain: email_domain(&address.value).unwrap_or_default(),
                tenant: binding.id.clone(),
            });
        }
    }
    schemas
        .validate_traits(rules.schema_id, &Value::Object(mapped.traits.clone()))
        .map_err(|e| Denial::Schema(e.to_string()))?;
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;

    #[test]
    fn denial_reasons_never_carry_a_whole_address() {
        let foreign = Denial::ForeignVerifiedAddress {
            domain: "evil.example".into(),
            tenant: TenantId::new("tenant-acme"),
        };
        assert!(!foreign.to_string().contains('@'));
        assert!(!Denial::NotAnEmail.to_string().contains("probe"));
    }

    #[test]
    fn an_address_kratos_refuses_is_not_an_email_whatever_its_domain_looks_like() {
        let (providers, _) = crate::provider::Providers::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers"),
        )
        .unwrap();
        let acme = providers.get("okta-acme").unwrap();
        let schemas = IdentitySchemas::builtin();
        for email in [
            "Ada <ada@acme.example>",
            "ada@acme.example (Ada)",
            "ada@bücher.example",
        ] {
            let mapped = MappedIdentity::from_output(&serde_json::json!({"identity": {"traits": {
                "email": email, "tenant_id": "tenant-acme", "role": "user",
                "first_name": "Ada", "last_name": "Lovelace"}}}))
            .unwrap();
            assert_eq!(
                admit(&acme.rules(), &mapped, &schemas).err(),
                Some(Denial::NotAnEmail),
                "{email}"
            );
        }
    }

    #[test]
    fn email_domain_is_lower_cased_and_needs_both_parts() {
        assert_eq!(
            email_domain("Ada@ACME.Example").as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            email_domain("a@b@acme.example").as_deref(),
            Some("acme.example")
        );
        assert_eq!(email_domain("acme.example"), None);
        assert_eq!(email_domain("@acme.example"), None);
    }
}
