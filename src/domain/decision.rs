//! The JIT decision: what Kratos must hold after this login. Pure: no I/O, no clock.
//!
//! Inputs are the provider's settings, the policy-checked mapper output, what Kratos already
//! holds ([`Found`]: the identity with this login's OIDC credential, or else the identity that
//! holds its e-mail, or nothing) and the provenance to record. The result is one of `create`,
//! `update` (with the JSON Patch and the list of changed fields), `link`, `unchanged` or
//! `denied`, covering the flows of an IdP's JIT settings:
//!
//! | Kratos holds                     | settings                     | decision                                   |
//! |----------------------------------|------------------------------|--------------------------------------------|
//! | the credential's identity        | update off                   | unchanged (a plain sign-in)                |
//! | the credential's identity        | update on                    | updated when an IdP-owned field changed    |
//! | nothing                          | create off                   | denied                                     |
//! | nothing                          | create on                    | created, with the OIDC credential imported |
//! | another identity with the e-mail | linking allowed ([`may_link`]) | linked: credential added, fields updated |
//! | another identity with the e-mail | anything else                | denied, that identity untouched            |
//!
//! Fields the IdP owns are those the mapper outputs: top-level keys of `traits`,
//! `metadata_public` and `metadata_admin`. They are overwritten at each login; every other field
//! (set by the application or an admin) is left alone, because the update is a JSON Patch that
//! names only owned fields and Kratos applies it atomically to the identity as it is then.
//! Provenance goes to `metadata_admin.kratos_jit`, never to `metadata_public` (visible to users).

use serde_json::{Map, Value, json};

use crate::domain::denial::{Denial, LinkRefusal};
use crate::domain::identity::{Identity, NewIdentity, OidcCredential, PatchOp, VerifiableAddress};
use crate::domain::ids::{IdentityId, ProviderId, Subject};
use crate::domain::mapped::MappedIdentity;
use crate::domain::policy::{EMAIL_TRAIT, TENANT_TRAIT, foreign_tenant};
use crate::domain::rules::Rules;

/// The key under `metadata_admin` that kratos-jit owns.
pub const PROVENANCE_KEY: &str = "kratos_jit";

/// Where an identity's IdP-owned data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub provider: ProviderId,
    pub subject: Subject,
    /// RFC 3339 time of this sync.
    pub synced_at: String,
    /// SHA-256 of the mapper that produced the data.
    pub mapper_sha256: String,
}

impl Provenance {
    fn to_value(&self) -> Value {
        json!({
            "provider": self.provider.as_str(),
            "subject": self.subject.as_str(),
            "synced_at": self.synced_at,
            "mapper_sha256": self.mapper_sha256,
        })
    }
}

/// What Kratos holds for this login, as far as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// The identity holding this login's OIDC credential `<provider>:<subject>`.
    Credential(&'a Identity),
    /// No identity holds the credential, but this one holds the mapped e-mail.
    EmailHolder(&'a Identity),
    /// Neither.
    Nothing,
}

/// What to do in Kratos.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Create(NewIdentity),
    Update {
        id: IdentityId,
        ops: Vec<PatchOp>,
        changed: Vec<String>,
    },
    /// Add the OIDC credential to an identity that holds the e-mail; `identity` is that identity
    /// with the owned fields already set, so one write does both.
    Link {
        identity: Box<Identity>,
        credential: OidcCredential,
        changed: Vec<String>,
    },
    Unchanged {
        id: IdentityId,
    },
    Denied(Denial),
}

/// The field name a link adds, first in `changed`.
pub const LINKED_FIELD: &str = "credentials.oidc";

/// Decides for what Kratos holds (see the module's table).
pub fn decide(
    rules: &Rules<'_>,
    mapped: &MappedIdentity,
    found: Found<'_>,
    provenance: &Provenance,
) -> Decision {
    let existing = match found {
        Found::Nothing if !rules.jit.create => {
            return Decision::Denied(Denial::CreateDisabled {
                provider: rules.provider.clone(),
            });
        }
        Found::Nothing => return Decision::Create(new_identity(rules, mapped, provenance)),
        Found::EmailHolder(_) if !rules.jit.create => {
            return Decision::Denied(Denial::CreateDisabled {
                provider: rules.provider.clone(),
            });
        }
        Found::EmailHolder(holder) => return link(rules, mapped, holder, provenance),
        Found::Credential(existing) => existing,
    };
    if let Some(denial) = foreign_existing_tenant(rules, existing) {
        return Decision::Denied(denial);
    }
    if !rules.jit.update {
        return Decision::Unchanged { id: existing.id };
    }
    let (ops, changed) = changes(mapped, existing, provenance);
    if changed.is_empty() {
        Decision::Unchanged { id: existing.id }
    } else {
        Decision::Update {
            id: existing.id,
            ops,
            changed,
        }
    }
}

/// Links `holder` when the rules allow it, with the owned fields set as an update would.
fn link(
    rules: &Rules<'_>,
    mapped: &MappedIdentity,
    holder: &Identity,
    provenance: &Provenance,
) -> Decision {
    if let Err(denial) = may_link(rules, mapped, holder) {
        return Decision::Denied(denial);
    }
    let mut identity = holder.clone();
    let mut changed = vec![LINKED_FIELD.to_owned()];
    if rules.jit.update {
        let (ops, fields) = changes(mapped, holder, provenance);
        apply(&mut identity, &ops);
        changed.extend(fields);
    }
    Decision::Link {
        identity: Box::new(identity),
        credential: OidcCredential {
            provider: provenance.provider.clone(),
            subject: provenance.subject.clone(),
        },
        changed,
    }
}

/// Applies the patch [`changes`] makes (adds of a whole section or of one member) to a copy.
fn apply(identity: &mut Identity, ops: &[PatchOp]) {
    for op in ops {
        let PatchOp::Add { path, value } = op else {
            continue;
        };
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (Some(section), member) = (parts.next(), parts.next()) else {
            continue;
        };
        let slot = match section {
            "traits" => &mut identity.traits,
            "metadata_public" => identity.metadata_public.get_or_insert(Value::Null),
            "metadata_admin" => identity.metadata_admin.get_or_insert(Value::Null),
            _ => continue,
        };
        match member {
            None => *slot = value.clone(),
            Some(member) => {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let key = member.replace("~1", "/").replace("~0", "~");
                if let Some(object) = slot.as_object_mut() {
                    object.insert(key, value.clone());
                }
            }
        }
    }
}

/// Whether an existing identity that holds the same e-mail but not this OIDC credential may be
/// linked to it. Only when the provider allows linking, the IdP asserted the e-mail verified, the
/// e-mail lies in the tenant's domains (already checked by the policy), and the identity belongs
/// to the same tenant: anything less lets one IdP take over another's account.
pub fn may_link(
    rules: &Rules<'_>,
    mapped: &MappedIdentity,
    candidate: &Identity,
) -> Result<(), Denial> {
    let refuse = |why| {
        Err(Denial::Linking {
            provider: rules.provider.clone(),
            why,
        })
    };
    if !rules.jit.link_by_verified_email {
        return refuse(LinkRefusal::Disabled);
    }
    let email = mapped
        .traits
        .get(EMAIL_TRAIT)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let verified = mapped
        .verified_addresses
        .iter()
        .any(|a| a.via == "email" && a.value.eq_ignore_ascii_case(email.trim()));
    if !verified {
        return refuse(LinkRefusal::Unverified);
    }
    if candidate.traits.get(TENANT_TRAIT) != mapped.traits.get(TENANT_TRAIT) {
        return refuse(LinkRefusal::OtherTenant);
    }
    Ok(())
}

/// An identity found by this provider's credential must belong to one of its tenants.
fn foreign_existing_tenant(rules: &Rules<'_>, existing: &Identity) -> Option<Denial> {
    let tenant = existing.traits.get(TENANT_TRAIT).and_then(Value::as_str)?;
    if rules.tenant(tenant).is_some() {
        return None;
    }
    Some(foreign_tenant(rules, tenant))
}

fn new_identity(
    rules: &Rules<'_>,
    mapped: &MappedIdentity,
    provenance: &Provenance,
) -> NewIdentity {
    let mut metadata_admin = mapped.metadata_admin.clone().unwrap_or_default();
    metadata_admin.insert(PROVENANCE_KEY.to_owned(), provenance.to_value());
    NewIdentity {
        schema_id: rules.schema_id.to_owned(),
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
