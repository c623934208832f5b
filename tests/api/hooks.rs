//! The Kratos web hooks, called exactly as Kratos calls them: the shipped body template
//! evaluated over the `ctx` fixtures (with the identity as the shipped Kratos-side mapper leaves
//! it), the configured auth header and an `Ory-Webhook-Trigger-ID`; answers checked against
//! Kratos's parser rules (docs/kratos.md §1.7).

use std::path::Path;

use kratos_jit::carrier::{CARRIED_CLAIMS_KEY, IdentityVar, kratos_mapper, placeholder_traits};
use kratos_jit::mapper::{Evaluator, Limits, MapperError, MapperSource, empty_identity};
use serde_json::{Value, json};

use crate::helpers::{HOOK_SECRET, TestApp, fixture, manifest_dir, spawn_app};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Evaluates Jsonnet `code` with `value` as `std.extVar('claims')`.
fn evaluate(name: &str, code: &str, value: &Value) -> Result<Value, MapperError> {
    let evaluator =
        Evaluator::new(&[MapperSource::new("x", name, code)], Limits::default()).unwrap();
    evaluator.evaluate("x", value, &empty_identity())
}

/// What Kratos's claims mapper (the shipped carrier) makes of `claims`: placeholder traits and
/// the carried claims, never an error.
fn kratos_side_mapping(provider: &str, claims: &Value) -> Result<Value, MapperError> {
    let placeholder = placeholder_traits(None).unwrap();
    evaluate(
        "carrier.jsonnet",
        &kratos_mapper(provider, &placeholder, IdentityVar::Registration),
        claims,
    )
    .map(|out| out["identity"].clone())
}

/// What the provider's own mapper makes of `claims`: the identity kratos-jit decides on.
fn provider_mapping(provider: &str, claims: &Value) -> Result<Value, MapperError> {
    let source = read(
        &manifest_dir()
            .join("mappers")
            .join(provider)
            .join("mapper.jsonnet"),
    );
    evaluate("mapper.jsonnet", &source, claims).map(|out| out["identity"].clone())
}

/// The `ctx` fixture of `flow`: at registration the identity Kratos built with the carrier
/// mapper; at login an identity holding the traits the provider's mapper gives (what kratos-jit
/// wrote) and the carried claims.
fn ctx(flow: &str, provider: &str, claims: &Value) -> Value {
    let path = manifest_dir().join(format!(
        "tests/fixtures/kratos-webhooks/{flow}-oidc-ctx.json"
    ));
    let mut ctx: Value = serde_json::from_str(&read(&path)).unwrap();
    let mapped = kratos_side_mapping(provider, claims).expect("Kratos's mapper never fails");
    let traits = match flow {
        "login" => provider_mapping(provider, claims)
            .map(|identity| identity["traits"].clone())
            .unwrap_or_else(|_| mapped["traits"].clone()),
        _ => mapped["traits"].clone(),
    };
    ctx["identity"]["traits"] = traits;
    ctx["identity"]["metadata_public"] = mapped["metadata_public"].clone();
    if let Some(session) = ctx.get_mut("session") {
        session["authentication_methods"][0]["provider"] = json!(provider);
        session["identity"] = Value::Null;
    }
    ctx
}

/// The request body Kratos sends: the shipped template applied to `ctx` (`function(ctx)`).
fn hook_body(flow: &str, ctx: &Value) -> Value {
    let template = read(&manifest_dir().join(format!("deploy/kratos/hooks/{flow}.jsonnet")));
    evaluate(
        &format!("{flow}.jsonnet"),
        &format!("({template})(std.extVar('claims'))"),
        ctx,
    )
    .unwrap()
}

pub(crate) struct HookAnswer {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
}

pub(crate) async fn call(
    app: &TestApp,
    flow: &str,
    body: &Value,
    trigger: &str,
    secret: Option<&str>,
) -> HookAnswer {
    let mut request = app
        .client
        .post(format!("{}/v1/hooks/{flow}", app.address))
        .header("Content-Type", "application/json")
        .header("Ory-Webhook-Trigger-ID", trigger)
        .body(body.to_string());
    if let Some(secret) = secret {
        request = request.header("Authorization", format!("Bearer {secret}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = (!text.is_empty()).then(|| serde_json::from_str(&text).expect("a JSON answer"));
    HookAnswer { status, body }
}

/// Kratos's rules for an interrupting answer: a 4xx other than 429 (5xx and 429 are retried and
/// their bodies dropped) with `messages[].messages[]` of `{id: int, text, type}`.
fn assert_kratos_messages(answer: &HookAnswer) -> String {
    assert!(
        (400..500).contains(&answer.status) && answer.status != 429,
        "status {}",
        answer.status
    );
    let body = answer.body.as_ref().expect("a messages body");
    let groups = body["messages"].as_array().expect("messages array");
    assert!(!groups.is_empty());
    let message = &groups[0]["messages"][0];
    assert_eq!(groups[0]["instance_ptr"], "#/");
    assert!(message["id"].is_u64(), "{message}");
    assert_eq!(message["type"], "error");
    assert!(!message["text"].as_str().unwrap().is_empty());
    message["context"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[actix_web::test]
async fn an_allowed_registration_answers_the_identity_kratos_should_persist() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "admin");
    let body = hook_body("registration", &ctx("registration", "okta-acme", &claims));
    let answer = call(&app, "registration", &body, "trigger-1", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 200);
    let identity = &answer.body.as_ref().unwrap()["identity"];
    // Kratos copies only these fields from a 200 answer; nothing else may be relied on.
    let fields: Vec<&str> = identity
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in &fields {
        assert!(
            [
                "traits",
                "metadata_public",
                "metadata_admin",
                "verifiable_addresses",
                "schema_id",
                "state",
                "recovery_addresses",
                "external_id"
            ]
            .contains(field),
            "Kratos ignores `{field}`"
        );
    }
    assert_eq!(identity["traits"]["role"], "admin");
    assert_eq!(identity["traits"]["tenant_id"], "tenant-acme");
    // The carried claims are gone from what the user can see; `{}`, not absent, so Kratos copies it.
    assert_eq!(identity["metadata_public"], json!({}));
    assert_eq!(
        identity["metadata_admin"]["kratos_jit"]["provider"],
        "okta-acme"
    );
    assert_eq!(
        identity["verifiable_addresses"][0],
        json!({"value": "ada@acme.example", "via": "email", "verified": true, "status": "completed"})
    );
    // Kratos persists the identity itself: the hook only looked up who holds the e-mail.
    let requests = app.kratos.requests();
    assert!(
        app.kratos.writes().is_empty(),
        "the registration hook wrote"
    );
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert!(
        requests[0]
            .query
            .contains("credentials_identifier=ada%40acme.example"),
        "{:?}",
        requests[0].query
    );
}

#[actix_web::test]
async fn every_denial_case_is_a_4xx_with_messages_and_nothing_is_written() {
    let app = spawn_app().await;
    for (provider, case, reason) in [
        (
            "okta-acme",
            "wrong-tenant",
            "is not bound to tenant \"tenant-globex\"",
        ),
        ("okta-acme", "foreign-domain", "is not a verified domain"),
        (
            "entra-globex",
            "other-directory",
            "Entra directory 99999999-9999-4999-8999-999999999999 refused",
        ),
        (
            "onelogin-initech",
            "no-email",
            "the IdP sent no e-mail address",
        ),
    ] {
        let claims = fixture(provider, case);
        // Kratos's mapper never refuses (a refusal there would be Kratos's error page with a
        // Jsonnet stack trace): the hook refuses, with a message the user reads.
        kratos_side_mapping(provider, &claims).expect("Kratos's mapper never fails");
        let ctx = ctx("registration", provider, &claims);
        let body = hook_body("registration", &ctx);
        let answer = call(
            &app,
            "registration",
            &body,
            &format!("trigger-{case}"),
            Some(HOOK_SECRET),
        )
        .await;
        let text = assert_kratos_messages(&answer);
        assert_eq!(answer.status, 403, "{provider}/{case}");
        assert!(text.contains(reason), "{provider}/{case}: {text}");
    }
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_wrong_or_missing_hook_secret_is_a_401() {
    let app = spawn_app().await;
    let body = hook_body(
        "registration",
        &ctx("registration", "okta-acme", &fixture("okta-acme", "admin")),
    );
    for secret in [None, Some("not-the-hook-secret-0000")] {
        let answer = call(&app, "registration", &body, "trigger-auth", secret).await;
        assert_eq!(answer.status, 401);
        assert_kratos_messages(&answer);
    }
    // The API secret is not a hook secret.
    let answer = call(
        &app,
        "registration",
        &body,
        "trigger-auth-2",
        Some(crate::helpers::API_SECRET),
    )
    .await;
    assert_eq!(answer.status, 401);
}

/// The login hook's body for a sign-in of identity `id` with fresh `claims` (the audit tests).
pub(crate) fn fresh_login_body(provider: &str, claims: &Value, id: &str) -> Value {
    let mut ctx = fresh_login(provider, claims);
    ctx["identity"]["id"] = json!(id);
    hook_body("login", &ctx)
}

/// The login hook's body for a sign-in of identity `id` whose carried claims are stale (Kratos
/// v26.2.0: the registration's), with the traits `claims` map to (the audit tests).
pub(crate) fn stale_login_body(provider: &str, claims: &Value, id: &str) -> Value {
    let mut ctx = ctx("login", provider, claims);
    ctx["identity"]["id"] = json!(id);
    hook_body("login", &ctx)
}

/// A login with claims issued for this very sign-in (Kratos re-ran the mapper at login).
fn fresh_login(provider: &str, claims: &Value) -> Value {
    let mut ctx = ctx("login", provider, claims);
    let iat = ctx["identity"]["metadata_public"][CARRIED_CLAIMS_KEY]["claims"]["raw_claims"]["iat"]
        .as_i64()
        .unwrap();
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(iat as u64 + 2),
    );
    ctx["session"]["authenticated_at"] = json!(at.to_string());
    ctx
}

#[actix_web::test]
async fn a_login_with_fresh_claims_updates_through_the_admin_api_once_per_trigger() {
    let app = spawn_app().await;
    // Registered earlier as an admin.
    let admin = fixture("okta-acme", "admin");
    let created = app.provision_claims("okta-acme", &admin).await;
    let id = created.body["identity_id"].as_str().unwrap().to_owned();
    // Kratos (update_identity_on_login: automatic) re-ran its mapper with the demoted claims
    // and persisted the carried claims before calling the hook.
    let demoted = fixture("okta-acme", "demoted");
    let mut ctx = fresh_login("okta-acme", &demoted);
    ctx["identity"]["id"] = json!(id);
    let carried = ctx["identity"]["metadata_public"].clone();
    let patch = json!([{"op": "add", "path": "/metadata_public", "value": carried}]);
    app.client
        .patch(format!("{}/admin/identities/{id}", app.kratos.base_url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    app.kratos.clear_log();

    let body = hook_body("login", &ctx);
    let answer = call(&app, "login", &body, "login-trigger-1", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let identity = app.identity_for("okta-acme", "ada@acme.example").unwrap();
    assert_eq!(identity["traits"]["role"], "user");
    assert!(
        identity["metadata_public"]
            .get(CARRIED_CLAIMS_KEY)
            .is_none(),
        "claims left visible: {identity}"
    );
    let writes = app.kratos.writes().len();
    assert!(writes > 0);

    // Kratos retries the same call: the first answer again, nothing applied twice.
    let retry = call(&app, "login", &body, "login-trigger-1", Some(HOOK_SECRET)).await;
    assert_eq!(retry.status, 204);
    assert_eq!(
        app.kratos.writes().len(),
        writes,
        "a retried hook applied again"
    );
}

#[actix_web::test]
async fn a_login_refused_by_the_policy_is_a_4xx_with_messages_and_writes_nothing() {
    let app = spawn_app().await;
    let mut ctx = fresh_login("okta-acme", &fixture("okta-acme", "foreign-domain"));
    ctx["identity"]["id"] = json!("6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f");
    let answer = call(
        &app,
        "login",
        &hook_body("login", &ctx),
        "login-trigger-2",
        Some(HOOK_SECRET),
    )
    .await;
    let reason = assert_kratos_messages(&answer);
    assert!(reason.contains("is not a verified domain"), "{reason}");
    assert!(app.kratos.writes().is_empty(), "a refused login wrote");
}

#[actix_web::test]
async fn stale_claims_at_login_are_not_reapplied() {
    let app = spawn_app().await;
    let admin = fixture("okta-acme", "admin");
    let created = app.provision_claims("okta-acme", &admin).await;
    app.kratos.clear_log();
    // Kratos v26.2.0: the carried claims are the registration's (days older than this sign-in).
    let mut ctx = ctx("login", "okta-acme", &fixture("okta-acme", "demoted"));
    ctx["identity"]["id"] = created.body["identity_id"].clone();
    let answer = call(
        &app,
        "login",
        &hook_body("login", &ctx),
        "login-trigger-3",
        Some(HOOK_SECRET),
    )
    .await;
    assert_eq!(answer.status, 204);
    assert!(
        app.kratos.writes().is_empty(),
        "stale claims were applied: {:?}",
        app.kratos.writes()
    );
    assert_eq!(
        app.identity_for("okta-acme", "ada@acme.example").unwrap()["traits"]["role"],
        "admin"
    );
}

/// The message Kratos would show: `(context.code, text, context.reason)`.
fn message_of(answer: &HookAnswer) -> (String, String, String) {
    assert_kratos_messages(answer);
    let message = &answer.body.as_ref().unwrap()["messages"][0]["messages"][0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&message["context"]["code"]),
        text(&message["text"]),
        text(&message["context"]["reason"]),
    )
}

/// An identity the application created with a password: it holds the e-mail as an identifier
/// but no OIDC credential of any provider.
fn insert_password_identity(app: &TestApp, email: &str, tenant: &str) {
    app.kratos.insert_identity(json!({
        "schema_id": "default",
        "traits": {"email": email, "tenant_id": tenant, "role": "guest"},
        "credentials": {"password": {"config": {"password": "correct horse battery staple"}}}
    }));
}

/// A fresh-claims login of `claims` for an identity Kratos signs in with `id`.
fn login_body(provider: &str, claims: &Value, id: &str) -> Value {
    let mut ctx = fresh_login(provider, claims);
    ctx["identity"]["id"] = json!(id);
    hook_body("login", &ctx)
}

#[actix_web::test]
async fn the_login_hook_says_jit_creation_is_off_when_the_idp_may_not_create() {
    let tree = crate::helpers::edited_providers(
        "okta-acme",
        |settings| {
            settings["jit"]["create"] = false.into();
        },
        |mapper| mapper,
    );
    let app = crate::helpers::spawn_app_with_providers(tree.path(), &[]).await;
    let body = login_body(
        "okta-acme",
        &fixture("okta-acme", "admin"),
        "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f",
    );

    let answer = call(&app, "login", &body, "create-off-1", Some(HOOK_SECRET)).await;

    let (code, text, reason) = message_of(&answer);
    assert_eq!(code, "create_disabled");
    assert!(text.contains("not been set up"), "{text}");
    assert!(reason.contains("jit.create = false"), "{reason}");
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
}

#[actix_web::test]
async fn the_login_hook_gives_the_linking_refusal_for_an_e_mail_held_by_an_unlinked_identity() {
    let app = spawn_app().await;
    insert_password_identity(&app, "ada@acme.example", "tenant-acme");
    let before = app.kratos.identities();
    app.kratos.clear_log();
    let body = login_body(
        "okta-acme",
        &fixture("okta-acme", "admin"),
        "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f",
    );

    let answer = call(&app, "login", &body, "linking-1", Some(HOOK_SECRET)).await;

    let (code, text, reason) = message_of(&answer);
    assert_eq!(code, "linking_disabled");
    assert!(text.contains("already exists"), "{text}");
    assert!(reason.contains("linking by e-mail is off"), "{reason}");
    assert!(
        !reason.contains("ada@"),
        "the reason names the address: {reason}"
    );
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
    assert_eq!(app.kratos.identities(), before);
}

#[actix_web::test]
async fn the_login_hook_names_the_refused_e_mail_domain() {
    let app = spawn_app().await;
    let body = login_body(
        "okta-acme",
        &fixture("okta-acme", "foreign-domain"),
        "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f",
    );

    let answer = call(&app, "login", &body, "domain-1", Some(HOOK_SECRET)).await;

    let (code, text, _) = message_of(&answer);
    assert_eq!(code, "foreign_domain");
    let domain = fixture("okta-acme", "foreign-domain")["email"]
        .as_str()
        .unwrap()
        .rsplit_once('@')
        .unwrap()
        .1
        .to_lowercase();
    assert!(text.contains(&domain), "{text}");
    assert!(app.kratos.writes().is_empty());
}

/// The registration hook's body for `claims`, as Kratos sends it after its own mapper ran.
pub(crate) fn registration_body(provider: &str, claims: &Value) -> Value {
    hook_body("registration", &ctx("registration", provider, claims))
}

#[actix_web::test]
async fn a_registration_whose_e_mail_another_identity_holds_gets_the_apis_answer() {
    for (holder_tenant, expected_code) in [
        ("tenant-acme", "linking_disabled"),
        ("tenant-globex", "linking_disabled"),
    ] {
        let app = spawn_app().await;
        insert_password_identity(&app, "ada@acme.example", holder_tenant);
        let before = app.kratos.identities();
        let claims = fixture("okta-acme", "admin");

        let api = app.provision_claims("okta-acme", &claims).await;
        let hook = call(
            &app,
            "registration",
            &registration_body("okta-acme", &claims),
            &format!("held-by-{holder_tenant}"),
            Some(HOOK_SECRET),
        )
        .await;

        assert_eq!(api.status, 403, "{}", api.body);
        assert_eq!(api.body["code"], expected_code, "{}", api.body);
        let (code, _, reason) = message_of(&hook);
        assert_eq!(code, expected_code, "{holder_tenant}");
        assert_eq!(
            reason,
            api.body["reason"].as_str().unwrap(),
            "{holder_tenant}"
        );
        assert!(
            app.kratos.writes().is_empty(),
            "{holder_tenant}: a denial wrote"
        );
        assert_eq!(app.kratos.identities(), before);
    }
}

#[actix_web::test]
async fn a_registration_links_the_e_mails_identity_where_the_api_would() {
    let linking = || {
        crate::helpers::edited_providers(
            "okta-acme",
            |settings| {
                settings["jit"]["link_by_verified_email"] = true.into();
            },
            |mapper| mapper,
        )
    };
    let claims = fixture("okta-acme", "admin");
    // The API links the identity the application created…
    let tree = linking();
    let api_app = crate::helpers::spawn_app_with_providers(tree.path(), &[]).await;
    insert_password_identity(&api_app, "ada@acme.example", "tenant-acme");
    let api = api_app.provision_claims("okta-acme", &claims).await;
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.body["changed"][0], "credentials.oidc");
    // … and so does the registration hook, which then stops Kratos from creating a second one.
    let tree = linking();
    let hook_app = crate::helpers::spawn_app_with_providers(tree.path(), &[]).await;
    insert_password_identity(&hook_app, "ada@acme.example", "tenant-acme");
    let hook = call(
        &hook_app,
        "registration",
        &registration_body("okta-acme", &claims),
        "link-1",
        Some(HOOK_SECRET),
    )
    .await;

    let (code, text, _) = message_of(&hook);
    assert_eq!(code, "linked");
    assert!(text.contains("sign in again"), "{text}");
    for app in [&api_app, &hook_app] {
        let identities = app.kratos.identities();
        assert_eq!(identities.len(), 1, "a second identity was created");
        let linked = app
            .identity_for("okta-acme", "ada@acme.example")
            .expect("linked");
        assert_eq!(linked["traits"]["role"], "admin");
    }
}

#[actix_web::test]
async fn a_mapper_change_is_seen_by_every_entry_point() {
    // Acme's admins become guests: a change every entry point must see at once.
    let tree = crate::helpers::edited_providers(
        "okta-acme",
        |_| {},
        |mapper| {
            let edited = mapper.replace(
                "std.member(groups, 'Acme-Admins') then 'admin'",
                "std.member(groups, 'Acme-Admins') then 'guest'",
            );
            assert_ne!(edited, mapper, "the mapper's role rule moved");
            edited
        },
    );
    let app = crate::helpers::spawn_app_with_providers(tree.path(), &[]).await;
    let admin = fixture("okta-acme", "admin");

    // The provisioning API.
    let api = app.provision_claims("okta-acme", &admin).await;
    assert_eq!(api.status, 200, "{}", api.body);
    let identity = app.identity_for("okta-acme", "ada@acme.example").unwrap();
    assert_eq!(identity["traits"]["role"], "guest", "the API");

    // The login hook: the identity is set back to admin, the next fresh login makes it a guest.
    let id = identity["id"].as_str().unwrap().to_owned();
    let promote = json!([{"op": "replace", "path": "/traits/role", "value": "admin"}]);
    app.client
        .patch(format!("{}/admin/identities/{id}", app.kratos.base_url()))
        .json(&promote)
        .send()
        .await
        .unwrap();
    let answer = call(
        &app,
        "login",
        &login_body("okta-acme", &admin, &id),
        "change-login",
        Some(HOOK_SECRET),
    )
    .await;
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let identity = app.identity_for("okta-acme", "ada@acme.example").unwrap();
    assert_eq!(identity["traits"]["role"], "guest", "the login hook");

    // The registration hook (a new user of the same group).
    app.reset_kratos().await;
    let answer = call(
        &app,
        "registration",
        &registration_body("okta-acme", &admin),
        "change-registration",
        Some(HOOK_SECRET),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body.unwrap()["identity"]["traits"]["role"],
        "guest",
        "the registration hook"
    );

    // `kratos-jit map` and `kratos-jit check`, on the same tree.
    let claims_file = manifest_dir().join("mappers/okta-acme/tests/admin.claims.json");
    let map = std::process::Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .args(["map", "--provider", "okta-acme", "--dir"])
        .arg(tree.path())
        .arg(&claims_file)
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&map.stdout).expect("map prints JSON");
    assert_eq!(printed["identity"]["traits"]["role"], "guest", "map");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .arg("check")
        .arg(tree.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        !check.status.success(),
        "check passed the old fixture:\n{report}"
    );
    assert!(
        report.contains("FAIL  okta-acme") && report.contains("+     \"role\": \"guest\""),
        "check:\n{report}"
    );
}

#[actix_web::test]
async fn a_login_with_fresh_claims_evaluates_the_mapper_once() {
    use kratos_jit::http::auth::Secrets;
    use kratos_jit::http::hooks::{self, HookSettings};
    use kratos_jit::kratos::{HttpKratos, KratosSettings};
    use kratos_jit::login::Logins;
    use kratos_jit::mapper::{Isolation, MapperEngine, WorkerProgram};
    use kratos_jit::provider::Providers;
    use kratos_jit::schema::IdentitySchemas;
    use std::sync::Arc;

    let kratos = kratos_jit::standin::StandIn::start().expect("stand-in starts");
    let (providers, _) = Providers::load(&manifest_dir().join("mappers")).unwrap();
    let engine = MapperEngine::start(
        providers.mapper_sources(),
        Limits::default(),
        1,
        Isolation::Processes(WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit"))),
    )
    .unwrap();
    let http = HttpKratos::new(KratosSettings {
        admin_url: kratos.base_url(),
        ..KratosSettings::default()
    })
    .unwrap();
    let logins = Logins::new(
        http,
        engine,
        Arc::new(providers),
        Arc::new(IdentitySchemas::builtin()),
    );
    let settings = HookSettings {
        secrets: Secrets::default(),
        deadline: std::time::Duration::from_secs(4),
        claims_max_age: std::time::Duration::from_secs(300),
        max_body_bytes: 1 << 20,
        body_timeout: std::time::Duration::from_secs(5),
    };
    // Registered as an admin (one evaluation), then demoted at the IdP.
    let register = serde_json::from_value(registration_body(
        "okta-acme",
        &fixture("okta-acme", "admin"),
    ))
    .unwrap();
    let before = logins.engine().evaluations();
    let answer = hooks::registration(&logins, &settings, register).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(logins.engine().evaluations() - before, 1, "registration");
    let mut identity = answer.body.unwrap()["identity"].clone();
    identity["credentials"] = json!({"oidc": {"config": {"providers": [
        {"provider": "okta-acme", "subject": "ada@acme.example"}
    ]}}});
    identity["schema_id"] = json!("default");
    let created = kratos.insert_identity(identity);
    let id = created["id"].as_str().unwrap();

    let login = serde_json::from_value(login_body(
        "okta-acme",
        &fixture("okta-acme", "demoted"),
        id,
    ))
    .unwrap();
    let before = logins.engine().evaluations();
    let answer = hooks::login(&logins, &settings, login).await;

    assert_eq!(answer.status, 204, "{:?}", answer.body);
    assert_eq!(logins.engine().evaluations() - before, 1, "login");
    let stored = kratos
        .identities()
        .into_iter()
        .find(|i| i["id"] == id)
        .unwrap();
    assert_eq!(stored["traits"]["role"], "user");
}
