//! The Kratos stand-in, driven over HTTP like the sidecar drives Kratos. Every response body is
//! validated against the matching response schema of Kratos v26.2.0's OpenAPI spec
//! (`tests/fixtures/kratos/openapi-v26.2.0.json`), so the stand-in cannot drift from the wire
//! contract the HTTP adapter is written against.

use kratos_jit::standin::{Fault, StandIn, StandInState, run_until_stopped};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------------
// The contract: response schemas from the spec
// ---------------------------------------------------------------------------------------------

struct Contract {
    identity: jsonschema::Validator,
    identity_list: jsonschema::Validator,
    session_list: jsonschema::Validator,
    error: jsonschema::Validator,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let components = spec_components();
        let validator = |schema: Value| {
            let mut root = schema;
            root["components"] = components.clone();
            jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .expect("the spec's schemas compile")
        };
        Contract {
            identity: validator(json!({"$ref": "#/components/schemas/identity"})),
            // `#/components/responses/listIdentities` and `listIdentitySessions`.
            identity_list: validator(
                json!({"type": "array", "items": {"$ref": "#/components/schemas/identity"}}),
            ),
            session_list: validator(
                json!({"type": "array", "items": {"$ref": "#/components/schemas/session"}}),
            ),
            error: validator(json!({"$ref": "#/components/schemas/errorGeneric"})),
        }
    })
}

/// The spec's `components`, with OpenAPI 3.0's `nullable: true` turned into JSON Schema
/// (`"type": [T, "null"]`), which is what it means and what a JSON Schema validator understands.
fn spec_components() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kratos/openapi-v26.2.0.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let spec: Value = serde_json::from_str(&text).expect("the spec is JSON");
    let mut components = spec["components"].clone();
    nullable_to_json_schema(&mut components);
    components
}

fn nullable_to_json_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(kind)) = map.get("type").cloned()
            {
                map.insert("type".to_owned(), json!([kind, "null"]));
            }
            map.values_mut().for_each(nullable_to_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

#[track_caller]
fn assert_valid(validator: &jsonschema::Validator, body: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the spec: {errors:#?}\nbody: {body:#}"
    );
}

#[test]
fn the_contract_rejects_bodies_kratos_would_never_send() {
    let valid = json!({
        "id": "5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10",
        "schema_id": "default",
        "schema_url": "http://127.0.0.1/schemas/ZGVmYXVsdA",
        "state": "active",
        "traits": {},
        "organization_id": null,
        "created_at": "2026-11-24T05:35:18.123456Z"
    });
    let with = |pointer: &str, value: Value| {
        let mut broken = valid.clone();
        *broken.pointer_mut(pointer).expect("member") = value;
        broken
    };
    let mut no_schema_url = valid.clone();
    no_schema_url
        .as_object_mut()
        .expect("object")
        .remove("schema_url");
    // `nullTime` is not nullable in the spec, which is why the stand-in omits `verified_at`.
    let mut null_verified_at = valid.clone();
    null_verified_at["verifiable_addresses"] = json!([{
        "value": "a@b.example",
        "verified": false,
        "via": "email",
        "status": "pending",
        "verified_at": null
    }]);

    assert!(
        contract().identity.is_valid(&valid),
        "the control body is valid"
    );
    for broken in [
        no_schema_url,
        with("/id", json!("not-a-uuid")),
        with("/state", json!("banned")),
        with("/created_at", json!("yesterday")),
        with("/organization_id", json!(42)),
        null_verified_at,
    ] {
        assert!(
            !contract().identity.is_valid(&broken),
            "accepted: {broken:#}"
        );
    }
    assert!(
        !contract().error.is_valid(&json!({"error": {"code": 409}})),
        "message is required"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn identity(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {:#}", self.body);
        assert_valid(&contract().identity, &self.body, "identity");
        &self.body
    }

    #[track_caller]
    fn identities(&self) -> &Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "body: {:#}", self.body);
        assert_valid(&contract().identity_list, &self.body, "identity list");
        self.body.as_array().expect("an array")
    }

    #[track_caller]
    fn sessions(&self) -> &Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "body: {:#}", self.body);
        assert_valid(&contract().session_list, &self.body, "session list");
        self.body.as_array().expect("an array")
    }

    /// The `error` object of an `errorGeneric` envelope with this status.
    #[track_caller]
    fn error(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {:#}", self.body);
        assert_valid(&contract().error, &self.body, "errorGeneric");
        assert_eq!(self.body["error"]["code"], json!(status.as_u16()));
        &self.body["error"]
    }

    #[track_caller]
    fn empty(&self, status: StatusCode) {
        assert_eq!(self.status, status, "body: {:#}", self.body);
        assert_eq!(self.body, Value::Null, "no body expected");
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Admin {
    base: String,
    client: Client,
}

impl Admin {
    fn of(standin: &StandIn) -> Admin {
        Admin {
            base: standin.base_url(),
            client: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the stand-in answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates an identity and returns it (checked against the spec).
    async fn create(&self, body: Value) -> Value {
        self.post("/admin/identities", body)
            .await
            .identity(StatusCode::CREATED)
            .clone()
    }
}

fn oidc_identity(email: &str, provider: &str, subject: &str) -> Value {
    json!({
        "schema_id": "default",
        "traits": {"email": email, "name": {"first": "Jane", "last": "Doe"}},
        "credentials": {"oidc": {"config": {"providers": [{"provider": provider, "subject": subject}]}}}
    })
}

fn id_of(identity: &Value) -> String {
    identity["id"].as_str().expect("an id").to_owned()
}

fn start() -> (StandIn, Admin) {
    let standin = StandIn::start().expect("the stand-in starts");
    let admin = Admin::of(&standin);
    (standin, admin)
}

/// `</admin/identities?...>; rel="next"` → `/admin/identities?...`
fn link(header: &str, rel: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        (params.trim() == format!("rel=\"{rel}\"")).then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_an_identity_answers_201_with_location_and_a_spec_valid_identity() {
    let (standin, admin) = start();

    let reply = admin
        .post(
            "/admin/identities",
            json!({
                "schema_id": "default",
                "traits": {"email": "Jane.Doe@Acme.example"},
                "metadata_public": {"tenant": "tenant-acme"},
                "metadata_admin": {"groups": ["Acme-Admins"]},
                "external_id": "okta|00u1",
                "credentials": {"oidc": {"config": {"providers": [{"provider": "acme-okta", "subject": "00u1"}]}}}
            }),
        )
        .await;
    let identity = reply.identity(StatusCode::CREATED);

    let id = id_of(identity);
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/identities/{id}", standin.base_url()).as_str())
    );
    assert_eq!(identity["state"], "active");
    assert_eq!(
        identity["schema_url"],
        format!("{}/schemas/ZGVmYXVsdA", standin.base_url())
    );
    assert_eq!(identity["organization_id"], Value::Null);
    assert_eq!(
        identity["metadata_admin"],
        json!({"groups": ["Acme-Admins"]})
    );
    assert_eq!(identity["external_id"], "okta|00u1");
    assert_eq!(
        identity["credentials"]["oidc"]["identifiers"],
        json!(["acme-okta:00u1"])
    );
    assert!(
        identity["credentials"]["oidc"].get("config").is_none(),
        "no config in a create answer"
    );
    let address = &identity["verifiable_addresses"][0];
    assert_eq!(
        (
            &address["value"],
            &address["via"],
            &address["verified"],
            &address["status"]
        ),
        (
            &json!("jane.doe@acme.example"),
            &json!("email"),
            &json!(false),
            &json!("pending")
        )
    );
    assert!(address.get("verified_at").is_none());
    assert_eq!(
        identity["recovery_addresses"][0]["value"],
        "jane.doe@acme.example"
    );
    assert_eq!(standin.identities(), vec![identity.clone()]);
}

#[tokio::test]
async fn an_imported_verified_address_is_completed_with_a_verified_at() {
    let (_standin, admin) = start();

    let identity = admin
        .create(json!({
            "schema_id": "default",
            "traits": {"email": "verified@acme.example"},
            "verifiable_addresses": [
                {"value": "Verified@acme.example", "verified": true, "via": "email", "status": "completed"}
            ]
        }))
        .await;

    let address = &identity["verifiable_addresses"][0];
    assert_eq!(address["verified"], true);
    assert_eq!(address["status"], "completed");
    assert!(address["verified_at"].is_string());
}

#[tokio::test]
async fn a_create_body_with_an_unknown_field_is_a_400_and_creates_nothing() {
    let (standin, admin) = start();

    let reply = admin
        .post(
            "/admin/identities",
            json!({"schema_id": "default", "traits": {}, "trait": {}}),
        )
        .await;

    let error = reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(error["message"], "json: unknown field \"trait\"");
    assert!(standin.identities().is_empty());
}

#[tokio::test]
async fn a_create_without_schema_id_uses_the_default_schema_and_an_invalid_state_is_a_400() {
    let (_standin, admin) = start();

    let identity = admin
        .create(json!({"traits": {"email": "a@acme.example"}}))
        .await;
    let invalid = admin
        .post(
            "/admin/identities",
            json!({"traits": {}, "state": "banned"}),
        )
        .await;

    assert_eq!(identity["schema_id"], "default");
    assert_eq!(
        invalid.error(StatusCode::BAD_REQUEST)["reason"],
        "identity state is not valid"
    );
}

#[tokio::test]
async fn duplicate_oidc_subject_is_a_conflict() {
    let (standin, admin) = start();
    admin
        .create(oidc_identity("first@acme.example", "acme-okta", "00u1"))
        .await;

    let reply = admin
        .post(
            "/admin/identities",
            oidc_identity("second@acme.example", "acme-okta", "00u1"),
        )
        .await;

    reply.error(StatusCode::CONFLICT);
    assert_eq!(
        reply.body,
        json!({"error": {
            "code": 409,
            "status": "Conflict",
            "reason": "This identity conflicts with another identity that already exists.",
            "message": "The resource could not be created due to a conflict"
        }})
    );
    assert_eq!(standin.identities().len(), 1);
}

#[tokio::test]
async fn the_same_email_or_external_id_on_a_new_identity_is_a_conflict() {
    let (_standin, admin) = start();
    admin
        .create(json!({"traits": {"email": "jane@acme.example"}, "external_id": "ext-1"}))
        .await;

    let same_email = admin
        .post(
            "/admin/identities",
            oidc_identity("JANE@acme.example", "acme-okta", "other"),
        )
        .await;
    let same_external_id = admin
        .post(
            "/admin/identities",
            json!({"traits": {}, "external_id": "ext-1"}),
        )
        .await;

    same_email.error(StatusCode::CONFLICT);
    same_external_id.error(StatusCode::CONFLICT);
}

// ---------------------------------------------------------------------------------------------
// Read
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_credentials_without_config_unless_included() {
    let (_standin, admin) = start();
    let created = admin
        .create(oidc_identity("g@acme.example", "acme-okta", "00u9"))
        .await;
    let id = id_of(&created);

    let plain = admin.get(&format!("/admin/identities/{id}")).await;
    let declassified = admin
        .get(&format!("/admin/identities/{id}?include_credential=oidc"))
        .await;
    let invalid = admin
        .get(&format!("/admin/identities/{id}?include_credential=magic"))
        .await;

    let plain = plain.identity(StatusCode::OK);
    assert_eq!(
        plain["credentials"]["oidc"]["identifiers"],
        json!(["acme-okta:00u9"])
    );
    assert!(plain["credentials"]["oidc"].get("config").is_none());
    assert_eq!(plain["metadata_admin"], Value::Null);
    let config = &declassified.identity(StatusCode::OK)["credentials"]["oidc"]["config"];
    assert_eq!(config["providers"][0]["subject"], "00u9");
    assert_eq!(config["providers"][0]["provider"], "acme-okta");
    invalid.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_or_malformed_identity_id_is_a_404_like_kratos() {
    let (_standin, admin) = start();

    let unknown = admin
        .get("/admin/identities/5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10")
        .await;
    // Kratos parses the id with `uuid.FromStringOrNil`: a malformed id is simply not found.
    let malformed = admin.get("/admin/identities/not-a-uuid").await;

    assert_eq!(
        unknown.error(StatusCode::NOT_FOUND)["message"],
        "Unable to locate the resource"
    );
    malformed.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_identity_is_found_by_its_external_id() {
    let (_standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "x@acme.example"}, "external_id": "okta/00u7 x"}))
        .await;

    let found = admin
        .get("/admin/identities/by/external/okta%2F00u7%20x")
        .await;
    let missing = admin.get("/admin/identities/by/external/nobody").await;

    assert_eq!(found.identity(StatusCode::OK)["id"], created["id"]);
    missing.error(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_follows_relative_link_headers_until_the_last_page() {
    let (_standin, admin) = start();
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(id_of(
            &admin
                .create(json!({"traits": {"email": format!("u{n}@acme.example")}}))
                .await,
        ));
    }

    let mut path = "/admin/identities?page_size=3".to_owned();
    let mut pages = Vec::new();
    loop {
        let reply = admin.get(&path).await;
        let page: Vec<String> = reply.identities().iter().map(id_of).collect();
        assert!(
            reply
                .identities()
                .iter()
                .all(|i| i.get("credentials").is_none()),
            "a plain list does not load credentials"
        );
        let header = reply.header("link").expect("a Link header").to_owned();
        assert!(link(&header, "first").is_some(), "rel=first in {header}");
        pages.push(page);
        match link(&header, "next") {
            Some(next) => {
                assert!(
                    next.starts_with("/admin/identities?"),
                    "relative link: {next}"
                );
                assert!(
                    next.contains("page_size=3&page_token="),
                    "size and token: {next}"
                );
                path = next;
            }
            None => break,
        }
    }

    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    let mut listed: Vec<String> = pages.concat();
    listed.sort();
    listed.dedup();
    created.sort();
    assert_eq!(listed, created);
}

#[tokio::test]
async fn page_size_outside_1_to_500_is_clamped() {
    let (_standin, admin) = start();
    for n in 0..2 {
        admin
            .create(json!({"traits": {"email": format!("c{n}@acme.example")}}))
            .await;
    }

    let zero = admin.get("/admin/identities?page_size=0").await;
    let huge = admin.get("/admin/identities?page_size=100000").await;

    assert_eq!(zero.identities().len(), 1);
    assert!(link(zero.header("link").expect("link"), "next").is_some());
    assert_eq!(huge.identities().len(), 2);
    let first = link(huge.header("link").expect("link"), "first").expect("first");
    assert!(first.contains("page_size=500"), "{first}");
}

#[tokio::test]
async fn credentials_identifier_matches_only_the_exact_oidc_identifier() {
    let (_standin, admin) = start();
    let wanted = admin
        .create(oidc_identity("w@acme.example", "acme-okta", "00u1abcd"))
        .await;
    admin
        .create(oidc_identity("o@acme.example", "acme-okta", "00u1abcde"))
        .await;

    let exact = admin
        .get("/admin/identities?credentials_identifier=acme-okta%3A00u1abcd")
        .await;
    let prefix = admin
        .get("/admin/identities?credentials_identifier=acme-okta%3A00u1")
        .await;
    let other_case = admin
        .get("/admin/identities?credentials_identifier=ACME-OKTA%3A00u1abcd")
        .await;

    let found = exact.identities();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], wanted["id"]);
    assert_eq!(
        found[0]["credentials"]["oidc"]["identifiers"],
        json!(["acme-okta:00u1abcd"])
    );
    assert!(
        found[0]["credentials"]["oidc"].get("config").is_none(),
        "configs are stripped"
    );
    assert!(prefix.identities().is_empty(), "a prefix does not match");
    assert!(
        other_case.identities().is_empty(),
        "oidc identifiers compare verbatim"
    );
}

#[tokio::test]
async fn credentials_identifier_finds_password_identifiers_by_normalized_email() {
    let (_standin, admin) = start();
    let created = admin
        .create(json!({
            "traits": {"email": "Pat@Acme.example"},
            "credentials": {"password": {"config": {"hashed_password": "$2a$10$abcdefghijklmnopqrstuv"}}}
        }))
        .await;

    let reply = admin
        .get("/admin/identities?credentials_identifier=PAT%40acme.EXAMPLE")
        .await;

    let found = reply.identities();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], created["id"]);
    assert_eq!(
        found[0]["credentials"]["password"]["identifiers"],
        json!(["pat@acme.example"])
    );
}

#[tokio::test]
async fn combining_list_filters_is_a_400() {
    let (_standin, admin) = start();

    let reply = admin
        .get("/admin/identities?credentials_identifier=a%3Ab&ids=5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10")
        .await;

    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST)["reason"],
        "You cannot combine multiple filters in this API"
    );
}

#[tokio::test]
async fn the_ids_filter_returns_only_the_named_identities() {
    let (_standin, admin) = start();
    let a = id_of(
        &admin
            .create(json!({"traits": {"email": "a@acme.example"}}))
            .await,
    );
    let _b = admin
        .create(json!({"traits": {"email": "b@acme.example"}}))
        .await;
    let c = id_of(
        &admin
            .create(json!({"traits": {"email": "c@acme.example"}}))
            .await,
    );

    let reply = admin
        .get(&format!(
            "/admin/identities?ids={a}&ids={c}&ids=5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10"
        ))
        .await;
    let bad = admin.get("/admin/identities?ids=nope").await;

    let mut found: Vec<String> = reply.identities().iter().map(id_of).collect();
    found.sort();
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(found, expected);
    bad.error(StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// Update (PUT)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_clears_metadata_admin_and_external_id_when_omitted_and_keeps_state() {
    let (_standin, admin) = start();
    let created = admin
        .create(json!({
            "traits": {"email": "p@acme.example"},
            "state": "inactive",
            "metadata_public": {"tenant": "t"},
            "metadata_admin": {"groups": ["g"]},
            "external_id": "ext-p"
        }))
        .await;
    let id = id_of(&created);

    let reply = admin
        .put(
            &format!("/admin/identities/{id}"),
            json!({"schema_id": "default", "traits": {"email": "p@acme.example", "role": "admin"}, "metadata_public": {"tenant": "t2"}}),
        )
        .await;

    let updated = reply.identity(StatusCode::OK);
    assert_eq!(
        updated["metadata_admin"],
        Value::Null,
        "omitted metadata_admin is cleared"
    );
    assert!(
        updated.get("external_id").is_none(),
        "omitted external_id is cleared"
    );
    assert_eq!(updated["metadata_public"], json!({"tenant": "t2"}));
    assert_eq!(updated["traits"]["role"], "admin");
    assert_eq!(updated["state"], "inactive", "a PUT without state keeps it");
    assert_eq!(updated["state_changed_at"], created["state_changed_at"]);
    assert_eq!(
        updated["verifiable_addresses"][0]["id"], created["verifiable_addresses"][0]["id"],
        "an unchanged address is kept"
    );
}

#[tokio::test]
async fn put_adds_oidc_providers_and_keeps_the_existing_ones() {
    let (_standin, admin) = start();
    let created = admin
        .create(oidc_identity("l@acme.example", "acme-okta", "00u1"))
        .await;
    let id = id_of(&created);

    let reply = admin
        .put(
            &format!("/admin/identities/{id}"),
            json!({
                "schema_id": "default",
                "state": "active",
                "traits": created["traits"],
                "credentials": {"oidc": {"config": {"providers": [{"provider": "globex-entra", "subject": "oid-7"}]}}}
            }),
        )
        .await;
    let by_new = admin
        .get("/admin/identities?credentials_identifier=globex-entra%3Aoid-7")
        .await;

    assert_eq!(
        reply.identity(StatusCode::OK)["credentials"]["oidc"]["identifiers"],
        json!(["acme-okta:00u1", "globex-entra:oid-7"])
    );
    assert_eq!(by_new.identities()[0]["id"], created["id"]);
}

#[tokio::test]
async fn put_onto_another_identitys_email_is_a_conflict_and_changes_nothing() {
    let (standin, admin) = start();
    admin
        .create(json!({"traits": {"email": "taken@acme.example"}}))
        .await;
    let mine = admin
        .create(json!({"traits": {"email": "mine@acme.example"}}))
        .await;
    let before = standin.identities();

    let reply = admin
        .put(
            &format!("/admin/identities/{}", id_of(&mine)),
            json!({"schema_id": "default", "state": "active", "traits": {"email": "taken@acme.example"}}),
        )
        .await;

    assert_eq!(
        reply.error(StatusCode::CONFLICT)["message"],
        "Unable to insert or update resource because a resource with that value exists already"
    );
    assert_eq!(standin.identities(), before);
}

#[tokio::test]
async fn put_of_an_unknown_identity_is_a_404() {
    let (_standin, admin) = start();

    let reply = admin
        .put(
            "/admin/identities/5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10",
            json!({"schema_id": "default", "state": "active", "traits": {}}),
        )
        .await;

    reply.error(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// Patch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn patch_replaces_state_and_metadata_and_bumps_state_changed_at() {
    let (_standin, admin) = start();
    let created = admin
        .create(oidc_identity("d@acme.example", "acme-okta", "00u2"))
        .await;
    let id = id_of(&created);
    tokio::time::sleep(Duration::from_millis(5)).await;

    let reply = admin
        .patch(
            &format!("/admin/identities/{id}"),
            json!([
                {"op": "replace", "path": "/state", "value": "inactive"},
                {"op": "replace", "path": "/metadata_admin", "value": {"groups": ["eng"], "idp": "acme-okta"}}
            ]),
        )
        .await;

    let patched = reply.identity(StatusCode::OK);
    assert_eq!(patched["state"], "inactive");
    assert_eq!(
        patched["metadata_admin"],
        json!({"groups": ["eng"], "idp": "acme-okta"})
    );
    assert_ne!(patched["state_changed_at"], created["state_changed_at"]);
    assert_eq!(
        patched["credentials"]["oidc"]["identifiers"],
        json!(["acme-okta:00u2"])
    );
}

#[tokio::test]
async fn patch_follows_rfc_6902_on_nested_paths_with_escapes_and_append() {
    let (_standin, admin) = start();
    let created = admin
        .create(
            json!({"traits": {"email": "n@acme.example"}, "metadata_public": {"groups": ["a"]}}),
        )
        .await;
    let path = format!("/admin/identities/{}", id_of(&created));

    let reply = admin
        .patch(
            &path,
            json!([
                {"op": "add", "path": "/metadata_public/groups/-", "value": "b"},
                {"op": "add", "path": "/metadata_public/groups/0", "value": "first"},
                {"op": "add", "path": "/metadata_public/a~1b", "value": "slash"},
                {"op": "add", "path": "/metadata_public/m~0n", "value": "tilde"},
                {"op": "add", "path": "/traits/role", "value": "user"},
                {"op": "remove", "path": "/metadata_public/groups/1"}
            ]),
        )
        .await;
    // RFC 6902: `add` needs the parent to exist, and metadata_admin is null.
    let missing_parent = admin
        .patch(
            &path,
            json!([{"op": "add", "path": "/metadata_admin/groups", "value": []}]),
        )
        .await;

    let patched = reply.identity(StatusCode::OK);
    assert_eq!(
        patched["metadata_public"],
        json!({"groups": ["first", "b"], "a/b": "slash", "m~n": "tilde"})
    );
    assert_eq!(
        patched["traits"],
        json!({"email": "n@acme.example", "role": "user"})
    );
    assert_eq!(
        missing_parent.error(StatusCode::BAD_REQUEST)["reason"],
        "An error occured when applying the JSON patch"
    );
}

#[tokio::test]
async fn patch_refuses_denied_paths_and_changes_nothing() {
    let (standin, admin) = start();
    let created = admin
        .create(oidc_identity("deny@acme.example", "acme-okta", "00u3"))
        .await;
    let path = format!("/admin/identities/{}", id_of(&created));
    let before = standin.identities();

    for denied in [
        "/id",
        "/stateChangedAt",
        "/credentials",
        "/credentials/oidc",
        "/credentials/oidc/identifiers/0",
    ] {
        let reply = admin
            .patch(
                &path,
                json!([{"op": "replace", "path": denied, "value": "x"}]),
            )
            .await;

        let error = reply.error(StatusCode::BAD_REQUEST);
        assert_eq!(
            error["message"],
            format!("patch includes denied path: {denied}")
        );
        assert_eq!(
            error["reason"],
            "An error occured when applying the JSON patch"
        );
    }
    assert_eq!(standin.identities(), before);
}

#[tokio::test]
async fn patch_refuses_operations_other_than_add_remove_and_replace() {
    let (_standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "op@acme.example"}}))
        .await;
    let path = format!("/admin/identities/{}", id_of(&created));

    for op in ["test", "move", "copy"] {
        let reply = admin
            .patch(
                &path,
                json!([{"op": op, "path": "/state", "from": "/schema_id", "value": "active"}]),
            )
            .await;

        assert_eq!(
            reply.error(StatusCode::BAD_REQUEST)["message"],
            format!("unsupported operation: {op}")
        );
    }
}

#[tokio::test]
async fn patch_with_an_invalid_state_is_a_400_in_kratos_words() {
    let (_standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "s@acme.example"}}))
        .await;

    let reply = admin
        .patch(
            &format!("/admin/identities/{}", id_of(&created)),
            json!([{"op": "replace", "path": "/state", "value": "banned"}]),
        )
        .await;

    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST)["reason"],
        "The supplied state ('banned') was not valid. Valid states are ('active', 'inactive')."
    );
}

#[tokio::test]
async fn patch_is_all_or_nothing() {
    let (standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "atomic@acme.example"}}))
        .await;
    let before = standin.identities();

    let reply = admin
        .patch(
            &format!("/admin/identities/{}", id_of(&created)),
            json!([
                {"op": "replace", "path": "/state", "value": "inactive"},
                {"op": "remove", "path": "/traits/not_there"}
            ]),
        )
        .await;

    reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(standin.identities(), before);
}

#[tokio::test]
async fn patch_onto_another_identitys_external_id_is_a_conflict() {
    let (_standin, admin) = start();
    admin
        .create(json!({"traits": {}, "external_id": "taken"}))
        .await;
    let mine = admin.create(json!({"traits": {}})).await;

    let reply = admin
        .patch(
            &format!("/admin/identities/{}", id_of(&mine)),
            json!([{"op": "add", "path": "/external_id", "value": "taken"}]),
        )
        .await;

    reply.error(StatusCode::CONFLICT);
}

// ---------------------------------------------------------------------------------------------
// Delete and sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_removes_the_identity_and_a_second_delete_is_a_404() {
    let (standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "gone@acme.example"}}))
        .await;
    let path = format!("/admin/identities/{}", id_of(&created));

    admin.delete(&path).await.empty(StatusCode::NO_CONTENT);
    let again = admin.delete(&path).await;
    let get = admin.get(&path).await;

    again.error(StatusCode::NOT_FOUND);
    get.error(StatusCode::NOT_FOUND);
    assert!(standin.identities().is_empty());
}

#[tokio::test]
async fn sessions_are_listed_then_deleted_and_deleting_none_is_a_404() {
    let (standin, admin) = start();
    let created = admin
        .create(oidc_identity("sess@acme.example", "acme-okta", "00u4"))
        .await;
    let id = id_of(&created);
    let first = standin.add_session(&id);
    let second = standin.add_session(&id);
    let path = format!("/admin/identities/{id}/sessions");

    let listed = admin.get(&path).await;
    let listed: Vec<Value> = listed.sessions().clone();
    admin.delete(&path).await.empty(StatusCode::NO_CONTENT);
    let after = admin.get(&path).await;
    let again = admin.delete(&path).await;

    let ids: Vec<&str> = listed.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, vec![first.as_str(), second.as_str()]);
    assert_eq!(listed[0]["active"], true);
    assert_eq!(listed[0]["identity"]["id"], created["id"]);
    assert!(listed[0]["identity"].get("metadata_admin").is_none());
    assert!(listed[0]["identity"].get("credentials").is_none());
    assert_eq!(
        listed[0]["authentication_methods"][0]["provider"],
        "acme-okta"
    );
    assert!(after.sessions().is_empty());
    assert_eq!(
        again.error(StatusCode::NOT_FOUND)["message"],
        "Unable to locate the resource"
    );
}

#[tokio::test]
async fn sessions_of_an_unknown_identity_are_an_empty_list_and_a_malformed_id_is_a_400() {
    let (_standin, admin) = start();

    let unknown = admin
        .get("/admin/identities/5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10/sessions")
        .await;
    let malformed = admin.get("/admin/identities/abc/sessions").await;

    assert!(unknown.sessions().is_empty());
    assert_eq!(
        malformed.error(StatusCode::BAD_REQUEST)["message"],
        "uuid: incorrect UUID length 3 in string \"abc\""
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_the_error_envelope() {
    let (_standin, admin) = start();

    let route = admin.get("/admin/nope").await;
    let method = admin
        .call(
            Method::POST,
            "/admin/identities/5b7c2a4e-1d2f-4f7a-9a1b-0c8e6d4f2a10",
            None,
        )
        .await;

    route.error(StatusCode::NOT_FOUND);
    method.error(StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fail_next_fails_that_many_requests_without_side_effects_then_recovers() {
    let (standin, admin) = start();
    standin.set_fault(Fault::FailNext {
        count: 2,
        status: 503,
    });

    let first = admin
        .post(
            "/admin/identities",
            json!({"traits": {"email": "f@acme.example"}}),
        )
        .await;
    let second = admin.get("/admin/identities").await;
    let third = admin
        .post(
            "/admin/identities",
            json!({"traits": {"email": "f@acme.example"}}),
        )
        .await;

    assert_eq!(
        first.error(StatusCode::SERVICE_UNAVAILABLE)["status"],
        "Service Unavailable"
    );
    second.error(StatusCode::SERVICE_UNAVAILABLE);
    third.identity(StatusCode::CREATED);
    assert_eq!(
        standin.identities().len(),
        1,
        "the failed POST created nothing"
    );
    assert_eq!(
        standin.requests().len(),
        3,
        "failed requests are logged too"
    );
}

#[tokio::test]
async fn fail_next_with_500_and_429_uses_the_envelope() {
    let (standin, admin) = start();

    standin.set_fault(Fault::FailNext {
        count: 1,
        status: 500,
    });
    let internal = admin.get("/admin/identities").await;
    standin.set_fault(Fault::FailNext {
        count: 1,
        status: 429,
    });
    let throttled = admin.get("/admin/identities").await;

    assert_eq!(
        internal.error(StatusCode::INTERNAL_SERVER_ERROR)["message"],
        "An internal server error occurred, please contact the system administrator"
    );
    throttled.error(StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delay_holds_every_request_without_blocking_concurrent_ones() {
    let (standin, admin) = start();
    let delay = Duration::from_millis(400);
    standin.set_fault(Fault::Delay(delay));

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let client = admin.client.clone();
        let url = format!("{}/admin/identities", admin.base);
        requests.spawn(async move {
            let sent = Instant::now();
            let status = client.get(url).send().await.expect("answer").status();
            (status, sent.elapsed())
        });
    }
    let answers = requests.join_all().await;
    let total = started.elapsed();
    standin.set_fault(Fault::None);
    let undelayed = Instant::now();
    admin.get("/admin/identities").await.identities();

    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    assert!(
        answers.iter().all(|(_, took)| *took >= delay),
        "{answers:?}"
    );
    // Two workers sleeping synchronously would need four rounds of 400 ms.
    assert!(
        total < delay * 3,
        "8 concurrent delayed requests took {total:?}"
    );
    assert!(undelayed.elapsed() < delay, "Fault::None removes the delay");
}

#[tokio::test]
async fn refused_connections_recover_on_the_same_port_with_data_intact() {
    let (standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "r@acme.example"}}))
        .await;
    let addr = standin.addr();

    standin.set_fault(Fault::RefuseConnections);
    // The same client, whose pool holds a keep-alive connection from the create.
    let refused = admin
        .client
        .get(format!("{}/admin/identities", standin.base_url()))
        .send()
        .await;
    let refused_again = admin
        .client
        .get(format!("{}/admin/identities", standin.base_url()))
        .send()
        .await;
    standin.set_fault(Fault::None);
    let recovered = admin
        .get(&format!("/admin/identities/{}", id_of(&created)))
        .await;

    // A pooled connection was closed under the client: that request fails as a request error
    // (reset / incomplete message), as it would when a real Kratos goes away; the next one
    // cannot connect at all.
    let error = refused.expect_err("no request is served while refusing");
    assert!(
        error.is_connect() || error.is_request(),
        "a transport error, got {error:?}"
    );
    let error = refused_again.expect_err("connections are refused");
    assert!(error.is_connect(), "a connection error, got {error:?}");
    assert_eq!(standin.addr(), addr);
    assert_eq!(recovered.identity(StatusCode::OK)["id"], created["id"]);
}

// ---------------------------------------------------------------------------------------------
// Concurrency, log, runtimes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_one_oidc_subject_yield_exactly_one_identity() {
    let (standin, admin) = start();

    let mut creates = JoinSet::new();
    for n in 0..50 {
        let client = admin.client.clone();
        let url = format!("{}/admin/identities", admin.base);
        creates.spawn(async move {
            let response = client
                .post(url)
                .json(&oidc_identity(
                    &format!("racer{n}@acme.example"),
                    "acme-okta",
                    "00u-race",
                ))
                .send()
                .await
                .expect("answer");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            (status, body)
        });
    }
    let answers = creates.join_all().await;

    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    let conflicts: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CONFLICT)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((created.len(), conflicts.len()), (1, 49));
    assert_valid(&contract().identity, created[0], "the one created identity");
    for conflict in conflicts {
        assert_valid(&contract().error, conflict, "a conflict");
    }
    let identities = standin.identities();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0]["id"], created[0]["id"]);
}

#[tokio::test]
async fn the_request_log_keeps_every_request_and_writes_separately() {
    let (standin, admin) = start();
    let created = admin
        .create(json!({"traits": {"email": "log@acme.example"}}))
        .await;
    let id = id_of(&created);
    admin
        .get("/admin/identities?credentials_identifier=x%3Ay")
        .await;
    admin
        .patch(
            &format!("/admin/identities/{id}"),
            json!([{"op": "replace", "path": "/state", "value": "inactive"}]),
        )
        .await;

    let requests = standin.requests();
    let writes = standin.writes();
    standin.clear_log();

    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, vec!["POST", "GET", "PATCH"]);
    assert_eq!(requests[1].path, "/admin/identities");
    assert_eq!(requests[1].query, "credentials_identifier=x%3Ay");
    assert_eq!(requests[1].body, None);
    assert_eq!(writes.len(), 2);
    assert_eq!(
        writes[0].body,
        Some(json!({"traits": {"email": "log@acme.example"}}))
    );
    assert_eq!(writes[1].path, format!("/admin/identities/{id}"));
    assert!(standin.requests().is_empty());
}

#[tokio::test]
async fn a_seeded_identity_is_what_get_returns() {
    let (standin, admin) = start();

    let seeded = standin.insert_identity(json!({
        "schema_id": "default",
        "traits": {"email": "seed@acme.example"},
        "metadata_admin": {"source": "seed"},
        "credentials": {"oidc": {"config": {"providers": [{"provider": "acme-okta", "subject": "seed"}]}}}
    }));
    let fetched = admin
        .get(&format!("/admin/identities/{}", id_of(&seeded)))
        .await;

    assert_eq!(fetched.identity(StatusCode::OK), &seeded);
    assert_eq!(
        standin.requests().len(),
        1,
        "seeding does not go through HTTP, only the GET is logged"
    );
}

#[tokio::test]
async fn health_checks_are_counted_apart_and_only_faults_aimed_at_them_reach_them() {
    let standin = StandIn::start().unwrap();
    let client = Client::new();
    let get = |path: &str| client.get(format!("{}{path}", standin.base_url())).send();

    // Kratos serves them at the root and under /admin; neither is in the request log.
    for path in ["/health/ready", "/health/alive", "/admin/health/ready"] {
        assert_eq!(get(path).await.unwrap().status(), StatusCode::OK, "{path}");
    }
    assert_eq!(standin.health_checks(), 3);
    assert!(standin.requests().is_empty());

    // A fault for "the next request" is kept for the identity API…
    standin.set_fault(Fault::FailNext {
        count: 1,
        status: 500,
    });
    assert_eq!(get("/health/ready").await.unwrap().status(), StatusCode::OK);
    let identities = get("/admin/identities").await.unwrap().status();
    assert_eq!(identities, StatusCode::INTERNAL_SERVER_ERROR);
    // …and one aimed at the health check reaches it.
    standin.set_fault(Fault::FailMatching {
        method: None,
        path_suffix: "/health/ready".into(),
        count: 1,
        status: 503,
    });
    let status = get("/health/ready").await.unwrap().status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/health/ready").await.unwrap().status(), StatusCode::OK);
}

#[test]
fn it_serves_a_plain_synchronous_test() {
    let standin = StandIn::start().expect("starts outside any runtime");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let status = runtime.block_on(async {
        Client::new()
            .get(format!("{}/health/ready", standin.base_url()))
            .send()
            .await
            .expect("answer")
            .status()
    });

    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn it_serves_an_actix_web_test() {
    let (_standin, admin) = start();

    let identity = admin
        .create(json!({"traits": {"email": "actix@acme.example"}}))
        .await;

    assert_eq!(identity["state"], "active");
}

#[test]
fn dropping_the_stand_in_releases_its_port() {
    let standin = StandIn::start().expect("starts");
    let addr = standin.addr();

    drop(standin);

    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens after drop"
    );
    let again = StandIn::start_on(addr).expect("the port can be bound again");
    assert_eq!(again.addr(), addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_stopped_serves_on_a_plain_tokio_runtime_until_shutdown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state = StandInState::new();
    let server = tokio::spawn(run_until_stopped(listener, state.clone()));

    let created = Client::new()
        .post(format!("{base}/admin/identities"))
        .json(&json!({"traits": {"email": "dev@acme.example"}}))
        .send()
        .await
        .expect("answer");
    let status = created.status();
    state.shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops after shutdown")
        .expect("the task did not panic");

    assert_eq!(status, StatusCode::CREATED);
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(state.identities().len(), 1);
    assert_eq!(state.base_url(), base);
    assert!(std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err());
}
