//! `scim.server_timing`: SCIM answers carry `Server-Timing: dep;dur=…, app;dur=…`, where `dep`
//! is the time spent in calls to the Kratos admin API and to the SCIM store (what the SCIM
//! benchmark, `bench/scim-load.sh`, subtracts to get kratos-jit's own share).

#[path = "common/serve.rs"]
mod serve;

use std::time::Duration;

use kratos_jit::standin::{Fault, StandIn};
use serde_json::json;

const SECRET: &str = "acme-scim-secret-0123456789";
const USERS: &str = "/scim/v2/okta-acme/Users";

async fn spawn(server_timing: bool) -> (String, StandIn) {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut env: Vec<(String, String)> = vec![
        ("KRATOS_JIT__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/mappers").into(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS".into(),
            "trusted-0123456789".into(),
        ),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "1".into()),
        (
            "KRATOS_JIT__SCIM__DATABASE_URL".into(),
            "sqlite::memory:".into(),
        ),
    ];
    if server_timing {
        env.push(("KRATOS_JIT__SCIM__SERVER_TIMING".into(), "true".into()));
    }
    let app = serve::build(env, |_| SECRET).await;
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    (address, kratos)
}

/// `dep` and `app` of the answer's `Server-Timing`, in ms.
fn server_timing(response: &reqwest::Response) -> Option<(f64, f64)> {
    let header = response.headers().get("server-timing")?.to_str().unwrap();
    let metric = |name: &str| {
        header.split(',').find_map(|m| {
            let (n, dur) = m.trim().split_once(";dur=")?;
            (n == name).then(|| dur.parse::<f64>().unwrap())
        })
    };
    Some((metric("dep")?, metric("app")?))
}

fn grace() -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@acme.example",
        "externalId": "00u1acmegrace",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": "grace@acme.example", "type": "work", "primary": true}],
        "active": true
    })
    .to_string()
}

async fn post_grace(client: &reqwest::Client, address: &str) -> reqwest::Response {
    client
        .post(format!("{address}{USERS}"))
        .bearer_auth(SECRET)
        .header("Content-Type", "application/scim+json")
        .body(grace())
        .send()
        .await
        .unwrap()
}

async fn filter_grace(client: &reqwest::Client, address: &str) -> reqwest::Response {
    client
        .get(format!("{address}{USERS}"))
        .query(&[("filter", "userName eq \"grace@acme.example\"")])
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn with_scim_server_timing_the_waits_on_kratos_and_the_store_are_dep_and_the_rest_app() {
    let (address, kratos) = spawn(true).await;
    let client = reqwest::Client::new();

    // Every Kratos call waits 60 ms: the create's calls are dependency time, not kratos-jit's.
    kratos.set_fault(Fault::Delay(Duration::from_millis(60)));
    let created = post_grace(&client, &address).await;
    assert_eq!(created.status(), 201);
    let (dep, app) = server_timing(&created).expect("a SCIM answer carries Server-Timing");
    assert!(dep >= 60.0, "the create waited on Kratos: dep {dep} ms");
    assert!(
        app > 0.0,
        "its own work (the mapper) took time: app {app} ms"
    );
    kratos.set_fault(Fault::None);

    // The filter is answered from the store alone: its call is the whole `dep`.
    kratos.clear_log();
    let found = filter_grace(&client, &address).await;
    assert_eq!(found.status(), 200);
    assert!(
        kratos.requests().is_empty(),
        "the filter made no Kratos call"
    );
    let (dep, app) = server_timing(&found).expect("a SCIM answer carries Server-Timing");
    assert!(dep > 0.0, "the store call is dependency time: dep {dep} ms");
    assert!(app > 0.0, "app {app} ms");
    let body: serde_json::Value = found.json().await.unwrap();
    assert_eq!(body["totalResults"], 1, "{body}");

    // An answer that calls nothing (a wrong secret) waited on nothing.
    let refused = client
        .get(format!("{address}{USERS}"))
        .bearer_auth("not-the-secret-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(server_timing(&refused).map(|(dep, _)| dep), Some(0.0));
}

#[actix_web::test]
async fn by_default_scim_answers_carry_no_server_timing() {
    let (address, _kratos) = spawn(false).await;
    let client = reqwest::Client::new();
    let created = post_grace(&client, &address).await;
    assert_eq!(created.status(), 201);
    assert!(created.headers().get("server-timing").is_none());
    let found = filter_grace(&client, &address).await;
    assert_eq!(found.status(), 200);
    assert!(found.headers().get("server-timing").is_none());
}
