//! The audit trail (docs/audit.md) through the real application: every claims fixture through
//! the API and the web hooks yields exactly one event per change and per refusal, each valid
//! against `docs/audit-event.schema.json` and matching the Kratos stand-in's request log; no
//! event holds a subject, nor (values hashed) a value; with the sink unwritable a change is
//! refused with 503 (hooks: their "unavailable" answer) and nothing is written to Kratos.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::audit_events::{AuditFile, actions, write_actions};
use crate::helpers::{HOOK_SECRET, TestApp, fixtures_dir, spawn_app_with};
use crate::hooks::{call, registration_body};
use crate::personal::personal_strings;

/// Every claims fixture of `tests/fixtures/claims`, in a stable order: (provider, case, claims).
fn claims_fixtures() -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let root = fixtures_dir().join("claims");
    let mut providers: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    providers.sort();
    for folder in providers {
        let provider = folder.file_name().unwrap().to_str().unwrap().to_owned();
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        cases.sort();
        for case in cases {
            let name = case.file_stem().unwrap().to_str().unwrap().to_owned();
            let claims = serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
            out.push((provider.clone(), name, claims));
        }
    }
    out
}

async fn spawn(audit: &AuditFile, values: &str) -> TestApp {
    let env = audit.env(values);
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&extra).await
}

/// The events a provisioning answer must have produced, in order.
fn expected_events(answer: &Value) -> Vec<String> {
    let mut expected = Vec::new();
    if answer["sessions_revoked"] == true {
        expected.push("sessions_revoked".to_owned());
    }
    let linked = answer["changed"][0] == "credentials.oidc";
    match answer["action"].as_str().unwrap() {
        "created" => expected.push("created".into()),
        "updated" if linked => expected.push("linked".into()),
        "updated" => expected.push("updated".into()),
        "denied" => expected.push("denied".into()),
        _ => {}
    }
    expected
}

/// The subjects of every fixture: no event may hold one.
fn subjects(fixtures: &[(String, String, Value)]) -> Vec<String> {
    let mut subjects: Vec<String> = fixtures
        .iter()
        .filter_map(|(_, _, claims)| claims["sub"].as_str().map(str::to_owned))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

#[actix_web::test]
async fn every_claims_fixture_through_the_api_yields_one_event_per_change_and_refusal() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let fixtures = claims_fixtures();
    let (mut changes, mut refusals) = (0, 0);
    let mut request_ids = Vec::new();
    for (provider, case, claims) in &fixtures {
        app.kratos.clear_log();
        let answer = app.provision_claims(provider, claims).await;
        assert!(
            matches!(answer.status, 200 | 403),
            "{provider}/{case}: {} {}",
            answer.status,
            answer.body
        );
        let events = audit.new_events();
        let expected = expected_events(&answer.body);
        assert_eq!(actions(&events), expected, "{provider}/{case}: {events:#?}");
        // Each change event stands for exactly one of the stand-in's writes, in order.
        let changed: Vec<Value> = events
            .iter()
            .filter(|e| e["action"] != "denied")
            .cloned()
            .collect();
        assert_eq!(
            actions(&changed),
            write_actions(&app.kratos.writes()),
            "{provider}/{case}"
        );
        for event in &events {
            assert_eq!(event["entry_point"], "api");
            assert_eq!(event["provider"], provider.as_str());
            assert!(
                event["subject_hash"]
                    .as_str()
                    .unwrap()
                    .starts_with("hmac-sha256:")
            );
            assert!(event["request_id"].is_string(), "{event}");
            request_ids.push(event["request_id"].clone());
            match event["action"].as_str().unwrap() {
                "denied" => {
                    refusals += 1;
                    assert_eq!(
                        event["denial_code"], answer.body["code"],
                        "{provider}/{case}"
                    );
                }
                "created" => {
                    changes += 1;
                    assert!(event["identity_id"].is_null());
                    assert!(event["mapper_sha256"].is_string());
                    let fields = event["changes"].as_array().unwrap();
                    assert!(fields.iter().any(|c| c["field"] == "traits.email"));
                }
                action => {
                    changes += 1;
                    assert_eq!(
                        event["identity_id"], answer.body["identity_id"],
                        "{provider}/{case} {action}"
                    );
                }
            }
            if event["action"] == "updated" {
                // The fields the answer names, with what Kratos held before and the mapper gave.
                let fields: Vec<&Value> = event["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| &c["field"])
                    .collect();
                let named: Vec<&Value> =
                    answer.body["changed"].as_array().unwrap().iter().collect();
                assert_eq!(fields, named, "{provider}/{case}");
                for change in event["changes"].as_array().unwrap() {
                    assert_ne!(change["before"], change["after"], "{change}");
                }
            }
        }
    }
    assert!(
        changes >= 8 && refusals >= 3,
        "{changes} changes, {refusals} refusals"
    );
    // Values are plain here, and an e-mail trait may equal the subject: everything else.
    let text: String = audit
        .events()
        .into_iter()
        .map(|mut event| {
            event["changes"] = Value::Null;
            event.to_string()
        })
        .collect();
    for subject in subjects(&fixtures) {
        assert!(
            !text.contains(&subject),
            "an event holds the subject {subject}"
        );
    }
    // One request id per request: a demotion's two events share theirs.
    let mut distinct = request_ids.clone();
    distinct.dedup();
    assert!(distinct.len() <= fixtures.len());
}

#[actix_web::test]
async fn a_demotion_is_two_events_with_the_role_before_and_after_and_sessions_revoked() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let admin = crate::helpers::fixture("okta-acme", "admin");
    let created = app.provision_claims("okta-acme", &admin).await;
    assert_eq!(created.body["action"], "created");
    audit.new_events();

    let demoted = crate::helpers::fixture("okta-acme", "demoted");
    let answer = app.provision_claims("okta-acme", &demoted).await;
    assert_eq!(answer.body["sessions_revoked"], true, "{}", answer.body);

    let events = audit.new_events();
    assert_eq!(actions(&events), ["sessions_revoked", "updated"]);
    assert_eq!(events[0]["request_id"], events[1]["request_id"]);
    let role = events[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "traits.role")
        .expect("the role change");
    assert_eq!(role["before"], "admin");
    assert_eq!(role["after"], "user");
    assert_eq!(events[1]["values"], "plain");
}

#[actix_web::test]
async fn with_values_hashed_no_event_holds_a_claim_value_or_a_subject() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "hashed").await;
    let fixtures = claims_fixtures();
    let mut personal = Vec::new();
    for (provider, _, claims) in &fixtures {
        app.provision_claims(provider, claims).await;
        personal_strings(claims, &mut personal);
    }
    let events = audit.events();
    assert!(events.iter().any(|e| e["action"] == "updated"));
    for event in &events {
        assert_eq!(event["values"], "hashed");
        for change in event["changes"].as_array().unwrap() {
            for side in [&change["before"], &change["after"]] {
                assert!(
                    side.is_null() || side.as_str().is_some_and(|s| s.starts_with("hmac-sha256:")),
                    "{change}"
                );
            }
        }
    }
    let text = audit.text();
    personal.sort();
    personal.dedup();
    // A provider id is no personal data, though a claim may name the customer too.
    personal.retain(|value| {
        !fixtures
            .iter()
            .any(|(provider, ..)| provider.contains(value.as_str()))
    });
    assert!(personal.len() > 20);
    for value in personal {
        assert!(!text.contains(&value), "the audit file holds {value:?}");
    }
}

#[actix_web::test]
async fn registrations_through_the_hook_yield_one_event_each_with_the_trigger_id() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let fixtures = claims_fixtures();
    for (n, (provider, case, claims)) in fixtures.iter().enumerate() {
        app.kratos.clear_log();
        let trigger = format!("registration-trigger-{n}");
        let body = registration_body(provider, claims);
        let answer = call(&app, "registration", &body, &trigger, Some(HOOK_SECRET)).await;
        let events = audit.new_events();
        let expected: Vec<&str> = match answer.status {
            200 => vec!["created"],
            403 => vec!["denied"],
            // The carried claims themselves are unusable: refused before the use case.
            _ => vec![],
        };
        assert_eq!(
            actions(&events),
            expected,
            "{provider}/{case}: {:?}",
            answer.body
        );
        // Kratos persists a registration itself: kratos-jit wrote nothing.
        assert!(app.kratos.writes().is_empty(), "{provider}/{case}");
        for event in &events {
            assert_eq!(event["entry_point"], "registration_hook");
            assert_eq!(event["trigger_id"], trigger.as_str());
            assert!(event["identity_id"].is_null());
        }
    }
    assert!(!audit.events().is_empty());
    // A retry of the same trigger gets the remembered answer: no second event.
    let (provider, _, claims) = &fixtures[0];
    let body = registration_body(provider, claims);
    call(
        &app,
        "registration",
        &body,
        "registration-trigger-0",
        Some(HOOK_SECRET),
    )
    .await;
    assert!(audit.new_events().is_empty());
}

#[actix_web::test]
async fn a_login_hook_demotion_is_audited_with_its_trigger_id() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let admin = crate::helpers::fixture("okta-acme", "admin");
    let id = app.provision_claims("okta-acme", &admin).await.body["identity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    audit.new_events();
    let demoted = crate::helpers::fixture("okta-acme", "demoted");
    let body = crate::hooks::fresh_login_body("okta-acme", &demoted, &id);
    app.kratos.clear_log();

    let answer = call(&app, "login", &body, "login-trigger-7", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let events = audit.new_events();
    assert_eq!(actions(&events), ["sessions_revoked", "updated"]);
    assert_eq!(actions(&events), write_actions(&app.kratos.writes()));
    for event in &events {
        assert_eq!(event["entry_point"], "login_hook");
        assert_eq!(event["trigger_id"], "login-trigger-7");
        assert_eq!(event["identity_id"], id.as_str());
    }
}

#[actix_web::test]
async fn with_the_sink_unwritable_a_change_is_refused_with_503_and_nothing_is_written() {
    let app = spawn_app_with(&[
        ("KRATOS_JIT__AUDIT__SINK", "file"),
        ("KRATOS_JIT__AUDIT__FILE", "/dev/full"),
    ])
    .await;
    let admin = crate::helpers::fixture("okta-acme", "admin");

    let answer = app.provision_claims("okta-acme", &admin).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit"),
        "{}",
        answer.body
    );
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
    assert!(app.kratos.identities().is_empty());

    // The registration hook refuses in its own form (a 4xx Kratos shows), and Kratos is told
    // nothing to persist.
    let body = registration_body("okta-acme", &admin);
    let answer = call(&app, "registration", &body, "t-1", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let context = &answer.body.as_ref().unwrap()["messages"][0]["messages"][0]["context"];
    assert_eq!(context["code"], json!("unavailable"), "{:?}", answer.body);
    assert!(app.kratos.writes().is_empty());

    // The login hook refuses a sign-in whose demotion cannot be recorded, before revoking or
    // writing anything.
    let ada = app.kratos.insert_identity(json!({
        "schema_id": "default",
        "traits": {"email": "ada@acme.example", "tenant_id": "tenant-acme", "first_name": "Ada",
                   "last_name": "Lovelace", "role": "admin"},
        "credentials": {"oidc": {"config": {"providers": [
            {"provider": "okta-acme", "subject": "ada@acme.example"}
        ]}}},
    }));
    app.kratos.clear_log();
    let demoted = crate::helpers::fixture("okta-acme", "demoted");
    let body = crate::hooks::fresh_login_body("okta-acme", &demoted, ada["id"].as_str().unwrap());
    let answer = call(&app, "login", &body, "t-2", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let context = &answer.body.as_ref().unwrap()["messages"][0]["messages"][0]["context"];
    assert_eq!(context["code"], json!("unavailable"), "{:?}", answer.body);
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());

    // A refusal writes nothing to Kratos: it is still answered as the refusal it is.
    let foreign = crate::helpers::fixture("okta-acme", "foreign-domain");
    assert_eq!(
        app.provision_claims("okta-acme", &foreign).await.status,
        403
    );
}

#[actix_web::test]
async fn with_on_failure_proceed_an_unwritable_sink_lets_the_change_through() {
    let app = spawn_app_with(&[
        ("KRATOS_JIT__AUDIT__FILE", "/dev/full"),
        ("KRATOS_JIT__AUDIT__ON_FAILURE", "proceed"),
    ])
    .await;
    let admin = crate::helpers::fixture("okta-acme", "admin");
    let answer = app.provision_claims("okta-acme", &admin).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(app.kratos.identities().len(), 1);
}

#[actix_web::test]
async fn the_login_hooks_refusal_of_an_identitys_current_traits_is_audited() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let id = "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f";
    let foreign = crate::helpers::fixture("okta-acme", "foreign-domain");
    let body = crate::hooks::stale_login_body("okta-acme", &foreign, id);

    let answer = call(&app, "login", &body, "login-trigger-9", Some(HOOK_SECRET)).await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    let events = audit.new_events();
    assert_eq!(actions(&events), ["denied"]);
    assert_eq!(events[0]["denial_code"], "foreign_domain");
    assert_eq!(events[0]["identity_id"], id);
    assert_eq!(events[0]["trigger_id"], "login-trigger-9");
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn an_answer_names_the_request_id_its_events_carry() {
    let audit = AuditFile::new();
    let app = spawn(&audit, "plain").await;
    let admin = crate::helpers::fixture("okta-acme", "admin");
    let response = app
        .client
        .post(format!("{}/v1/provision", app.address))
        .bearer_auth(crate::helpers::TRUSTED_SECRET)
        .json(&json!({"provider": "okta-acme", "claims": admin}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = audit.new_events();
    assert_eq!(actions(&events), ["created"]);
    assert_eq!(events[0]["request_id"], header.as_str());
}
