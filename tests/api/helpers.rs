//! Starting the application against a fresh Kratos stand-in, and talking to both.

use std::path::{Path, PathBuf};

use kratos_jit::config;
use kratos_jit::http::Application;
use kratos_jit::mapper::WorkerProgram;
use kratos_jit::provider::Providers;
use kratos_jit::standin::StandIn;
use serde_json::{Value, json};

use crate::issuer::{self, TestIssuer};
use crate::tree::copy_dir;

pub const API_SECRET: &str = "test-api-secret-0123456789";
pub const TRUSTED_SECRET: &str = "test-trusted-secret-0123456789";
pub const HOOK_SECRET: &str = "test-hook-secret-0123456789";

pub struct TestApp {
    pub address: String,
    pub kratos: StandIn,
    pub client: reqwest::Client,
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/claims/<provider>/<case>.json`.
pub fn fixture(provider: &str, case: &str) -> Value {
    let path: PathBuf = manifest_dir()
        .join("tests/fixtures/claims")
        .join(provider)
        .join(format!("{case}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The fixture sets the tests read (claims as Kratos builds them, web hook contexts).
pub fn fixtures_dir() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the application with extra `KRATOS_JIT__…` settings, on a free port.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    spawn_app_with_providers(&manifest_dir().join("mappers"), extra).await
}

/// Starts the application on the provider folders in `providers`, with extra `KRATOS_JIT__…`
/// settings, on a free port.
pub async fn spawn_app_with_providers(providers: &Path, extra: &[(&str, &str)]) -> TestApp {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut env: Vec<(String, String)> = vec![
        ("KRATOS_JIT__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            providers.display().to_string(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        ("KRATOS_JIT__API__SECRETS".into(), API_SECRET.into()),
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS".into(),
            TRUSTED_SECRET.into(),
        ),
        ("KRATOS_JIT__HOOKS__SECRETS".into(), HOOK_SECRET.into()),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "2".into()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = config::load_from(None, env).unwrap_or_else(|e| panic!("{e:?}"));
    let (providers, _) = Providers::load(&config.providers).unwrap_or_else(|e| panic!("{e:?}"));
    let app = Application::build(
        &config,
        providers,
        WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
    )
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        kratos,
        client: reqwest::Client::new(),
    }
}

/// A temporary `mappers/` tree for ID token tests: `okta-oidc-umbrella` with its `[token]`
/// issuer set to `issuer_url` (and its `jwks_url` to `jwks_url`, when given), and `okta-acme`
/// without `[token]` (nor `[hop]`, which needs it), so it accepts no ID token. Keep it alive as long as the application.
pub fn token_providers(issuer_url: &str, jwks_url: Option<&str>) -> tempfile::TempDir {
    let tree = tempfile::tempdir().expect("temporary directory");
    copy_provider("okta-oidc-umbrella", tree.path(), |settings| {
        let token = settings
            .get_mut("token")
            .and_then(toml::Value::as_table_mut)
            .expect("okta-oidc-umbrella has a [token] table");
        token.insert("issuer".into(), issuer_url.into());
        // The audience the test issuer's tokens carry (the sample's is its Okta client id).
        token.insert("audiences".into(), vec!["kratos-client"].into());
        if let Some(jwks_url) = jwks_url {
            token.insert("jwks_url".into(), jwks_url.into());
        }
    });
    copy_provider("okta-acme", tree.path(), |settings| {
        settings.remove("token");
        // A claims hop reads its upstream's issuer from [token]: without one, no hop either.
        settings.remove("hop");
    });
    tree
}

/// Every sample provider, with `provider`'s `provider.toml` and `mapper.jsonnet` edited.
pub fn edited_providers(
    provider: &str,
    settings: impl FnOnce(&mut toml::Table),
    mapper: impl FnOnce(String) -> String,
) -> tempfile::TempDir {
    let tree = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(manifest_dir().join("mappers")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &tree.path().join(entry.file_name()));
        }
    }
    copy_provider(provider, tree.path(), settings);
    let path = tree.path().join(provider).join("mapper.jsonnet");
    let source = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, mapper(source)).unwrap();
    tree
}

/// Copies `mappers/<provider>` into `tree`, with `edit` applied to its `provider.toml`.
fn copy_provider(provider: &str, tree: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let from = manifest_dir().join("mappers").join(provider);
    let to = tree.join(provider);
    copy_dir(&from, &to);
    let settings_path = to.join("provider.toml");
    let mut settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    edit(&mut settings);
    std::fs::write(&settings_path, toml::to_string(&settings).unwrap()).unwrap();
}

/// The ID token claims of `okta-oidc-umbrella/<case>.json` (its `raw_claims`), as `issuer`
/// issues them now: `iss` is the issuer's URL, `iat` now and `exp` in five minutes.
pub fn umbrella_token_claims(issuer: &TestIssuer, case: &str) -> Value {
    let mut claims = fixture("okta-oidc-umbrella", case)["raw_claims"].clone();
    let now = issuer::now();
    issuer::merge(
        &mut claims,
        json!({"iss": issuer.url, "iat": now, "exp": now + 300}),
    );
    claims
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    pub async fn post_provision(
        &self,
        secret: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}/v1/provision", self.address))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
        Answer { status, body }
    }

    /// An ordinary caller provisions the login an ID token describes.
    pub async fn provision_token(&self, provider: &str, id_token: &str) -> Answer {
        let body = json!({"provider": provider, "id_token": id_token});
        self.post_provision(Some(API_SECRET), body.to_string())
            .await
    }

    /// A trusted caller provisions raw claims.
    pub async fn provision_claims(&self, provider: &str, claims: &Value) -> Answer {
        let body = json!({"provider": provider, "claims": claims});
        self.post_provision(Some(TRUSTED_SECRET), body.to_string())
            .await
    }

    /// The identity Kratos holds for `provider:subject`.
    pub fn identity_for(&self, provider: &str, subject: &str) -> Option<Value> {
        let identifier = format!("{provider}:{subject}");
        let matching: Vec<Value> = self
            .kratos
            .identities()
            .into_iter()
            .filter(|i| {
                i["credentials"]["oidc"]["identifiers"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == identifier.as_str()))
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{} identities hold {identifier}",
            matching.len()
        );
        matching.into_iter().next()
    }

    /// Deletes every identity and clears the request log, between independent cases.
    pub async fn reset_kratos(&self) {
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

/// Every sample provider, each one's `provider.toml` passed to `edit` with its provider id.
pub fn providers_edited(edit: impl Fn(&str, &mut toml::Table)) -> tempfile::TempDir {
    let tree = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(manifest_dir().join("mappers")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let id = entry.file_name().to_str().unwrap().to_owned();
            copy_provider(&id, tree.path(), |settings| edit(&id, settings));
        }
    }
    tree
}

/// `tests/fixtures/<set>/<provider>/<case>.json` (`set`: `claims-polis`, `claims-satosa`, …).
pub fn fixture_of(set: &str, provider: &str, case: &str) -> Value {
    let path = fixtures_dir()
        .join(set)
        .join(provider)
        .join(format!("{case}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

impl TestApp {
    /// How many sessions Kratos holds for the identity (`GET /admin/identities/{id}/sessions`).
    pub async fn session_count(&self, identity_id: &str) -> usize {
        let sessions: Value = self
            .client
            .get(format!(
                "{}/admin/identities/{identity_id}/sessions",
                self.kratos.base_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sessions.as_array().expect("a list of sessions").len()
    }
}
