use super::*;

fn body(value: Value) -> CreateIdentityBody {
    CreateIdentityBody::from_value(value).expect("valid body")
}

fn oidc_body(email: &str, provider: &str, subject: &str) -> CreateIdentityBody {
    body(json!({
        "schema_id": "default",
        "traits": {"email": email},
        "credentials": {"oidc": {"config": {"providers": [{"provider": provider, "subject": subject}]}}}
    }))
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn a_second_identity_with_the_same_oidc_subject_is_a_create_conflict() {
    let mut store = Store::default();
    store
        .create(oidc_body("a@x.example", "okta", "1"), now())
        .expect("first");
    let err = store
        .create(oidc_body("b@x.example", "okta", "1"), now())
        .unwrap_err();
    assert_eq!(err, ApiError::create_conflict());
    assert_eq!(store.in_creation_order().len(), 1);
}

#[test]
fn the_same_email_in_another_case_conflicts_through_the_verifiable_address() {
    let mut store = Store::default();
    store
        .create(oidc_body("Jane@X.example", "okta", "1"), now())
        .expect("first");
    let err = store
        .create(oidc_body("jane@x.example", "entra", "2"), now())
        .unwrap_err();
    assert_eq!(err.code, 409);
}

#[test]
fn external_ids_are_unique() {
    let mut store = Store::default();
    store
        .create(body(json!({"traits": {}, "external_id": "e-1"})), now())
        .expect("first");
    let err = store
        .create(body(json!({"traits": {}, "external_id": "e-1"})), now())
        .unwrap_err();
    assert_eq!(err.code, 409);
}

#[test]
fn unknown_fields_are_refused_with_go_wording() {
    let err = CreateIdentityBody::from_value(json!({"traits": {}, "trait": {}})).unwrap_err();
    assert_eq!(err.message, "json: unknown field \"trait\"");
    let nested = CreateIdentityBody::from_value(json!({
        "traits": {},
        "credentials": {"oidc": {"config": {"providers": [{"provider": "p", "subject": "s", "sub": 1}]}}}
    }))
    .unwrap_err();
    assert_eq!(nested.message, "json: unknown field \"sub\"");
}

#[test]
fn missing_schema_id_uses_the_default_schema() {
    let mut store = Store::default();
    let identity = store
        .create(body(json!({"traits": {}})), now())
        .expect("created");
    assert_eq!(identity.schema_id, DEFAULT_SCHEMA_ID);
}

#[test]
fn oidc_identifiers_match_verbatim_and_password_identifiers_normalized() {
    let mut store = Store::default();
    let created = store
        .create(
            body(json!({
                "traits": {"email": "Jane@Acme.example"},
                "credentials": {
                    "oidc": {"config": {"providers": [{"provider": "acme-okta", "subject": "00u1AbC"}]}},
                    "password": {"config": {"hashed_password": "$2a$10$x"}}
                }
            })),
            now(),
        )
        .expect("created");
    assert!(created.has_identifier("acme-okta:00u1AbC"));
    assert!(!created.has_identifier("acme-okta:00u1abc"));
    assert!(!created.has_identifier("acme-okta:00u1"));
    assert!(created.has_identifier(" JANE@acme.example "));
}

#[test]
fn keyset_pages_cover_every_identity_once() {
    let mut store = Store::default();
    for n in 0..7 {
        store
            .create(
                body(json!({"traits": {"email": format!("u{n}@x.example")}})),
                now(),
            )
            .expect("created");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.list(&ListFilter::All, after, 3);
        seen.extend(page.iter().map(|i| i.id));
        match next {
            Some(token) => after = Some(token),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "pages are in id order without repeats");
    assert_eq!(seen.len(), 7);
}

#[test]
fn put_keeps_verification_of_an_unchanged_email() {
    let mut store = Store::default();
    let id = store
        .create(
            body(json!({
                "traits": {"email": "a@x.example"},
                "verifiable_addresses": [{"value": "A@x.example", "verified": true, "via": "email", "status": "completed"}]
            })),
            now(),
        )
        .expect("created")
        .id;
    let update = UpdateIdentityBody::from_slice(
        br#"{"schema_id":"default","traits":{"email":"a@x.example","name":"A"}}"#,
    )
    .expect("body");
    let updated = store.update(id, update, now()).expect("updated");
    assert!(updated.verifiable_addresses[0].verified);
    assert_eq!(updated.verifiable_addresses[0].status, "completed");
}

#[test]
fn deleting_an_identity_deletes_its_sessions() {
    let mut store = Store::default();
    let id = store
        .create(body(json!({"traits": {}})), now())
        .expect("created")
        .id;
    store.add_session(id, now()).expect("session");
    store.delete(id).expect("deleted");
    assert_eq!(store.delete_sessions_of(id), Err(ApiError::no_rows()));
}

/// The unique index follows every write: a value an identity gave up (by PATCH or by
/// deletion) is free for another identity and no longer finds the old holder; the value
/// it took instead is taken.
#[test]
fn unique_values_follow_patches_and_deletes() {
    let mut store = Store::default();
    let lookup = |store: &Store, identifier: &str| -> Vec<Uuid> {
        let filter = ListFilter::CredentialsIdentifier(identifier.to_owned());
        store
            .list(&filter, None, 10)
            .0
            .iter()
            .map(|i| i.id)
            .collect()
    };
    let ada = store
        .create(oidc_body("ada@x.example", "okta", "1"), now())
        .expect("ada")
        .id;
    assert_eq!(lookup(&store, "okta:1"), vec![ada]);
    let patch = br#"[{"op": "replace", "path": "/traits/email", "value": "lovelace@x.example"}]"#;
    store
        .patch(ada, patch, "http://127.0.0.1", now())
        .expect("patched");
    assert_eq!(
        lookup(&store, "okta:1"),
        vec![ada],
        "the credential is kept"
    );

    // Her old address is free again; her new one is taken.
    let grace = store
        .create(oidc_body("ada@x.example", "okta", "2"), now())
        .expect("the released address can be taken")
        .id;
    let err = store
        .create(oidc_body("Lovelace@x.example", "okta", "3"), now())
        .unwrap_err();
    assert_eq!(err, ApiError::create_conflict());

    store.delete(ada).expect("deleted");
    assert!(lookup(&store, "okta:1").is_empty());
    let again = store
        .create(oidc_body("lovelace@x.example", "okta", "1"), now())
        .expect("a deleted identity's values are free")
        .id;
    assert_eq!(lookup(&store, "okta:1"), vec![again]);
    assert_eq!(lookup(&store, "okta:2"), vec![grace]);
    assert!(lookup(&store, "okta:3").is_empty());
}
