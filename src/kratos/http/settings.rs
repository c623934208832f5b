//! [`KratosSettings`]: how to reach the Kratos admin API, and every check those settings need,
//! made once, for the configuration (which reports them with every other problem) and for
//! [`super::HttpKratos::new`].

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::secret::Secret;

/// How to reach the Kratos admin API: the one settings type, read by the configuration
/// (`[kratos]`) and used by the adapter.
#[derive(Clone, PartialEq)]
pub struct KratosSettings {
    /// Base URL of the admin API, e.g. `http://kratos:4434` (self-hosted) or
    /// `https://<slug>.projects.oryapis.com` (Ory Network); a path prefix is kept.
    pub admin_url: String,
    /// Sent as `Authorization: Bearer …` (Ory Network API keys).
    pub bearer_token: Option<Secret>,
    /// Username and password for a reverse proxy guarding a self-hosted admin API, which has no
    /// authentication of its own.
    pub basic_auth: Option<(String, Secret)>,
    /// Limit for one attempt, from connecting until the whole answer is read.
    pub request_timeout: Duration,
    /// Limit for a whole operation, retries and waits included.
    pub deadline: Duration,
    /// Attempts after the first one, for failures worth retrying.
    pub max_retries: u32,
}

impl Default for KratosSettings {
    fn default() -> Self {
        KratosSettings {
            admin_url: "http://127.0.0.1:4434".to_owned(),
            bearer_token: None,
            basic_auth: None,
            request_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            max_retries: 2,
        }
    }
}

impl KratosSettings {
    /// Every problem with these settings, all at once (empty when they are usable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match Url::parse(self.admin_url.trim()) {
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push(format!(
                        "admin_url must be an http or https URL, not {}:",
                        url.scheme()
                    ));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problems.push(
                        "admin_url must not embed credentials; use basic_auth instead".to_owned(),
                    );
                }
                if url.query().is_some() || url.fragment().is_some() {
                    problems.push("admin_url must not have a query or fragment".to_owned());
                }
            }
            Err(error) => problems.push(format!("admin_url is not a URL ({error})")),
        }
        match (&self.bearer_token, &self.basic_auth) {
            (Some(_), Some(_)) => {
                problems.push("set either bearer_token or basic_auth, not both: each is sent as the Authorization header".to_owned());
            }
            (Some(token), None) => {
                if token.expose().trim().is_empty() {
                    problems.push("bearer_token is empty".to_owned());
                } else if HeaderValue::from_str(&format!("Bearer {}", token.expose())).is_err() {
                    problems.push(
                        "bearer_token contains characters not allowed in an HTTP header".to_owned(),
                    );
                }
            }
            (None, Some((username, _))) => {
                if username.contains(':') {
                    problems.push("the basic_auth username must not contain ':'".to_owned());
                }
            }
            (None, None) => {}
        }
        if self.request_timeout.is_zero() {
            problems.push("request_timeout must be greater than zero".to_owned());
        }
        if self.deadline.is_zero() {
            problems.push("deadline must be greater than zero".to_owned());
        }
        problems
    }
}

impl fmt::Debug for KratosSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `new` refuses credentials inside admin_url, but settings are printed before that check.
        let admin_url = match Url::parse(&self.admin_url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("[redacted]"));
                url.to_string()
            }
            _ => self.admin_url.clone(),
        };
        f.debug_struct("KratosSettings")
            .field("admin_url", &admin_url)
            .field("bearer_token", &self.bearer_token)
            .field("basic_auth", &self.basic_auth)
            .field("request_timeout", &self.request_timeout)
            .field("deadline", &self.deadline)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// Why [`super::HttpKratos::new`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid Kratos admin API settings: {}", .problems.join("; "))]
    Invalid { problems: Vec<String> },
    #[error("could not build the HTTP client for the Kratos admin API")]
    Client(#[source] reqwest::Error),
}
