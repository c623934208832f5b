//! Okta's SCIM client as its protocol reference describes it (docs/scim.md §2): the user
//! lifecycle in the order Okta sends it, the import's paging, and group push. Every status, body
//! shape and the state left behind (the stand-in's identities, roles and sessions) is checked.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::common::{
    ACME, App, GROUP_URN, GROUPS, USER_URN, USERS, assert_error, assert_list, encode, patch, spawn,
};

/// A user as Okta creates it: Okta's own id as `externalId`, read-only `groups: []`, and a
/// random `password` that must never become a credential.
fn okta_user(login: &str, given: &str, family: &str, okta_id: &str) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": login,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": login, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": okta_id,
        "groups": [],
        "password": "r4nd0m-Okta-pw",
        "active": true
    })
}

/// No group memberships: `groups` empty or unassigned (RFC 7643 §2.4: the same thing).
fn no_groups(user: &Value) -> bool {
    user.get("groups")
        .is_none_or(|g| g.is_null() || g.as_array().is_some_and(Vec::is_empty))
}

/// Okta's existence check for `login`.
fn existence_check(login: &str) -> String {
    format!(
        "{USERS}?filter={}&startIndex=1&count=100",
        encode(&format!("userName eq \"{login}\""))
    )
}

/// Creates `login` the way Okta does (check, then POST); the new id.
async fn provision(app: &App, login: &str, given: &str, family: &str) -> String {
    let (status, list) = app.call("GET", &existence_check(login), ACME, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["totalResults"], 0, "{list}");
    let created = app
        .send(
            "POST",
            USERS,
            ACME,
            &okta_user(login, given, family, &format!("00u-{given}")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn okta_user_lifecycle_check_create_read_update_deactivate_reactivate_import() {
    user_lifecycle(spawn().await).await;
}

pub(crate) async fn user_lifecycle(app: App) {
    // 1. The existence check finds nothing: 200 and an empty ListResponse, integers throughout.
    let check = app
        .request("GET", &existence_check("ada@acme.example"), ACME, None)
        .await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert_eq!(check.header("content-type"), Some("application/scim+json"));
    assert_list(&check.body, 0, 1, 0);
    assert_eq!(check.body["Resources"], json!([]));
    assert!(app.kratos.writes().is_empty(), "a check writes nothing");

    // 2. Create: 201 with the user and its id, Location = meta.location; the password is
    // neither returned nor made a credential; the identity is active with the mapped traits.
    let body = okta_user("ada@acme.example", "Ada", "Lovelace", "00u1acmeada");
    let created = app.send("POST", USERS, ACME, &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = &created.body;
    let id = user["id"].as_str().expect("an id").to_owned();
    assert!(!id.is_empty());
    assert_eq!(user["schemas"], json!([USER_URN]));
    assert_eq!(user["userName"], "ada@acme.example");
    assert_eq!(user["externalId"], "00u1acmeada");
    assert_eq!(user["name"]["familyName"], "Lovelace");
    assert_eq!(user["active"], true);
    assert!(no_groups(user), "{user}");
    assert!(user.get("password").is_none(), "{user}");
    assert!(!created.text.contains("r4nd0m-Okta-pw"));
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(
        created.header("location"),
        user["meta"]["location"].as_str()
    );
    assert!(
        user["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{USERS}/{id}"))
    );
    let identity = app.identity(&id);
    assert_eq!(identity["state"], "active");
    assert_eq!(identity["traits"]["email"], "ada@acme.example");
    assert_eq!(identity["traits"]["tenant_id"], "tenant-acme");
    assert_eq!(identity["traits"]["first_name"], "Ada");
    assert_eq!(identity["traits"]["last_name"], "Lovelace");
    assert_eq!(identity["traits"]["role"], "guest");
    assert!(
        identity["credentials"].get("password").is_none(),
        "Okta's random password is no credential: {identity}"
    );
    assert!(!identity.to_string().contains("r4nd0m-Okta-pw"));

    // The check now finds the user, and a second create is a 409 that writes nothing.
    let (status, list) = app
        .call("GET", &existence_check("ada@acme.example"), ACME, None)
        .await;
    assert_eq!(status, 200);
    assert_list(&list, 1, 1, 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    let writes = app.kratos.writes().len();
    let again = app.send("POST", USERS, ACME, &body).await;
    assert_error(&again, 409);
    assert_eq!(again.body["scimType"], "uniqueness");
    assert_eq!(app.kratos.writes().len(), writes);

    // 3. Read, as Okta does before every PUT.
    let read = app
        .request("GET", &format!("{USERS}/{id}"), ACME, None)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["id"], id.as_str());
    assert_eq!(read.body["userName"], "ada@acme.example");
    assert_eq!(read.header("etag"), read.body["meta"]["version"].as_str());

    // 4. Update with PUT: the whole user, echoing id, meta and groups. 200 with the new values,
    // the identity re-mapped.
    let mut put = read.body.clone();
    put["name"]["familyName"] = json!("King");
    put["displayName"] = json!("Ada King");
    put["password"] = json!("another-random-pw");
    let updated = app.send("PUT", &format!("{USERS}/{id}"), ACME, &put).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["id"], id.as_str());
    assert_eq!(updated.body["name"]["familyName"], "King");
    assert_eq!(updated.body["displayName"], "Ada King");
    assert!(updated.body.get("password").is_none());
    assert_ne!(
        updated.body["meta"]["version"],
        read.body["meta"]["version"]
    );
    assert_eq!(app.identity(&id)["traits"]["last_name"], "King");
    let (_, read) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!(read["name"]["familyName"], "King");

    // A PUT that changes the SSO subject (userName here) is refused and writes nothing.
    let before = app.identity(&id);
    let writes = app.kratos.writes().len();
    let mut renamed = read.clone();
    renamed["userName"] = json!("ada.king@acme.example");
    let refused = app
        .send("PUT", &format!("{USERS}/{id}"), ACME, &renamed)
        .await;
    assert_error(&refused, 400);
    assert_eq!(refused.body["scimType"], "mutability");
    assert_eq!(app.kratos.writes().len(), writes);
    assert_eq!(app.identity(&id), before);
    let (_, still) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!(still["userName"], "ada@acme.example");
    assert_eq!(still["meta"]["version"], read["meta"]["version"]);

    // 5. Deactivation (OIN): a no-path replace of active. The identity is inactive and its
    // sessions are gone before the 200; the user stays visible to GET and to the check.
    app.kratos.add_session(&id);
    app.kratos.add_session(&id);
    assert_eq!(app.sessions(&id).await, 2);
    let deactivate = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let reply = app
        .send("PATCH", &format!("{USERS}/{id}"), ACME, &deactivate)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["active"], false);
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    let (status, read) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!((status, &read["active"]), (200, &json!(false)));
    let (_, list) = app
        .call("GET", &existence_check("ada@acme.example"), ACME, None)
        .await;
    assert_list(&list, 1, 1, 1);
    assert_eq!(list["Resources"][0]["active"], false);
    // Okta sends the deactivation again (e.g. suspend, then unassign): still 200, still inactive.
    let reply = app
        .send("PATCH", &format!("{USERS}/{id}"), ACME, &deactivate)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "inactive");

    // Reactivation (OIN): the same PATCH with true.
    let reactivate = patch(json!([{"op": "replace", "value": {"active": true}}]));
    let reply = app
        .send("PATCH", &format!("{USERS}/{id}"), ACME, &reactivate)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["active"], true);
    assert_eq!(app.identity(&id)["state"], "active");

    // AIW integrations (de)activate with PUT.
    let (_, read) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    let mut put = read.clone();
    put["active"] = json!(false);
    app.kratos.add_session(&id);
    let reply = app.send("PUT", &format!("{USERS}/{id}"), ACME, &put).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["active"], false);
    assert_eq!(app.identity(&id)["state"], "inactive");
    assert_eq!(app.sessions(&id).await, 0);
    // An update while inactive is applied and keeps the user inactive.
    put["title"] = json!("Countess");
    let reply = app.send("PUT", &format!("{USERS}/{id}"), ACME, &put).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        (&reply.body["title"], &reply.body["active"]),
        (&json!("Countess"), &json!(false))
    );
    assert_eq!(app.identity(&id)["state"], "inactive");
    put["active"] = json!(true);
    let reply = app.send("PUT", &format!("{USERS}/{id}"), ACME, &put).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.identity(&id)["state"], "active");
    assert_eq!(app.identity(&id)["traits"]["last_name"], "King");

    // 6. Import: startIndex + count until totalResults; pages are disjoint, cover everyone,
    // and the same page asked twice is the same.
    let mut everyone = BTreeSet::from([id.clone()]);
    for (login, given) in [
        ("grace@acme.example", "Grace"),
        ("linus@acme.example", "Linus"),
        ("barbara@acme.example", "Barbara"),
        ("edsger@acme.example", "Edsger"),
    ] {
        everyone.insert(provision(&app, login, given, "Acme").await);
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let (status, page) = app
            .call(
                "GET",
                &format!("{USERS}?startIndex={start}&count=2"),
                ACME,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let items = (5 - (start - 1)).min(2);
        assert_list(&page, 5, start, items);
        let (_, twice) = app
            .call(
                "GET",
                &format!("{USERS}?startIndex={start}&count=2"),
                ACME,
                None,
            )
            .await;
        assert_eq!(
            twice["Resources"], page["Resources"],
            "stable order across requests"
        );
        for user in page["Resources"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_owned());
        }
        start += 2;
        if start > 5 {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), everyone);
    let (_, all) = app
        .call(
            "GET",
            &format!("{USERS}?startIndex=1&count=100"),
            ACME,
            None,
        )
        .await;
    assert_list(&all, 5, 1, 5);
    let order: Vec<&str> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, seen, "the same order whatever the page size");
    let (_, past) = app
        .call(
            "GET",
            &format!("{USERS}?startIndex=101&count=100"),
            ACME,
            None,
        )
        .await;
    assert_list(&past, 5, 101, 0);
}

#[actix_web::test]
async fn okta_group_push_create_rename_membership_replace_delete() {
    group_push(spawn().await).await;
}

fn member_ids(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) async fn group_push(app: App) {
    let ada = provision(&app, "ada@acme.example", "Ada", "Lovelace").await;
    let grace = provision(&app, "grace@acme.example", "Grace", "Hopper").await;
    let linus = provision(&app, "linus@acme.example", "Linus", "Torvalds").await;

    // 1. Push a new group, empty: 201 with an id and Location; nobody is touched in Kratos.
    let writes = app.kratos.writes().len();
    let group = json!({"schemas": [GROUP_URN], "displayName": "Acme-Engineering", "members": []});
    let created = app.send("POST", GROUPS, ACME, &group).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["displayName"], "Acme-Engineering");
    assert_eq!(created.body["meta"]["resourceType"], "Group");
    assert_eq!(
        created.header("location"),
        created.body["meta"]["location"].as_str()
    );
    assert!(member_ids(&created.body).is_empty());
    assert_eq!(app.kratos.writes().len(), writes);
    let at = format!("{GROUPS}/{gid}");

    // 2. Import and read.
    let (status, list) = app
        .call(
            "GET",
            &format!("{GROUPS}?startIndex=1&count=100"),
            ACME,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_list(&list, 1, 1, 1);
    assert_eq!(list["Resources"][0]["id"], gid.as_str());
    let (status, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(
        (status, &read["displayName"]),
        (200, &json!("Acme-Engineering"))
    );

    // 3. Rename (OIN): a no-path replace whose value carries the group's own read-only id.
    let rename =
        |name: &str| patch(json!([{"op": "replace", "value": {"id": gid, "displayName": name}}]));
    let reply = app.send("PATCH", &at, ACME, &rename("Acme-Admins")).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(read["displayName"], "Acme-Admins");
    assert_eq!(read["id"], gid.as_str());
    assert_eq!(app.kratos.writes().len(), writes, "no member to re-map");

    // 4. Membership: add Ada; she becomes an admin.
    let add_ada = patch(json!([{"op": "add", "path": "members",
        "value": [{"value": ada, "display": "ada@acme.example"}]}]));
    let reply = app.send("PATCH", &at, ACME, &add_ada).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.role(&ada), "admin");
    assert_eq!(app.role(&grace), "guest");

    // Okta repeats the rename before each membership update: unchanged, nothing written.
    let writes = app.kratos.writes().len();
    let reply = app.send("PATCH", &at, ACME, &rename("Acme-Admins")).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.kratos.writes().len(), writes);

    // In one request: remove Ada by a value filter and add Grace. Ada is lowered and her
    // sessions end; Grace is raised.
    app.kratos.add_session(&ada);
    let swap = patch(json!([
        {"op": "remove", "path": format!("members[value eq \"{ada}\"]")},
        {"op": "add", "path": "members", "value": [{"value": grace, "display": "grace@acme.example"}]}
    ]));
    let reply = app.send("PATCH", &at, ACME, &swap).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    if reply.status == 200 {
        assert_eq!(member_ids(&reply.body), set(&[&grace]), "{}", reply.text);
    }
    assert_eq!(app.role(&ada), "guest");
    assert_eq!(app.sessions(&ada).await, 0);
    assert_eq!(app.role(&grace), "admin");
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(member_ids(&read), set(&[&grace]));
    let (_, user) = app
        .call("GET", &format!("{USERS}/{grace}"), ACME, None)
        .await;
    assert_eq!(user["groups"].as_array().map(Vec::len), Some(1), "{user}");
    assert_eq!(user["groups"][0]["value"], gid.as_str());
    assert_eq!(user["groups"][0]["display"], "Acme-Admins");
    let (_, user) = app.call("GET", &format!("{USERS}/{ada}"), ACME, None).await;
    assert!(no_groups(&user), "{user}");

    // A full push replaces the members: Grace out, Ada and Linus in.
    let replace = patch(json!([{"op": "replace", "path": "members",
        "value": [{"value": ada, "display": "ada"}, {"value": linus, "display": "linus"}]}]));
    let reply = app.send("PATCH", &at, ACME, &replace).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let (_, read) = app.call("GET", &at, ACME, None).await;
    assert_eq!(member_ids(&read), set(&[&ada, &linus]));
    assert_eq!(app.role(&ada), "admin");
    assert_eq!(app.role(&linus), "admin");
    assert_eq!(app.role(&grace), "guest");

    // A member who is not a user of this provider: 400, nothing changes.
    let writes = app.kratos.writes().len();
    let stranger = patch(json!([{"op": "add", "path": "members",
        "value": [{"value": "5d9c3a0e-0000-4000-8000-000000000000"}]}]));
    let reply = app.send("PATCH", &at, ACME, &stranger).await;
    assert_error(&reply, 400);
    assert_eq!(app.kratos.writes().len(), writes);
    let (_, unchanged) = app.call("GET", &at, ACME, None).await;
    assert_eq!(member_ids(&unchanged), set(&[&ada, &linus]));

    // A rename onto another group's name is a 409 and re-maps nobody.
    let other =
        json!({"schemas": [GROUP_URN], "displayName": "Acme-Users", "members": [{"value": grace}]});
    let other = app.send("POST", GROUPS, ACME, &other).await;
    assert_eq!(other.status, 201, "{}", other.text);
    assert_eq!(app.role(&grace), "user");
    let writes = app.kratos.writes().len();
    let clash = app.send("PATCH", &at, ACME, &rename("acme-users")).await;
    assert_error(&clash, 409);
    assert_eq!(clash.body["scimType"], "uniqueness");
    assert_eq!(app.kratos.writes().len(), writes);
    assert_eq!(app.role(&ada), "admin");
    let reply = app
        .request(
            "DELETE",
            &format!("{GROUPS}/{}", other.body["id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.role(&grace), "guest");

    // Renaming the group re-maps every member: Acme-Users makes them users.
    let reply = app.send("PATCH", &at, ACME, &rename("Acme-Users")).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.role(&ada), "user");
    assert_eq!(app.role(&linus), "user");
    assert_eq!(app.role(&grace), "guest");

    // 5. Delete: 204 without a body; the members lose the group; every later request is 404.
    let reply = app.request("DELETE", &at, ACME, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty());
    assert_eq!(app.role(&ada), "guest");
    assert_eq!(app.role(&linus), "guest");
    assert_error(&app.request("GET", &at, ACME, None).await, 404);
    assert_error(&app.send("PATCH", &at, ACME, &add_ada).await, 404);
    assert_error(&app.request("DELETE", &at, ACME, None).await, 404);
    let (_, user) = app.call("GET", &format!("{USERS}/{ada}"), ACME, None).await;
    assert!(no_groups(&user), "{user}");
    let (_, list) = app.call("GET", GROUPS, ACME, None).await;
    assert_list(&list, 0, 1, 0);
    // The users themselves stay.
    let (_, users) = app.call("GET", USERS, ACME, None).await;
    assert_eq!(users["totalResults"], 3);
}

#[actix_web::test]
async fn okta_with_the_email_as_subject_a_second_user_with_that_email_is_409_and_overwrites_nothing()
 {
    let providers = super::common::providers_copy(|name, text| {
        if name == "okta-acme" {
            let edited = text.replace("subject = \"userName\"", "subject = \"email\"");
            assert_ne!(edited, text, "okta-acme's provider.toml names its subject");
            edited
        } else {
            text
        }
    });
    let app = super::common::spawn_with(super::common::Options {
        providers: providers.path().to_owned(),
        ..super::common::Options::default()
    })
    .await;
    let ada = okta_user("ada@acme.example", "Ada", "Lovelace", "00u1");
    let created = app.send("POST", USERS, ACME, &ada).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let before = app.kratos.identities();
    let writes = app.kratos.writes().len();

    // Another Okta user (another userName and externalId) with Ada's primary e-mail.
    let mut other = okta_user("ada.l@acme.example", "Other", "Person", "00u2");
    other["emails"] = json!([{"primary": true, "value": "ada@acme.example", "type": "work"}]);
    let refused = app.send("POST", USERS, ACME, &other).await;
    assert_error(&refused, 409);
    assert_eq!(refused.body["scimType"], "uniqueness");
    assert_eq!(app.kratos.writes().len(), writes, "Kratos untouched");
    assert_eq!(app.kratos.identities(), before);
    let (_, read) = app.call("GET", &format!("{USERS}/{id}"), ACME, None).await;
    assert_eq!(read["userName"], "ada@acme.example", "Ada's record intact");
    assert_eq!(read["name"]["givenName"], "Ada");
    let (_, list) = app.call("GET", USERS, ACME, None).await;
    assert_eq!(list["totalResults"], 1);
}
