//! `provider.toml`: a provider's settings, read from TOML's spanned document so that every
//! problem (syntax, unknown key, wrong type, bad value) is reported with its line and column, all
//! of them in one pass.
//!
//! `[token]` is read straight into the verifier's [`IssuerSettings`], with every check the
//! verifier relies on done here: what this module accepts, `serve` runs with as it is.
//! `[[token.require]]` entries (`claim` = a claim name or a path of member names, `equals` =
//! the value) become its [`RequiredClaim`]s. `[sessions]` is read into the domain's
//! [`SessionSettings`], each field path checked ([`crate::domain::sessions::field_problem`]).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::Algorithm;
use reqwest::Url;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{LineIndex, LoadError, did_you_mean};
use crate::domain::sessions::{self, SessionSettings};
use crate::token::{IssuerSettings, RequiredClaim, check_transport, load_ca_bundle};

mod hop;
mod scim;
pub use hop::{ClientAuth, HopSettings, SecretSource, UpstreamSettings};
pub use scim::ScimSettings;

/// A provider's settings (`provider.toml`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The Kratos identity schema of the identities this provider creates.
    pub schema_id: String,
    pub jit: JitSettings,
    /// The tenants the provider may provision into; never empty.
    pub tenants: Vec<TenantBinding>,
    /// How `POST /v1/provision` verifies this provider's ID tokens; `None` refuses that endpoint.
    pub token: Option<IssuerSettings>,
    /// Which changes revoke an identity's sessions (`[sessions]`).
    pub sessions: SessionSettings,
    /// kratos-jit as the OpenID Provider Kratos signs in with (`[hop]`); `None`: no hop.
    pub hop: Option<HopSettings>,
    /// The IdP's SCIM push (`[scim]`); disabled without the section.
    pub scim: ScimSettings,
}

impl ProviderSettings {
    /// The binding for tenant `id`, if the provider is bound to it.
    pub fn tenant(&self, id: &str) -> Option<&TenantBinding> {
        self.tenants.iter().find(|t| t.id.as_str() == id)
    }
}

pub use crate::domain::rules::{JitSettings, TenantBinding};

/// The settings plus where each tenant binding was written, for checks across providers.
pub(super) struct ParsedSettings {
    pub settings: ProviderSettings,
    /// Line and column of each tenant's `verified_domains`, in `settings.tenants` order.
    pub tenant_positions: Vec<(usize, usize)>,
}

const ROOT_KEYS: &[&str] = &[
    "schema_id",
    "jit",
    "tenants",
    "token",
    "sessions",
    "hop",
    "scim",
];
const JIT_KEYS: &[&str] = &["create", "update", "link_by_verified_email"];
const TENANT_KEYS: &[&str] = &["id", "verified_domains"];
const TOKEN_KEYS: &[&str] = &[
    "issuer",
    "audiences",
    "jwks_url",
    "algorithms",
    "ca_bundle",
    "require",
];
const REQUIRE_KEYS: &[&str] = &["claim", "equals"];
const SESSIONS_KEYS: &[&str] = &["revoke_when_changed"];

/// Claims the verifier checks itself, which `[[token.require]]` must not name.
const VERIFIED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat"];

/// The identity schema built in as `default`, whose trait names `[sessions]` is checked against.
const DEFAULT_SCHEMA: &str = include_str!("../../deploy/kratos/identity.schema.json");

/// The `alg` values `[token]` may allow: every asymmetric algorithm jsonwebtoken verifies.
const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Reads `provider.toml` (`text`, read from `path` in the provider folder `dir`).
pub(super) fn parse(text: &str, path: &Path, dir: &Path) -> Result<ParsedSettings, Vec<LoadError>> {
    let mut reader = Reader {
        path,
        lines: LineIndex::new(text),
        errors: Vec::new(),
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // What recovery makes of a broken document is a guess; checking it would add noise.
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            reader.error(
                &span,
                format!("TOML syntax error: {}", error.message().trim_end()),
            );
        }
        return Err(reader.errors);
    }
    let root = reader.open(
        String::new(),
        document.get_ref(),
        document.span(),
        ROOT_KEYS,
    );
    let parsed = reader.settings(&root, dir);
    match parsed {
        Some(parsed) if reader.errors.is_empty() => Ok(parsed),
        _ => Err(reader.errors),
    }
}

/// A table being read, with its dotted name (`""` for the document, `tenants[0]`, `token`).
struct Table<'a, 'i> {
    name: String,
    entries: &'a DeTable<'i>,
    span: Range<usize>,
}

type Value<'a, 'i> = &'a Spanned<DeValue<'i>>;

impl<'a, 'i> Table<'a, 'i> {
    fn get(&self, key: &str) -> Option<Value<'a, 'i>> {
        self.entries.get(key)
    }

    fn key(&self, key: &str) -> String {
        if self.name.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{}.{key}`", self.name)
        }
    }

    /// Where the table is, for messages: `the top level`, `[jit]`, `tenants[0]`.
    fn header(&self) -> String {
        if self.name.is_empty() {
            "the top level".to_owned()
        } else if self.name.ends_with(']') {
            self.name.clone()
        } else {
            format!("[{}]", self.name)
        }
    }
}

struct Reader<'p, 't> {
    path: &'p Path,
    lines: LineIndex<'t>,
    errors: Vec<LoadError>,
}

impl Reader<'_, '_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let position = self.lines.locate(span.start);
        self.errors
            .push(LoadError::at(self.path, position, message));
    }

    fn settings(&mut self, root: &Table<'_, '_>, dir: &Path) -> Option<ParsedSettings> {
        let schema_id = self.required_string(
            root,
            "schema_id",
            "the Kratos identity schema id, e.g. schema_id = \"default\"",
        );
        let jit = match self.table(root, "jit", JIT_KEYS) {
            Some(table) => self.jit(&table),
            None => JitSettings::default(),
        };
        let tenants = self.tenants(root);
        let token = self
            .table(root, "token", TOKEN_KEYS)
            .map(|t| self.token(&t, dir));
        let sessions = match self.table(root, "sessions", SESSIONS_KEYS) {
            Some(table) => self.sessions(&table, schema_id.as_deref()),
            None => Some(SessionSettings::default()),
        };
        let hop = self
            .table(root, "hop", hop::HOP_KEYS)
            .and_then(|t| self.hop(&t, dir, root.get("token").is_some()));
        let scim = match self.table(root, "scim", scim::SCIM_KEYS) {
            Some(table) => self.scim(&table, dir),
            None => Some(ScimSettings::default()),
        };
        let (tenants, tenant_positions) = tenants?.into_iter().unzip();
        Some(ParsedSettings {
            settings: ProviderSettings {
                schema_id: schema_id?,
                jit,
                tenants,
                token: token.flatten(),
                sessions: sessions?,
                hop,
                scim: scim?,
            },
            tenant_positions,
        })
    }

    fn jit(&mut self, table: &Table<'_, '_>) -> JitSettings {
        let defaults = JitSettings::default();
        JitSettings {
            create: self.boolean(table, "create").unwrap_or(defaults.create),
            update: self.boolean(table, "update").unwrap_or(defaults.update),
            link_by_verified_email: self
                .boolean(table, "link_by_verified_email")
                .unwrap_or(defaults.link_by_verified_email),
        }
    }

    fn tenants(&mut self, root: &Table<'_, '_>) -> Option<Vec<(TenantBinding, (usize, usize))>> {
        let Some(value) = root.get("tenants") else {
            self.error(
                &root.span,
                "no [[tenants]]: a provider must be bound to at least one tenant (add [[tenants]] with id and verified_domains)",
            );
            return None;
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                &value.span(),
                format!(
                    "`tenants` must be an array of tables ([[tenants]]), not {}",
                    kind(value)
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.error(
                &value.span(),
                "`tenants` is empty: a provider must be bound to at least one tenant",
            );
            return None;
        }
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        let mut tenants = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let name = format!("tenants[{i}]");
            let DeValue::Table(entries) = item.get_ref() else {
                self.error(
                    &item.span(),
                    format!(
                        "`{name}` must be a table with id and verified_domains, not {}",
                        kind(item)
                    ),
                );
                complete = false;
                continue;
            };
            let table = self.open(name, entries, item.span(), TENANT_KEYS);
            let id = self.required_string(
                &table,
                "id",
                "the tenant id the mapper puts in traits.tenant_id",
            );
            if let (Some(id), Some(value)) = (&id, table.get("id")) {
                let line = self.lines.locate(value.span().start).0;
                if let Some(first) = first_seen.insert(id.clone(), line) {
                    let message = format!(
                        "tenant \"{id}\" is already bound on line {first}; bind each tenant once"
                    );
                    self.error(&value.span(), message);
                }
            }
            let domains = self.verified_domains(&table);
            let position = self.lines.locate(
                table
                    .get("verified_domains")
                    .map_or(table.span.start, |v| v.span().start),
            );
            match (id, domains) {
                (Some(id), Some(verified_domains)) => tenants.push((
                    TenantBinding {
                        id: crate::domain::TenantId::new(id),
                        verified_domains,
                    },
                    position,
                )),
                _ => complete = false,
            }
        }
        complete.then_some(tenants)
    }

    /// A tenant's `verified_domains`, lower-cased; `None` when any of them is unusable.
    fn verified_domains(&mut self, table: &Table<'_, '_>) -> Option<Vec<String>> {
        let domains = self.required_strings(
            table,
            "verified_domains",
            "the e-mail domains the tenant has proven it owns",
        )?;
        let mut verified_domains = Vec::with_capacity(domains.len());
        let mut complete = true;
        for (domain, span) in domains {
            match normalize_domain(&domain) {
                Ok(domain) if verified_domains.contains(&domain) => {
                    self.error(
                        &span,
                        format!("{} lists \"{domain}\" twice", table.key("verified_domains")),
                    );
                    complete = false;
                }
                Ok(domain) => verified_domains.push(domain),
                Err(problem) => {
                    self.error(
                        &span,
                        format!("{}: \"{domain}\" {problem}", table.key("verified_domains")),
                    );
                    complete = false;
                }
            }
        }
        complete.then_some(verified_domains)
    }

    /// `[token]`, with every check the verifier relies on, so that the settings it returns are
    /// used as they are. The issuer is kept exactly as written: the token's `iss` must equal it.
    fn token(&mut self, table: &Table<'_, '_>, dir: &Path) -> Option<IssuerSettings> {
        let issuer = self.required_string(
            table,
            "issuer",
            "the issuer URL the ID tokens carry in `iss`",
        );
        if let (Some(issuer), Some(value)) = (&issuer, table.get("issuer")) {
            match Url::parse(issuer) {
                Err(e) => self.error(&value.span(), format!("`token.issuer` is not a URL ({e})")),
                Ok(url) => {
                    if let Err(problem) = check_transport(&url) {
                        self.error(&value.span(), format!("`token.issuer` {problem}"));
                    }
                    if url.query().is_some() || url.fragment().is_some() {
                        let message = "`token.issuer` must not have a query or fragment (OpenID Connect Discovery §2)";
                        self.error(&value.span(), message);
                    }
                }
            }
        }
        let audiences = self.required_strings(
            table,
            "audiences",
            "the client id(s) the issuer puts in the ID token's `aud`",
        );
        let audiences =
            audiences.map(|list| list.into_iter().map(|(audience, _)| audience).collect());
        let jwks_url = self.string(table, "jwks_url").map(|(url, span)| {
            match Url::parse(&url) {
                Err(e) => self.error(&span, format!("`token.jwks_url` is not a URL ({e})")),
                Ok(parsed) => {
                    if let Err(problem) = check_transport(&parsed) {
                        self.error(&span, format!("`token.jwks_url` {problem}"));
                    }
                }
            }
            url
        });
        let algorithms = match self.strings(table, "algorithms") {
            None => IssuerSettings::default_algorithms(),
            Some(list) => {
                if list.is_empty() {
                    let span = table
                        .get("algorithms")
                        .map_or(table.span.clone(), |v| v.span());
                    let default: Vec<String> = IssuerSettings::default_algorithms()
                        .iter()
                        .map(|alg| format!("{alg:?}"))
                        .collect();
                    let message = format!(
                        "`token.algorithms` is empty: allow at least one, or leave it out for {}",
                        default.join(", ")
                    );
                    self.error(&span, message);
                }
                let mut algorithms = Vec::with_capacity(list.len());
                for (name, span) in &list {
                    match parse_algorithm(name) {
                        Ok(algorithm) => algorithms.push(algorithm),
                        Err(problem) => self.error(span, problem),
                    }
                }
                algorithms
            }
        };
        let ca_bundle = self.string(table, "ca_bundle").map(|(relative, span)| {
            let path = dir.join(&relative);
            if !path.is_file() {
                let message = format!(
                    "`token.ca_bundle`: {} is not a file (the path is relative to the provider folder)",
                    path.display()
                );
                self.error(&span, message);
            } else if let Err(problem) = load_ca_bundle(&path) {
                let message = format!("`token.ca_bundle`: {}: {problem}", path.display());
                self.error(&span, message);
            }
            path
        });
        let require = self.required_claims(table);
        Some(IssuerSettings {
            issuer: issuer?,
            audiences: audiences?,
            jwks_url,
            algorithms,
            ca_bundle,
            require: require?,
        })
    }

    /// `[[token.require]]` (or `require = [{claim = …, equals = …}]`): each entry's `claim` is a
    /// claim name taken as it is (dots and slashes included) or a list of member names from the
    /// payload's top, and `equals` the string it must hold.
    fn required_claims(&mut self, token: &Table<'_, '_>) -> Option<Vec<RequiredClaim>> {
        let Some(value) = token.get("require") else {
            return Some(Vec::new());
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                &value.span(),
                format!(
                    "`token.require` must be an array of tables ([[token.require]] with claim and equals), not {}",
                    kind(value)
                ),
            );
            return None;
        };
        let mut required: Vec<RequiredClaim> = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let name = format!("token.require[{i}]");
            let DeValue::Table(entries) = item.get_ref() else {
                self.error(
                    &item.span(),
                    format!(
                        "`{name}` must be a table with claim and equals, not {}",
                        kind(item)
                    ),
                );
                complete = false;
                continue;
            };
            let table = self.open(name, entries, item.span(), REQUIRE_KEYS);
            let path = self.claim_path(&table);
            let equals = self.required_string(
                &table,
                "equals",
                "the value the claim must hold for a token of this provider",
            );
            match (path, equals) {
                (Some(path), Some(equals)) => {
                    let claim = RequiredClaim { path, equals };
                    if required.iter().any(|r| r.path == claim.path) {
                        let span = table.get("claim").map_or(table.span.clone(), |v| v.span());
                        let message = format!(
                            "{} names `{}` a second time; require each claim once",
                            table.key("claim"),
                            claim.name()
                        );
                        self.error(&span, message);
                        complete = false;
                    } else {
                        required.push(claim);
                    }
                }
                _ => complete = false,
            }
        }
        complete.then_some(required)
    }

    /// A required claim's `claim`: one name, or a non-empty list of names (a path).
    fn claim_path(&mut self, table: &Table<'_, '_>) -> Option<Vec<String>> {
        const WHAT: &str = "the claim's name, or the list of member names leading to it, e.g. claim = [\"raw\", \"http://schemas.microsoft.com/identity/claims/tenantid\"]";
        let Some(value) = table.get("claim") else {
            self.error(
                &table.span,
                format!("{} is missing: {WHAT}", table.key("claim")),
            );
            return None;
        };
        let path: Vec<String> = match value.get_ref() {
            DeValue::String(_) => vec![self.string(table, "claim")?.0],
            DeValue::Array(_) => {
                let names = self.required_strings(table, "claim", WHAT)?;
                names.into_iter().map(|(name, _)| name).collect()
            }
            _ => {
                self.error(
                    &value.span(),
                    format!(
                        "{} must be a claim name or a list of names, not {}",
                        table.key("claim"),
                        kind(value)
                    ),
                );
                return None;
            }
        };
        if path.len() == 1 && VERIFIED_CLAIMS.contains(&path[0].as_str()) {
            let message = format!(
                "{}: `{}` is checked by the verifier itself (issuer, audiences, times); require a claim that names the provider, such as a tenant id",
                table.key("claim"),
                path[0]
            );
            self.error(&value.span(), message);
            return None;
        }
        Some(path)
    }

    /// `[sessions]`: `revoke_when_changed`, every path checked; the traits against the built-in
    /// identity schema when the provider uses it.
    fn sessions(
        &mut self,
        table: &Table<'_, '_>,
        schema_id: Option<&str>,
    ) -> Option<SessionSettings> {
        let Some(value) = table.get("revoke_when_changed") else {
            return Some(SessionSettings::default());
        };
        let DeValue::Array(items) = value.get_ref() else {
            let message = format!(
                "{} must be an array of field paths such as \"traits.role\", not {}",
                table.key("revoke_when_changed"),
                kind(value)
            );
            self.error(&value.span(), message);
            return None;
        };
        let schema: Option<serde_json::Value> = (schema_id
            == Some(crate::schema::DEFAULT_SCHEMA_ID))
        .then(|| serde_json::from_str(DEFAULT_SCHEMA).ok())
        .flatten();
        let traits: Option<Vec<&str>> = schema
            .as_ref()
            .and_then(|s| s.pointer("/properties/traits/properties"))
            .and_then(serde_json::Value::as_object)
            .map(|properties| properties.keys().map(String::as_str).collect());
        let mut fields: Vec<String> = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let key = table.key("revoke_when_changed");
            let DeValue::String(path) = item.get_ref() else {
                let message = format!("{key}[{i}] must be a string, not {}", kind(item));
                self.error(&item.span(), message);
                complete = false;
                continue;
            };
            let problem = sessions::field_problem(path, traits.as_deref()).or_else(|| {
                fields
                    .iter()
                    .any(|f| f == path.as_ref())
                    .then(|| format!("\"{path}\" is listed twice"))
            });
            match problem {
                Some(problem) => {
                    self.error(&item.span(), format!("{key}: {problem}"));
                    complete = false;
                }
                None => fields.push(path.to_string()),
            }
        }
        complete.then_some(SessionSettings {
            revoke_when_changed: fields,
        })
    }

    /// Opens a table, reporting every key it does not know.
    fn open<'a, 'i>(
        &mut self,
        name: String,
        entries: &'a DeTable<'i>,
        span: Range<usize>,
        known: &[&str],
    ) -> Table<'a, 'i> {
        let table = Table {
            name,
            entries,
            span,
        };
        for (key, _) in entries.iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                self.error(
                    &key.span(),
                    format!(
                        "unknown key `{}` in {}{}; known keys: {}",
                        key.get_ref(),
                        table.header(),
                        did_you_mean(key.get_ref(), known),
                        known.join(", ")
                    ),
                );
            }
        }
        table
    }

    fn table<'a, 'i>(
        &mut self,
        parent: &Table<'a, 'i>,
        key: &str,
        known: &[&str],
    ) -> Option<Table<'a, 'i>> {
        let value = parent.get(key)?;
        match value.get_ref() {
            DeValue::Table(entries) => {
                let name = if parent.name.is_empty() {
                    key.to_owned()
                } else {
                    format!("{}.{key}", parent.name)
                };
                Some(self.open(name, entries, value.span(), known))
            }
            _ => {
                self.error(
                    &value.span(),
                    format!(
                        "{} must be a table ([{key}]), not {}",
                        parent.key(key),
                        kind(value)
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table<'_, '_>, key: &str) -> Option<bool> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.error(
                    &value.span(),
                    format!(
                        "{} must be true or false, not {}",
                        table.key(key),
                        kind(value)
                    ),
                );
                None
            }
        }
    }

    /// An optional string; `None` when absent or of the wrong type (reported).
    fn string(&mut self, table: &Table<'_, '_>, key: &str) -> Option<(String, Range<usize>)> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => match text_problem(s) {
                None => Some((s.to_string(), value.span())),
                Some(problem) => {
                    self.error(&value.span(), format!("{} {problem}", table.key(key)));
                    None
                }
            },
            _ => {
                self.error(
                    &value.span(),
                    format!("{} must be a string, not {}", table.key(key), kind(value)),
                );
                None
            }
        }
    }

    fn required_string(&mut self, table: &Table<'_, '_>, key: &str, what: &str) -> Option<String> {
        if table.get(key).is_none() {
            self.error(
                &table.span,
                format!("{} is missing: {what}", table.key(key)),
            );
            return None;
        }
        self.string(table, key).map(|(s, _)| s)
    }

    /// An optional array of strings; reports every element that is not a non-empty string.
    fn strings(&mut self, table: &Table<'_, '_>, key: &str) -> Option<Vec<(String, Range<usize>)>> {
        let value = table.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                &value.span(),
                format!(
                    "{} must be an array of strings, not {}",
                    table.key(key),
                    kind(value)
                ),
            );
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => match text_problem(s) {
                    None => strings.push((s.to_string(), item.span())),
                    Some(problem) => {
                        let message = format!("{}[{i}] {problem}", table.key(key));
                        self.error(&item.span(), message);
                        complete = false;
                    }
                },
                _ => {
                    self.error(
                        &item.span(),
                        format!(
                            "{}[{i}] must be a string, not {}",
                            table.key(key),
                            kind(item)
                        ),
                    );
                    complete = false;
                }
            }
        }
        complete.then_some(strings)
    }

    /// A required, non-empty array of strings.
    fn required_strings(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        what: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let Some(value) = table.get(key) else {
            self.error(
                &table.span,
                format!("{} is missing: {what}", table.key(key)),
            );
            return None;
        };
        let strings = self.strings(table, key)?;
        if strings.is_empty() {
            self.error(
                &value.span(),
                format!("{} is empty: list at least one ({what})", table.key(key)),
            );
            return None;
        }
        Some(strings)
    }
}

/// Settings are identifiers, names and URLs compared exactly: blank or padded values are typos.
fn text_problem(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("must not be empty")
    } else if text.trim() != text {
        Some("must not start or end with white space")
    } else {
        None
    }
}

fn kind(value: &Spanned<DeValue<'_>>) -> &'static str {
    match value.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A verified domain as stored: a lower-cased DNS name of at least two labels.
fn normalize_domain(raw: &str) -> Result<String, &'static str> {
    if raw.contains('@') {
        return Err("is an e-mail address; list the domain after the @");
    }
    if raw.contains('*') {
        return Err("is a wildcard; list each domain (and subdomain) explicitly");
    }
    if !raw.is_ascii() {
        return Err("is not ASCII; write an internationalised domain in its xn-- (punycode) form");
    }
    let domain = raw.to_ascii_lowercase();
    if domain.len() > 253 {
        return Err("is longer than 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("is not a domain name with at least two labels, e.g. acme.example");
    }
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return Err(
            "is not a DNS name: use labels of 1 to 63 letters, digits and inner hyphens, separated by single dots",
        );
    }
    Ok(domain)
}

/// An allowed `alg` of `[token]`; `none` and the HMAC algorithms are refused with the reason.
fn parse_algorithm(algorithm: &str) -> Result<Algorithm, String> {
    if ALGORITHMS.contains(&algorithm)
        && let Ok(parsed) = Algorithm::from_str(algorithm)
    {
        return Ok(parsed);
    }
    if algorithm.to_ascii_uppercase().starts_with("HS") {
        return Err(format!(
            "`token.algorithms`: {algorithm} is a shared-secret (HMAC) algorithm and is refused: ID tokens must be verified with the issuer's public keys"
        ));
    }
    if algorithm.eq_ignore_ascii_case("none") {
        return Err("`token.algorithms`: `none` (unsigned tokens) is refused".to_owned());
    }
    Err(format!(
        "`token.algorithms`: unknown algorithm {algorithm}{}; allowed: {}",
        did_you_mean(algorithm, ALGORITHMS),
        ALGORITHMS.join(", ")
    ))
}
