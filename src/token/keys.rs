//! The issuers' signing keys: [`KeyCache::signing_key`] returns the key a token names, from the
//! issuer's JWKS (the discovery document's `jwks_uri`, or the configured `jwks_url`).
//!
//! Key sets are cached per source (issuer, `jwks_url`, CA bundle) and fetched on first use. A
//! `kid` the set lacks refreshes it, at most once per `min_refresh_interval`; concurrent refreshes
//! wait for one fetch; a set older than `max_key_age` is fetched again, and kept in use if the
//! issuer cannot be reached; a failed fetch is not retried within `min_refresh_interval`. Only
//! public signing keys are kept: symmetric, encryption and unreadable keys are skipped. Each CA
//! bundle gets one HTTP client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use reqwest::Url;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::settings::{IssuerSettings, check_transport, load_ca_bundle};
use super::{TokenError, VerifierOptions, human, shown};

/// Discovery documents and key sets larger than this are refused (Kratos reads at most 1 MiB).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Every issuer's key set, and one HTTP client per CA bundle.
pub(super) struct KeyCache {
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

/// A public key of an issuer's set, with the JWK it was read from (its `alg`, `use` and curve
/// decide which algorithms it may verify).
#[derive(Clone)]
pub(super) struct VerificationKey {
    pub(super) kid: Option<String>,
    pub(super) jwk: Jwk,
    pub(super) decoding: DecodingKey,
    /// The same public key for `ring`, which verifies it several times faster; `None` where
    /// `ring` cannot (Ed25519 JWKs, RSA moduli outside 2048–8192 bits, unusual exponents), and
    /// `jsonwebtoken` verifies.
    pub(super) ring: Option<RingKey>,
}

/// A public key in the form `ring` verifies with.
#[derive(Clone)]
pub(super) enum RingKey {
    /// Modulus and exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 ‖ x ‖ y` of a P-256 or P-384 key.
    Ec { point: Vec<u8> },
}

impl RingKey {
    fn of(jwk: &Jwk) -> Option<RingKey> {
        let decode = |text: &str| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text).ok()
        };
        let trimmed = |mut bytes: Vec<u8>| {
            let zeros = bytes.iter().take_while(|b| **b == 0).count();
            bytes.drain(..zeros);
            bytes
        };
        match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = trimmed(decode(&rsa.n)?);
                let e = trimmed(decode(&rsa.e)?);
                let bits = n.len() * 8 - n.first()?.leading_zeros() as usize;
                // ring's bounds: 2048–8192-bit moduli, odd exponents from 3 below 2^33.
                let exponent = e.iter().try_fold(0u64, |acc, b| {
                    (acc < 1 << 40).then(|| (acc << 8) | u64::from(*b))
                })?;
                ((2048..=8192).contains(&bits)
                    && (3..1 << 33).contains(&exponent)
                    && exponent % 2 == 1)
                    .then_some(RingKey::Rsa { n, e })
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let size = match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => 32,
                    jsonwebtoken::jwk::EllipticCurve::P384 => 48,
                    _ => return None,
                };
                let (x, y) = (decode(&ec.x)?, decode(&ec.y)?);
                if x.len() != size || y.len() != size {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Some(RingKey::Ec { point })
            }
            _ => None,
        }
    }
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

impl KeyCache {
    pub(super) fn new(options: VerifierOptions) -> Self {
        KeyCache {
            options,
            clients: Mutex::default(),
            sources: Mutex::default(),
        }
    }

    /// The key of `settings`' issuer that `kid` names (or its only key, without a `kid`), for
    /// the provider `provider` (used in logs).
    pub(super) async fn signing_key(
        &self,
        settings: &IssuerSettings,
        provider: &str,
        kid: Option<&str>,
    ) -> Result<VerificationKey, TokenError> {
        let source = self.source_for(settings);
        self.select_key(&source, provider, kid).await
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

    async fn select_key(
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
        crate::timing::waiting(self.fetch_json(client, url)).await
    }

    async fn fetch_json(&self, client: &reqwest::Client, url: &str) -> Result<Value, String> {
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
        let request = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        // The request's W3C trace goes on to the IdP (src/trace.rs).
        let mut response = crate::trace::propagate(request)
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
            let certificates = load_ca_bundle(path)
                .map_err(|problem| format!("ca_bundle {}: {problem}", path.display()))?;
            for certificate in certificates {
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
                ring: RingKey::of(&jwk),
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn rsa_jwk(modulus_bytes: usize, e: &[u8]) -> Jwk {
        let mut n = vec![0xc5; modulus_bytes];
        n[modulus_bytes - 1] |= 1;
        serde_json::from_value(json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        }))
        .unwrap()
    }

    #[test]
    fn ring_verifies_the_keys_it_supports_and_leaves_the_others_to_jsonwebtoken() {
        assert!(matches!(
            RingKey::of(&rsa_jwk(256, &[1, 0, 1])),
            Some(RingKey::Rsa { n, .. }) if n.len() == 256
        ));
        // A leading zero byte in `n` is not part of the modulus' size.
        let mut padded = rsa_jwk(256, &[1, 0, 1]);
        if let AlgorithmParameters::RSA(rsa) = &mut padded.algorithm {
            let mut n = vec![0];
            n.extend(URL_SAFE_NO_PAD.decode(&rsa.n).unwrap());
            rsa.n = URL_SAFE_NO_PAD.encode(n);
        }
        assert!(matches!(RingKey::of(&padded), Some(RingKey::Rsa { n, .. }) if n.len() == 256));
        assert!(
            RingKey::of(&rsa_jwk(128, &[1, 0, 1])).is_none(),
            "1024 bits"
        );
        assert!(
            RingKey::of(&rsa_jwk(256, &[2])).is_none(),
            "an even exponent"
        );
        assert!(
            RingKey::of(&rsa_jwk(256, &[1; 6])).is_none(),
            "an exponent of 2^41"
        );

        let ec = |crv: &str, size: usize| -> Jwk {
            serde_json::from_value(json!({
                "kty": "EC", "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(vec![7; size]),
                "y": URL_SAFE_NO_PAD.encode(vec![9; size]),
            }))
            .unwrap()
        };
        match RingKey::of(&ec("P-256", 32)) {
            Some(RingKey::Ec { point }) => {
                assert_eq!(point.len(), 65);
                assert_eq!((point[0], point[1], point[64]), (4, 7, 9));
            }
            _ => panic!("a P-256 key is ring's"),
        }
        assert!(
            matches!(RingKey::of(&ec("P-384", 48)), Some(RingKey::Ec { point }) if point.len() == 97)
        );
        assert!(
            RingKey::of(&ec("P-256", 31)).is_none(),
            "a short coordinate"
        );
        let okp: Jwk = serde_json::from_value(json!({
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32]),
        }))
        .unwrap();
        assert!(RingKey::of(&okp).is_none());
    }
}
