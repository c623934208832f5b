//! Validation of mapped traits against Kratos identity schemas, before anything is written.
//!
//! [`IdentitySchemas`] holds one compiled validator per schema id: the built-in `default`
//! (`deploy/kratos/identity.schema.json`, embedded in the binary) and any configured with
//! [`IdentitySchemas::load`]. Every schema is compiled once, at start.
//!
//! [`IdentitySchemas::validate_traits`] promises the answer Kratos would give when the identity
//! is written: Kratos validates the whole identity schema document against `{"traits": traits}`,
//! so that is what is validated here, with formats (`email`, ...) asserted. Of Kratos's own
//! `ory.sh/kratos` extension keyword only the e-mail check is reproduced (see
//! `kratos_extension`); the rest of it, such as the phone-number check of SMS recovery, plays no
//! part here.
//!
//! A [`SchemaError::Invalid`] names every failing field as a JSON pointer into that document
//! (`/traits/role`). Messages never repeat the offending value: traits are personal data, and these
//! errors end up in logs and in the denial shown to users.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError, Validator};
use serde_json::{Map, Value, json};

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
        // ory/jsonschema, which Kratos validates with, has no `idn-email` checker, and a format
        // it does not know constrains nothing: Kratos takes any string there.
        .with_format("idn-email", |_| true)
        .with_keyword("ory.sh/kratos", kratos_extension)
        .build(schema)
}

/// The e-mail check Kratos's `ory.sh/kratos` keyword makes of the value it sits on, whatever the
/// `format` keyword says (Kratos v26.2.0, `identity/extension_recovery.go` and
/// `identity/extension_verification.go`): `recovery.via: email` always checks the value as
/// `format: email`, and `verification.via: email` does when the field has no `format`. So a
/// field with `format: idn-email` and e-mail recovery takes only what `email` takes. A value that
/// is not a string fails that check in Kratos, and here.
fn kratos_extension<'a>(
    parent: &'a Map<String, Value>,
    value: &'a Value,
    _location: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    let via = |flow: &str| value.get(flow)?.get("via")?.as_str();
    // A `format` that is not a string turns the verification check off in Kratos.
    let unformatted = parent.get("format").is_none_or(|f| f.as_str() == Some(""));
    let checks_email =
        via("recovery") == Some("email") || (via("verification") == Some("email") && unformatted);
    Ok(Box::new(KratosEmailCheck(checks_email)))
}

/// Whether the `ory.sh/kratos` keyword here checks its value as an e-mail address.
struct KratosEmailCheck(bool);

impl<'i> Keyword<'i> for KratosEmailCheck {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        if !self.0 {
            return Ok(());
        }
        // The same words as a failed `format: email`, so that the two collapse into one violation.
        match instance.as_str().map(check_email) {
            Some(Ok(())) => Ok(()),
            Some(Err(problem)) => Err(ValidationError::custom(format!(
                "must be a valid \"email\": {problem}"
            ))),
            None => Err(ValidationError::custom("must be a valid \"email\"")),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        !self.0 || instance.as_str().is_some_and(is_email)
    }
}

/// `format: email` exactly as Kratos v26.2.0 decides it: a trait is refused here if and only if
/// Kratos would refuse it. [`check_email`] says why.
pub fn is_email(s: &str) -> bool {
    check_email(s).is_ok()
}

/// Kratos's checker is `isEmail` in `formats.go` of `github.com/ory/jsonschema/v3` (the
/// revision Kratos v26.2.0 pins, `280c5fc`). It looks at the raw trait string, trimming nothing,
/// and wants, in this order: at most 254 bytes; an `@`, the last of which splits the local part
/// from the domain; at most 64 bytes before that `@`; a host name after it ([`check_domain`]);
/// and that Go's `net/mail.ParseAddress` (Go 1.26) accepts the whole string.
///
/// The host-name rule leaves only ASCII letters, digits, hyphens and dots after the last `@`, and
/// that narrows what `ParseAddress` can accept to its bare `local@domain` form, split at that
/// very `@`: a display name (`Ada <ada@acme.example>`), a group (`team: ...;`), a trailing
/// comment (`ada@acme.example (Ada)`) or a domain literal (`ada@[127.0.0.1]`) each need a `>`,
/// `;`, `)`, `]` or space there, and are refused. What remains of the parser is the local part
/// ([`check_local_part`]) and the refusal of a trailing dot in the domain.
fn check_email(s: &str) -> Result<(), EmailProblem> {
    if s.len() > MAX_ADDRESS_BYTES {
        return Err(EmailProblem::TooLong);
    }
    let (local, domain) = s.rsplit_once('@').ok_or(EmailProblem::NoAt)?;
    if local.len() > MAX_LOCAL_PART_BYTES {
        return Err(EmailProblem::LocalPartTooLong);
    }
    check_domain(domain)?;
    check_local_part(local)
}

/// Kratos's caps, in bytes of UTF-8 (Go's `len`), padding included.
const MAX_ADDRESS_BYTES: usize = 254;
const MAX_LOCAL_PART_BYTES: usize = 64;
const MAX_LABEL_BYTES: usize = 63;

/// Why Kratos would refuse a string as `format: email`, in words that never repeat any of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum EmailProblem {
    #[error("it is longer than 254 bytes")]
    TooLong,
    #[error("it has no @")]
    NoAt,
    #[error("the part before the last @ is longer than 64 bytes")]
    LocalPartTooLong,
    #[error("its domain is not ASCII; give an internationalised domain in its xn-- form")]
    NonAsciiDomain,
    #[error(
        "its domain may hold only ASCII letters, digits, hyphens and dots, so no display name, comment, space or [address literal]"
    )]
    DomainCharacter,
    #[error("its domain is empty, or has an empty label or a trailing dot")]
    EmptyDomainLabel,
    #[error("a label of its domain is longer than 63 bytes")]
    DomainLabelTooLong,
    #[error("its domain starts with a hyphen, or a label of it ends with one")]
    DomainHyphen,
    #[error("its local part is empty, or has a leading, trailing or doubled dot")]
    LocalPartDots,
    #[error(
        "its local part holds a space, a control character or one of ()<>[]:;@\\,\" outside quotes"
    )]
    LocalPartCharacter,
    #[error(
        "its quoted local part is empty, unclosed, not right before the @, or holds a control character"
    )]
    QuotedLocalPart,
}

/// The domain after the last `@`: labels of 1 to 63 ASCII letters, digits and hyphens, joined by
/// dots, none ending in a hyphen.
///
/// Kratos's host-name check (`isHostname`) looks for a leading hyphen only at the first character
/// of the whole domain, so `x.-y.example` passes it, and `ParseAddress` has no objection either:
/// Kratos accepts such an address, so this does too. Non-ASCII labels are refused
/// (`bücher.example`); an internationalised domain has to come in its ASCII form
/// (`xn--bcher-kva.example`). The host-name check forgives one trailing dot, but `ParseAddress`
/// then refuses the domain as a dot-atom ending in a dot, so no trailing dot passes. Its 253-byte
/// cap on the domain cannot bind below the 254-byte cap on the whole address.
fn check_domain(domain: &str) -> Result<(), EmailProblem> {
    if !domain.is_ascii() {
        return Err(EmailProblem::NonAsciiDomain);
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(EmailProblem::DomainCharacter);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(EmailProblem::EmptyDomainLabel);
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(EmailProblem::DomainLabelTooLong);
        }
        if label.ends_with('-') {
            return Err(EmailProblem::DomainHyphen);
        }
    }
    if domain.starts_with('-') {
        return Err(EmailProblem::DomainHyphen);
    }
    Ok(())
}

/// The part before the last `@`, as `ParseAddress` reads it: spaces and tabs in front are
/// skipped (so `  ada@acme.example` is accepted, and the spaces count towards the 64 bytes), then
/// comes a dot-atom or a quoted string that must end right at the `@`. Nothing else may pad it:
/// no space before the `@`, no comment anywhere.
fn check_local_part(local: &str) -> Result<(), EmailProblem> {
    let local = local.trim_start_matches([' ', '\t']);
    match local.strip_prefix('"') {
        Some(quoted) if is_quoted_string_rest(quoted) => Ok(()),
        Some(_) => Err(EmailProblem::QuotedLocalPart),
        None => check_dot_atom(local),
    }
}

/// `atext` runs joined by single dots, with no dot first or last.
fn check_dot_atom(s: &str) -> Result<(), EmailProblem> {
    if !s.chars().all(|c| c == '.' || is_atext(c)) {
        return Err(EmailProblem::LocalPartCharacter);
    }
    if s.split('.').any(str::is_empty) {
        return Err(EmailProblem::LocalPartDots);
    }
    Ok(())
}

/// A quoted string after its opening quote: characters that are visible, a space or a tab, or any
/// of those escaped with a backslash; at least one of them; then the closing quote, last.
/// `"ada lovelace"`, `" ada "` and `"a@b"` are local parts; `""` is not.
fn is_quoted_string_rest(s: &str) -> bool {
    let mut chars = s.chars();
    let mut empty = true;
    while let Some(c) = chars.next() {
        let allowed = match c {
            '"' => return !empty && chars.as_str().is_empty(),
            '\\' => chars.next().is_some_and(is_quotable),
            c => is_quotable(c),
        };
        if !allowed {
            return false;
        }
        empty = false;
    }
    false
}

/// What `ParseAddress` lets stand inside quotes: a visible character, a space or a tab.
fn is_quotable(c: char) -> bool {
    is_vchar(c) || c == ' ' || c == '\t'
}

/// A visible character other than the RFC 5322 specials and the dot. `ParseAddress` counts every
/// non-ASCII character as visible (RFC 6532), so `zoë` is an atom, and so is a no-break space.
fn is_atext(c: char) -> bool {
    is_vchar(c) && !"()<>[]:;@\\,\".".contains(c)
}

/// `VCHAR` as `ParseAddress` extends it: printable ASCII or any non-ASCII character.
fn is_vchar(c: char) -> bool {
    c.is_ascii_graphic() || !c.is_ascii()
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
            // Say which rule an address breaks, never what the address is.
            let why = match error.instance().as_str() {
                Some(address) if format == "email" => check_email(address)
                    .err()
                    .map_or_else(String::new, |problem| format!(": {problem}")),
                _ => String::new(),
            };
            vec![violation(at, format!("must be a valid \"{format}\"{why}"))]
        }
        ValidationErrorKind::Type {
            kind: TypeKind::Single(expected),
        } => vec![violation(at, format!("must be of type {expected}"))],
        ValidationErrorKind::Custom { message, .. } => vec![violation(at, message.clone())],
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
mod tests;

#[cfg(test)]
mod email_format_tests;
