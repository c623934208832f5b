//! An upstream OpenID Provider double, signing like a real bridge (Ory Polis): for the hop's
//! tests and `serve --dev`. Development only: its signing keys are committed
//! (`dev/upstream-op-key.pem`, RS256, the default, as Polis, Okta and Entra ID sign;
//! `dev/upstream-op-key-es256.pem`, ES256, for load benchmarks: `serve --dev
//! --dev-upstream-alg ES256`).
//!
//! | endpoint | behaviour |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | issuer = its base URL, the endpoints below, its algorithm |
//! | `GET /jwks` | its one key, with `kid`, `use: sig`, `alg` |
//! | `GET /authorize` | a registered client and exact redirect URI, `response_type=code`, PKCE S256; approves at once the user named by `login_hint` (a key of its user table), else redirects with `access_denied`; `login_hint=cancel` is the user cancelling (`access_denied`, "The user cancelled the sign-in.") |
//! | `POST /token` | client_secret_basic (form-decoded) or client_secret_post; the code once, its redirect URI and PKCE verifier; answers `{access_token, token_type, expires_in, id_token}` |
//!
//! The ID token holds the user's claims as the table gives them (for the fixtures: their
//! `raw_claims`, what Polis puts in its ID token) with `iss` = the double, `aud` = the client,
//! `iat`/`exp` of now (5 minutes) and the request's `nonce` echoed. Tests make it misbehave
//! with an [`OpFault`] (its token endpoint down or slow) or a [`Tamper`] (a token signed by
//! another key, of another issuer or audience, expired, without the nonce).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::hop::{KeyAlgorithm, Signer};

/// The double's RSA key: development only, committed on purpose.
const SIGNING_KEY: &str = include_str!("../../dev/upstream-op-key.pem");
/// Its P-256 key, for `--dev-upstream-alg ES256`: development only, committed on purpose.
const SIGNING_KEY_ES256: &str = include_str!("../../dev/upstream-op-key-es256.pem");
/// Its kid, as a bridge names its keys.
const KID: &str = "upstream-double-1";
/// What `login_hint` makes the user cancel.
pub const CANCEL_HINT: &str = "cancel";

/// A client registered at the double (kratos-jit, for one provider).
#[derive(Debug, Clone)]
pub struct OpClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// The token endpoint misbehaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFault {
    None,
    /// Every token request is answered 503.
    TokenUnavailable,
    /// Every token request waits this long first.
    TokenDelay(Duration),
}

/// What is wrong with the ID tokens it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// Signed by a key it does not publish.
    WrongSignature,
    WrongIssuer,
    WrongAudience,
    /// Minted for another of its clients: the token a shared bridge issues to another
    /// customer's connection (its `aud` is that client's id).
    OtherClient,
    /// Expired an hour ago.
    Expired,
    /// Without the nonce of the request.
    WrongNonce,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    claims: Value,
}

struct Inner {
    users: BTreeMap<String, Value>,
    codes: HashMap<String, Grant>,
    fault: OpFault,
    tamper: Tamper,
    /// How each token request authenticated: `client_secret_basic` or `client_secret_post`.
    exchanges: Vec<&'static str>,
    /// The endpoint and `traceparent` header of every discovery, JWKS and token request.
    traceparents: Vec<(&'static str, Option<String>)>,
}

/// The double's state, shared by its workers and the test or `serve --dev` that started it.
pub struct OpShared {
    issuer: Mutex<String>,
    clients: Vec<OpClient>,
    inner: Mutex<Inner>,
    /// Its key, prepared once: what signs every token but the tampered ones.
    signer: Signer,
    alg: Algorithm,
    jwk: Value,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OpShared {
    /// A double for these clients and users (`login_hint` → ID token claims).
    pub fn new(clients: Vec<OpClient>, users: BTreeMap<String, Value>) -> Arc<OpShared> {
        Self::with_algorithm(clients, users, KeyAlgorithm::Rs256)
    }

    /// The same, signing with `alg` (its committed RS256 or ES256 key).
    pub fn with_algorithm(
        clients: Vec<OpClient>,
        users: BTreeMap<String, Value>,
        alg: KeyAlgorithm,
    ) -> Arc<OpShared> {
        let (key, signer, alg) = match alg {
            KeyAlgorithm::Rs256 => {
                let key = EncodingKey::from_rsa_pem(SIGNING_KEY.as_bytes()).expect("its key");
                let private = rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(SIGNING_KEY)
                    .or_else(|_| rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(SIGNING_KEY))
                    .expect("the double's key");
                let signer = Signer::rs256(&private).expect("the double's key signs");
                (key, signer, Algorithm::RS256)
            }
            KeyAlgorithm::Es256 => {
                let key = EncodingKey::from_ec_pem(SIGNING_KEY_ES256.as_bytes()).expect("its key");
                let private: p256::SecretKey =
                    p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(SIGNING_KEY_ES256)
                        .expect("the double's key");
                let signer = Signer::es256(&private).expect("the double's key signs");
                (key, signer, Algorithm::ES256)
            }
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("its JWK");
        jwk.common.key_id = Some(KID.into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Arc::new(OpShared {
            issuer: Mutex::new(String::new()),
            clients,
            inner: Mutex::new(Inner {
                users,
                codes: HashMap::new(),
                fault: OpFault::None,
                tamper: Tamper::None,
                exchanges: Vec::new(),
                traceparents: Vec::new(),
            }),
            signer,
            alg,
            jwk: serde_json::to_value(jwk).expect("JWK JSON"),
        })
    }

    pub fn issuer(&self) -> String {
        lock(&self.issuer).clone()
    }

    pub fn set_fault(&self, fault: OpFault) {
        lock(&self.inner).fault = fault;
    }

    pub fn set_tamper(&self, tamper: Tamper) {
        lock(&self.inner).tamper = tamper;
    }

    pub fn insert_user(&self, login_hint: &str, claims: Value) {
        lock(&self.inner)
            .users
            .insert(login_hint.to_owned(), claims);
    }

    /// How each token request so far authenticated.
    pub fn exchanges(&self) -> Vec<&'static str> {
        lock(&self.inner).exchanges.clone()
    }

    /// The endpoint (`discovery`, `jwks`, `token`) and `traceparent` of every request to
    /// them so far, in order.
    pub fn traceparents(&self) -> Vec<(&'static str, Option<String>)> {
        lock(&self.inner).traceparents.clone()
    }

    /// Keeps the request's `traceparent` for [`Self::traceparents`].
    fn record_trace(&self, endpoint: &'static str, request: &HttpRequest) {
        let traceparent = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        lock(&self.inner).traceparents.push((endpoint, traceparent));
    }

    fn client(&self, id: &str) -> Option<&OpClient> {
        self.clients.iter().find(|c| c.client_id == id)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn query(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn redirect(base: &str, pairs: &[(&str, &str)]) -> HttpResponse {
    let mut url = reqwest::Url::parse(base).expect("registered redirect URIs are URLs");
    url.query_pairs_mut().extend_pairs(pairs);
    HttpResponse::Found()
        .insert_header(("Location", url.to_string()))
        .finish()
}

fn token_error(status: u16, error: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a status"))
        .json(json!({"error": error}))
}

async fn discovery(request: HttpRequest, op: web::Data<Arc<OpShared>>) -> HttpResponse {
    op.record_trace("discovery", &request);
    let issuer = op.issuer();
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [match op.alg {
            Algorithm::ES256 => "ES256",
            _ => "RS256",
        }],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks(request: HttpRequest, op: web::Data<Arc<OpShared>>) -> HttpResponse {
    op.record_trace("jwks", &request);
    HttpResponse::Ok().json(json!({"keys": [op.jwk]}))
}

async fn authorize(request: HttpRequest, op: web::Data<Arc<OpShared>>) -> HttpResponse {
    let q = query(request.query_string().as_bytes());
    let get = |name: &str| q.get(name).map(String::as_str).unwrap_or_default();
    let Some(client) = op.client(get("client_id")) else {
        return HttpResponse::BadRequest().body("unknown client_id");
    };
    let redirect_uri = get("redirect_uri");
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return HttpResponse::BadRequest().body("unregistered redirect_uri");
    }
    let state = get("state");
    if get("response_type") != "code" || get("code_challenge_method") != "S256" {
        return redirect(
            redirect_uri,
            &[("error", "invalid_request"), ("state", state)],
        );
    }
    let hint = get("login_hint");
    if hint == CANCEL_HINT {
        return redirect(
            redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user cancelled the sign-in."),
                ("state", state),
            ],
        );
    }
    let mut inner = lock(&op.inner);
    let Some(claims) = inner.users.get(hint).cloned() else {
        drop(inner);
        return redirect(
            redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "Unknown user."),
                ("state", state),
            ],
        );
    };
    let mut code = [0u8; 24];
    rand::fill(&mut code);
    let code = URL_SAFE_NO_PAD.encode(code);
    inner.codes.insert(
        code.clone(),
        Grant {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: get("code_challenge").to_owned(),
            nonce: q.get("nonce").cloned(),
            claims,
        },
    );
    drop(inner);
    redirect(redirect_uri, &[("code", &code), ("state", state)])
}

fn form_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

async fn token(
    request: HttpRequest,
    body: web::Bytes,
    op: web::Data<Arc<OpShared>>,
) -> HttpResponse {
    op.record_trace("token", &request);
    let fault = lock(&op.inner).fault;
    match fault {
        OpFault::TokenUnavailable => return token_error(503, "temporarily_unavailable"),
        OpFault::TokenDelay(delay) => tokio::time::sleep(delay).await,
        OpFault::None => {}
    }
    let form = query(&body);
    let basic = request
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(i, p)| (form_decode(i), form_decode(p)))
        });
    let (method, (id, secret)) = match (basic, form.get("client_secret")) {
        (Some(pair), None) => ("client_secret_basic", pair),
        (None, Some(secret)) => (
            "client_secret_post",
            (
                form.get("client_id").cloned().unwrap_or_default(),
                secret.clone(),
            ),
        ),
        _ => return token_error(401, "invalid_client"),
    };
    lock(&op.inner).exchanges.push(method);
    if op.client(&id).is_none_or(|c| c.client_secret != secret) {
        return token_error(401, "invalid_client");
    }
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return token_error(400, "unsupported_grant_type");
    }
    let Some(grant) = lock(&op.inner).codes.remove(get("code")) else {
        return token_error(400, "invalid_grant");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if grant.client_id != id
        || grant.redirect_uri != get("redirect_uri")
        || grant.challenge != challenge
    {
        return token_error(400, "invalid_grant");
    }
    let tamper = lock(&op.inner).tamper;
    let issued = now();
    let mut claims: Map<String, Value> = grant.claims.as_object().cloned().unwrap_or_default();
    claims.insert("iss".into(), op.issuer().into());
    claims.insert("aud".into(), grant.client_id.clone().into());
    claims.insert("iat".into(), issued.into());
    claims.insert("exp".into(), (issued + 300).into());
    claims.remove("nonce");
    if let Some(nonce) = grant.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    match tamper {
        Tamper::None | Tamper::WrongSignature => {}
        Tamper::WrongIssuer => {
            claims.insert("iss".into(), "https://impostor.example".into());
        }
        Tamper::WrongAudience => {
            claims.insert("aud".into(), "someone-else".into());
        }
        Tamper::OtherClient => {
            if let Some(other) = op.clients.iter().find(|c| c.client_id != grant.client_id) {
                claims.insert("aud".into(), other.client_id.clone().into());
            }
        }
        Tamper::Expired => {
            claims.insert("iat".into(), (issued - 7200).into());
            claims.insert("exp".into(), (issued - 3600).into());
        }
        Tamper::WrongNonce => {
            claims.insert("nonce".into(), "not-the-nonce".into());
        }
    }
    let mut header = Header::new(op.alg);
    header.kid = Some(KID.into());
    let id_token = if tamper == Tamper::WrongSignature {
        header.alg = Algorithm::RS256;
        let other = rsa_test_key();
        jsonwebtoken::encode(&header, &claims, &other).expect("the double signs")
    } else {
        op.signer.jws(&header, &claims)
    };
    let mut access = [0u8; 24];
    rand::fill(&mut access);
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "access_token": URL_SAFE_NO_PAD.encode(access),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }))
}

/// An RSA key the double does not publish (the hop's development key).
fn rsa_test_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../../dev/hop-signing-key.pem"))
        .expect("the development hop key")
}

/// The double's HTTP server on `listener` (an actix server to await or spawn).
pub fn server(listener: TcpListener, op: Arc<OpShared>) -> io::Result<actix_web::dev::Server> {
    let addr = listener.local_addr()?;
    *lock(&op.issuer) = format!("http://{addr}");
    let data = web::Data::new(op);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// A running double on its own thread, for tests. Dropping it stops it.
pub struct UpstreamOp {
    shared: Arc<OpShared>,
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UpstreamOp {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start(clients: Vec<OpClient>, users: BTreeMap<String, Value>) -> io::Result<UpstreamOp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = OpShared::new(clients, users);
        let (sender, receiver) = std::sync::mpsc::channel();
        let served = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("upstream-double-{}", addr.port()))
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    match server(listener, served) {
                        Ok(server) => {
                            let _ = sender.send(Ok(server.handle()));
                            let _ = server.await;
                        }
                        Err(e) => {
                            let _ = sender.send(Err(e));
                        }
                    }
                });
            })?;
        let handle = receiver
            .recv()
            .map_err(|_| io::Error::other("the upstream double did not start"))??;
        Ok(UpstreamOp {
            shared,
            addr,
            handle,
            thread: Some(thread),
        })
    }

    /// Its issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shared(&self) -> &Arc<OpShared> {
        &self.shared
    }
}

impl std::ops::Deref for UpstreamOp {
    type Target = OpShared;

    fn deref(&self) -> &OpShared {
        &self.shared
    }
}

impl Drop for UpstreamOp {
    fn drop(&mut self) {
        // Stopped from a thread of its own: the caller may be inside an async runtime.
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            runtime.block_on(handle.stop(false));
        })
        .join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
