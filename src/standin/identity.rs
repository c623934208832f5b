//! The stand-in's identity record and how Kratos renders it on the wire.
//!
//! The record keeps what Kratos keeps for the endpoints a JIT sidecar uses: traits, state,
//! metadata, `external_id`, organization, verifiable and recovery addresses, and credentials
//! (type → identifiers + config). Rendering follows `identity/identity.go` v26.2.0:
//! `metadata_public` and `organization_id` are always present (null when unset),
//! `verifiable_addresses`, `recovery_addresses`, `external_id` and `credentials` are omitted when
//! empty, and a credential's `config` only appears when it is asked for (`include_credential`).
//!
//! The identity schema is fixed to the one kratos-jit ships: `traits.email` is the e-mail
//! address, verifiable via e-mail, usable for recovery, and the identifier of a password
//! credential when one is imported.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;
use uuid::Uuid;

/// Credential types Kratos v26.2.0 accepts in `include_credential` (spec enum of `getIdentity`).
pub(crate) const CREDENTIAL_TYPES: &[&str] = &[
    "password",
    "oidc",
    "totp",
    "lookup_secret",
    "webauthn",
    "code",
    "passkey",
    "profile",
    "saml",
    "link_recovery",
    "code_recovery",
];

/// `active` or `inactive` (`identity.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Active,
    Inactive,
}

impl State {
    pub(crate) fn parse(value: &str) -> Option<State> {
        match value {
            "active" => Some(State::Active),
            "inactive" => Some(State::Inactive),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Inactive => "inactive",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiableAddress {
    pub id: Uuid,
    pub value: String,
    pub via: String,
    pub verified: bool,
    pub status: String,
    pub verified_at: Option<SystemTime>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecoveryAddress {
    pub id: Uuid,
    pub value: String,
    pub via: String,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Credential {
    pub identifiers: Vec<String>,
    /// What `include_credential=<type>` reveals; never a plaintext password.
    pub config: Value,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    pub id: Uuid,
    /// Creation order, for [`crate::standin::StandIn::identities`].
    pub seq: u64,
    pub schema_id: String,
    pub state: State,
    pub state_changed_at: SystemTime,
    pub traits: Value,
    pub verifiable_addresses: Vec<VerifiableAddress>,
    pub recovery_addresses: Vec<RecoveryAddress>,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    pub external_id: Option<String>,
    pub organization_id: Option<Uuid>,
    /// Keyed by credential type (`oidc`, `saml`, `password`).
    pub credentials: BTreeMap<String, Credential>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// How much of the credentials a response shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CredentialView<'a> {
    /// Not loaded (plain list, embedded in a session).
    Hidden,
    /// Type, identifiers, timestamps; no `config` (`WithCredentialsNoConfigAndAdminMetadataInJSON`).
    WithoutConfig,
    /// Like `WithoutConfig`, plus `config` for the listed types (`WithDeclassifiedCredentials`).
    Declassified(&'a [String]),
}

/// A unique constraint an identity occupies; two identities may never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UniqueKey<'a> {
    Credential { kind: &'a str, identifier: &'a str },
    VerifiableAddress { via: &'a str, value: &'a str },
    RecoveryAddress { via: &'a str, value: &'a str },
    ExternalId(&'a str),
}

impl Identity {
    /// The identity JSON. `metadata_admin` is only shown by admin endpoints (Kratos's default
    /// `Identity.MarshalJSON` strips it, e.g. inside a session).
    pub(crate) fn render(
        &self,
        base_url: &str,
        credentials: CredentialView<'_>,
        metadata_admin: bool,
    ) -> Value {
        let mut out = Map::new();
        out.insert("id".to_owned(), json!(self.id.to_string()));
        out.insert("schema_id".to_owned(), json!(self.schema_id));
        out.insert(
            "schema_url".to_owned(),
            json!(schema_url(base_url, &self.schema_id)),
        );
        out.insert("state".to_owned(), json!(self.state.as_str()));
        out.insert(
            "state_changed_at".to_owned(),
            json!(timestamp(self.state_changed_at)),
        );
        out.insert("traits".to_owned(), self.traits.clone());
        if !self.verifiable_addresses.is_empty() {
            let addresses = self
                .verifiable_addresses
                .iter()
                .map(VerifiableAddress::render)
                .collect();
            out.insert("verifiable_addresses".to_owned(), Value::Array(addresses));
        }
        if !self.recovery_addresses.is_empty() {
            let addresses = self
                .recovery_addresses
                .iter()
                .map(RecoveryAddress::render)
                .collect();
            out.insert("recovery_addresses".to_owned(), Value::Array(addresses));
        }
        out.insert(
            "metadata_public".to_owned(),
            self.metadata_public.clone().unwrap_or(Value::Null),
        );
        if metadata_admin {
            out.insert(
                "metadata_admin".to_owned(),
                self.metadata_admin.clone().unwrap_or(Value::Null),
            );
        }
        out.insert("created_at".to_owned(), json!(timestamp(self.created_at)));
        out.insert("updated_at".to_owned(), json!(timestamp(self.updated_at)));
        out.insert(
            "organization_id".to_owned(),
            self.organization_id
                .map_or(Value::Null, |id| json!(id.to_string())),
        );
        if let Some(external_id) = &self.external_id {
            out.insert("external_id".to_owned(), json!(external_id));
        }
        if let Some(credentials) = self.render_credentials(credentials) {
            out.insert("credentials".to_owned(), credentials);
        }
        Value::Object(out)
    }

    fn render_credentials(&self, view: CredentialView<'_>) -> Option<Value> {
        let declassified: &[String] = match view {
            CredentialView::Hidden => return None,
            CredentialView::WithoutConfig => &[],
            CredentialView::Declassified(types) => types,
        };
        if self.credentials.is_empty() {
            return None;
        }
        let mut out = Map::new();
        for (kind, credential) in &self.credentials {
            let mut rendered = Map::new();
            rendered.insert("type".to_owned(), json!(kind));
            rendered.insert("identifiers".to_owned(), json!(credential.identifiers));
            rendered.insert("version".to_owned(), json!(0));
            rendered.insert(
                "created_at".to_owned(),
                json!(timestamp(credential.created_at)),
            );
            rendered.insert(
                "updated_at".to_owned(),
                json!(timestamp(credential.updated_at)),
            );
            if declassified.iter().any(|t| t == kind) {
                rendered.insert("config".to_owned(), credential.config.clone());
            }
            out.insert(kind.clone(), Value::Object(rendered));
        }
        Some(Value::Object(out))
    }

    /// The lowercased `traits.email`, if the traits carry one.
    pub(crate) fn email(&self) -> Option<String> {
        email_of(&self.traits)
    }

    /// Everything this identity holds that must be unique across identities (docs/kratos.md §3.9).
    pub(crate) fn unique_keys(&self) -> impl Iterator<Item = UniqueKey<'_>> {
        let credentials = self.credentials.iter().flat_map(|(kind, credential)| {
            credential
                .identifiers
                .iter()
                .map(move |identifier| UniqueKey::Credential { kind, identifier })
        });
        let verifiable = self
            .verifiable_addresses
            .iter()
            .map(|a| UniqueKey::VerifiableAddress {
                via: &a.via,
                value: &a.value,
            });
        let recovery = self
            .recovery_addresses
            .iter()
            .map(|a| UniqueKey::RecoveryAddress {
                via: &a.via,
                value: &a.value,
            });
        credentials
            .chain(verifiable)
            .chain(recovery)
            .chain(self.external_id.as_deref().map(UniqueKey::ExternalId))
    }

    /// Whether `credentials_identifier` finds this identity. For `oidc` and `saml` the value is
    /// compared verbatim (`provider:subject`); for the other types Kratos normalizes it first
    /// (`NormalizeIdentifier`: trimmed, lowercased), docs/kratos.md §3.1.
    #[cfg(test)]
    pub(crate) fn has_identifier(&self, wanted: &str) -> bool {
        self.has_identifier_normalized(wanted, &normalize_identifier(wanted))
    }

    /// [`Self::has_identifier`] with the normalized form computed once by the caller (a list
    /// call confirms every candidate its index found with it).
    pub(crate) fn has_identifier_normalized(&self, wanted: &str, normalized: &str) -> bool {
        self.credentials.iter().any(|(kind, credential)| {
            let wanted = if is_federated(kind) {
                wanted
            } else {
                normalized
            };
            credential
                .identifiers
                .iter()
                .any(|identifier| identifier == wanted)
        })
    }

    /// The experimental `preview_credentials_identifier_similar`: a prefix match.
    pub(crate) fn has_identifier_like(&self, prefix: &str) -> bool {
        let normalized = normalize_identifier(prefix);
        self.credentials.iter().any(|(kind, credential)| {
            let prefix = if is_federated(kind) {
                prefix
            } else {
                normalized.as_str()
            };
            credential
                .identifiers
                .iter()
                .any(|identifier| identifier.starts_with(prefix))
        })
    }

    /// Recomputes what the identity schema derives from the traits, as Kratos's schema
    /// extensions do on every write: the e-mail's verifiable and recovery addresses (an address
    /// whose value did not change keeps its id and verification) and the password identifier.
    pub(crate) fn derive_from_traits(
        &mut self,
        known_verifiable: &[VerifiableAddress],
        now: SystemTime,
    ) {
        let email = self.email();
        self.verifiable_addresses = email
            .iter()
            .map(|value| {
                known_verifiable
                    .iter()
                    .find(|a| a.via == "email" && &a.value == value)
                    .cloned()
                    .unwrap_or_else(|| VerifiableAddress {
                        id: Uuid::new_v4(),
                        value: value.clone(),
                        via: "email".to_owned(),
                        verified: false,
                        status: "pending".to_owned(),
                        verified_at: None,
                        created_at: now,
                        updated_at: now,
                    })
            })
            .collect();
        let known_recovery = std::mem::take(&mut self.recovery_addresses);
        self.recovery_addresses = email
            .iter()
            .map(|value| {
                known_recovery
                    .iter()
                    .find(|a| a.via == "email" && &a.value == value)
                    .cloned()
                    .unwrap_or_else(|| RecoveryAddress {
                        id: Uuid::new_v4(),
                        value: value.clone(),
                        via: "email".to_owned(),
                        created_at: now,
                        updated_at: now,
                    })
            })
            .collect();
        if let Some(password) = self.credentials.get_mut("password") {
            let identifiers: Vec<String> = email.into_iter().collect();
            if password.identifiers != identifiers {
                password.identifiers = identifiers;
                password.updated_at = now;
            }
        }
    }

    /// Adds `oidc`/`saml` providers to the credential of that type, keeping the existing ones
    /// (PUT semantics, and the only semantics on create); duplicates are ignored.
    pub(crate) fn add_federated(
        &mut self,
        kind: &str,
        providers: &[FederatedLink],
        now: SystemTime,
    ) {
        if providers.is_empty() {
            return;
        }
        let credential = self
            .credentials
            .entry(kind.to_owned())
            .or_insert_with(|| Credential {
                identifiers: Vec::new(),
                config: json!({ "providers": [] }),
                created_at: now,
                updated_at: now,
            });
        for link in providers {
            let identifier = format!("{}:{}", link.provider, link.subject);
            if credential.identifiers.contains(&identifier) {
                continue;
            }
            credential.identifiers.push(identifier);
            if let Some(Value::Array(configured)) = credential.config.get_mut("providers") {
                configured.push(link.config(kind));
            }
            credential.updated_at = now;
        }
    }

    /// Sets (replaces) the password credential; its identifier comes from the traits.
    pub(crate) fn set_password(&mut self, hashed_password: Option<&str>, now: SystemTime) {
        // Kratos hashes a plaintext password before storing it; the stand-in never keeps one.
        let hash = hashed_password.unwrap_or("$stand-in$plaintext-password-not-stored");
        let created_at = self
            .credentials
            .get("password")
            .map_or(now, |c| c.created_at);
        self.credentials.insert(
            "password".to_owned(),
            Credential {
                identifiers: self.email().into_iter().collect(),
                config: json!({ "hashed_password": hash }),
                created_at,
                updated_at: now,
            },
        );
    }
}

/// One `{provider, subject}` of an `oidc` or `saml` credential import.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FederatedLink {
    pub provider: String,
    pub subject: String,
    pub organization: Option<Uuid>,
    pub use_auto_link: bool,
}

impl FederatedLink {
    /// The provider entry as Kratos stores it (`CredentialsOIDCProvider`); the initial tokens are
    /// empty for imported credentials.
    fn config(&self, kind: &str) -> Value {
        let mut entry = Map::new();
        entry.insert("subject".to_owned(), json!(self.subject));
        entry.insert("provider".to_owned(), json!(self.provider));
        if kind == "oidc" {
            for token in [
                "initial_id_token",
                "initial_access_token",
                "initial_refresh_token",
            ] {
                entry.insert(token.to_owned(), json!(""));
            }
            if self.use_auto_link {
                entry.insert("use_auto_link".to_owned(), json!(true));
            }
        }
        if let Some(organization) = self.organization {
            entry.insert("organization".to_owned(), json!(organization.to_string()));
        }
        Value::Object(entry)
    }
}

impl VerifiableAddress {
    fn render(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".to_owned(), json!(self.id.to_string()));
        out.insert("value".to_owned(), json!(self.value));
        out.insert("verified".to_owned(), json!(self.verified));
        out.insert("via".to_owned(), json!(self.via));
        out.insert("status".to_owned(), json!(self.status));
        // The spec's `nullTime` is not nullable, so an unverified address leaves it out.
        if let Some(verified_at) = self.verified_at {
            out.insert("verified_at".to_owned(), json!(timestamp(verified_at)));
        }
        out.insert("created_at".to_owned(), json!(timestamp(self.created_at)));
        out.insert("updated_at".to_owned(), json!(timestamp(self.updated_at)));
        Value::Object(out)
    }
}

impl RecoveryAddress {
    fn render(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "value": self.value,
            "via": self.via,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-24T05:35:18.123456Z`.
pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// `<base>/schemas/<base64url(schema id)>`, as Kratos builds `schema_url`.
pub(crate) fn schema_url(base_url: &str, schema_id: &str) -> String {
    format!("{base_url}/schemas/{}", base64_url(schema_id.as_bytes()))
}

pub(crate) fn email_of(traits: &Value) -> Option<String> {
    traits
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
}

fn is_federated(kind: &str) -> bool {
    kind == "oidc" || kind == "saml"
}

pub(crate) fn normalize_identifier(value: &str) -> String {
    value.trim().to_lowercase()
}

/// Unpadded base64url (RFC 4648 §5), as Go's `base64.RawURLEncoding`.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_url_encodes_the_schema_id_like_kratos() {
        assert_eq!(
            schema_url("http://k", "default"),
            "http://k/schemas/ZGVmYXVsdA"
        );
        assert_eq!(base64_url(b"ab"), "YWI");
        assert_eq!(base64_url(b"abc"), "YWJj");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(timestamp(at), "1970-01-01T00:00:01.500000Z");
    }
}
