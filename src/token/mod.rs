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
//! - every required claim ([`RequiredClaim`], `[[token.require]]`) holds its expected value:
//!   with the audience, what ties a token to one provider when several providers share one
//!   issuer (one bridge, one connection per customer) — a token of another provider is refused
//!   here, in the one function every entry point verifies with ([`TokenError::OtherProvider`]);
//! - `exp` is present and not passed, `nbf` (if present) is not in the future, `iat` is present
//!   and not in the future, each with [`VerifierOptions::clock_skew`].
//!
//! Keys are cached per issuer. A token naming an unknown `kid` refreshes the set (at most once
//! per [`VerifierOptions::min_refresh_interval`]), so a key rotation at the issuer is picked up
//! without a restart; concurrent refreshes wait for one fetch; a set older than
//! [`VerifierOptions::max_key_age`] is fetched again, so a key the issuer withdrew stops
//! verifying. When the issuer cannot be reached, [`TokenError::is_unavailable`] says so.
//!
//! Errors never contain the token, nor claim values other than `iss`, `aud`, `kid` and `alg`
//! (a required claim is named, its value never shown).
//!
//! Inside: `settings` holds what a provider configures ([`IssuerSettings`]), `keys` the issuers'
//! key sets (fetching, caching, refreshing), `verify` the checks of one token.

mod keys;
mod settings;
mod verify;

use std::time::Duration;

use serde_json::{Map, Value};

pub use settings::{IssuerSettings, RequiredClaim};
pub(crate) use settings::{check_transport, load_ca_bundle};

use keys::KeyCache;

/// Attacker-supplied strings (alg, kid, iss, aud) are cut to this many characters in errors.
const MAX_SHOWN_CHARS: usize = 100;

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
    /// The header or the payload breaks the rules every JSON input meets
    /// ([`crate::domain::input`]): a duplicate claim, too deep, a number out of range, …
    #[error("the ID token's {part} is refused: {error}")]
    Json {
        part: &'static str,
        error: crate::domain::input::InputError,
    },
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
    /// A `[[token.require]]` claim is missing or holds another value: a token the shared issuer
    /// minted for another provider. Names the claim (configuration), never the value.
    #[error(
        "the ID token's claim `{claim}` {problem}, so the token does not belong to this provider \
         (it was issued for another connection of the same issuer; see [[token.require]])"
    )]
    OtherProvider {
        claim: String,
        problem: &'static str,
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
    /// A stable code for logs: the reason's words may quote the token's own claims (`iss`,
    /// `aud`, `kid`), which are the caller's data.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Json { .. } => "invalid_json",
            TokenError::Unsigned => "unsigned",
            TokenError::SymmetricAlgorithm { .. } => "symmetric_algorithm",
            TokenError::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            TokenError::MissingKid { .. } => "missing_kid",
            TokenError::UnknownKid { .. } => "unknown_kid",
            TokenError::NoSigningKey => "no_signing_key",
            TokenError::KeyDoesNotFit { .. } => "key_does_not_fit",
            TokenError::BadSignature { .. } => "bad_signature",
            TokenError::MissingClaim { .. } => "missing_claim",
            TokenError::InvalidClaim { .. } => "invalid_claim",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::IssuedInFuture { .. } => "issued_in_future",
            TokenError::WrongIssuer { .. } => "wrong_issuer",
            TokenError::WrongAudience { .. } => "wrong_audience",
            TokenError::OtherProvider { .. } => "other_provider",
            TokenError::JwksUnavailable { .. } => "jwks_unavailable",
            TokenError::DiscoveryIssuerMismatch { .. } => "discovery_issuer_mismatch",
        }
    }

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
    keys: KeyCache,
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
            keys: KeyCache::new(options),
        }
    }

    /// Verifies `token` for the provider `provider_id` (used in logs) and returns its claims.
    pub async fn verify(
        &self,
        provider_id: &str,
        settings: &IssuerSettings,
        token: &str,
    ) -> Result<Map<String, Value>, TokenError> {
        let header = verify::parse_header(token)?;
        let alg = verify::allowed_algorithm(settings, &header.alg)?;
        let key = self
            .keys
            .signing_key(settings, provider_id, header.kid.as_deref())
            .await?;
        verify::check_fit(&key, alg).map_err(|reason| TokenError::KeyDoesNotFit {
            kid: key.kid.clone(),
            alg: format!("{alg:?}"),
            reason,
        })?;
        let claims = verify::verify_signature(token, &key, alg)?;
        verify::check_claims(
            &claims,
            settings,
            self.options.clock_skew,
            verify::unix_now(),
        )?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
