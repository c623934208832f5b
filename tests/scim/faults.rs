//! Kratos or the database failing before or in the middle of a SCIM request. What must hold:
//! the IdP gets a 5xx (a 503 with `Retry-After` when retrying helps), no half-applied change
//! leaves the store ahead of Kratos (above all: never a user the store calls inactive who can
//! still sign in), and the same request sent again converges on the intended state.

use std::time::Duration;

use kratos_jit::standin::Fault;
use serde_json::{Value, json};

use super::common::{
    ACME, App, GROUP_URN, GROUPS, Options, Reply, USERS, assert_error, encode, patch,
    postgres_database, postgres_down, postgres_up, spawn_with,
};

/// The Kratos client gives up quickly: one retry, a short deadline.
fn quick_kratos() -> Vec<(&'static str, String)> {
    vec![
        ("KRATOS_JIT__KRATOS__MAX_RETRIES", "1".into()),
        ("KRATOS_JIT__KRATOS__REQUEST_TIMEOUT", "1s".into()),
        ("KRATOS_JIT__KRATOS__DEADLINE", "2s".into()),
    ]
}

async fn spawn_quick() -> App {
    spawn_with(Options {
        env: quick_kratos(),
        ..Options::default()
    })
    .await
}

fn ada() -> Value {
    serde_json::from_str(&super::ada()).unwrap()
}

fn deactivation() -> Value {
    patch(json!([{"op": "replace", "value": {"active": false}}]))
}

/// A 503 SCIM error that tells the client when to retry.
fn assert_retry_later(reply: &Reply) {
    assert_error(reply, 503);
    let seconds: u64 = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on a 503: {}", reply.text))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&seconds));
}

/// Fails every request on the identity `id` (any method) until cleared.
fn fail_identity(app: &App, id: &str, status: u16) {
    app.kratos.set_fault(Fault::FailMatching {
        method: None,
        path_suffix: format!("/{id}"),
        count: 1000,
        status,
    });
}

/// Kratos applies the state change but fails every session revocation: a deactivation stops
/// half-way, after Kratos and before the store.
fn fail_session_revocation(app: &App) {
    app.kratos.set_fault(Fault::FailMatching {
        method: Some("DELETE".into()),
        path_suffix: "/sessions".into(),
        count: 1000,
        status: 500,
    });
}

async fn stored_active(app: &App, id: &str) -> Value {
    let (status, user) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!(status, 200, "{user}");
    user["active"].clone()
}

#[actix_web::test]
async fn kratos_down_on_create_is_503_with_retry_after_stores_nothing_and_the_retry_creates() {
    let app = spawn_quick().await;
    app.kratos.set_fault(Fault::RefuseConnections);
    let reply = app.send("POST", USERS, ACME, &ada()).await;
    assert_retry_later(&reply);
    let (status, list) = app.call("GET", USERS, ACME, None).await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(0)));
    // A 5xx from Kratos is the same story.
    app.kratos.set_fault(Fault::FailNext {
        count: 100,
        status: 500,
    });
    let reply = app.send("POST", USERS, ACME, &ada()).await;
    assert_retry_later(&reply);
    app.kratos.set_fault(Fault::None);
    assert!(app.kratos.identities().is_empty());
    let (_, list) = app.call("GET", USERS, ACME, None).await;
    assert_eq!(list["totalResults"], 0);

    let reply = app.send("POST", USERS, ACME, &ada()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(app.kratos.identities().len(), 1);
    assert_eq!(
        app.identity(reply.body["id"].as_str().unwrap())["state"],
        "active"
    );
}

#[actix_web::test]
async fn kratos_failing_after_the_deactivation_keeps_the_store_behind_and_the_retry_converges() {
    let app = spawn_quick().await;
    let created = app.send("POST", USERS, ACME, &ada()).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.kratos.add_session(&id);

    // The state change goes through, the session revocation fails.
    fail_session_revocation(&app);
    let at = format!("{USERS}/{id}");
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_retry_later(&reply);
    // Kratos is ahead (inactive: no sign-in), the store still says active: never the reverse.
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(stored_active(&app, &id).await, true);
    let (status, _) = app
        .sso_login("okta-acme", &super::acme_claims("admin"))
        .await;
    assert_eq!(status, 403, "an inactive identity cannot sign in meanwhile");

    app.kratos.set_fault(Fault::None);
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["active"], false);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    assert_eq!(stored_active(&app, &id).await, false);
}

#[actix_web::test]
async fn a_half_applied_deactivation_followed_by_active_true_reactivates_the_identity() {
    let app = spawn_quick().await;
    let created = app.send("POST", USERS, ACME, &ada()).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    fail_session_revocation(&app);
    let at = format!("{USERS}/{id}");
    assert_retry_later(&app.send("PATCH", &at, ACME, &deactivation()).await);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(stored_active(&app, &id).await, true);
    app.kratos.set_fault(Fault::None);

    // The IdP does not retry the deactivation: the user is active again there. The store
    // already says active, Kratos does not; Kratos's state decides.
    // Okta's reactivation changes nothing in the store; it still reactivates Kratos.
    let reactivation = patch(json!([{"op": "replace", "value": {"active": true}}]));
    let reply = app.send("PATCH", &at, ACME, &reactivation).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["active"], true);
    assert_eq!(app.identity(&id)["state"], "active");
    // Once both agree, the same PATCH writes nothing.
    let writes = app.kratos.requests().len();
    let version = reply.body["meta"]["version"].clone();
    let again = app.send("PATCH", &at, ACME, &reactivation).await;
    assert_eq!(again.body["meta"]["version"], version);
    assert!(
        app.kratos.requests()[writes..]
            .iter()
            .all(|r| r.method == "GET"),
        "{:?}",
        &app.kratos.requests()[writes..]
    );

    // PUT with `active: true` after the same fault reactivates too.
    fail_session_revocation(&app);
    assert_retry_later(&app.send("PATCH", &at, ACME, &deactivation()).await);
    app.kratos.set_fault(Fault::None);
    let mut put = ada();
    put["title"] = json!("CTO");
    let reply = app.send("PUT", &at, ACME, &put).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "active");
    let (status, _) = app
        .sso_login("okta-acme", &super::acme_claims("admin"))
        .await;
    assert_eq!(status, 200, "reactivated: the user signs in again");
}

#[actix_web::test]
async fn kratos_failing_before_the_deactivation_changes_nothing_and_the_retry_converges() {
    let app = spawn_quick().await;
    let created = app.send("POST", USERS, ACME, &ada()).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.kratos.add_session(&id);
    let before = app.identity(&id);

    for status in [503, 500, 429] {
        fail_identity(&app, &id, status);
        let at = format!("{USERS}/{id}");
        let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
        assert_retry_later(&reply);
        app.kratos.set_fault(Fault::None);
        assert_eq!(app.identity(&id), before, "after a Kratos {status}");
        assert_eq!(app.sessions(&id).await, 1);
        assert_eq!(stored_active(&app, &id).await, true);
    }
    // Kratos down altogether: the same.
    app.kratos.set_fault(Fault::RefuseConnections);
    let at = format!("{USERS}/{id}");
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_retry_later(&reply);
    app.kratos.set_fault(Fault::None);
    assert_eq!(app.identity(&id), before);
    assert_eq!(stored_active(&app, &id).await, true);

    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    assert_eq!(stored_active(&app, &id).await, false);
}

#[actix_web::test]
async fn kratos_failing_between_two_members_of_a_group_change_converges_on_retry() {
    let app = spawn_quick().await;
    let ada = app.send("POST", USERS, ACME, &ada()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grace_body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@acme.example",
        "externalId": "00u1acmegrace",
        "emails": [{"value": "grace@acme.example", "type": "work", "primary": true}],
        "active": true
    });
    let grace = app.send("POST", USERS, ACME, &grace_body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = json!({"schemas": [GROUP_URN], "displayName": "Acme-Admins",
        "members": [{"value": ada}, {"value": grace}]});
    let created = app.send("POST", GROUPS, ACME, &group).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.role(&ada), "admin");
    assert_eq!(app.role(&grace), "admin");

    // Both leave in one request; Kratos fails on whichever of them comes second.
    let (first, second) = if ada < grace {
        (ada.clone(), grace.clone())
    } else {
        (grace.clone(), ada.clone())
    };
    fail_identity(&app, &second, 503);
    let empty = patch(json!([{"op": "replace", "path": "members", "value": []}]));
    let at = format!("{GROUPS}/{gid}");
    let reply = app.send("PATCH", &at, ACME, &empty).await;
    assert_retry_later(&reply);
    app.kratos.set_fault(Fault::None);
    assert_eq!(
        app.role(&first),
        "guest",
        "Kratos may be ahead of the store"
    );
    assert_eq!(
        app.role(&second),
        "admin",
        "the failed write changed nothing"
    );
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(
        read["members"].as_array().map(Vec::len),
        Some(2),
        "the store records no membership change Kratos has not made: {read}"
    );

    let reply = app.send("PATCH", &at, ACME, &empty).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.role(&ada), "guest");
    assert_eq!(app.role(&grace), "guest");
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert!(
        read["members"].as_array().is_none_or(Vec::is_empty),
        "{read}"
    );
}

#[actix_web::test]
async fn kratos_slower_than_the_deadline_is_503_its_late_writes_never_put_the_store_ahead() {
    let app = spawn_quick().await;
    let id = app.send("POST", USERS, ACME, &ada()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.kratos.add_session(&id);
    let at = format!("{USERS}/{id}");
    // Each attempt times out after 1 s, but the stand-in still applies it afterwards: the
    // outcome of a timed-out call is unknown to kratos-jit.
    app.kratos
        .set_fault(Fault::Delay(Duration::from_millis(1500)));
    let started = std::time::Instant::now();
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_retry_later(&reply);
    assert!(started.elapsed() < Duration::from_secs(9), "bounded time");
    app.kratos.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(1600)).await; // late writes land
    assert_eq!(
        stored_active(&app, &id).await,
        true,
        "the store is not ahead"
    );

    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    assert_eq!(stored_active(&app, &id).await, false);
}

#[actix_web::test]
async fn kratos_failing_on_a_user_delete_keeps_the_user_and_the_retry_deletes() {
    let app = spawn_quick().await;
    let id = app.send("POST", USERS, ACME, &ada()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = format!("{USERS}/{id}");
    fail_identity(&app, &id, 502);
    let reply = app.request("DELETE", &at, ACME, None).await;
    assert!(reply.status >= 500, "{}", reply.text);
    assert_eq!(reply.body["schemas"][0], super::common::ERROR);
    app.kratos.set_fault(Fault::None);
    assert_eq!(app.identity(&id)["state"], "active");
    assert_eq!(stored_active(&app, &id).await, true, "still visible");
    let reply = app.request("DELETE", &at, ACME, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_error(&app.request("GET", &at, ACME, None).await, 404);
}

// ---- the database (PostgreSQL, taken down per test) ----

async fn spawn_on_postgres() -> (App, String) {
    let url = postgres_database().await;
    let app = spawn_with(Options {
        database_url: url.clone(),
        env: quick_kratos(),
        ..Options::default()
    })
    .await;
    (app, url)
}

#[actix_web::test]
async fn the_database_down_is_503_with_retry_after_and_nothing_reaches_kratos() {
    let (app, url) = spawn_on_postgres().await;
    let id = app.send("POST", USERS, ACME, &ada()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.kratos.add_session(&id);
    let at = format!("{USERS}/{id}");
    let before = app.identity(&id);
    let writes = app.kratos.writes().len();

    postgres_down(&url).await;
    let filter = format!(
        "{USERS}?filter={}",
        encode("userName eq \"ada@acme.example\"")
    );
    assert_retry_later(&app.request("GET", &at, ACME, None).await);
    assert_retry_later(&app.request("GET", &filter, ACME, None).await);
    assert_retry_later(&app.send("PATCH", &at, ACME, &deactivation()).await);
    assert_retry_later(&app.request("DELETE", &at, ACME, None).await);
    let grace = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@acme.example",
        "emails": [{"value": "grace@acme.example", "primary": true}]});
    assert_retry_later(&app.send("POST", USERS, ACME, &grace).await);
    assert_eq!(
        app.kratos.writes().len(),
        writes,
        "nothing reaches Kratos when the store cannot even be read"
    );
    assert_eq!(app.identity(&id), before);

    postgres_up(&url).await;
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    assert_eq!(stored_active(&app, &id).await, false);
}

/// Sends `body` and takes the database down while the request waits on Kratos (every Kratos
/// request is delayed, and the first one logged means the store has been read).
async fn with_database_lost_mid_request(
    app: &App,
    url: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> Reply {
    app.kratos.clear_log();
    app.kratos
        .set_fault(Fault::Delay(Duration::from_millis(600)));
    let request = app.send(method, path, ACME, body);
    let saboteur = async {
        while app.kratos.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        postgres_down(url).await;
    };
    let (reply, ()) = futures_util::future::join(request, saboteur).await;
    app.kratos.set_fault(Fault::None);
    reply
}

#[actix_web::test]
async fn the_database_lost_after_kratos_deactivated_leaves_no_sign_in_and_the_retry_converges() {
    let (app, url) = spawn_on_postgres().await;
    let id = app.send("POST", USERS, ACME, &ada()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.kratos.add_session(&id);
    let at = format!("{USERS}/{id}");

    let reply = with_database_lost_mid_request(&app, &url, "PATCH", &at, &deactivation()).await;
    assert_retry_later(&reply);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);

    postgres_up(&url).await;
    assert_eq!(
        stored_active(&app, &id).await,
        true,
        "the store is behind Kratos, never ahead"
    );
    let reply = app.send("PATCH", &at, ACME, &deactivation()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(stored_active(&app, &id).await, false);
}

#[actix_web::test]
async fn the_database_lost_after_kratos_created_the_identity_the_retried_post_adopts_it() {
    let (app, url) = spawn_on_postgres().await;
    let reply = with_database_lost_mid_request(&app, &url, "POST", USERS, &ada()).await;
    assert_retry_later(&reply);
    assert_eq!(app.kratos.identities().len(), 1, "Kratos has the identity");
    let kratos_id = app.kratos.identities()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    postgres_up(&url).await;
    let (_, list) = app.call("GET", USERS, ACME, None).await;
    assert_eq!(list["totalResults"], 0, "the store has no half of it");
    let reply = app.send("POST", USERS, ACME, &ada()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.body["id"],
        kratos_id.as_str(),
        "adopted, not duplicated"
    );
    assert_eq!(app.kratos.identities().len(), 1);
    assert_eq!(app.identity(&kratos_id)["state"], "active");
}
