//! `[hop]` and `[hop.upstream]`: the provider as an OpenID Provider Kratos signs in with, and
//! as the client of the upstream bridge or IdP (see [`crate::hop`]).
//!
//! Secrets never live in `provider.toml` (provider folders are kept in the customer's git):
//! only the name of an environment variable (`client_secret_env`) or a file
//! (`client_secret_file`, relative to the provider folder). They are read when `serve` starts,
//! not here, so that `kratos-jit check` runs without them.

use std::path::{Path, PathBuf};

use reqwest::Url;

use super::{Reader, Table};
use crate::token::check_transport;

pub(super) const HOP_KEYS: &[&str] = &[
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "redirect_uris",
    "upstream",
];
const UPSTREAM_KEYS: &[&str] = &[
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "token_endpoint_auth",
    "scopes",
];

/// `[hop]`: what Kratos's `generic` provider is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSettings {
    /// The client id Kratos authenticates with.
    pub client_id: String,
    pub client_secret: SecretSource,
    /// The redirect URIs Kratos may use, compared exactly
    /// (`<kratos public>/self-service/methods/oidc/callback/<provider>`).
    pub redirect_uris: Vec<String>,
    pub upstream: UpstreamSettings,
}

/// `[hop.upstream]`: kratos-jit as the client of the upstream bridge. The issuer, its keys,
/// algorithms and CA bundle are those of the provider's `[token]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub client_id: String,
    pub client_secret: SecretSource,
    pub token_endpoint_auth: ClientAuth,
    /// Requested scopes; always contains `openid`.
    pub scopes: Vec<String>,
}

/// Where a client secret is read from when `serve` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// How kratos-jit authenticates at the upstream's token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

impl Reader<'_, '_> {
    /// `[hop]`, checked; `has_token` says whether `[token]` is there (the upstream's issuer).
    pub(super) fn hop(
        &mut self,
        table: &Table<'_, '_>,
        dir: &Path,
        has_token: bool,
    ) -> Option<HopSettings> {
        if !has_token {
            self.error(
                &table.span,
                "[hop] needs the provider's [token] section: the upstream's issuer, keys and algorithms are read from it",
            );
        }
        let client_id = self.client_id(table, "the client_id of Kratos's generic provider");
        let client_secret = self.secret_source(table, dir);
        let redirect_uris = self.redirect_uris(table);
        let upstream = match self.table(table, "upstream", UPSTREAM_KEYS) {
            Some(upstream) => self.upstream(&upstream, dir),
            None => {
                if table.get("upstream").is_none() {
                    self.error(
                        &table.span,
                        "[hop.upstream] is missing: kratos-jit's client id and secret at the upstream bridge or IdP",
                    );
                }
                None
            }
        };
        Some(HopSettings {
            client_id: client_id?,
            client_secret: client_secret?,
            redirect_uris: redirect_uris?,
            upstream: upstream?,
        })
    }

    fn upstream(&mut self, table: &Table<'_, '_>, dir: &Path) -> Option<UpstreamSettings> {
        let client_id = self.client_id(table, "kratos-jit's client id at the upstream");
        let client_secret = self.secret_source(table, dir);
        let token_endpoint_auth = match self.string(table, "token_endpoint_auth") {
            None => Some(ClientAuth::default()),
            Some((text, span)) => match text.as_str() {
                "client_secret_basic" => Some(ClientAuth::ClientSecretBasic),
                "client_secret_post" => Some(ClientAuth::ClientSecretPost),
                other => {
                    self.error(
                        &span,
                        format!(
                            "{} is {other:?}; use \"client_secret_basic\" or \"client_secret_post\"",
                            table.key("token_endpoint_auth")
                        ),
                    );
                    None
                }
            },
        };
        let scopes = match self.strings(table, "scopes") {
            None if table.get("scopes").is_some() => None,
            None => Some(vec!["openid".into(), "email".into(), "profile".into()]),
            Some(list) => {
                let mut scopes = Vec::with_capacity(list.len());
                let mut complete = true;
                for (scope, span) in list {
                    if scope.contains(|c: char| c == ' ' || c == '"' || c == '\\' || c.is_control())
                    {
                        self.error(
                            &span,
                            format!(
                                "{}: \"{scope}\" is not a scope token (no spaces, quotes or backslashes)",
                                table.key("scopes")
                            ),
                        );
                        complete = false;
                    } else if !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                }
                if complete && !scopes.iter().any(|s| s == "openid") {
                    let span = table.get("scopes").map_or(table.span.clone(), |v| v.span());
                    self.error(
                        &span,
                        format!(
                            "{} must contain \"openid\": the hop needs an ID token",
                            table.key("scopes")
                        ),
                    );
                    complete = false;
                }
                complete.then_some(scopes)
            }
        };
        Some(UpstreamSettings {
            client_id: client_id?,
            client_secret: client_secret?,
            token_endpoint_auth: token_endpoint_auth?,
            scopes: scopes?,
        })
    }

    fn client_id(&mut self, table: &Table<'_, '_>, what: &str) -> Option<String> {
        let id = self.required_string(table, "client_id", what)?;
        if id.chars().any(char::is_control) {
            let span = table
                .get("client_id")
                .map_or(table.span.clone(), |v| v.span());
            self.error(
                &span,
                format!("{} contains a control character", table.key("client_id")),
            );
            return None;
        }
        Some(id)
    }

    /// Exactly one of `client_secret_env` and `client_secret_file`.
    fn secret_source(&mut self, table: &Table<'_, '_>, dir: &Path) -> Option<SecretSource> {
        let env = self.string(table, "client_secret_env");
        let file = self.string(table, "client_secret_file");
        match (env, file) {
            (Some((name, span)), None) => {
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !name.as_bytes()[0].is_ascii_digit();
                if valid {
                    Some(SecretSource::Env(name))
                } else {
                    self.error(
                        &span,
                        format!(
                            "{} is not an environment variable name (letters, digits and _, not starting with a digit)",
                            table.key("client_secret_env")
                        ),
                    );
                    None
                }
            }
            (None, Some((path, _))) => Some(SecretSource::File(dir.join(path))),
            (Some(_), Some((_, span))) => {
                self.error(
                    &span,
                    format!(
                        "{} and {} are both set: name one place for the secret",
                        table.key("client_secret_env"),
                        table.key("client_secret_file")
                    ),
                );
                None
            }
            (None, None) => {
                if table.get("client_secret_env").is_none()
                    && table.get("client_secret_file").is_none()
                {
                    self.error(
                        &table.span,
                        format!(
                            "{} (or {}) is missing: secrets never live in provider.toml, name the environment variable or file that holds it",
                            table.key("client_secret_env"),
                            table.key("client_secret_file")
                        ),
                    );
                }
                None
            }
        }
    }

    fn redirect_uris(&mut self, table: &Table<'_, '_>) -> Option<Vec<String>> {
        let list = self.required_strings(
            table,
            "redirect_uris",
            "Kratos's callback URL(s), <kratos public>/self-service/methods/oidc/callback/<provider>",
        )?;
        let mut uris = Vec::with_capacity(list.len());
        let mut complete = true;
        for (uri, span) in list {
            let problem = match Url::parse(&uri) {
                Err(e) => Some(format!("is not a URL ({e})")),
                Ok(url) if url.fragment().is_some() => {
                    Some("must not have a fragment (RFC 6749 §3.1.2)".to_owned())
                }
                Ok(url) => check_transport(&url).err().map(str::to_owned),
            };
            match problem {
                Some(problem) => {
                    self.error(
                        &span,
                        format!("{}: \"{uri}\" {problem}", table.key("redirect_uris")),
                    );
                    complete = false;
                }
                None if uris.contains(&uri) => {
                    self.error(
                        &span,
                        format!("{} lists \"{uri}\" twice", table.key("redirect_uris")),
                    );
                    complete = false;
                }
                None => uris.push(uri),
            }
        }
        complete.then_some(uris)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::settings::parse;

    const BASE: &str = r#"schema_id = "default"

[[tenants]]
id = "tenant-acme"
verified_domains = ["acme.example"]

[token]
issuer = "https://sso.example.test"
audiences = ["tenant=acme&product=kratos"]
"#;

    const HOP: &str = r#"
[hop]
client_id = "kratos"
client_secret_env = "KRATOS_JIT_HOP_CLIENT_SECRET"
redirect_uris = ["http://127.0.0.1:4433/self-service/methods/oidc/callback/okta-acme"]

[hop.upstream]
client_id = "tenant=acme&product=kratos"
client_secret_file = "upstream-secret"
"#;

    /// Every problem of `text`, as `line:column: message`.
    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("provider.toml"), Path::new("/p")) {
            Ok(_) => vec![],
            Err(errors) => errors
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}: {}",
                        e.line.unwrap_or(0),
                        e.column.unwrap_or(0),
                        e.message
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_hop_reads_with_its_defaults_and_secret_sources() {
        let text = format!("{BASE}{HOP}");

        let parsed = parse(&text, Path::new("provider.toml"), Path::new("/p")).unwrap();

        let hop = parsed.settings.hop.unwrap();
        assert_eq!(hop.client_id, "kratos");
        assert_eq!(
            hop.client_secret,
            SecretSource::Env("KRATOS_JIT_HOP_CLIENT_SECRET".into())
        );
        assert_eq!(
            hop.upstream.client_secret,
            SecretSource::File(PathBuf::from("/p/upstream-secret"))
        );
        assert_eq!(
            hop.upstream.token_endpoint_auth,
            ClientAuth::ClientSecretBasic
        );
        assert_eq!(hop.upstream.scopes, ["openid", "email", "profile"]);
    }

    #[test]
    fn a_hop_without_token_settings_or_upstream_is_refused() {
        let without_token = format!("{}{HOP}", BASE.split("[token]").next().unwrap());
        let without_upstream = format!("{BASE}{}", HOP.split("[hop.upstream]").next().unwrap());

        let token = problems(&without_token);
        let upstream = problems(&without_upstream);

        assert!(
            token
                .iter()
                .any(|p| p.contains("[hop] needs the provider's [token] section")),
            "{token:?}"
        );
        assert!(
            upstream
                .iter()
                .any(|p| p.contains("[hop.upstream] is missing")),
            "{upstream:?}"
        );
    }

    #[test]
    fn bad_hop_values_are_reported_each_with_its_position() {
        let text = format!("{BASE}{HOP}")
            .replace(
                "client_secret_env = \"KRATOS_JIT_HOP_CLIENT_SECRET\"",
                "client_secret_env = \"not a name\"",
            )
            .replace("http://127.0.0.1:4433", "http://kratos.example")
            .replace(
                "client_secret_file = \"upstream-secret\"",
                "client_secret_file = \"upstream-secret\"\nscopes = [\"email\"]\nsecret = \"inline\"",
            );

        let found = problems(&text);

        let expected = [
            "13:21: `hop.client_secret_env` is not an environment variable name",
            "14:18: `hop.redirect_uris`: \"http://kratos.example/self-service/methods/oidc/callback/okta-acme\" must use https",
            "19:10: `hop.upstream.scopes` must contain \"openid\"",
            "20:1: unknown key `secret` in [hop.upstream]",
        ];
        for expected in expected {
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected}\n{found:#?}"
            );
        }
    }

    #[test]
    fn a_secret_named_twice_is_refused() {
        let text = format!("{BASE}{HOP}").replace(
            "client_secret_file = \"upstream-secret\"",
            "client_secret_file = \"upstream-secret\"\nclient_secret_env = \"UPSTREAM\"",
        );

        let found = problems(&text);

        assert!(
            found
                .iter()
                .any(|p| p.contains("are both set: name one place for the secret")),
            "{found:?}"
        );
    }
}
