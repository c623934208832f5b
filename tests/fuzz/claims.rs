//! An ID token's claims → the claims object Kratos builds (`kratos_jit::claims::kratos_claims`),
//! over mutated token claims: never a panic; either the object — with the non-empty `sub` and
//! `iss` strings Kratos requires, only the fields Kratos's struct has, and every claim under
//! `raw_claims` as it came — or an error that quotes no claim value.

use kratos_jit::claims::kratos_claims;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

use crate::json::{Doc, Mutated, mutated};
use crate::valid::claims_fixtures;

/// The fields of Kratos's `Claims` struct, and `raw_claims`.
const KRATOS_FIELDS: &[&str] = &[
    "iss",
    "sub",
    "oid",
    "name",
    "given_name",
    "family_name",
    "last_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "updated_at",
    "hd",
    "team",
    "nonce",
    "nonce_supported",
    "acr",
    "amr",
    "raw_claims",
];

/// Every string value in `value` (not keys), depth first.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(entries) => entries.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The token claims of every fixture: its `raw_claims`.
pub fn token_claims() -> Vec<Doc> {
    claims_fixtures()
        .iter()
        .filter_map(|f| f.claims.get("raw_claims"))
        .map(Doc::from_value)
        .collect()
}

/// The property for one map of token claims.
pub fn check_claims(token: &Map<String, Value>) -> Result<(), TestCaseError> {
    match kratos_claims(token) {
        Ok(built) => {
            let object = built.as_object().expect("the claims object is an object");
            for required in ["sub", "iss"] {
                prop_assert!(
                    object
                        .get(required)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty()),
                    "built claims without a `{required}` string: {built}"
                );
            }
            for key in object.keys() {
                prop_assert!(
                    KRATOS_FIELDS.contains(&key.as_str()),
                    "`{key}` is no field of Kratos's claims"
                );
            }
            prop_assert_eq!(&object["raw_claims"], &Value::Object(token.clone()));
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.is_empty());
            let mut values = Vec::new();
            strings(&Value::Object(token.clone()), &mut values);
            for value in values {
                // Addresses stand for the personal data an error must not quote; a key with the
                // same text may be named.
                let is_key = token.keys().any(|k| k.contains(value.as_str()));
                prop_assert!(
                    !(value.contains('@')
                        && value.len() >= 6
                        && !is_key
                        && message.contains(&value)),
                    "the error quotes a claim value: {message}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn kratos_claims_either_builds_what_kratos_requires_or_names_the_problem() {
    let bases = token_claims();
    let tally = crate::Tally::default();
    let strategy = (any::<Index>(), mutated(6));
    crate::check(
        crate::regressions!("claims"),
        strategy,
        |(pick, mutation): (Index, Mutated)| {
            let bytes = mutation.apply(&bases[pick.index(bases.len())]);
            // What does not parse as a JSON object never reaches the conversion.
            let Ok(token) = serde_json::from_slice::<Map<String, Value>>(&bytes) else {
                return Ok(());
            };
            tally.add(if kratos_claims(&token).is_ok() {
                "built"
            } else {
                "refused"
            });
            check_claims(&token)
        },
    );
    tally.require(&["built", "refused"]);
}
