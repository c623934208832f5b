//! The Kratos admin API's JSON, both ways.
//!
//! Requests are built from the generated `ory-kratos-client` models, so they serialize exactly as
//! Kratos's strict decoder expects (`createIdentityBody` rejects unknown fields). Responses are
//! read into lenient wire structs instead of the generated `Identity`, whose closed enums fail a
//! whole read on one unknown credential type or address channel (docs/crates.md §3.3). Errors are
//! classified by HTTP status; the herodot envelope (`{"error":{"message","reason",…}}`) only
//! supplies the words.

use super::super::{
    Identity, KratosError, NewIdentity, OidcCredential, PatchOp, VerifiableAddress,
};
use ory_kratos_client::models::{
    CreateIdentityBody, IdentityWithCredentials, IdentityWithCredentialsOidc,
    IdentityWithCredentialsOidcConfig, IdentityWithCredentialsOidcConfigProvider, JsonPatch,
    UpdateIdentityBody, VerifiableIdentityAddress, create_identity_body, update_identity_body,
    verifiable_identity_address,
};
use reqwest::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// An identity as Kratos sends it, keeping only what [`Identity`] needs. Every field but `id`
/// tolerates `null` or absence; enum-like fields are plain strings.
#[derive(Deserialize)]
struct WireIdentity {
    id: crate::domain::IdentityId,
    #[serde(default, deserialize_with = "null_as_default")]
    schema_id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    traits: Value,
    #[serde(default)]
    metadata_public: Option<Value>,
    #[serde(default)]
    metadata_admin: Option<Value>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    verifiable_addresses: Vec<WireAddress>,
    /// Credential type → credential; the map key is the type, so a type added in a later Kratos
    /// release is just another key.
    #[serde(default, deserialize_with = "null_as_default")]
    credentials: BTreeMap<String, WireCredential>,
}

#[derive(Deserialize)]
struct WireAddress {
    #[serde(default, deserialize_with = "null_as_default")]
    value: String,
    #[serde(default, deserialize_with = "null_as_default")]
    via: String,
    #[serde(default, deserialize_with = "null_as_default")]
    verified: bool,
}

#[derive(Deserialize)]
struct WireCredential {
    #[serde(default, deserialize_with = "null_as_default")]
    identifiers: Vec<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl From<WireIdentity> for Identity {
    fn from(wire: WireIdentity) -> Self {
        Identity {
            id: wire.id,
            schema_id: wire.schema_id,
            state: wire.state.unwrap_or_else(|| "active".to_owned()),
            traits: wire.traits,
            metadata_public: wire.metadata_public,
            metadata_admin: wire.metadata_admin,
            external_id: wire.external_id,
            verifiable_addresses: wire
                .verifiable_addresses
                .into_iter()
                .map(|address| VerifiableAddress {
                    value: address.value,
                    via: address.via,
                    verified: address.verified,
                })
                .collect(),
            credential_identifiers: wire
                .credentials
                .into_iter()
                .map(|(kind, credential)| (kind, credential.identifiers))
                .collect(),
        }
    }
}

/// Reads one identity (get, create, update, patch answers).
pub(super) fn identity(body: &[u8]) -> Result<Identity, String> {
    serde_json::from_slice::<WireIdentity>(body)
        .map(Identity::from)
        .map_err(|error| describe_json_error("a Kratos identity", &error))
}

/// Reads a list answer (`GET /admin/identities`).
pub(super) fn identities(body: &[u8]) -> Result<Vec<Identity>, String> {
    serde_json::from_slice::<Vec<WireIdentity>>(body)
        .map(|list| list.into_iter().map(Identity::from).collect())
        .map_err(|error| describe_json_error("a JSON array of Kratos identities", &error))
}

/// serde_json's messages can quote the offending value (a trait, an e-mail address); only the
/// kind and position of the error leave this module.
fn describe_json_error(expected: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.starts_with("missing field") {
        // "missing field `id` at line 1 column 31": names a field, never a value.
        return format!("the body is not {expected}: {text}");
    }
    format!(
        "the body is not {expected} ({:?} error at line {}, column {})",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// The herodot error envelope (`errorGeneric` in the OpenAPI document), read leniently.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: GenericError,
}

#[derive(Deserialize)]
struct GenericError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The words of an error answer: `message: reason`, either alone, or a note that the body was
/// not a Kratos envelope (a proxy's HTML page, say; its text is never copied).
fn envelope_text(body: &[u8]) -> String {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let (message, reason) = envelope
        .map(|envelope| (envelope.error.message, envelope.error.reason))
        .unwrap_or_default();
    let message = message.filter(|text| !text.trim().is_empty());
    let reason = reason.filter(|text| !text.trim().is_empty());
    match (message, reason) {
        (Some(message), Some(reason)) => format!("{message}: {reason}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => "the answer carries no Kratos error envelope".to_owned(),
    }
}

/// The error for a non-success answer, decided by its status alone.
pub(super) fn classify(status: StatusCode, body: &[u8], operation: &str) -> KratosError {
    let text = envelope_text(body);
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        KratosError::Unavailable {
            detail: format!("{operation} answered HTTP {status}: {text}"),
        }
    } else if status == StatusCode::CONFLICT {
        KratosError::Conflict { reason: text }
    } else if status == StatusCode::NOT_FOUND {
        KratosError::NotFound {
            detail: format!("{operation}: {text}"),
        }
    } else if status.is_client_error() {
        KratosError::Rejected {
            status: code,
            message: text,
        }
    } else if status.is_redirection() {
        KratosError::Protocol {
            detail: format!(
                "{operation} answered a redirect (HTTP {status}); the Kratos admin API never \
                 redirects, so set admin_url to the address it answers on"
            ),
        }
    } else {
        KratosError::Protocol {
            detail: format!(
                "{operation} answered HTTP {status}, which is not an answer Kratos gives"
            ),
        }
    }
}

/// `POST /admin/identities`: the identity, `state: active`, the OIDC credential that makes the
/// user's own login find it, and the addresses to import as verified.
pub(super) fn create_body(new: &NewIdentity) -> Result<Vec<u8>, KratosError> {
    let verified = new
        .verified_addresses
        .iter()
        // An address the caller did not mark verified is not imported as verified: marking an
        // unproven address verified would let it be used for recovery and account linking.
        .filter(|address| address.verified)
        .map(|address| {
            Ok(VerifiableIdentityAddress::new(
                "completed".to_owned(),
                address.value.clone(),
                true,
                address_channel(&address.via)?,
            ))
        })
        .collect::<Result<Vec<_>, KratosError>>()?;
    let mut body = CreateIdentityBody::new(new.schema_id.clone(), new.traits.clone());
    body.state = Some(create_identity_body::StateEnum::Active);
    body.metadata_public = new.metadata_public.clone().map(Some);
    body.metadata_admin = new.metadata_admin.clone().map(Some);
    body.verifiable_addresses = (!verified.is_empty()).then_some(verified);
    body.credentials = Some(oidc_credentials(&new.oidc));
    encode(&body)
}

/// `PUT /admin/identities/{id}` adding an OIDC credential. PUT overwrites `traits`,
/// `metadata_public`, `metadata_admin` and `external_id` with what is sent, clearing what is
/// omitted (docs/kratos.md §3.4), so all of them are sent back as read; OIDC credentials in the body
/// are added to the existing ones.
pub(super) fn link_oidc_body(
    current: &Identity,
    credential: &OidcCredential,
) -> Result<Vec<u8>, KratosError> {
    let known_state = match current.state.as_str() {
        "active" => Some(update_identity_body::StateEnum::Active),
        "inactive" => Some(update_identity_body::StateEnum::Inactive),
        _ => None,
    };
    let mut body = UpdateIdentityBody::new(
        current.schema_id.clone(),
        known_state.unwrap_or_default(),
        current.traits.clone(),
    );
    // `Some(None)` sends an explicit null, the value that was read; `None` would omit the field,
    // which PUT also turns into null, but explicit is what Kratos documents.
    body.metadata_public = Some(current.metadata_public.clone());
    body.metadata_admin = Some(current.metadata_admin.clone());
    body.external_id = current.external_id.clone();
    body.credentials = Some(oidc_credentials(credential));
    let mut json = serde_json::to_value(&body).map_err(encode_error)?;
    if known_state.is_none() {
        // A state this client does not know cannot be written back through the generated enum;
        // Kratos v26.2 keeps the current state when PUT omits it (docs/kratos.md §7).
        if let Some(object) = json.as_object_mut() {
            object.remove("state");
        }
    }
    encode(&json)
}

/// `PATCH /admin/identities/{id}`: RFC 6902 operations, restricted to those Kratos accepts.
pub(super) fn patch_body(ops: &[PatchOp]) -> Result<Vec<u8>, KratosError> {
    let patch: Vec<JsonPatch> = ops
        .iter()
        .map(|op| match op {
            PatchOp::Add { path, value } => with_value("add", path, value),
            PatchOp::Replace { path, value } => with_value("replace", path, value),
            PatchOp::Remove { path } => JsonPatch::new("remove".to_owned(), path.clone()),
        })
        .collect();
    encode(&patch)
}

fn with_value(op: &str, path: &str, value: &Value) -> JsonPatch {
    let mut patch = JsonPatch::new(op.to_owned(), path.to_owned());
    patch.value = Some(Some(value.clone()));
    patch
}

fn oidc_credentials(credential: &OidcCredential) -> Box<IdentityWithCredentials> {
    let provider = IdentityWithCredentialsOidcConfigProvider::new(
        credential.provider.to_string(),
        credential.subject.as_str().to_owned(),
    );
    Box::new(IdentityWithCredentials {
        oidc: Some(Box::new(IdentityWithCredentialsOidc {
            config: Some(Box::new(IdentityWithCredentialsOidcConfig {
                providers: Some(vec![provider]),
            })),
        })),
        ..IdentityWithCredentials::new()
    })
}

/// Kratos v26.2 imports verifiable addresses only via `email` or `sms` (`verifiableIdentityAddress.via`).
fn address_channel(via: &str) -> Result<verifiable_identity_address::ViaEnum, KratosError> {
    match via {
        "email" => Ok(verifiable_identity_address::ViaEnum::Email),
        "sms" => Ok(verifiable_identity_address::ViaEnum::Sms),
        other => Err(KratosError::Rejected {
            status: StatusCode::BAD_REQUEST.as_u16(),
            message: format!(
                "refused before sending: a verified address via '{other}' cannot be imported; \
                 Kratos accepts 'email' and 'sms'"
            ),
        }),
    }
}

fn encode<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, KratosError> {
    serde_json::to_vec(body).map_err(encode_error)
}

fn encode_error(error: serde_json::Error) -> KratosError {
    KratosError::Protocol {
        detail: format!(
            "could not encode the request body as JSON ({:?} error)",
            error.classify()
        ),
    }
}

#[cfg(test)]
mod tests;
