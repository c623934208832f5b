//! `[scim]`: the provider as a SCIM 2.0 service provider its IdP pushes users and groups to.
//!
//! ```toml
//! [scim]
//! enabled = true                                    # default false
//! secrets_env = ["KRATOS_JIT_SCIM_OKTA_ACME_SECRET"] # and/or secrets_file = ["/etc/…"]
//! subject = "userName"                              # or "externalId", "email"
//! on_delete = "deactivate"                          # or "delete"
//! ```
//!
//! - `secrets_env` / `secrets_file`: where the bearer secrets the IdP authenticates with are
//!   read when `serve` starts, each a name or a list (several for rotation: any of them is
//!   accepted). Files are relative to the provider folder. As for `[hop]`, secrets never live in
//!   `provider.toml`; at least one source is required when SCIM is enabled.
//! - `subject`: the SCIM attribute that is the user's SSO subject, so that a SCIM-created
//!   identity carries the OIDC credential `<provider>:<subject>` its first SSO login finds
//!   ([`ScimSubject`]).
//! - `on_delete`: what `DELETE /Users/{id}` does ([`OnDelete`]). `deactivate` is the default
//!   because it can be undone (a reactivation restores the account), Okta never deletes users
//!   anyway, and a deleted identity takes the application's data about the user with it.
//!
//! A provider with SCIM enabled needs a SCIM mapper, `scim.jsonnet` (checked by the loader).

use std::path::Path;

use toml::de::DeValue;

use super::did_you_mean;
use super::hop::SecretSource;
use super::{Reader, Table, kind};
use crate::domain::{OnDelete, ScimSubject};

pub(super) const SCIM_KEYS: &[&str] = &[
    "enabled",
    "secrets_env",
    "secrets_file",
    "subject",
    "on_delete",
];

/// `[scim]`, validated. Without the section: disabled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScimSettings {
    pub enabled: bool,
    /// Where the accepted bearer secrets are read from; never empty when `enabled`.
    pub secrets: Vec<SecretSource>,
    pub subject: ScimSubject,
    pub on_delete: OnDelete,
}

impl Reader<'_, '_> {
    pub(super) fn scim(&mut self, table: &Table<'_, '_>, dir: &Path) -> Option<ScimSettings> {
        let enabled = self.boolean(table, "enabled").unwrap_or(false);
        let mut complete = true;
        let mut secrets = Vec::new();
        for key in ["secrets_env", "secrets_file"] {
            match self.names(table, key) {
                Some(names) => {
                    for (name, span) in names {
                        if key == "secrets_file" {
                            secrets.push(SecretSource::File(dir.join(name)));
                        } else if is_env_name(&name) {
                            secrets.push(SecretSource::Env(name));
                        } else {
                            let message = format!(
                                "{}: \"{name}\" is not an environment variable name (letters, digits and _, not starting with a digit)",
                                table.key(key)
                            );
                            self.error(&span, message);
                            complete = false;
                        }
                    }
                }
                None if table.get(key).is_some() => complete = false,
                None => {}
            }
        }
        if enabled && secrets.is_empty() && complete {
            self.error(
                &table.span,
                format!(
                    "{} (or {}) is missing: SCIM is enabled, so name the environment variable or file holding the bearer secret the IdP sends (secrets never live in provider.toml)",
                    table.key("secrets_env"),
                    table.key("secrets_file")
                ),
            );
            complete = false;
        }
        let subject = self.choice(table, "subject", ScimSubject::NAMES, ScimSubject::parse);
        let on_delete = self.choice(table, "on_delete", OnDelete::NAMES, OnDelete::parse);
        Some(ScimSettings {
            enabled,
            secrets,
            subject: subject?.unwrap_or_default(),
            on_delete: on_delete?.unwrap_or_default(),
        })
        .filter(|_| complete)
    }

    /// A string or a list of strings (`Some(vec![])` for an empty list); `None` when absent or
    /// wrong (reported).
    fn names(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
    ) -> Option<Vec<(String, std::ops::Range<usize>)>> {
        match table.get(key)?.get_ref() {
            DeValue::String(_) => self.string(table, key).map(|one| vec![one]),
            _ => self.strings(table, key),
        }
    }

    /// One of `names`, parsed: `Some(None)` when absent, `None` when wrong (reported).
    fn choice<T>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<Option<T>> {
        let Some(value) = table.get(key) else {
            return Some(None);
        };
        let DeValue::String(name) = value.get_ref() else {
            let message = format!(
                "{} must be one of {}, not {}",
                table.key(key),
                quoted(names),
                kind(value)
            );
            self.error(&value.span(), message);
            return None;
        };
        match parse(name) {
            Some(choice) => Some(Some(choice)),
            None => {
                let message = format!(
                    "{}: unknown value \"{name}\"{}; one of {}",
                    table.key(key),
                    did_you_mean(name, names),
                    quoted(names)
                );
                self.error(&value.span(), message);
                None
            }
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::provider::settings::parse;

    const BASE: &str = r#"schema_id = "default"

[[tenants]]
id = "tenant-acme"
verified_domains = ["acme.example"]
"#;

    fn read(scim: &str) -> Result<ScimSettings, Vec<String>> {
        let text = format!("{BASE}\n{scim}");
        parse(&text, Path::new("provider.toml"), Path::new("/p"))
            .map(|parsed| parsed.settings.scim)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.line.unwrap_or(0), e.message))
                    .collect()
            })
    }

    #[test]
    fn without_a_scim_section_scim_is_off() {
        let settings = read("").unwrap();

        assert_eq!(settings, ScimSettings::default());
        assert!(!settings.enabled);
        assert_eq!(settings.subject, ScimSubject::UserName);
        assert_eq!(settings.on_delete, OnDelete::Deactivate);
    }

    #[test]
    fn scim_reads_every_secret_source_the_subject_and_the_delete_policy() {
        let settings = read(
            r#"[scim]
enabled = true
secrets_env = ["SCIM_NEW", "SCIM_OLD"]
secrets_file = "scim-secret"
subject = "externalId"
on_delete = "delete"
"#,
        )
        .unwrap();

        assert!(settings.enabled);
        assert_eq!(
            settings.secrets,
            [
                SecretSource::Env("SCIM_NEW".into()),
                SecretSource::Env("SCIM_OLD".into()),
                SecretSource::File(PathBuf::from("/p/scim-secret")),
            ]
        );
        assert_eq!(settings.subject, ScimSubject::ExternalId);
        assert_eq!(settings.on_delete, OnDelete::Delete);
    }

    #[test]
    fn enabled_scim_without_a_secret_is_refused() {
        let problems = read("[scim]\nenabled = true\n").unwrap_err();

        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`scim.secrets_env` (or `scim.secrets_file`) is missing"),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_scim_values_are_each_reported_on_their_line_with_a_suggestion() {
        let problems = read(
            r#"[scim]
enabled = "yes"
secrets_env = ["1BAD"]
subject = "username"
on_delete = "remove"
secret_env = "X"
"#,
        )
        .unwrap_err();

        let expected = [
            "12: unknown key `secret_env` in [scim] (did you mean `secrets_env`?)",
            "8: `scim.enabled` must be true or false",
            "9: `scim.secrets_env`: \"1BAD\" is not an environment variable name",
            "10: `scim.subject`: unknown value \"username\" (did you mean `userName`?)",
            "11: `scim.on_delete`: unknown value \"remove\"",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for expected in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "missing {expected:?} in {problems:#?}"
            );
        }
    }
}
