//! Microsoft Entra ID's provisioning service (docs/scim.md §3), in both of its PATCH dialects:
//! without `aadOptscim062020` (capitalised ops, `"False"` strings, one pathed `Replace` per
//! attribute, member removal by a value list) and with it (`?aadOptscim062020` on every request,
//! lower-case ops, booleans, a no-path replace with dotted and URN keys, member removal by a value
//! filter). Statuses, body shapes and the state left in Kratos are checked in each.

use serde_json::{Value, json};

use super::common::{
    App, ENTERPRISE, GLOBEX, GROUP_URN, USER_URN, assert_error, assert_list, encode, patch, spawn,
};

const ADSCIM_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
/// Globex's admin group, by its Entra object id (mapped to the SCIM externalId).
const ADMIN_GROUP: &str = "0a3c9a57-1f0e-4b7e-8d55-6a2f0d9c1b11";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The default for non-gallery apps.
    Legacy,
    /// `?aadOptscim062020` appended to the tenant URL.
    Flag,
}

struct Entra<'a> {
    app: &'a App,
    mode: Mode,
}

impl Entra<'_> {
    /// `/scim/v2/entra-globex/<path>` with `query` and, with the flag, `aadOptscim062020`
    /// first, as Entra appends it to the tenant URL.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.mode == Mode::Flag {
            parts.push("aadOptscim062020".to_owned());
        }
        parts.extend(query.iter().map(|(k, v)| format!("{k}={}", encode(v))));
        let mut url = format!("/scim/v2/entra-globex/{path}");
        if !parts.is_empty() {
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.app
            .call("GET", &self.url(path, query), GLOBEX, None)
            .await
    }

    async fn send(&self, method: &str, path: &str, body: &Value) -> super::common::Reply {
        self.app
            .send(method, &self.url(path, &[]), GLOBEX, body)
            .await
    }

    fn op(&self, op: &str) -> String {
        match self.mode {
            Mode::Legacy => {
                let mut chars = op.chars();
                chars.next().map_or_else(String::new, |c| {
                    c.to_ascii_uppercase().to_string() + chars.as_str()
                })
            }
            Mode::Flag => op.to_owned(),
        }
    }

    fn boolean(&self, value: bool) -> Value {
        match self.mode {
            Mode::Legacy => json!(if value { "True" } else { "False" }),
            Mode::Flag => json!(value),
        }
    }

    /// Entra's user query, then its create when nothing matched; the new id.
    async fn provision(&self, login: &str, object_id: &str, given: &str) -> String {
        let filter = format!("userName eq \"{login}\"");
        let (status, list) = self.get("Users", &[("filter", &filter)]).await;
        assert_eq!(status, 200, "{list}");
        assert_list(&list, 0, 1, 0);
        let body = json!({
            "schemas": [USER_URN, ENTERPRISE],
            "externalId": object_id,
            "userName": login,
            "active": true,
            "displayName": format!("{given} Globex"),
            "emails": [{"primary": true, "type": "work", "value": login}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": format!("{given} Globex"), "familyName": "Globex", "givenName": given},
            "roles": [],
            "addresses": null,
            "phoneNumbers": null,
            "title": null,
            "nickName": null,
            ENTERPRISE: {"employeeNumber": "1001", "department": null, "manager": null}
        });
        let created = self.send("POST", "Users", &body).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            created.header("content-type"),
            Some("application/scim+json")
        );
        let id = created.body["id"].as_str().expect("an id").to_owned();
        assert_eq!(created.body["externalId"], object_id);
        assert_eq!(created.body["active"], true);
        assert_eq!(created.body[ENTERPRISE]["employeeNumber"], "1001");
        for absent in ["addresses", "phoneNumbers", "title", "nickName"] {
            assert!(
                created.body.get(absent).is_none_or(Value::is_null),
                "{absent} null means unassigned: {}",
                created.text
            );
        }
        id
    }
}

#[actix_web::test]
async fn entra_sequence_without_the_flag() {
    sequence(&spawn().await, Mode::Legacy).await;
}

#[actix_web::test]
async fn entra_sequence_with_aad_optscim062020() {
    sequence(&spawn().await, Mode::Flag).await;
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn sequence(app: &App, mode: Mode) {
    let entra = Entra { app, mode };

    // Test Connection: a random GUID as the matching value → 200 and an empty list; a random
    // user and group → 404 with a SCIM error; nothing written.
    let guid = uuid::Uuid::new_v4().to_string();
    let (status, list) = entra
        .get("Users", &[("filter", &format!("userName eq \"{guid}\""))])
        .await;
    assert_eq!(status, 200, "{list}");
    assert_list(&list, 0, 1, 0);
    let missing = app
        .request(
            "GET",
            &entra.url(&format!("Users/{guid}"), &[]),
            GLOBEX,
            None,
        )
        .await;
    assert_error(&missing, 404);
    let (status, list) = entra
        .get(
            "Groups",
            &[
                ("excludedAttributes", "members"),
                ("filter", &format!("displayName eq \"{guid}\"")),
            ],
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_list(&list, 0, 1, 0);
    assert!(app.kratos.writes().is_empty());

    // Query, then create (with nulls, roles: [], meta, the enterprise extension).
    let bob = entra
        .provision(
            "bob@globex.example",
            "a1b2c3d4-0000-4000-8000-00000000b0b0",
            "Bob",
        )
        .await;
    let identity = app.identity(&bob);
    assert_eq!(identity["state"], "active");
    assert_eq!(identity["traits"]["email"], "bob@globex.example");
    assert_eq!(identity["traits"]["tenant_id"], "tenant-globex");
    assert_eq!(identity["traits"]["role"], "guest");
    assert_eq!(identity["metadata_admin"]["employee_number"], "1001");
    // Matching by externalId, when so mapped, finds the same user.
    let (_, list) = entra
        .get(
            "Users",
            &[(
                "filter",
                "externalId eq \"a1b2c3d4-0000-4000-8000-00000000b0b0\"",
            )],
        )
        .await;
    assert_list(&list, 1, 1, 1);
    assert_eq!(list["Resources"][0]["id"], bob.as_str());

    // Updates: several attributes at once, in this mode's dialect.
    let user_path = format!("Users/{bob}");
    let operations = match mode {
        Mode::Legacy => json!([
            {"op": "Replace", "path": "displayName", "value": "Robert Globex"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "robert@globex.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Robert"},
            {"op": "Replace", "path": "name.familyName", "value": "Globex-Smith"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "2002"},
            {"op": "Add", "path": "nickName", "value": "Bobby"}
        ]),
        Mode::Flag => json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "robert@globex.example"},
            {"op": "replace", "value": {
                "displayName": "Robert Globex",
                "name.givenName": "Robert",
                "name.familyName": "Globex-Smith",
                format!("{ENTERPRISE}:employeeNumber"): "2002"
            }},
            {"op": "add", "path": "nickName", "value": "Bobby"}
        ]),
    };
    let reply = entra.send("PATCH", &user_path, &patch(operations)).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let (status, user) = entra.get(&user_path, &[]).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["displayName"], "Robert Globex");
    assert_eq!(user["name"]["givenName"], "Robert");
    assert_eq!(user["name"]["familyName"], "Globex-Smith");
    assert_eq!(user["nickName"], "Bobby");
    assert_eq!(user["emails"][0]["value"], "robert@globex.example");
    assert_eq!(user["emails"][0]["type"], "work");
    assert_eq!(user[ENTERPRISE]["employeeNumber"], "2002");
    for literal in ["name.givenName", "name.familyName"] {
        assert!(user.get(literal).is_none(), "a key is a path: {user}");
    }
    assert!(
        !user
            .to_string()
            .contains(&format!("\"{ENTERPRISE}:employeeNumber\"")),
        "{user}"
    );
    let identity = app.identity(&bob);
    assert_eq!(identity["traits"]["email"], "robert@globex.example");
    assert_eq!(identity["traits"]["first_name"], "Robert");
    assert_eq!(identity["traits"]["last_name"], "Globex-Smith");
    assert_eq!(identity["metadata_admin"]["employee_number"], "2002");

    // Disable (a soft delete): inactive, sessions gone, still returned by GET and filters with
    // a boolean `active`.
    app.kratos.add_session(&bob);
    let disable = patch(
        json!([{"op": entra.op("replace"), "path": "active", "value": entra.boolean(false)}]),
    );
    let reply = entra.send("PATCH", &user_path, &disable).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.identity(&bob)["state"], "inactive");
    assert_eq!(app.sessions(&bob).await, 0);
    let (status, user) = entra.get(&user_path, &[]).await;
    assert_eq!((status, &user["active"]), (200, &json!(false)), "{user}");
    let (_, list) = entra
        .get("Users", &[("filter", "userName eq \"bob@globex.example\"")])
        .await;
    assert_list(&list, 1, 1, 1);
    assert_eq!(list["Resources"][0]["active"], false);
    let enable =
        patch(json!([{"op": entra.op("replace"), "path": "active", "value": entra.boolean(true)}]));
    let reply = entra.send("PATCH", &user_path, &enable).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.identity(&bob)["state"], "active");
    let (_, user) = entra.get(&user_path, &[]).await;
    assert_eq!(user["active"], true);

    let carol = entra
        .provision(
            "carol@globex.example",
            "c0c0c0c0-0000-4000-8000-00000000ca01",
            "Carol",
        )
        .await;
    let dave = entra
        .provision(
            "dave@globex.example",
            "dddddddd-0000-4000-8000-00000000da7e",
            "Dave",
        )
        .await;

    // Groups: queried without members, created empty with the ADSCIM URN, then several
    // members added in one PATCH.
    let (status, list) = entra
        .get(
            "Groups",
            &[
                ("excludedAttributes", "members"),
                ("filter", "displayName eq \"Globex Admins\""),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_list(&list, 0, 1, 0);
    let group = json!({
        "schemas": [GROUP_URN, ADSCIM_GROUP],
        "externalId": ADMIN_GROUP,
        "displayName": "Globex Admins",
        "members": []
    });
    let created = entra.send("POST", "Groups", &group).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["displayName"], "Globex Admins");
    assert_eq!(created.body["externalId"], ADMIN_GROUP);
    let group_path = format!("Groups/{gid}");
    let add = patch(json!([{"op": entra.op("add"), "path": "members", "value": [
        {"$ref": null, "value": bob},
        {"$ref": null, "value": carol},
        {"$ref": null, "value": dave}
    ]}]));
    let reply = entra.send("PATCH", &group_path, &add).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    for id in [&bob, &carol, &dave] {
        assert_eq!(app.role(id), "admin");
    }

    // Reads exclude members; the membership check is a filter on id and members.
    let (status, read) = entra
        .get(&group_path, &[("excludedAttributes", "members")])
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], gid.as_str());
    assert_eq!(read["displayName"], "Globex Admins");
    assert!(read.get("members").is_none(), "{read}");
    let (_, list) = entra
        .get(
            "Groups",
            &[
                ("excludedAttributes", "members"),
                ("filter", "displayName eq \"Globex Admins\""),
            ],
        )
        .await;
    assert_list(&list, 1, 1, 1);
    assert!(list["Resources"][0].get("members").is_none(), "{list}");
    let is_member = |user: &str| format!("id eq \"{gid}\" and members eq \"{user}\"");
    let (_, list) = entra
        .get(
            "Groups",
            &[
                ("excludedAttributes", "members"),
                ("filter", &is_member(&bob)),
            ],
        )
        .await;
    assert_list(&list, 1, 1, 1);
    let (_, list) = entra
        .get(
            "Groups",
            &[("filter", &is_member(&uuid::Uuid::new_v4().to_string()))],
        )
        .await;
    assert_list(&list, 0, 1, 0);

    // Member removal in this mode's form removes Bob only; the other form then removes Carol.
    app.kratos.add_session(&bob);
    let by_list = |id: &str, op: &str| {
        patch(json!([{"op": op, "path": "members", "value": [{"value": id}]}]))
    };
    let by_filter = |id: &str, op: &str| {
        patch(json!([{"op": op, "path": format!("members[value eq \"{id}\"]")}]))
    };
    let (first, second) = match mode {
        Mode::Legacy => (by_list(&bob, "Remove"), by_filter(&carol, "Remove")),
        Mode::Flag => (by_filter(&bob, "remove"), by_list(&carol, "remove")),
    };
    let reply = entra.send("PATCH", &group_path, &first).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let (_, read) = entra.get(&group_path, &[]).await;
    let mut expected = vec![carol.clone(), dave.clone()];
    expected.sort();
    assert_eq!(member_ids(&read), expected, "only Bob left: {read}");
    assert_eq!(app.role(&bob), "guest");
    assert_eq!(app.sessions(&bob).await, 0);
    assert_eq!(app.role(&carol), "admin");
    let reply = entra.send("PATCH", &group_path, &second).await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    let (_, read) = entra.get(&group_path, &[]).await;
    assert_eq!(member_ids(&read), vec![dave.clone()]);
    assert_eq!(app.role(&carol), "guest");
    assert_eq!(app.role(&dave), "admin");
    // Removing someone who is no member changes nothing and is no error.
    let writes = app.kratos.writes().len();
    let reply = entra
        .send("PATCH", &group_path, &by_list(&bob, &entra.op("remove")))
        .await;
    assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    assert_eq!(app.kratos.writes().len(), writes);

    // A hard delete of a user: 204, deactivated (the default policy), gone from SCIM and from
    // the group.
    app.kratos.add_session(&dave);
    let reply = app
        .request(
            "DELETE",
            &entra.url(&format!("Users/{dave}"), &[]),
            GLOBEX,
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.identity(&dave)["state"], "inactive");
    assert_eq!(app.sessions(&dave).await, 0);
    let (status, _) = entra.get(&format!("Users/{dave}"), &[]).await;
    assert_eq!(status, 404);
    let (_, list) = entra
        .get(
            "Users",
            &[("filter", "userName eq \"dave@globex.example\"")],
        )
        .await;
    assert_list(&list, 0, 1, 0);
    let (_, read) = entra.get(&group_path, &[]).await;
    assert!(member_ids(&read).is_empty(), "{read}");

    // The group's delete: 204, then 404.
    let reply = app
        .request("DELETE", &entra.url(&group_path, &[]), GLOBEX, None)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (status, _) = entra.get(&group_path, &[]).await;
    assert_eq!(status, 404);
    let (_, users) = entra.get("Users", &[]).await;
    assert_eq!(users["totalResults"], 2, "Bob and Carol stay: {users}");
}

#[actix_web::test]
async fn entra_a_user_name_or_external_id_another_user_holds_is_409_and_kratos_is_untouched() {
    let app = spawn().await;
    let entra = Entra {
        app: &app,
        mode: Mode::Flag,
    };
    let bob = entra
        .provision(
            "bob@globex.example",
            "a1b2c3d4-0000-4000-8000-00000000b0b0",
            "Bob",
        )
        .await;
    let _carol = entra
        .provision(
            "carol@globex.example",
            "c0c0c0c0-0000-4000-8000-00000000ca01",
            "Carol",
        )
        .await;
    let before = app.kratos.identities();
    let writes = app.kratos.writes().len();
    let user_path = format!("Users/{bob}");
    let (_, stored) = entra.get(&user_path, &[]).await;

    // userName is not the subject here (externalId is): a clash must still write nothing.
    let taken_name = patch(json!([
        {"op": "replace", "path": "userName", "value": "CAROL@globex.example"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "carol2@globex.example"}
    ]));
    let reply = entra.send("PATCH", &user_path, &taken_name).await;
    assert_error(&reply, 409);
    assert_eq!(reply.body["scimType"], "uniqueness");
    let mut put = stored.clone();
    put["userName"] = json!("carol@globex.example");
    put["displayName"] = json!("Not Carol");
    let reply = entra.send("PUT", &user_path, &put).await;
    assert_error(&reply, 409);
    let mut put = stored.clone();
    put["externalId"] = json!("c0c0c0c0-0000-4000-8000-00000000ca01");
    let reply = entra.send("PUT", &user_path, &put).await;
    assert!(matches!(reply.status, 400 | 409), "{}", reply.text);
    // A new user with Carol's externalId.
    let mut post = stored.clone();
    post["userName"] = json!("eve@globex.example");
    post["externalId"] = json!("c0c0c0c0-0000-4000-8000-00000000ca01");
    post["emails"] = json!([{"value": "eve@globex.example", "type": "work"}]);
    let reply = entra.send("POST", "Users", &post).await;
    assert_error(&reply, 409);

    assert_eq!(
        app.kratos.writes().len(),
        writes,
        "nothing written to Kratos"
    );
    assert_eq!(app.kratos.identities(), before);
    let (_, after) = entra.get(&user_path, &[]).await;
    assert_eq!(after, stored);
}

#[actix_web::test]
async fn entra_manager_reference_is_added_and_found_by_its_reference_check() {
    let app = spawn().await;
    for mode in [Mode::Legacy, Mode::Flag] {
        let entra = Entra { app: &app, mode };
        let (bob_login, carol_login) = match mode {
            Mode::Legacy => ("bob@globex.example", "carol@globex.example"),
            Mode::Flag => ("bob2@globex.example", "carol2@globex.example"),
        };
        let suffix = if mode == Mode::Flag { "2" } else { "1" };
        let bob = entra
            .provision(bob_login, &format!("b0b-object-{suffix}"), "Bob")
            .await;
        let carol = entra
            .provision(carol_login, &format!("ca01-object-{suffix}"), "Carol")
            .await;
        // The reference check before the update: no match yet.
        let check = format!("id eq \"{bob}\" and {ENTERPRISE}:manager.value eq \"{carol}\"");
        let (status, list) = entra.get("Users", &[("filter", &check)]).await;
        assert_eq!(status, 200, "{list}");
        assert_list(&list, 0, 1, 0);
        let add = patch(
            json!([{"op": entra.op("add"), "path": format!("{ENTERPRISE}:manager"),
            "value": [{"$ref": null, "value": carol}]}]),
        );
        let reply = entra.send("PATCH", &format!("Users/{bob}"), &add).await;
        assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
        let (_, user) = entra.get(&format!("Users/{bob}"), &[]).await;
        assert_eq!(
            user[ENTERPRISE]["manager"]["value"],
            carol.as_str(),
            "{user}"
        );
        let (_, list) = entra.get("Users", &[("filter", &check)]).await;
        assert_list(&list, 1, 1, 1);
        // The short form Entra's tutorial shows: the extension attribute named alone.
        let short = format!("id eq \"{bob}\" and manager eq \"{carol}\"");
        let (status, list) = entra.get("Users", &[("filter", &short)]).await;
        assert_eq!(status, 200, "{list}");
        assert_list(&list, 1, 1, 1);
    }
}
