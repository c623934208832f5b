//! Bad requests get a clear error naming the problem; Kratos faults end within the deadline;
//! neither leaves a duplicate or a half-written identity, and the server keeps serving.

use std::time::{Duration, Instant};

use kratos_jit::standin::Fault;
use serde_json::json;

use crate::helpers::{API_SECRET, TRUSTED_SECRET, TestApp, fixture, spawn_app, spawn_app_with};

fn message(answer: &crate::helpers::Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn still_serving(app: &TestApp) {
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "user"))
        .await;
    assert_eq!(
        answer.status, 200,
        "the server stopped serving: {}",
        answer.body
    );
}

#[actix_web::test]
async fn malformed_requests_are_refused_naming_the_problem() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "admin");
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (
            Some(TRUSTED_SECRET),
            "{not json".into(),
            400,
            "the body must be",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": 5, "claims": claims}).to_string(),
            400,
            "invalid type",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "okta-acme", "claims": "x"}).to_string(),
            400,
            "invalid type",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "okta-acme", "claims": claims, "extra": 1}).to_string(),
            400,
            "unknown field `extra`",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "okta-acme"}).to_string(),
            400,
            "needs an id_token",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "okta-acme", "claims": claims, "id_token": "x"}).to_string(),
            400,
            "not both",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "okta-acme", "claims": {"iss": "x"}}).to_string(),
            400,
            "claims.sub",
        ),
        (
            Some(TRUSTED_SECRET),
            json!({"provider": "nobody", "claims": claims}).to_string(),
            404,
            "unknown provider `nobody`",
        ),
        (
            None,
            json!({"provider": "okta-acme", "claims": claims}).to_string(),
            401,
            "API secret",
        ),
        (
            Some("wrong-secret-0123456789"),
            json!({"provider": "okta-acme", "claims": claims}).to_string(),
            401,
            "API secret",
        ),
        (
            Some(API_SECRET),
            json!({"provider": "okta-acme", "claims": claims}).to_string(),
            403,
            "trusted secret",
        ),
        (
            Some(TRUSTED_SECRET),
            format!(
                "{{\"provider\": \"okta-acme\", \"claims\": {{\"pad\": \"{}\"}}}}",
                "x".repeat(70_000)
            ),
            413,
            "larger than 65536 bytes",
        ),
    ];
    for (secret, body, status, expected) in cases {
        let answer = app.post_provision(secret, body.clone()).await;
        let text = message(&answer);
        assert_eq!(
            answer.status,
            status,
            "{}: {}",
            &body[..body.len().min(80)],
            answer.body
        );
        assert!(
            text.contains(expected),
            "{status}: {text:?} lacks {expected:?}"
        );
    }
    assert!(
        app.kratos.writes().is_empty(),
        "a refused request wrote {:?}",
        app.kratos.writes()
    );
    still_serving(&app).await;
}

/// Short Kratos timeouts so faults resolve quickly.
async fn impatient_app() -> TestApp {
    spawn_app_with(&[
        ("KRATOS_JIT__KRATOS__REQUEST_TIMEOUT", "300ms"),
        ("KRATOS_JIT__KRATOS__DEADLINE", "1s"),
        ("KRATOS_JIT__API__DEADLINE", "2s"),
    ])
    .await
}

#[actix_web::test]
async fn two_kratos_errors_are_retried_into_success() {
    let app = impatient_app().await;
    app.kratos.set_fault(Fault::FailNext {
        count: 2,
        status: 500,
    });
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    assert_eq!(
        (answer.status, answer.body["action"].as_str()),
        (200, Some("created")),
        "{}",
        answer.body
    );
    assert_eq!(app.kratos.identities().len(), 1);
}

#[actix_web::test]
async fn persistent_kratos_errors_end_in_503_within_the_deadline() {
    let app = impatient_app().await;
    app.kratos.set_fault(Fault::FailNext {
        count: 1000,
        status: 503,
    });
    let started = Instant::now();
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        message(&answer).contains("Kratos could not be reached"),
        "{}",
        answer.body
    );
    assert!(app.kratos.identities().is_empty());
    app.kratos.set_fault(Fault::None);
    still_serving(&app).await;
}

#[actix_web::test]
async fn refused_connections_end_in_503_within_the_deadline() {
    let app = impatient_app().await;
    app.kratos.set_fault(Fault::RefuseConnections);
    let started = Instant::now();
    let answer = app
        .provision_claims("okta-acme", &fixture("okta-acme", "admin"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    app.kratos.set_fault(Fault::None);
    still_serving(&app).await;
}

#[actix_web::test]
async fn a_slow_kratos_ends_in_503_within_the_deadline_and_never_duplicates() {
    let app = impatient_app().await;
    let claims = fixture("okta-acme", "admin");
    app.kratos
        .set_fault(Fault::Delay(Duration::from_millis(1500)));
    let started = Instant::now();
    let answer = app.provision_claims("okta-acme", &claims).await;
    assert!(
        started.elapsed() < Duration::from_millis(2200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    app.kratos.set_fault(Fault::None);
    // Whatever the slow Kratos did meanwhile, the next login converges on one identity.
    let again = app.provision_claims("okta-acme", &claims).await;
    assert_eq!(again.status, 200, "{}", again.body);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(app.kratos.identities().len(), 1);
}

#[actix_web::test]
async fn a_lost_create_answer_does_not_duplicate_the_identity() {
    let app = impatient_app().await;
    let claims = fixture("okta-acme", "admin");
    // The first create reaches Kratos and is applied, but its answer is slower than the
    // per-call timeout: the adapter retries, meets the 409, and the login converges.
    app.kratos
        .set_fault(Fault::Delay(Duration::from_millis(400)));
    let answer = app.provision_claims("okta-acme", &claims).await;
    app.kratos.set_fault(Fault::None);
    assert!([200, 503].contains(&answer.status), "{}", answer.body);
    let again = app.provision_claims("okta-acme", &claims).await;
    assert_eq!(again.status, 200, "{}", again.body);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(app.kratos.identities().len(), 1);
    let identity = &app.kratos.identities()[0];
    assert_eq!(
        identity["traits"]["role"], "admin",
        "a half-applied identity: {identity}"
    );
}
