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
    let error = identity(br#"{"id": "a", "traits": {"email": "jane@acme.example"}, "state": 7}"#)
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

    let body: Value = serde_json::from_slice(&patch_body(&ops).expect("encodes")).expect("json");

    assert_eq!(
        body,
        json!([
            { "op": "replace", "path": "/state", "value": "inactive" },
            { "op": "add", "path": "/metadata_admin", "value": null },
            { "op": "remove", "path": "/metadata_public/x" }
        ])
    );
}
