//! The identifiers of the domain, each parsed once where it enters and typed from then on.
//!
//! - [`ProviderId`]: a Kratos OIDC provider id, the name of a folder under `mappers/`;
//! - [`Subject`]: the IdP's `sub` for one user, the second half of the OIDC credential;
//! - [`TenantId`]: a tenant of the application (the `tenant_id` trait);
//! - [`IdentityId`]: a Kratos identity id (a UUID).
//!
//! A subject and a tenant id are personal or customer data: their `Debug` output is redacted,
//! so a stray `?field` in a log line cannot leak them. [`Subject::tag`] is the form logs carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A Kratos OIDC provider id: 1 to 63 characters of `a-z`, `0-9`, `-` and `_`, starting with a
/// letter or digit. It appears in Kratos's callback URLs and in identity credentials, so it is
/// kept to characters that need no escaping anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

/// Why a string is not a [`ProviderId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "\"{id}\" is not a valid provider id: {problem}; a provider id is 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
)]
pub struct InvalidProviderId {
    pub id: String,
    pub problem: &'static str,
}

impl ProviderId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProviderId {
    type Err = InvalidProviderId;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let problem = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > 63 {
            Some("it is longer than 63 characters")
        } else if id.bytes().any(|b| b.is_ascii_uppercase()) {
            Some("it contains upper-case letters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            Some("it contains characters other than a-z, 0-9, '-' and '_'")
        } else if !id.as_bytes()[0].is_ascii_alphanumeric() {
            Some("it starts with '-' or '_'")
        } else {
            None
        };
        match problem {
            // Never echo an invalid id: it came from a request and may be anything.
            Some(problem) => Err(InvalidProviderId {
                id: id.chars().take(64).collect(),
                problem,
            }),
            None => Ok(ProviderId(id.to_owned())),
        }
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ProviderId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ProviderId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ProviderId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The IdP's subject (`sub`) of one user: 1 to [`Subject::MAX_CHARS`] characters, none of them
/// a control character. Personal data: `Debug` is redacted and logs carry [`Subject::tag`]
/// instead.
///
/// Kratos stores the OIDC credential identifier `<provider-id>:<subject>` (docs/kratos.md §3.10)
/// in a column of 255 characters (`identity_credential_identifiers.identifier VARCHAR (255)`,
/// Kratos's migration `20191100000001000004_identities`, unchanged since), and a provider id
/// has at most 63: a subject of at most 191 characters fits with every provider. A longer one
/// would fail inside Kratos's database.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

/// Why a value is not a [`Subject`]. The value itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSubject {
    #[error("the subject (`sub`) is empty")]
    Empty,
    #[error(
        "the subject (`sub`) is longer than {} characters, the most a Kratos OIDC credential \
         identifier (`<provider>:<subject>`, at most 255 characters) can hold with any provider",
        Subject::MAX_CHARS
    )]
    TooLong,
    #[error("the subject (`sub`) contains a control character")]
    ControlCharacter,
}

impl Subject {
    /// The longest subject: 255 characters of a credential identifier, less a provider id of
    /// 63 characters and the `:` between them.
    pub const MAX_CHARS: usize = 255 - 63 - 1;

    pub fn parse(value: impl Into<String>) -> Result<Subject, InvalidSubject> {
        let value = value.into();
        if value.is_empty() {
            return Err(InvalidSubject::Empty);
        }
        // Bytes bound characters from above: a short string is never counted.
        if value.len() > Self::MAX_CHARS && value.chars().count() > Self::MAX_CHARS {
            return Err(InvalidSubject::TooLong);
        }
        // Control characters have no place in an identifier, and PostgreSQL cannot store NUL.
        if value.chars().any(char::is_control) {
            return Err(InvalidSubject::ControlCharacter);
        }
        Ok(Subject(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible tag of this subject of `provider`, for logs.
    pub fn tag(&self, provider: &ProviderId) -> SubjectTag {
        let digest = Sha256::digest(format!("{provider}:{}", self.0).as_bytes());
        SubjectTag(hex::encode(&digest[..6]))
    }
}

impl TryFrom<String> for Subject {
    type Error = InvalidSubject;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Subject::parse(value)
    }
}

impl From<Subject> for String {
    fn from(subject: Subject) -> String {
        subject.0
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subject([redacted])")
    }
}

/// The log-safe tag of a subject: 12 hex digits of SHA-256 over `provider:subject`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectTag(String);

impl fmt::Display for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant of the application, as the `tenant_id` trait names it. Customer data: `Debug` is
/// redacted; `Display` shows it (for the caller's answer and the operator's own configuration).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn new(id: impl Into<String>) -> TenantId {
        TenantId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TenantId {
    fn from(id: &str) -> TenantId {
        TenantId(id.to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantId([redacted])")
    }
}

/// A Kratos identity id. Kratos ids are UUIDs, so anything else is refused where it enters
/// (a hook body, a path): an id in a log line can then never carry a forged line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityId(uuid::Uuid);

/// Why a string is not an [`IdentityId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Kratos identity id (a UUID)")]
pub struct InvalidIdentityId;

impl IdentityId {
    pub fn new(id: uuid::Uuid) -> IdentityId {
        IdentityId(id)
    }

    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl FromStr for IdentityId {
    type Err = InvalidIdentityId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s)
            .map(IdentityId)
            .map_err(|_| InvalidIdentityId)
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_lower_case_letters_digits_dashes_and_underscores() {
        assert!("okta-acme".parse::<ProviderId>().is_ok());
        assert!("okta_acme2".parse::<ProviderId>().is_ok());
        for bad in [
            "",
            "Okta",
            "-okta",
            "okta acme",
            "okta\nacme",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<ProviderId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_subject_fits_a_kratos_credential_identifier_with_the_longest_provider_id() {
        let longest_provider = "p".repeat(63);
        assert!(longest_provider.parse::<ProviderId>().is_ok());
        let longest = Subject::parse("s".repeat(Subject::MAX_CHARS)).unwrap();
        assert_eq!(
            format!("{longest_provider}:{}", longest.as_str()).len(),
            255
        );
        assert_eq!(
            Subject::parse("s".repeat(Subject::MAX_CHARS + 1)),
            Err(InvalidSubject::TooLong)
        );
        // Characters, not bytes: Kratos's column counts characters.
        assert!(Subject::parse("é".repeat(Subject::MAX_CHARS)).is_ok());
        assert_eq!(
            Subject::parse("é".repeat(Subject::MAX_CHARS + 1)),
            Err(InvalidSubject::TooLong)
        );
    }

    #[test]
    fn a_subject_has_no_control_characters() {
        for bad in ["a\nb", "a\u{0}b", "\u{7f}", "a\u{85}"] {
            assert_eq!(
                Subject::parse(bad),
                Err(InvalidSubject::ControlCharacter),
                "{bad:?}"
            );
        }
        assert!(Subject::parse("ada@acme.example|00u1 x").is_ok());
    }

    #[test]
    fn a_subject_is_never_empty_and_never_shows_itself_in_debug_output() {
        assert_eq!(Subject::parse(""), Err(InvalidSubject::Empty));
        let subject = Subject::parse("ada@acme.example").unwrap();
        assert!(!format!("{subject:?}").contains("ada"));
    }

    #[test]
    fn a_subject_tag_is_stable_and_depends_on_the_provider() {
        let subject = Subject::parse("00u1").unwrap();
        let acme: ProviderId = "okta-acme".parse().unwrap();
        let other: ProviderId = "okta-other".parse().unwrap();
        assert_eq!(subject.tag(&acme), subject.tag(&acme));
        assert_ne!(subject.tag(&acme), subject.tag(&other));
        assert_eq!(subject.tag(&acme).to_string().len(), 12);
    }

    #[test]
    fn identity_ids_are_uuids_and_nothing_else() {
        let id: IdentityId = "9f425a8d-7e24-4b9b-a3e3-2b8d5e2c2f10".parse().unwrap();
        assert_eq!(id.to_string(), "9f425a8d-7e24-4b9b-a3e3-2b8d5e2c2f10");
        for bad in ["", "x", "9f425a8d-7e24-4b9b-a3e3-2b8d5e2c2f10\nforged"] {
            assert!(bad.parse::<IdentityId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tenant_ids_are_redacted_in_debug_output() {
        assert!(!format!("{:?}", TenantId::new("tenant-acme")).contains("acme"));
    }
}
