//! ID tokens through `POST /v1/provision` with the ordinary API secret: the application verifies
//! each token against a test issuer on loopback (`tests/common/issuer.rs`) before anything is
//! mapped, and every refusal says why, with the right status, and writes nothing to Kratos.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::helpers::{
    API_SECRET, Answer, TestApp, fixture, spawn_app_with_providers, token_providers,
    umbrella_token_claims,
};
use crate::issuer::{
    TestIssuer, TestKey, key_a, key_b, key_file, merge, now, payload_of, unsigned, with_payload,
};

const PROVIDER: &str = "okta-oidc-umbrella";
/// The subject of `okta-oidc-umbrella/user.json`.
const USER_SUBJECT: &str = "00u1a2b3c4D5e6F7g8h9";
/// The prefix of every 401 for a refused token.
const REJECTED: &str = "the id_token was rejected: ";

/// The application on a provider tree whose `okta-oidc-umbrella` trusts `issuer`.
struct TokenApp {
    app: TestApp,
    issuer: TestIssuer,
    key: TestKey,
    _providers: TempDir,
}

/// An issuer publishing key A, and the application trusting it, refreshing keys at will.
async fn spawn_token_app() -> TokenApp {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let providers = token_providers(&issuer.url, None);
    let app = spawn_app_with_providers(
        providers.path(),
        &[("KRATOS_JIT__TOKEN__JWKS_MIN_REFRESH", "1ms")],
    )
    .await;
    TokenApp {
        app,
        issuer,
        key,
        _providers: providers,
    }
}

impl TokenApp {
    /// The claims of `okta-oidc-umbrella/user.json` as the issuer issues them now, changed.
    fn user_claims_with(&self, changes: Value) -> Value {
        let mut claims = umbrella_token_claims(&self.issuer, "user");
        merge(&mut claims, changes);
        claims
    }

    async fn provision(&self, token: &str) -> Answer {
        self.app.provision_token(PROVIDER, token).await
    }
}

fn message(answer: &Answer) -> &str {
    answer.body["error"]["message"].as_str().unwrap_or_default()
}

/// `answer` is an error with `status` whose message contains `reason`, and Kratos saw no write.
fn assert_refused(app: &TestApp, answer: &Answer, status: u16, reason: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], status, "{}", answer.body);
    assert!(
        message(answer).contains(reason),
        "the message {:?} lacks {reason:?}",
        message(answer)
    );
    assert!(
        app.kratos.writes().is_empty(),
        "a refused login wrote to Kratos: {:?}",
        app.kratos.writes()
    );
    assert!(app.kratos.identities().is_empty(), "an identity was stored");
}

/// A 401 for a token the verifier refused, with `reason` after the common prefix.
fn assert_token_rejected(app: &TestApp, answer: &Answer, reason: &str) {
    assert!(
        message(answer).starts_with(REJECTED),
        "the message {:?} does not say the id_token was rejected",
        message(answer)
    );
    assert_refused(app, answer, 401, reason);
}

#[actix_web::test]
async fn a_valid_rs256_token_creates_the_identity_its_claims_describe() {
    let t = spawn_token_app().await;
    let token = t.key.sign(&t.user_claims_with(json!({})));

    let answer = t.provision(&token).await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["action"], "created", "{}", answer.body);
    let identity = t
        .app
        .identity_for(PROVIDER, USER_SUBJECT)
        .expect("an identity holds the OIDC credential");
    assert_eq!(answer.body["identity_id"], identity["id"]);
    assert_eq!(
        identity["credentials"]["oidc"]["identifiers"],
        json!([format!("{PROVIDER}:{USER_SUBJECT}")])
    );
    assert_eq!(identity["traits"]["role"], "user");
    assert_eq!(identity["traits"]["email"], "alice@umbrella.example");
    assert_eq!(identity["traits"]["tenant_id"], "tenant-umbrella");
    let writes = t.app.kratos.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        (writes[0].method.as_str(), writes[0].path.as_str()),
        ("POST", "/admin/identities")
    );
}

#[actix_web::test]
async fn an_expired_token_is_a_401_saying_when_it_expired() {
    let t = spawn_token_app().await;
    let token = t
        .key
        .sign(&t.user_claims_with(json!({"iat": now() - 900, "exp": now() - 600})));

    let answer = t.provision(&token).await;

    assert_token_rejected(&t.app, &answer, "the ID token expired 10m");
}

#[actix_web::test]
async fn a_token_whose_nbf_is_in_the_future_is_a_401_saying_it_is_not_yet_valid() {
    let t = spawn_token_app().await;
    let token = t
        .key
        .sign(&t.user_claims_with(json!({"nbf": now() + 600, "exp": now() + 900})));

    let answer = t.provision(&token).await;

    assert_token_rejected(&t.app, &answer, "the ID token is not valid for another");
    assert!(message(&answer).contains("`nbf`"), "{}", message(&answer));
}

#[actix_web::test]
async fn a_token_for_another_audience_is_a_401_naming_both_audiences() {
    let t = spawn_token_app().await;
    let token = t.key.sign(&t.user_claims_with(json!({"aud": "other-app"})));

    let answer = t.provision(&token).await;

    assert_token_rejected(
        &t.app,
        &answer,
        r#"the ID token is meant for ["other-app"], none of which is a configured audience ["kratos-client"]"#,
    );
}

#[actix_web::test]
async fn a_token_from_another_issuer_is_a_401_naming_both_issuers() {
    let t = spawn_token_app().await;
    let token = t
        .key
        .sign(&t.user_claims_with(json!({"iss": "https://evil.example"})));

    let answer = t.provision(&token).await;

    assert_token_rejected(
        &t.app,
        &answer,
        &format!(
            "the ID token was issued by \"https://evil.example\", not by the configured issuer \"{}\"",
            t.issuer.url
        ),
    );
}

#[actix_web::test]
async fn an_unsigned_alg_none_token_is_a_401_without_fetching_keys() {
    let t = spawn_token_app().await;
    let token = unsigned("none", t.key.kid, &t.user_claims_with(json!({})));

    let answer = t.provision(&token).await;

    assert_token_rejected(&t.app, &answer, "the ID token is unsigned (`alg: none`)");
    assert_eq!(t.issuer.jwks_requests(), 0);
}

#[actix_web::test]
async fn an_hs256_token_keyed_with_the_issuers_public_key_is_a_401() {
    let t = spawn_token_app().await;
    let forger = TestKey::new(
        "key-a",
        Algorithm::HS256,
        EncodingKey::from_secret(&key_file("rsa-a.pub.pem")),
    );
    let token = forger.sign(&t.user_claims_with(json!({})));

    let answer = t.provision(&token).await;

    assert_token_rejected(
        &t.app,
        &answer,
        "the ID token is signed with \"HS256\", a shared-secret (HMAC) algorithm",
    );
}

#[actix_web::test]
async fn a_token_whose_payload_was_tampered_with_is_a_401_for_its_signature() {
    let t = spawn_token_app().await;
    let token = t.key.sign(&t.user_claims_with(json!({})));
    let mut claims = payload_of(&token);
    claims["groups"] = json!(["Umbrella-Admins"]);
    let tampered = with_payload(&token, &claims);

    let answer = t.provision(&tampered).await;

    assert_token_rejected(
        &t.app,
        &answer,
        "the ID token's signature does not verify with the issuer's key \"key-a\"",
    );
}

#[actix_web::test]
async fn a_token_naming_an_unpublished_kid_is_a_401_naming_the_kid() {
    let t = spawn_token_app().await;
    let token = t.key.sign_as(
        Algorithm::RS256,
        Some("key-unpublished"),
        &t.user_claims_with(json!({})),
    );

    let answer = t.provision(&token).await;

    assert_token_rejected(
        &t.app,
        &answer,
        "the issuer's key set has no key \"key-unpublished\", even after refreshing it",
    );
}

#[actix_web::test]
async fn a_key_rotation_at_the_issuer_is_picked_up_without_a_restart() {
    let t = spawn_token_app().await;
    let first = t
        .provision(&t.key.sign(&t.user_claims_with(json!({}))))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["action"], "created");
    assert_eq!(t.issuer.jwks_requests(), 1);

    let rotated = key_b();
    t.issuer.publish(&[&rotated]);
    let after = t
        .provision(&rotated.sign(&t.user_claims_with(json!({}))))
        .await;

    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.body["action"], "unchanged", "{}", after.body);
    assert_eq!(after.body["identity_id"], first.body["identity_id"]);
    assert_eq!(t.issuer.jwks_requests(), 2, "one refetch for the new kid");

    t.app.kratos.clear_log();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let retired = t
        .provision(&t.key.sign(&t.user_claims_with(json!({}))))
        .await;
    assert_eq!(retired.status, 401, "{}", retired.body);
    assert!(
        message(&retired).contains("has no key \"key-a\""),
        "{}",
        message(&retired)
    );
    assert!(t.app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_failing_jwks_endpoint_is_a_503_and_logins_succeed_once_it_recovers() {
    let t = spawn_token_app().await;
    let token = t.key.sign(&t.user_claims_with(json!({})));
    t.issuer.answer_jwks_with_status(503);

    let answer = t.provision(&token).await;

    assert_refused(
        &t.app,
        &answer,
        503,
        &format!(
            "cannot load the issuer's signing keys from {}/jwks: it answered HTTP 503",
            t.issuer.url
        ),
    );

    t.issuer.answer_jwks_with_status(0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let recovered = t.provision(&token).await;
    assert_eq!(recovered.status, 200, "{}", recovered.body);
    assert_eq!(recovered.body["action"], "created");
}

#[actix_web::test]
async fn a_jwks_url_nobody_listens_on_is_a_503_naming_it() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let jwks_url = format!("http://{}/jwks", closed.local_addr().expect("address"));
    drop(closed);
    let providers = token_providers(&issuer.url, Some(&jwks_url));
    let app = spawn_app_with_providers(providers.path(), &[]).await;
    let token = key.sign(&umbrella_token_claims(&issuer, "user"));

    let answer = app.provision_token(PROVIDER, &token).await;

    assert_refused(
        &app,
        &answer,
        503,
        &format!("cannot load the issuer's signing keys from {jwks_url}: "),
    );
}

#[actix_web::test]
async fn an_id_token_for_a_provider_without_token_settings_is_a_400() {
    let t = spawn_token_app().await;
    let token = t.key.sign(&t.user_claims_with(json!({})));

    let answer = t.app.provision_token("okta-acme", &token).await;

    assert_refused(
        &t.app,
        &answer,
        400,
        "provider okta-acme has no [token] settings, so it accepts no id_token",
    );
    assert_eq!(
        (t.issuer.discovery_requests(), t.issuer.jwks_requests()),
        (0, 0)
    );
}

#[actix_web::test]
async fn raw_claims_sent_with_the_ordinary_secret_are_a_403() {
    let t = spawn_token_app().await;
    let body = json!({"provider": PROVIDER, "claims": fixture(PROVIDER, "user")});

    let answer = t
        .app
        .post_provision(Some(API_SECRET), body.to_string())
        .await;

    assert_refused(
        &t.app,
        &answer,
        403,
        "this API secret may only send id_token; raw claims need a trusted secret",
    );
}

// ---------------------------------------------------------------------------------------------
// A token belongs to one provider: several providers behind one bridge (one issuer)
// ---------------------------------------------------------------------------------------------

/// The application on the sample providers, the three bridged ones trusting `issuer` as their
/// shared bridge; `bind` edits each one's `[token]` further.
async fn spawn_bridge_app(
    issuer: &TestIssuer,
    bind: impl Fn(&str, &mut toml::Table),
) -> (TestApp, TempDir) {
    let providers = crate::helpers::providers_edited(|id, settings| {
        if id == PROVIDER {
            return;
        }
        let token = settings
            .get_mut("token")
            .and_then(toml::Value::as_table_mut)
            .expect("the bridged samples have a [token] table");
        token.insert("issuer".into(), issuer.url.clone().into());
        bind(id, token);
    });
    let app = spawn_app_with_providers(providers.path(), &[]).await;
    (app, providers)
}

/// A bridge's token: the claims of `<set>/<provider>/<case>.json` as `issuer` mints them now.
fn bridge_token(
    issuer: &TestIssuer,
    key: &TestKey,
    set: &str,
    provider: &str,
    case: &str,
) -> String {
    let mut claims = crate::helpers::fixture_of(set, provider, case)["raw_claims"].clone();
    let now = now();
    merge(
        &mut claims,
        json!({"iss": issuer.url, "iat": now, "exp": now + 300}),
    );
    key.sign(&claims)
}

#[actix_web::test]
async fn a_polis_token_of_one_customer_is_refused_under_another_provider_by_its_audience() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    // The samples as shipped: each one's audience is its own Polis connection's client id.
    let (app, _providers) = spawn_bridge_app(&issuer, |_, _| {}).await;
    let acme_admin = bridge_token(&issuer, &key, "claims-polis", "okta-acme", "admin");

    let as_other = app.provision_token("onelogin-initech", &acme_admin).await;

    assert_refused(
        &app,
        &as_other,
        401,
        r#"none of which is a configured audience ["tenant=onelogin-initech&product=kratos"]"#,
    );
    assert!(app.kratos.identities().is_empty());
    let as_itself = app.provision_token("okta-acme", &acme_admin).await;
    assert_eq!(
        (as_itself.status, as_itself.body["action"].as_str()),
        (200, Some("created")),
        "{}",
        as_itself.body
    );
}

#[actix_web::test]
async fn behind_one_client_id_a_required_claim_ties_the_token_to_its_provider() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    // SATOSA-style: one client id for every connection; Globex is bound by its Entra directory.
    let tenant_id = "http://schemas.microsoft.com/identity/claims/tenantid";
    let (app, _providers) = spawn_bridge_app(&issuer, |id, token| {
        token.insert(
            "audiences".into(),
            toml::Value::Array(vec!["kratos".into()]),
        );
        if id == "entra-globex" {
            let mut required = toml::Table::new();
            required.insert("claim".into(), toml::Value::Array(vec![tenant_id.into()]));
            required.insert(
                "equals".into(),
                "5f1c0b9e-3d2a-4c1e-9a8b-7c6d5e4f3a21".into(),
            );
            token.insert(
                "require".into(),
                toml::Value::Array(vec![toml::Value::Table(required)]),
            );
        }
    })
    .await;
    let acme_admin = bridge_token(&issuer, &key, "claims-satosa", "okta-acme", "admin");
    let other_directory = bridge_token(
        &issuer,
        &key,
        "claims-satosa",
        "entra-globex",
        "other-directory",
    );

    let acme_as_globex = app.provision_token("entra-globex", &acme_admin).await;
    let spy = app.provision_token("entra-globex", &other_directory).await;

    let reason = |problem: &str| {
        format!(
            "the ID token's claim `{tenant_id}` {problem}, so the token does not belong to this provider"
        )
    };
    assert_refused(&app, &acme_as_globex, 401, &reason("is missing"));
    assert_refused(
        &app,
        &spy,
        401,
        &reason("holds another value than the one required"),
    );
    assert!(
        !message(&spy).contains("99999999"),
        "the claim's value is shown: {}",
        message(&spy)
    );
    assert!(app.kratos.identities().is_empty());
    let globex_admin = bridge_token(&issuer, &key, "claims-satosa", "entra-globex", "admin");
    let own = app.provision_token("entra-globex", &globex_admin).await;
    assert_eq!(
        (own.status, own.body["action"].as_str()),
        (200, Some("created")),
        "{}",
        own.body
    );
}
