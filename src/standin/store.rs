//! The stand-in's in-memory Kratos: identities, sessions, and the rules every write obeys.
//!
//! Every operation here runs under the caller's lock on the whole store, so a write is
//! all-or-nothing and two writes never interleave: of 50 concurrent creates with the same OIDC
//! subject exactly one succeeds. A write builds the complete new identity first, checks it
//! against every unique constraint (credential identifiers, verifiable and recovery addresses,
//! `external_id`), and only then replaces the stored one.

use super::error::ApiError;
use super::identity::{
    CREDENTIAL_TYPES, CredentialView, FederatedLink, Identity, RecoveryAddress, State, UniqueKey,
    VerifiableAddress, normalize_identifier, timestamp,
};
use super::patch;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Kratos's default identity schema id; a create without `schema_id` uses it (docs/kratos.md §7).
pub(crate) const DEFAULT_SCHEMA_ID: &str = "default";

/// Kratos's default `session.lifespan`.
const SESSION_LIFESPAN: Duration = Duration::from_secs(24 * 60 * 60);

/// `createIdentityBody`, decoded strictly like `jsonx.NewStrictDecoder`: an unknown field
/// anywhere is a 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateIdentityBody {
    schema_id: Option<String>,
    traits: Option<Value>,
    credentials: Option<ImportCredentials>,
    verifiable_addresses: Option<Vec<ImportVerifiableAddress>>,
    recovery_addresses: Option<Vec<ImportRecoveryAddress>>,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    state: Option<String>,
    organization_id: Option<Uuid>,
    external_id: Option<String>,
}

/// `updateIdentityBody`. Kratos decodes it with `decoderx` (not strict), so unknown top-level
/// fields are ignored; the nested credential import is the same strict type as on create.
#[derive(Debug, Deserialize)]
pub(crate) struct UpdateIdentityBody {
    schema_id: Option<String>,
    traits: Option<Value>,
    credentials: Option<ImportCredentials>,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    state: Option<String>,
    external_id: Option<String>,
}

/// `identityWithCredentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportCredentials {
    password: Option<ImportPassword>,
    oidc: Option<ImportOidc>,
    saml: Option<ImportSaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportPassword {
    config: Option<ImportPasswordConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportPasswordConfig {
    hashed_password: Option<String>,
    #[allow(dead_code)] // accepted like Kratos does; never stored
    password: Option<String>,
    #[allow(dead_code)]
    use_password_migration_hook: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportOidc {
    config: Option<ImportOidcConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportOidcConfig {
    providers: Option<Vec<ImportOidcProvider>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportOidcProvider {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    provider: String,
    use_auto_link: Option<bool>,
    organization: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportSaml {
    config: Option<ImportSamlConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportSamlConfig {
    providers: Option<Vec<ImportSamlProvider>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportSamlProvider {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    provider: String,
    organization: Option<Uuid>,
}

/// `verifiableIdentityAddress` as imported on create. Ids and timestamps are accepted and
/// ignored: the stand-in assigns its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ImportVerifiableAddress {
    id: Option<Value>,
    #[serde(default)]
    value: String,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    via: String,
    #[serde(default)]
    status: String,
    verified_at: Option<String>,
    created_at: Option<Value>,
    updated_at: Option<Value>,
    identity_id: Option<Value>,
}

/// `recoveryIdentityAddress` as imported on create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ImportRecoveryAddress {
    id: Option<Value>,
    #[serde(default)]
    value: String,
    #[serde(default)]
    via: String,
    created_at: Option<Value>,
    updated_at: Option<Value>,
    identity_id: Option<Value>,
}

/// The identity document after a JSON Patch, read back leniently like Go's `json.Unmarshal`
/// into `Identity` (unknown members are dropped).
#[derive(Debug, Deserialize)]
struct PatchedIdentity {
    schema_id: Option<String>,
    state: Option<String>,
    traits: Option<Value>,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    external_id: Option<String>,
    organization_id: Option<Uuid>,
    verifiable_addresses: Option<Vec<PatchedAddress>>,
}

#[derive(Debug, Deserialize)]
struct PatchedAddress {
    #[serde(default)]
    value: String,
    #[serde(default)]
    via: String,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    status: String,
    verified_at: Option<String>,
}

/// Which identities `GET /admin/identities` returns (at most one filter, Kratos refuses more).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListFilter {
    All,
    Ids(Vec<Uuid>),
    CredentialsIdentifier(String),
    CredentialsIdentifierSimilar(String),
    Organization(Uuid),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub active: bool,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub method: String,
    pub provider: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Ordered by id, which is Kratos's keyset pagination order.
    identities: BTreeMap<Uuid, Identity>,
    /// Which identities hold a unique value (credential identifier, verifiable or recovery
    /// address, external id) with this hash: Kratos's unique indexes, so that a write or a
    /// credential lookup does not scan every identity. Candidates are confirmed on the identity.
    index: HashMap<u64, Vec<Uuid>>,
    sessions: Vec<Session>,
    next_seq: u64,
}

/// The index entry of a unique value.
fn key_hash(key: &UniqueKey<'_>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The index entry of a credential identifier of any type (what a `credentials_identifier`
/// lookup searches).
fn identifier_hash(identifier: &str) -> u64 {
    key_hash(&UniqueKey::Credential {
        kind: "",
        identifier,
    })
}

/// Every index entry of `identity`: its unique values, and its credential identifiers again
/// without their type.
fn index_hashes(identity: &Identity) -> impl Iterator<Item = u64> + '_ {
    identity.unique_keys().flat_map(|key| {
        let typeless = match key {
            UniqueKey::Credential { identifier, .. } => Some(identifier_hash(identifier)),
            _ => None,
        };
        std::iter::once(key_hash(&key)).chain(typeless)
    })
}

impl CreateIdentityBody {
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| decode_error(&e))
    }

    pub(crate) fn from_value(value: Value) -> Result<Self, ApiError> {
        serde_json::from_value(value).map_err(|e| decode_error(&e))
    }
}

impl UpdateIdentityBody {
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| decode_error(&e))
    }
}

impl Store {
    pub(crate) fn get(&self, id: Uuid) -> Option<&Identity> {
        self.identities.get(&id)
    }

    pub(crate) fn get_by_external_id(&self, external_id: &str) -> Option<&Identity> {
        self.identities
            .values()
            .find(|i| i.external_id.as_deref() == Some(external_id))
    }

    /// All identities in the order they were created.
    pub(crate) fn in_creation_order(&self) -> Vec<&Identity> {
        let mut all: Vec<&Identity> = self.identities.values().collect();
        all.sort_by_key(|i| i.seq);
        all
    }

    /// `POST /admin/identities`.
    pub(crate) fn create(
        &mut self,
        body: CreateIdentityBody,
        now: SystemTime,
    ) -> Result<&Identity, ApiError> {
        let state = match body.state.as_deref() {
            None | Some("") => State::Active,
            Some(other) => State::parse(other).ok_or_else(invalid_state)?,
        };
        let traits = object_traits(body.traits)?;
        self.next_seq += 1;
        let mut identity = Identity {
            id: Uuid::new_v4(),
            seq: self.next_seq,
            schema_id: non_empty(body.schema_id).unwrap_or_else(|| DEFAULT_SCHEMA_ID.to_owned()),
            state,
            state_changed_at: now,
            traits,
            verifiable_addresses: Vec::new(),
            // Imported recovery addresses only survive if the traits name them (schema extension).
            recovery_addresses: imported_recovery(body.recovery_addresses, now),
            metadata_public: non_null(body.metadata_public),
            metadata_admin: non_null(body.metadata_admin),
            external_id: non_empty(body.external_id),
            organization_id: body.organization_id,
            credentials: BTreeMap::new(),
            created_at: now,
            updated_at: now,
        };
        if let Some(credentials) = body.credentials {
            import_credentials(&mut identity, credentials, now)?;
        }
        let imported = imported_verifiable(body.verifiable_addresses, now)?;
        identity.derive_from_traits(&imported, now);
        if self.conflicts(&identity) {
            return Err(ApiError::create_conflict());
        }
        let id = identity.id;
        self.index_add(&identity);
        Ok(self.identities.entry(id).or_insert(identity))
    }

    /// `PUT /admin/identities/{id}` (`identity/handler.go update`): traits, both metadata and
    /// `external_id` are replaced by what is sent (absent = cleared), `state` only when sent,
    /// credentials are added.
    pub(crate) fn update(
        &mut self,
        id: Uuid,
        body: UpdateIdentityBody,
        now: SystemTime,
    ) -> Result<&Identity, ApiError> {
        let current = self.identities.get(&id).ok_or_else(ApiError::no_rows)?;
        let mut next = current.clone();
        if let Some(schema_id) = non_empty(body.schema_id) {
            next.schema_id = schema_id;
        }
        if let Some(state) = non_empty(body.state)
            && state != next.state.as_str()
        {
            next.state = State::parse(&state).ok_or_else(invalid_state)?;
            next.state_changed_at = now;
        }
        next.traits = object_traits(body.traits)?;
        next.metadata_public = non_null(body.metadata_public);
        next.metadata_admin = non_null(body.metadata_admin);
        next.external_id = non_empty(body.external_id);
        if let Some(credentials) = body.credentials {
            import_credentials(&mut next, credentials, now)?;
        }
        let known = next.verifiable_addresses.clone();
        next.derive_from_traits(&known, now);
        next.updated_at = now;
        self.replace(next)
    }

    /// `PATCH /admin/identities/{id}`: looks the identity up first (404), then applies the JSON
    /// Patch to its full JSON document, all or nothing.
    pub(crate) fn patch(
        &mut self,
        id: Uuid,
        body: &[u8],
        base_url: &str,
        now: SystemTime,
    ) -> Result<&Identity, ApiError> {
        let current = self.identities.get(&id).ok_or_else(ApiError::no_rows)?;
        let document: Value =
            serde_json::from_slice(body).map_err(|e| patch_error(format!("{e}")))?;
        let operations = patch::parse(&document, is_denied_patch_path).map_err(patch_error)?;
        // Kratos patches `WithCredentialsAndAdminMetadataInJSON(identity)`.
        let original = current.render(
            base_url,
            CredentialView::Declassified(&all_credential_types()),
            true,
        );
        let patched = patch::apply(&original, &operations).map_err(patch_error)?;
        let patched: PatchedIdentity =
            serde_json::from_value(patched).map_err(|e| patch_error(format!("json: {e}")))?;
        let next = patched_identity(current, patched, now)?;
        self.replace(next)
    }

    /// `DELETE /admin/identities/{id}`; the identity's sessions go with it.
    pub(crate) fn delete(&mut self, id: Uuid) -> Result<(), ApiError> {
        let removed = self.identities.remove(&id).ok_or_else(ApiError::no_rows)?;
        self.index_remove(&removed);
        self.sessions.retain(|s| s.identity_id != id);
        Ok(())
    }

    /// One keyset page: identities with an id after `after`, in id order, and the token of the
    /// next page when there is one.
    pub(crate) fn list(
        &self,
        filter: &ListFilter,
        after: Option<Uuid>,
        size: usize,
    ) -> (Vec<&Identity>, Option<Uuid>) {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let normalized = match filter {
            ListFilter::CredentialsIdentifier(wanted) => normalize_identifier(wanted),
            _ => String::new(),
        };
        let candidates: Box<dyn Iterator<Item = &Identity>> = match filter {
            ListFilter::CredentialsIdentifier(wanted) => Box::new(
                self.identifier_candidates(wanted, &normalized)
                    .into_iter()
                    .filter(move |identity| after.is_none_or(|after| identity.id > after)),
            ),
            _ => Box::new(
                self.identities
                    .range((lower, Bound::Unbounded))
                    .map(|(_, identity)| identity),
            ),
        };
        let mut page: Vec<&Identity> = candidates
            .filter(|identity| matches_filter(identity, filter, &normalized))
            .take(size.saturating_add(1))
            .collect();
        if page.len() > size {
            page.truncate(size);
            let next = page.last().map(|i| i.id);
            (page, next)
        } else {
            (page, None)
        }
    }

    pub(crate) fn add_session(
        &mut self,
        identity_id: Uuid,
        now: SystemTime,
    ) -> Result<Uuid, ApiError> {
        let identity = self
            .identities
            .get(&identity_id)
            .ok_or_else(ApiError::no_rows)?;
        let (method, provider) = ["oidc", "saml"]
            .iter()
            .find_map(|kind| {
                let identifier = identity.credentials.get(*kind)?.identifiers.first()?;
                let provider = identifier.split_once(':').map(|(p, _)| p.to_owned());
                Some(((*kind).to_owned(), provider))
            })
            .unwrap_or_else(|| ("password".to_owned(), None));
        let session = Session {
            id: Uuid::new_v4(),
            identity_id,
            active: true,
            issued_at: now,
            expires_at: now + SESSION_LIFESPAN,
            method,
            provider,
        };
        let id = session.id;
        self.sessions.push(session);
        Ok(id)
    }

    /// `GET /admin/identities/{id}/sessions`: an unknown identity simply has none (docs/kratos.md §7).
    pub(crate) fn sessions_of(
        &self,
        identity_id: Uuid,
        active: Option<bool>,
        base_url: &str,
    ) -> Vec<Value> {
        let Some(identity) = self.identities.get(&identity_id) else {
            return Vec::new();
        };
        self.sessions
            .iter()
            .filter(|s| s.identity_id == identity_id && active.is_none_or(|a| s.active == a))
            .map(|s| render_session(s, identity, base_url))
            .collect()
    }

    /// `DELETE /admin/identities/{id}/sessions`: 404 when there was nothing to delete (§7).
    pub(crate) fn delete_sessions_of(&mut self, identity_id: Uuid) -> Result<(), ApiError> {
        let before = self.sessions.len();
        self.sessions.retain(|s| s.identity_id != identity_id);
        if self.sessions.len() == before {
            return Err(ApiError::no_rows());
        }
        Ok(())
    }

    fn replace(&mut self, next: Identity) -> Result<&Identity, ApiError> {
        if self.conflicts(&next) {
            return Err(ApiError::update_conflict());
        }
        if let Some(previous) = self.identities.remove(&next.id) {
            self.index_remove(&previous);
        }
        self.index_add(&next);
        // Taken out above, so the slot is free.
        Ok(self.identities.entry(next.id).or_insert(next))
    }

    /// Whether `candidate` takes a unique value another identity already holds.
    fn conflicts(&self, candidate: &Identity) -> bool {
        candidate.unique_keys().any(|key| {
            self.index
                .get(&key_hash(&key))
                .into_iter()
                .flatten()
                .filter(|id| **id != candidate.id)
                .filter_map(|id| self.identities.get(id))
                .any(|other| other.unique_keys().any(|held| held == key))
        })
    }

    fn index_add(&mut self, identity: &Identity) {
        for hash in index_hashes(identity) {
            let holders = self.index.entry(hash).or_default();
            if !holders.contains(&identity.id) {
                holders.push(identity.id);
            }
        }
    }

    fn index_remove(&mut self, identity: &Identity) {
        for hash in index_hashes(identity) {
            if let Entry::Occupied(mut holders) = self.index.entry(hash) {
                holders.get_mut().retain(|id| *id != identity.id);
                if holders.get().is_empty() {
                    holders.remove();
                }
            }
        }
    }

    /// The identities a `credentials_identifier` lookup can match: those holding an identifier
    /// equal to the value as sent (`oidc`, `saml`) or normalized (the other types).
    fn identifier_candidates(&self, wanted: &str, normalized: &str) -> Vec<&Identity> {
        let mut ids: Vec<Uuid> = [identifier_hash(wanted), identifier_hash(normalized)]
            .iter()
            .filter_map(|hash| self.index.get(hash))
            .flatten()
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.identities.get(id))
            .collect()
    }
}

/// The PATCH deny-list: `/id`, `/stateChangedAt` and everything under `/credentials`
/// (Kratos's code lists `/credentials`, `/credentials/oidc/**`, …; docs/kratos.md §3.5 and §7 say to
/// treat all of `/credentials` as off-limits).
fn is_denied_patch_path(path: &str) -> bool {
    path == "/id"
        || path == "/stateChangedAt"
        || path == "/credentials"
        || path.starts_with("/credentials/")
}

fn patched_identity(
    current: &Identity,
    patched: PatchedIdentity,
    now: SystemTime,
) -> Result<Identity, ApiError> {
    let mut next = current.clone();
    if let Some(schema_id) = non_empty(patched.schema_id) {
        next.schema_id = schema_id;
    }
    let state = patched.state.unwrap_or_default();
    if state != current.state.as_str() {
        // `identity/handler.go patch`: only a changed state is validated, with this wording.
        next.state = State::parse(&state).ok_or_else(|| ApiError {
            code: 400,
            reason: Some(format!(
                "The supplied state ('{state}') was not valid. Valid states are ('active', 'inactive')."
            )),
            message: "identity state is not valid".to_owned(),
        })?;
        next.state_changed_at = now;
    }
    next.traits = object_traits(patched.traits)?;
    next.metadata_public = non_null(patched.metadata_public);
    next.metadata_admin = non_null(patched.metadata_admin);
    next.external_id = non_empty(patched.external_id);
    next.organization_id = patched.organization_id;
    // A patched address keeps its verification when its value is (still) in the traits, as the
    // verification schema extension merges existing addresses by value.
    let mut known = current.verifiable_addresses.clone();
    for address in patched.verifiable_addresses.unwrap_or_default() {
        let value = address.value.to_lowercase();
        let verified_at = match (address.verified, address.verified_at.as_deref()) {
            (false, _) => None,
            (true, Some(at)) => Some(parse_time(at).map_err(patch_error)?),
            (true, None) => Some(now),
        };
        let status = if address.verified {
            "completed".to_owned()
        } else if address.status.is_empty() {
            "pending".to_owned()
        } else {
            address.status
        };
        match known
            .iter_mut()
            .find(|a| a.via == address.via && a.value == value)
        {
            Some(existing) => {
                if existing.verified != address.verified || existing.status != status {
                    existing.verified = address.verified;
                    existing.status = status;
                    existing.verified_at = verified_at;
                    existing.updated_at = now;
                }
            }
            None => known.push(VerifiableAddress {
                id: Uuid::new_v4(),
                value,
                via: address.via,
                verified: address.verified,
                status,
                verified_at,
                created_at: now,
                updated_at: now,
            }),
        }
    }
    next.derive_from_traits(&known, now);
    next.updated_at = now;
    Ok(next)
}

fn import_credentials(
    identity: &mut Identity,
    credentials: ImportCredentials,
    now: SystemTime,
) -> Result<(), ApiError> {
    if let Some(oidc) = credentials.oidc {
        let links = oidc
            .config
            .and_then(|c| c.providers)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                federated_link(
                    "oidc",
                    p.provider,
                    p.subject,
                    p.organization,
                    p.use_auto_link.unwrap_or(false),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        identity.add_federated("oidc", &links, now);
    }
    if let Some(saml) = credentials.saml {
        let links = saml
            .config
            .and_then(|c| c.providers)
            .unwrap_or_default()
            .into_iter()
            .map(|p| federated_link("saml", p.provider, p.subject, p.organization, false))
            .collect::<Result<Vec<_>, _>>()?;
        identity.add_federated("saml", &links, now);
    }
    if let Some(password) = credentials.password {
        let hashed = password.config.and_then(|c| non_empty(c.hashed_password));
        identity.set_password(hashed.as_deref(), now);
    }
    Ok(())
}

fn federated_link(
    kind: &str,
    provider: String,
    subject: String,
    organization: Option<Uuid>,
    use_auto_link: bool,
) -> Result<FederatedLink, ApiError> {
    // The spec marks both required; Go would store ":" for empty ones, the stand-in refuses.
    if provider.is_empty() || subject.is_empty() {
        return Err(ApiError::bad_request_reason(format!(
            "credentials.{kind}.config.providers[] needs a non-empty provider and subject."
        )));
    }
    Ok(FederatedLink {
        provider,
        subject,
        organization,
        use_auto_link,
    })
}

/// Imported verifiable addresses, lowercased like `identityFromCreateIdentityBody` does. A
/// verified one is `completed` with a `verified_at` (the given one, else now).
fn imported_verifiable(
    addresses: Option<Vec<ImportVerifiableAddress>>,
    now: SystemTime,
) -> Result<Vec<VerifiableAddress>, ApiError> {
    addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let verified_at = match (a.verified, a.verified_at.as_deref()) {
                (false, _) => None,
                (true, Some(at)) => Some(parse_time(at).map_err(ApiError::bad_request_message)?),
                (true, None) => Some(now),
            };
            let status = match (a.verified, a.status.is_empty()) {
                (true, _) => "completed".to_owned(),
                (false, true) => "pending".to_owned(),
                (false, false) => a.status,
            };
            Ok(VerifiableAddress {
                id: Uuid::new_v4(),
                value: a.value.to_lowercase(),
                via: if a.via.is_empty() {
                    "email".to_owned()
                } else {
                    a.via
                },
                verified: a.verified,
                status,
                verified_at,
                created_at: now,
                updated_at: now,
            })
        })
        .collect()
}

fn imported_recovery(
    addresses: Option<Vec<ImportRecoveryAddress>>,
    now: SystemTime,
) -> Vec<RecoveryAddress> {
    addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| RecoveryAddress {
            id: Uuid::new_v4(),
            value: a.value.to_lowercase(),
            via: if a.via.is_empty() {
                "email".to_owned()
            } else {
                a.via
            },
            created_at: now,
            updated_at: now,
        })
        .collect()
}

/// `normalized`: the normalized form of a `CredentialsIdentifier` filter's value.
fn matches_filter(identity: &Identity, filter: &ListFilter, normalized: &str) -> bool {
    match filter {
        ListFilter::All => true,
        ListFilter::Ids(ids) => ids.contains(&identity.id),
        ListFilter::CredentialsIdentifier(wanted) => {
            identity.has_identifier_normalized(wanted, normalized)
        }
        ListFilter::CredentialsIdentifierSimilar(prefix) => identity.has_identifier_like(prefix),
        ListFilter::Organization(organization) => identity.organization_id == Some(*organization),
    }
}

fn render_session(session: &Session, identity: &Identity, base_url: &str) -> Value {
    let mut method = json!({
        "method": session.method,
        "aal": "aal1",
        "completed_at": timestamp(session.issued_at),
    });
    if let (Some(provider), Value::Object(fields)) = (&session.provider, &mut method) {
        fields.insert("provider".to_owned(), json!(provider));
    }
    json!({
        "id": session.id.to_string(),
        "active": session.active,
        "expires_at": timestamp(session.expires_at),
        "authenticated_at": timestamp(session.issued_at),
        "authenticator_assurance_level": "aal1",
        "authentication_methods": [method],
        "issued_at": timestamp(session.issued_at),
        // A session embeds the identity with Kratos's default marshaller: no credentials, no
        // metadata_admin.
        "identity": identity.render(base_url, CredentialView::Hidden, false),
        "devices": [],
    })
}

fn all_credential_types() -> Vec<String> {
    CREDENTIAL_TYPES.iter().map(|t| (*t).to_owned()).collect()
}

/// `herodot.ErrBadRequest.WithReasonf("%s", State.IsValid())` on create and PUT.
fn invalid_state() -> ApiError {
    ApiError::bad_request_reason("identity state is not valid")
}

/// The traits must be a JSON object (the identity schema's root type).
fn object_traits(traits: Option<Value>) -> Result<Value, ApiError> {
    match traits {
        Some(traits @ Value::Object(_)) => Ok(traits),
        _ => Err(ApiError::bad_request_reason(
            "The identity's traits must be a JSON object as the identity schema requires.",
        )),
    }
}

fn patch_error(message: String) -> ApiError {
    // Kratos's wording, typo included (`identity/handler.go patch`).
    ApiError::bad_request_message(message)
        .with_reason("An error occured when applying the JSON patch")
}

/// Go's `encoding/json` messages start with `json: `; serde's unknown-field message is reworded
/// to Go's `json: unknown field "x"`.
fn decode_error(error: &serde_json::Error) -> ApiError {
    let text = error.to_string();
    let message = match text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((field, _)) => format!("json: unknown field {field:?}"),
        None => format!("json: {text}"),
    };
    ApiError::bad_request_message(message)
}

fn parse_time(value: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(value).map_err(|e| format!("parsing time {value:?}: {e}"))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn non_null(value: Option<Value>) -> Option<Value> {
    value.filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests;
