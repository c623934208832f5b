//! Who may call: the API's bearer secrets and the web hooks' secrets.
//!
//! Secrets are kept as SHA-256 digests and compared in constant time against every known one,
//! so neither timing nor length tells how close a guess was.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// A set of accepted secrets, kept as digests.
#[derive(Clone, Default)]
pub struct Secrets(Vec<[u8; 32]>);

impl Secrets {
    pub fn new(secrets: &[Secret]) -> Secrets {
        Secrets(secrets.iter().map(|s| digest(s.expose())).collect())
    }

    /// Whether `presented` is one of these secrets.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.0
            .iter()
            .fold(false, |found, k| found | bool::from(k.ct_eq(&presented)))
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The secret of an `Authorization: Bearer <secret>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, secret) = header?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
}

/// The secret Kratos's `web_hook` sends: an `api_key` header value (`Bearer <secret>` or the bare
/// secret) or `basic_auth` (any user, the secret as password).
pub fn hook_secret(header: Option<&str>) -> Option<String> {
    let value = header?;
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(rest.trim().to_owned())
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split_once(':')
                .map(|(_, password)| password.to_owned())
        }
        _ => Some(value.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_secrets_are_accepted() {
        let secrets = Secrets::new(&[Secret::new("first-secret-0123456789")]);
        assert!(secrets.accepts("first-secret-0123456789"));
        assert!(!secrets.accepts("first-secret-012345678"));
        assert!(!Secrets::default().accepts(""));
    }

    #[test]
    fn hook_secrets_come_as_bearer_bare_or_basic_password() {
        assert_eq!(hook_secret(Some("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(hook_secret(Some("abc")).as_deref(), Some("abc"));
        // "kratos:abc"
        assert_eq!(
            hook_secret(Some("Basic a3JhdG9zOmFiYw==")).as_deref(),
            Some("abc")
        );
        assert_eq!(hook_secret(Some("Basic !!")), None);
        assert_eq!(hook_secret(None), None);
    }

    #[test]
    fn the_api_takes_bearer_secrets_only() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
