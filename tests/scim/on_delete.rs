//! `DELETE /Users/{id}` with `[scim] on_delete = "delete"` (a copy of the provider folder with
//! okta-acme so set): the Kratos identity and its sessions go, the user is 404 afterwards, its
//! group memberships go, a later create of the same userName is a new identity, and the other
//! provider keeps the default (deactivate).

use serde_json::json;

use super::common::{
    ACME, App, GLOBEX, GROUP_URN, GROUPS, Options, USER_URN, USERS, assert_error, assert_list,
    encode, providers_copy, spawn_with,
};

async fn spawn_deleting() -> (App, tempfile::TempDir) {
    let providers = providers_copy(|name, text| {
        if name == "okta-acme" {
            let edited = text.replace("on_delete = \"deactivate\"", "on_delete = \"delete\"");
            assert_ne!(edited, text, "okta-acme's provider.toml names on_delete");
            edited
        } else {
            text
        }
    });
    let app = spawn_with(Options {
        providers: providers.path().to_owned(),
        ..Options::default()
    })
    .await;
    (app, providers)
}

#[actix_web::test]
async fn on_delete_delete_removes_the_identity_its_sessions_and_memberships() {
    let (app, _providers) = spawn_deleting().await;
    let created = app.request("POST", USERS, ACME, Some(&super::ada())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let group =
        json!({"schemas": [GROUP_URN], "displayName": "Acme-Admins", "members": [{"value": id}]});
    let group = app.send("POST", GROUPS, ACME, &group).await;
    assert_eq!(group.status, 201, "{}", group.text);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.role(&id), "admin");
    app.kratos.add_session(&id);

    let at = format!("{USERS}/{id}");
    let reply = app.request("DELETE", &at, ACME, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty());
    assert!(app.identity(&id).is_null(), "the Kratos identity is gone");
    assert!(app.kratos.identities().is_empty());
    assert_eq!(app.sessions(&id).await, 0);
    assert_error(&app.request("GET", &at, ACME, None).await, 404);
    assert_error(&app.request("DELETE", &at, ACME, None).await, 404);
    let check = format!(
        "{USERS}?filter={}",
        encode("userName eq \"ada@acme.example\"")
    );
    let (_, list) = app.call("GET", &check, ACME, None).await;
    assert_list(&list, 0, 1, 0);
    let (_, group) = app
        .call("GET", &format!("{GROUPS}/{gid}"), ACME, None)
        .await;
    assert!(
        group["members"].as_array().is_none_or(Vec::is_empty),
        "{group}"
    );

    // The same userName again is a new identity, without the old role.
    let again = app.request("POST", USERS, ACME, Some(&super::ada())).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let new_id = again.body["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(app.kratos.identities().len(), 1);
    assert_eq!(app.role(&new_id), "guest");
    assert_eq!(app.identity(&new_id)["state"], "active");
}

#[actix_web::test]
async fn on_delete_delete_converges_when_the_identity_is_already_gone_from_kratos() {
    let (app, _providers) = spawn_deleting().await;
    let id = app
        .request("POST", USERS, ACME, Some(&super::ada()))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone deleted the identity in Kratos directly.
    let url = format!("{}/admin/identities/{id}", app.kratos.base_url());
    let status = app.client.delete(url).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 204);
    let at = format!("{USERS}/{id}");
    let reply = app.request("DELETE", &at, ACME, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_error(&app.request("GET", &at, ACME, None).await, 404);
}

#[actix_web::test]
async fn on_delete_is_per_provider_the_other_one_still_deactivates() {
    let (app, _providers) = spawn_deleting().await;
    let user = json!({
        "schemas": [USER_URN],
        "userName": "bob@globex.example",
        "externalId": "a1b2c3d4-0000-4000-8000-00000000b0b0",
        "emails": [{"value": "bob@globex.example", "type": "work", "primary": true}],
        "active": true
    });
    let created = app
        .send("POST", "/scim/v2/entra-globex/Users", GLOBEX, &user)
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let reply = app
        .request(
            "DELETE",
            &format!("/scim/v2/entra-globex/Users/{id}"),
            GLOBEX,
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive", "kept, deactivated");
}
