//! The claims hop: kratos-jit, per provider P, as the OpenID Provider that Kratos's `generic`
//! provider signs in with, in front of the real bridge (Ory Polis, SATOSA) or OIDC IdP.
//!
//! Issuer I = `<hop.public_url>/hop/<P>`. The flow of one sign-in:
//!
//! 1. `GET I/authorize` — Kratos's request is checked (client id, exact registered redirect URI,
//!    `response_type=code`, `state`, PKCE S256). A problem found before the redirect URI is known
//!    to be registered is a 400 page naming it; after, an OAuth error redirect to Kratos. The
//!    browser then goes to the upstream's authorization endpoint with kratos-jit's own client id,
//!    PKCE S256, nonce and a sealed `state` that carries Kratos's request ([`seal`]): no
//!    server-side session, any replica with the same keys continues.
//! 2. `GET I/callback` — an upstream `error` is passed on to Kratos as the same OAuth error with
//!    Kratos's state. Otherwise, within `hop.login_deadline`: the code is exchanged
//!    ([`upstream`]), the ID token is verified by the one [`crate::token::TokenVerifier`] with the
//!    provider's `[token]` settings plus the nonce, the Kratos claims object is built
//!    ([`crate::claims::kratos_claims`]) and the login use case runs ([`crate::login::Logins::run`],
//!    [`crate::login::EntryPoint::Hop`]) — create, update, link or refuse — **before** Kratos gets
//!    a code. Allowed: a redirect with a sealed one-time code. Refused: `access_denied` with the
//!    denial's user message. Upstream or Kratos out of reach: `temporarily_unavailable` with a
//!    description the user can act on; never a 5xx page.
//! 3. `POST I/token` — the client is authenticated first (client_secret_basic with the
//!    RFC 6749 §2.3.1 form-encoding, or client_secret_post), so that Kratos's basic-then-post
//!    retry with the same code works; then grant type, code, redirect URI and PKCE verifier are
//!    checked and the code is consumed (single use in this process). The answer holds an ID
//!    token signed by the hop's key ([`id_token`]) and a sealed access token.
//! 4. `GET|POST I/userinfo` (Bearer access token) and `GET I/jwks`, and
//!    `GET I/.well-known/openid-configuration`.
//!
//! Without `hop.signing_keys` the hop is off and its routes answer 404 saying so; a provider
//! without `[hop]` has none. Logs name the provider, the step and an error code, never a code,
//! state, token, claim or secret.

mod flow;
pub mod id_token;
pub mod keys;
pub mod seal;
pub mod upstream;

use std::collections::HashMap;
use std::time::Duration;

pub use flow::{Answer, Callback};
pub use keys::{KeyAlgorithm, Signer, SigningKeys, generate};

use crate::config::Config;
use crate::provider::{Provider, Providers, SecretSource};
use crate::secret::Secret;
use crate::token::IssuerSettings;
use seal::Sealer;
use upstream::{UpstreamClient, Upstreams};

/// `serve --dev`: the embedded upstream double in place of every provider's upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct DevUpstream {
    /// The double's issuer URL; it replaces each hop provider's `[token]` issuer (and its
    /// JWKS location and CA bundle) for the hop.
    pub issuer: String,
    /// Values for the `client_secret_env` names, used when the variable is not set.
    pub secrets: Vec<(String, Secret)>,
    /// How the double signs: it replaces each hop provider's `[token] algorithms`.
    pub algorithm: KeyAlgorithm,
}

/// One provider's hop, its secrets resolved.
pub(crate) struct ProviderHop {
    /// I, exactly as discovery names it.
    issuer: String,
    client_id: String,
    client_secret: Secret,
    redirect_uris: Vec<String>,
    upstream: UpstreamClient,
    /// The upstream's issuer, as `[token]` describes it.
    token: IssuerSettings,
}

impl ProviderHop {
    fn callback_url(&self) -> String {
        format!("{}/callback", self.issuer)
    }
}

/// The hop's lifetimes and deadline.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    code: Duration,
    state: Duration,
    token: Duration,
    login_deadline: Duration,
}

pub(crate) struct HopCore {
    keys: SigningKeys,
    sealer: Sealer,
    providers: HashMap<String, ProviderHop>,
    lifetimes: Lifetimes,
    upstreams: Upstreams,
    /// Ids of the codes already exchanged in this process, kept past their expiry.
    consumed: moka::sync::Cache<String, ()>,
}

/// The hop, on or off.
pub struct Hop {
    core: Result<HopCore, String>,
}

impl Hop {
    /// Builds the hop from the configuration and the loaded providers, reading each hop
    /// provider's client secrets. Every missing secret is reported at once.
    pub fn new(config: &Config, providers: &Providers) -> Result<Hop, Vec<String>> {
        let hop = &config.hop;
        let Some(keys) = hop.signing_keys.clone() else {
            return Ok(Hop {
                core: Err("the claims hop is off: hop.signing_keys is not set".into()),
            });
        };
        let public_url = hop
            .public_url
            .clone()
            .expect("the configuration requires hop.public_url with signing keys");
        let mut errors = Vec::new();
        let mut hops = HashMap::new();
        for provider in providers {
            if let Some(built) = provider_hop(provider, &public_url, hop.dev.as_ref(), &mut errors)
            {
                hops.insert(provider.id.as_str().to_owned(), built);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Hop {
            core: Ok(HopCore {
                sealer: Sealer::new(&keys),
                keys,
                providers: hops,
                lifetimes: Lifetimes {
                    code: hop.code_ttl,
                    state: hop.state_ttl,
                    token: hop.token_ttl,
                    login_deadline: hop.login_deadline,
                },
                upstreams: Upstreams::default(),
                consumed: moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(hop.code_ttl + Duration::from_secs(60))
                    .build(),
            }),
        })
    }

    /// The hop's issuer for `provider`, if it has one.
    pub fn issuer(&self, provider: &str) -> Option<&str> {
        let core = self.core.as_ref().ok()?;
        core.providers.get(provider).map(|p| p.issuer.as_str())
    }

    /// `None` when the hop is off; else whether its signing key signs what its JWK set lets
    /// relying parties verify ([`SigningKeys::self_check`]), for readiness.
    pub fn key_check(&self) -> Option<Result<(), String>> {
        self.core.as_ref().ok().map(|core| core.keys.self_check())
    }

    /// Whether the hop is on (signing keys configured).
    pub fn is_on(&self) -> bool {
        self.core.is_ok()
    }
}

fn provider_hop(
    provider: &Provider,
    public_url: &str,
    dev: Option<&DevUpstream>,
    errors: &mut Vec<String>,
) -> Option<ProviderHop> {
    let settings = provider.settings.hop.as_ref()?;
    let mut token = provider
        .settings
        .token
        .clone()
        .expect("the provider loader refuses [hop] without [token]");
    if let Some(dev) = dev {
        token.issuer = dev.issuer.clone();
        token.jwks_url = None;
        token.ca_bundle = None;
        token.algorithms = vec![dev.algorithm.jwt()];
        if !token.audiences.contains(&settings.upstream.client_id) {
            token.audiences.push(settings.upstream.client_id.clone());
        }
    }
    let id = provider.id.as_str();
    let mut secret = |source: &SecretSource, what: &str, min_chars: usize| {
        let value = match source {
            SecretSource::Env(name) => std::env::var(name).ok().or_else(|| {
                dev.and_then(|d| d.secrets.iter().find(|(n, _)| n == name))
                    .map(|(_, s)| s.expose().to_owned())
            }),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|text| text.trim().to_owned()),
        };
        match value {
            Some(value) if value.chars().count() >= min_chars => Some(Secret::new(value)),
            Some(value) if !value.is_empty() => {
                errors.push(format!(
                    "provider {id}: {what} ({source}) is shorter than {min_chars} characters; use a long random value"
                ));
                None
            }
            _ => {
                errors.push(format!(
                    "provider {id}: {what} is not set: {source} is missing or empty"
                ));
                None
            }
        }
    };
    let client_secret = secret(&settings.client_secret, "[hop] client_secret", 16);
    let upstream_secret = secret(
        &settings.upstream.client_secret,
        "[hop.upstream] client_secret",
        1,
    );
    Some(ProviderHop {
        issuer: format!("{}/hop/{id}", public_url.trim_end_matches('/')),
        client_id: settings.client_id.clone(),
        client_secret: client_secret?,
        redirect_uris: settings.redirect_uris.clone(),
        upstream: UpstreamClient {
            client_id: settings.upstream.client_id.clone(),
            client_secret: upstream_secret?,
            auth: settings.upstream.token_endpoint_auth,
            scopes: settings.upstream.scopes.clone(),
        },
        token,
    })
}
