//! No personal data in any log line, whatever the login: every claims fixture and every denial
//! fixture goes through the API, the registration hook and the login hook of the real binary,
//! logging at TRACE in text and in JSON, and no e-mail, name, subject, tenant, directory or
//! group id of the fixtures — nor a mapper's own refusal text — appears in what it wrote.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kratos_jit::carrier::CARRIED_CLAIMS_KEY;
use kratos_jit::standin::StandIn;
use serde_json::{Value, json};

use crate::helpers::{HOOK_SECRET, TRUSTED_SECRET, manifest_dir};
use crate::logs::{Format, Served};
use crate::personal::personal_strings;

/// Every claims file the repository holds, with the provider it belongs to.
fn every_claims_fixture() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut visit = |root: &Path, provider_of: &dyn Fn(&Path) -> Option<String>| {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for folder in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            for file in walk(&folder) {
                if file.extension().is_some_and(|e| e == "json")
                    && let Some(provider) = provider_of(&file)
                {
                    found.push((provider, file));
                }
            }
        }
    };
    // The sample providers' own fixtures (`*.claims.json`), denials included.
    visit(&manifest_dir().join("mappers"), &|file| {
        let name = file.file_name()?.to_str()?;
        name.ends_with(".claims.json").then_some(())?;
        Some(file.parent()?.parent()?.file_name()?.to_str()?.to_owned())
    });
    // Claims as the bridges and IdPs send them, one folder per provider.
    for set in ["claims", "claims-polis", "claims-satosa"] {
        visit(&crate::helpers::fixtures_dir().join(set), &|file| {
            Some(file.parent()?.file_name()?.to_str()?.to_owned())
        });
    }
    found.sort();
    assert!(
        found.len() >= 40,
        "expected the fixtures, found {}",
        found.len()
    );
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims carried to a hook as the Kratos-side mapper leaves them, issued now.
fn carried(provider: &str, claims: &Value) -> Value {
    let mut claims = claims.clone();
    if let Some(raw) = claims.get_mut("raw_claims").and_then(Value::as_object_mut) {
        raw.insert("iat".into(), json!(now()));
    }
    json!({ CARRIED_CLAIMS_KEY: { "provider": provider, "claims": claims } })
}

async fn post(client: &reqwest::Client, url: &str, secret: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// The reasons of every refusal in an answer (API `reason`, hook `context.reason`).
fn reasons(answer: &Value, into: &mut Vec<String>) {
    if let Some(reason) = answer["reason"].as_str() {
        into.push(reason.to_owned());
    }
    for group in answer["messages"].as_array().into_iter().flatten() {
        for message in group["messages"].as_array().into_iter().flatten() {
            if let Some(reason) = message["context"]["reason"].as_str() {
                into.push(reason.to_owned());
            }
        }
    }
}

async fn sweep(format: Format) {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut served = Served::start(
        format,
        &[
            ("KRATOS_JIT_LOG", "trace".into()),
            ("KRATOS_JIT__LISTEN", "127.0.0.1:0".into()),
            (
                "KRATOS_JIT__PROVIDERS",
                manifest_dir().join("mappers").display().to_string(),
            ),
            ("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url()),
            ("KRATOS_JIT__API__TRUSTED_SECRETS", TRUSTED_SECRET.into()),
            ("KRATOS_JIT__HOOKS__SECRETS", HOOK_SECRET.into()),
            ("KRATOS_JIT__MAPPER__WORKERS", "2".into()),
        ],
    );
    let address = served.address().await;
    let client = reqwest::Client::new();
    let mut secrets = Vec::new();
    let mut refusals = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (i, (provider, file)) in every_claims_fixture().into_iter().enumerate() {
        let claims: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        personal_strings(&claims, &mut secrets);

        let (status, answer) = post(
            &client,
            &format!("{address}/v1/provision"),
            TRUSTED_SECRET,
            &json!({"provider": provider, "claims": claims}),
        )
        .await;
        assert!(
            status == 200 || status == 403,
            "{}: {status} {answer}",
            file.display()
        );
        if status == 200 {
            allowed += 1;
        } else {
            denied += 1;
        }
        reasons(&answer, &mut refusals);
        let identity_id = answer["identity_id"]
            .as_str()
            .unwrap_or("6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f")
            .to_owned();

        let registration = json!({
            "identity": {"traits": {}, "metadata_public": carried(&provider, &claims)},
        });
        let response = client
            .post(format!("{address}/v1/hooks/registration"))
            .bearer_auth(HOOK_SECRET)
            .header("Ory-Webhook-Trigger-ID", format!("registration-{i}"))
            .json(&registration)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_client_error() || response.status() == 200);
        reasons(&response.json().await.unwrap_or(Value::Null), &mut refusals);

        let login = json!({
            "identity": {
                "id": identity_id,
                "traits": claims.get("raw_claims").cloned().unwrap_or_default(),
                "metadata_public": carried(&provider, &claims),
            },
            "session": {
                "authenticated_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                "authentication_methods": [{"method": "oidc", "provider": provider}],
            },
        });
        let response = client
            .post(format!("{address}/v1/hooks/login"))
            .bearer_auth(HOOK_SECRET)
            .header("Ory-Webhook-Trigger-ID", format!("login-{i}"))
            .json(&login)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_client_error() || response.status().is_success());
        if response.status() != 204 {
            reasons(&response.json().await.unwrap_or(Value::Null), &mut refusals);
        }
    }
    let (log, stdout) = served.stop().await;
    assert!(
        allowed > 10 && denied > 5,
        "{allowed} allowed, {denied} denied"
    );
    assert!(
        log.contains("Login processed."),
        "the logins were not logged:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("TRACE")),
        "nothing was logged at TRACE"
    );
    // A mapper's refusal text is the customer's own words and may quote claims.
    secrets.extend(refusals.into_iter().filter(|r| r.chars().count() >= 6));
    // Words of the deployment itself that a bridge also puts in its tokens (Polis's `product`,
    // a provider id's parts) are configuration, not anyone's data.
    let providers: Vec<String> = std::fs::read_dir(manifest_dir().join("mappers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    secrets
        .retain(|value| value != "kratos" && !providers.iter().any(|p| p.contains(value.as_str())));
    secrets.sort();
    secrets.dedup();
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|value| log.contains(value.as_str()) || stdout.contains(value.as_str()))
        .map(|value| {
            let line = log
                .lines()
                .chain(stdout.lines())
                .find(|line| line.contains(value.as_str()))
                .unwrap_or_default();
            format!("{value:?} in: {line}")
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the {} log at TRACE leaks {} value(s):\n{}",
        format.flag(),
        leaks.len(),
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_through_every_entry_point_logs_no_personal_data_as_text() {
    sweep(Format::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_through_every_entry_point_logs_no_personal_data_as_json() {
    sweep(Format::Json).await;
}

/// A request value with a line break must never start a log line of its own.
async fn forge(format: Format) {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut served = Served::start(
        format,
        &[
            ("KRATOS_JIT_LOG", "trace".into()),
            ("KRATOS_JIT__LISTEN", "127.0.0.1:0".into()),
            (
                "KRATOS_JIT__PROVIDERS",
                manifest_dir().join("mappers").display().to_string(),
            ),
            ("KRATOS_JIT__KRATOS__ADMIN_URL", kratos.base_url()),
            ("KRATOS_JIT__HOOKS__SECRETS", HOOK_SECRET.into()),
            ("KRATOS_JIT__MAPPER__WORKERS", "1".into()),
        ],
    );
    let address = served.address().await;
    let client = reqwest::Client::new();
    let forged = "\nFORGED level=ERROR message=\"forged line\"";
    let claims: Value = serde_json::from_slice(
        &std::fs::read(manifest_dir().join("mappers/okta-acme/tests/admin.claims.json")).unwrap(),
    )
    .unwrap();
    let bodies = [
        (
            "registration",
            json!({"identity": {"traits": {},
                "metadata_public": carried(&format!("okta-acme{forged}"), &claims)}}),
        ),
        (
            "login",
            json!({
                "identity": {"id": format!("6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f{forged}"),
                             "traits": {}, "metadata_public": carried("okta-acme", &claims)},
                "session": {"authenticated_at": "2026-01-01T00:00:00Z",
                            "authentication_methods": [{"method": "oidc", "provider": "okta-acme"}]},
            }),
        ),
        (
            "login",
            json!({
                "identity": {"id": "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f", "traits": {}},
                "session": {"authenticated_at": "2026-01-01T00:00:00Z",
                            "authentication_methods": [{"method": "oidc", "provider": format!("okta-acme{forged}")}]},
            }),
        ),
    ];
    for (i, (flow, body)) in bodies.iter().enumerate() {
        let response = client
            .post(format!("{address}/v1/hooks/{flow}"))
            .bearer_auth(HOOK_SECRET)
            .header("Ory-Webhook-Trigger-ID", format!("forge-{i}"))
            .json(body)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_client_error() || response.status().is_success());
    }
    let (log, _) = served.stop().await;
    let forged_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("FORGED") || line.contains("forged line"))
        .collect();
    assert!(
        forged_lines.is_empty(),
        "the {} log holds forged lines: {forged_lines:?}",
        format.flag()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_in_a_request_never_forges_a_text_log_line() {
    forge(Format::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_in_a_request_never_forges_a_json_log_line() {
    forge(Format::Json).await;
}
