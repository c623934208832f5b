//! The HTTP adapter of the Kratos port against the loopback Kratos stand-in: real HTTP, real
//! wire format, injected faults.

use kratos_jit::domain::{IdentityId, Subject};
use kratos_jit::kratos::http::{HttpKratos, KratosSettings};
use kratos_jit::kratos::{
    Identity, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp, VerifiableAddress,
};
use kratos_jit::standin::{Fault, StandIn};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
const DEADLINE: Duration = Duration::from_millis(1200);
const MAX_RETRIES: u32 = 2;
/// Scheduling slack allowed on top of the deadline on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(300);

fn start_standin() -> StandIn {
    StandIn::start().expect("the Kratos stand-in starts on loopback")
}

fn kratos_for(standin: &StandIn) -> HttpKratos {
    HttpKratos::new(KratosSettings {
        admin_url: standin.base_url(),
        request_timeout: REQUEST_TIMEOUT,
        deadline: DEADLINE,
        max_retries: MAX_RETRIES,
        ..KratosSettings::default()
    })
    .expect("valid settings")
}

fn new_identity(email: &str, provider: &str, subject: &str) -> NewIdentity {
    NewIdentity {
        schema_id: "default".to_owned(),
        traits: json!({ "email": email }),
        metadata_public: Some(json!({ "idp": provider })),
        metadata_admin: Some(json!({ "groups": ["eng"] })),
        verified_addresses: vec![VerifiableAddress {
            value: email.to_owned(),
            via: "email".to_owned(),
            verified: true,
        }],
        oidc: OidcCredential {
            provider: provider.parse().expect("a provider id"),
            subject: Subject::parse(subject).expect("a subject"),
        },
    }
}

/// Requests the stand-in saw for one HTTP method and path.
fn count_requests(standin: &StandIn, method: &str, path: &str) -> usize {
    standin
        .requests()
        .iter()
        .filter(|request| request.method == method && request.path == path)
        .count()
}

#[tokio::test]
async fn an_identity_created_with_an_oidc_credential_is_found_by_provider_and_subject() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);

    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");
    let found = kratos
        .find_by_credential_identifier("okta-acme:00u1")
        .await
        .expect("lookup answered");

    let found = found.expect("the identity holds okta-acme:00u1");
    assert_eq!(found.id, created.id);
    assert_eq!(found.state, "active");
    assert_eq!(found.traits["email"], "jane@acme.example");
    assert_eq!(found.metadata_admin, Some(json!({ "groups": ["eng"] })));
    assert_eq!(
        found.credential_identifiers.get("oidc"),
        Some(&vec!["okta-acme:00u1".to_owned()])
    );
    assert!(
        found
            .verifiable_addresses
            .iter()
            .any(|address| address.value == "jane@acme.example" && address.verified)
    );
}

#[tokio::test]
async fn an_identifier_nobody_holds_finds_nothing() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");

    let found = kratos
        .find_by_credential_identifier("okta-acme:00u2")
        .await
        .expect("lookup answered");

    assert_eq!(found, None);
}

#[tokio::test]
async fn creating_a_second_identity_with_the_same_oidc_subject_is_a_conflict() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("first creation");

    let second = kratos
        .create(&new_identity("other@acme.example", "okta-acme", "00u1"))
        .await;

    assert!(
        matches!(second, Err(KratosError::Conflict { .. })),
        "{second:?}"
    );
    assert_eq!(standin.identities().len(), 1);
}

#[tokio::test]
async fn getting_an_identity_that_does_not_exist_is_not_found() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);

    let answer = kratos
        .get(&"9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11".parse().unwrap())
        .await;

    assert!(
        matches!(answer, Err(KratosError::NotFound { .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_patch_changes_the_named_fields_and_leaves_the_rest_alone() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");

    let patched = kratos
        .patch(
            &created.id,
            &[
                PatchOp::Replace {
                    path: "/metadata_admin".to_owned(),
                    value: json!({ "groups": ["eng", "admins"] }),
                },
                PatchOp::Add {
                    path: "/traits/name".to_owned(),
                    value: json!("Jane"),
                },
            ],
        )
        .await
        .expect("patched");

    assert_eq!(
        patched.metadata_admin,
        Some(json!({ "groups": ["eng", "admins"] }))
    );
    assert_eq!(
        patched.traits,
        json!({ "email": "jane@acme.example", "name": "Jane" })
    );
    assert_eq!(patched.metadata_public, created.metadata_public);
    assert_eq!(kratos.get(&created.id).await.expect("read back"), patched);
}

#[tokio::test]
async fn deactivating_sets_the_state_inactive() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");

    let deactivated = kratos.deactivate(&created.id).await.expect("deactivated");

    assert_eq!(deactivated.state, "inactive");
    let write = standin.writes().pop().expect("the PATCH was logged");
    assert_eq!(write.method, "PATCH");
    assert_eq!(
        write.body,
        Some(json!([{ "op": "replace", "path": "/state", "value": "inactive" }]))
    );
}

#[tokio::test]
async fn linking_an_oidc_credential_keeps_metadata_admin_and_external_id() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let inserted = standin.insert_identity(json!({
        "schema_id": "default",
        "traits": { "email": "jane@acme.example" },
        "metadata_public": { "idp": "okta-acme" },
        "metadata_admin": { "groups": ["eng"] },
        "external_id": "hr-4711",
        "credentials": { "oidc": { "config": { "providers": [
            { "provider": "okta-acme", "subject": "00u1" }
        ] } } }
    }));
    let id: IdentityId = inserted["id"]
        .as_str()
        .expect("the stand-in assigns an id")
        .parse()
        .expect("a UUID");
    let current = kratos.get(&id).await.expect("read");
    let second = OidcCredential {
        provider: "entra-acme".parse().unwrap(),
        subject: Subject::parse("f00d").unwrap(),
    };

    let linked = kratos.link_oidc(&current, &second).await.expect("linked");

    assert_eq!(linked.metadata_admin, Some(json!({ "groups": ["eng"] })));
    assert_eq!(linked.external_id.as_deref(), Some("hr-4711"));
    assert_eq!(linked.metadata_public, Some(json!({ "idp": "okta-acme" })));
    assert_eq!(linked.traits, current.traits);
    for identifier in ["okta-acme:00u1", "entra-acme:f00d"] {
        let found = kratos
            .find_by_credential_identifier(identifier)
            .await
            .expect("lookup answered")
            .map(|identity: Identity| identity.id);
        assert_eq!(found, Some(id), "{identifier}");
    }
}

#[tokio::test]
async fn listing_with_page_size_three_pages_through_seven_identities() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let mut created = BTreeSet::new();
    for n in 0..7 {
        let identity = kratos
            .create(&new_identity(
                &format!("user{n}@acme.example"),
                "okta-acme",
                &format!("sub-{n}"),
            ))
            .await
            .expect("created");
        created.insert(identity.id);
    }

    let mut listed = Vec::new();
    let mut page_sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = kratos.list(3, token.as_deref()).await.expect("page");
        page_sizes.push(page.identities.len());
        listed.extend(page.identities.into_iter().map(|identity| identity.id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(page_sizes.len() <= 7, "pagination does not end");
    }

    assert_eq!(page_sizes, [3, 3, 1]);
    assert_eq!(listed.len(), 7, "an identity was listed twice: {listed:?}");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), created);
}

#[tokio::test]
async fn revoking_sessions_succeeds_whether_or_not_there_are_sessions() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");
    standin.add_session(&created.id.to_string());
    let sessions_path = format!("/admin/identities/{}/sessions", created.id);

    let with_sessions = kratos.revoke_sessions(&created.id).await;
    let without_sessions = kratos.revoke_sessions(&created.id).await;

    assert_eq!(with_sessions, Ok(()));
    assert_eq!(without_sessions, Ok(()));
    assert_eq!(count_requests(&standin, "DELETE", &sessions_path), 2);
}

#[tokio::test]
async fn two_server_errors_are_retried_and_the_third_attempt_succeeds() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");
    let path = format!("/admin/identities/{}", created.id);
    standin.set_fault(Fault::FailNext {
        count: 2,
        status: 500,
    });

    let read = kratos.get(&created.id).await;

    assert_eq!(read.map(|identity| identity.id), Ok(created.id));
    assert_eq!(count_requests(&standin, "GET", &path), 3);
}

#[tokio::test]
async fn a_create_retried_after_a_server_error_creates_one_identity() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    standin.set_fault(Fault::FailNext {
        count: 1,
        status: 500,
    });

    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await;

    assert!(created.is_ok(), "{created:?}");
    assert_eq!(standin.identities().len(), 1);
    assert_eq!(count_requests(&standin, "POST", "/admin/identities"), 2);
}

#[tokio::test]
async fn a_kratos_answering_503_every_time_is_unavailable_within_the_deadline() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    standin.set_fault(Fault::FailNext {
        count: 10,
        status: 503,
    });
    let started = Instant::now();

    let answer = kratos.find_by_credential_identifier("okta-acme:00u1").await;

    assert!(
        matches!(answer, Err(KratosError::Unavailable { .. })),
        "{answer:?}"
    );
    assert!(
        started.elapsed() <= DEADLINE + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        count_requests(&standin, "GET", "/admin/identities"),
        1 + MAX_RETRIES as usize
    );
}

#[tokio::test]
async fn a_kratos_slower_than_the_deadline_is_unavailable_when_the_deadline_passes() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    standin.set_fault(Fault::Delay(DEADLINE * 3));
    let started = Instant::now();

    let answer = kratos.list(10, None).await;

    let elapsed = started.elapsed();
    assert!(
        matches!(answer, Err(KratosError::Unavailable { .. })),
        "{answer:?}"
    );
    assert!(elapsed <= DEADLINE + MARGIN, "took {elapsed:?}");
    assert!(
        elapsed >= REQUEST_TIMEOUT,
        "gave up before any attempt timed out: {elapsed:?}"
    );
}

#[tokio::test]
async fn refused_connections_are_unavailable_within_the_deadline() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    standin.set_fault(Fault::RefuseConnections);
    let started = Instant::now();

    let answer = kratos
        .get(&"9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11".parse().unwrap())
        .await;

    assert!(
        matches!(answer, Err(KratosError::Unavailable { .. })),
        "{answer:?}"
    );
    assert!(
        started.elapsed() <= DEADLINE + MARGIN,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_patch_that_removes_is_not_repeated_when_its_outcome_is_unknown() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let created = kratos
        .create(&new_identity("jane@acme.example", "okta-acme", "00u1"))
        .await
        .expect("created");
    let path = format!("/admin/identities/{}", created.id);
    standin.set_fault(Fault::Delay(DEADLINE * 3));

    let removing = kratos
        .patch(
            &created.id,
            &[PatchOp::Remove {
                path: "/metadata_public".to_owned(),
            }],
        )
        .await;
    let removes_sent = count_requests(&standin, "PATCH", &path);
    let replacing = kratos
        .patch(
            &created.id,
            &[PatchOp::Replace {
                path: "/metadata_public".to_owned(),
                value: json!({}),
            }],
        )
        .await;
    let replaces_sent = count_requests(&standin, "PATCH", &path) - removes_sent;

    assert!(
        matches!(removing, Err(KratosError::Unavailable { .. })),
        "{removing:?}"
    );
    assert!(
        matches!(replacing, Err(KratosError::Unavailable { .. })),
        "{replacing:?}"
    );
    assert_eq!(
        removes_sent, 1,
        "a remove replayed on the removed value answers 400"
    );
    assert_eq!(replaces_sent, 1 + MAX_RETRIES as usize);
}

#[tokio::test]
async fn a_verified_address_on_a_channel_kratos_does_not_know_is_refused_before_sending() {
    let standin = start_standin();
    let kratos = kratos_for(&standin);
    let mut identity = new_identity("jane@acme.example", "okta-acme", "00u1");
    identity.verified_addresses[0].via = "whatsapp".to_owned();

    let answer = kratos.create(&identity).await;

    assert!(
        matches!(answer, Err(KratosError::Rejected { status: 400, .. })),
        "{answer:?}"
    );
    assert!(standin.requests().is_empty());
}
