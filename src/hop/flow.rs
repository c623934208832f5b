//! The hop's endpoints as protocol steps: each takes what the request carried and returns an
//! [`Answer`] the HTTP adapter renders. The order of the checks is the contract: see the
//! module documentation of [`super`].

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

use super::id_token::{self, Minted};
use super::seal::{Purpose, SealError};
use super::upstream::{UpstreamError, oauth_error_code};
use super::{Hop, HopCore, ProviderHop};
use crate::domain::Subject;
use crate::kratos::KratosAdmin;
use crate::login::{Action, Current, EntryPoint, Login, LoginError, Logins};
use crate::token::TokenVerifier;

/// What an endpoint answers, for the HTTP adapter to render.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `302 Found` to this URL.
    Redirect(String),
    /// A plain-text page for the person at the browser (400, 404): what is wrong.
    Page { status: u16, message: String },
    /// A JSON answer; `no_store` adds `Cache-Control: no-store` and `Pragma: no-cache`;
    /// `authenticate` is a `WWW-Authenticate` value.
    Json {
        status: u16,
        body: Value,
        no_store: bool,
        authenticate: Option<String>,
    },
}

impl Answer {
    fn page(status: u16, message: impl Into<String>) -> Answer {
        Answer::Page {
            status,
            message: message.into(),
        }
    }

    fn json(body: Value) -> Answer {
        Answer::Json {
            status: 200,
            body,
            no_store: false,
            authenticate: None,
        }
    }

    /// An OAuth error answer of the token or userinfo endpoint (RFC 6749 §5.2, RFC 6750 §3).
    fn oauth_error(status: u16, error: &str, description: &str) -> Answer {
        let authenticate = match (status, error) {
            (401, "invalid_token") => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{description}\""
            )),
            (401, _) => Some("Basic realm=\"kratos-jit hop\"".to_owned()),
            _ => None,
        };
        Answer::Json {
            status,
            body: json!({"error": error, "error_description": description}),
            no_store: true,
            authenticate,
        }
    }
}

/// The query of `GET I/callback`, or anything that arrives as `application/x-www-form-urlencoded`.
type Params = HashMap<String, String>;

/// At most this many parameters are read.
const MAX_PARAMS: usize = 64;
/// A parameter value is at most this long (a sealed state fits easily; a code of the upstream too).
const MAX_PARAM_CHARS: usize = super::seal::MAX_SEALED_CHARS;

/// Reads form-encoded parameters under the project's input rules: each name at most once
/// (RFC 6749 §3.1), valid UTF-8, no control characters, bounded sizes. The error names the
/// parameter, never its value.
pub fn params(encoded: &[u8]) -> Result<Params, String> {
    let mut out = Params::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        if out.len() >= MAX_PARAMS {
            return Err(format!("more than {MAX_PARAMS} parameters"));
        }
        let shown = name.chars().take(40).collect::<String>();
        // `parse` replaces invalid UTF-8 with U+FFFD; a value holding it was not valid text.
        let bad = |s: &str| s.chars().any(|c| c.is_control() || c == '\u{FFFD}');
        if bad(&name) {
            return Err("a parameter name is not valid text".into());
        }
        if bad(&value) {
            return Err(format!("parameter `{shown}` is not valid text"));
        }
        if value.len() > MAX_PARAM_CHARS {
            return Err(format!("parameter `{shown}` is too long"));
        }
        if out.insert(name.into_owned(), value.into_owned()).is_some() {
            return Err(format!(
                "parameter `{shown}` is sent more than once (RFC 6749 §3.1 allows each once)"
            ));
        }
    }
    Ok(out)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A PKCE value (verifier or S256 challenge): 43 to 128 unreserved characters (RFC 7636 §4.1).
fn pkce_shaped(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An `error_description` as it may travel in a redirect: no control characters, no `"` or
/// `\` (RFC 6749 §4.1.2.1), at most 500 characters.
fn description(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c => c,
        })
        .take(500)
        .collect()
}

/// Kratos's authorization request, carried through the upstream in the sealed state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

impl Request {
    /// The redirect to Kratos with `pairs` and Kratos's state.
    fn redirect(&self, pairs: &[(&str, &str)]) -> Answer {
        let mut url = Url::parse(&self.redirect_uri).expect("registered redirect URIs are URLs");
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            query.append_pair("state", &self.state);
        }
        Answer::Redirect(url.into())
    }

    fn error(&self, error: &str, text: &str) -> Answer {
        self.redirect(&[("error", error), ("error_description", &description(text))])
    }
}

/// The sealed `state` of the upstream authorization request.
#[derive(Serialize, Deserialize)]
struct State {
    request: Request,
    /// The PKCE verifier of the upstream request.
    verifier: String,
    /// The nonce the upstream's ID token must carry.
    nonce: String,
}

/// The sealed authorization code given to Kratos.
#[derive(Serialize, Deserialize)]
struct Code {
    /// Unique per code: what "used once" remembers.
    id: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    sub: String,
    auth_time: u64,
    standard: Map<String, Value>,
    identity: Value,
}

/// The sealed access token for userinfo.
#[derive(Serialize, Deserialize)]
struct Access {
    client_id: String,
    sub: String,
    standard: Map<String, Value>,
    identity: Value,
}

/// What the callback needs besides the request: the login use case and the token verifier.
pub struct Callback<'a, K> {
    pub logins: &'a Logins<K>,
    pub verifier: &'a TokenVerifier,
}

impl Hop {
    fn core(&self, provider: &str) -> Result<(&HopCore, &ProviderHop), Answer> {
        let core = self.core.as_ref().map_err(|off| Answer::page(404, off))?;
        let hop = core.providers.get(provider).ok_or_else(|| {
            Answer::page(
                404,
                format!(
                    "provider {} has no claims hop (no such provider, or no [hop] in its provider.toml)",
                    provider.chars().take(63).collect::<String>()
                ),
            )
        })?;
        Ok((core, hop))
    }

    /// `GET I/.well-known/openid-configuration`.
    pub fn discovery(&self, provider: &str) -> Answer {
        let (core, hop) = match self.core(provider) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let issuer = &hop.issuer;
        Answer::json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": core.keys.algorithms(),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified",
                "name", "given_name", "family_name", "kratos_jit_identity"
            ],
        }))
    }

    /// `GET I/jwks`.
    pub fn jwks(&self, provider: &str) -> Answer {
        match self.core(provider) {
            Ok((core, _)) => Answer::json(core.keys.jwks()),
            Err(answer) => answer,
        }
    }

    /// `GET I/authorize`.
    pub async fn authorize(&self, provider: &str, query: &[u8]) -> Answer {
        let (core, hop) = match self.core(provider) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let params = match params(query) {
            Ok(params) => params,
            Err(problem) => {
                return Answer::page(400, format!("The sign-in request is invalid: {problem}."));
            }
        };
        let get = |name: &str| params.get(name).map(String::as_str);
        // Until the redirect URI is known to be registered, nothing may be sent to it.
        match get("client_id") {
            None => {
                return Answer::page(
                    400,
                    "The sign-in request is invalid: `client_id` is missing.",
                );
            }
            Some(id) if id != hop.client_id => {
                return Answer::page(
                    400,
                    "The sign-in request is invalid: `client_id` is not the client registered for this provider.",
                );
            }
            Some(_) => {}
        }
        let redirect_uri = match get("redirect_uri") {
            None => {
                return Answer::page(
                    400,
                    "The sign-in request is invalid: `redirect_uri` is missing.",
                );
            }
            Some(uri) if !hop.redirect_uris.iter().any(|r| r == uri) => {
                return Answer::page(
                    400,
                    "The sign-in request is invalid: `redirect_uri` is not registered for this provider (it is compared exactly).",
                );
            }
            Some(uri) => uri.to_owned(),
        };
        let request = Request {
            client_id: hop.client_id.clone(),
            redirect_uri,
            state: get("state").unwrap_or_default().to_owned(),
            code_challenge: get("code_challenge").unwrap_or_default().to_owned(),
            scope: get("scope").unwrap_or_default().to_owned(),
            nonce: get("nonce").map(str::to_owned),
        };
        if request.state.is_empty() {
            return request.error("invalid_request", "The sign-in request has no state.");
        }
        if get("response_type") != Some("code") {
            return request.error(
                "unsupported_response_type",
                "Only the authorization code flow (response_type=code) is supported.",
            );
        }
        if !request.scope.split(' ').any(|s| s == "openid") {
            return request.error("invalid_scope", "The scope must include openid.");
        }
        if get("code_challenge_method") != Some("S256") || !pkce_shaped(&request.code_challenge) {
            return request.error(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256.",
            );
        }
        let discovery = match tokio::time::timeout(
            core.lifetimes.login_deadline,
            core.upstreams.discovery(&hop.token),
        )
        .await
        {
            Ok(Ok(discovery)) => discovery,
            Ok(Err(error)) => {
                tracing::warn!(message = "Hop: the upstream's discovery failed.", provider, %error);
                return request.error("temporarily_unavailable", UNAVAILABLE_UPSTREAM);
            }
            Err(_) => {
                tracing::warn!(
                    message = "Hop: the upstream's discovery timed out.",
                    provider
                );
                return request.error("temporarily_unavailable", UNAVAILABLE_UPSTREAM);
            }
        };
        let verifier = random_token();
        let nonce = random_token();
        let challenge = s256(&verifier);
        let passed: Vec<(&str, &str)> = [
            "login_hint",
            "prompt",
            "max_age",
            "ui_locales",
            "acr_values",
        ]
        .into_iter()
        .filter_map(|name| get(name).map(|v| (name, v)))
        .collect();
        let sealed = core.sealer.seal(
            Purpose::State,
            provider,
            unix_now() + core.lifetimes.state.as_secs(),
            State {
                request,
                verifier,
                nonce: nonce.clone(),
            },
        );
        let Ok(mut url) = Url::parse(&discovery.authorization_endpoint) else {
            return Answer::page(400, "The upstream's authorization endpoint is not a URL.");
        };
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &hop.upstream.client_id)
                .append_pair("redirect_uri", &hop.callback_url())
                .append_pair("scope", &hop.upstream.scopes.join(" "))
                .append_pair("state", &sealed)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("nonce", &nonce);
            for (name, value) in passed {
                query.append_pair(name, value);
            }
        }
        Answer::Redirect(url.into())
    }

    /// `GET I/callback`: the upstream sends the browser back here.
    pub async fn callback<K: KratosAdmin>(
        &self,
        provider: &str,
        query: &[u8],
        with: Callback<'_, K>,
    ) -> Answer {
        let (core, hop) = match self.core(provider) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let params = match params(query) {
            Ok(params) => params,
            Err(problem) => {
                return Answer::page(
                    400,
                    format!("The answer of the identity provider is invalid: {problem}."),
                );
            }
        };
        let Some(sealed) = params.get("state") else {
            return Answer::page(
                400,
                "The answer of the identity provider has no state; start the sign-in again.",
            );
        };
        let state: State = match core
            .sealer
            .open(Purpose::State, provider, sealed, unix_now())
        {
            Ok(state) => state,
            Err(error) => {
                tracing::info!(
                    message = "Hop: refused a callback state.",
                    provider,
                    error = seal_code(error)
                );
                let message = match error {
                    SealError::Expired => {
                        "The sign-in took too long and has expired; go back to the application and start it again."
                    }
                    SealError::Invalid => {
                        "The sign-in state is not one this service issued, or it was altered; go back to the application and start the sign-in again."
                    }
                };
                return Answer::page(400, message);
            }
        };
        let request = &state.request;
        if let Some(error) = params.get("error") {
            let error = oauth_error_code(error);
            let text = params.get("error_description").map_or_else(
                || "Your identity provider did not complete the sign-in.".to_owned(),
                |d| description(d),
            );
            tracing::info!(
                message = "Hop: the upstream returned an error.",
                provider,
                error = error.as_str()
            );
            return request.error(
                if error.is_empty() {
                    "access_denied"
                } else {
                    &error
                },
                &text,
            );
        }
        let Some(code) = params.get("code") else {
            return request.error(
                "invalid_request",
                "Your identity provider answered without a code.",
            );
        };
        let until = Instant::now() + core.lifetimes.login_deadline;
        let late = |step: &str| {
            tracing::warn!(
                message = "Hop: the sign-in ran out of time.",
                provider,
                step
            );
            request.error(
                "temporarily_unavailable",
                "Signing in took too long because a service did not answer in time. Nothing was changed; please try again in a moment.",
            )
        };
        let callback_url = hop.callback_url();
        let exchange = core.upstreams.exchange(
            &hop.token,
            &hop.upstream,
            code,
            &state.verifier,
            &callback_url,
        );
        let token = match tokio::time::timeout_at(until, exchange).await {
            Err(_) => return late("upstream_exchange"),
            Ok(Err(error @ UpstreamError::Unavailable(_))) => {
                tracing::warn!(message = "Hop: the upstream code exchange failed.", provider, %error);
                return request.error("temporarily_unavailable", UNAVAILABLE_UPSTREAM);
            }
            Ok(Err(UpstreamError::Refused { error })) => {
                tracing::info!(
                    message = "Hop: the upstream refused the code exchange.",
                    provider,
                    error = error.as_str()
                );
                return request.error(
                    "access_denied",
                    "Your identity provider did not confirm the sign-in. Please start again.",
                );
            }
            Ok(Ok(token)) => token,
        };
        let verified = match tokio::time::timeout_at(
            until,
            with.verifier.verify(provider, &hop.token, &token),
        )
        .await
        {
            Err(_) => return late("token_keys"),
            Ok(Err(error)) if error.is_unavailable() => {
                tracing::warn!(
                    message = "Hop: the upstream's keys are unavailable.",
                    provider,
                    token_error = error.code()
                );
                return request.error("temporarily_unavailable", UNAVAILABLE_UPSTREAM);
            }
            Ok(Err(error)) => {
                tracing::info!(
                    message = "Hop: refused the upstream's ID token.",
                    provider,
                    token_error = error.code()
                );
                return request.error("access_denied", UNVERIFIED);
            }
            Ok(Ok(claims)) => claims,
        };
        if verified.get("nonce").and_then(Value::as_str) != Some(state.nonce.as_str()) {
            tracing::info!(
                message = "Hop: refused the upstream's ID token.",
                provider,
                token_error = "nonce"
            );
            return request.error("access_denied", UNVERIFIED);
        }
        let claims = match crate::claims::kratos_claims(&verified) {
            Ok(claims) => claims,
            Err(error) => {
                tracing::info!(message = "Hop: the upstream's claims cannot be used.", provider, %error);
                return request.error("access_denied", &format!("Your identity provider sent a sign-in this application cannot use: {error}. Please contact your administrator."));
            }
        };
        let subject = match claims
            .get("sub")
            .and_then(Value::as_str)
            .map(Subject::parse)
        {
            Some(Ok(subject)) => subject,
            _ => {
                return request.error("access_denied", "Your identity provider sent an unusable account identifier. Please contact your administrator.");
            }
        };
        let Some(provider_ref) = with.logins.providers().get(provider) else {
            return Answer::page(404, "The provider is no longer configured.");
        };
        let budget = until.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return late("kratos");
        }
        let login = Login {
            entry: EntryPoint::Hop,
            provider: provider_ref,
            subject: subject.clone(),
            claims: (&claims).into(),
            current: Current::ByCredential,
            kratos_budget: budget,
            cleanup: vec![],
        };
        let outcome = match tokio::time::timeout_at(until, with.logins.run(login)).await {
            Err(_) => return late("kratos"),
            Ok(Err(LoginError::Audit(_))) => {
                return request.error("temporarily_unavailable", "The account service cannot record changes right now. Nothing was changed; please try again in a moment.");
            }
            Ok(Err(LoginError::Kratos(error))) if error.is_retryable() => {
                return request.error("temporarily_unavailable", "The account service is unavailable right now. Nothing was changed; please try again in a moment.");
            }
            Ok(Err(_)) => {
                return request.error("server_error", "The sign-in could not be completed because of a problem on our side. Nothing was changed; please try again later or contact your administrator.");
            }
            Ok(Ok(outcome)) => outcome,
        };
        let mapped = match (outcome.action, outcome.denial, outcome.mapped) {
            (Action::Denied, denial, _) => {
                let message = denial.map_or_else(
                    || "Your sign-in was refused.".to_owned(),
                    |d| d.user_message(),
                );
                return request.error("access_denied", &message);
            }
            (_, _, Some(mapped)) => mapped,
            (_, _, None) => {
                return request.error(
                    "server_error",
                    "The sign-in could not be completed. Please try again later.",
                );
            }
        };
        let now = unix_now();
        let sealed = core.sealer.seal(
            Purpose::Code,
            provider,
            now + core.lifetimes.code.as_secs(),
            Code {
                id: random_token(),
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                sub: subject.as_str().to_owned(),
                auth_time: now,
                standard: id_token::standard_claims(&verified),
                identity: id_token::identity_claim(&mapped),
            },
        );
        request.redirect(&[("code", &sealed)])
    }

    /// `POST I/token`: `authorization` is the `Authorization` header, `body` the form.
    pub fn token(&self, provider: &str, authorization: Option<&str>, body: &[u8]) -> Answer {
        let (core, hop) = match self.core(provider) {
            Ok(found) => found,
            Err(Answer::Page { status, message }) => {
                return Answer::oauth_error(status, "invalid_request", &message);
            }
            Err(answer) => return answer,
        };
        let form = match params(body) {
            Ok(form) => form,
            Err(problem) => {
                return Answer::oauth_error(
                    400,
                    "invalid_request",
                    &format!("the form is invalid: {problem}"),
                );
            }
        };
        // The client first: a failed attempt must leave the code usable for the retry.
        if let Err(answer) = authenticate(hop, authorization, &form) {
            tracing::info!(
                message = "Hop: refused a client at the token endpoint.",
                provider
            );
            return answer;
        }
        let get = |name: &str| form.get(name).map(String::as_str);
        if get("grant_type") != Some("authorization_code") {
            return Answer::oauth_error(
                400,
                "unsupported_grant_type",
                "only grant_type=authorization_code is supported",
            );
        }
        let invalid_grant = |why: &'static str| {
            tracing::info!(message = "Hop: refused a code.", provider, why);
            Answer::oauth_error(
                400,
                "invalid_grant",
                "the code is invalid, expired, already used, or was issued for another request",
            )
        };
        let Some(sealed) = get("code") else {
            return Answer::oauth_error(400, "invalid_request", "`code` is missing");
        };
        let code: Code = match core
            .sealer
            .open(Purpose::Code, provider, sealed, unix_now())
        {
            Ok(code) => code,
            Err(error) => return invalid_grant(seal_code(error)),
        };
        if code.client_id != hop.client_id {
            return invalid_grant("client_id");
        }
        if get("redirect_uri") != Some(code.redirect_uri.as_str()) {
            return invalid_grant("redirect_uri");
        }
        match get("code_verifier") {
            Some(verifier)
                if pkce_shaped(verifier)
                    && bool::from(
                        s256(verifier)
                            .as_bytes()
                            .ct_eq(code.code_challenge.as_bytes()),
                    ) => {}
            _ => return invalid_grant("code_verifier"),
        }
        // Consumed only now, atomically: of two concurrent exchanges, one wins.
        if !core
            .consumed
            .entry(code.id.clone())
            .or_insert(())
            .is_fresh()
        {
            return invalid_grant("replayed");
        }
        let now = unix_now();
        let lifetime = core.lifetimes.token.as_secs();
        let id_token = core.keys.sign(
            &Minted {
                issuer: &hop.issuer,
                audience: &hop.client_id,
                subject: &code.sub,
                now,
                lifetime_secs: lifetime,
                auth_time: code.auth_time,
                nonce: code.nonce.as_deref(),
                standard: &code.standard,
                identity: &code.identity,
            }
            .claims(),
        );
        let access_token = core.sealer.seal(
            Purpose::AccessToken,
            provider,
            now + lifetime,
            Access {
                client_id: code.client_id,
                sub: code.sub,
                standard: code.standard,
                identity: code.identity,
            },
        );
        Answer::Json {
            status: 200,
            body: json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "id_token": id_token,
            }),
            no_store: true,
            authenticate: None,
        }
    }

    /// `GET|POST I/userinfo` with `Authorization: Bearer <access token>`.
    pub fn userinfo(&self, provider: &str, authorization: Option<&str>) -> Answer {
        let (core, _) = match self.core(provider) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let token = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Answer::oauth_error(
                401,
                "invalid_token",
                "send the access token as Authorization: Bearer",
            );
        };
        match core
            .sealer
            .open::<Access>(Purpose::AccessToken, provider, token, unix_now())
        {
            Ok(access) => Answer::Json {
                status: 200,
                body: id_token::userinfo(&access.sub, &access.standard, &access.identity),
                no_store: true,
                authenticate: None,
            },
            Err(_) => Answer::oauth_error(
                401,
                "invalid_token",
                "the access token is invalid or expired",
            ),
        }
    }
}

const UNAVAILABLE_UPSTREAM: &str = "Your organisation's identity provider could not be reached. Nothing was changed; please try again in a moment.";
const UNVERIFIED: &str = "The answer of your organisation's identity provider could not be verified. Please start the sign-in again, or contact your administrator if this persists.";

fn seal_code(error: SealError) -> &'static str {
    match error {
        SealError::Invalid => "invalid",
        SealError::Expired => "expired",
    }
}

/// Client authentication at the token endpoint: client_secret_basic (id and secret
/// form-decoded, RFC 6749 §2.3.1) or client_secret_post, never both.
fn authenticate(
    hop: &ProviderHop,
    authorization: Option<&str>,
    form: &Params,
) -> Result<(), Answer> {
    let unauthorized =
        || Answer::oauth_error(401, "invalid_client", "client authentication failed");
    let basic = authorization
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim());
    let (id, secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(Answer::oauth_error(
                400,
                "invalid_request",
                "use one client authentication method, not both",
            ));
        }
        (Some(credentials), None) => {
            let decoded = STANDARD
                .decode(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(unauthorized)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
            let (id, secret) = (form_decode(id), form_decode(secret));
            if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                return Err(Answer::oauth_error(
                    400,
                    "invalid_request",
                    "the client_id in the form is not the authenticated client",
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => (
            form.get("client_id").cloned().unwrap_or_default(),
            secret.clone(),
        ),
        (None, None) => return Err(unauthorized()),
    };
    let id_ok = id.as_bytes().ct_eq(hop.client_id.as_bytes());
    let secret_ok = secret
        .as_bytes()
        .ct_eq(hop.client_secret.expose().as_bytes());
    if bool::from(id_ok & secret_ok) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space).
fn form_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_sent_twice_is_refused_by_name() {
        let error = params(b"state=a&state=b").unwrap_err();

        assert!(error.contains("`state` is sent more than once"), "{error}");
        assert!(!error.contains("a&"), "values are not repeated");
    }

    #[test]
    fn parameters_are_form_decoded() {
        let form = params(b"client_id=tenant%3Dacme%26product%3Dk&scope=openid+email").unwrap();

        assert_eq!(form["client_id"], "tenant=acme&product=k");
        assert_eq!(form["scope"], "openid email");
    }

    #[test]
    fn basic_credentials_are_form_decoded_like_golang_oauth2_encodes_them() {
        assert_eq!(form_decode("tenant%3Dacme%26p"), "tenant=acme&p");
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
    }

    #[test]
    fn descriptions_lose_what_a_redirect_may_not_carry() {
        assert_eq!(description("say \"hi\"\n\\"), "say 'hi'/");
    }

    #[test]
    fn pkce_values_have_the_rfc_7636_shape() {
        assert!(pkce_shaped(&s256("x")));
        assert!(!pkce_shaped("short"));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(50))));
    }
}
