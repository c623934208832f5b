//! The SCIM lifecycle in the audit trail (docs/audit.md): a create, a deactivation with the
//! sessions it revokes, a reactivation and a delete are events of their own, matching the
//! stand-in's writes one for one; with the sink unwritable the change is a SCIM 503 and
//! nothing is written to Kratos.

use serde_json::{Value, json};

use crate::audit_events::{AuditFile, actions, write_actions};
use crate::common::{ACME, App, Options, USERS, assert_error, patch, providers_copy, spawn_with};

async fn spawn(audit: &AuditFile, providers: Option<&tempfile::TempDir>) -> App {
    let mut options = Options {
        env: audit.env("plain"),
        ..Options::default()
    };
    if let Some(providers) = providers {
        options.providers = providers.path().to_owned();
    }
    spawn_with(options).await
}

fn grace() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@acme.example",
        "externalId": "00u1acmegrace",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": "grace@acme.example", "type": "work", "primary": true}],
        "active": true
    })
}

async fn start_session(app: &App, id: &str) {
    let url = format!("{}/admin/identities/{id}/sessions", app.kratos.base_url());
    let answer = app.client.post(url).send().await.unwrap();
    assert!(answer.status().is_success());
}

/// The events of one request, checked against the stand-in's writes of that request.
fn request_events(app: &App, audit: &AuditFile, id: &str) -> Vec<String> {
    let events = audit.new_events();
    assert_eq!(
        actions(&events),
        write_actions(&app.kratos.writes()),
        "{events:#?}"
    );
    for event in &events {
        assert_eq!(event["entry_point"], "scim");
        assert_eq!(event["provider"], "okta-acme");
        assert!(event["request_id"].is_string());
        if event["action"] != "created" {
            assert_eq!(event["identity_id"], id, "{event}");
        }
        assert!(event["subject_hash"].is_string(), "{event}");
    }
    app.kratos.clear_log();
    actions(&events)
}

#[actix_web::test]
async fn the_scim_lifecycle_is_audited_create_deactivate_with_sessions_reactivate_delete() {
    let audit = AuditFile::new();
    let app = spawn(&audit, None).await;

    let created = app.send("POST", USERS, ACME, &grace()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(request_events(&app, &audit, &id), ["created"]);
    start_session(&app, &id).await;
    app.kratos.clear_log();

    // Okta's deactivation: the identity inactive, then its sessions revoked, each announced.
    let deactivate = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let path = format!("{USERS}/{id}");
    let reply = app.send("PATCH", &path, ACME, &deactivate).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.sessions(&id).await, 0);
    assert_eq!(
        request_events(&app, &audit, &id),
        ["deactivated", "sessions_revoked"]
    );

    let reactivate = patch(json!([{"op": "replace", "value": {"active": true}}]));
    let reply = app.send("PATCH", &path, ACME, &reactivate).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(request_events(&app, &audit, &id), ["reactivated"]);

    // okta-acme's `on_delete` is deactivate.
    let (status, _) = app.call("DELETE", &path, ACME, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        request_events(&app, &audit, &id),
        ["deactivated", "sessions_revoked"]
    );
    assert_eq!(audit.text().lines().count(), 6, "{}", audit.text());
    // The subject (okta-acme's is the userName) is only ever hashed; values are plain here.
    for mut event in audit.events() {
        event["changes"] = Value::Null;
        assert!(!event.to_string().contains("grace@acme.example"), "{event}");
    }
}

#[actix_web::test]
async fn a_scim_delete_that_deletes_the_identity_is_audited() {
    let providers = providers_copy(|file, text| {
        if file == "okta-acme" {
            text.replace("on_delete = \"deactivate\"", "on_delete = \"delete\"")
        } else {
            text
        }
    });
    let audit = AuditFile::new();
    let app = spawn(&audit, Some(&providers)).await;
    let created = app.send("POST", USERS, ACME, &grace()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    request_events(&app, &audit, &id);

    let (status, _) = app
        .call("DELETE", &format!("{USERS}/{id}"), ACME, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        request_events(&app, &audit, &id),
        ["sessions_revoked", "deleted"]
    );
    assert!(app.kratos.identities().is_empty());
}

#[actix_web::test]
async fn with_the_sink_unwritable_a_scim_change_is_a_503_and_nothing_is_written() {
    let app = spawn_with(Options {
        env: vec![
            ("KRATOS_JIT__AUDIT__SINK", "file".into()),
            ("KRATOS_JIT__AUDIT__FILE", "/dev/full".into()),
        ],
        ..Options::default()
    })
    .await;
    let reply = app.send("POST", USERS, ACME, &grace()).await;
    assert_error(&reply, 503);
    assert!(reply.text.contains("audit"), "{}", reply.text);
    assert!(app.kratos.writes().is_empty(), "{:?}", app.kratos.writes());
    assert!(app.kratos.identities().is_empty());
}
