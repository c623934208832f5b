//! Hostile input at every door: the provisioning API's body (claims included), both web hooks'
//! bodies (the carried claims included) and ID tokens' headers and payloads meet one set of
//! rules before anything is mapped — no duplicate keys, at most 64 levels of nesting, numbers a
//! double can hold, valid Unicode — and a subject short enough for Kratos's credential
//! identifier. Every refusal names where the problem is and never repeats the value, and
//! nothing is written to Kratos.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Answer, HOOK_SECRET, TRUSTED_SECRET, TestApp, fixture, spawn_app, spawn_app_with_providers,
    token_providers, umbrella_token_claims,
};
use crate::issuer::{TestIssuer, TestKey, key_a, signed_raw};

/// A value no answer may repeat.
const SECRET_VALUE: &str = "do-not-echo-7f3a9c";

fn message(answer: &Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `claims` (JSON text) as a trusted caller sends them for `okta-acme`.
async fn provision_claims_text(app: &TestApp, claims: &str) -> Answer {
    app.post_provision(
        Some(TRUSTED_SECRET),
        format!(r#"{{"provider": "okta-acme", "claims": {claims}}}"#),
    )
    .await
}

/// The JSON text of Acme's admin fixture with `extra` (JSON members, without braces) added at
/// the top level and inside `raw_claims`.
fn admin_claims_with(top: &str, raw: &str) -> String {
    let mut claims = fixture("okta-acme", "admin");
    let raw_claims = claims
        .as_object_mut()
        .unwrap()
        .remove("raw_claims")
        .unwrap();
    let raw_text = raw_claims.to_string();
    let raw_text = match raw {
        "" => raw_text,
        raw => format!("{{{raw}, {}", &raw_text[1..]),
    };
    let text = claims.to_string();
    let inner = &text[1..text.len() - 1];
    match top {
        "" => format!(r#"{{{inner}, "raw_claims": {raw_text}}}"#),
        top => format!(r#"{{{top}, {inner}, "raw_claims": {raw_text}}}"#),
    }
}

/// The registration hook's body as kratos-jit's template makes Kratos send it, with the carried
/// claims (JSON text) of `okta-acme`.
fn registration_body(claims: &str) -> String {
    format!(
        r#"{{"flow_id": "6f4d3e2a-0b1c-4d5e-8f9a-0b1c2d3e4f5a", "identity": {{"traits": {{}},
            "metadata_public": {{"kratos_jit_claims": {{"provider": "okta-acme", "claims": {claims}}}}},
            "verifiable_addresses": []}}}}"#
    )
}

struct HookReply {
    status: u16,
    code: String,
    reason: String,
}

async fn call_hook(app: &TestApp, flow: &str, body: String) -> HookReply {
    let response = app
        .client
        .post(format!("{}/v1/hooks/{flow}", app.address))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {HOOK_SECRET}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let context = &body["messages"][0]["messages"][0]["context"];
    HookReply {
        status,
        code: context["code"].as_str().unwrap_or_default().to_owned(),
        reason: context["reason"].as_str().unwrap_or_default().to_owned(),
    }
}

/// A refusal of the hook call itself: a 400 with Kratos's `messages` body, code `bad_request`.
fn assert_bad_hook_input(reply: &HookReply, what: &str) {
    assert_eq!(
        (reply.status, reply.code.as_str()),
        (400, "bad_request"),
        "{what}: {}",
        reply.reason
    );
}

/// The application trusting a test issuer for `okta-oidc-umbrella`.
struct TokenApp {
    app: TestApp,
    issuer: TestIssuer,
    key: TestKey,
    _providers: TempDir,
}

async fn spawn_token_app() -> TokenApp {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let providers = token_providers(&issuer.url, None);
    let app = spawn_app_with_providers(providers.path(), &[]).await;
    TokenApp {
        app,
        issuer,
        key,
        _providers: providers,
    }
}

impl TokenApp {
    /// A token signed by the issuer's key whose header and payload are exactly these texts.
    async fn provision_raw(&self, header: &str, payload: &str) -> Answer {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let token = signed_raw(&self.key, &message);
        self.app.provision_token("okta-oidc-umbrella", &token).await
    }

    fn header(&self) -> String {
        json!({"alg": "RS256", "typ": "JWT", "kid": self.key.kid}).to_string()
    }

    /// The user fixture's token claims, as JSON text with `extra` members put first.
    fn payload_with(&self, extra: &str) -> String {
        let text = umbrella_token_claims(&self.issuer, "user").to_string();
        format!("{{{extra}, {}", &text[1..])
    }
}

#[actix_web::test]
async fn a_subject_too_long_for_a_kratos_credential_identifier_is_refused_naming_sub() {
    let app = spawn_app().await;
    let long = format!("{SECRET_VALUE}{}", "s".repeat(42_000));
    let mut claims = fixture("okta-acme", "admin");
    claims["sub"] = json!(long);

    let answer = app.provision_claims("okta-acme", &claims).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let text = message(&answer);
    assert!(text.contains("`sub`") && text.contains("191"), "{text}");
    assert!(!answer.body.to_string().contains(SECRET_VALUE), "{text}");

    let reply = call_hook(&app, "registration", registration_body(&claims.to_string())).await;
    assert_bad_hook_input(&reply, "a long subject");
    assert!(reply.reason.contains("`sub`"), "{}", reply.reason);
    assert!(!reply.reason.contains(SECRET_VALUE), "{}", reply.reason);

    let tokens = spawn_token_app().await;
    let payload = tokens.payload_with(&format!(r#""sub": "{long}""#));
    // The fixture's own `sub` follows: it goes, so that the long one is the only one.
    let payload = payload.replacen(r#""sub":"00u1a2b3c4D5e6F7g8h9""#, r#""x":1"#, 1);
    assert!(!payload.contains("00u1a2b3c4D5e6F7g8h9"));
    let answer = tokens.provision_raw(&tokens.header(), &payload).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(message(&answer).contains("`sub`"), "{}", answer.body);
    assert!(!answer.body.to_string().contains(SECRET_VALUE));

    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
    assert!(tokens.app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_subject_as_long_as_kratos_can_store_with_any_provider_is_provisioned() {
    let app = spawn_app().await;
    let subject = "s".repeat(191);
    let mut claims = fixture("okta-acme", "admin");
    claims["sub"] = json!(subject);

    let answer = app.provision_claims("okta-acme", &claims).await;

    assert_eq!(answer.body["action"], "created", "{}", answer.body);
    assert!(app.identity_for("okta-acme", &subject).is_some());
}

#[actix_web::test]
async fn duplicate_keys_are_refused_in_every_json_input_naming_the_key_path() {
    let app = spawn_app().await;
    let first = format!(r#""sub": "{SECRET_VALUE}-1""#);
    let second = format!(r#""groups": ["{SECRET_VALUE}-2"]"#);

    // The API: the body itself, the claims, and claims nested in them.
    let cases = [
        (
            format!(
                r#"{{"provider": "okta-acme", "provider": "okta-acme", "claims": {}}}"#,
                admin_claims_with("", "")
            ),
            "provider: duplicate key",
        ),
        (
            format!(
                r#"{{"provider": "okta-acme", "claims": {}}}"#,
                admin_claims_with(&first, "")
            ),
            "claims.sub: duplicate key",
        ),
        (
            format!(
                r#"{{"provider": "okta-acme", "claims": {}}}"#,
                admin_claims_with("", &second)
            ),
            "claims.raw_claims.groups: duplicate key",
        ),
    ];
    for (body, expected) in cases {
        let answer = app.post_provision(Some(TRUSTED_SECRET), body).await;
        assert_eq!(answer.status, 400, "{expected}: {}", answer.body);
        assert!(message(&answer).contains(expected), "{}", answer.body);
        assert!(!answer.body.to_string().contains(SECRET_VALUE));
    }

    // Both hooks: the carried claims, and the body around them.
    let reply = call_hook(
        &app,
        "registration",
        registration_body(&admin_claims_with(&first, "")),
    )
    .await;
    assert_bad_hook_input(&reply, "a duplicate carried subject");
    assert!(
        reply
            .reason
            .contains("identity.metadata_public.kratos_jit_claims.claims.sub: duplicate key"),
        "{}",
        reply.reason
    );
    assert!(!reply.reason.contains(SECRET_VALUE));
    let login = format!(
        r#"{{"flow_id": "f", "identity": {{"id": "{SECRET_VALUE}", "id": "9f425a8d-7e24-4b9b-a3e3-2b8d5e2c2f10",
            "traits": {{}}}}, "session": {{"authenticated_at": "2026-01-01T00:00:00Z",
            "authentication_methods": [{{"method": "oidc", "provider": "okta-acme"}}]}}}}"#
    );
    let reply = call_hook(&app, "login", login).await;
    assert_bad_hook_input(&reply, "a duplicate identity id");
    assert!(
        reply.reason.contains("identity.id: duplicate key"),
        "{}",
        reply.reason
    );
    assert!(!reply.reason.contains(SECRET_VALUE));
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());

    // An ID token: its payload and its header.
    let tokens = spawn_token_app().await;
    let answer = tokens
        .provision_raw(&tokens.header(), &tokens.payload_with(&first))
        .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        message(&answer).contains("payload") && message(&answer).contains("sub: duplicate key"),
        "{}",
        answer.body
    );
    assert!(!answer.body.to_string().contains(SECRET_VALUE));
    let header = format!(r#"{{"alg": "{SECRET_VALUE}", {}"#, &tokens.header()[1..]);
    let answer = tokens
        .provision_raw(&header, &tokens.payload_with(r#""x": 1"#))
        .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        message(&answer).contains("header") && message(&answer).contains("alg: duplicate key"),
        "{}",
        answer.body
    );
    assert!(!answer.body.to_string().contains(SECRET_VALUE));
    assert!(tokens.app.kratos.writes().is_empty());
}

/// `depth` nested one-key objects around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", r#"{"a": "#.repeat(depth), "}".repeat(depth))
}

#[actix_web::test]
async fn claims_the_mapper_worker_cannot_read_are_refused_before_the_mapper_runs() {
    let app = spawn_app().await;
    // The API body is one level, the claims a second and raw_claims a third: 62 more levels
    // under `x` exceed the limit of 64.
    let cases = [
        (
            admin_claims_with("", &format!(r#""x": {}"#, nested(62))),
            "claims.raw_claims.x",
            "nested deeper than 64 levels",
        ),
        (
            admin_claims_with(r#""n": 1e400"#, ""),
            "claims.n",
            "number out of range",
        ),
        (
            admin_claims_with(r#""name": "\ud800""#, ""),
            "claims.name",
            "not valid Unicode",
        ),
        (
            admin_claims_with(r#""name": "\udc00 and more""#, ""),
            "claims.name",
            "not valid Unicode",
        ),
    ];
    for (claims, field, problem) in &cases {
        let answer = provision_claims_text(&app, claims).await;
        assert_eq!(answer.status, 400, "{problem}: {}", answer.body);
        let text = message(&answer);
        assert!(text.contains(field), "{text}");
        assert!(text.contains(problem), "{text}");

        // The registration hook's carried claims sit 5 levels deep in its body.
        let reply = call_hook(&app, "registration", registration_body(claims)).await;
        assert_bad_hook_input(&reply, problem);
        assert!(reply.reason.contains(problem), "{}", reply.reason);
        assert!(reply.reason.contains(field), "{}", reply.reason);
    }
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
}

#[actix_web::test]
async fn claims_within_the_limits_are_provisioned_and_long_numbers_are_rounded_as_kratos_does() {
    let app = spawn_app().await;
    // 64 levels in all: the body, the claims, raw_claims and 61 more under `x`; a number a
    // double cannot hold exactly, and one beyond u64.
    let claims = admin_claims_with(
        r#""big": 9007199254740993, "huge": 123456789012345678901234567890, "tiny": 1e-400"#,
        &format!(r#""x": {}"#, nested(61)),
    );

    let answer = provision_claims_text(&app, &claims).await;

    assert_eq!(answer.body["action"], "created", "{}", answer.body);
    app.reset_kratos().await;
    // The carried claims start 5 levels deep in the hook's body: 58 more under `x`.
    let body = registration_body(&admin_claims_with(
        r#""big": 9007199254740993"#,
        &format!(r#""x": {}"#, nested(58)),
    ));
    let response = app
        .client
        .post(format!("{}/v1/hooks/registration", app.address))
        .header("Authorization", format!("Bearer {HOOK_SECRET}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["identity"]["traits"]["role"], "admin", "{answer}");
}

#[actix_web::test]
async fn no_refusal_of_a_malformed_body_repeats_what_was_sent() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "admin");
    // A key is named in the answer, cut short: what lies beyond the cut is never shown.
    let long_key = format!("{}{SECRET_VALUE}", "k".repeat(5_000));
    let cases = [
        (
            json!({"provider": format!("{SECRET_VALUE} of no provider"), "claims": claims})
                .to_string(),
            400,
            "provider: not a provider id",
        ),
        (
            json!({"provider": [SECRET_VALUE], "claims": claims}).to_string(),
            400,
            "provider: invalid type",
        ),
        (
            json!({"provider": "okta-acme", "claims": SECRET_VALUE}).to_string(),
            400,
            "claims: invalid type",
        ),
        (
            json!({"provider": "okta-acme", "id_token": {"t": SECRET_VALUE}}).to_string(),
            400,
            "id_token: invalid type",
        ),
        (
            json!({"provider": "okta-acme", "claims": claims, long_key.clone(): 1}).to_string(),
            400,
            "unknown field",
        ),
        (
            format!(r#"{{"provider": "okta-acme", "claims": {{"sub": "{SECRET_VALUE}"#),
            400,
            "not valid JSON",
        ),
        (
            format!(r#"{{"provider": "okta-acme", "claims": {{"sub": "{SECRET_VALUE}\x"}}}}"#),
            400,
            "claims.sub",
        ),
    ];
    for (body, status, expected) in cases {
        let answer = app.post_provision(Some(TRUSTED_SECRET), body).await;
        assert_eq!(answer.status, status, "{expected}: {}", answer.body);
        let text = message(&answer);
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(!text.contains(SECRET_VALUE), "{text}");
        assert!(text.len() < 400, "{text}");
    }
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
}
