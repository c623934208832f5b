//! The claims object Ory Kratos hands a Jsonnet mapper as `std.extVar('claims')`.
//!
//! Kratos's generic OIDC provider decodes the verified ID token twice
//! (`provider_generic_oidc.go verifyAndDecodeClaimsWithProvider`): once with Go's `encoding/json`
//! into its `Claims` struct (`selfservice/strategy/oidc/claims`), once into a plain map that
//! becomes `raw_claims`. The struct is then encoded back to JSON for the mapper, and
//! `Claims.Validate()` refuses the login when `sub` or `iss` is empty.
//!
//! [`kratos_claims`] rebuilds that object from the token's claims and promises the same result:
//!
//! - the claims the struct knows, at the top level, with its JSON types;
//! - Go's `omitempty`: an empty string, `false`, `0`, an empty list or a missing claim is absent;
//! - `email_verified` is Kratos's `ConvertibleBoolean`: `true`, `false`, `"true"`, `"false"`,
//!   anything else (even `null`) makes Kratos refuse the login, so it is a [`ClaimsError`] here;
//! - `locale` may be LinkedIn's `{language, country}` object and becomes `"language-country"`;
//! - Go matches JSON keys to struct fields case-insensitively, so `"EMAIL"` fills `email`;
//! - a claim of the wrong JSON type fails Go's decoding and the login: a [`ClaimsError`];
//! - `raw_claims` is every claim of the token, as it came.
//!
//! Errors name claims and JSON types, never claim values.

use serde_json::{Map, Value};

/// Why Kratos would refuse to build the claims object for a token (and refuse the login).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error(
        "the ID token has no subject (`sub`), and Kratos refuses a login without one (\"provider did not return a subject\")"
    )]
    MissingSubject,
    #[error(
        "the ID token has no issuer (`iss`), and Kratos refuses a login without one (\"issuer not set in claims\")"
    )]
    MissingIssuer,
    /// Go's `encoding/json` fails on this claim, so Kratos fails the login before any mapper runs.
    #[error(
        "claim {claim:?}{} is {found}, but Kratos decodes it as {expected} and refuses the login otherwise",
        alias_note(claim, field)
    )]
    WrongType {
        /// The claim name as the token spells it.
        claim: String,
        /// The Kratos field it lands in (differs from `claim` only in letter case).
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
}

fn alias_note(claim: &str, field: &str) -> String {
    if claim == field {
        String::new()
    } else {
        format!(" (Kratos reads it as {field:?})")
    }
}

/// The Go type of a `Claims` field, which decides how a JSON value decodes and when
/// `omitempty` drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    String,
    Bool,
    Int64,
    /// `x.ConvertibleBoolean`.
    ConvertibleBool,
    /// `claims.Locale`.
    Locale,
    /// `[]string`.
    StringList,
    /// `map[string]interface{}`.
    Map,
}

/// The fields of Kratos's `Claims` struct, by JSON name. All are `omitempty`.
///
/// `acr` (string) and `amr` (`[]string`) were added on Kratos master in 2026-04 (docs/kratos.md
/// §2.1; the session's `upstream_acr`/`upstream_amr` carry them with those types).
const FIELDS: &[(&str, GoType)] = &[
    ("iss", GoType::String),
    ("sub", GoType::String),
    ("oid", GoType::String),
    ("name", GoType::String),
    ("given_name", GoType::String),
    ("family_name", GoType::String),
    ("last_name", GoType::String),
    ("middle_name", GoType::String),
    ("nickname", GoType::String),
    ("preferred_username", GoType::String),
    ("profile", GoType::String),
    ("picture", GoType::String),
    ("website", GoType::String),
    ("email", GoType::String),
    ("email_verified", GoType::ConvertibleBool),
    ("gender", GoType::String),
    ("birthdate", GoType::String),
    ("zoneinfo", GoType::String),
    ("locale", GoType::Locale),
    ("phone_number", GoType::String),
    ("phone_number_verified", GoType::Bool),
    ("updated_at", GoType::Int64),
    ("hd", GoType::String),
    ("team", GoType::String),
    ("nonce", GoType::String),
    ("nonce_supported", GoType::Bool),
    ("acr", GoType::String),
    ("amr", GoType::StringList),
    ("raw_claims", GoType::Map),
];

/// What decoding one JSON value does to a Go field.
enum Decoded {
    /// Go leaves the field as it was (JSON `null` into a string, bool or integer).
    Unchanged,
    /// The field now holds this value; `None` is the zero value, which `omitempty` drops.
    Set(Option<Value>),
}

/// Builds the claims object Kratos gives a Jsonnet mapper, from the verified claims of an ID
/// token. See the module documentation for the rules.
pub fn kratos_claims(token_claims: &Map<String, Value>) -> Result<Value, ClaimsError> {
    let mut object = Map::new();
    for &(field, go_type) in FIELDS {
        let mut current: Option<Value> = None;
        for (claim, value) in spellings_of(token_claims, field) {
            match decode(go_type, value).map_err(|(expected, found)| ClaimsError::WrongType {
                claim: claim.clone(),
                field,
                expected,
                found,
            })? {
                Decoded::Unchanged => {}
                Decoded::Set(v) => current = v,
            }
        }
        if let Some(v) = current {
            object.insert(field.to_owned(), v);
        }
    }

    // Kratos overwrites whatever `raw_claims` the struct decoding produced with the full map.
    object.remove("raw_claims");
    if !token_claims.is_empty() {
        // Go decodes raw_claims numbers into float64; Jsonnet reads every number as a double
        // anyway, so keeping serde_json's numbers changes nothing a mapper can observe (the
        // token's payload was read under the input rules, so none is beyond a double's range).
        object.insert("raw_claims".to_owned(), Value::Object(token_claims.clone()));
    }

    if !object.contains_key("sub") {
        return Err(ClaimsError::MissingSubject);
    }
    if !object.contains_key("iss") {
        return Err(ClaimsError::MissingIssuer);
    }
    Ok(Value::Object(object))
}

/// The claims Go would decode into `field`, in the order Go would apply them.
///
/// Go's `encoding/json` prefers the exact key but also accepts any case-insensitive match, and
/// with several matches the last one in the token wins. The token's key order is gone once
/// the claims are a map, so the exact spelling is applied last: it wins over `EMAIL`-style
/// variants, the case that matters in practice. Every variant is still decoded, so a badly
/// typed one fails the way it fails in Kratos.
fn spellings_of<'a>(
    claims: &'a Map<String, Value>,
    field: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    claims
        .iter()
        .filter(move |(key, _)| key.as_str() != field && go_fold_eq(key, field))
        .chain(claims.get_key_value(field))
}

/// Go's case-insensitive key match (`encoding/json` `foldName`) against an ASCII field name.
///
/// Besides ASCII letter case, Unicode simple folding maps exactly two non-ASCII characters onto
/// ASCII letters: KELVIN SIGN onto `k` and LATIN SMALL LETTER LONG S onto `s`.
fn go_fold_eq(key: &str, field: &str) -> bool {
    let mut field_chars = field.chars();
    for c in key.chars() {
        let folded = match c {
            '\u{212A}' => 'K',
            '\u{017F}' => 'S',
            c if c.is_ascii() => c.to_ascii_uppercase(),
            _ => return false,
        };
        match field_chars.next() {
            Some(f) if f.to_ascii_uppercase() == folded => {}
            _ => return false,
        }
    }
    field_chars.next().is_none()
}

type TypeMismatch = (&'static str, &'static str);

fn decode(go_type: GoType, value: &Value) -> Result<Decoded, TypeMismatch> {
    let mismatch = |expected| Err((expected, json_type(value)));
    match go_type {
        GoType::String => match value {
            Value::Null => Ok(Decoded::Unchanged),
            Value::String(s) => Ok(Decoded::Set(non_empty(s))),
            _ => mismatch("a string"),
        },
        GoType::Bool => match value {
            Value::Null => Ok(Decoded::Unchanged),
            Value::Bool(b) => Ok(Decoded::Set(b.then_some(Value::Bool(true)))),
            _ => mismatch("true or false"),
        },
        GoType::Int64 => match value {
            Value::Null => Ok(Decoded::Unchanged),
            // Go parses the literal with ParseInt: 1.0, 1e3 and anything beyond int64 fail.
            Value::Number(n) => match n.as_i64() {
                Some(0) => Ok(Decoded::Set(None)),
                Some(i) => Ok(Decoded::Set(Some(Value::from(i)))),
                None => mismatch("an integer (int64)"),
            },
            _ => mismatch("an integer (int64)"),
        },
        // x.ConvertibleBoolean.UnmarshalJSON accepts exactly true, false, "true" and "false";
        // Go calls it for null too, and it fails on null.
        GoType::ConvertibleBool => match value {
            Value::Bool(true) => Ok(Decoded::Set(Some(Value::Bool(true)))),
            Value::String(s) if s == "true" => Ok(Decoded::Set(Some(Value::Bool(true)))),
            Value::Bool(false) => Ok(Decoded::Set(None)),
            Value::String(s) if s == "false" => Ok(Decoded::Set(None)),
            _ => mismatch("true, false, \"true\" or \"false\""),
        },
        GoType::Locale => decode_locale(value).map(Decoded::Set),
        // A JSON null sets a Go slice or map to nil; a null element decodes to "".
        GoType::StringList => match value {
            Value::Null => Ok(Decoded::Set(None)),
            Value::Array(items) => {
                let mut strings = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => strings.push(Value::String(s.clone())),
                        Value::Null => strings.push(Value::String(String::new())),
                        _ => return mismatch("a list of strings"),
                    }
                }
                Ok(Decoded::Set(
                    (!strings.is_empty()).then_some(Value::Array(strings)),
                ))
            }
            _ => mismatch("a list of strings"),
        },
        GoType::Map => match value {
            Value::Null => Ok(Decoded::Set(None)),
            Value::Object(o) => Ok(Decoded::Set((!o.is_empty()).then(|| value.clone()))),
            _ => mismatch("an object"),
        },
    }
}

/// `claims.Locale.UnmarshalJSON`: first tries LinkedIn's `{"language", "country"}` object
/// (which also succeeds for `null`, yielding ""), then a plain string.
fn decode_locale(value: &Value) -> Result<Option<Value>, TypeMismatch> {
    const EXPECTED: &str = "a string or a {language, country} object";
    match value {
        Value::String(s) => Ok(non_empty(s)),
        Value::Null => Ok(None),
        Value::Object(o) => {
            let part = |name: &str| -> Result<String, TypeMismatch> {
                let mut found = String::new();
                for (_, v) in spellings_of(o, name) {
                    match v {
                        Value::String(s) => found = s.clone(),
                        Value::Null => {}
                        _ => return Err((EXPECTED, "an object")),
                    }
                }
                Ok(found)
            };
            let (language, country) = (part("language")?, part("country")?);
            let locale = match (language.is_empty(), country.is_empty()) {
                (true, _) => country,
                (false, true) => language,
                (false, false) => format!("{language}-{country}"),
            };
            Ok(non_empty(&locale))
        }
        _ => Err((EXPECTED, json_type(value))),
    }
}

fn non_empty(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| Value::String(s.to_owned()))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
