use super::*;

fn valid_traits() -> Value {
    json!({
        "email": "ada@acme.example",
        "tenant_id": "tenant-acme",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "role": "admin"
    })
}

#[track_caller]
fn violations_of(traits: &Value) -> Vec<Violation> {
    match IdentitySchemas::builtin().validate_traits(DEFAULT_SCHEMA_ID, traits) {
        Err(SchemaError::Invalid {
            schema_id,
            violations,
        }) => {
            assert_eq!(schema_id, DEFAULT_SCHEMA_ID);
            violations
        }
        other => panic!("expected the traits to be refused, got {other:?}"),
    }
}

#[test]
fn traits_that_follow_the_default_schema_pass() {
    let schemas = IdentitySchemas::builtin();

    let result = schemas.validate_traits(DEFAULT_SCHEMA_ID, &valid_traits());

    assert_eq!(result, Ok(()));
}

#[test]
fn a_role_outside_the_enum_is_refused_naming_the_field_and_the_allowed_roles() {
    let mut traits = valid_traits();
    traits["role"] = json!("superuser");

    let violations = violations_of(&traits);

    assert_eq!(
        violations,
        vec![Violation {
            pointer: "/traits/role".into(),
            message: r#"must be one of "admin", "user" or "guest""#.into(),
        }]
    );
}

#[test]
fn a_malformed_email_is_refused_because_formats_are_asserted() {
    let mut traits = valid_traits();
    traits["email"] = json!("not-an-address");

    let violations = violations_of(&traits);

    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].pointer, "/traits/email");
    assert!(violations[0].message.contains("email"), "{violations:?}");
}

#[test]
fn a_quoted_local_part_with_spaces_passes_as_it_does_in_kratos() {
    let mut traits = valid_traits();
    traits["email"] = json!("\"ada lovelace\"@acme.example");

    let result = IdentitySchemas::builtin().validate_traits(DEFAULT_SCHEMA_ID, &traits);

    assert_eq!(result, Ok(()));
}

#[test]
fn an_email_with_a_utf8_domain_is_refused_saying_why_without_repeating_it() {
    let mut traits = valid_traits();
    traits["email"] = json!("ada@bücher.example");

    let violations = violations_of(&traits);

    assert_eq!(
        violations,
        vec![Violation {
            pointer: "/traits/email".into(),
            message: "must be a valid \"email\": its domain is not ASCII; give an internationalised domain in its xn-- form".into(),
        }]
    );
}

#[test]
fn a_missing_tenant_id_is_reported_at_the_missing_field() {
    let mut traits = valid_traits();
    traits.as_object_mut().unwrap().remove("tenant_id");

    let violations = violations_of(&traits);

    assert_eq!(
        violations,
        vec![Violation {
            pointer: "/traits/tenant_id".into(),
            message: "is required but missing".into(),
        }]
    );
}

#[test]
fn a_property_the_schema_does_not_define_is_reported_at_that_property() {
    let mut traits = valid_traits();
    traits["groups"] = json!(["Acme-Admins"]);

    let violations = violations_of(&traits);

    assert_eq!(
        violations,
        vec![Violation {
            pointer: "/traits/groups".into(),
            message: "is not a field of this schema".into(),
        }]
    );
}

#[test]
fn every_failing_field_is_reported_at_once_and_no_value_is_repeated() {
    let traits = json!({"email": "secret-person", "role": "superuser", "nickname": "x"});

    let error = IdentitySchemas::builtin()
        .validate_traits(DEFAULT_SCHEMA_ID, &traits)
        .unwrap_err();

    let SchemaError::Invalid { violations, .. } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/traits/email",
            "/traits/nickname",
            "/traits/role",
            "/traits/tenant_id"
        ]
    );
    let text = error.to_string();
    assert!(
        !text.contains("secret-person") && !text.contains("superuser"),
        "{text}"
    );
}

#[test]
fn an_unknown_schema_id_is_an_error_of_its_own() {
    let schemas = IdentitySchemas::builtin();

    let result = schemas.validate_traits("customer", &valid_traits());

    assert_eq!(result, Err(SchemaError::UnknownSchema("customer".into())));
}

#[test]
fn a_configured_schema_is_used_under_its_id_beside_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staff.schema.json");
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"traits": {
            "type": "object",
            "properties": {"email": {
                "type": "string",
                "format": "email",
                "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}
            }},
            "required": ["email"]
        }}
    });
    std::fs::write(&path, schema.to_string()).unwrap();

    let schemas = IdentitySchemas::load(&[("staff".into(), path)]).unwrap();

    assert_eq!(schemas.ids().collect::<Vec<_>>(), ["default", "staff"]);
    assert_eq!(
        schemas.validate_traits("staff", &json!({"email": "ada@acme.example"})),
        Ok(())
    );
    assert!(schemas.validate_traits("staff", &json!({})).is_err());
}

#[test]
fn an_idn_email_field_takes_any_string_because_kratos_does_not_check_that_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idn.schema.json");
    let schema = json!({
        "properties": {"traits": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "idn-email"}}
        }}
    });
    std::fs::write(&path, schema.to_string()).unwrap();
    let schemas = IdentitySchemas::load(&[("idn".into(), path)]).unwrap();

    for address in ["ada@bücher.example", "not-an-address"] {
        let result = schemas.validate_traits("idn", &json!({ "email": address }));

        assert_eq!(result, Ok(()), "{address}");
    }
}

#[test]
fn kratos_recovery_and_verification_by_email_check_the_address_whatever_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.schema.json");
    let field = |format: Option<&str>, flow: &str| {
        let mut field = json!({"ory.sh/kratos": {flow: {"via": "email"}}});
        if let Some(format) = format {
            field["format"] = json!(format);
        }
        field
    };
    let schema = json!({
        "properties": {"traits": {
            "type": "object",
            "properties": {
                "recovery": field(Some("idn-email"), "recovery"),
                "verification": field(None, "verification"),
                "formatted_verification": field(Some("idn-email"), "verification"),
            }
        }}
    });
    std::fs::write(&path, schema.to_string()).unwrap();
    let schemas = IdentitySchemas::load(&[("flows".into(), path)]).unwrap();
    let traits = json!({
        "recovery": "ada@bücher.example",
        "verification": 42,
        "formatted_verification": "not-an-address",
    });

    let error = schemas.validate_traits("flows", &traits).unwrap_err();

    let SchemaError::Invalid { violations, .. } = error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(
        violations,
        vec![
            Violation {
                pointer: "/traits/recovery".into(),
                message: "must be a valid \"email\": its domain is not ASCII; give an internationalised domain in its xn-- form".into(),
            },
            Violation {
                pointer: "/traits/verification".into(),
                message: "must be a valid \"email\"".into(),
            },
        ]
    );
}

#[test]
fn an_address_failing_both_format_and_recovery_is_reported_once() {
    let mut traits = valid_traits();
    traits["email"] = json!("Ada <ada@acme.example>");

    let violations = violations_of(&traits);

    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].pointer, "/traits/email");
}

#[test]
fn loading_reports_every_unusable_schema_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{ nope").unwrap();
    let no_traits = dir.path().join("no-traits.json");
    std::fs::write(&no_traits, r#"{"type": "object"}"#).unwrap();
    let bad_keyword = dir.path().join("bad.json");
    std::fs::write(
        &bad_keyword,
        r#"{"properties": {"traits": {"type": "objekt"}}}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing.json");

    let errors = IdentitySchemas::load(&[
        ("a".into(), not_json),
        ("b".into(), no_traits),
        ("c".into(), bad_keyword),
        ("d".into(), missing),
    ])
    .unwrap_err();

    assert_eq!(errors.len(), 4, "{errors:#?}");
    for (error, file) in
        errors
            .iter()
            .zip(["broken.json", "no-traits.json", "bad.json", "missing.json"])
    {
        assert!(error.contains(file), "{error} should name {file}");
    }
}
