//! What hostile or unusual traffic meets: the web hook retry cache answers only true retries and
//! stays bounded; slow bodies are cut off at the body deadline; a declared body over the limit is
//! refused before anything is read; connections over the cap wait; a hook body as large as
//! Kratos sends for a user in thousands of groups is served.

use std::path::Path;
use std::time::{Duration, Instant};

use kratos_jit::carrier::{IdentityVar, kratos_mapper, placeholder_traits};
use kratos_jit::mapper::{Evaluator, Limits, MapperSource, empty_identity};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    API_SECRET, HOOK_SECRET, TestApp, fixture, fixtures_dir, manifest_dir, spawn_app,
    spawn_app_with,
};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Evaluates Jsonnet `code` with `value` as `std.extVar('claims')`, with room for large outputs.
fn evaluate(code: &str, value: &Value) -> Value {
    let limits = Limits {
        max_output_bytes: 16 << 20,
        ..Limits::default()
    };
    let evaluator = Evaluator::new(&[MapperSource::new("x", "x.jsonnet", code)], limits).unwrap();
    evaluator
        .evaluate("x", value, &empty_identity())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The body Kratos sends to the registration hook for `claims` of `provider`: the shipped
/// Kratos-side mapper's identity in the `ctx` fixture, through the shipped body template.
fn registration_body(provider: &str, claims: &Value) -> Value {
    let placeholder = placeholder_traits(None).unwrap();
    let carrier = kratos_mapper(provider, &placeholder, IdentityVar::Registration);
    let mapped = evaluate(&carrier, claims)["identity"].clone();
    let mut ctx: Value = serde_json::from_str(&read(
        &fixtures_dir().join("kratos-webhooks/registration-oidc-ctx.json"),
    ))
    .unwrap();
    ctx["identity"]["traits"] = mapped["traits"].clone();
    ctx["identity"]["metadata_public"] = mapped["metadata_public"].clone();
    let template = read(&manifest_dir().join("deploy/kratos/hooks/registration.jsonnet"));
    evaluate(&format!("({template})(std.extVar('claims'))"), &ctx)
}

/// A stale-claims login of the identity `id`, holding the traits kratos-jit gave it (the hook
/// answers 204 and writes nothing).
fn login_body(id: &str) -> Value {
    let claims = fixture("okta-acme", "admin");
    let mut body = registration_body("okta-acme", &claims);
    let mapper = read(&manifest_dir().join("mappers/okta-acme/mapper.jsonnet"));
    body["identity"]["traits"] = evaluate(&mapper, &claims)["identity"]["traits"].clone();
    body["identity"]["id"] = json!(id);
    body["session"] = json!({
        "authenticated_at": "2030-01-01T00:00:00Z",
        "authentication_methods": [{"method": "oidc", "provider": "okta-acme"}],
    });
    body
}

struct Answer {
    status: u16,
    body: Value,
}

async fn hook(app: &TestApp, flow: &str, trigger: Option<&str>, body: String) -> Answer {
    let mut request = app
        .client
        .post(format!("{}/v1/hooks/{flow}", app.address))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {HOOK_SECRET}"))
        .body(body);
    if let Some(trigger) = trigger {
        request = request.header("Ory-Webhook-Trigger-ID", trigger);
    }
    let response = request.send().await.expect("the hook answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
    };
    Answer { status, body }
}

fn message_code(answer: &Answer) -> &str {
    answer.body["messages"][0]["messages"][0]["context"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_login_hooks_answer_is_not_replayed_to_a_registration_with_the_same_trigger_id() {
    let app = spawn_app().await;
    let login = hook(
        &app,
        "login",
        Some("shared-trigger"),
        login_body("6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f").to_string(),
    )
    .await;
    assert_eq!(login.status, 204, "{}", login.body);

    let registration = hook(
        &app,
        "registration",
        Some("shared-trigger"),
        "this is not JSON".into(),
    )
    .await;

    assert_eq!(registration.status, 400, "{}", registration.body);
    assert_eq!(message_code(&registration), "bad_request");
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_trigger_id_sent_again_with_another_body_is_not_a_retry_and_runs() {
    let app = spawn_app().await;
    let admin = registration_body("okta-acme", &fixture("okta-acme", "admin"));
    let user = registration_body("okta-acme", &fixture("okta-acme", "user"));

    let first = hook(&app, "registration", Some("trigger-7"), admin.to_string()).await;
    let second = hook(&app, "registration", Some("trigger-7"), user.to_string()).await;
    let retry = hook(&app, "registration", Some("trigger-7"), admin.to_string()).await;

    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["identity"]["traits"]["role"], "admin");
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        second.body["identity"]["traits"]["role"], "user",
        "the first call's answer was replayed for another body"
    );
    // The true retry still gets the first answer.
    assert_eq!(retry.body, first.body);
}

#[actix_web::test]
async fn a_call_with_an_empty_or_no_trigger_id_is_never_answered_from_the_cache() {
    for trigger in [Some(""), None] {
        let app = spawn_app().await;
        let body = registration_body("okta-acme", &fixture("okta-acme", "admin")).to_string();
        let first = hook(&app, "registration", trigger, body.clone()).await;
        assert_eq!(first.status, 200, "{trigger:?}: {}", first.body);
        // Another identity now holds the e-mail: the same call, run again, is refused.
        app.kratos.insert_identity(json!({
            "schema_id": "default",
            "traits": {"email": "ada@acme.example", "tenant_id": "tenant-acme", "role": "guest"},
            "credentials": {"password": {"config": {"password": "correct horse battery staple"}}}
        }));
        app.kratos.clear_log();

        let second = hook(&app, "registration", trigger, body).await;

        assert_eq!(second.status, 403, "{trigger:?}: answered from the cache");
        assert_eq!(message_code(&second), "linking_disabled");
        assert!(app.kratos.writes().is_empty());
    }
}

#[actix_web::test]
async fn an_overlong_trigger_id_is_refused_with_a_400_that_does_not_echo_it() {
    let app = spawn_app().await;
    let body = registration_body("okta-acme", &fixture("okta-acme", "admin")).to_string();
    let longest = "a".repeat(256);
    let overlong = "b".repeat(257);

    let accepted = hook(&app, "registration", Some(&longest), body.clone()).await;
    app.kratos.clear_log();
    let refused = hook(&app, "registration", Some(&overlong), body).await;

    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(message_code(&refused), "bad_request");
    let text = refused.body.to_string();
    assert!(text.contains("Ory-Webhook-Trigger-ID"), "{text}");
    assert!(
        !text.contains("bbbbbbbbbbbbbbbb"),
        "the id was echoed: {text}"
    );
    // Refused before anything ran.
    assert!(app.kratos.requests().is_empty());
    assert!(app.kratos.writes().is_empty());
}

/// A registration hook body as Kratos sends it for a user of Acme's Okta (bridged by Ory Polis)
/// in 5,000 groups of 20 characters: Polis puts the groups both in `raw_claims.groups` and in
/// `raw_claims.raw.groups`, and Kratos sends go-jsonnet's output, indented by three spaces.
#[actix_web::test]
async fn a_registration_hook_for_a_user_in_5000_groups_is_answered_with_the_identity() {
    let app = spawn_app().await;
    let mut claims: Value = serde_json::from_str(&read(
        &fixtures_dir().join("claims-polis/okta-acme/many-groups.json"),
    ))
    .unwrap();
    let mut groups: Vec<Value> = (0..4_999)
        .map(|i| json!(format!("acme-group-{i:05}-eng")))
        .collect();
    groups.push(json!("Acme-Admins"));
    claims["raw_claims"]["groups"] = json!(groups);
    claims["raw_claims"]["raw"]["groups"] = json!(groups);
    let body = registration_body("okta-acme", &claims);
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    serde::Serialize::serialize(
        &body,
        &mut serde_json::Serializer::with_formatter(&mut text, formatter),
    )
    .unwrap();
    assert!(
        (400_000..1 << 20).contains(&text.len()),
        "{} bytes",
        text.len()
    );

    let answer = hook(
        &app,
        "registration",
        Some("c9b1f3e2-5d4a-4e6f-8a7b-0c1d2e3f4a5b"),
        String::from_utf8(text).unwrap(),
    )
    .await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    let identity = &answer.body["identity"];
    assert_eq!(identity["traits"]["email"], "linus@acme.example");
    assert_eq!(identity["traits"]["role"], "admin");
    assert_eq!(identity["metadata_public"], json!({}));
}

// Raw connections: what a slow or lying client meets.

const BODY_TIMEOUT: &str = "1s";

async fn impatient_app() -> TestApp {
    spawn_app_with(&[("KRATOS_JIT__BODY_TIMEOUT", BODY_TIMEOUT)]).await
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address)
        .await
        .expect("the server accepts")
}

/// A POST's head to `path`, authenticated for it, declaring `length` bytes of body.
fn head(path: &str, length: u64) -> String {
    let secret = if path.starts_with("/v1/hooks") {
        HOOK_SECRET
    } else {
        API_SECRET
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {secret}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// What the server sent on a connection, when its first byte came and when the server closed
/// the connection.
struct Received {
    text: String,
    first_byte: Duration,
    closed: Duration,
}

/// Everything the server sends until it closes the connection; `None` if it is still open after
/// `patience`.
async fn until_closed(
    reader: &mut (impl AsyncReadExt + Unpin),
    patience: Duration,
) -> Option<Received> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut first_byte = None;
    let reading = async {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first_byte.get_or_insert_with(|| started.elapsed());
                    received.extend_from_slice(&chunk[..n]);
                }
            }
        }
    };
    tokio::time::timeout(patience, reading).await.ok()?;
    Some(Received {
        text: String::from_utf8_lossy(&received).into_owned(),
        first_byte: first_byte.unwrap_or_else(|| started.elapsed()),
        closed: started.elapsed(),
    })
}

/// After an early answer actix still reads (and drops) what the client sends for up to 1 s
/// before it closes, so that the client sees the answer rather than a reset.
const LINGER: Duration = Duration::from_millis(1500);

fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[actix_web::test]
async fn a_body_that_stops_arriving_is_answered_408_and_the_connection_closed_at_the_deadline() {
    let app = impatient_app().await;
    for path in ["/v1/provision", "/v1/hooks/registration", "/v1/hooks/login"] {
        let mut stream = connect(&app).await;
        stream
            .write_all(format!("{}{{\"provider\":", head(path, 400)).as_bytes())
            .await
            .unwrap();

        let answer = until_closed(&mut stream, Duration::from_secs(5)).await;

        let answer = answer.unwrap_or_else(|| panic!("{path}: still open after 5 s"));
        assert_eq!(status_of(&answer.text), 408, "{path}: {}", answer.text);
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(2000)).contains(&answer.first_byte),
            "{path}: answered after {:?}",
            answer.first_byte
        );
        assert!(
            answer.closed < answer.first_byte + LINGER,
            "{path}: closed after {:?}",
            answer.closed
        );
        if path.starts_with("/v1/hooks") {
            // A Kratos `messages` body, so Kratos shows why rather than a generic error.
            assert!(
                answer.text.contains("\"messages\""),
                "{path}: {}",
                answer.text
            );
        }
    }
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn bodies_trickling_one_byte_at_a_time_are_cut_off_at_the_deadline() {
    let app = impatient_app().await;
    let mut clients = Vec::new();
    for path in [
        "/v1/provision",
        "/v1/hooks/registration",
        "/v1/provision",
        "/v1/hooks/login",
        "/v1/provision",
    ] {
        let (mut reader, mut writer) = connect(&app).await.into_split();
        writer.write_all(head(path, 100).as_bytes()).await.unwrap();
        // 100 bytes at one byte every 100 ms would take 10 s.
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        clients.push(tokio::spawn(async move {
            let answer = until_closed(&mut reader, Duration::from_secs(5)).await;
            trickle.abort();
            (path, answer)
        }));
    }
    for client in clients {
        let (path, answer) = client.await.unwrap();
        let answer = answer.unwrap_or_else(|| panic!("{path}: still open after 5 s"));
        assert_eq!(status_of(&answer.text), 408, "{path}: {}", answer.text);
        assert!(
            answer.first_byte < Duration::from_millis(2000),
            "{path}: answered after {:?}",
            answer.first_byte
        );
        assert!(
            answer.closed < answer.first_byte + LINGER,
            "{path}: held {:?}",
            answer.closed
        );
    }
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_declared_body_over_the_limit_is_refused_413_before_any_of_it_is_read() {
    let app = impatient_app().await;
    for path in ["/v1/provision", "/v1/hooks/registration", "/v1/hooks/login"] {
        let mut stream = connect(&app).await;
        stream
            .write_all(head(path, 1_000_000_000_000).as_bytes())
            .await
            .unwrap();

        let answer = until_closed(&mut stream, Duration::from_secs(5)).await;

        let answer = answer.unwrap_or_else(|| panic!("{path}: still open after 5 s"));
        assert_eq!(status_of(&answer.text), 413, "{path}: {}", answer.text);
        // Well before the body deadline: nothing was waited for.
        assert!(
            answer.first_byte < Duration::from_millis(300),
            "{path}: answered after {:?}",
            answer.first_byte
        );
        assert!(
            answer.closed < answer.first_byte + LINGER,
            "{path}: closed after {:?}",
            answer.closed
        );
    }
    assert!(app.kratos.writes().is_empty());
}

#[actix_web::test]
async fn a_connection_over_the_cap_waits_until_another_closes() {
    // One connection per worker thread (the cap is split among them).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = workers.to_string();
    let app = spawn_app_with(&[
        ("KRATOS_JIT__MAX_CONNECTIONS", cap.as_str()),
        ("KRATOS_JIT__BODY_TIMEOUT", "30s"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..workers {
        let mut stream = connect(&app).await;
        stream
            .write_all(head("/v1/provision", 100).as_bytes())
            .await
            .unwrap();
        held.push(stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut waiting = connect(&app).await;
    waiting
        .write_all(b"GET /health/alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    let early = until_closed(&mut waiting, Duration::from_millis(800)).await;
    assert!(
        early.is_none(),
        "served over the cap: {:?}",
        early.map(|a| a.text)
    );
    drop(held);
    let late = until_closed(&mut waiting, Duration::from_secs(5)).await;

    let answer = late.expect("served once a connection closed");
    assert_eq!(status_of(&answer.text), 200, "{}", answer.text);
}
