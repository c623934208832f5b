//! kratos-jit as the client of the upstream bridge or IdP: its discovery document (cached) and
//! the authorization code exchange.
//!
//! The upstream's issuer and CA bundle are those of the provider's `[token]`; the discovery
//! document must name exactly that issuer, and its endpoints obey the transport rule of
//! [`check_transport`] (https, or http to loopback). Answers are read under the input rules of
//! [`crate::domain::input`] and at most [`MAX_ANSWER_BYTES`]; redirects are not followed. Every
//! call is bounded by the caller's deadline. Errors say whether the upstream was out of reach
//! ([`UpstreamError::Unavailable`]) or answered with a refusal ([`UpstreamError::Refused`]);
//! they never quote a code, a secret or a token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Url;
use serde_json::Value;

use crate::domain::input;
use crate::provider::ClientAuth;
use crate::secret::Secret;
use crate::token::{IssuerSettings, check_transport, load_ca_bundle};

/// The largest discovery document or token answer read.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long a discovery document is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(10 * 60);

/// What the hop uses of the upstream's discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
}

/// kratos-jit's registration at the upstream, secrets resolved.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pub client_id: String,
    pub client_secret: Secret,
    pub auth: ClientAuth,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not reachable, too slow, or answering 5xx / something unreadable.
    #[error("the upstream identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the exchange (an OAuth error such as `invalid_grant`).
    #[error("the upstream identity provider refused the code exchange ({error})")]
    Refused { error: String },
}

/// Shared by every provider: one HTTP client per CA bundle, one cached discovery per issuer.
pub struct Upstreams {
    clients: Mutex<HashMap<Option<PathBuf>, reqwest::Client>>,
    discovery: moka::sync::Cache<String, Arc<Discovery>>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            clients: Mutex::new(HashMap::new()),
            discovery: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(DISCOVERY_TTL)
                .build(),
        }
    }
}

impl Upstreams {
    fn client(&self, issuer: &IssuerSettings) -> Result<reqwest::Client, UpstreamError> {
        let mut clients = self
            .clients
            .lock()
            .expect("the client map is never poisoned");
        if let Some(client) = clients.get(&issuer.ca_bundle) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kratos-jit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &issuer.ca_bundle {
            let certificates = load_ca_bundle(path).map_err(|problem| {
                UpstreamError::Unavailable(format!("CA bundle {}: {problem}", path.display()))
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| {
            UpstreamError::Unavailable(format!("cannot build an HTTP client ({e})"))
        })?;
        clients.insert(issuer.ca_bundle.clone(), client.clone());
        Ok(client)
    }

    /// The upstream's endpoints, from `<issuer>/.well-known/openid-configuration`.
    pub async fn discovery(
        &self,
        issuer: &IssuerSettings,
    ) -> Result<Arc<Discovery>, UpstreamError> {
        if let Some(found) = self.discovery.get(&issuer.issuer) {
            return Ok(found);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.issuer.trim_end_matches('/')
        );
        let request = crate::trace::propagate(
            self.client(issuer)?
                .get(&url)
                .header("Accept", "application/json"),
        );
        let body = crate::timing::waiting(async {
            let response = request.send().await.map_err(|e| unavailable(&url, &e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(UpstreamError::Unavailable(format!(
                    "{url} answered {status}"
                )));
            }
            read_json(response, &url).await
        })
        .await?;
        let field = |name: &str| -> Result<String, UpstreamError> {
            let value = body.get(name).and_then(Value::as_str).ok_or_else(|| {
                UpstreamError::Unavailable(format!("{url} has no `{name}` string"))
            })?;
            Ok(value.to_owned())
        };
        let named = field("issuer")?;
        if named != issuer.issuer {
            return Err(UpstreamError::Unavailable(format!(
                "{url} names another issuer than the provider's [token] issuer"
            )));
        }
        let endpoint = |name: &str| -> Result<String, UpstreamError> {
            let value = field(name)?;
            let parsed = Url::parse(&value)
                .map_err(|_| UpstreamError::Unavailable(format!("{url}: `{name}` is not a URL")))?;
            check_transport(&parsed).map_err(|problem| {
                UpstreamError::Unavailable(format!("{url}: `{name}` {problem}"))
            })?;
            Ok(value)
        };
        let discovery = Arc::new(Discovery {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
        });
        self.discovery
            .insert(issuer.issuer.clone(), discovery.clone());
        Ok(discovery)
    }

    /// Exchanges an authorization code for the upstream's ID token (the compact JWS, unverified).
    pub async fn exchange(
        &self,
        issuer: &IssuerSettings,
        client: &UpstreamClient,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, UpstreamError> {
        let discovery = self.discovery(issuer).await?;
        let url = &discovery.token_endpoint;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut request = self
            .client(issuer)?
            .post(url)
            .header("Accept", "application/json");
        match client.auth {
            ClientAuth::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both are form-encoded before they are joined.
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = format!(
                    "{}:{}",
                    encode(&client.client_id),
                    encode(client.client_secret.expose())
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.header("Authorization", format!("Basic {basic}"));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &client.client_id));
                form.push(("client_secret", client.client_secret.expose()));
            }
        }
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = crate::trace::propagate(
            request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body),
        );
        let (status, answer) = crate::timing::waiting(async {
            let response = request.send().await.map_err(|e| unavailable(url, &e))?;
            let status = response.status();
            if status.is_server_error() {
                return Err(UpstreamError::Unavailable(format!(
                    "{url} answered {status}"
                )));
            }
            Ok((status, read_json(response, url).await))
        })
        .await?;
        if !status.is_success() {
            // An OAuth error answer: its `error` code (a token from a fixed vocabulary), never
            // its description, which may quote what was sent.
            let error = answer
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(oauth_error_code))
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(UpstreamError::Refused { error });
        }
        let answer = answer?;
        match answer.get("id_token") {
            Some(Value::String(token)) => Ok(token.clone()),
            _ => Err(UpstreamError::Refused {
                error: "the token answer holds no id_token (is `openid` among the scopes?)".into(),
            }),
        }
    }
}

/// An OAuth error code as it may be repeated: the characters RFC 6749 §5.2 allows, cut short.
pub fn oauth_error_code(code: &str) -> String {
    code.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

fn unavailable(url: &str, error: &reqwest::Error) -> UpstreamError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    UpstreamError::Unavailable(format!("{url}: {what}"))
}

async fn read_json(mut response: reqwest::Response, url: &str) -> Result<Value, UpstreamError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(UpstreamError::Unavailable(format!(
            "{url} answered more than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::Unavailable(format!(
                "{url} answered more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    match input::parse(&body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(UpstreamError::Unavailable(format!(
            "{url} did not answer a JSON object"
        ))),
        Err(e) => Err(UpstreamError::Unavailable(format!(
            "{url} answered JSON that is refused ({e})"
        ))),
    }
}
