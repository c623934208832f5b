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
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).expect("test JSON")
    }

    /// An identity as Kratos v26.2 answers it, plus what a later release may add.
    fn identity_from_a_newer_kratos() -> Value {
        json!({
            "id": "9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11",
            "schema_id": "default",
            "schema_url": "http://kratos:4433/schemas/ZGVmYXVsdA",
            "state": "active",
            "state_changed_at": "2026-11-23T10:00:00Z",
            "traits": { "email": "jane@acme.example", "name": "Jane" },
            "metadata_public": null,
            "metadata_admin": { "groups": ["eng"] },
            "organization_id": null,
            "credentials": {
                "oidc": { "type": "oidc", "identifiers": ["okta-acme:00u1"], "version": 0,
                          "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z" },
                "deviceauthn": { "type": "deviceauthn", "identifiers": ["device-7"],
                                 "config": { "keys": [] } },
                "password": { "type": "password", "identifiers": ["jane@acme.example"], "config": {} }
            },
            "verifiable_addresses": [
                { "id": "5c1f…", "value": "jane@acme.example", "verified": true, "via": "email",
                  "status": "completed", "verified_at": "2026-11-23T10:00:00Z" },
                { "value": "+4915112345678", "verified": false, "via": "whatsapp", "status": "pending",
                  "verified_at": null }
            ],
            "recovery_addresses": [{ "value": "jane@acme.example", "via": "email" }],
            "created_at": "2026-11-23T10:00:00Z",
            "updated_at": "2026-11-23T10:00:00Z",
            "some_field_from_2027": { "anything": true }
        })
    }

    #[test]
    fn an_identity_with_unknown_credential_type_and_channel_is_read_in_full() {
        let identity = identity(&bytes(identity_from_a_newer_kratos())).expect("lenient read");

        assert_eq!(
            identity.id.to_string(),
            "9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11"
        );
        assert_eq!(identity.schema_id, "default");
        assert_eq!(identity.state, "active");
        assert_eq!(identity.traits["email"], "jane@acme.example");
        assert_eq!(identity.metadata_public, None);
        assert_eq!(identity.metadata_admin, Some(json!({ "groups": ["eng"] })));
        assert_eq!(identity.external_id, None);
        assert_eq!(
            identity.credential_identifiers,
            BTreeMap::from([
                ("deviceauthn".to_owned(), vec!["device-7".to_owned()]),
                ("oidc".to_owned(), vec!["okta-acme:00u1".to_owned()]),
                ("password".to_owned(), vec!["jane@acme.example".to_owned()]),
            ])
        );
        assert_eq!(
            identity.verifiable_addresses,
            vec![
                VerifiableAddress {
                    value: "jane@acme.example".to_owned(),
                    via: "email".to_owned(),
                    verified: true
                },
                VerifiableAddress {
                    value: "+4915112345678".to_owned(),
                    via: "whatsapp".to_owned(),
                    verified: false
                },
            ]
        );
    }

    #[test]
    fn an_unknown_state_is_kept_as_written() {
        let mut json = identity_from_a_newer_kratos();
        json["state"] = json!("suspended");

        assert_eq!(
            identity(&bytes(json)).expect("lenient read").state,
            "suspended"
        );
    }

    #[test]
    fn nulls_and_missing_optional_fields_read_as_empty() {
        let json = json!({
            "id": "9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11",
            "schema_id": null, "state": null, "traits": null, "credentials": null,
            "verifiable_addresses": null, "external_id": null
        });

        let identity = identity(&bytes(json)).expect("lenient read");

        assert_eq!(identity.schema_id, "");
        assert_eq!(identity.state, "active");
        assert_eq!(identity.traits, Value::Null);
        assert!(identity.credential_identifiers.is_empty());
        assert!(identity.verifiable_addresses.is_empty());
    }

    #[test]
    fn a_list_answer_reads_every_identity() {
        let list = identities(&bytes(
            json!([identity_from_a_newer_kratos(), { "id": "0f9a7c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b" }]),
        ))
        .expect("list");

        assert_eq!(
            list.iter().map(|i| i.id.to_string()).collect::<Vec<_>>(),
            [
                "9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11",
                "0f9a7c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
            ]
        );
    }

    #[test]
    fn a_body_without_an_id_is_refused_without_quoting_its_values() {
        let error = identity(&bytes(
            json!({ "traits": { "email": "jane@acme.example" } }),
        ))
        .expect_err("no id");

        assert!(!error.contains("jane@acme.example"), "{error}");
        let error =
            identity(br#"{"id": "a", "traits": {"email": "jane@acme.example"}, "state": 7}"#)
                .expect_err("bad state");
        assert!(!error.contains("jane"), "{error}");
    }

    fn envelope(code: u16, message: &str, reason: Option<&str>) -> Vec<u8> {
        let mut error = json!({ "code": code, "status": "x", "message": message });
        if let Some(reason) = reason {
            error["reason"] = json!(reason);
        }
        bytes(json!({ "error": error }))
    }

    #[test]
    fn a_409_is_a_conflict_carrying_message_and_reason() {
        let body = envelope(
            409,
            "The resource could not be created due to a conflict",
            Some("This identity conflicts with another identity that already exists."),
        );

        assert_eq!(
            classify(StatusCode::CONFLICT, &body, "POST /admin/identities"),
            KratosError::Conflict {
                reason: "The resource could not be created due to a conflict: This identity conflicts with another identity that already exists.".to_owned()
            }
        );
    }

    #[test]
    fn a_404_is_not_found_and_other_4xx_are_rejections_with_the_envelope_words() {
        let not_found = classify(
            StatusCode::NOT_FOUND,
            &envelope(404, "Unable to locate the resource", None),
            "GET /admin/identities/{id}",
        );
        let rejected = classify(
            StatusCode::BAD_REQUEST,
            &envelope(
                400,
                "The request was malformed or contained invalid parameters",
                Some("unsupported operation: test"),
            ),
            "PATCH /admin/identities/{id}",
        );

        assert!(
            matches!(not_found, KratosError::NotFound { detail } if detail.contains("Unable to locate the resource"))
        );
        assert_eq!(
            rejected,
            KratosError::Rejected {
                status: 400,
                message: "The request was malformed or contained invalid parameters: unsupported operation: test".to_owned()
            }
        );
    }

    #[test]
    fn server_errors_and_429_are_unavailable_whatever_the_body_says() {
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let error = classify(status, b"<html>proxy error</html>", "GET /admin/identities");

            assert!(error.is_retryable(), "{status} → {error:?}");
            assert!(
                !error.to_string().contains("proxy error"),
                "body text copied: {error}"
            );
        }
    }

    #[test]
    fn the_status_decides_even_when_the_envelope_names_another_code() {
        // The generated client's untagged error enums decode a 409 into their `Status400` variant;
        // the status line is the only trustworthy discriminator.
        let error = classify(
            StatusCode::CONFLICT,
            &envelope(400, "odd", None),
            "PUT /admin/identities/{id}",
        );

        assert_eq!(
            error,
            KratosError::Conflict {
                reason: "odd".to_owned()
            }
        );
    }

    #[test]
    fn a_401_from_a_proxy_without_envelope_is_a_rejection_saying_so() {
        let error = classify(
            StatusCode::UNAUTHORIZED,
            b"Unauthorized",
            "GET /admin/identities",
        );

        assert_eq!(
            error,
            KratosError::Rejected {
                status: 401,
                message: "the answer carries no Kratos error envelope".to_owned()
            }
        );
    }

    #[test]
    fn a_redirect_is_a_protocol_error() {
        assert!(matches!(
            classify(StatusCode::MOVED_PERMANENTLY, b"", "GET /admin/identities"),
            KratosError::Protocol { .. }
        ));
    }

    fn new_identity() -> NewIdentity {
        NewIdentity {
            schema_id: "default".to_owned(),
            traits: json!({ "email": "jane@acme.example" }),
            metadata_public: Some(json!({ "idp": "okta-acme" })),
            metadata_admin: None,
            verified_addresses: vec![
                VerifiableAddress {
                    value: "jane@acme.example".to_owned(),
                    via: "email".to_owned(),
                    verified: true,
                },
                VerifiableAddress {
                    value: "old@acme.example".to_owned(),
                    via: "email".to_owned(),
                    verified: false,
                },
            ],
            oidc: OidcCredential {
                provider: "okta-acme".parse().unwrap(),
                subject: crate::domain::Subject::parse("00u1").unwrap(),
            },
        }
    }

    #[test]
    fn the_create_body_is_exactly_what_kratos_documents() {
        let body: Value =
            serde_json::from_slice(&create_body(&new_identity()).expect("encodes")).expect("json");

        assert_eq!(
            body,
            json!({
                "schema_id": "default",
                "state": "active",
                "traits": { "email": "jane@acme.example" },
                "metadata_public": { "idp": "okta-acme" },
                "verifiable_addresses": [
                    { "value": "jane@acme.example", "verified": true, "via": "email", "status": "completed" }
                ],
                "credentials": { "oidc": { "config": { "providers": [
                    { "provider": "okta-acme", "subject": "00u1" }
                ] } } }
            })
        );
    }

    #[test]
    fn a_verified_address_on_an_unknown_channel_is_refused_before_sending() {
        let mut new = new_identity();
        new.verified_addresses[0].via = "whatsapp".to_owned();

        assert!(matches!(
            create_body(&new),
            Err(KratosError::Rejected { status: 400, .. })
        ));
    }

    fn current() -> Identity {
        Identity {
            id: "9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11".parse().unwrap(),
            schema_id: "default".to_owned(),
            state: "inactive".to_owned(),
            traits: json!({ "email": "jane@acme.example" }),
            metadata_public: None,
            metadata_admin: Some(json!({ "groups": ["eng"] })),
            external_id: Some("hr-4711".to_owned()),
            verifiable_addresses: vec![],
            credential_identifiers: BTreeMap::new(),
        }
    }

    #[test]
    fn the_link_body_sends_every_overwritten_field_back_unchanged() {
        let credential = OidcCredential {
            provider: "entra-acme".parse().unwrap(),
            subject: crate::domain::Subject::parse("abc").unwrap(),
        };

        let body: Value =
            serde_json::from_slice(&link_oidc_body(&current(), &credential).expect("encodes"))
                .expect("json");

        assert_eq!(
            body,
            json!({
                "schema_id": "default",
                "state": "inactive",
                "traits": { "email": "jane@acme.example" },
                "metadata_public": null,
                "metadata_admin": { "groups": ["eng"] },
                "external_id": "hr-4711",
                "credentials": { "oidc": { "config": { "providers": [
                    { "provider": "entra-acme", "subject": "abc" }
                ] } } }
            })
        );
    }

    #[test]
    fn the_link_body_omits_a_state_this_client_does_not_know() {
        let mut current = current();
        current.state = "suspended".to_owned();
        let credential = OidcCredential {
            provider: "p".parse().unwrap(),
            subject: crate::domain::Subject::parse("s").unwrap(),
        };

        let body: Value =
            serde_json::from_slice(&link_oidc_body(&current, &credential).expect("encodes"))
                .expect("json");

        assert!(body.get("state").is_none(), "{body}");
    }

    #[test]
    fn patch_operations_serialize_as_rfc_6902() {
        let ops = [
            PatchOp::Replace {
                path: "/state".to_owned(),
                value: json!("inactive"),
            },
            PatchOp::Add {
                path: "/metadata_admin".to_owned(),
                value: Value::Null,
            },
            PatchOp::Remove {
                path: "/metadata_public/x".to_owned(),
            },
        ];

        let body: Value =
            serde_json::from_slice(&patch_body(&ops).expect("encodes")).expect("json");

        assert_eq!(
            body,
            json!([
                { "op": "replace", "path": "/state", "value": "inactive" },
                { "op": "add", "path": "/metadata_admin", "value": null },
                { "op": "remove", "path": "/metadata_public/x" }
            ])
        );
    }
}
