//! Validation of mapped traits against Kratos identity schemas, before anything is written.
//!
//! [`IdentitySchemas`] holds one compiled validator per schema id: the built-in `default`
//! (`deploy/kratos/identity.schema.json`, embedded in the binary) and any configured with
//! [`IdentitySchemas::load`]. Every schema is compiled once, at start.
//!
//! [`IdentitySchemas::validate_traits`] promises the answer Kratos would give when the identity
//! is written: Kratos validates the whole identity schema document against `{"traits": traits}`,
//! so that is what is validated here, with formats (`email`, ...) asserted. Kratos's own
//! `ory.sh/kratos` extension keywords are accepted and play no part in validation.
//!
//! A [`SchemaError::Invalid`] names every failing field as a JSON pointer into that document
//! (`/traits/role`). Messages never repeat the offending value: traits are personal data, and these
//! errors end up in logs and in the denial shown to users.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::{Value, json};

/// The id of the built-in schema, and the one provider folders use unless they say otherwise.
pub const DEFAULT_SCHEMA_ID: &str = "default";

const DEFAULT_SCHEMA: &str = include_str!("../deploy/kratos/identity.schema.json");

/// Compiled identity schemas by schema id.
pub struct IdentitySchemas {
    validators: BTreeMap<String, Validator>,
}

impl fmt::Debug for IdentitySchemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentitySchemas")
            .field("ids", &self.validators.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why traits were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "identity schema \"{0}\" is not configured; configure it or use schema_id = \"default\""
    )]
    UnknownSchema(String),
    #[error("the traits do not match identity schema \"{schema_id}\": {}", join(.violations))]
    Invalid {
        schema_id: String,
        /// Every failing field, sorted by pointer.
        violations: Vec<Violation>,
    },
}

/// One failing field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into `{"traits": ...}`, e.g. `/traits/role`.
    pub pointer: String,
    /// What the schema requires there, without the offending value.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl IdentitySchemas {
    /// Only the built-in `default` schema.
    pub fn builtin() -> Self {
        let schema: Value =
            serde_json::from_str(DEFAULT_SCHEMA).expect("the embedded default schema is JSON");
        let validator = compile(&schema).expect("the embedded default schema compiles");
        IdentitySchemas {
            validators: BTreeMap::from([(DEFAULT_SCHEMA_ID.to_owned(), validator)]),
        }
    }

    /// The built-in `default` plus the configured `(schema id, file)` entries; an entry named
    /// `default` replaces the built-in one. Reports every unusable entry, each naming its file.
    pub fn load(entries: &[(String, PathBuf)]) -> Result<Self, Vec<String>> {
        let mut schemas = Self::builtin();
        let mut configured = BTreeMap::new();
        let mut errors = Vec::new();
        for (id, path) in entries {
            let shown = path.display();
            if id.trim().is_empty() {
                errors.push(format!("identity schema {shown}: the schema id is empty"));
                continue;
            }
            if let Some(first) = configured.insert(id.as_str(), path) {
                errors.push(format!(
                    "identity schema \"{id}\" is configured twice ({} and {shown}); give each schema its own id",
                    first.display()
                ));
                continue;
            }
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    errors.push(format!(
                        "identity schema \"{id}\" ({shown}): cannot read it ({e})"
                    ));
                    continue;
                }
            };
            let schema: Value = match serde_json::from_str(&text) {
                Ok(schema) => schema,
                Err(e) => {
                    errors.push(format!(
                        "identity schema \"{id}\" ({shown}): not JSON ({e})"
                    ));
                    continue;
                }
            };
            if !schema
                .pointer("/properties/traits")
                .is_some_and(Value::is_object)
            {
                errors.push(format!(
                    "identity schema \"{id}\" ({shown}): has no `properties.traits` object, which is where Kratos reads the traits schema from"
                ));
                continue;
            }
            match compile(&schema) {
                Ok(validator) => {
                    schemas.validators.insert(id.clone(), validator);
                }
                Err(e) => errors.push(format!(
                    "identity schema \"{id}\" ({shown}): not a valid JSON Schema ({})",
                    e.masked()
                )),
            }
        }
        if errors.is_empty() {
            Ok(schemas)
        } else {
            Err(errors)
        }
    }

    /// Whether `schema_id` can be validated against.
    pub fn contains(&self, schema_id: &str) -> bool {
        self.validators.contains_key(schema_id)
    }

    /// The configured schema ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }

    /// Checks `traits` as Kratos will when the identity is written under `schema_id`.
    pub fn validate_traits(&self, schema_id: &str, traits: &Value) -> Result<(), SchemaError> {
        let validator = self
            .validators
            .get(schema_id)
            .ok_or_else(|| SchemaError::UnknownSchema(schema_id.to_owned()))?;
        let identity = json!({ "traits": traits });
        let mut violations: Vec<Violation> = validator
            .iter_errors(&identity)
            .flat_map(violations)
            .collect();
        if violations.is_empty() {
            return Ok(());
        }
        violations.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.message.cmp(&b.message)));
        violations.dedup();
        Err(SchemaError::Invalid {
            schema_id: schema_id.to_owned(),
            violations,
        })
    }
}

impl Default for IdentitySchemas {
    fn default() -> Self {
        Self::builtin()
    }
}

fn compile(schema: &Value) -> Result<Validator, ValidationError<'static>> {
    // Kratos asserts formats (an invalid `email` is refused), unlike the JSON Schema default.
    jsonschema::options()
        .should_validate_formats(true)
        .with_format("email", is_email)
        .build(schema)
}

/// `format: email` as Kratos checks it: its validator ends with Go's `net/mail.ParseAddress`,
/// which accepts UTF-8 in the local part (RFC 6532), so `zoë@acme.example` is valid there —
/// and must be here, or an internationalised user could never be provisioned. The domain must
/// be a host name (labels of letters, digits and hyphens, UTF-8 allowed, no empty label).
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if s.len() > 254
        || local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || domain.len() > 253
    {
        return false;
    }
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let local_ok = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    local_ok && domain.split('.').all(label_ok)
}

/// The failing fields behind one validator error. `required` and `additionalProperties` are
/// reported by the validator at the parent object; they are moved to the field they name.
fn violations(error: ValidationError<'_>) -> Vec<Violation> {
    let at = error.instance_path().as_str().to_owned();
    let violation = |pointer: String, message: String| Violation { pointer, message };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            vec![violation(
                child(&at, &name),
                "is required but missing".into(),
            )]
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => unexpected
            .iter()
            .map(|name| violation(child(&at, name), "is not a field of this schema".into()))
            .collect(),
        ValidationErrorKind::Enum { options } => {
            vec![violation(at, format!("must be one of {}", one_of(options)))]
        }
        ValidationErrorKind::Constant { expected_value } => {
            vec![violation(at, format!("must be {expected_value}"))]
        }
        ValidationErrorKind::Format { format } => {
            vec![violation(at, format!("must be a valid \"{format}\""))]
        }
        ValidationErrorKind::Type {
            kind: TypeKind::Single(expected),
        } => vec![violation(at, format!("must be of type {expected}"))],
        ValidationErrorKind::Pattern { pattern } => {
            vec![violation(at, format!("must match the pattern {pattern}"))]
        }
        ValidationErrorKind::MaxLength { limit } => {
            vec![violation(
                at,
                format!("must be at most {limit} characters long"),
            )]
        }
        ValidationErrorKind::MinLength { limit } => {
            vec![violation(
                at,
                format!("must be at least {limit} characters long"),
            )]
        }
        _ => {
            let message = error.masked_with("the value").to_string();
            vec![violation(at, message)]
        }
    }
}

/// The JSON pointer of `name` inside the object at `parent` (RFC 6901 escaping).
fn child(parent: &str, name: &str) -> String {
    format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// `"admin", "user" or "guest"`.
fn one_of(options: &Value) -> String {
    let Some(items) = options.as_array() else {
        return options.to_string();
    };
    let shown: Vec<String> = items.iter().map(Value::to_string).collect();
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((only, _)) => only.clone(),
        None => "nothing (the enum is empty)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_traits() -> Value {
        json!({
            "email": "ada@acme.example",
            "tenant_id": "tenant-acme",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "role": "admin"
        })
    }

    #[track_caller]
    fn violations_of(traits: &Value) -> Vec<Violation> {
        match IdentitySchemas::builtin().validate_traits(DEFAULT_SCHEMA_ID, traits) {
            Err(SchemaError::Invalid {
                schema_id,
                violations,
            }) => {
                assert_eq!(schema_id, DEFAULT_SCHEMA_ID);
                violations
            }
            other => panic!("expected the traits to be refused, got {other:?}"),
        }
    }

    #[test]
    fn traits_that_follow_the_default_schema_pass() {
        let schemas = IdentitySchemas::builtin();

        let result = schemas.validate_traits(DEFAULT_SCHEMA_ID, &valid_traits());

        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_role_outside_the_enum_is_refused_naming_the_field_and_the_allowed_roles() {
        let mut traits = valid_traits();
        traits["role"] = json!("superuser");

        let violations = violations_of(&traits);

        assert_eq!(
            violations,
            vec![Violation {
                pointer: "/traits/role".into(),
                message: r#"must be one of "admin", "user" or "guest""#.into(),
            }]
        );
    }

    #[test]
    fn a_malformed_email_is_refused_because_formats_are_asserted() {
        let mut traits = valid_traits();
        traits["email"] = json!("not-an-address");

        let violations = violations_of(&traits);

        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].pointer, "/traits/email");
        assert!(violations[0].message.contains("email"), "{violations:?}");
    }

    #[test]
    fn a_missing_tenant_id_is_reported_at_the_missing_field() {
        let mut traits = valid_traits();
        traits.as_object_mut().unwrap().remove("tenant_id");

        let violations = violations_of(&traits);

        assert_eq!(
            violations,
            vec![Violation {
                pointer: "/traits/tenant_id".into(),
                message: "is required but missing".into(),
            }]
        );
    }

    #[test]
    fn a_property_the_schema_does_not_define_is_reported_at_that_property() {
        let mut traits = valid_traits();
        traits["groups"] = json!(["Acme-Admins"]);

        let violations = violations_of(&traits);

        assert_eq!(
            violations,
            vec![Violation {
                pointer: "/traits/groups".into(),
                message: "is not a field of this schema".into(),
            }]
        );
    }

    #[test]
    fn every_failing_field_is_reported_at_once_and_no_value_is_repeated() {
        let traits = json!({"email": "secret-person", "role": "superuser", "nickname": "x"});

        let error = IdentitySchemas::builtin()
            .validate_traits(DEFAULT_SCHEMA_ID, &traits)
            .unwrap_err();

        let SchemaError::Invalid { violations, .. } = &error else {
            panic!("expected Invalid, got {error:?}");
        };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/traits/email",
                "/traits/nickname",
                "/traits/role",
                "/traits/tenant_id"
            ]
        );
        let text = error.to_string();
        assert!(
            !text.contains("secret-person") && !text.contains("superuser"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_schema_id_is_an_error_of_its_own() {
        let schemas = IdentitySchemas::builtin();

        let result = schemas.validate_traits("customer", &valid_traits());

        assert_eq!(result, Err(SchemaError::UnknownSchema("customer".into())));
    }

    #[test]
    fn a_configured_schema_is_used_under_its_id_beside_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staff.schema.json");
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"traits": {
                "type": "object",
                "properties": {"email": {
                    "type": "string",
                    "format": "email",
                    "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}
                }},
                "required": ["email"]
            }}
        });
        std::fs::write(&path, schema.to_string()).unwrap();

        let schemas = IdentitySchemas::load(&[("staff".into(), path)]).unwrap();

        assert_eq!(schemas.ids().collect::<Vec<_>>(), ["default", "staff"]);
        assert_eq!(
            schemas.validate_traits("staff", &json!({"email": "ada@acme.example"})),
            Ok(())
        );
        assert!(schemas.validate_traits("staff", &json!({})).is_err());
    }

    #[test]
    fn loading_reports_every_unusable_schema_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let not_json = dir.path().join("broken.json");
        std::fs::write(&not_json, "{ nope").unwrap();
        let no_traits = dir.path().join("no-traits.json");
        std::fs::write(&no_traits, r#"{"type": "object"}"#).unwrap();
        let bad_keyword = dir.path().join("bad.json");
        std::fs::write(
            &bad_keyword,
            r#"{"properties": {"traits": {"type": "objekt"}}}"#,
        )
        .unwrap();
        let missing = dir.path().join("missing.json");

        let errors = IdentitySchemas::load(&[
            ("a".into(), not_json),
            ("b".into(), no_traits),
            ("c".into(), bad_keyword),
            ("d".into(), missing),
        ])
        .unwrap_err();

        assert_eq!(errors.len(), 4, "{errors:#?}");
        for (error, file) in
            errors
                .iter()
                .zip(["broken.json", "no-traits.json", "bad.json", "missing.json"])
        {
            assert!(error.contains(file), "{error} should name {file}");
        }
    }
}

#[cfg(test)]
mod email_format_tests {
    use super::is_email;

    #[test]
    fn email_format_accepts_what_kratos_accepts_and_refuses_the_rest() {
        for ok in [
            "ada@acme.example",
            "zoë.ñúñez@acme.example",
            "a+b@x-y.example",
            "o'neil@acme.example",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "not-an-address",
            "@acme.example",
            "ada@",
            "a..b@acme.example",
            "ada@acme..example",
            "a b@x.example",
            "ada@-x.example",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
