//! [`IssuerSettings`]: how one provider's ID tokens are verified (its `[token]` table), and the
//! rules its values follow that the verifier relies on at every request: the transport rule for
//! issuer and key-set URLs ([`check_transport`]) and what a CA bundle must hold.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use reqwest::Url;

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

pub(super) fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
