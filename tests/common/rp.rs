//! A relying party that signs in the way Kratos v26.2.0's `generic` OIDC provider does, and a
//! browser that follows redirects by hand: for the claims hop's tests.
//!
//! What it does as Kratos does (`selfservice/strategy/oidc/provider_generic_oidc.go@v26.2.0`
//! and its go-oidc and golang/oauth2 dependencies):
//!
//! - discovery, refusing a document whose `issuer` is not exactly the configured string;
//! - an authorization request with `state`, PKCE S256 and **no nonce**;
//! - the code exchange tries `client_secret_basic` first (id and secret form-encoded like Go's
//!   `url.QueryEscape`), and on any error retries with `client_secret_post` — with the same code;
//! - the ID token is verified against the JWKS of `jwks_uri`: `alg` among the discovery's
//!   `id_token_signing_alg_values_supported`, `iss`, `aud`, `exp` (a missing `exp` is expired),
//!   `nbf` with five minutes' leeway, `iat` not checked;
//! - the standard claims are decoded strictly (an `email` that is not a string fails);
//! - userinfo with the bearer access token, whose `sub` must be the ID token's.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Kratos's generic provider configuration, as the RP holds it.
#[derive(Debug, Clone)]
pub struct RpConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

pub struct Rp {
    pub config: RpConfig,
    pub discovery: Value,
    http: reqwest::Client,
}

/// One authorization request in flight.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub verifier: String,
}

/// What reached the RP's callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    Code(String),
    Error {
        error: String,
        description: Option<String>,
    },
}

/// The token endpoint's answer.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    /// Which attempts were made: `client_secret_basic`, then maybe `client_secret_post`.
    pub attempts: Vec<&'static str>,
}

/// The standard claims as Go's `encoding/json` decodes them into Kratos's `Claims`: typed.
#[derive(Debug, Deserialize)]
pub struct StandardClaims {
    pub sub: String,
    pub iss: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Go's `url.QueryEscape`.
fn query_escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client that never follows redirects: the tests are the browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Rp {
    /// Fetches the discovery document; refuses one of another issuer, as go-oidc does.
    pub async fn discover(config: RpConfig) -> Result<Rp, String> {
        let http = browser();
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("discovery answered {}", response.status()));
        }
        let discovery: Value = response.json().await.map_err(|e| e.to_string())?;
        if discovery["issuer"] != config.issuer.as_str() {
            return Err(format!(
                "issuer did not match the issuer returned by provider, expected {:?} got {}",
                config.issuer, discovery["issuer"]
            ));
        }
        Ok(Rp {
            config,
            discovery,
            http,
        })
    }

    /// An authorization request as Kratos builds it: state, PKCE S256, no nonce; `login_hint`
    /// as Kratos's `upstream_parameters` passes it.
    pub fn authorization(&self, login_hint: &str) -> Authorization {
        let state = random();
        let verifier = random();
        let mut url = reqwest::Url::parse(
            self.discovery["authorization_endpoint"]
                .as_str()
                .expect("authorization_endpoint"),
        )
        .unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", login_hint);
        Authorization {
            url: url.into(),
            state,
            verifier,
        }
    }

    /// Reads what reached the callback URL `location`; the state must be the request's.
    pub fn callback(&self, authorization: &Authorization, location: &str) -> Callback {
        assert!(
            location.starts_with(&self.config.redirect_uri),
            "the browser was not sent to the RP's callback: {location}"
        );
        let url = reqwest::Url::parse(location).unwrap();
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(
            query.get("state"),
            Some(&authorization.state),
            "the callback carries the RP's state"
        );
        if let Some(error) = query.get("error") {
            return Callback::Error {
                error: error.clone(),
                description: query.get("error_description").cloned(),
            };
        }
        Callback::Code(query.get("code").expect("a code or an error").clone())
    }

    /// One token request with the given client authentication style.
    pub async fn token_request(
        &self,
        style: &'static str,
        code: &str,
        verifier: Option<&str>,
        redirect_uri: &str,
        secret: &str,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier.to_owned()));
        }
        let mut request = self.http.post(
            self.discovery["token_endpoint"]
                .as_str()
                .expect("token_endpoint"),
        );
        if style == "client_secret_basic" {
            let credentials = format!(
                "{}:{}",
                query_escape(&self.config.client_id),
                query_escape(secret)
            );
            request = request.header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        } else {
            form.push(("client_id", self.config.client_id.clone()));
            form.push(("client_secret", secret.to_owned()));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        request
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The exchange as golang/oauth2 does it without a known auth style: basic, then post on
    /// any error, with the same code.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<Tokens, String> {
        self.exchange_with(
            code,
            Some(verifier),
            &self.config.redirect_uri.clone(),
            &self.config.client_secret.clone(),
        )
        .await
    }

    pub async fn exchange_with(
        &self,
        code: &str,
        verifier: Option<&str>,
        redirect_uri: &str,
        secret: &str,
    ) -> Result<Tokens, String> {
        let mut attempts = Vec::new();
        let mut last_error = String::new();
        for style in ["client_secret_basic", "client_secret_post"] {
            attempts.push(style);
            let response = self
                .token_request(style, code, verifier, redirect_uri, secret)
                .await;
            let status = response.status().as_u16();
            let cache = response
                .headers()
                .get("Cache-Control")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if status == 200 {
                assert_eq!(
                    cache.as_deref(),
                    Some("no-store"),
                    "token answers are not cached"
                );
                assert_eq!(body["token_type"], "Bearer");
                assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
                return Ok(Tokens {
                    id_token: body["id_token"].as_str().ok_or("no id_token")?.to_owned(),
                    access_token: body["access_token"]
                        .as_str()
                        .ok_or("no access_token")?
                        .to_owned(),
                    attempts,
                });
            }
            last_error = format!("{status} {}", body["error"].as_str().unwrap_or_default());
        }
        Err(last_error)
    }

    /// Verifies the hop's ID token as go-oidc does for Kratos, and decodes the standard claims
    /// strictly. Returns all claims.
    pub async fn verify(&self, id_token: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| e.to_string())?;
        let allowed: Vec<String> = self.discovery["id_token_signing_alg_values_supported"]
            .as_array()
            .ok_or("no id_token_signing_alg_values_supported")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let alg = format!("{:?}", header.alg);
        if !allowed.contains(&alg) {
            return Err(format!("alg {alg} is not supported by the provider"));
        }
        // Fetched for every verification, as Kratos's per-request provider does.
        let jwks: JwkSet = self
            .http
            .get(self.discovery["jwks_uri"].as_str().ok_or("no jwks_uri")?)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("the JWKS does not parse: {e}"))?;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = jwks.find(&kid).ok_or("unknown kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        let claims: Value = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
            .map_err(|e| e.to_string())?
            .claims;
        match claims["exp"].as_u64() {
            Some(exp) if exp > now() => {}
            _ => return Err("oidc: token is expired".into()),
        }
        if let Some(nbf) = claims["nbf"].as_u64()
            && nbf > now() + 300
        {
            return Err("oidc: current time before the nbf (not before) time".into());
        }
        if claims.get("nonce").is_some() {
            return Err("a nonce was not requested".into());
        }
        let _: StandardClaims = serde_json::from_value(claims.clone())
            .map_err(|e| format!("the standard claims do not decode: {e}"))?;
        Ok(claims)
    }

    /// Userinfo with the access token; its `sub` must be `sub`.
    pub async fn userinfo(&self, access_token: &str, sub: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(
                self.discovery["userinfo_endpoint"]
                    .as_str()
                    .ok_or("no userinfo_endpoint")?,
            )
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("userinfo answered {}", response.status()));
        }
        let claims: Value = response.json().await.map_err(|e| e.to_string())?;
        if claims["sub"] != sub {
            return Err("userinfo's sub is not the ID token's".into());
        }
        // Userinfo carries no `iss`; the rest decodes as strictly as the ID token's claims.
        let mut decoded = claims
            .as_object()
            .ok_or("userinfo is not an object")?
            .clone();
        decoded.insert("iss".into(), self.config.issuer.clone().into());
        let _: StandardClaims = serde_json::from_value(Value::Object(decoded))
            .map_err(|e| format!("the userinfo claims do not decode: {e}"))?;
        Ok(claims)
    }
}

/// Follows redirects by hand from `url` until one leads to a URL starting with `until`;
/// returns that URL. A non-redirect answer on the way is an error with its status and body.
/// `rewrite` lets a test send a request elsewhere (a load balancer in front of replicas).
pub async fn follow(
    browser: &reqwest::Client,
    url: &str,
    until: &str,
    rewrite: impl Fn(&str) -> String,
) -> Result<String, (u16, String)> {
    let mut next = url.to_owned();
    for _ in 0..10 {
        if next.starts_with(until) {
            return Ok(next);
        }
        let response = browser.get(rewrite(&next)).send().await.unwrap();
        let status = response.status().as_u16();
        if status != 302 && status != 303 {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        next = response
            .headers()
            .get("Location")
            .expect("a redirect has a Location")
            .to_str()
            .unwrap()
            .to_owned();
    }
    panic!("too many redirects");
}
