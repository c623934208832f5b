//! What a SCIM provisioning hands to the login use case: the SCIM input its mapper sees, the
//! SCIM attribute that is the user's SSO subject, and what a SCIM `DELETE` does.
//!
//! The SCIM input mirrors Ory Network's SCIM data mapping (docs/scim.md §4): the SCIM User
//! resource as stored (core attributes, the enterprise extension under its URN key, `active`),
//! with `groups` replaced by the user's current memberships, each
//! `{value, display, displayName, externalId}` (`display` for mappers written for Ory's
//! `scim.groups[].display`, `displayName` and `externalId` as the Group resource names them).
//! A SCIM mapper reads it as `std.extVar('scim')`.
//!
//! Pure: no I/O, no dependency on the SCIM protocol code or the store. The service builds a
//! [`ScimInput`] from what it stored; `kratos-jit check` reads one from a `<case>.scim.json`.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::domain::ids::{InvalidSubject, Subject};

/// The SCIM attribute whose value is the user's SSO subject (`[scim] subject`): a SCIM-created
/// identity carries the OIDC credential `<provider>:<that value>`, so the user's first SSO
/// login finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScimSubject {
    /// `userName` (the default): what Okta's and Entra's SAML apps usually send as the NameID.
    #[default]
    UserName,
    /// `externalId`: the IdP's own user id (Okta's `00u…`, Entra's object id), which an OIDC
    /// connection puts in `sub`.
    ExternalId,
    /// The primary e-mail (`emails[primary eq true].value`, else the first e-mail's `value`).
    PrimaryEmail,
}

impl ScimSubject {
    /// The spellings `provider.toml` accepts.
    pub const NAMES: &'static [&'static str] = &["userName", "externalId", "email"];

    pub fn parse(name: &str) -> Option<ScimSubject> {
        match name {
            "userName" => Some(ScimSubject::UserName),
            "externalId" => Some(ScimSubject::ExternalId),
            "email" => Some(ScimSubject::PrimaryEmail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScimSubject::UserName => "userName",
            ScimSubject::ExternalId => "externalId",
            ScimSubject::PrimaryEmail => "email",
        }
    }
}

impl fmt::Display for ScimSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a SCIM `DELETE /Users/{id}` does to the Kratos identity (`[scim] on_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDelete {
    /// `state: inactive` and every session revoked (the default): reversible, and the
    /// application's data about the user survives. Okta never deletes users at all.
    #[default]
    Deactivate,
    /// The identity is deleted from Kratos, for good.
    Delete,
}

impl OnDelete {
    pub const NAMES: &'static [&'static str] = &["deactivate", "delete"];

    pub fn parse(name: &str) -> Option<OnDelete> {
        match name {
            "deactivate" => Some(OnDelete::Deactivate),
            "delete" => Some(OnDelete::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Deactivate => "deactivate",
            OnDelete::Delete => "delete",
        }
    }
}

/// One of the user's current group memberships, as the SCIM mapper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// The SCIM id of the group (kratos-jit's own group id).
    pub value: String,
    pub display_name: String,
    pub external_id: Option<String>,
}

impl ScimGroup {
    fn to_value(&self) -> Value {
        json!({
            "value": self.value,
            "display": self.display_name,
            "displayName": self.display_name,
            "externalId": self.external_id,
        })
    }
}

/// The value of `std.extVar('scim')`: a SCIM User resource with the user's memberships as
/// `groups`. Personal data: `Debug` shows nothing of it.
#[derive(Clone, PartialEq)]
pub struct ScimInput(Value);

/// Why a value cannot be a SCIM input (names the problem, never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidScimInput {
    #[error("a SCIM input must be a JSON object: the SCIM User resource")]
    NotAnObject,
    #[error(
        "`groups` must be a list of memberships, each an object with a string `value` (the group id)"
    )]
    Groups,
}

/// Why the SSO subject could not be read from a SCIM input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimSubjectError {
    #[error("the SCIM user has no {0} string, which this provider's [scim] subject names")]
    Missing(ScimSubject),
    #[error("the SCIM user's {attribute} cannot be an SSO subject: {problem}")]
    Invalid {
        attribute: ScimSubject,
        problem: InvalidSubject,
    },
}

impl fmt::Debug for ScimInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScimInput([redacted])")
    }
}

impl ScimInput {
    /// The input for `user` (the SCIM User resource as stored; any `groups` in it is replaced)
    /// and its current memberships, in the order given.
    pub fn new(mut user: Map<String, Value>, groups: &[ScimGroup]) -> ScimInput {
        user.retain(|key, _| !key.eq_ignore_ascii_case("groups"));
        user.insert(
            "groups".to_owned(),
            Value::Array(groups.iter().map(ScimGroup::to_value).collect()),
        );
        ScimInput(Value::Object(user))
    }

    /// An input written out in full (a `check` fixture): an object whose `groups`, when
    /// present, lists memberships with a string `value`. A missing `groups` reads as none.
    pub fn from_value(value: Value) -> Result<ScimInput, InvalidScimInput> {
        let Value::Object(mut user) = value else {
            return Err(InvalidScimInput::NotAnObject);
        };
        match user.get("groups") {
            None | Some(Value::Null) => {
                user.insert("groups".to_owned(), Value::Array(vec![]));
            }
            Some(Value::Array(groups))
                if groups
                    .iter()
                    .all(|g| g.get("value").is_some_and(Value::is_string)) => {}
            Some(_) => return Err(InvalidScimInput::Groups),
        }
        Ok(ScimInput(Value::Object(user)))
    }

    /// The value the mapper sees.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The SSO subject this input names, as `[scim] subject` says. Attribute names are
    /// case-insensitive (RFC 7643 §2.1); the value is taken exactly as sent.
    pub fn subject(&self, attribute: ScimSubject) -> Result<Subject, ScimSubjectError> {
        let text = match attribute {
            ScimSubject::UserName => self.string("userName"),
            ScimSubject::ExternalId => self.string("externalId"),
            ScimSubject::PrimaryEmail => self.primary_email(),
        };
        let text = text.ok_or(ScimSubjectError::Missing(attribute))?;
        Subject::parse(text).map_err(|problem| ScimSubjectError::Invalid { attribute, problem })
    }

    fn get(&self, name: &str) -> Option<&Value> {
        member(&self.0, name)
    }

    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `emails[primary eq true].value`, else the first e-mail's `value`. Entra may send
    /// `"primary": "True"` as a string.
    fn primary_email(&self) -> Option<&str> {
        let emails = self.get("emails")?.as_array()?;
        let primary = |e: &&Value| {
            member(e, "primary").is_some_and(|p| {
                p == &Value::Bool(true)
                    || p.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
            })
        };
        emails
            .iter()
            .filter(primary)
            .find_map(email_value)
            .or_else(|| emails.iter().find_map(email_value))
    }
}

fn email_value(email: &Value) -> Option<&str> {
    member(email, "value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The member `name` of an object, its name compared case-insensitively (RFC 7643 §2.1).
fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            panic!("an object")
        };
        map
    }

    #[test]
    fn the_input_replaces_the_resources_groups_with_the_memberships_in_every_spelling() {
        let input = ScimInput::new(
            user(json!({"userName": "ada@acme.example", "Groups": [{"value": "stale"}]})),
            &[ScimGroup {
                value: "g1".into(),
                display_name: "Acme-Admins".into(),
                external_id: None,
            }],
        );

        assert_eq!(
            input.as_value(),
            &json!({
                "userName": "ada@acme.example",
                "groups": [{"value": "g1", "display": "Acme-Admins", "displayName": "Acme-Admins", "externalId": null}],
            })
        );
    }

    #[test]
    fn the_subject_is_read_from_the_attribute_the_provider_names() {
        let input = ScimInput::from_value(json!({
            "UserName": "ada",
            "externalId": "00u1",
            "emails": [
                {"value": "other@acme.example"},
                {"value": "ada@acme.example", "primary": "True"},
            ],
        }))
        .unwrap();

        assert_eq!(
            input.subject(ScimSubject::UserName).unwrap().as_str(),
            "ada"
        );
        assert_eq!(
            input.subject(ScimSubject::ExternalId).unwrap().as_str(),
            "00u1"
        );
        assert_eq!(
            input.subject(ScimSubject::PrimaryEmail).unwrap().as_str(),
            "ada@acme.example"
        );
    }

    #[test]
    fn without_a_primary_e_mail_the_first_one_is_the_subject() {
        let input =
            ScimInput::from_value(json!({"emails": [{"type": "work"}, {"value": "b@x.example"}]}))
                .unwrap();

        assert_eq!(
            input.subject(ScimSubject::PrimaryEmail).unwrap().as_str(),
            "b@x.example"
        );
    }

    #[test]
    fn a_missing_or_unusable_subject_names_the_attribute_and_not_the_value() {
        let input = ScimInput::from_value(json!({"userName": "a\u{0}b"})).unwrap();

        let missing = input.subject(ScimSubject::ExternalId).unwrap_err();
        assert_eq!(missing, ScimSubjectError::Missing(ScimSubject::ExternalId));
        assert!(missing.to_string().contains("externalId"), "{missing}");
        let invalid = input
            .subject(ScimSubject::UserName)
            .unwrap_err()
            .to_string();
        assert!(invalid.contains("userName"), "{invalid}");
        assert!(!invalid.contains("a\u{0}b"), "{invalid}");
    }

    #[test]
    fn an_input_that_is_not_a_user_with_memberships_is_refused() {
        assert_eq!(
            ScimInput::from_value(json!([])),
            Err(InvalidScimInput::NotAnObject)
        );
        assert_eq!(
            ScimInput::from_value(json!({"groups": [{"display": "x"}]})),
            Err(InvalidScimInput::Groups)
        );
        let none = ScimInput::from_value(json!({"userName": "a"})).unwrap();
        assert_eq!(none.as_value()["groups"], json!([]));
    }

    #[test]
    fn debug_shows_nothing_of_the_user() {
        let input = ScimInput::from_value(json!({"userName": "ada@acme.example"})).unwrap();
        assert_eq!(format!("{input:?}"), "ScimInput([redacted])");
    }
}
