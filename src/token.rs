//! ID token verification for `POST /v1/provision` (`{"provider": ID, "id_token": JWT}`).
//!
//! [`TokenVerifier::verify`] returns a token's claims only when all of these hold, and otherwise a
//! [`TokenError`] naming the check that failed:
//!
//! - the token is a compact JWS whose header `alg` is in the provider's allow-list; `none` and
//!   the HMAC algorithms (`HS*`) are refused whatever the settings say;
//! - its key comes from the issuer's JWKS (the discovery document's `jwks_uri`, or the configured
//!   `jwks_url`), chosen by `kid` (required when the set holds more than one signing key), and
//!   fits the algorithm: key type, curve, the key's own `alg` and `use`;
//! - the signature verifies;
//! - `iss` equals the configured issuer exactly and `aud` contains a configured audience;
//! - `exp` is present and not passed, `nbf` (if present) is not in the future, `iat` is present
//!   and not in the future, each with [`VerifierOptions::clock_skew`].
//!
//! Keys are cached per issuer. A token naming an unknown `kid` refreshes the set (at most once
//! per [`VerifierOptions::min_refresh_interval`]), so a key rotation at the issuer is picked up
//! without a restart; concurrent refreshes wait for one fetch; a set older than
//! [`VerifierOptions::max_key_age`] is fetched again, so a key the issuer withdrew stops
//! verifying. When the issuer cannot be reached, [`TokenError::is_unavailable`] says so.
//!
//! Errors never contain the token, nor claim values other than `iss`, `aud`, `kid` and `alg`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use reqwest::Url;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

/// Discovery documents and key sets larger than this are refused (Kratos reads at most 1 MiB).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Attacker-supplied strings (alg, kid, iss, aud) are cut to this many characters in errors.
const MAX_SHOWN_CHARS: usize = 100;

/// How one provider's ID tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The issuer identifier; the token's `iss` must equal it exactly.
    pub issuer: String,
    /// Accepted `aud` values (the client ids the issuer issues tokens for).
    pub audiences: Vec<String>,
    /// The JWKS location; `None` reads `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms ([`IssuerSettings::default_algorithms`]: RS256). Only
    /// asymmetric algorithms are valid.
    pub algorithms: Vec<Algorithm>,
    /// PEM CA certificates trusted, besides the public roots, for the discovery and JWKS calls.
    pub ca_bundle: Option<PathBuf>,
}

impl IssuerSettings {
    /// Settings with the default algorithms, discovery and the public CA roots.
    pub fn new(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        IssuerSettings {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            jwks_url: None,
            algorithms: Self::default_algorithms(),
            ca_bundle: None,
        }
    }

    /// `[RS256]`, what OpenID Connect requires every provider to support.
    pub fn default_algorithms() -> Vec<Algorithm> {
        vec![Algorithm::RS256]
    }

    /// Every problem with these settings, each naming its field; empty when they are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match Url::parse(&self.issuer) {
            Err(e) => problems.push(format!("issuer {:?} is not a URL ({e})", self.issuer)),
            Ok(url) => {
                if let Err(problem) = check_transport(&url) {
                    problems.push(format!("issuer {:?} {problem}", self.issuer));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    problems.push(format!(
                        "issuer {:?} must not have a query or fragment (OpenID Connect Discovery §2)",
                        self.issuer
                    ));
                }
            }
        }
        if self.audiences.is_empty() {
            problems.push(
                "audiences is empty: list the client id(s) the issuer puts in the ID token's `aud`"
                    .into(),
            );
        } else if self.audiences.iter().any(|a| a.trim().is_empty()) {
            problems.push("audiences contains an empty value".into());
        }
        if let Some(jwks_url) = &self.jwks_url {
            match Url::parse(jwks_url) {
                Err(e) => problems.push(format!("jwks_url {jwks_url:?} is not a URL ({e})")),
                Ok(url) => {
                    if let Err(problem) = check_transport(&url) {
                        problems.push(format!("jwks_url {jwks_url:?} {problem}"));
                    }
                }
            }
        }
        if self.algorithms.is_empty() {
            problems.push("algorithms is empty: allow at least one (the default is RS256)".into());
        }
        for alg in &self.algorithms {
            if alg.family() == AlgorithmFamily::Hmac {
                problems.push(format!(
                    "algorithm {alg:?} is a shared-secret (HMAC) algorithm: ID tokens must be verified \
                     with the issuer's public keys, so only RS*, PS*, ES* and EdDSA are allowed"
                ));
            }
        }
        if let Some(path) = &self.ca_bundle
            && let Err(problem) = load_ca_bundle(path)
        {
            problems.push(problem);
        }
        problems
    }

    fn allowed_list(&self) -> String {
        let allowed: Vec<String> = self
            .algorithms
            .iter()
            .filter(|alg| alg.family() != AlgorithmFamily::Hmac)
            .map(|alg| format!("{alg:?}"))
            .collect();
        if allowed.is_empty() {
            "none".into()
        } else {
            allowed.join(", ")
        }
    }
}

/// Only https, except plain http to a loopback address (test issuers). Provider settings are
/// checked with the same rule at load.
pub(crate) fn check_transport(url: &Url) -> Result<(), &'static str> {
    let loopback = url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must use https (plain http is accepted only for a loopback address)"),
    }
}

fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("ca_bundle {}: cannot read it ({e})", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "ca_bundle {}: not a PEM certificate bundle ({e})",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "ca_bundle {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Tunables of a [`TokenVerifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Allowance for clocks that disagree, applied to `exp`, `nbf` and `iat`. Default 60 s.
    pub clock_skew: Duration,
    /// Timeout of each discovery or JWKS request. Default 10 s.
    pub http_timeout: Duration,
    /// Minimum time between key-set refreshes triggered by an unknown `kid`, and between
    /// attempts after a failed fetch. Default 30 s; tests may use zero.
    pub min_refresh_interval: Duration,
    /// A cached key set older than this is fetched again before use. Default 1 hour.
    pub max_key_age: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            clock_skew: Duration::from_secs(60),
            http_timeout: Duration::from_secs(10),
            min_refresh_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(60 * 60),
        }
    }
}

/// Why an ID token was not accepted. Every variant but the two unavailability ones is the
/// token's fault (answer 401); see [`TokenError::is_unavailable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the ID token is unsigned (`alg: none`); only tokens signed by the issuer are accepted"
    )]
    Unsigned,
    #[error(
        "the ID token is signed with {alg:?}, a shared-secret (HMAC) algorithm; ID tokens must be \
         verified with the issuer's public keys, so HMAC is never accepted"
    )]
    SymmetricAlgorithm { alg: String },
    #[error(
        "the ID token is signed with {alg:?}, which this provider does not allow (allowed: {allowed})"
    )]
    AlgorithmNotAllowed { alg: String, allowed: String },
    #[error(
        "the ID token names no key (`kid`) and the issuer's key set holds {keys} signing keys, \
         so the key cannot be chosen"
    )]
    MissingKid { keys: usize },
    #[error(
        "the issuer's key set has no key {kid:?}, even after refreshing it: the token was not signed \
         by a key this issuer publishes"
    )]
    UnknownKid { kid: String },
    #[error("the issuer's key set holds no signing key")]
    NoSigningKey,
    #[error("the issuer's key {} cannot verify {alg}: {reason}", kid_label(kid))]
    KeyDoesNotFit {
        kid: Option<String>,
        alg: String,
        reason: String,
    },
    #[error(
        "the ID token's signature does not verify with the issuer's key {}",
        kid_label(kid)
    )]
    BadSignature { kid: Option<String> },
    #[error("the ID token has no `{claim}` claim, which is required")]
    MissingClaim { claim: &'static str },
    #[error("the ID token's `{claim}` claim is not {expected}")]
    InvalidClaim {
        claim: &'static str,
        expected: &'static str,
    },
    #[error(
        "the ID token expired {} ago (allowed clock skew: {})",
        human(ago),
        human(skew)
    )]
    Expired { ago: Duration, skew: Duration },
    #[error(
        "the ID token is not valid for another {} (`nbf`; allowed clock skew: {})",
        human(remaining),
        human(skew)
    )]
    NotYetValid { remaining: Duration, skew: Duration },
    #[error(
        "the ID token was issued {} in the future (`iat`; allowed clock skew: {}); check the clocks \
         of the issuer and of this host",
        human(ahead),
        human(skew)
    )]
    IssuedInFuture { ahead: Duration, skew: Duration },
    #[error("the ID token was issued by {got:?}, not by the configured issuer {expected:?}")]
    WrongIssuer { expected: String, got: String },
    #[error(
        "the ID token is meant for {got:?}, none of which is a configured audience {expected:?}"
    )]
    WrongAudience {
        expected: Vec<String>,
        got: Vec<String>,
    },
    /// The issuer's discovery document or key set could not be fetched or read.
    #[error("cannot load the issuer's signing keys from {url}: {reason}")]
    JwksUnavailable { url: String, reason: String },
    /// The discovery document is for another issuer: a configuration problem, not the token's.
    #[error(
        "the discovery document at {url} names issuer {got:?}, not the configured issuer {expected:?}; \
         fix the provider's issuer setting"
    )]
    DiscoveryIssuerMismatch {
        url: String,
        expected: String,
        got: String,
    },
}

impl TokenError {
    /// True when the token could not be checked because the issuer's keys are out of reach or
    /// misdescribed (answer 503 and retry later), false when the token itself was refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            TokenError::JwksUnavailable { .. } | TokenError::DiscoveryIssuerMismatch { .. }
        )
    }
}

fn kid_label(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!("{kid:?}"),
        None => "(without kid)".into(),
    }
}

fn human(duration: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(duration.as_secs()))
}

fn shown(untrusted: &str) -> String {
    if untrusted.chars().count() <= MAX_SHOWN_CHARS {
        untrusted.to_owned()
    } else {
        let mut cut: String = untrusted.chars().take(MAX_SHOWN_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// Verifies ID tokens against their issuers' published keys. Share one behind an `Arc`: it
/// holds the key caches and one HTTP client per CA bundle.
pub struct TokenVerifier {
    options: VerifierOptions,
    clients: Mutex<HashMap<Option<PathBuf>, reqwest::Client>>,
    sources: Mutex<HashMap<SourceKey, Arc<KeySource>>>,
}

/// Where a key set comes from; providers sharing all three share the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SourceKey {
    issuer: String,
    jwks_url: Option<String>,
    ca_bundle: Option<PathBuf>,
}

struct KeySource {
    key: SourceKey,
    /// The current set, read without waiting for a fetch in progress.
    current: Mutex<Option<Arc<KeySet>>>,
    /// Held across the network calls of a fetch, so concurrent refreshes become one.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    discovered_jwks_url: Option<String>,
    last_kid_refresh: Option<Instant>,
    last_failure: Option<(Instant, TokenError)>,
}

struct KeySet {
    /// Increases with every successful fetch; tells a waiting refresh that it has been done.
    generation: u64,
    fetched_at: Instant,
    keys: Vec<VerificationKey>,
}

#[derive(Clone)]
struct VerificationKey {
    kid: Option<String>,
    jwk: Jwk,
    decoding: DecodingKey,
}

enum Selection<'a> {
    Found(&'a VerificationKey),
    UnknownKid,
    MissingKid(usize),
    Empty,
}

impl KeySet {
    fn select(&self, kid: Option<&str>) -> Selection<'_> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .map_or(Selection::UnknownKid, Selection::Found),
            None => match self.keys.as_slice() {
                [] => Selection::Empty,
                [only] => Selection::Found(only),
                many => Selection::MissingKid(many.len()),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Initial,
    Stale,
    UnknownKid,
}

impl KeySource {
    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(options: VerifierOptions) -> Self {
        TokenVerifier {
            options,
            clients: Mutex::default(),
            sources: Mutex::default(),
        }
    }

    /// Verifies `token` for the provider `provider_id` (used in logs) and returns its claims.
    pub async fn verify(
        &self,
        provider_id: &str,
        settings: &IssuerSettings,
        token: &str,
    ) -> Result<Map<String, Value>, TokenError> {
        let header = parse_header(token)?;
        let alg = allowed_algorithm(settings, &header.alg)?;
        let source = self.source_for(settings);
        let key = self
            .signing_key(&source, provider_id, header.kid.as_deref())
            .await?;
        check_fit(&key, alg).map_err(|reason| TokenError::KeyDoesNotFit {
            kid: key.kid.clone(),
            alg: format!("{alg:?}"),
            reason,
        })?;
        let claims = verify_signature(token, &key, alg)?;
        check_claims(&claims, settings, self.options.clock_skew, unix_now())?;
        Ok(claims)
    }

    fn source_for(&self, settings: &IssuerSettings) -> Arc<KeySource> {
        let key = SourceKey {
            issuer: settings.issuer.clone(),
            jwks_url: settings.jwks_url.clone(),
            ca_bundle: settings.ca_bundle.clone(),
        };
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(KeySource {
                    key,
                    current: Mutex::new(None),
                    fetch: tokio::sync::Mutex::new(FetchState::default()),
                })
            })
            .clone()
    }

    async fn signing_key(
        &self,
        source: &KeySource,
        provider: &str,
        kid: Option<&str>,
    ) -> Result<VerificationKey, TokenError> {
        let set = match source.snapshot() {
            Some(set) if set.fetched_at.elapsed() < self.options.max_key_age => set,
            Some(stale) => {
                self.refresh(source, provider, Refresh::Stale, Some(&stale))
                    .await?
            }
            None => {
                self.refresh(source, provider, Refresh::Initial, None)
                    .await?
            }
        };
        match set.select(kid) {
            Selection::Found(key) => return Ok(key.clone()),
            Selection::MissingKid(keys) => return Err(TokenError::MissingKid { keys }),
            Selection::UnknownKid | Selection::Empty => {}
        }
        let set = self
            .refresh(source, provider, Refresh::UnknownKid, Some(&set))
            .await?;
        match set.select(kid) {
            Selection::Found(key) => Ok(key.clone()),
            Selection::MissingKid(keys) => Err(TokenError::MissingKid { keys }),
            Selection::UnknownKid => Err(TokenError::UnknownKid {
                kid: shown(kid.unwrap_or_default()),
            }),
            Selection::Empty => Err(TokenError::NoSigningKey),
        }
    }

    /// Fetches the key set again unless another caller just did (then its result is used), a
    /// `kid` refresh happened within the minimum interval, or the last fetch failed within it.
    async fn refresh(
        &self,
        source: &KeySource,
        provider: &str,
        reason: Refresh,
        seen: Option<&Arc<KeySet>>,
    ) -> Result<Arc<KeySet>, TokenError> {
        let mut state = source.fetch.lock().await;
        let current = source.snapshot();
        if let Some(current) = &current
            && seen.is_none_or(|seen| seen.generation != current.generation)
        {
            return Ok(current.clone());
        }

        let now = Instant::now();
        let interval = self.options.min_refresh_interval;
        if let Some((failed_at, error)) = &state.last_failure
            && now.duration_since(*failed_at) < interval
        {
            // Back off from an issuer that just failed rather than pile requests onto it.
            return match (reason, current) {
                (Refresh::Stale, Some(current)) => Ok(current),
                _ => Err(error.clone()),
            };
        }
        if reason == Refresh::UnknownKid {
            if let Some(refreshed_at) = state.last_kid_refresh
                && now.duration_since(refreshed_at) < interval
                && let Some(current) = current
            {
                // Random kids must not turn into a request flood against the issuer.
                debug!(
                    message = "Unknown kid; key set refreshed too recently to refresh again.",
                    provider,
                    issuer = %source.key.issuer,
                );
                return Ok(current);
            }
            state.last_kid_refresh = Some(now);
        }

        match self.fetch_keys(source, &mut state).await {
            Ok(keys) => {
                let set = Arc::new(KeySet {
                    generation: current.as_ref().map_or(1, |c| c.generation + 1),
                    fetched_at: Instant::now(),
                    keys,
                });
                *source
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
                state.last_failure = None;
                info!(
                    message = "Loaded the issuer's signing keys.",
                    provider,
                    issuer = %source.key.issuer,
                    keys = set.keys.len(),
                    reason = ?reason,
                );
                Ok(set)
            }
            Err(error) => {
                warn!(
                    message = "Failed to load the issuer's signing keys.",
                    provider,
                    issuer = %source.key.issuer,
                    %error,
                );
                state.last_failure = Some((Instant::now(), error.clone()));
                match (reason, current) {
                    // Availability over freshness: keep verifying with the keys we have.
                    (Refresh::Stale, Some(current)) => Ok(current),
                    _ => Err(error),
                }
            }
        }
    }

    async fn fetch_keys(
        &self,
        source: &KeySource,
        state: &mut FetchState,
    ) -> Result<Vec<VerificationKey>, TokenError> {
        let origin = source.key.jwks_url.as_deref().unwrap_or(&source.key.issuer);
        let client = self
            .client_for(source.key.ca_bundle.as_deref())
            .map_err(|reason| TokenError::JwksUnavailable {
                url: origin.to_owned(),
                reason,
            })?;
        let jwks_url = match (&source.key.jwks_url, &state.discovered_jwks_url) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover(&client, &source.key.issuer).await?;
                state.discovered_jwks_url = Some(url.clone());
                url
            }
        };
        let fetched = match self.get_json(&client, &jwks_url).await {
            Ok(document) => parse_keys(&document, &source.key.issuer),
            Err(reason) => Err(reason),
        };
        fetched.map_err(|reason| {
            // The issuer may have moved its key set: read the discovery document again next time.
            state.discovered_jwks_url = None;
            TokenError::JwksUnavailable {
                url: jwks_url,
                reason,
            }
        })
    }

    async fn discover(&self, client: &reqwest::Client, issuer: &str) -> Result<String, TokenError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let unavailable = |reason: String| TokenError::JwksUnavailable {
            url: url.clone(),
            reason,
        };
        let document = self.get_json(client, &url).await.map_err(unavailable)?;
        let Some(named) = document.get("issuer").and_then(Value::as_str) else {
            return Err(unavailable("the discovery document names no issuer".into()));
        };
        if named != issuer {
            return Err(TokenError::DiscoveryIssuerMismatch {
                url: url.clone(),
                expected: issuer.to_owned(),
                got: shown(named),
            });
        }
        let Some(jwks_uri) = document.get("jwks_uri").and_then(Value::as_str) else {
            return Err(unavailable("the discovery document has no jwks_uri".into()));
        };
        let parsed = Url::parse(jwks_uri)
            .map_err(|e| unavailable(format!("its jwks_uri is not a URL ({e})")))?;
        check_transport(&parsed)
            .map_err(|problem| unavailable(format!("its jwks_uri {problem}")))?;
        Ok(jwks_uri.to_owned())
    }

    async fn get_json(&self, client: &reqwest::Client, url: &str) -> Result<Value, String> {
        let describe = |error: reqwest::Error| {
            if error.is_timeout() {
                return format!("no answer within {}", human(&self.options.http_timeout));
            }
            let error = error.without_url();
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            text
        };
        let mut response = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("it answered HTTP {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the answer is larger than {} KiB",
                    MAX_DOCUMENT_BYTES / 1024
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON ({e})"))
    }

    fn client_for(&self, ca_bundle: Option<&Path>) -> Result<reqwest::Client, String> {
        let key = ca_bundle.map(Path::to_path_buf);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .timeout(self.options.http_timeout)
            .connect_timeout(self.options.http_timeout)
            .user_agent(concat!("kratos-jit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_bundle {
            for certificate in load_ca_bundle(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build an HTTP client ({e})"))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Keeps the keys that can verify signatures; skips the others with a log line.
fn parse_keys(document: &Value, issuer: &str) -> Result<Vec<VerificationKey>, String> {
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err("the answer is not a JWK set (no `keys` list)".into());
    };
    let mut keys = Vec::with_capacity(entries.len());
    for entry in entries {
        let kid = entry.get("kid").and_then(Value::as_str).map(shown);
        let jwk: Jwk = match serde_json::from_value(entry.clone()) {
            Ok(jwk) => jwk,
            Err(error) => {
                warn!(message = "Skipping an unreadable JWK.", issuer, kid = ?kid, %error);
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        match jwk.algorithm {
            AlgorithmParameters::RSA(_)
            | AlgorithmParameters::EllipticCurve(_)
            | AlgorithmParameters::OctetKeyPair(_) => {}
            // A symmetric ("oct") key in a key set is never trusted: anyone who can read the
            // set could sign tokens with it.
            _ => {
                debug!(message = "Skipping a JWK that is not a public signing key.", issuer, kid = ?kid);
                continue;
            }
        }
        match DecodingKey::from_jwk(&jwk) {
            Ok(decoding) => keys.push(VerificationKey {
                kid: jwk.common.key_id.clone(),
                jwk,
                decoding,
            }),
            Err(error) => {
                warn!(message = "Skipping a JWK with unusable key material.", issuer, kid = ?kid, %error);
            }
        }
    }
    Ok(keys)
}

/// The key must be able to verify `alg`: right type and curve, and its own `alg`/`use`, when
/// the issuer declares them, must agree.
fn check_fit(key: &VerificationKey, alg: Algorithm) -> Result<(), String> {
    match &key.jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("its `use` is not `sig`".into()),
    }
    if let Some(declared) = key.jwk.common.key_algorithm {
        match Algorithm::from_str(&declared.to_string()) {
            Ok(declared) if declared == alg => {}
            Ok(declared) => return Err(format!("the issuer publishes it for {declared:?} only")),
            Err(_) => {
                return Err(format!(
                    "the issuer publishes it for {declared}, not for signatures"
                ));
            }
        }
    }
    match (&key.jwk.algorithm, alg.family()) {
        (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa) => Ok(()),
        (AlgorithmParameters::EllipticCurve(ec), AlgorithmFamily::Ec) => match (&ec.curve, alg) {
            (EllipticCurve::P256, Algorithm::ES256) | (EllipticCurve::P384, Algorithm::ES384) => {
                Ok(())
            }
            (curve, _) => Err(format!("it is an EC key on curve {curve:?}")),
        },
        (AlgorithmParameters::OctetKeyPair(okp), AlgorithmFamily::Ed)
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Ok(())
        }
        (AlgorithmParameters::RSA(_), _) => Err("it is an RSA key".into()),
        (AlgorithmParameters::EllipticCurve(_), _) => Err("it is an EC key".into()),
        (AlgorithmParameters::OctetKeyPair(okp), _) => {
            Err(format!("it is an OKP key on curve {:?}", okp.curve))
        }
        _ => Err("it is not a public signing key".into()),
    }
}

struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// Reads the header ourselves: jsonwebtoken refuses `alg: none` and unknown algorithms while
/// parsing, which would hide the algorithm from the error an operator sees.
fn parse_header(token: &str) -> Result<TokenHeader, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(TokenError::Malformed(
                "it is an encrypted token (JWE); the issuer must send a signed ID token",
            ));
        }
        _ => {
            return Err(TokenError::Malformed(
                "it is not three base64url parts separated by dots",
            ));
        }
    }
    let bytes = base64url_decode(parts[0])
        .ok_or(TokenError::Malformed("its header is not base64url-encoded"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("its header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(TokenError::Malformed("its `alg` header is not a string")),
        None => {
            return Err(TokenError::Malformed(
                "its header names no algorithm (`alg`)",
            ));
        }
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("its `kid` header is not a string")),
    };
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "it marks header parameters as critical (`crit`), which this verifier does not support",
        ));
    }
    // Keys named by the token itself (`jwk`, `jku`, `x5u`, `x5c`) are ignored on purpose: only
    // the configured issuer's key set is trusted.
    Ok(TokenHeader { alg, kid })
}

fn allowed_algorithm(settings: &IssuerSettings, alg: &str) -> Result<Algorithm, TokenError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::Unsigned);
    }
    let not_allowed = || TokenError::AlgorithmNotAllowed {
        alg: shown(alg),
        allowed: settings.allowed_list(),
    };
    let parsed = Algorithm::from_str(alg).map_err(|_| not_allowed())?;
    // Refused even when listed: with an HMAC algorithm, the issuer's *public* key would become
    // the secret, and anyone could sign with it (algorithm confusion).
    if parsed.family() == AlgorithmFamily::Hmac {
        return Err(TokenError::SymmetricAlgorithm { alg: shown(alg) });
    }
    if !settings.algorithms.contains(&parsed) {
        return Err(not_allowed());
    }
    Ok(parsed)
}

fn verify_signature(
    token: &str,
    key: &VerificationKey,
    alg: Algorithm,
) -> Result<Map<String, Value>, TokenError> {
    let mut validation = Validation::new(alg);
    // jsonwebtoken checks only the signature here; the claims are checked afterwards, with
    // reasons an operator can act on.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|error| {
            let unfit = |reason: &str| TokenError::KeyDoesNotFit {
                kid: key.kid.clone(),
                alg: format!("{alg:?}"),
                reason: reason.into(),
            };
            match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature {
                    kid: key.kid.clone(),
                },
                ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidKeyFormat => unfit("its key material is invalid"),
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    unfit("it is not a key for this algorithm")
                }
                _ => {
                    TokenError::Malformed("its payload or signature is not base64url-encoded JSON")
                }
            }
        })
}

fn check_claims(
    claims: &Map<String, Value>,
    settings: &IssuerSettings,
    skew: Duration,
    now: f64,
) -> Result<(), TokenError> {
    match claims.get("iss") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim { claim: "iss" }),
        Some(Value::String(iss)) if *iss == settings.issuer => {}
        Some(Value::String(iss)) => {
            return Err(TokenError::WrongIssuer {
                expected: settings.issuer.clone(),
                got: shown(iss),
            });
        }
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "iss",
                expected: "a string",
            });
        }
    }

    let invalid_aud = TokenError::InvalidClaim {
        claim: "aud",
        expected: "a string or a list of strings",
    };
    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim { claim: "aud" }),
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(invalid_aud.clone()))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid_aud),
    };
    if !audiences
        .iter()
        .any(|aud| settings.audiences.iter().any(|ours| ours == aud))
    {
        return Err(TokenError::WrongAudience {
            expected: settings.audiences.clone(),
            got: audiences.iter().take(10).map(|aud| shown(aud)).collect(),
        });
    }

    let slack = skew.as_secs_f64();
    let exp = numeric(claims, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
    if now >= exp + slack {
        return Err(TokenError::Expired {
            ago: seconds(now - exp),
            skew,
        });
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && nbf > now + slack
    {
        return Err(TokenError::NotYetValid {
            remaining: seconds(nbf - now),
            skew,
        });
    }
    let iat = numeric(claims, "iat")?.ok_or(TokenError::MissingClaim { claim: "iat" })?;
    if iat > now + slack {
        return Err(TokenError::IssuedInFuture {
            ahead: seconds(iat - now),
            skew,
        });
    }
    Ok(())
}

fn numeric(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<f64>, TokenError> {
    let invalid = TokenError::InvalidClaim {
        claim,
        expected: "a number of seconds since 1970",
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(invalid),
        Some(_) => Err(invalid),
    }
}

fn seconds(value: f64) -> Duration {
    // `as` saturates: absurd timestamps give a huge duration, never a panic.
    Duration::from_secs(value.max(0.0).round() as u64)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unpadded base64url (RFC 7515 §2), for the header only; jsonwebtoken decodes the rest.
fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in input.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A lone trailing character, or non-zero padding bits, is not canonical base64url.
    (bits < 6 && buffer == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decoding_matches_rfc_4648_test_vectors() {
        let cases = [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE", "fooba"),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(
                base64url_decode(encoded).as_deref(),
                Some(decoded.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    }

    #[test]
    fn base64url_decoding_refuses_padding_other_alphabets_and_lone_characters() {
        for bad in ["Zg==", "+/8", "Z", "Zm9vY", "Zh"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn settings_validation_reports_every_problem_at_once() {
        let settings = IssuerSettings {
            issuer: "http://idp.example/?tenant=1".into(),
            audiences: vec![],
            jwks_url: Some("not a url".into()),
            algorithms: vec![Algorithm::HS256, Algorithm::RS256, Algorithm::HS512],
            ca_bundle: Some("/nonexistent/ca.pem".into()),
        };

        let problems = settings.validate();

        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(problems[0].contains("must use https"));
        assert!(problems[1].contains("query or fragment"));
        assert!(problems[2].starts_with("audiences is empty"));
        assert!(problems[3].starts_with("jwks_url"));
        assert!(problems[4].starts_with("algorithm HS256 is a shared-secret (HMAC) algorithm"));
        assert!(problems[5].starts_with("algorithm HS512"));
        assert!(problems[6].starts_with("ca_bundle /nonexistent/ca.pem: cannot read it"));
    }

    #[test]
    fn default_settings_for_an_https_issuer_are_valid() {
        let settings = IssuerSettings::new("https://idp.example/oauth2/default", ["kratos-client"]);

        assert_eq!(settings.algorithms, [Algorithm::RS256]);
        assert_eq!(settings.validate(), Vec::<String>::new());
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback_issuers() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000",
        ] {
            assert!(IssuerSettings::new(ok, ["c"]).validate().is_empty(), "{ok}");
        }
        assert_eq!(
            IssuerSettings::new("http://10.0.0.1", ["c"])
                .validate()
                .len(),
            1
        );
    }

    #[test]
    fn time_errors_say_how_far_off_the_token_is() {
        let skew = Duration::from_secs(60);
        let expired = TokenError::Expired {
            ago: Duration::from_secs(3725),
            skew,
        };

        assert_eq!(
            expired.to_string(),
            "the ID token expired 1h 2m 5s ago (allowed clock skew: 1m)"
        );
    }

    #[test]
    fn only_issuer_trouble_is_a_503_class_error() {
        let down = TokenError::JwksUnavailable {
            url: "https://idp/jwks".into(),
            reason: "x".into(),
        };

        assert!(down.is_unavailable());
        assert!(!TokenError::BadSignature { kid: None }.is_unavailable());
        assert!(!TokenError::UnknownKid { kid: "k".into() }.is_unavailable());
    }

    #[test]
    fn attacker_supplied_strings_are_cut_short_in_errors() {
        let long = "a".repeat(10_000);
        let err = allowed_algorithm(&IssuerSettings::new("https://idp", ["c"]), &long).unwrap_err();

        assert!(err.to_string().len() < 400, "{err}");
    }
}
