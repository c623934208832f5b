//! `GET /health/ready`: 200 when every check passes; 503 naming what is not ready while the
//! Kratos stand-in refuses connections or no mapper worker can start, and ready again once
//! the cause is gone. (Before the providers are loaded: `src/health.rs`'s unit tests, since
//! `serve` binds its port only after loading them.)

use std::time::{Duration, Instant};

use kratos_jit::config;
use kratos_jit::http::Application;
use kratos_jit::mapper::WorkerProgram;
use kratos_jit::provider::Providers;
use kratos_jit::standin::{Fault, StandIn};
use serde_json::Value;

use crate::helpers::{TestApp, manifest_dir, spawn_app_with};

/// A probe every 100 ms, stale after 300 ms, and a Kratos client that gives up quickly.
const QUICK: &[(&str, &str)] = &[
    ("KRATOS_JIT__HEALTH__KRATOS_INTERVAL", "100ms"),
    ("KRATOS_JIT__HEALTH__KRATOS_MAX_AGE", "300ms"),
    ("KRATOS_JIT__KRATOS__REQUEST_TIMEOUT", "500ms"),
    ("KRATOS_JIT__KRATOS__DEADLINE", "1s"),
];

async fn readiness(client: &reqwest::Client, address: &str) -> (u16, Value) {
    let response = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Polls `/health/ready` until `done` holds for its answer (at most 10 s); that answer.
async fn until(
    client: &reqwest::Client,
    address: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let (status, body) = readiness(client, address).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "readiness never reached the expected state; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(app: &TestApp) -> Value {
    until(&app.client, &app.address, |status, _| status == 200)
        .await
        .1
}

#[actix_web::test]
async fn ready_is_200_with_every_check_ok_once_kratos_answered_and_the_workers_run() {
    let app = spawn_app_with(QUICK).await;
    let body = ready(&app).await;
    assert_eq!(body["status"], "ok", "{body}");
    for check in ["providers", "kratos", "mapper_workers"] {
        assert_eq!(body["checks"][check], "ok", "{check}: {body}");
    }
    // Only enabled dependencies are checked: this app has neither SCIM nor the hop.
    assert!(body["checks"].get("scim_store").is_none(), "{body}");
    assert!(body["checks"].get("hop").is_none(), "{body}");
    // The probe asked the stand-in's /health/ready.
    assert!(app.kratos.health_checks() > 0, "the Kratos probe ran");
}

#[actix_web::test]
async fn ready_is_503_naming_kratos_while_the_stand_in_refuses_connections() {
    let app = spawn_app_with(QUICK).await;
    ready(&app).await;

    app.kratos.set_fault(Fault::RefuseConnections);
    let (_, body) = until(&app.client, &app.address, |status, _| status == 503).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    let kratos = body["checks"]["kratos"].as_str().unwrap();
    assert!(
        kratos.starts_with("no answer from the admin API for "),
        "{body}"
    );
    assert!(kratos.contains("cannot connect"), "{body}");
    assert!(
        !body
            .to_string()
            .contains(&app.kratos.addr().port().to_string()),
        "no URL in the answer: {body}"
    );
    // Only Kratos is the cause; the process itself stays alive.
    assert_eq!(body["checks"]["providers"], "ok");
    assert_eq!(body["checks"]["mapper_workers"], "ok");
    let alive = app
        .client
        .get(format!("{}/health/alive", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), 200);

    app.kratos.set_fault(Fault::None);
    let body = ready(&app).await;
    assert_eq!(body["checks"]["kratos"], "ok");
}

#[actix_web::test]
async fn ready_is_503_when_kratos_reports_itself_not_ready() {
    let app = spawn_app_with(QUICK).await;
    ready(&app).await;
    // Kratos's own /health/ready answers 503 (its database is down).
    app.kratos.set_fault(Fault::FailMatching {
        method: Some("GET".into()),
        path_suffix: "/health/ready".into(),
        count: 1_000_000,
        status: 503,
    });
    let (_, body) = until(&app.client, &app.address, |status, _| status == 503).await;
    let kratos = body["checks"]["kratos"].as_str().unwrap();
    assert!(kratos.contains("not ready"), "{body}");
    app.kratos.set_fault(Fault::None);
    ready(&app).await;
}

#[actix_web::test]
async fn ready_is_503_naming_the_mapper_workers_when_none_can_start() {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut env: Vec<(String, String)> = vec![
        ("KRATOS_JIT__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            manifest_dir().join("mappers").display().to_string(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS".into(),
            crate::helpers::TRUSTED_SECRET.into(),
        ),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "2".into()),
    ];
    env.extend(QUICK.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    let config = config::load_from(None, env).unwrap();
    let (providers, _) = Providers::load(&config.providers).unwrap();
    let missing = tempfile::tempdir().unwrap();
    // The worker program is gone (a broken image, a deleted binary): no worker can start.
    let app = Application::build(
        &config,
        providers,
        WorkerProgram::new(missing.path().join("kratos-jit")),
    )
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    // Once the first probe answered, only the workers are missing.
    let (status, body) = until(&client, &address, |_, body| {
        body["checks"]["kratos"] == "ok"
            && body["checks"]["mapper_workers"]
                .as_str()
                .is_some_and(|reason| reason.contains("failed"))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["checks"]["mapper_workers"],
        "no mapper worker is running (0 of 2): starting one failed, see the log"
    );
    assert_eq!(body["checks"]["kratos"], "ok", "{body}");
    assert_eq!(body["checks"]["providers"], "ok", "{body}");
    assert!(
        !body
            .to_string()
            .contains(&missing.path().display().to_string()),
        "no path in the answer: {body}"
    );
}
