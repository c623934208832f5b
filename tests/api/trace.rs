//! W3C trace propagation: a `traceparent` sent to `POST /v1/provision` reaches every Kratos
//! admin call and every upstream IdP fetch with the same trace id and a new parent id, and
//! shows in the log lines of the request, in both log formats. A request without a valid
//! header starts a trace of its own.

use std::collections::BTreeSet;

use kratos_jit::standin::StandIn;
use kratos_jit::trace::TraceParent;
use serde_json::{Value, json};

use crate::helpers::{
    API_SECRET, TRUSTED_SECRET, fixture, spawn_app, spawn_app_with_providers, token_providers,
    umbrella_token_claims,
};
use crate::issuer::{TestIssuer, key_a};
use crate::logs::{Format, Served};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn provision(
    client: &reqwest::Client,
    address: &str,
    secret: &str,
    body: &Value,
    traceparent: Option<&str>,
) -> u16 {
    let mut request = client
        .post(format!("{address}/v1/provision"))
        .bearer_auth(secret)
        .json(body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    request
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// The `traceparent` of every admin call the stand-in received (the probe's excepted), parsed.
fn kratos_traceparents(kratos: &StandIn) -> Vec<TraceParent> {
    kratos
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/admin/"))
        .map(|r| {
            r.traceparent
                .unwrap_or_else(|| panic!("{} {} came without traceparent", r.method, r.path))
                .parse()
                .unwrap_or_else(|e| panic!("{} {}: {e}", r.method, r.path))
        })
        .collect()
}

#[actix_web::test]
async fn a_traceparent_sent_to_provision_reaches_every_kratos_call_with_the_same_trace_id() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "admin");
    let body = json!({"provider": "okta-acme", "claims": claims});
    let status = provision(&app.client, &app.address, TRUSTED_SECRET, &body, Some(SENT)).await;
    assert_eq!(status, 200);

    let sent = kratos_traceparents(&app.kratos);
    assert!(sent.len() >= 2, "a first login looks up, then creates");
    for parent in &sent {
        assert_eq!(parent.trace_id.to_string(), TRACE_ID);
        assert_eq!(parent.flags, 1, "the caller's sampled flag is kept");
        assert_ne!(
            parent.parent_id.to_string(),
            "00f067aa0ba902b7",
            "the parent id is kratos-jit's, not the caller's"
        );
    }
    let parents: BTreeSet<String> = sent.iter().map(|p| p.parent_id.to_string()).collect();
    assert_eq!(parents.len(), sent.len(), "a new parent id for each call");
}

#[actix_web::test]
async fn a_request_without_a_valid_traceparent_starts_a_new_trace_for_its_calls() {
    let app = spawn_app().await;
    let body = |case: &str| json!({"provider": "okta-acme", "claims": fixture("okta-acme", case)});
    let invalid = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    for (case, header) in [("admin", None), ("demoted", Some(invalid))] {
        app.kratos.clear_log();
        let status = provision(
            &app.client,
            &app.address,
            TRUSTED_SECRET,
            &body(case),
            header,
        )
        .await;
        assert_eq!(status, 200, "{case}");
        let sent = kratos_traceparents(&app.kratos);
        assert!(!sent.is_empty());
        let traces: BTreeSet<String> = sent.iter().map(|p| p.trace_id.to_string()).collect();
        assert_eq!(traces.len(), 1, "one trace per request: {traces:?}");
        let trace = traces.into_iter().next().unwrap();
        assert_ne!(trace, TRACE_ID.to_lowercase());
        assert_eq!(sent[0].flags, 0, "a new trace asks nobody to record it");
    }
}

#[actix_web::test]
async fn the_discovery_and_jwks_fetches_of_a_token_login_carry_the_requests_trace() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let providers = token_providers(&issuer.url, None);
    let app = spawn_app_with_providers(providers.path(), &[]).await;
    let token = key.sign(&umbrella_token_claims(&issuer, "user"));
    let body = json!({"provider": "okta-oidc-umbrella", "id_token": token});
    let status = provision(&app.client, &app.address, API_SECRET, &body, Some(SENT)).await;
    assert_eq!(status, 200);

    let fetches = issuer.traceparents();
    let paths: Vec<&str> = fetches.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["/.well-known/openid-configuration", "/jwks"]);
    for (path, traceparent) in &fetches {
        let parent: TraceParent = traceparent
            .as_deref()
            .unwrap_or_else(|| panic!("{path} came without traceparent"))
            .parse()
            .unwrap();
        assert_eq!(parent.trace_id.to_string(), TRACE_ID, "{path}");
    }
    assert!(
        kratos_traceparents(&app.kratos)
            .iter()
            .all(|p| p.trace_id.to_string() == TRACE_ID)
    );
}

/// Runs the binary in `format`, sends one traced login and returns its log.
async fn traced_login_log(format: Format) -> String {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut served = Served::start(
        format,
        &[
            ("KRATOS_JIT__LISTEN", "127.0.0.1:0".into()),
            (
                "KRATOS_JIT__PROVIDERS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/mappers").into(),
            ),
            ("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url()),
            ("KRATOS_JIT__API__TRUSTED_SECRETS", TRUSTED_SECRET.into()),
            ("KRATOS_JIT__MAPPER__WORKERS", "1".into()),
        ],
    );
    let address = served.address().await;
    let body = json!({"provider": "okta-acme", "claims": fixture("okta-acme", "admin")});
    let client = reqwest::Client::new();
    assert_eq!(
        provision(&client, &address, TRUSTED_SECRET, &body, Some(SENT)).await,
        200
    );
    assert!(
        kratos_traceparents(&kratos)
            .iter()
            .all(|p| p.trace_id.to_string() == TRACE_ID)
    );
    served.stop().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_id_is_in_every_log_line_of_the_request_in_the_json_format() {
    let log = traced_login_log(Format::Json).await;
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_owned();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|line| line["span"]["trace_id"] == TRACE_ID)
        .collect();
    assert!(
        of_request
            .iter()
            .any(|line| message(line) == "Login processed."),
        "the login's line carries the trace id:\n{log}"
    );
    assert!(
        of_request
            .iter()
            .any(|line| message(line) == "Kratos admin call answered."),
        "so do the Kratos calls' lines:\n{log}"
    );
    // Every line of a request's work is inside a request span.
    for line in &lines {
        if ["Login processed.", "Kratos admin call answered."].contains(&message(line).as_str()) {
            assert_eq!(line["span"]["name"], "request", "{line}");
            assert_eq!(line["span"]["trace_id"].as_str().map(str::len), Some(32));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_id_is_in_the_log_line_of_the_request_in_the_text_format() {
    let log = traced_login_log(Format::Text).await;
    let field = format!("trace_id={TRACE_ID}");
    let login = log
        .lines()
        .find(|line| line.contains("Login processed."))
        .unwrap_or_else(|| panic!("no login line:\n{log}"));
    assert!(login.contains(&field), "{login}");
    assert!(
        log.lines()
            .filter(|line| line.contains("Kratos admin call answered."))
            .all(|line| line.contains("trace_id=")),
        "{log}"
    );
}
