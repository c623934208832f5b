//! A test OpenID provider on loopback, shared by the test binaries that verify ID tokens:
//! signing keys from `tests/fixtures/keys/` ([`TestKey`]) and an issuer serving discovery and a
//! JWKS with switchable keys, request counters and failure modes ([`TestIssuer`]).
//!
//! Include it with `#[path = "…/common/issuer.rs"] mod issuer;`. Each binary uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kratos_jit::token::IssuerSettings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The audience of the issuer's tokens ([`TestIssuer::claims`], [`TestIssuer::settings`]).
pub const AUDIENCE: &str = "kratos-client";
/// The e-mail address in [`TestIssuer::claims`].
pub const EMAIL: &str = "alice@umbrella.example";
/// The subject in [`TestIssuer::claims`].
pub const SUBJECT: &str = "00u1a2b3c4";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

pub fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key file")
}

/// A signing key of the test issuer and the JWK it publishes for it.
pub struct TestKey {
    pub kid: &'static str,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(file: &str, kid: &'static str) -> Self {
        let encoding = EncodingKey::from_rsa_pem(&key_file(file)).expect("RSA PEM");
        Self::new(kid, Algorithm::RS256, encoding)
    }

    pub fn ec(file: &str, kid: &'static str) -> Self {
        let encoding = EncodingKey::from_ec_pem(&key_file(file)).expect("EC PEM");
        Self::new(kid, Algorithm::ES256, encoding)
    }

    pub fn new(kid: &'static str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("JWK from key");
        jwk.common.key_id = Some(kid.into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        TestKey {
            kid,
            alg,
            encoding,
            jwk: serde_json::to_value(jwk).expect("JWK JSON"),
        }
    }

    /// The same key published under other JWK parameters.
    pub fn publishing(mut self, changes: Value) -> Self {
        merge(&mut self.jwk, changes);
        self
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(self.kid), claims)
    }

    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }
}

/// RSA key A (`rsa-a.pem`), published as `key-a`.
pub fn key_a() -> TestKey {
    TestKey::rsa("rsa-a.pem", "key-a")
}

/// RSA key B (`rsa-b.pem`), published as `key-b`.
pub fn key_b() -> TestKey {
    TestKey::rsa("rsa-b.pem", "key-b")
}

/// An OpenID provider on 127.0.0.1 serving discovery and a JWKS.
pub struct TestIssuer {
    /// `http://127.0.0.1:<port>`, the issuer identifier.
    pub url: String,
    state: Arc<IssuerState>,
}

#[derive(Default)]
struct IssuerState {
    keys: Mutex<Vec<Value>>,
    /// What the discovery document claims as issuer; `None` is the issuer's own URL.
    discovery_issuer: Mutex<Option<String>>,
    /// 0 answers 200.
    jwks_status: AtomicU16,
    jwks_delay_ms: AtomicU64,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    /// `(path, traceparent)` of every discovery and JWKS request, in order.
    traceparents: Mutex<Vec<(String, Option<String>)>>,
}

impl TestIssuer {
    /// Starts serving on a free loopback port, on the current tokio runtime.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let issuer = TestIssuer {
            url: url.clone(),
            state: Arc::default(),
        };
        issuer.publish(keys);
        let state = issuer.state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, state.clone(), url.clone()));
            }
        });
        issuer
    }

    pub fn settings(&self) -> IssuerSettings {
        IssuerSettings::new(&self.url, [AUDIENCE])
    }

    pub fn publish(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    pub fn publish_raw(&self, jwks: Vec<Value>) {
        *self.state.keys.lock().unwrap() = jwks;
    }

    /// Answers the JWKS with this status from now on; 0 restores 200.
    pub fn answer_jwks_with_status(&self, status: u16) {
        self.state.jwks_status.store(status, Ordering::SeqCst);
    }

    pub fn delay_jwks(&self, delay: Duration) {
        self.state
            .jwks_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn claim_to_be(&self, issuer: &str) {
        *self.state.discovery_issuer.lock().unwrap() = Some(issuer.into());
    }

    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// The path and the `traceparent` header (if any) of every discovery and JWKS request.
    pub fn traceparents(&self) -> Vec<(String, Option<String>)> {
        self.state.traceparents.lock().unwrap().clone()
    }

    /// Claims of a fresh, valid token from this issuer.
    pub fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.url, "sub": SUBJECT, "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "email": EMAIL, "email_verified": true, "groups": ["Umbrella-Users"],
        })
    }

    pub fn claims_with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        merge(&mut claims, changes);
        claims
    }
}

async fn answer(mut stream: TcpStream, state: Arc<IssuerState>, url: String) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let traceparent = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("traceparent")
            .then(|| value.trim().to_owned())
    });
    if matches!(path.as_str(), "/.well-known/openid-configuration" | "/jwks") {
        state
            .traceparents
            .lock()
            .unwrap()
            .push((path.clone(), traceparent));
    }
    let (status, body) = match path.as_str() {
        "/.well-known/openid-configuration" => {
            state.discovery_requests.fetch_add(1, Ordering::SeqCst);
            let issuer = state
                .discovery_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or(url.clone());
            (
                200,
                json!({"issuer": issuer, "jwks_uri": format!("{url}/jwks")}),
            )
        }
        "/jwks" => {
            state.jwks_requests.fetch_add(1, Ordering::SeqCst);
            let delay = state.jwks_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let status = match state.jwks_status.load(Ordering::SeqCst) {
                0 => 200,
                status => status,
            };
            (status, json!({"keys": state.keys.lock().unwrap().clone()}))
        }
        _ => (404, json!({"error": "not found"})),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Not OK" },
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Seconds since the Unix epoch, for `iat`, `exp` and `nbf`.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets each key of `changes` in `target`; a `null` removes the key.
pub fn merge(target: &mut Value, changes: Value) {
    let (Value::Object(target), Value::Object(changes)) = (target, changes) else {
        panic!("merge needs two objects");
    };
    for (key, value) in changes {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
}

/// Base64url (no padding) of a JSON value, as a JWS part.
pub fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// `message` signed as it is, whatever it holds: for payloads `jsonwebtoken::encode` cannot make.
pub fn signed_raw(key: &TestKey, message: &str) -> String {
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, key.alg).expect("sign");
    format!("{message}.{signature}")
}

/// An unsigned (`alg: none`) token carrying `claims`, naming `kid`.
pub fn unsigned(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    format!("{}.{}.", b64(&header), b64(claims))
}

/// `token` with its payload replaced by `claims`, the original signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let [header, _, signature]: [&str; 3] = token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three parts");
    format!("{header}.{}.{signature}", b64(claims))
}

/// The claims a compact JWS carries, decoded without any check.
pub fn payload_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a payload part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("JSON")
}
