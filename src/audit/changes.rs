//! What an event says changed: the fields of a decision with their values before and after,
//! and a log-safe word for a failed Kratos write.

use serde_json::Value;

use super::Change;
use crate::domain::identity::Identity;
use crate::domain::mapped::MappedIdentity;

/// A log-safe word for a failed Kratos write (`write_failed` events).
pub fn failure_word(error: &crate::kratos::KratosError) -> &'static str {
    use crate::kratos::KratosError;
    match error {
        KratosError::Unavailable { .. } => "kratos_unavailable",
        KratosError::Conflict { .. } => "kratos_conflict",
        KratosError::NotFound { .. } => "kratos_not_found",
        KratosError::Rejected { .. } => "kratos_rejected",
        KratosError::Protocol { .. } => "kratos_protocol",
    }
}

/// The field names `changed` lists (`traits.role`, …) with their values in `before` (the
/// identity Kratos holds, if any) and `after` (the mapper's output). `credentials.oidc` (a link,
/// a create) is recorded with the subject's hash `oidc` as its value after.
pub fn field_changes(
    changed: &[String],
    before: Option<&Identity>,
    after: &MappedIdentity,
    oidc: Option<String>,
) -> Vec<Change> {
    changed
        .iter()
        .map(|field| {
            if field == crate::domain::decision::LINKED_FIELD {
                return Change {
                    field: field.clone(),
                    before: None,
                    after: oidc.clone().map(Value::String),
                    opaque: true,
                };
            }
            let (section, key) = field.split_once('.').unwrap_or((field.as_str(), ""));
            let held = before.and_then(|identity| {
                let section = match section {
                    "traits" => Some(&identity.traits),
                    "metadata_public" => identity.metadata_public.as_ref(),
                    "metadata_admin" => identity.metadata_admin.as_ref(),
                    _ => None,
                };
                section?.get(key).cloned()
            });
            let mapped = match section {
                "traits" => Some(&after.traits),
                "metadata_public" => after.metadata_public.as_ref(),
                "metadata_admin" => after.metadata_admin.as_ref(),
                _ => None,
            };
            Change {
                field: field.clone(),
                before: held,
                after: mapped.and_then(|m| m.get(key)).cloned(),
                opaque: false,
            }
        })
        .collect()
}

/// Every field a create sets: the mapper's traits and metadata (kratos-jit's own provenance
/// excluded: it holds the subject) and `credentials.oidc`.
pub fn created_fields(mapped: &MappedIdentity) -> Vec<String> {
    let mut fields = vec![crate::domain::decision::LINKED_FIELD.to_owned()];
    let sections = [
        ("traits", Some(&mapped.traits)),
        ("metadata_public", mapped.metadata_public.as_ref()),
        ("metadata_admin", mapped.metadata_admin.as_ref()),
    ];
    for (section, owned) in sections {
        for key in owned.into_iter().flat_map(|m| m.keys()) {
            if section == "metadata_admin" && key == crate::domain::decision::PROVENANCE_KEY {
                continue;
            }
            fields.push(format!("{section}.{key}"));
        }
    }
    fields
}
