//! Concurrent logins of one new subject, in one server and across two server processes.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use kratos_jit::standin::StandIn;
use serde_json::{Value, json};

use crate::helpers::{TRUSTED_SECRET, fixture, manifest_dir, spawn_app};

fn assert_one_creation(actions: &[String], statuses: &[u16]) {
    assert!(
        statuses.iter().all(|s| *s == 200),
        "not every login succeeded: {statuses:?} {actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "created").count(),
        1,
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .all(|a| ["created", "updated", "unchanged"].contains(&a.as_str())),
        "{actions:?}"
    );
}

#[actix_web::test]
async fn fifty_concurrent_logins_of_a_new_subject_create_exactly_one_identity() {
    let app = spawn_app().await;
    let claims = fixture("okta-acme", "admin");
    let body = json!({"provider": "okta-acme", "claims": claims}).to_string();
    let requests = (0..50).map(|_| app.post_provision(Some(TRUSTED_SECRET), body.clone()));
    let answers = join_all(requests).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let actions: Vec<String> = answers
        .iter()
        .map(|a| a.body["action"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_one_creation(&actions, &statuses);
    assert_eq!(app.kratos.identities().len(), 1);
    assert!(app.identity_for("okta-acme", "ada@acme.example").is_some());
}

struct ServeProcess {
    child: Child,
    address: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `kratos-jit serve` as its own process against `kratos` and waits until it answers.
fn serve_process(kratos: &StandIn) -> ServeProcess {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .arg("serve")
        .env("KRATOS_JIT__LISTEN", format!("127.0.0.1:{port}"))
        .env("KRATOS_JIT__PROVIDERS", manifest_dir().join("mappers"))
        .env("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url())
        .env("KRATOS_JIT__API__TRUSTED_SECRETS", TRUSTED_SECRET)
        .env("KRATOS_JIT__MAPPER__WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kratos-jit serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ServeProcess { child, address }
}

#[actix_web::test]
async fn two_serve_processes_racing_on_one_new_subject_create_exactly_one_identity() {
    let kratos = StandIn::start().unwrap();
    let servers = [serve_process(&kratos), serve_process(&kratos)];
    let client = reqwest::Client::new();
    let body = json!({"provider": "okta-acme", "claims": fixture("okta-acme", "user")}).to_string();
    let requests = (0..50).map(|i| {
        let request = client
            .post(format!("{}/v1/provision", servers[i % 2].address))
            .bearer_auth(TRUSTED_SECRET)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send();
        async move {
            let response = request.await.expect("serve answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["action"].as_str().unwrap_or("?").to_owned())
        }
    });
    let answers = join_all(requests).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    let actions: Vec<String> = answers.into_iter().map(|a| a.1).collect();
    assert_one_creation(&actions, &statuses);
    assert_eq!(kratos.identities().len(), 1);
}
