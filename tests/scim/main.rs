//! The SCIM endpoints of `serve`'s application against the Kratos stand-in, store on
//! `sqlite::memory:` (and, in `postgres`, on PostgreSQL).
//!
//! - `okta`: Okta's documented user lifecycle and group push (docs/scim.md §2).
//! - `entra`: Entra ID's sequences, with and without `aadOptscim062020` (docs/scim.md §3).
//! - `faults`: Kratos or the database failing before or in the middle of a request.
//! - `postgres`: the round trip and isolation tests below on PostgreSQL.
//! - `on_delete`: `DELETE /Users` with `[scim] on_delete = "delete"`.

mod audit;
#[path = "../common/audit_events.rs"]
mod audit_events;
mod common;
mod entra;
mod faults;
mod okta;
mod on_delete;
#[path = "../common/pg_cluster.rs"]
mod pg_cluster;
mod postgres;
mod readiness;
#[path = "../common/serve.rs"]
mod serve;

use common::{ACME, App, GLOBEX, GROUPS, USERS, spawn};
use serde_json::{Value, json};

pub(crate) fn ada() -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@acme.example",
        "externalId": "00u1acmeada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@acme.example", "type": "work", "primary": true}],
        "active": true
    })
    .to_string()
}

#[actix_web::test]
async fn a_user_round_trip_creates_finds_deactivates_reactivates_and_deletes() {
    user_round_trip(spawn().await).await;
}

pub(crate) async fn user_round_trip(app: App) {
    let (status, created) = app.call("POST", USERS, ACME, Some(&ada())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.identity(&id)["state"], "active");
    assert_eq!(created["meta"]["resourceType"], "User");

    // Okta's existence check.
    let (status, list) = app
        .call(
            "GET",
            &format!(
                "{USERS}?filter=userName%20eq%20%22ADA@acme.example%22&startIndex=1&count=100"
            ),
            ACME,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], id);

    // A second POST of the same userName is a conflict and writes nothing.
    let before = app.kratos.identities().len();
    let (status, body) = app.call("POST", USERS, ACME, Some(&ada())).await;
    assert_eq!(
        (status, body["scimType"].as_str()),
        (409, Some("uniqueness"))
    );
    assert_eq!(app.kratos.identities().len(), before);

    // Okta's deactivation: state inactive, sessions gone, still visible.
    app.kratos.add_session(&id);
    assert_eq!(app.sessions(&id).await, 1);
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#;
    let (status, body) = app
        .call("PATCH", &format!("{USERS}/{id}"), ACME, Some(patch))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], false);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);

    // Entra's reactivation with a string.
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#;
    let (status, _) = app
        .call("PATCH", &format!("{USERS}/{id}"), ACME, Some(patch))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.identity(&id)["state"], "active");

    // DELETE deactivates (the default) and hides the user.
    let (status, _) = app
        .call("DELETE", &format!("{USERS}/{id}"), ACME, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.identity(&id)["state"], "inactive");
    let (status, body) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!(status, 404, "{body}");
}

#[actix_web::test]
async fn removing_a_user_from_the_admins_group_lowers_the_role_and_revokes_sessions() {
    group_demotion(spawn().await).await;
}

pub(crate) async fn group_demotion(app: App) {
    let (_, user) = app.call("POST", USERS, ACME, Some(&ada())).await;
    let id = user["id"].as_str().unwrap().to_owned();
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Acme-Admins",
        "members": [{"value": id}]
    });
    let (status, group) = app
        .call("POST", GROUPS, ACME, Some(&group.to_string()))
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(app.identity(&id)["traits"]["role"], "admin");
    let gid = group["id"].as_str().unwrap().to_owned();

    app.kratos.add_session(&id);
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"value": id}]}]
    });
    let (status, body) = app
        .call(
            "PATCH",
            &format!("{GROUPS}/{gid}"),
            ACME,
            Some(&patch.to_string()),
        )
        .await;
    // A group PATCH answers 204, as Entra and Okta document it.
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.identity(&id)["traits"]["role"], "guest");
    assert_eq!(app.sessions(&id).await, 0);
    let (_, user) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert!(
        user["groups"].as_array().is_none_or(Vec::is_empty),
        "{user}"
    );
}

#[actix_web::test]
async fn a_group_patch_answers_204_with_the_new_etag_or_the_group_when_attributes_are_asked() {
    let app = spawn().await;
    let reply = app
        .send("POST", USERS, ACME, &serde_json::from_str(&ada()).unwrap())
        .await;
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Acme-Admins",
    });
    let reply = app.send("POST", GROUPS, ACME, &group).await;
    let at = format!("{GROUPS}/{}", reply.body["id"].as_str().unwrap());
    let add = common::patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));

    let reply = app.send("PATCH", &at, ACME, &add).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty(), "{}", reply.text);
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(read["members"][0]["value"], id.as_str());
    assert_eq!(reply.header("etag"), read["meta"]["version"].as_str());

    let remove = common::patch(json!([{"op": "remove", "path": "members"}]));
    let reply = app
        .send(
            "PATCH",
            &format!("{at}?attributes=members,displayName"),
            ACME,
            &remove,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["displayName"], "Acme-Admins");
    assert!(
        reply.body["members"].as_array().is_none_or(Vec::is_empty),
        "{}",
        reply.text
    );
}

#[actix_web::test]
async fn another_providers_secret_sees_nothing_and_changes_nothing() {
    isolation(spawn().await).await;
}

pub(crate) async fn isolation(app: App) {
    let (_, user) = app.call("POST", USERS, ACME, Some(&ada())).await;
    let id = user["id"].as_str().unwrap().to_owned();
    let writes = app.kratos.writes().len();

    // Globex's secret on Acme's endpoint, and a wrong secret: 401.
    let (status, body) = app
        .call("GET", &format!("{USERS}/{id}"), GLOBEX, None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = app.call("GET", USERS, "wrong", None).await;
    assert_eq!(status, 401);

    // Acme's id on Globex's endpoint: 404, nothing of Acme in any answer, nothing written.
    let globex_user = format!("/scim/v2/entra-globex/Users/{id}");
    let (status, _) = app.call("GET", &globex_user, GLOBEX, None).await;
    assert_eq!(status, 404);
    let deactivate = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
    let (status, _) = app
        .call("PATCH", &globex_user, GLOBEX, Some(deactivate))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.call("DELETE", &globex_user, GLOBEX, None).await;
    assert_eq!(status, 404);
    let (status, list) = app
        .call("GET", "/scim/v2/entra-globex/Users", GLOBEX, None)
        .await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(0)));
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", "members": [{"value": id}]});
    let (status, body) = app
        .call(
            "POST",
            "/scim/v2/entra-globex/Groups",
            GLOBEX,
            Some(&group.to_string()),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(app.kratos.writes().len(), writes);
    assert_eq!(app.identity(&id)["state"], "active");
    let (_, groups) = app
        .call("GET", "/scim/v2/entra-globex/Groups", GLOBEX, None)
        .await;
    assert_eq!(groups["totalResults"], 0);

    // An unknown provider: 404.
    let (status, _) = app.call("GET", "/scim/v2/nobody/Users", ACME, None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn bad_input_is_a_scim_error_naming_it_and_nothing_is_written() {
    bad_input(spawn().await).await;
}

pub(crate) async fn bad_input(app: App) {
    let cases: [(&str, &str, u16, Option<&str>); 3] = [
        ("POST", "{not json", 400, Some("invalidSyntax")),
        (
            "POST",
            r#"{"schemas":["urn:example:nope"],"userName":"x"}"#,
            400,
            None,
        ),
        (
            "POST",
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":7}"#,
            400,
            None,
        ),
    ];
    for (method, body, status, scim_type) in cases {
        let (got, answer) = app.call(method, USERS, ACME, Some(body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(
            answer["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        if let Some(scim_type) = scim_type {
            assert_eq!(answer["scimType"], scim_type, "{answer}");
        }
    }
    let (status, answer) = app
        .call(
            "GET",
            &format!("{USERS}?filter=userName%20zz%20%22x%22"),
            ACME,
            None,
        )
        .await;
    assert_eq!(
        (status, answer["scimType"].as_str()),
        (400, Some("invalidFilter"))
    );
    let big = format!(r#"{{"userName":"{}"}}"#, "x".repeat(8000));
    let (status, _) = app.call("POST", USERS, ACME, Some(&big)).await;
    assert_eq!(status, 413);
    let (status, answer) = app.call("GET", "/scim/v2/okta-acme/Nope", ACME, None).await;
    assert_eq!((status, answer["status"].as_str()), (404, Some("404")));
    let (status, _) = app
        .call("DELETE", "/scim/v2/okta-acme/Schemas", ACME, None)
        .await;
    assert_eq!(status, 405);
    assert!(app.kratos.writes().is_empty());
    let (status, _) = app
        .call(
            "GET",
            "/scim/v2/okta-acme/ServiceProviderConfig",
            ACME,
            None,
        )
        .await;
    assert_eq!(status, 200, "the server keeps serving");
}

pub(crate) fn acme_claims(case: &str) -> Value {
    let path = format!(
        "{}/mappers/okta-acme/tests/{case}.claims.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[actix_web::test]
async fn the_seed_lifecycle_scim_creates_sso_finds_it_deactivation_refuses_the_next_login() {
    seed_lifecycle(spawn().await).await;
}

pub(crate) async fn seed_lifecycle(app: App) {
    // SCIM creates the user; the first SSO login of the same subject finds that identity.
    let (status, created) = app.call("POST", USERS, ACME, Some(&ada())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, answer) = app.sso_login("okta-acme", &acme_claims("admin")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["identity_id"], id.as_str(), "{answer}");
    assert_eq!(app.kratos.identities().len(), 1, "no second identity");

    // Deactivated over SCIM: inactive, sessions gone, and the next login is refused with
    // nothing written.
    app.kratos.add_session(&id);
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#;
    let (status, _) = app
        .call("PATCH", &format!("{USERS}/{id}"), ACME, Some(patch))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.sessions(&id).await, 0);
    let before = app.identity(&id);
    assert_eq!(before["state"], "inactive");
    let (status, answer) = app.sso_login("okta-acme", &acme_claims("demoted")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.to_string().contains("deactivated"), "{answer}");
    assert_eq!(app.identity(&id), before, "nothing written");
    assert_eq!(app.kratos.identities().len(), 1);

    // Reactivated over SCIM: the user signs in again.
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":true}]}"#;
    let (status, _) = app
        .call("PATCH", &format!("{USERS}/{id}"), ACME, Some(patch))
        .await;
    assert_eq!(status, 200);
    let (status, answer) = app.sso_login("okta-acme", &acme_claims("admin")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["identity_id"], id.as_str());
}

#[actix_web::test]
async fn a_list_without_a_filter_pages_over_users_then_groups() {
    let app = spawn().await;
    let mut users = Vec::new();
    for name in ["ada", "grace", "linus"] {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{name}@acme.example"),
            "externalId": format!("00u-{name}"),
            "emails": [{"value": format!("{name}@acme.example"), "primary": true}],
        });
        let reply = app.send("POST", USERS, ACME, &body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        users.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let mut groups = Vec::new();
    for name in ["Engineering", "Admins"] {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
        });
        let reply = app.send("POST", GROUPS, ACME, &body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        groups.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    // Another provider's resources are never counted.
    let globex = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@globex.example",
        "externalId": "globex-ada",
        "emails": [{"value": "ada@globex.example", "primary": true}],
    });
    let reply = app
        .send("POST", "/scim/v2/entra-globex/Users", GLOBEX, &globex)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    let ids = |list: &Value| -> Vec<String> {
        list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The root search: users in creation order, then groups; a page can span both.
    let search = |start: u64, count: u64| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "startIndex": start,
            "count": count,
        })
    };
    let everyone: Vec<String> = users.iter().chain(&groups).cloned().collect();
    for (start, count) in [(1, 5), (1, 2), (3, 2), (4, 1), (5, 9), (6, 3)] {
        let reply = app
            .send(
                "POST",
                "/scim/v2/okta-acme/.search",
                ACME,
                &search(start, count),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let want: Vec<String> = everyone
            .iter()
            .skip(start as usize - 1)
            .take(count as usize)
            .cloned()
            .collect();
        common::assert_list(&reply.body, 5, start, want.len() as u64);
        assert_eq!(ids(&reply.body), want, "startIndex={start} count={count}");
    }
    // `count=0`: the total alone (RFC 7644 §3.4.2.4).
    let (status, list) = app
        .call("GET", &format!("{USERS}?count=0"), ACME, None)
        .await;
    assert_eq!(status, 200, "{list}");
    common::assert_list(&list, 3, 1, 0);
    let (_, list) = app
        .call("GET", &format!("{GROUPS}?startIndex=2"), ACME, None)
        .await;
    common::assert_list(&list, 2, 2, 1);
    assert_eq!(ids(&list), vec![groups[1].clone()]);
}
