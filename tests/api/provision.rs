//! Every claims fixture of tests/fixtures/claims/ through `POST /v1/provision`, and the seed plan.

use serde_json::{Value, json};

use crate::helpers::{fixture, spawn_app};

/// What a fixture must lead to (tests/fixtures/README.md).
enum Expect {
    /// Created with this role (tenant from the provider's binding).
    Created(&'static str),
    /// Denied with a reason containing this text.
    Denied(&'static str),
}

const CASES: &[(&str, &str, &str, Expect)] = &[
    (
        "okta-acme",
        "admin",
        "tenant-acme",
        Expect::Created("admin"),
    ),
    ("okta-acme", "user", "tenant-acme", Expect::Created("user")),
    (
        "okta-acme",
        "no-groups",
        "tenant-acme",
        Expect::Created("guest"),
    ),
    (
        "okta-acme",
        "single-group",
        "tenant-acme",
        Expect::Created("admin"),
    ),
    (
        "okta-acme",
        "unicode",
        "tenant-acme",
        Expect::Created("user"),
    ),
    (
        "okta-acme",
        "many-groups",
        "tenant-acme",
        Expect::Created("user"),
    ),
    (
        "okta-acme",
        "demoted",
        "tenant-acme",
        Expect::Created("user"),
    ),
    (
        "okta-acme",
        "renamed",
        "tenant-acme",
        Expect::Created("user"),
    ),
    (
        "okta-acme",
        "wrong-tenant",
        "",
        Expect::Denied("is not bound to tenant \"tenant-globex\""),
    ),
    (
        "okta-acme",
        "foreign-domain",
        "",
        Expect::Denied("is not a verified domain of tenant \"tenant-acme\""),
    ),
    (
        "entra-globex",
        "admin",
        "tenant-globex",
        Expect::Created("admin"),
    ),
    (
        "entra-globex",
        "user",
        "tenant-globex",
        Expect::Created("user"),
    ),
    (
        "entra-globex",
        "single-group",
        "tenant-globex",
        Expect::Created("user"),
    ),
    (
        "entra-globex",
        "app-roles",
        "tenant-globex",
        Expect::Created("admin"),
    ),
    // Group overage at a first login: never a silent grant — the documented outcome is guest.
    (
        "entra-globex",
        "group-overage",
        "tenant-globex",
        Expect::Created("guest"),
    ),
    (
        "entra-globex",
        "other-directory",
        "",
        Expect::Denied("Entra directory 99999999-9999-4999-8999-999999999999 refused"),
    ),
    (
        "onelogin-initech",
        "user",
        "tenant-initech",
        Expect::Created("user"),
    ),
    (
        "onelogin-initech",
        "admin",
        "tenant-initech",
        Expect::Created("admin"),
    ),
    (
        "onelogin-initech",
        "single-role-string",
        "tenant-initech",
        Expect::Created("user"),
    ),
    (
        "onelogin-initech",
        "no-email",
        "",
        Expect::Denied("the IdP sent no e-mail address"),
    ),
    (
        "okta-oidc-umbrella",
        "user",
        "tenant-umbrella",
        Expect::Created("user"),
    ),
    (
        "okta-oidc-umbrella",
        "admin",
        "tenant-umbrella",
        Expect::Created("admin"),
    ),
    (
        "okta-oidc-umbrella",
        "unverified-email",
        "tenant-umbrella",
        Expect::Created("user"),
    ),
];

fn subject(claims: &Value) -> &str {
    claims["sub"].as_str().unwrap()
}

#[actix_web::test]
async fn every_claims_fixture_has_its_documented_outcome() {
    let app = spawn_app().await;
    let fixtures_dir = crate::helpers::manifest_dir().join("tests/fixtures/claims");
    let mut seen = 0;
    for (provider, case, tenant, expect) in CASES {
        app.reset_kratos().await;
        let claims = fixture(provider, case);
        let answer = app.provision_claims(provider, &claims).await;
        let label = format!("{provider}/{case}");
        match expect {
            Expect::Created(role) => {
                assert_eq!(answer.status, 200, "{label}: {}", answer.body);
                assert_eq!(answer.body["action"], "created", "{label}: {}", answer.body);
                let identity = app
                    .identity_for(provider, subject(&claims))
                    .unwrap_or_else(|| panic!("{label}: no identity"));
                assert_eq!(answer.body["identity_id"], identity["id"], "{label}");
                assert_eq!(identity["traits"]["role"], *role, "{label}");
                assert_eq!(identity["traits"]["tenant_id"], *tenant, "{label}");
                let provenance = &identity["metadata_admin"]["kratos_jit"];
                assert_eq!(provenance["provider"], *provider, "{label}");
                assert_eq!(provenance["subject"], subject(&claims), "{label}");
                assert_eq!(
                    provenance["mapper_sha256"].as_str().map(str::len),
                    Some(64),
                    "{label}"
                );
                assert!(
                    identity["metadata_public"].is_null(),
                    "{label}: provenance leaked to metadata_public"
                );
                assert!(
                    identity["traits"].get("groups").is_none(),
                    "{label}: groups copied into the identity"
                );
            }
            Expect::Denied(reason) => {
                assert_eq!(answer.status, 403, "{label}: {}", answer.body);
                assert_eq!(answer.body["action"], "denied", "{label}");
                let text = answer.body["reason"].as_str().unwrap_or_default();
                assert!(
                    text.contains(reason),
                    "{label}: reason {text:?} lacks {reason:?}"
                );
                assert!(
                    app.kratos.writes().is_empty(),
                    "{label}: a denial wrote {:?}",
                    app.kratos.writes()
                );
                assert!(app.kratos.identities().is_empty(), "{label}");
            }
        }
        seen += 1;
    }
    // Every fixture file is covered by the table above.
    let mut files = 0;
    for provider in std::fs::read_dir(&fixtures_dir).unwrap() {
        files += std::fs::read_dir(provider.unwrap().path()).unwrap().count();
    }
    assert_eq!(
        seen,
        files,
        "a fixture in {} has no expected outcome here",
        fixtures_dir.display()
    );
}

#[actix_web::test]
async fn unicode_names_and_e_mail_are_kept_exactly() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "unicode");
    assert_eq!(app.provision_claims("okta-acme", &claims).await.status, 200);
    let identity = app.identity_for("okta-acme", subject(&claims)).unwrap();
    assert_eq!(identity["traits"]["email"], claims["email"]);
    assert_eq!(
        identity["traits"]["first_name"],
        claims["raw_claims"]["firstName"]
    );
    assert_eq!(
        identity["traits"]["last_name"],
        claims["raw_claims"]["lastName"]
    );
}

#[actix_web::test]
async fn an_unverified_e_mail_is_not_marked_verified() {
    let app = spawn_app().await;
    let claims = fixture("okta-oidc-umbrella", "unverified-email");
    assert_eq!(
        app.provision_claims("okta-oidc-umbrella", &claims)
            .await
            .body["action"],
        "created"
    );
    let identity = app
        .identity_for("okta-oidc-umbrella", subject(&claims))
        .unwrap();
    let addresses = identity["verifiable_addresses"].as_array().unwrap();
    assert!(!addresses.is_empty());
    assert!(
        addresses.iter().all(|a| a["verified"] == false),
        "{addresses:?}"
    );

    // Whereas a verified one is imported as verified.
    let verified = fixture("okta-oidc-umbrella", "user");
    app.provision_claims("okta-oidc-umbrella", &verified).await;
    let identity = app
        .identity_for("okta-oidc-umbrella", subject(&verified))
        .unwrap();
    assert_eq!(identity["verifiable_addresses"][0]["verified"], true);
}

#[actix_web::test]
async fn an_entra_group_overage_keeps_the_current_role() {
    let app = spawn_app().await;
    let user = fixture("entra-globex", "user");
    let mut overage = fixture("entra-globex", "group-overage");
    // The same person as user.json, now with too many groups for Entra to list.
    overage["sub"] = user["sub"].clone();
    overage["email"] = user["email"].clone();
    overage["raw_claims"]["raw"]["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"] =
        user["email"].clone();
    assert_eq!(
        app.provision_claims("entra-globex", &user).await.body["action"],
        "created"
    );
    let answer = app.provision_claims("entra-globex", &overage).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let identity = app.identity_for("entra-globex", subject(&user)).unwrap();
    assert_eq!(identity["traits"]["role"], "user");
    assert_eq!(identity["metadata_admin"]["groups_overage"], true);
}

/// The seed test plan, once per IdP: first login creates with tenant and role; the same claims
/// again change nothing and write nothing; a role removed at the IdP demotes; a rename changes
/// only the name.
async fn seed_plan(provider: &str, first: Value, demoted: Value, tenant: &str, first_role: &str) {
    let app = spawn_app().await;
    let sub = subject(&first).to_owned();

    let created = app.provision_claims(provider, &first).await;
    assert_eq!(
        (created.status, created.body["action"].as_str()),
        (200, Some("created")),
        "{}",
        created.body
    );
    let identity = app.identity_for(provider, &sub).unwrap();
    assert_eq!(identity["traits"]["tenant_id"], tenant);
    assert_eq!(identity["traits"]["role"], first_role);

    app.kratos.clear_log();
    let again = app.provision_claims(provider, &first).await;
    assert_eq!(again.body["action"], "unchanged", "{}", again.body);
    assert_eq!(again.body["identity_id"], created.body["identity_id"]);
    assert!(
        app.kratos.writes().is_empty(),
        "unchanged wrote {:?}",
        app.kratos.writes()
    );

    let updated = app.provision_claims(provider, &demoted).await;
    assert_eq!(updated.body["action"], "updated", "{}", updated.body);
    assert_eq!(updated.body["changed"], json!(["traits.role"]));
    assert_eq!(
        app.identity_for(provider, &sub).unwrap()["traits"]["role"],
        "user"
    );

    let before = app.identity_for(provider, &sub).unwrap();
    let mut renamed = demoted.clone();
    rename(&mut renamed, "Renamed-Person");
    let answer = app.provision_claims(provider, &renamed).await;
    assert_eq!(answer.body["action"], "updated", "{}", answer.body);
    assert_eq!(answer.body["changed"], json!(["traits.last_name"]));
    let after = app.identity_for(provider, &sub).unwrap();
    assert_eq!(after["traits"]["last_name"], "Renamed-Person");
    let mut expected = before["traits"].clone();
    expected["last_name"] = json!("Renamed-Person");
    assert_eq!(after["traits"], expected, "only the name changes");
}

/// Sets the last name wherever each IdP's mapper reads it from.
fn rename(claims: &mut Value, last: &str) {
    claims["family_name"] = json!(last);
    claims["raw_claims"]["family_name"] = json!(last);
    claims["raw_claims"]["lastName"] = json!(last);
    let raw = &mut claims["raw_claims"]["raw"];
    if raw.is_object() {
        for key in [
            "lastName",
            "User.LastName",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        ] {
            if raw.get(key).is_some() {
                raw[key] = json!(last);
            }
        }
    }
}

#[actix_web::test]
async fn seed_plan_okta_acme() {
    seed_plan(
        "okta-acme",
        fixture("okta-acme", "admin"),
        fixture("okta-acme", "demoted"),
        "tenant-acme",
        "admin",
    )
    .await;
}

#[actix_web::test]
async fn seed_plan_entra_globex() {
    let admin = fixture("entra-globex", "admin");
    let mut demoted = admin.clone();
    // Hank leaves the admin group; the user group stays.
    demoted["raw_claims"]["raw"]["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"] =
        json!(["7e4b2d18-9c3a-4f6e-b1d0-3e8f5a7c2d22"]);
    seed_plan("entra-globex", admin, demoted, "tenant-globex", "admin").await;
}

#[actix_web::test]
async fn seed_plan_onelogin_initech() {
    let admin = fixture("onelogin-initech", "admin");
    let mut demoted = admin.clone();
    demoted["raw_claims"]["raw"]["memberOf"] = json!(["Initech-Staff"]);
    seed_plan(
        "onelogin-initech",
        admin,
        demoted,
        "tenant-initech",
        "admin",
    )
    .await;
}

#[actix_web::test]
async fn seed_plan_okta_oidc_umbrella() {
    let admin = fixture("okta-oidc-umbrella", "admin");
    let mut demoted = admin.clone();
    demoted["raw_claims"]["groups"] = json!(["Umbrella-Users"]);
    seed_plan(
        "okta-oidc-umbrella",
        admin,
        demoted,
        "tenant-umbrella",
        "admin",
    )
    .await;
}

#[actix_web::test]
async fn a_renamed_user_changes_only_the_last_name() {
    let app = spawn_app().await;
    let user = fixture("okta-acme", "user");
    app.provision_claims("okta-acme", &user).await;
    let before = app.identity_for("okta-acme", subject(&user)).unwrap();
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "renamed"))
        .await;
    assert_eq!(answer.body["action"], "updated", "{}", answer.body);
    assert_eq!(answer.body["changed"], json!(["traits.last_name"]));
    let after = app.identity_for("okta-acme", subject(&user)).unwrap();
    assert_ne!(after["traits"]["last_name"], before["traits"]["last_name"]);
    for key in ["email", "tenant_id", "first_name", "role"] {
        assert_eq!(after["traits"][key], before["traits"][key], "{key}");
    }
}

#[actix_web::test]
async fn fields_set_by_the_application_survive_an_update() {
    let app = spawn_app().await;
    let admin = fixture("okta-acme", "admin");
    let created = app.provision_claims("okta-acme", &admin).await;
    let id = created.body["identity_id"].as_str().unwrap();
    // The application stores its own data on the identity.
    let patch = json!([
        {"op": "add", "path": "/metadata_public", "value": {"theme": "dark"}},
        {"op": "add", "path": "/metadata_admin/billing_plan", "value": "enterprise"}
    ]);
    let response = app
        .client
        .patch(format!("{}/admin/identities/{id}", app.kratos.base_url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let demoted = app
        .provision_claims("okta-acme", &fixture("okta-acme", "demoted"))
        .await;
    assert_eq!(demoted.body["action"], "updated");
    let identity = app.identity_for("okta-acme", subject(&admin)).unwrap();
    assert_eq!(identity["traits"]["role"], "user");
    assert_eq!(identity["metadata_public"]["theme"], "dark");
    assert_eq!(identity["metadata_admin"]["billing_plan"], "enterprise");
}

#[actix_web::test]
async fn another_tenants_identity_holding_the_e_mail_is_never_touched() {
    let app = spawn_app().await;
    // Tenant A (acme) holds ada@acme.example through its own IdP.
    let acme = fixture("okta-acme", "admin");
    app.provision_claims("okta-acme", &acme).await;
    let before = app.kratos.identities();
    app.kratos.clear_log();
    // Tenant B's IdP (umbrella) asserts the same e-mail with a new subject.
    let mut intruder = fixture("okta-oidc-umbrella", "admin");
    intruder["email"] = acme["email"].clone();
    intruder["raw_claims"]["email"] = acme["email"].clone();
    let answer = app.provision_claims("okta-oidc-umbrella", &intruder).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body["reason"]
            .as_str()
            .unwrap()
            .contains("acme.example"),
        "{}",
        answer.body
    );
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
    assert_eq!(
        app.kratos.identities(),
        before,
        "tenant A's identity changed"
    );
}

#[actix_web::test]
async fn an_e_mail_taken_by_an_unlinked_identity_is_refused_without_linking() {
    let app = spawn_app().await;
    // An identity created by the application (password credential) holds the e-mail.
    app.kratos.insert_identity(json!({
        "schema_id": "default",
        "traits": {"email": "ada@acme.example", "tenant_id": "tenant-acme", "role": "guest"},
        "credentials": {"password": {"config": {"password": "correct horse battery staple"}}}
    }));
    let before = app.kratos.identities();
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body["reason"]
            .as_str()
            .unwrap()
            .contains("linking by e-mail is off"),
        "{}",
        answer.body
    );
    assert_eq!(app.kratos.identities(), before);
}

#[actix_web::test]
async fn an_update_to_an_e_mail_another_identity_holds_is_a_denial_not_a_gateway_error() {
    let app = spawn_app().await;
    let login = |sub: &str, email: &str| {
        let mut claims = fixture("okta-acme", "user");
        claims["sub"] = json!(sub);
        claims["email"] = json!(email);
        claims["raw_claims"]["sub"] = json!(sub);
        claims["raw_claims"]["email"] = json!(email);
        claims["raw_claims"]["raw"]["email"] = json!(email);
        claims
    };
    let first = app
        .provision_claims("okta-acme", &login("s1", "one@acme.example"))
        .await;
    let second = app
        .provision_claims("okta-acme", &login("s2", "two@acme.example"))
        .await;
    assert_eq!((first.status, second.status), (200, 200));
    let before = app.kratos.identities();
    app.kratos.clear_log();

    // s2's IdP now asserts s1's address.
    let clash = app
        .provision_claims("okta-acme", &login("s2", "one@acme.example"))
        .await;

    assert_eq!(clash.status, 403, "{}", clash.body);
    assert_eq!(clash.body["code"], "value_taken", "{}", clash.body);
    assert!(!clash.body["reason"].as_str().unwrap().contains("one@"));
    assert_eq!(app.kratos.identities(), before, "an identity changed");
    // The next login of s2 gets the same answer, not an error.
    let again = app
        .provision_claims("okta-acme", &login("s2", "one@acme.example"))
        .await;
    assert_eq!(again.status, 403, "{}", again.body);
}

// ---------------------------------------------------------------------------------------------
// Sessions follow the IdP
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_demotion_revokes_the_identitys_sessions_and_other_logins_keep_them() {
    let app = spawn_app().await;
    let admin = fixture("okta-acme", "admin");
    let created = app.provision_claims("okta-acme", &admin).await;
    assert_eq!(created.body["sessions_revoked"], false, "{}", created.body);
    let id = created.body["identity_id"].as_str().unwrap().to_owned();
    app.kratos.add_session(&id);
    app.kratos.add_session(&id);

    let unchanged = app.provision_claims("okta-acme", &admin).await;
    let mut renamed = admin.clone();
    rename(&mut renamed, "Byron");
    let other_field = app.provision_claims("okta-acme", &renamed).await;
    let kept = app.session_count(&id).await;
    let demoted = app
        .provision_claims("okta-acme", &fixture("okta-acme", "demoted"))
        .await;

    assert_eq!(
        (
            &unchanged.body["action"],
            &unchanged.body["sessions_revoked"]
        ),
        (&json!("unchanged"), &json!(false))
    );
    assert_eq!(other_field.body["changed"], json!(["traits.last_name"]));
    assert_eq!(other_field.body["sessions_revoked"], false);
    assert_eq!(
        kept, 2,
        "a login that changed no role or tenant ended sessions"
    );
    assert_eq!(demoted.body["action"], "updated", "{}", demoted.body);
    assert_eq!(
        demoted.body["changed"],
        json!(["traits.last_name", "traits.role"])
    );
    assert_eq!(demoted.body["sessions_revoked"], true, "{}", demoted.body);
    assert_eq!(
        app.session_count(&id).await,
        0,
        "the demoted user's sessions survived"
    );
    assert_eq!(
        app.identity_for("okta-acme", subject(&admin)).unwrap()["traits"]["role"],
        "user"
    );
}

#[actix_web::test]
async fn the_revocation_comes_before_the_write_it_protects() {
    let app = spawn_app().await;
    let created = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    let id = created.body["identity_id"].as_str().unwrap().to_owned();
    app.kratos.add_session(&id);
    app.kratos.clear_log();

    app.provision_claims("okta-acme", &fixture("okta-acme", "demoted"))
        .await;

    let writes: Vec<String> = app
        .kratos
        .writes()
        .iter()
        .map(|w| format!("{} {}", w.method, w.path))
        .collect();
    assert_eq!(
        writes,
        [
            format!("DELETE /admin/identities/{id}/sessions"),
            format!("PATCH /admin/identities/{id}"),
        ]
    );
}

#[actix_web::test]
async fn a_provider_that_lists_no_session_fields_keeps_sessions_on_a_demotion() {
    let providers = crate::helpers::edited_providers(
        "okta-acme",
        |settings| {
            let mut sessions = toml::Table::new();
            sessions.insert("revoke_when_changed".into(), toml::Value::Array(vec![]));
            settings.insert("sessions".into(), toml::Value::Table(sessions));
        },
        |mapper| mapper,
    );
    let app = crate::helpers::spawn_app_with_providers(providers.path(), &[]).await;
    let created = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    let id = created.body["identity_id"].as_str().unwrap().to_owned();
    app.kratos.add_session(&id);

    let demoted = app
        .provision_claims("okta-acme", &fixture("okta-acme", "demoted"))
        .await;

    assert_eq!(
        demoted.body["changed"],
        json!(["traits.role"]),
        "{}",
        demoted.body
    );
    assert_eq!(demoted.body["sessions_revoked"], false);
    assert_eq!(app.session_count(&id).await, 1);
}
