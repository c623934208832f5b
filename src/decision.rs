//! The JIT decision: what Kratos must hold after this login. Pure: no I/O, no clock.
//!
//! Inputs are the provider's settings, the policy-checked mapper output, the identity Kratos
//! already holds for `<provider-id>:<subject>` (or none) and the provenance to record. The result
//! is one of `create`, `update` (with the JSON Patch and the list of changed fields), `unchanged`
//! or `denied`, covering the four flows of an IdP's JIT settings:
//!
//! | identity | settings      | decision                                   |
//! |----------|---------------|--------------------------------------------|
//! | exists   | update off    | unchanged (a plain sign-in)                |
//! | missing  | create off    | denied                                     |
//! | missing  | create on     | created, with the OIDC credential imported |
//! | exists   | update on     | updated when an IdP-owned field changed    |
//!
//! Fields the IdP owns are those the mapper outputs: top-level keys of `traits`,
//! `metadata_public` and `metadata_admin`. They are overwritten at each login; every other field
//! (set by the application or an admin) is left alone, because the update is a JSON Patch that
//! names only owned fields and Kratos applies it atomically to the identity as it is then.
//! Provenance goes to `metadata_admin.kratos_jit`, never to `metadata_public` (visible to users).

use serde_json::{Map, Value, json};

use crate::kratos::{Identity, NewIdentity, OidcCredential, PatchOp, VerifiableAddress};
use crate::mapper::MappedIdentity;
use crate::policy::{Denial, EMAIL_TRAIT, TENANT_TRAIT};
use crate::provider::Provider;

/// The key under `metadata_admin` that kratos-jit owns.
pub const PROVENANCE_KEY: &str = "kratos_jit";

/// Where an identity's IdP-owned data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub provider: String,
    pub subject: String,
    /// RFC 3339 time of this sync.
    pub synced_at: String,
    /// SHA-256 of the mapper that produced the data.
    pub mapper_sha256: String,
}

impl Provenance {
    fn to_value(&self) -> Value {
        json!({
            "provider": self.provider,
            "subject": self.subject,
            "synced_at": self.synced_at,
            "mapper_sha256": self.mapper_sha256,
        })
    }
}

/// What to do in Kratos.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Create(NewIdentity),
    Update {
        id: String,
        ops: Vec<PatchOp>,
        changed: Vec<String>,
    },
    Unchanged {
        id: String,
    },
    Denied(Denial),
}

/// Decides for an identity found by its OIDC credential (or none found).
pub fn decide(
    provider: &Provider,
    mapped: &MappedIdentity,
    existing: Option<&Identity>,
    provenance: &Provenance,
) -> Decision {
    let Some(existing) = existing else {
        if !provider.settings.jit.create {
            return Decision::Denied(Denial::CreateDisabled {
                provider: provider.id.to_string(),
            });
        }
        return Decision::Create(new_identity(provider, mapped, provenance));
    };
    if let Some(denial) = foreign_existing_tenant(provider, existing) {
        return Decision::Denied(denial);
    }
    if !provider.settings.jit.update {
        return Decision::Unchanged {
            id: existing.id.clone(),
        };
    }
    let (ops, changed) = changes(mapped, existing, provenance);
    if changed.is_empty() {
        Decision::Unchanged {
            id: existing.id.clone(),
        }
    } else {
        Decision::Update {
            id: existing.id.clone(),
            ops,
            changed,
        }
    }
}

/// Whether an existing identity that holds the same e-mail but not this OIDC credential may be
/// linked to it. Only when the provider allows linking, the IdP asserted the e-mail verified, the
/// e-mail lies in the tenant's domains (already checked by the policy), and the identity belongs
/// to the same tenant: anything less lets one IdP take over another's account.
pub fn may_link(
    provider: &Provider,
    mapped: &MappedIdentity,
    candidate: &Identity,
) -> Result<(), Denial> {
    let email = mapped
        .traits
        .get(EMAIL_TRAIT)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refuse = |why: &str| {
        Err(Denial::Linking(format!(
            "an identity with the e-mail {email} already exists and is not linked to provider {}: {why}",
            provider.id
        )))
    };
    if !provider.settings.jit.link_by_verified_email {
        return refuse(
            "linking by e-mail is off for this provider (jit.link_by_verified_email = false)",
        );
    }
    let verified = mapped
        .verified_addresses
        .iter()
        .any(|a| a.via == "email" && a.value.eq_ignore_ascii_case(email.trim()));
    if !verified {
        return refuse("the IdP did not assert the e-mail verified");
    }
    if candidate.traits.get(TENANT_TRAIT) != mapped.traits.get(TENANT_TRAIT) {
        return refuse("it belongs to another tenant");
    }
    Ok(())
}

/// An identity found by this provider's credential must belong to one of its tenants.
fn foreign_existing_tenant(provider: &Provider, existing: &Identity) -> Option<Denial> {
    let tenant = existing.traits.get(TENANT_TRAIT).and_then(Value::as_str)?;
    if provider.settings.tenant(tenant).is_some() {
        return None;
    }
    Some(Denial::foreign_tenant(provider, tenant))
}

fn new_identity(
    provider: &Provider,
    mapped: &MappedIdentity,
    provenance: &Provenance,
) -> NewIdentity {
    let mut metadata_admin = mapped.metadata_admin.clone().unwrap_or_default();
    metadata_admin.insert(PROVENANCE_KEY.to_owned(), provenance.to_value());
    NewIdentity {
        schema_id: provider.settings.schema_id.clone(),
        traits: Value::Object(mapped.traits.clone()),
        metadata_public: mapped.metadata_public.clone().map(Value::Object),
        metadata_admin: Some(Value::Object(metadata_admin)),
        verified_addresses: mapped
            .verified_addresses
            .iter()
            .map(|a| VerifiableAddress {
                value: a.value.clone(),
                via: a.via.clone(),
                verified: true,
            })
            .collect(),
        oidc: OidcCredential {
            provider: provenance.provider.clone(),
            subject: provenance.subject.clone(),
        },
    }
}

/// JSON Pointer escaping of one reference token (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One section of an identity: its name, what the mapper owns in it, what Kratos holds.
type Section<'a> = (
    &'static str,
    Option<&'a Map<String, Value>>,
    Option<&'a Value>,
);

/// The patch that makes the owned fields of `existing` equal the mapper output.
fn changes(
    mapped: &MappedIdentity,
    existing: &Identity,
    provenance: &Provenance,
) -> (Vec<PatchOp>, Vec<String>) {
    let mut ops = Vec::new();
    let mut changed = Vec::new();
    let empty = Map::new();
    let sections: [Section<'_>; 3] = [
        ("traits", Some(&mapped.traits), Some(&existing.traits)),
        (
            "metadata_public",
            mapped.metadata_public.as_ref(),
            existing.metadata_public.as_ref(),
        ),
        (
            "metadata_admin",
            mapped.metadata_admin.as_ref(),
            existing.metadata_admin.as_ref(),
        ),
    ];
    let mut admin_is_object = false;
    for (section, owned, current) in sections {
        let current_object = current.and_then(Value::as_object);
        if section == "metadata_admin" {
            admin_is_object = current_object.is_some();
        }
        let Some(owned) = owned else { continue };
        let current_fields = current_object.unwrap_or(&empty);
        let differing: Vec<(&String, &Value)> = owned
            .iter()
            .filter(|(k, _)| !(section == "metadata_admin" && k.as_str() == PROVENANCE_KEY))
            .filter(|(k, v)| current_fields.get(k.as_str()) != Some(*v))
            .collect();
        if differing.is_empty() {
            continue;
        }
        changed.extend(differing.iter().map(|(k, _)| format!("{section}.{k}")));
        if current_object.is_some() {
            ops.extend(differing.into_iter().map(|(k, v)| PatchOp::Add {
                path: format!("/{section}/{}", token(k)),
                value: v.clone(),
            }));
        } else {
            // `null` (or a non-object) section: RFC 6902 cannot add a member below it, so the
            // whole section is set — it held nothing to preserve.
            let mut section_value = Map::new();
            section_value.extend(differing.into_iter().map(|(k, v)| (k.clone(), v.clone())));
            if section == "metadata_admin" {
                section_value.insert(PROVENANCE_KEY.to_owned(), provenance.to_value());
                admin_is_object = true;
            }
            ops.push(PatchOp::Add {
                path: format!("/{section}"),
                value: Value::Object(section_value),
            });
        }
    }
    if !changed.is_empty() {
        let provenance_set = ops
            .iter()
            .any(|op| matches!(op, PatchOp::Add { path, .. } if path == "/metadata_admin"));
        if !provenance_set {
            ops.push(if admin_is_object {
                PatchOp::Add {
                    path: format!("/metadata_admin/{PROVENANCE_KEY}"),
                    value: provenance.to_value(),
                }
            } else {
                PatchOp::Add {
                    path: "/metadata_admin".into(),
                    value: json!({ PROVENANCE_KEY: provenance.to_value() }),
                }
            });
        }
    }
    (ops, changed)
}

#[cfg(test)]
mod tests;
