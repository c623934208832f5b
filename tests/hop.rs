//! The claims hop end to end: a relying party that signs in like Kratos v26.2.0's generic
//! provider (tests/common/rp.rs), the real `serve` application, the Kratos stand-in and an
//! upstream OpenID Provider double that signs like a real bridge (`standin::upstream`).

#[path = "common/audit_events.rs"]
mod audit_events;
#[path = "common/personal.rs"]
mod personal;
#[path = "common/rp.rs"]
mod rp;
#[path = "common/tree.rs"]
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kratos_jit::config;
use kratos_jit::http::Application;
use kratos_jit::mapper::WorkerProgram;
use kratos_jit::provider::Providers;
use kratos_jit::standin::upstream::{OpClient, OpFault, Tamper, UpstreamOp};
use kratos_jit::standin::{Fault, StandIn};
use serde_json::{Value, json};

use personal::personal_strings;
use rp::{Authorization, Callback, Rp, RpConfig, follow};
use tree::copy_dir;

const HOOK_SECRET: &str = "test-hook-secret-0123456789";
const HOP_SECRET: &str = "hop client secret: 0123456789 &=+%";
const UPSTREAM_SECRET: &str = "upstream-secret-0123456789";
const KRATOS_CLIENT: &str = "kratos";
const PROVIDERS: &[&str] = &[
    "entra-globex",
    "okta-acme",
    "okta-oidc-umbrella",
    "onelogin-initech",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Kratos's callback with `pkce: force`: one for every provider (`Configuration.Redir` in
/// selfservice/strategy/oidc/provider_config.go@v26.2.0; docs/hop.md §2.4).
const KRATOS_CALLBACK: &str = "http://127.0.0.1:4433/self-service/methods/oidc/callback";

fn upstream_client(provider: &str) -> String {
    format!("tenant={provider}&product=kratos")
}

/// The fixture's ID token claims as the bridge issues them (`raw_claims`): every claims fixture
/// of the provider, `mappers/<provider>/tests/<case>.claims.json` — hand-written, real Ory Polis
/// (`polis-*`) and real SATOSA (`satosa-*`).
fn fixture_claims(provider: &str, case: &str) -> Value {
    let path = manifest_dir()
        .join("mappers")
        .join(provider)
        .join("tests")
        .join(format!("{case}.claims.json"));
    let fixture: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    fixture["raw_claims"].clone()
}

/// Every claims fixture, `(provider, case)`.
fn fixture_cases() -> Vec<(String, String)> {
    let mut cases = Vec::new();
    for provider in PROVIDERS {
        let dir = manifest_dir().join("mappers").join(provider).join("tests");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(case) = name.strip_suffix(".claims.json") {
                cases.push(((*provider).to_owned(), case.to_owned()));
            }
        }
    }
    cases.sort();
    cases
}

/// The sample providers, their `[token]` and `[hop]` pointed at the double and the test's
/// secrets (in files: tests share one process environment).
fn providers_for(upstream_issuer: &str, dir: &Path) {
    for provider in PROVIDERS {
        let from = manifest_dir().join("mappers").join(provider);
        let to = dir.join(provider);
        copy_dir(&from, &to);
        let path = to.join("provider.toml");
        let mut settings: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let token = settings["token"].as_table_mut().unwrap();
        token.insert("issuer".into(), upstream_issuer.into());
        token.insert(
            "audiences".into(),
            toml::Value::Array(vec![upstream_client(provider).into()]),
        );
        std::fs::write(to.join("hop-secret"), HOP_SECRET).unwrap();
        std::fs::write(to.join("upstream-secret"), UPSTREAM_SECRET).unwrap();
        let hop = settings["hop"].as_table_mut().unwrap();
        hop.remove("client_secret_env");
        hop.insert("client_secret_file".into(), "hop-secret".into());
        let upstream = hop["upstream"].as_table_mut().unwrap();
        upstream.insert("client_id".into(), upstream_client(provider).into());
        upstream.remove("client_secret_env");
        upstream.insert("client_secret_file".into(), "upstream-secret".into());
        std::fs::write(&path, toml::to_string(&settings).unwrap()).unwrap();
    }
}

/// A kratos-jit listening on its own port, with `public_url` as the hop's base URL.
async fn serve(
    providers: &Path,
    kratos: &StandIn,
    listener: std::net::TcpListener,
    public_url: &str,
    extra: &[(&str, &str)],
) {
    let keys = manifest_dir().join("tests/fixtures/keys");
    let signing_keys = format!(
        "{},{}",
        keys.join("ec-p256.pem").display(),
        keys.join("rsa-a.pem").display()
    );
    let mut env: Vec<(String, String)> = vec![
        (
            "KRATOS_JIT__LISTEN".into(),
            listener.local_addr().unwrap().to_string(),
        ),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            providers.display().to_string(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        ("KRATOS_JIT__HOOKS__SECRETS".into(), HOOK_SECRET.into()),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "2".into()),
        ("KRATOS_JIT__TOKEN__JWKS_MIN_REFRESH".into(), "1ms".into()),
        ("KRATOS_JIT__HOP__PUBLIC_URL".into(), public_url.into()),
        ("KRATOS_JIT__HOP__SIGNING_KEYS".into(), signing_keys),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    drop(listener);
    let config = config::load_from(None, env).unwrap_or_else(|e| panic!("{e:?}"));
    let (providers, _) = Providers::load(&config.providers).unwrap_or_else(|e| panic!("{e:?}"));
    let app = Application::build(
        &config,
        providers,
        WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
    )
    .unwrap();
    actix_web::rt::spawn(app.run_until_stopped());
}

fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

struct Hop {
    address: String,
    kratos: StandIn,
    upstream: UpstreamOp,
    browser: reqwest::Client,
    _tree: tempfile::TempDir,
}

async fn spawn_hop() -> Hop {
    spawn_hop_with(&[]).await
}

async fn spawn_hop_with(extra: &[(&str, &str)]) -> Hop {
    spawn_hop_with_users(extra, BTreeMap::new()).await
}

/// A hop whose upstream knows every claims fixture as `<provider>/<case>`, plus `more` users.
async fn spawn_hop_with_users(extra: &[(&str, &str)], more: BTreeMap<String, Value>) -> Hop {
    let listener = free_listener();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let mut users: BTreeMap<String, Value> = fixture_cases()
        .into_iter()
        .map(|(p, c)| (format!("{p}/{c}"), fixture_claims(&p, &c)))
        .collect();
    users.extend(more);
    let clients = PROVIDERS
        .iter()
        .map(|p| OpClient {
            client_id: upstream_client(p),
            client_secret: UPSTREAM_SECRET.into(),
            redirect_uris: vec![format!("{address}/hop/{p}/callback")],
        })
        .collect();
    let upstream = UpstreamOp::start(clients, users).unwrap();
    let tree = tempfile::tempdir().unwrap();
    providers_for(&upstream.issuer(), tree.path());
    let kratos = StandIn::start().unwrap();
    serve(tree.path(), &kratos, listener, &address, extra).await;
    Hop {
        address,
        kratos,
        upstream,
        browser: rp::browser(),
        _tree: tree,
    }
}

impl Hop {
    fn issuer(&self, provider: &str) -> String {
        format!("{}/hop/{provider}", self.address)
    }

    async fn rp(&self, provider: &str) -> Rp {
        Rp::discover(RpConfig {
            issuer: self.issuer(provider),
            client_id: KRATOS_CLIENT.into(),
            client_secret: HOP_SECRET.into(),
            redirect_uri: KRATOS_CALLBACK.to_owned(),
        })
        .await
        .unwrap()
    }

    /// The browser's trip from the RP's authorization request to the RP's callback.
    async fn sign_in(&self, rp: &Rp, login_hint: &str) -> (Authorization, Callback) {
        let authorization = rp.authorization(login_hint);
        let location = follow(
            &self.browser,
            &authorization.url,
            &rp.config.redirect_uri,
            |u| u.to_owned(),
        )
        .await
        .unwrap_or_else(|(status, body)| panic!("{status}: {body}"));
        let callback = rp.callback(&authorization, &location);
        (authorization, callback)
    }

    fn identity_for(&self, provider: &str, subject: &str) -> Option<Value> {
        let identifier = format!("{provider}:{subject}");
        self.kratos.identities().into_iter().find(|i| {
            i["credentials"]["oidc"]["identifiers"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == identifier.as_str()))
        })
    }
}

fn code(callback: Callback) -> String {
    match callback {
        Callback::Code(code) => code,
        other => panic!("expected a code, got {other:?}"),
    }
}

fn error(callback: Callback) -> (String, String) {
    match callback {
        Callback::Error { error, description } => (error, description.unwrap_or_default()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[actix_web::test]
async fn an_allowed_login_is_provisioned_before_the_rp_exchanges_its_code() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;

    let (authorization, callback) = hop.sign_in(&rp, "okta-acme/admin").await;
    let code = code(callback);

    let identity = hop
        .identity_for("okta-acme", "ada@acme.example")
        .expect("the identity exists before the exchange");
    assert_eq!(identity["traits"]["role"], "admin");
    assert_eq!(identity["traits"]["tenant_id"], "tenant-acme");
    let tokens = rp.exchange(&code, &authorization.verifier).await.unwrap();
    assert_eq!(
        tokens.attempts,
        ["client_secret_basic"],
        "basic works at once"
    );
    let claims = rp.verify(&tokens.id_token).await.unwrap();
    assert_eq!(claims["iss"], hop.issuer("okta-acme"));
    assert_eq!(claims["aud"], KRATOS_CLIENT);
    assert_eq!(claims["sub"], "ada@acme.example");
    assert_eq!(claims["email"], "ada@acme.example");
    assert_eq!(claims["kratos_jit_identity"]["traits"], identity["traits"]);
    assert_eq!(
        claims["kratos_jit_identity"]["verified_addresses"],
        json!([{"value": "ada@acme.example", "via": "email"}])
    );
    let userinfo = rp
        .userinfo(&tokens.access_token, "ada@acme.example")
        .await
        .unwrap();
    assert_eq!(
        userinfo["kratos_jit_identity"],
        claims["kratos_jit_identity"]
    );
    assert_eq!(
        hop.upstream.exchanges(),
        ["client_secret_post"],
        "as [hop.upstream] says"
    );
}

#[actix_web::test]
async fn readiness_checks_the_hop_signing_keys_when_the_hop_is_on() {
    let hop = spawn_hop().await;
    let started = std::time::Instant::now();
    let body: Value = loop {
        let response = hop
            .browser
            .get(format!("{}/health/ready", hop.address))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["checks"]["hop"], "ok", "{body}");
}

#[actix_web::test]
async fn the_callbacks_traceparent_reaches_the_upstream_and_kratos_with_the_same_trace_id() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let authorization = rp.authorization("okta-acme/admin");
    // The browser reaches the upstream's sign-in page as usual…
    let at_callback = follow(
        &hop.browser,
        &authorization.url,
        &format!("{}/callback", hop.issuer("okta-acme")),
        |u| u.to_owned(),
    )
    .await
    .unwrap_or_else(|(status, body)| panic!("{status}: {body}"));
    // …and the callback request arrives with a trace (as a tracing proxy would add it).
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    hop.kratos.clear_log();
    let before = hop.upstream.traceparents().len();
    let answer = hop
        .browser
        .get(&at_callback)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(location.contains("code="), "{location}");

    // The calls the callback made (the authorization request had a trace of its own).
    let upstream: Vec<_> = hop.upstream.traceparents().split_off(before);
    let endpoints: Vec<&str> = upstream.iter().map(|(endpoint, _)| *endpoint).collect();
    assert!(endpoints.contains(&"token"), "{endpoints:?}");
    for (endpoint, traceparent) in &upstream {
        let traceparent = traceparent.as_deref().unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")),
            "{endpoint}: {traceparent}"
        );
        assert!(!traceparent.contains("b7ad6b7169203331"), "a new parent id");
    }
    let kratos = hop.kratos.requests();
    assert!(!kratos.is_empty());
    for request in kratos.iter().filter(|r| r.path.starts_with("/admin/")) {
        let traceparent = request.traceparent.as_deref().unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")),
            "{} {}: {traceparent:?}",
            request.method,
            request.path
        );
    }
}

#[actix_web::test]
async fn a_refused_login_reaches_the_rp_as_access_denied_with_the_reason_and_writes_nothing() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;

    let (_, callback) = hop.sign_in(&rp, "okta-acme/foreign-domain").await;

    let (error, description) = error(callback);
    assert_eq!(error, "access_denied");
    assert!(
        description.contains("cannot sign in through your organisation's sign-in"),
        "{description}"
    );
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

/// The expectation of `mappers/<provider>/tests/<case>.expect.json`, and its current identity.
fn expectation(provider: &str, case: &str) -> Option<(Value, Option<Value>)> {
    let dir = manifest_dir().join("mappers").join(provider).join("tests");
    let read = |path: PathBuf| -> Option<Value> {
        std::fs::read(path)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    };
    let expect = read(dir.join(format!("{case}.expect.json")))?;
    Some((expect, read(dir.join(format!("{case}.identity.json")))))
}

#[actix_web::test]
async fn every_claims_fixture_through_the_hop_has_the_outcome_kratos_jit_check_gives_it() {
    let hop = spawn_hop().await;
    let mut compared = 0;

    for (provider, case) in fixture_cases() {
        let Some((expect, current)) = expectation(&provider, &case) else {
            continue;
        };
        for identity in hop.kratos.identities() {
            hop.browser
                .delete(format!(
                    "{}/admin/identities/{}",
                    hop.kratos.base_url(),
                    identity["id"].as_str().unwrap()
                ))
                .send()
                .await
                .unwrap();
        }
        let subject = fixture_claims(&provider, &case)["sub"]
            .as_str()
            .unwrap()
            .to_owned();
        if let Some(current) = &current {
            hop.kratos.insert_identity(json!({
                "schema_id": "default",
                "traits": current["traits"],
                "metadata_public": current.get("metadata_public"),
                "metadata_admin": current.get("metadata_admin"),
                "credentials": {"oidc": {"config": {"providers": [
                    {"provider": provider, "subject": subject}
                ]}}}
            }));
        }
        hop.kratos.clear_log();
        let rp = hop.rp(&provider).await;

        let (authorization, callback) = hop.sign_in(&rp, &format!("{provider}/{case}")).await;

        let label = format!("{provider}/{case}");
        if expect.get("denied").is_some() {
            let (error, _) = error(callback);
            assert_eq!(error, "access_denied", "{label}");
            assert_eq!(hop.kratos.writes(), vec![], "{label}: nothing written");
        } else {
            let expected = &expect["identity"];
            let tokens = rp.exchange(&code(callback), &authorization.verifier).await;
            let claims = rp.verify(&tokens.unwrap().id_token).await.unwrap();
            let carried = &claims["kratos_jit_identity"];
            assert_eq!(carried["traits"], expected["traits"], "{label}");
            assert_eq!(
                carried["verified_addresses"],
                expected
                    .get("verified_addresses")
                    .cloned()
                    .unwrap_or(json!([])),
                "{label}"
            );
            assert_eq!(
                carried.get("metadata_public"),
                expected.get("metadata_public"),
                "{label}"
            );
            let held = hop.identity_for(&provider, &subject).expect("provisioned");
            assert_eq!(held["traits"], expected["traits"], "{label}");
        }
        compared += 1;
    }
    // 58 fixtures: the hand-written, real Polis and real SATOSA sets of the four providers.
    assert!(compared >= 55, "only {compared} fixtures were compared");
}

#[actix_web::test]
async fn a_code_is_used_once() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let (authorization, callback) = hop.sign_in(&rp, "okta-acme/user").await;
    let code = code(callback);
    rp.exchange(&code, &authorization.verifier).await.unwrap();
    let writes = hop.kratos.writes().len();

    let replay = rp.exchange(&code, &authorization.verifier).await;

    assert_eq!(replay.unwrap_err(), "400 invalid_grant");
    assert_eq!(
        hop.kratos.writes().len(),
        writes,
        "nothing more was written"
    );
}

#[actix_web::test]
async fn a_code_is_refused_with_another_redirect_uri_or_without_its_pkce_verifier() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let (authorization, callback) = hop.sign_in(&rp, "okta-acme/user").await;
    let code = code(callback);
    let writes = hop.kratos.writes().len();
    let other_uri = "http://127.0.0.1:4433/self-service/methods/oidc/callback/evil";
    let wrong_verifier = rp::s256("not the verifier");

    for (verifier, uri) in [
        (Some(authorization.verifier.as_str()), other_uri),
        (None, rp.config.redirect_uri.as_str()),
        (
            Some(wrong_verifier.as_str()),
            rp.config.redirect_uri.as_str(),
        ),
    ] {
        let refused = rp.exchange_with(&code, verifier, uri, HOP_SECRET).await;
        assert_eq!(
            refused.unwrap_err(),
            "400 invalid_grant",
            "{verifier:?} {uri}"
        );
    }

    assert_eq!(
        hop.kratos.writes().len(),
        writes,
        "nothing more was written"
    );
    let tokens = rp.exchange(&code, &authorization.verifier).await;
    assert!(tokens.is_ok(), "a refused attempt does not use the code up");
}

#[actix_web::test]
async fn a_wrong_client_secret_is_refused_at_both_attempts() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let (authorization, callback) = hop.sign_in(&rp, "okta-acme/user").await;
    let code = code(callback);

    let refused = rp
        .token_request(
            "client_secret_basic",
            &code,
            Some(&authorization.verifier),
            &rp.config.redirect_uri,
            "wrong secret",
        )
        .await;
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .headers()
            .get("WWW-Authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")),
    );
    let both = rp
        .exchange_with(
            &code,
            Some(&authorization.verifier),
            &rp.config.redirect_uri,
            "wrong",
        )
        .await;

    assert_eq!(both.unwrap_err(), "401 invalid_client");
}

#[actix_web::test]
async fn kratos_retry_with_client_secret_post_works_with_the_same_code_after_basic_failed() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let (authorization, callback) = hop.sign_in(&rp, "okta-acme/user").await;
    let code = code(callback);
    let basic = rp
        .token_request(
            "client_secret_basic",
            &code,
            Some(&authorization.verifier),
            &rp.config.redirect_uri,
            "a secret basic gets wrong",
        )
        .await;
    assert_eq!(basic.status(), 401);

    let post = rp
        .token_request(
            "client_secret_post",
            &code,
            Some(&authorization.verifier),
            &rp.config.redirect_uri,
            HOP_SECRET,
        )
        .await;

    assert_eq!(post.status(), 200);
}

#[actix_web::test]
async fn a_forged_or_tampered_state_is_refused_and_nothing_is_written() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let authorization = rp.authorization("okta-acme/user");
    // To the upstream, and back towards the hop's callback.
    let upstream = follow(
        &hop.browser,
        &authorization.url,
        &hop.upstream.issuer(),
        |u| u.to_owned(),
    )
    .await
    .unwrap();
    let callback = follow(&hop.browser, &upstream, &hop.issuer("okta-acme"), |u| {
        u.to_owned()
    })
    .await
    .unwrap();
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let state = pairs.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    let mut tampered = state.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    for bad in [tampered.as_str(), "forged-state-value"] {
        url.query_pairs_mut().clear();
        for (k, v) in &pairs {
            url.query_pairs_mut()
                .append_pair(k, if k == "state" { bad } else { v });
        }
        let answer = hop.browser.get(url.as_str()).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
        let page = answer.text().await.unwrap();
        assert!(page.contains("start the sign-in again"), "{page}");
    }

    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

#[actix_web::test]
async fn an_upstream_token_that_does_not_verify_is_refused_and_nothing_is_written() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;

    for tamper in [
        Tamper::WrongSignature,
        Tamper::WrongIssuer,
        Tamper::WrongAudience,
        Tamper::Expired,
        Tamper::WrongNonce,
    ] {
        hop.upstream.set_tamper(tamper);
        let (_, callback) = hop.sign_in(&rp, "okta-acme/admin").await;
        let (error, description) = error(callback);
        assert_eq!(error, "access_denied", "{tamper:?}");
        assert!(
            description.contains("could not be verified"),
            "{tamper:?}: {description}"
        );
    }

    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

#[actix_web::test]
async fn a_login_started_on_one_replica_finishes_on_another() {
    let first = spawn_hop().await;
    // A second replica: same stand-in, same keys, same providers, same public URL.
    let listener = free_listener();
    let second = format!("http://{}", listener.local_addr().unwrap());
    serve(
        first._tree.path(),
        &first.kratos,
        listener,
        &first.address,
        &[],
    )
    .await;
    let rp = first.rp("okta-acme").await;
    let authorization = rp.authorization("okta-acme/admin");
    // The load balancer sends the callback and everything after it to the second replica.
    let to_second = |url: &str| {
        if url.starts_with(&format!("{}/hop/okta-acme/callback", first.address)) {
            url.replacen(&first.address, &second, 1)
        } else {
            url.to_owned()
        }
    };

    let location = follow(
        &first.browser,
        &authorization.url,
        &rp.config.redirect_uri,
        to_second,
    )
    .await
    .unwrap();
    let code = code(rp.callback(&authorization, &location));
    let response = first
        .browser
        .post(format!("{second}/hop/okta-acme/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &rp.config.redirect_uri),
                    ("code_verifier", &authorization.verifier),
                    ("client_id", KRATOS_CLIENT),
                    ("client_secret", HOP_SECRET),
                ])
                .finish(),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = rp.verify(body["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["kratos_jit_identity"]["traits"]["role"], "admin");
    assert!(
        first
            .identity_for("okta-acme", "ada@acme.example")
            .is_some()
    );
}

#[actix_web::test]
async fn an_upstream_token_endpoint_that_is_down_sends_the_user_back_with_an_error() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    hop.upstream.set_fault(OpFault::TokenUnavailable);

    let (_, callback) = hop.sign_in(&rp, "okta-acme/admin").await;

    let (error, description) = error(callback);
    assert_eq!(error, "temporarily_unavailable");
    assert!(description.contains("try again"), "{description}");
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

#[actix_web::test]
async fn a_slow_upstream_token_endpoint_sends_the_user_back_at_the_deadline() {
    let hop = spawn_hop_with(&[("KRATOS_JIT__HOP__LOGIN_DEADLINE", "500ms")]).await;
    let rp = hop.rp("okta-acme").await;
    hop.upstream
        .set_fault(OpFault::TokenDelay(Duration::from_secs(5)));

    let (_, callback) = hop.sign_in(&rp, "okta-acme/admin").await;

    let (error, description) = error(callback);
    assert_eq!(error, "temporarily_unavailable");
    assert!(description.contains("took too long"), "{description}");
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

#[actix_web::test]
async fn kratos_being_down_sends_the_user_back_with_an_error_and_nothing_written() {
    let hop = spawn_hop_with(&[
        ("KRATOS_JIT__HOP__LOGIN_DEADLINE", "2s"),
        ("KRATOS_JIT__KRATOS__DEADLINE", "1s"),
        ("KRATOS_JIT__KRATOS__REQUEST_TIMEOUT", "200ms"),
    ])
    .await;
    let rp = hop.rp("okta-acme").await;
    hop.kratos.set_fault(Fault::RefuseConnections);

    let (_, callback) = hop.sign_in(&rp, "okta-acme/admin").await;

    let (error, description) = error(callback);
    hop.kratos.set_fault(Fault::None);
    assert!(
        error == "temporarily_unavailable" || error == "server_error",
        "{error}"
    );
    assert!(description.contains("Nothing was changed"), "{description}");
    assert_eq!(
        hop.kratos.identities(),
        Vec::<Value>::new(),
        "nothing was written"
    );
}

#[actix_web::test]
async fn an_error_of_the_upstream_is_passed_on_to_the_rp() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;

    let (_, callback) = hop.sign_in(&rp, "cancel").await;

    let (error, description) = error(callback);
    assert_eq!(error, "access_denied");
    assert_eq!(description, "The user cancelled the sign-in.");
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}

#[actix_web::test]
async fn authorize_refuses_an_unregistered_redirect_uri_with_a_page_not_a_redirect() {
    let hop = spawn_hop().await;
    let mut rp = hop.rp("okta-acme").await;
    rp.config.redirect_uri = "https://evil.example/callback".into();
    let authorization = rp.authorization("okta-acme/admin");

    let answer = hop.browser.get(&authorization.url).send().await.unwrap();

    assert_eq!(answer.status(), 400);
    assert!(answer.headers().get("Location").is_none());
    let page = answer.text().await.unwrap();
    assert!(page.contains("`redirect_uri` is not registered"), "{page}");
}

#[actix_web::test]
async fn authorize_without_pkce_is_an_oauth_error_redirect_to_kratos() {
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let authorization = rp.authorization("okta-acme/admin");
    let url = authorization
        .url
        .replace("code_challenge_method=S256", "code_challenge_method=plain");

    let answer = hop.browser.get(&url).send().await.unwrap();

    assert_eq!(answer.status(), 302);
    let location = answer.headers()["Location"].to_str().unwrap().to_owned();
    let (error, description) = error(rp.callback(&authorization, &location));
    assert_eq!(error, "invalid_request");
    assert!(description.contains("PKCE"), "{description}");
}

#[actix_web::test]
async fn discovery_and_jwks_describe_the_hop_as_kratos_reads_them() {
    let hop = spawn_hop().await;
    let rp = hop.rp("entra-globex").await;

    let discovery = &rp.discovery;

    assert_eq!(discovery["issuer"], hop.issuer("entra-globex"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    let jwks: Value = hop
        .browser
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "every configured key is published");
    assert!(
        keys.iter()
            .all(|k| k["use"] == "sig" && k.get("d").is_none())
    );
    let unknown = hop
        .browser
        .get(format!(
            "{}/hop/nobody/.well-known/openid-configuration",
            hop.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[actix_web::test]
async fn serve_dev_signs_a_sample_user_in_through_its_embedded_upstream_double() {
    dev_sign_in(kratos_jit::hop::KeyAlgorithm::Rs256).await;
}

#[actix_web::test]
async fn serve_dev_with_an_es256_upstream_double_signs_a_sample_user_in() {
    dev_sign_in(kratos_jit::hop::KeyAlgorithm::Es256).await;
}

/// `serve --dev --dev-upstream-alg <alg>`: a sample user signs in through the double.
async fn dev_sign_in(alg: kratos_jit::hop::KeyAlgorithm) {
    use kratos_jit::serve;
    let kratos = StandIn::start().unwrap();
    let listener = free_listener();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let upstream = free_listener();
    // `serve --dev`'s settings, with the ports of this test instead of the fixed ones.
    let env = serve::dev_settings().into_iter().chain([
        (
            "KRATOS_JIT__LISTEN".to_owned(),
            listener.local_addr().unwrap().to_string(),
        ),
        (
            "KRATOS_JIT__KRATOS__ADMIN_URL".to_owned(),
            kratos.base_url(),
        ),
        ("KRATOS_JIT__HOP__PUBLIC_URL".to_owned(), address.clone()),
        ("KRATOS_JIT__MAPPER__WORKERS".to_owned(), "2".to_owned()),
    ]);
    drop(listener);
    let mut config = config::load_from(None, env).unwrap_or_else(|e| panic!("{e:?}"));
    let (providers, _) = Providers::load(&config.providers).unwrap();
    config.hop.dev = Some(serve::dev_hop(
        &providers,
        upstream.local_addr().unwrap(),
        alg,
    ));
    let double_issuer = format!("http://{}", upstream.local_addr().unwrap());
    serve::start_upstream(upstream, &config, &providers, alg).unwrap();
    let app = Application::build(
        &config,
        providers,
        WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
    )
    .unwrap();
    actix_web::rt::spawn(app.run_until_stopped());
    let rp = Rp::discover(RpConfig {
        issuer: format!("{address}/hop/okta-acme"),
        client_id: KRATOS_CLIENT.into(),
        client_secret: serve::DEV_HOP_CLIENT_SECRET.into(),
        redirect_uri: KRATOS_CALLBACK.to_owned(),
    })
    .await
    .unwrap();
    let browser = rp::browser();
    let double: Value = browser
        .get(format!("{double_issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        double["id_token_signing_alg_values_supported"],
        json!([alg.as_str()]),
        "the double signs as asked"
    );
    let authorization = rp.authorization("okta-acme/admin");

    let location = follow(&browser, &authorization.url, &rp.config.redirect_uri, |u| {
        u.to_owned()
    })
    .await
    .unwrap_or_else(|(status, body)| panic!("{status}: {body}"));
    let code = code(rp.callback(&authorization, &location));
    let tokens = rp.exchange(&code, &authorization.verifier).await.unwrap();

    let claims = rp.verify(&tokens.id_token).await.unwrap();
    assert_eq!(claims["kratos_jit_identity"]["traits"]["role"], "admin");
    assert_eq!(
        kratos.identities().len(),
        1,
        "the stand-in holds the new identity"
    );
}

#[test]
fn check_reports_bad_hop_settings_with_their_line_and_column() {
    let tree = tempfile::tempdir().unwrap();
    copy_dir(
        &manifest_dir().join("mappers/okta-acme"),
        &tree.path().join("okta-acme"),
    );
    let path = tree.path().join("okta-acme/provider.toml");
    let settings = std::fs::read_to_string(&path).unwrap().replace(
        "token_endpoint_auth = \"client_secret_post\"",
        "token_endpoint_auth = \"private_key_jwt\"",
    );
    std::fs::write(&path, settings).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .arg("check")
        .arg(tree.path())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.contains("private_key_jwt"))
        .unwrap()
        + 1;
    assert!(
        report.contains(&format!(
            "provider.toml:{line}:23: `hop.upstream.token_endpoint_auth` is \"private_key_jwt\""
        )),
        "{report}"
    );
}

#[actix_web::test]
async fn the_same_login_again_writes_nothing_and_a_role_removed_at_the_idp_is_lowered_at_the_next()
{
    let hop = spawn_hop().await;
    let rp = hop.rp("okta-acme").await;
    let (first, callback) = hop.sign_in(&rp, "okta-acme/admin").await;
    rp.exchange(&code(callback), &first.verifier).await.unwrap();
    let writes = hop.kratos.writes().len();

    let (again, callback) = hop.sign_in(&rp, "okta-acme/admin").await;
    let tokens = rp.exchange(&code(callback), &again.verifier).await.unwrap();
    assert_eq!(
        hop.kratos.writes().len(),
        writes,
        "an unchanged login writes nothing"
    );
    let claims = rp.verify(&tokens.id_token).await.unwrap();
    assert_eq!(claims["kratos_jit_identity"]["traits"]["role"], "admin");

    let (demoted, callback) = hop.sign_in(&rp, "okta-acme/demoted").await;
    let tokens = rp
        .exchange(&code(callback), &demoted.verifier)
        .await
        .unwrap();

    let claims = rp.verify(&tokens.id_token).await.unwrap();
    assert_eq!(claims["kratos_jit_identity"]["traits"]["role"], "user");
    let held = hop.identity_for("okta-acme", "ada@acme.example").unwrap();
    assert_eq!(held["traits"]["role"], "user");
    assert_eq!(hop.kratos.identities().len(), 1);
}

/// The three answers of one login through the hop, without following them: authorize,
/// callback (after the double's step) and token.
async fn answers_of_one_login(hop: &Hop) -> Vec<reqwest::Response> {
    let rp = hop.rp("okta-acme").await;
    let authorization = rp.authorization("okta-acme/admin");
    let authorize = hop.browser.get(&authorization.url).send().await.unwrap();
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_owned();
    let upstream = hop.browser.get(location(&authorize)).send().await.unwrap();
    let callback = hop.browser.get(location(&upstream)).send().await.unwrap();
    assert_eq!(callback.status(), 302);
    let code = code(rp.callback(&authorization, &location(&callback)));
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!(
            "{}:{}",
            form_urlencoded::byte_serialize(KRATOS_CLIENT.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(HOP_SECRET.as_bytes()).collect::<String>()
        ),
    );
    let token = hop
        .browser
        .post(format!("{}/token", hop.issuer("okta-acme")))
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", KRATOS_CALLBACK),
            ("code_verifier", &authorization.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    vec![authorize, callback, token]
}

/// `dep` and `app` of a `Server-Timing` header, in ms.
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

#[actix_web::test]
async fn with_server_timing_on_the_callback_reports_its_wait_on_the_upstream_and_kratos() {
    let hop = spawn_hop_with(&[("KRATOS_JIT__HOP__SERVER_TIMING", "true")]).await;
    let answers = answers_of_one_login(&hop).await;
    let timings: Vec<(f64, f64)> = answers
        .iter()
        .map(|r| server_timing(r).expect("every hop answer carries Server-Timing"))
        .collect();
    let (callback, token) = (timings[1], timings[2]);
    assert!(
        callback.0 > 0.0,
        "the callback waited on the double's token endpoint and on Kratos: {callback:?}"
    );
    assert_eq!(token.0, 0.0, "the token endpoint calls nothing: {token:?}");
    assert!(token.1 > 0.0, "its own work took time: {token:?}");
}

#[actix_web::test]
async fn by_default_the_hop_answers_carry_no_server_timing() {
    let hop = spawn_hop().await;
    for answer in answers_of_one_login(&hop).await {
        assert!(answer.headers().get("server-timing").is_none());
    }
}

#[actix_web::test]
async fn without_signing_keys_the_hop_is_off_and_its_routes_say_why() {
    let kratos = StandIn::start().unwrap();
    let listener = free_listener();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let env = vec![
        (
            "KRATOS_JIT__LISTEN".to_owned(),
            listener.local_addr().unwrap().to_string(),
        ),
        (
            "KRATOS_JIT__KRATOS__ADMIN_URL".to_owned(),
            kratos.base_url(),
        ),
        (
            "KRATOS_JIT__HOOKS__SECRETS".to_owned(),
            HOOK_SECRET.to_owned(),
        ),
        (
            "KRATOS_JIT__PROVIDERS".to_owned(),
            manifest_dir().join("mappers").display().to_string(),
        ),
    ];
    drop(listener);
    let config = config::load_from(None, env).unwrap();
    let (providers, _) = Providers::load(&config.providers).unwrap();
    let app = Application::build(
        &config,
        providers,
        WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
    )
    .unwrap();
    actix_web::rt::spawn(app.run_until_stopped());

    let answer = rp::browser()
        .get(format!(
            "{address}/hop/okta-acme/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 404);
    let page = answer.text().await.unwrap();
    assert!(page.contains("hop.signing_keys is not set"), "{page}");
}

/// `claims` with every occurrence of `from` in its strings (keys too) replaced by `to`.
fn replaced(claims: &Value, from: &str, to: &str) -> Value {
    let text = serde_json::to_string(claims).unwrap();
    serde_json::from_str(&text.replace(from, to)).unwrap()
}

/// The seed test plan, per sample IdP, through the hop. `(provider, admin case, user case,
/// the tenant's domain)`: the user case's person becomes the admin's (same subject and address),
/// so that it is the admin removed from the admin group at the IdP.
const SEED_PLAN: &[(&str, &str, &str, &str)] = &[
    ("okta-acme", "admin", "demoted", "acme.example"),
    ("entra-globex", "admin", "user", "globex.example"),
    ("onelogin-initech", "admin", "user", "initech.example"),
    ("okta-oidc-umbrella", "admin", "user", "umbrella.example"),
];

async fn session_count(hop: &Hop, identity_id: &str) -> usize {
    let url = format!(
        "{}/admin/identities/{identity_id}/sessions",
        hop.kratos.base_url()
    );
    let sessions: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    sessions.as_array().expect("a list of sessions").len()
}

#[actix_web::test]
async fn the_seed_test_plan_holds_through_the_hop_for_every_sample_idp() {
    let mut more = BTreeMap::new();
    for (provider, admin, user, domain) in SEED_PLAN {
        let admin_claims = fixture_claims(provider, admin);
        let user_claims = fixture_claims(provider, user);
        let mut demoted = user_claims.clone();
        for member in ["sub", "email"] {
            let (Some(from), Some(to)) =
                (user_claims[member].as_str(), admin_claims[member].as_str())
            else {
                continue;
            };
            demoted = replaced(&demoted, from, to);
        }
        let foreign = replaced(&admin_claims, &format!("@{domain}"), "@elsewhere.example");
        let foreign = replaced(
            &foreign,
            admin_claims["sub"].as_str().unwrap(),
            "seed-foreign-user",
        );
        more.insert(format!("seed/{provider}/demoted"), demoted);
        more.insert(format!("seed/{provider}/foreign"), foreign);
    }
    let hop = spawn_hop_with_users(&[], more).await;

    for (provider, admin, _, domain) in SEED_PLAN {
        let subject = fixture_claims(provider, admin)["sub"]
            .as_str()
            .unwrap()
            .to_owned();
        let rp = hop.rp(provider).await;

        // First login: created, in the provider's tenant, with the admin role.
        let (first, callback) = hop.sign_in(&rp, &format!("{provider}/{admin}")).await;
        let held = hop
            .identity_for(provider, &subject)
            .expect("created at the callback");
        assert_eq!(held["traits"]["role"], "admin", "{provider}");
        let tenant = held["traits"]["tenant_id"].as_str().unwrap().to_owned();
        assert!(tenant.starts_with("tenant-"), "{provider}: {tenant}");
        assert!(
            held["traits"]["email"].as_str().unwrap().ends_with(domain),
            "{provider}"
        );
        let tokens = rp.exchange(&code(callback), &first.verifier).await.unwrap();
        let claims = rp.verify(&tokens.id_token).await.unwrap();
        assert_eq!(claims["sub"], subject.as_str(), "{provider}");
        let id = held["id"].as_str().unwrap().to_owned();
        // The session Kratos would create from that login, and an older one.
        hop.kratos.add_session(&id);
        hop.kratos.add_session(&id);

        // The same login again writes nothing and keeps the sessions.
        let writes = hop.kratos.writes().len();
        let (again, callback) = hop.sign_in(&rp, &format!("{provider}/{admin}")).await;
        rp.exchange(&code(callback), &again.verifier).await.unwrap();
        assert_eq!(hop.kratos.writes().len(), writes, "{provider}: unchanged");
        assert_eq!(session_count(&hop, &id).await, 2, "{provider}");

        // Removed from the admin group at the IdP: lowered at the next login, and the earlier
        // sessions are gone before Kratos gets a code to make a new one.
        let (demoted, callback) = hop.sign_in(&rp, &format!("seed/{provider}/demoted")).await;
        let code = code(callback);
        let held = hop.identity_for(provider, &subject).unwrap();
        assert_eq!(held["id"], id.as_str(), "{provider}: the same identity");
        assert_eq!(held["traits"]["role"], "user", "{provider}");
        assert_eq!(held["traits"]["tenant_id"], tenant.as_str(), "{provider}");
        assert_eq!(
            session_count(&hop, &id).await,
            0,
            "{provider}: sessions revoked"
        );
        let tokens = rp.exchange(&code, &demoted.verifier).await.unwrap();
        let claims = rp.verify(&tokens.id_token).await.unwrap();
        assert_eq!(
            claims["kratos_jit_identity"]["traits"]["role"], "user",
            "{provider}"
        );

        // An e-mail outside the tenant's domains: refused, nothing written.
        let before = hop.kratos.identities();
        let (_, callback) = hop.sign_in(&rp, &format!("seed/{provider}/foreign")).await;
        let (error, description) = error(callback);
        assert_eq!(error, "access_denied", "{provider}");
        assert!(!description.is_empty(), "{provider}");
        assert_eq!(
            hop.kratos.identities(),
            before,
            "{provider}: nothing written"
        );
    }
    assert_eq!(hop.kratos.identities().len(), SEED_PLAN.len());
}

/// Several providers share one bridge. A token the bridge minted for provider A's connection,
/// arriving at provider B's callback, is refused: B's `[token]` audience is B's own client id.
#[actix_web::test]
async fn a_token_of_another_provider_at_the_hop_is_refused_and_nothing_is_written() {
    let hop = spawn_hop().await;
    hop.upstream.set_tamper(Tamper::OtherClient);
    for provider in PROVIDERS {
        let rp = hop.rp(provider).await;
        let (_, callback) = hop.sign_in(&rp, &format!("{provider}/admin")).await;
        let (error, description) = error(callback);
        assert_eq!(error, "access_denied", "{provider}");
        assert!(
            description.contains("could not be verified"),
            "{provider}: {description}"
        );
    }
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");

    // The same users, with tokens for their own provider, get in.
    hop.upstream.set_tamper(Tamper::None);
    let rp = hop.rp("okta-acme").await;
    let (_, callback) = hop.sign_in(&rp, "okta-acme/admin").await;
    code(callback);
}

/// Everything logged in this test process, at TRACE, as text (installed once for the process:
/// the servers' worker threads log there too).
fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        logs
    })
    .clone()
}

/// The hop's own steps log no personal data: every claims fixture signs in through the hop
/// (allowed ones through the token endpoint and userinfo as well) with the process logging at
/// TRACE, and no string of the fixtures' claims, nor a refusal's text, appears in the log.
#[actix_web::test]
async fn every_fixture_through_the_hop_logs_no_personal_data() {
    let logs = captured_logs();
    let hop = spawn_hop().await;
    let mut values = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (provider, case) in fixture_cases() {
        personal_strings(&fixture_claims(&provider, &case), &mut values);
        let rp = hop.rp(&provider).await;
        let (authorization, callback) = hop.sign_in(&rp, &format!("{provider}/{case}")).await;
        match callback {
            Callback::Code(code) => {
                let tokens = rp.exchange(&code, &authorization.verifier).await.unwrap();
                let claims = rp.verify(&tokens.id_token).await.unwrap();
                let sub = claims["sub"].as_str().unwrap();
                rp.userinfo(&tokens.access_token, sub).await.unwrap();
                allowed += 1;
            }
            Callback::Error { description, .. } => {
                values.extend(description.filter(|d| d.chars().count() >= 6));
                denied += 1;
            }
        }
    }
    assert!(
        allowed > 20 && denied > 10,
        "{allowed} allowed, {denied} denied"
    );

    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        log.contains("Login processed."),
        "the logins were not logged"
    );
    assert!(log.contains("TRACE"), "nothing was logged at TRACE");
    // A provider id's parts and Polis's `product` are configuration, not anyone's data.
    values.retain(|v| v != "kratos" && !PROVIDERS.iter().any(|p| p.contains(v.as_str())));
    values.sort();
    values.dedup();
    assert!(
        values.len() > 100,
        "only {} values to look for",
        values.len()
    );
    let leaks: Vec<String> = values
        .iter()
        .filter_map(|v| {
            let line = log.lines().find(|line| line.contains(v.as_str()))?;
            Some(format!("{v:?} in: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the hop's log leaks:\n{}",
        leaks.join("\n")
    );
}

#[actix_web::test]
async fn hop_logins_and_refusals_are_audited_with_their_request_id() {
    let audit = audit_events::AuditFile::new();
    let env = audit.env("plain");
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hop = spawn_hop_with(&extra).await;
    let rp = hop.rp("okta-acme").await;

    code(hop.sign_in(&rp, "okta-acme/admin").await.1);
    let events = audit.new_events();
    assert_eq!(audit_events::actions(&events), ["created"]);
    assert_eq!(
        audit_events::actions(&events),
        audit_events::write_actions(&hop.kratos.writes())
    );
    assert_eq!(events[0]["entry_point"], "hop");
    assert!(events[0]["request_id"].is_string());
    assert_eq!(events[0]["changes"][0]["field"], "credentials.oidc");

    hop.sign_in(&rp, "okta-acme/foreign-domain").await;
    let events = audit.new_events();
    assert_eq!(audit_events::actions(&events), ["denied"]);
    assert_eq!(events[0]["denial_code"], "foreign_domain");
    assert!(!audit.text().contains("\"eve@"), "{}", audit.text());
}

#[actix_web::test]
async fn with_the_audit_sink_unwritable_a_hop_login_is_temporarily_unavailable_and_writes_nothing()
{
    let hop = spawn_hop_with(&[
        ("KRATOS_JIT__AUDIT__SINK", "file"),
        ("KRATOS_JIT__AUDIT__FILE", "/dev/full"),
    ])
    .await;
    let rp = hop.rp("okta-acme").await;

    let (error, _) = error(hop.sign_in(&rp, "okta-acme/admin").await.1);
    assert_eq!(error, "temporarily_unavailable");
    assert_eq!(hop.kratos.writes(), vec![], "nothing was written");
}
