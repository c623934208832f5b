//! `GET /health/ready` with SCIM on: the store is a required dependency. With its PostgreSQL
//! database down, readiness is 503 naming the store (and not its URL or password); once the
//! database is back, 200.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{App, Options, postgres_database, postgres_down, postgres_up, spawn_with};

async fn readiness(app: &App) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Polls until the answer has `status` (at most 15 s: a dead store is noticed within the
/// ping's 2 s timeout).
async fn until(app: &App, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = readiness(app).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "readiness never answered {status}; last: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn ready_is_503_naming_the_scim_store_while_its_postgresql_is_down() {
    let url = postgres_database().await;
    let app = spawn_with(Options {
        database_url: url.clone(),
        env: vec![("KRATOS_JIT__HEALTH__KRATOS_INTERVAL", "100ms".into())],
        ..Options::default()
    })
    .await;
    let body = until(&app, 200).await;
    assert_eq!(body["checks"]["scim_store"], "ok", "{body}");

    postgres_down(&url).await;
    let body = until(&app, 503).await;
    let store = body["checks"]["scim_store"].as_str().unwrap();
    assert!(store.contains("postgres"), "{body}");
    assert_eq!(
        body["checks"]["kratos"], "ok",
        "only the store is down: {body}"
    );
    assert!(
        !body.to_string().contains("postgres://"),
        "no URL in the answer: {body}"
    );

    postgres_up(&url).await;
    let body = until(&app, 200).await;
    assert_eq!(body["checks"]["scim_store"], "ok");
}

#[actix_web::test]
async fn ready_checks_the_sqlite_store_too() {
    let app = spawn_with(Options {
        env: vec![("KRATOS_JIT__HEALTH__KRATOS_INTERVAL", "100ms".into())],
        ..Options::default()
    })
    .await;
    let body = until(&app, 200).await;
    assert_eq!(body["checks"]["scim_store"], "ok", "{body}");
}
