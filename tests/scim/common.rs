//! What the SCIM tests share: the application spawned against the Kratos stand-in, a request
//! helper, a PostgreSQL harness, and the SCIM message shapes the vendors send.

use std::path::{Path, PathBuf};

use kratos_jit::standin::StandIn;
use serde_json::{Value, json};

use crate::pg_cluster::{postgres_admin_url, with_database};

pub const ACME: &str = "acme-scim-secret-0123456789";
pub const GLOBEX: &str = "globex-scim-secret-0123456789";

pub const USERS: &str = "/scim/v2/okta-acme/Users";
pub const GROUPS: &str = "/scim/v2/okta-acme/Groups";

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// How to spawn the application.
pub struct Options {
    /// `scim.database_url`.
    pub database_url: String,
    /// The provider folder.
    pub providers: PathBuf,
    /// More `KRATOS_JIT__…` settings (e.g. the Kratos client's retries).
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database_url: "sqlite::memory:".to_owned(),
            providers: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/mappers")),
            env: Vec::new(),
        }
    }
}

pub struct App {
    pub address: String,
    pub kratos: StandIn,
    pub client: reqwest::Client,
}

/// One answer: status, headers and the JSON body (`Null` when empty or not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn spawn() -> App {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> App {
    let kratos = StandIn::start().expect("stand-in starts");
    let mut env: Vec<(String, String)> = vec![
        ("KRATOS_JIT__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "KRATOS_JIT__PROVIDERS".into(),
            options.providers.display().to_string(),
        ),
        ("KRATOS_JIT__KRATOS__ADMIN_URL".into(), kratos.base_url()),
        (
            "KRATOS_JIT__API__TRUSTED_SECRETS".into(),
            "trusted-0123456789".into(),
        ),
        ("KRATOS_JIT__MAPPER__WORKERS".into(), "2".into()),
        (
            "KRATOS_JIT__SCIM__DATABASE_URL".into(),
            options.database_url,
        ),
        ("KRATOS_JIT__SCIM__MAX_BODY_BYTES".into(), "4096".into()),
    ];
    env.extend(options.env.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let app = super::serve::build(env, |name| {
        if name.contains("OKTA_ACME") {
            ACME
        } else {
            GLOBEX
        }
    })
    .await;
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    App {
        address,
        kratos,
        client: reqwest::Client::new(),
    }
}

impl App {
    /// A SCIM request as the vendors send it: the bearer secret, `application/scim+json`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: Option<&str>,
    ) -> Reply {
        let url = format!("{}{path}", self.address);
        let mut request = self
            .client
            .request(method.parse().unwrap(), url)
            .header("Authorization", format!("Bearer {secret}"));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let reply = self.request(method, path, secret, body).await;
        (reply.status, reply.body)
    }

    /// `call` with a JSON body.
    pub async fn send(&self, method: &str, path: &str, secret: &str, body: &Value) -> Reply {
        self.request(method, path, secret, Some(&body.to_string()))
            .await
    }

    pub async fn sessions(&self, id: &str) -> usize {
        let url = format!("{}/admin/identities/{id}/sessions", self.kratos.base_url());
        let answer: Value = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer.as_array().map_or(0, Vec::len)
    }

    pub fn identity(&self, id: &str) -> Value {
        self.kratos
            .identities()
            .into_iter()
            .find(|i| i["id"] == id)
            .unwrap_or(Value::Null)
    }

    /// `traits.role` of the identity.
    pub fn role(&self, id: &str) -> Value {
        self.identity(id)["traits"]["role"].clone()
    }

    /// An SSO login of `claims` through `POST /v1/provision` (a trusted caller's raw claims).
    pub async fn sso_login(&self, provider: &str, claims: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/provision", self.address))
            .header("Authorization", "Bearer trusted-0123456789")
            .header("Content-Type", "application/json")
            .body(json!({"provider": provider, "claims": claims}).to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A PATCH request body of these operations.
pub fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// `value` percent-encoded for a query string.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Asserts the shape of a ListResponse: the URN, integer numbers, `Resources` an array.
pub fn assert_list(list: &Value, total: u64, start: u64, items: u64) {
    assert_eq!(list["schemas"], json!([LIST_RESPONSE]), "{list}");
    assert_eq!(list["totalResults"].as_u64(), Some(total), "{list}");
    assert_eq!(list["startIndex"].as_u64(), Some(start), "{list}");
    assert_eq!(list["itemsPerPage"].as_u64(), Some(items), "{list}");
    let resources = list["Resources"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(resources, items, "{list}");
}

/// Asserts a SCIM error body with this status (as a string, RFC 7644 §3.12).
pub fn assert_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.body["schemas"], json!([ERROR]), "{}", reply.text);
    assert_eq!(
        reply.body["status"].as_str(),
        Some(status.to_string().as_str()),
        "{}",
        reply.text
    );
}

/// A copy of the provider folder in a temporary directory, with `edit` applied to each
/// provider's `provider.toml` text.
pub fn providers_copy(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappers"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy_tree(from, dir.path());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path().join("provider.toml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let name = path
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            std::fs::write(&path, edit(&name, text)).unwrap();
        }
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---- PostgreSQL ----

/// A database of its own on the test PostgreSQL (`KRATOS_JIT_TEST_POSTGRES_URL`, else a
/// throwaway cluster this process starts, as tests/store.rs does); its URL.
pub async fn postgres_database() -> String {
    let admin = postgres_admin_url();
    let client = postgres_client(admin).await;
    let name = format!("kjit_scim_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE for the test");
    with_database(admin, &name)
}

pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// Takes the database of `url` down: no new connections, every open one ended.
pub async fn postgres_down(url: &str) {
    let database = url.rsplit('/').next().unwrap().to_owned();
    let admin = postgres_client(postgres_admin_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .unwrap();
}

/// Brings the database of `url` back.
pub async fn postgres_up(url: &str) {
    let database = url.rsplit('/').next().unwrap().to_owned();
    let admin = postgres_client(postgres_admin_url()).await;
    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
}
