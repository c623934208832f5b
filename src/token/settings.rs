//! [`IssuerSettings`]: how one provider's ID tokens are verified, and the rules for its values
//! that the verifier applies too: the transport rule for URLs ([`check_transport`]) and what a CA
//! bundle must hold ([`load_ca_bundle`]).
//!
//! The provider loader builds these settings from `provider.toml`'s `[token]` and checks every
//! field there, once, reporting each problem with its file and line; `kratos-jit check` and
//! `serve` therefore refuse the same settings, and the verifier uses what the loader accepted as
//! it is. Three things can only be known at verification time and are checked then: the
//! `jwks_uri` a discovery document names (transport rule, issuer match), and the CA bundle, read
//! again when the verifier builds its HTTP client at the first fetch, since the file may have
//! changed since load (it then answers as the issuer being unavailable).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use reqwest::Url;

/// How one provider's ID tokens are verified (`[token]` in `provider.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The issuer identifier; the token's `iss` must equal it exactly.
    pub issuer: String,
    /// Accepted `aud` values (the client ids the issuer issues tokens for).
    pub audiences: Vec<String>,
    /// The JWKS location; `None` reads `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms ([`IssuerSettings::default_algorithms`]: RS256). Only
    /// asymmetric algorithms are valid: the loader refuses the others, and the verifier refuses
    /// `none` and HMAC tokens even when they are listed.
    pub algorithms: Vec<Algorithm>,
    /// PEM CA certificates trusted, besides the public roots, for the discovery and JWKS calls;
    /// the loader resolves it against the provider folder.
    pub ca_bundle: Option<PathBuf>,
    /// Claims the token must carry with one given value (`[[token.require]]`): what ties a token
    /// of a shared issuer (one bridge in front of several customers) to this provider, besides
    /// its audience.
    pub require: Vec<RequiredClaim>,
}

/// A claim an ID token must hold with exactly one value (`[[token.require]]`).
///
/// The claim is named by its path from the top of the payload, one element per object member,
/// so that claim names holding dots or slashes (SAML attribute URIs) need no escaping:
/// `["tid"]`, `["raw", "http://schemas.microsoft.com/identity/claims/tenantid"]`. The value must
/// be the string `equals`, or a list holding only that string (bridges such as SATOSA send every
/// SAML attribute as a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    pub path: Vec<String>,
    pub equals: String,
}

impl RequiredClaim {
    pub fn new(
        path: impl IntoIterator<Item = impl Into<String>>,
        equals: impl Into<String>,
    ) -> Self {
        RequiredClaim {
            path: path.into_iter().map(Into::into).collect(),
            equals: equals.into(),
        }
    }

    /// The path as errors and logs name it (configuration, never a token's value):
    /// `raw › http://…/tenantid`.
    pub fn name(&self) -> String {
        self.path.join(" › ")
    }
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
            require: Vec::new(),
        }
    }

    /// `[RS256]`, what OpenID Connect requires every provider to support.
    pub fn default_algorithms() -> Vec<Algorithm> {
        vec![Algorithm::RS256]
    }

    /// The allowed algorithms as errors list them: without HMAC ones, which are never accepted.
    pub(super) fn allowed_list(&self) -> String {
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

/// Only https, except plain http to a loopback address or name (test issuers, the local stack). The loader applies it to
/// `issuer` and `jwks_url`, the verifier to the `jwks_uri` of a discovery document.
pub(crate) fn check_transport(url: &Url) -> Result<(), &'static str> {
    let loopback = url.host_str().is_some_and(|host| {
        // `localhost` and every name under it are loopback names (RFC 6761 §6.3); the local
        // stack's containers use them (`polis.localhost`, `kratos-jit.localhost`).
        let lower = host.to_ascii_lowercase();
        lower == "localhost"
            || lower.ends_with(".localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(
            "must use https (plain http is accepted only for a loopback address or a name under localhost)",
        ),
    }
}

/// The certificates of a PEM bundle: at least one, or the problem (worded to follow the path).
pub(crate) fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    #[test]
    fn new_settings_allow_rs256_through_discovery_and_the_public_roots() {
        let settings = IssuerSettings::new("https://idp.example/oauth2/default", ["kratos-client"]);

        assert_eq!(settings.issuer, "https://idp.example/oauth2/default");
        assert_eq!(settings.audiences, ["kratos-client"]);
        assert_eq!(settings.algorithms, [Algorithm::RS256]);
        assert_eq!(settings.jwks_url, None);
        assert_eq!(settings.ca_bundle, None);
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback_addresses_and_names() {
        for ok in [
            "https://idp.example",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000",
            "http://polis.localhost:5225",
            "http://Kratos-JIT.LocalHost:4480",
        ] {
            let url = Url::parse(ok).unwrap();
            assert_eq!(check_transport(&url), Ok(()), "{ok}");
        }
        for refused in [
            "http://10.0.0.1",
            "http://idp.example",
            "http://localhost.idp.example",
            "http://polislocalhost",
            "ftp://localhost/keys",
        ] {
            let url = Url::parse(refused).unwrap();
            assert!(
                check_transport(&url).is_err_and(|problem| problem.starts_with("must use https")),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_ca_bundle_must_hold_at_least_one_pem_certificate() {
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "not a certificate").unwrap();

        assert!(load_ca_bundle(&test_key("test-ca.pem")).is_ok_and(|certs| !certs.is_empty()));
        assert_eq!(
            load_ca_bundle(not_pem.path()).unwrap_err(),
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        assert!(
            load_ca_bundle(Path::new("/nonexistent/ca.pem"))
                .is_err_and(|problem| problem.starts_with("cannot read it")),
        );
    }

    #[test]
    fn the_allowed_list_in_errors_never_offers_an_hmac_algorithm() {
        let mut settings = IssuerSettings::new("https://idp.example", ["c"]);
        settings.algorithms = vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

        assert_eq!(settings.allowed_list(), "RS256, ES256");
        settings.algorithms = vec![Algorithm::HS512];
        assert_eq!(settings.allowed_list(), "none");
    }
}
