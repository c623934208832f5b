//! Sessions follow the IdP: which changes of an existing identity end its Kratos sessions.
//!
//! A provider lists identity fields (`[sessions] revoke_when_changed`, by default the role and
//! the tenant, `traits.role` and `traits.tenant_id` as the sample identity schema names them).
//! When a login writes a change to one of them — a user demoted at the IdP, moved to another
//! tenant — the sessions the identity already holds were granted under the old value and must
//! not outlive it: the login use case revokes them in the same run ([`revokes`] decides,
//! `crate::login` carries it out). Pure: the decision's list of changed fields goes in, a yes or
//! a no comes out.
//!
//! Fields are named as the decision names what changed: `<section>.<member>`, a top-level member
//! of `traits`, `metadata_public` or `metadata_admin` (the fields the IdP owns). kratos-jit's own
//! provenance (`metadata_admin.kratos_jit`) changes at every update and cannot be listed.

use crate::domain::decision::PROVENANCE_KEY;

/// The fields revoked on by default: the role and the tenant.
pub const DEFAULT_REVOKE_WHEN_CHANGED: &[&str] = &["traits.role", "traits.tenant_id"];

/// The sections an owned field may be in.
pub const SECTIONS: &[&str] = &["traits", "metadata_public", "metadata_admin"];

/// A provider's `[sessions]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Owned fields (`traits.role`) whose change revokes the identity's sessions; empty: never.
    pub revoke_when_changed: Vec<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            revoke_when_changed: DEFAULT_REVOKE_WHEN_CHANGED
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        }
    }
}

/// Whether a write that changed `changed` (the decision's list, `traits.role`, …) must revoke
/// the identity's existing sessions.
pub fn revokes(settings: &SessionSettings, changed: &[String]) -> bool {
    changed
        .iter()
        .any(|field| settings.revoke_when_changed.contains(field))
}

/// What is wrong with `path` as a field of `revoke_when_changed`, if anything; `traits` names
/// the members the provider's identity schema defines, when they are known.
pub fn field_problem(path: &str, traits: Option<&[&str]>) -> Option<String> {
    let Some((section, member)) = path.split_once('.') else {
        return Some(format!(
            "\"{path}\" is not a field path: write <section>.<field>, e.g. \"traits.role\""
        ));
    };
    if !SECTIONS.contains(&section) {
        return Some(format!(
            "\"{path}\": unknown section `{section}`; a field is in one of {}",
            SECTIONS.join(", ")
        ));
    }
    if member.is_empty() {
        return Some(format!("\"{path}\" names no field after `{section}.`"));
    }
    if member.contains('.') {
        return Some(format!(
            "\"{path}\" names a nested field; only top-level fields of {section} are compared (e.g. \"{section}.{}\")",
            member.split('.').next().unwrap_or_default()
        ));
    }
    if section == "metadata_admin" && member == PROVENANCE_KEY {
        return Some(format!(
            "\"{path}\" is kratos-jit's own provenance, which changes at every update; list the fields whose change matters"
        ));
    }
    if section == "traits"
        && let Some(known) = traits
        && !known.contains(&member)
    {
        return Some(format!(
            "\"{path}\": the identity schema has no trait `{member}` (its traits: {})",
            known.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[&str]) -> Vec<String> {
        list.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn a_change_of_role_or_tenant_revokes_by_default_and_others_do_not() {
        let settings = SessionSettings::default();

        assert!(revokes(
            &settings,
            &fields(&["traits.last_name", "traits.role"])
        ));
        assert!(revokes(&settings, &fields(&["traits.tenant_id"])));
        assert!(revokes(
            &settings,
            &fields(&["credentials.oidc", "traits.role"])
        ));
        assert!(!revokes(&settings, &fields(&["traits.last_name"])));
        assert!(!revokes(&settings, &fields(&[])));
    }

    #[test]
    fn the_listed_fields_replace_the_defaults_and_an_empty_list_never_revokes() {
        let custom = SessionSettings {
            revoke_when_changed: fields(&["metadata_public.plan"]),
        };
        let never = SessionSettings {
            revoke_when_changed: vec![],
        };

        assert!(revokes(&custom, &fields(&["metadata_public.plan"])));
        assert!(!revokes(&custom, &fields(&["traits.role"])));
        assert!(!revokes(
            &never,
            &fields(&["traits.role", "traits.tenant_id"])
        ));
    }

    #[test]
    fn field_paths_are_section_dot_member_of_an_owned_section() {
        let traits: &[&str] = &["email", "role", "tenant_id"];

        assert_eq!(field_problem("traits.role", Some(traits)), None);
        assert_eq!(field_problem("metadata_public.plan", Some(traits)), None);
        assert_eq!(field_problem("traits.anything", None), None);
        for (path, needle) in [
            ("role", "write <section>.<field>"),
            ("trait.role", "unknown section `trait`"),
            ("traits.", "names no field"),
            ("traits.name.first", "nested field"),
            ("metadata_admin.kratos_jit", "provenance"),
            (
                "traits.rol",
                "no trait `rol` (its traits: email, role, tenant_id)",
            ),
        ] {
            let problem = field_problem(path, Some(traits)).unwrap_or_default();
            assert!(problem.contains(needle), "{path}: {problem}");
        }
    }
}
