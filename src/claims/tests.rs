use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn claims(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test claims must be an object, got {other}"),
    }
}

fn build(value: Value) -> Result<Value, ClaimsError> {
    kratos_claims(&claims(value))
}

fn minimal() -> Value {
    json!({"iss": "https://idp.example", "sub": "user-1"})
}

fn with(extra: Value) -> Value {
    let mut base = claims(minimal());
    base.extend(claims(extra));
    Value::Object(base)
}

/// The claims fixtures the repository keeps (`tests/fixtures/claims`, README there).
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claims")
}

fn json_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read claims fixtures in {} ({e})", dir.display()));
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            json_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            found.push(path);
        }
    }
}

/// The fixture as Kratos's code would have built it. The fixtures deviate from
/// Kratos's `Claims` struct in two ways:
///
/// - the SAML-bridge fixtures carry `nonce` in `raw_claims` but not at the top level, yet
///   `Claims` has `Nonce string json:"nonce,omitempty"`, so Kratos puts a non-empty nonce
///   at the top level too;
/// - `okta-oidc-umbrella/unverified-email.json` has a top-level `"email_verified": false`,
///   yet `ConvertibleBoolean` is a Go `bool`, and `omitempty` drops `false`.
fn as_kratos_builds_it(mut fixture: Map<String, Value>) -> Map<String, Value> {
    let raw_nonce = fixture
        .get("raw_claims")
        .and_then(|raw| raw.get("nonce"))
        .filter(|nonce| nonce.as_str().is_some_and(|s| !s.is_empty()))
        .cloned();
    if let Some(nonce) = raw_nonce {
        fixture.entry("nonce").or_insert(nonce);
    }
    if fixture.get("email_verified") == Some(&Value::Bool(false)) {
        fixture.remove("email_verified");
    }
    fixture
}

#[test]
fn every_claims_fixture_is_rebuilt_from_its_raw_claims_as_kratos_builds_it() {
    let mut files = Vec::new();
    json_files(&fixtures_dir(), &mut files);
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the claims fixtures, found {files:?}"
    );

    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable fixture");
        let fixture: Map<String, Value> = serde_json::from_str(&text).expect("JSON fixture");
        let raw = fixture
            .get("raw_claims")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{} has no raw_claims object", file.display()));

        let built = kratos_claims(raw)
            .unwrap_or_else(|e| panic!("{}: Kratos would refuse it: {e}", file.display()));

        assert_eq!(
            built,
            Value::Object(as_kratos_builds_it(fixture.clone())),
            "{}",
            file.display()
        );
    }
}

#[test]
fn a_fixture_without_a_nonce_or_a_false_flag_is_reproduced_exactly() {
    let file = fixtures_dir().join("okta-oidc-umbrella/user.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("fixture")).expect("JSON");
    let raw = fixture["raw_claims"].as_object().expect("raw_claims");

    assert_eq!(kratos_claims(raw).expect("valid"), fixture);
}

#[test]
fn a_nonce_in_the_token_is_also_a_top_level_claim() {
    let built = build(with(json!({"nonce": "n-0S6_WzA2Mj"}))).unwrap();

    assert_eq!(built["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(built["raw_claims"]["nonce"], "n-0S6_WzA2Mj");
}

#[test]
fn the_string_true_in_email_verified_becomes_the_boolean_true() {
    let built = build(with(json!({"email_verified": "true"}))).unwrap();

    assert_eq!(built["email_verified"], json!(true));
    assert_eq!(built["raw_claims"]["email_verified"], json!("true"));
}

#[test]
fn email_verified_false_as_boolean_or_string_is_omitted() {
    for value in [json!(false), json!("false")] {
        let built = build(with(json!({ "email_verified": value }))).unwrap();

        assert!(built.get("email_verified").is_none(), "{value}");
        assert_eq!(built["raw_claims"]["email_verified"], value);
    }
}

#[test]
fn email_verified_other_than_true_or_false_fails_like_kratos() {
    for value in [
        json!(1),
        json!("yes"),
        json!("TRUE"),
        json!(null),
        json!([true]),
    ] {
        let err = build(with(json!({ "email_verified": value }))).unwrap_err();

        assert!(
            matches!(&err, ClaimsError::WrongType { claim, .. } if claim == "email_verified"),
            "{value}: {err}"
        );
    }
}

#[test]
fn empty_strings_false_booleans_zero_and_empty_lists_are_omitted() {
    let built = build(with(json!({
        "email": "",
        "name": "",
        "phone_number_verified": false,
        "nonce_supported": false,
        "updated_at": 0,
        "amr": [],
        "locale": {"language": "", "country": ""},
    })))
    .unwrap();

    let top: Vec<&str> = built
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["iss", "raw_claims", "sub"]);
}

#[test]
fn null_claims_are_omitted_except_where_go_fails_on_null() {
    let built = build(with(json!({
        "email": null, "phone_number_verified": null, "updated_at": null,
        "amr": null, "locale": null,
    })))
    .unwrap();

    let top: Vec<&str> = built
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["iss", "raw_claims", "sub"]);
}

#[test]
fn standard_claims_keep_kratos_json_types() {
    let built = build(with(json!({
        "email": "a@b.example",
        "email_verified": true,
        "phone_number_verified": true,
        "nonce_supported": true,
        "updated_at": 1_700_000_000,
        "amr": ["pwd", "mfa"],
        "acr": "urn:mace:incommon:iap:silver",
    })))
    .unwrap();

    assert_eq!(built["email"], "a@b.example");
    assert_eq!(built["email_verified"], true);
    assert_eq!(built["phone_number_verified"], true);
    assert_eq!(built["nonce_supported"], true);
    assert_eq!(built["updated_at"], 1_700_000_000);
    assert_eq!(built["amr"], json!(["pwd", "mfa"]));
    assert_eq!(built["acr"], "urn:mace:incommon:iap:silver");
}

#[test]
fn claims_kratos_does_not_know_appear_only_under_raw_claims() {
    let token = with(json!({"groups": ["a"], "aud": "client", "exp": 1, "auth_time": 2}));

    let built = build(token.clone()).unwrap();

    for claim in ["groups", "aud", "exp", "auth_time"] {
        assert!(
            built.get(claim).is_none(),
            "{claim} leaked to the top level"
        );
    }
    assert_eq!(built["raw_claims"], token);
}

#[test]
fn a_claim_of_the_wrong_type_fails_without_echoing_its_value() {
    let err = build(with(json!({"email": ["secret@value.example"]}))).unwrap_err();

    assert_eq!(
        err,
        ClaimsError::WrongType {
            claim: "email".into(),
            field: "email",
            expected: "a string",
            found: "a list"
        }
    );
    assert!(!err.to_string().contains("secret@value.example"));
}

#[test]
fn updated_at_must_be_an_int64_as_in_kratos() {
    for value in [
        json!("2022-11-30T11:07:24Z"),
        json!(1.5),
        json!(1e3),
        json!(u64::MAX),
    ] {
        let err = build(with(json!({ "updated_at": value }))).unwrap_err();

        assert!(
            matches!(
                err,
                ClaimsError::WrongType {
                    field: "updated_at",
                    ..
                }
            ),
            "{value}"
        );
    }
}

#[test]
fn amr_must_be_a_list_of_strings() {
    assert!(build(with(json!({"amr": "pwd"}))).is_err());
    assert!(build(with(json!({"amr": ["pwd", 1]}))).is_err());
    assert_eq!(
        build(with(json!({"amr": ["pwd", null]}))).unwrap()["amr"],
        json!(["pwd", ""])
    );
}

#[test]
fn a_raw_claims_claim_in_the_token_is_replaced_but_must_be_an_object() {
    let built = build(with(json!({"raw_claims": {"forged": true}}))).unwrap();
    assert_eq!(built["raw_claims"]["raw_claims"], json!({"forged": true}));
    assert!(built["raw_claims"].get("forged").is_none());

    let err = build(with(json!({"raw_claims": "x"}))).unwrap_err();
    assert!(matches!(
        err,
        ClaimsError::WrongType {
            field: "raw_claims",
            ..
        }
    ));
}

#[test]
fn keys_match_kratos_fields_case_insensitively_like_go() {
    let built =
        build(json!({"ISS": "https://idp.example", "Sub": "u", "EMAIL": "a@b.example"})).unwrap();

    assert_eq!(built["iss"], "https://idp.example");
    assert_eq!(built["sub"], "u");
    assert_eq!(built["email"], "a@b.example");
    assert!(built.get("EMAIL").is_none());
    assert_eq!(built["raw_claims"]["EMAIL"], "a@b.example");
}

#[test]
fn the_exact_spelling_wins_over_a_case_variant() {
    let built = build(with(
        json!({"Email": "variant@b.example", "email": "exact@b.example"}),
    ))
    .unwrap();

    assert_eq!(built["email"], "exact@b.example");
}

#[test]
fn a_badly_typed_case_variant_still_fails_like_go() {
    let err = build(with(json!({"Name": 42, "name": "Ada"}))).unwrap_err();

    assert!(matches!(&err, ClaimsError::WrongType { claim, field: "name", .. } if claim == "Name"));
    assert!(err.to_string().contains("Kratos reads it as \"name\""));
}

#[test]
fn go_folding_maps_the_kelvin_sign_and_long_s_to_ascii() {
    assert!(go_fold_eq("nic\u{212A}name", "nickname"));
    assert!(go_fold_eq("\u{017F}ub", "sub"));
    assert!(!go_fold_eq("émail", "email"));
    assert!(!go_fold_eq("emai", "email"));
    assert!(!go_fold_eq("emails", "email"));
}

#[test]
fn a_linkedin_locale_object_becomes_a_language_tag() {
    let locale = |v: Value| {
        build(with(json!({ "locale": v })))
            .unwrap()
            .get("locale")
            .cloned()
    };

    assert_eq!(
        locale(json!({"language": "de", "country": "DE"})),
        Some(json!("de-DE"))
    );
    assert_eq!(locale(json!({"language": "de"})), Some(json!("de")));
    assert_eq!(locale(json!({"country": "DE"})), Some(json!("DE")));
    assert_eq!(locale(json!("en-US")), Some(json!("en-US")));
    assert!(build(with(json!({"locale": 5}))).is_err());
    assert!(build(with(json!({"locale": {"language": 5}}))).is_err());
}

#[test]
fn a_token_without_a_subject_is_refused_as_kratos_validate_does() {
    assert_eq!(
        build(json!({"iss": "https://idp.example"})),
        Err(ClaimsError::MissingSubject)
    );
    assert_eq!(
        build(json!({"iss": "https://idp.example", "sub": ""})),
        Err(ClaimsError::MissingSubject)
    );
}

#[test]
fn a_token_without_an_issuer_is_refused_as_kratos_validate_does() {
    assert_eq!(
        build(json!({"sub": "user-1"})),
        Err(ClaimsError::MissingIssuer)
    );
    assert_eq!(
        build(json!({"sub": "user-1", "iss": null})),
        Err(ClaimsError::MissingIssuer)
    );
}

#[test]
fn a_type_error_is_reported_before_a_missing_subject_as_go_decodes_first() {
    assert!(matches!(
        build(json!({"iss": "https://idp.example", "email": 1})),
        Err(ClaimsError::WrongType { .. })
    ));
}
