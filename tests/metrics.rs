//! `/metrics`: the real application against the Kratos stand-in, scraped on its own listener
//! and parsed with a strict OpenMetrics parser (`openmetrics-parser`).
//!
//! The acceptance run sends every claims fixture of the sample providers
//! (`mappers/*/tests/*.claims.json`) through the registration hook, the provisioning API and
//! the login hook, predicts each answer from the fixture's `*.expect.json`, and checks that the
//! login counters hold exactly what the answers said, per provider, entry point and action, the
//! denials exactly their codes, and the Kratos counters exactly the requests the stand-in
//! received. A second run proves that no label value comes from the claims. Other tests: the
//! public port does not serve `/metrics`; SCIM requests and Kratos retries are counted; the
//! alert rules and the scrape configuration in `deploy/prometheus/` pass `promtool`.

#[path = "common/personal.rs"]
mod personal;
#[path = "common/serve.rs"]
mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kratos_jit::carrier::CARRIED_CLAIMS_KEY;
use kratos_jit::provider::Providers;
use kratos_jit::standin::{Fault, StandIn};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use serde_json::{Value, json};

const TRUSTED_SECRET: &str = "test-trusted-secret-0123456789";
const HOOK_SECRET: &str = "test-hook-secret-0123456789";
const SCIM_SECRET: &str = "test-scim-secret-0123456789";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct App {
    public: String,
    metrics: Option<String>,
    kratos: StandIn,
    client: reqwest::Client,
}

/// The application on free ports with `/metrics` on its own loopback listener (unless
/// `metrics` is false), and SCIM on an in-memory store when `scim`.
async fn spawn(with_metrics: bool, scim: bool, extra: &[(&str, &str)]) -> App {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut env: Vec<(String, String)> = vec![
        ("KRATOS_JIT__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            repo().join("mappers").display().to_string(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS".into(),
            TRUSTED_SECRET.into(),
        ),
        ("KRATOS_JIT__HOOKS__SECRETS".into(), HOOK_SECRET.into()),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "2".into()),
        // The exact counts must not depend on the machine's load: a first evaluation queued
        // behind the workers' start-up must not time out (and become a denial) on a busy CI.
        ("KRATOS_JIT__MAPPER__TIMEOUT".into(), "10s".into()),
    ];
    if with_metrics {
        env.push(("KRATOS_JIT__METRICS__LISTEN".into(), "127.0.0.1:0".into()));
    }
    if scim {
        env.push((
            "KRATOS_JIT__SCIM__DATABASE_URL".into(),
            "sqlite::memory:".into(),
        ));
    }
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let app = serve::build(env, |_| SCIM_SECRET).await;
    let public = format!("http://127.0.0.1:{}", app.port());
    let metrics = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    assert_eq!(metrics.is_some(), with_metrics);
    actix_web::rt::spawn(app.run_until_stopped());
    App {
        public,
        metrics,
        kratos,
        client: reqwest::Client::new(),
    }
}

impl App {
    /// `GET /metrics` on the metrics listener: the text and its parse.
    async fn scrape(&self) -> (String, Exposition) {
        let url = format!("{}/metrics", self.metrics.as_ref().expect("metrics are on"));
        let response = self.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics text: {e:?}\n{text}"));
        (text, parsed)
    }

    async fn post(
        &self,
        path: &str,
        secret: &str,
        trigger: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.public))
            .bearer_auth(secret)
            .json(body);
        if let Some(trigger) = trigger {
            request = request.header("Ory-Webhook-Trigger-ID", trigger);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Deletes every identity, then forgets those requests: the stand-in's log keeps only
    /// kratos-jit's.
    async fn reset_kratos(&self) {
        for identity in self.kratos.identities() {
            let id = identity["id"].as_str().unwrap();
            self.client
                .delete(format!("{}/admin/identities/{id}", self.kratos.base_url()))
                .send()
                .await
                .unwrap();
        }
        self.kratos.clear_log();
    }
}

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// Every sample of family `name` as (its labels, its value): counters' totals, gauges' values,
/// histograms' counts.
fn samples(exposition: &Exposition, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = exposition.families.get(name) else {
        return vec![];
    };
    family
        .iter_samples()
        .map(|sample| {
            let labels = sample
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let value = match &sample.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) | OpenMetricsValue::Unknown(g) => g.as_f64(),
                OpenMetricsValue::Histogram(h) => h.count.map_or(0.0, |c| c as f64),
                OpenMetricsValue::Info => 1.0,
                other => panic!("{name}: unexpected value {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

/// The samples of `name` keyed by the values of `keys`, zero values left out.
fn tally(exposition: &Exposition, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, u64> {
    samples(exposition, name)
        .into_iter()
        .filter(|(_, value)| *value > 0.0)
        .map(|(labels, value)| {
            let key = keys
                .iter()
                .map(|k| labels.get(*k).cloned().unwrap_or_default())
                .collect();
            (key, value as u64)
        })
        .collect()
}

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// One claims fixture of a sample provider.
struct Fixture {
    provider: String,
    case: String,
    claims: Value,
    /// `*.expect.json` holds `{"denied": …}`.
    denied: bool,
    /// Every file of the case (claims, identity, expect), for the personal-data search.
    files: Vec<PathBuf>,
}

fn fixtures() -> Vec<Fixture> {
    let mut found = Vec::new();
    for provider in std::fs::read_dir(repo().join("mappers")).unwrap().flatten() {
        let tests = provider.path().join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        for file in entries.flatten().map(|e| e.path()) {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            let Some(case) = name.strip_suffix(".claims.json") else {
                continue;
            };
            let expect: Value = read_json(&tests.join(format!("{case}.expect.json")));
            let files = ["claims", "identity", "expect"]
                .map(|part| tests.join(format!("{case}.{part}.json")))
                .into_iter()
                .filter(|f| f.exists())
                .collect();
            found.push(Fixture {
                provider: provider.file_name().to_str().unwrap().to_owned(),
                case: case.to_owned(),
                claims: read_json(&file),
                denied: expect.get("denied").is_some(),
                files,
            });
        }
    }
    found.sort_by(|a, b| (&a.provider, &a.case).cmp(&(&b.provider, &b.case)));
    assert!(found.len() >= 40, "only {} claims fixtures", found.len());
    found
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The claims carried to a hook as the Kratos-side mapper leaves them, issued now.
fn carried(provider: &str, claims: &Value) -> Value {
    let mut claims = claims.clone();
    if let Some(raw) = claims.get_mut("raw_claims").and_then(Value::as_object_mut) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        raw.insert("iat".into(), json!(now));
    }
    json!({ CARRIED_CLAIMS_KEY: { "provider": provider, "claims": claims } })
}

/// The code of a hook's refusal (`messages[].messages[].context.code`).
fn hook_code(answer: &Value) -> Option<String> {
    answer["messages"][0]["messages"][0]["context"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// What the sweep saw: per (provider, entry point, action), per (provider, code), and the
/// Kratos admin requests kratos-jit made.
#[derive(Default)]
struct Seen {
    logins: BTreeMap<Vec<String>, u64>,
    denials: BTreeMap<Vec<String>, u64>,
    kratos_requests: usize,
}

impl Seen {
    fn login(&mut self, provider: &str, entry: &str, action: &str) {
        *self
            .logins
            .entry(key(&[provider, entry, action]))
            .or_default() += 1;
    }
    fn denial(&mut self, provider: &str, code: &str) {
        *self.denials.entry(key(&[provider, code])).or_default() += 1;
    }
}

/// Every claims fixture, each on an empty Kratos: the registration hook (Kratos creates the
/// identity, so nothing is written), the provisioning API (creates it) and the login hook (finds
/// it). Each answer is checked against the fixture's expectation and recorded.
async fn sweep(app: &App) -> Seen {
    let mut seen = Seen::default();
    for (i, fixture) in fixtures().iter().enumerate() {
        let what = format!("{}/{}", fixture.provider, fixture.case);
        let provider = fixture.provider.as_str();
        seen.kratos_requests += app.kratos.requests().len();
        app.reset_kratos().await;

        let registration = json!({
            "identity": {"traits": {}, "metadata_public": carried(provider, &fixture.claims)},
        });
        let trigger = format!("registration-{i}");
        let (status, answer) = app
            .post(
                "/v1/hooks/registration",
                HOOK_SECRET,
                Some(&trigger),
                &registration,
            )
            .await;
        if fixture.denied {
            assert!(
                (400..500).contains(&status),
                "{what}: registration {status} {answer}"
            );
            let code = hook_code(&answer).unwrap_or_else(|| panic!("{what}: {answer}"));
            seen.login(provider, "registration_hook", "denied");
            seen.denial(provider, &code);
        } else {
            assert_eq!(status, 200, "{what}: registration {answer}");
            seen.login(provider, "registration_hook", "created");
        }

        let (status, answer) = app
            .post(
                "/v1/provision",
                TRUSTED_SECRET,
                None,
                &json!({"provider": provider, "claims": fixture.claims}),
            )
            .await;
        let action = answer["action"].as_str().unwrap_or_default().to_owned();
        if fixture.denied {
            assert_eq!(
                (status, action.as_str()),
                (403, "denied"),
                "{what}: API {answer}"
            );
            seen.denial(provider, answer["code"].as_str().unwrap());
        } else {
            assert_eq!(
                (status, action.as_str()),
                (200, "created"),
                "{what}: API {answer}"
            );
        }
        seen.login(provider, "api", &action);
        let identity_id = answer["identity_id"]
            .as_str()
            .unwrap_or("6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f")
            .to_owned();

        let writes = app.kratos.writes().len();
        let login = json!({
            "identity": {
                "id": identity_id,
                "traits": {},
                "metadata_public": carried(provider, &fixture.claims),
            },
            "session": {
                "authenticated_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                "authentication_methods": [{"method": "oidc", "provider": provider}],
            },
        });
        let trigger = format!("login-{i}");
        let (status, answer) = app
            .post("/v1/hooks/login", HOOK_SECRET, Some(&trigger), &login)
            .await;
        if fixture.denied {
            assert!(
                (400..500).contains(&status),
                "{what}: login hook {status} {answer}"
            );
            let code = hook_code(&answer).unwrap_or_else(|| panic!("{what}: {answer}"));
            seen.login(provider, "login_hook", "denied");
            seen.denial(provider, &code);
        } else {
            assert!(
                (200..300).contains(&status),
                "{what}: login hook {status} {answer}"
            );
            // The identity the API just wrote: unchanged, unless the hook wrote to it.
            let wrote = app.kratos.writes().len() > writes;
            seen.login(
                provider,
                "login_hook",
                if wrote { "updated" } else { "unchanged" },
            );
        }
    }
    seen.kratos_requests += app.kratos.requests().len();
    seen
}

#[actix_web::test]
async fn after_every_fixture_through_the_api_and_the_hooks_the_metrics_hold_the_exact_counts() {
    let app = spawn(true, false, &[]).await;
    let seen = sweep(&app).await;
    let (text, metrics) = app.scrape().await;

    let logins = tally(
        &metrics,
        "kratos_jit_logins",
        &["provider", "entry_point", "action"],
    );
    assert_eq!(
        logins, seen.logins,
        "logins by provider, entry point and action:\n{text}"
    );
    let denials = tally(&metrics, "kratos_jit_denials", &["provider", "code"]);
    assert_eq!(
        denials, seen.denials,
        "denials by provider and code:\n{text}"
    );
    let providers: BTreeSet<&str> = seen.logins.keys().map(|k| k[0].as_str()).collect();
    assert_eq!(
        providers.len(),
        4,
        "every sample provider took part: {providers:?}"
    );
    let codes: BTreeSet<&str> = seen.denials.keys().map(|k| k[1].as_str()).collect();
    assert!(codes.len() >= 3, "{:?}", seen.denials);

    // Every login was timed: the histogram's count per entry point is its number of logins.
    let mut per_entry: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (k, n) in &seen.logins {
        *per_entry.entry(vec![k[1].clone()]).or_default() += n;
    }
    let timed = tally(
        &metrics,
        "kratos_jit_login_duration_seconds",
        &["entry_point"],
    );
    assert_eq!(timed, per_entry, "{text}");
    // One mapper evaluation per login, all with the claims mapper.
    let evaluations = tally(
        &metrics,
        "kratos_jit_mapper_evaluation_duration_seconds",
        &["kind"],
    );
    let total: u64 = per_entry.values().sum();
    assert_eq!(
        evaluations,
        BTreeMap::from([(key(&["claims"]), total)]),
        "{text}"
    );

    // Every request the stand-in received is one counted attempt; none failed, none retried.
    let kratos = tally(
        &metrics,
        "kratos_jit_kratos_requests",
        &["operation", "status_class"],
    );
    let attempts: u64 = kratos.values().sum();
    assert_eq!(attempts as usize, seen.kratos_requests, "{kratos:?}");
    assert!(kratos.keys().all(|k| k[1] == "2xx"), "{kratos:?}");
    assert!(
        kratos.contains_key(&key(&["find_by_credential_identifier", "2xx"])),
        "{kratos:?}"
    );
    assert!(kratos.contains_key(&key(&["create", "2xx"])), "{kratos:?}");
    assert!(tally(&metrics, "kratos_jit_kratos_retries", &["operation"]).is_empty());
    assert!(tally(&metrics, "kratos_jit_mapper_timeouts", &["provider"]).is_empty());

    // The providers in force, with their mapper hashes.
    let (providers, _) = Providers::load(&repo().join("mappers")).unwrap();
    let info = samples(&metrics, "kratos_jit_provider");
    assert_eq!(info.len(), providers.len(), "{text}");
    for provider in &providers {
        assert!(
            info.iter().any(|(labels, _)| {
                labels["provider"] == provider.id.as_str()
                    && provider.mapper.sha256.starts_with(&labels["mapper_sha256"])
                    && labels["mapper_sha256"].len() == 12
            }),
            "{}: {info:?}",
            provider.id
        );
    }
    let reloads = tally(&metrics, "kratos_jit_provider_reloads", &["result"]);
    assert_eq!(reloads, BTreeMap::from([(key(&["ok"]), 1)]));
}

#[actix_web::test]
async fn no_label_value_of_the_metrics_comes_from_the_claims() {
    let app = spawn(true, false, &[]).await;
    sweep(&app).await;
    let (text, metrics) = app.scrape().await;

    // Every string of every fixture long enough to be someone's data (e-mails, names,
    // subjects, tenant and directory ids, groups), except the deployment's own words that a
    // bridge also puts in its tokens (a provider id, Polis's product `kratos`).
    let (providers, _) = Providers::load(&repo().join("mappers")).unwrap();
    let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    let mut personal = Vec::new();
    for fixture in fixtures() {
        for file in &fixture.files {
            personal::personal_strings(&read_json(file), &mut personal);
        }
    }
    personal.retain(|value| value != "kratos" && !ids.iter().any(|id| id.contains(value.as_str())));
    personal.sort();
    personal.dedup();
    assert!(personal.len() > 100, "only {} values", personal.len());
    assert!(
        personal.iter().any(|v| v == "ada@acme.example"),
        "the e-mails are searched"
    );
    let found: Vec<&String> = personal
        .iter()
        .filter(|v| text.contains(v.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "/metrics holds claims values: {found:?}\n{text}"
    );

    // And structurally: every label value is a provider id, a mapper hash or a fixed word.
    for (name, family) in &metrics.families {
        for (labels, _) in samples(&metrics, name) {
            for (label, value) in labels {
                let allowed = match label.as_str() {
                    "provider" => ids.contains(&value.as_str()) || value == "unknown",
                    "mapper_sha256" | "scim_mapper_sha256" => {
                        value.len() <= 12 && value.chars().all(|c| c.is_ascii_hexdigit())
                    }
                    "entry_point" | "action" | "code" | "operation" | "status_class" | "kind"
                    | "result" | "resource" | "method" => value
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || c == '_' || c.is_ascii_digit()),
                    "status" | "le" => value.parse::<f64>().is_ok() || value == "+Inf",
                    other => panic!(
                        "{name} ({:?}): unexpected label {other}",
                        family.family_type
                    ),
                };
                assert!(allowed, "{name}: {label}={value:?}");
            }
        }
    }
}

#[actix_web::test]
async fn the_metrics_are_served_on_their_own_listener_and_never_on_the_public_port() {
    let app = spawn(true, false, &[]).await;
    let public = app
        .client
        .get(format!("{}/metrics", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let body = public.text().await.unwrap();
    assert!(!body.contains("kratos_jit_"), "{body}");
    let (text, _) = app.scrape().await;
    assert!(text.contains("# TYPE kratos_jit_provider info"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    // The metrics listener serves nothing else.
    let other = app
        .client
        .get(format!("{}/v1/provision", app.metrics.as_ref().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // Off unless metrics.listen is set: the public port still has no /metrics.
    let off = spawn(false, false, &[]).await;
    assert!(off.metrics.is_none());
    let public = off
        .client
        .get(format!("{}/metrics", off.public))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

#[actix_web::test]
async fn scim_requests_are_counted_by_provider_resource_method_and_status_and_unknown_ids_as_unknown()
 {
    let app = spawn(true, true, &[]).await;
    let get = |path: &str, secret: Option<&str>| {
        let mut request = app.client.get(format!("{}{path}", app.public));
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        request.send()
    };
    assert_eq!(
        get("/scim/v2/okta-acme/Users", Some(SCIM_SECRET))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/scim/v2/okta-acme/Users", None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get(
            "/scim/v2/okta-acme/ServiceProviderConfig",
            Some(SCIM_SECRET)
        )
        .await
        .unwrap()
        .status(),
        200
    );
    // Ids that name no provider: an e-mail and a random word; never label values.
    assert_eq!(
        get("/scim/v2/ada@acme.example/Users", Some(SCIM_SECRET))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get("/scim/v2/no-such-customer/Groups", Some(SCIM_SECRET))
            .await
            .unwrap()
            .status(),
        404
    );

    let (text, metrics) = app.scrape().await;
    let scim = tally(
        &metrics,
        "kratos_jit_scim_requests",
        &["provider", "resource", "method", "status"],
    );
    assert_eq!(
        scim,
        BTreeMap::from([
            (key(&["okta-acme", "Users", "GET", "200"]), 1),
            (key(&["okta-acme", "Users", "GET", "401"]), 1),
            (
                key(&["okta-acme", "ServiceProviderConfig", "GET", "200"]),
                1
            ),
            (key(&["unknown", "Users", "GET", "404"]), 1),
            (key(&["unknown", "Groups", "GET", "404"]), 1),
        ]),
        "{text}"
    );
    assert!(
        !text.contains("ada@acme") && !text.contains("no-such-customer"),
        "{text}"
    );
}

#[actix_web::test]
async fn kratos_retries_and_failed_attempts_are_counted_by_operation_and_status_class() {
    let app = spawn(true, false, &[]).await;
    let claims = read_json(&repo().join("mappers/okta-acme/tests/admin.claims.json"));
    app.kratos.set_fault(Fault::FailNext {
        count: 1,
        status: 503,
    });
    let (status, answer) = app
        .post(
            "/v1/provision",
            TRUSTED_SECRET,
            None,
            &json!({"provider": "okta-acme", "claims": claims}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (text, metrics) = app.scrape().await;
    let kratos = tally(
        &metrics,
        "kratos_jit_kratos_requests",
        &["operation", "status_class"],
    );
    assert_eq!(
        kratos[&key(&["find_by_credential_identifier", "5xx"])],
        1,
        "{text}"
    );
    assert!(
        kratos[&key(&["find_by_credential_identifier", "2xx"])] >= 1,
        "{text}"
    );
    let retries = tally(&metrics, "kratos_jit_kratos_retries", &["operation"]);
    assert_eq!(
        retries,
        BTreeMap::from([(key(&["find_by_credential_identifier"]), 1)]),
        "{text}"
    );
    let logins = tally(
        &metrics,
        "kratos_jit_logins",
        &["provider", "entry_point", "action"],
    );
    assert_eq!(
        logins,
        BTreeMap::from([(key(&["okta-acme", "api", "created"]), 1)])
    );
}

/// `promtool`, Prometheus's own checker: required in CI (`.ci/run` installs Debian's
/// `prometheus` package), skipped with a note elsewhere when it is not installed.
fn promtool() -> Option<&'static str> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs promtool (Debian's prometheus package)"
        );
        eprintln!("promtool is not installed: deploy/prometheus/ was not checked");
        return None;
    }
    Some("promtool")
}

fn run_promtool(args: &[&str]) {
    let Some(promtool) = promtool() else {
        return;
    };
    let output = std::process::Command::new(promtool)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_shipped_alert_rules_are_valid_prometheus_rules() {
    run_promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
}

#[test]
fn the_shipped_alert_rules_fire_as_their_unit_tests_say() {
    run_promtool(&["test", "rules", "deploy/prometheus/alerts.test.yml"]);
}

#[test]
fn the_shipped_scrape_configuration_is_valid() {
    run_promtool(&[
        "check",
        "config",
        "--syntax-only",
        "deploy/prometheus/prometheus.yml",
    ]);
}

#[actix_web::test]
async fn every_metric_the_alert_rules_use_is_exposed() {
    let app = spawn(true, false, &[]).await;
    // One login of each outcome, so that the counters have series.
    for case in ["admin", "foreign-domain"] {
        let claims = read_json(&repo().join(format!("mappers/okta-acme/tests/{case}.claims.json")));
        app.post(
            "/v1/provision",
            TRUSTED_SECRET,
            None,
            &json!({"provider": "okta-acme", "claims": claims}),
        )
        .await;
    }
    let (text, _) = app.scrape().await;
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut used = BTreeSet::new();
    let mut rest = rules.as_str();
    while let Some(at) = rest.find("kratos_jit_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        used.insert(name);
    }
    assert!(used.len() >= 3, "{used:?}");
    for name in &used {
        // A family is exposed even before its first sample: `# TYPE <family> <type>`.
        let family = ["_total", "_bucket", "_count", "_sum", "_info"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "the alert rules use {name}, which /metrics does not expose:\n{text}"
        );
    }
}

#[actix_web::test]
async fn a_login_kratos_cannot_serve_is_counted_as_an_error_with_its_failed_attempts() {
    let app = spawn(true, false, &[]).await;
    let claims = read_json(&repo().join("mappers/okta-acme/tests/admin.claims.json"));
    app.kratos.set_fault(Fault::RefuseConnections);
    let (status, answer) = app
        .post(
            "/v1/provision",
            TRUSTED_SECRET,
            None,
            &json!({"provider": "okta-acme", "claims": claims}),
        )
        .await;
    app.kratos.set_fault(Fault::None);
    assert_eq!(status, 503, "{answer}");
    let (text, metrics) = app.scrape().await;
    let logins = tally(
        &metrics,
        "kratos_jit_logins",
        &["provider", "entry_point", "action"],
    );
    assert_eq!(
        logins,
        BTreeMap::from([(key(&["okta-acme", "api", "error"]), 1)]),
        "{text}"
    );
    let kratos = tally(
        &metrics,
        "kratos_jit_kratos_requests",
        &["operation", "status_class"],
    );
    let failed = kratos[&key(&["find_by_credential_identifier", "error"])];
    let retries = tally(&metrics, "kratos_jit_kratos_retries", &["operation"]);
    // Every attempt failed; all but the first were retries (kratos.max_retries = 2).
    assert_eq!(kratos.len(), 1, "{kratos:?}");
    assert_eq!(
        retries[&key(&["find_by_credential_identifier"])],
        failed - 1,
        "{text}"
    );
    assert!(failed >= 2, "{text}");
    assert!(tally(&metrics, "kratos_jit_denials", &["provider", "code"]).is_empty());
}
