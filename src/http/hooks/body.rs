//! The body kratos-jit's hook templates make Kratos send, and the claims carried in it.
//!
//! The shipped templates (`deploy/kratos/hooks/*.jsonnet`) forward `ctx.identity` (id, traits,
//! `metadata_public`) and, at login, the session's authentication facts. The claims reach the
//! hooks inside `metadata_public.kratos_jit_claims`, put there by the Kratos-side claims mapper
//! ([`crate::carrier`]); they are kept as the JSON text they arrived as, because the mapper
//! worker reads them unparsed.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::carrier::CARRIED_CLAIMS_KEY;

/// What the shipped body templates send (deploy/kratos/hooks/*.jsonnet).
#[derive(Debug, Deserialize)]
pub struct HookBody {
    #[serde(default)]
    pub flow_id: Option<String>,
    pub identity: HookIdentity,
    #[serde(default)]
    pub session: Option<HookSession>,
}

#[derive(Debug, Deserialize)]
pub struct HookIdentity {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub traits: Value,
    #[serde(default)]
    pub metadata_public: Option<PublicMetadata>,
}

/// `metadata_public` as a hook reads it: the carried claims kept as the JSON text they arrived
/// as (they go to the mapper worker unparsed), every other key as a value. Anything but an
/// object reads as empty.
#[derive(Debug, Default)]
pub struct PublicMetadata {
    carried: Option<Box<RawValue>>,
    rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for PublicMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = PublicMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PublicMetadata, A::Error> {
                let mut public = PublicMetadata::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == CARRIED_CLAIMS_KEY {
                        public.carried = Some(map.next_value()?);
                    } else {
                        public.rest.insert(key, map.next_value()?);
                    }
                }
                Ok(public)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PublicMetadata, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(PublicMetadata::default())
            }
            fn visit_unit<E>(self) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<PublicMetadata, E> {
                Ok(PublicMetadata::default())
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Debug, Deserialize)]
pub struct HookSession {
    #[serde(default)]
    pub authenticated_at: Option<String>,
    #[serde(default)]
    pub authentication_methods: Vec<Value>,
}

/// The provider named by carried claims, and the claims as JSON text.
pub type Carried = (String, Box<RawValue>);

/// Takes the carried claims out of `metadata_public`: the provider and claims they name (when
/// well-formed; the claims as JSON text), and what remains of `metadata_public` (always an
/// object: `{}` when nothing is left).
pub fn take_carried(identity: &mut HookIdentity) -> (Option<Carried>, Map<String, Value>) {
    #[derive(Deserialize)]
    struct Parts {
        #[serde(default)]
        provider: Value,
        #[serde(default)]
        claims: Option<Box<RawValue>>,
    }
    let public = identity.metadata_public.take().unwrap_or_default();
    let carried = public
        .carried
        .and_then(|raw| serde_json::from_str::<Parts>(raw.get()).ok())
        .and_then(|carried| match (carried.provider, carried.claims) {
            (Value::String(provider), Some(claims)) if claims.get().starts_with('{') => {
                Some((provider, claims))
            }
            _ => None,
        });
    (carried, public.rest)
}

/// The `sub` claim of claims in JSON text, `""` when there is none.
pub fn subject_of(claims: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Subject {
        #[serde(default)]
        sub: Value,
    }
    match serde_json::from_str::<Subject>(claims.get()) {
        Ok(Subject {
            sub: Value::String(sub),
        }) => sub,
        _ => String::new(),
    }
}

/// The issue time (`iat`) of carried claims: `raw_claims.iat`, else a top-level `iat`.
pub fn issued_at(claims: &RawValue) -> Option<i64> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        iat: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        raw_claims: Option<Raw>,
        #[serde(default)]
        iat: Option<Value>,
    }
    let claims: Claims = serde_json::from_str(claims.get()).ok()?;
    claims
        .raw_claims
        .and_then(|r| r.iat)
        .or(claims.iat)
        .and_then(|iat| iat.as_i64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(metadata_public: &str) -> HookIdentity {
        serde_json::from_str(&format!(
            r#"{{"traits": {{}}, "metadata_public": {metadata_public}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn carried_claims_are_taken_as_text_and_the_rest_is_kept() {
        let mut id = identity(
            r#"{"theme": "dark", "kratos_jit_claims": {"provider": "okta-acme",
                "claims": {"sub": "ada",
                           "email": "ada@acme.example"}}}"#,
        );
        let (carried, rest) = take_carried(&mut id);
        let (provider, claims) = carried.expect("carried claims");
        assert_eq!(provider, "okta-acme");
        let parsed: Value = serde_json::from_str(claims.get()).unwrap();
        assert_eq!(parsed, json!({"sub": "ada", "email": "ada@acme.example"}));
        assert_eq!(subject_of(&claims), "ada");
        assert_eq!(Value::Object(rest), json!({"theme": "dark"}));
    }

    #[test]
    fn malformed_carried_claims_are_absent_not_an_error() {
        for carried in [
            r#""text""#,
            r#"{"provider": 7, "claims": {}}"#,
            r#"{"provider": "p", "claims": ["not", "an", "object"]}"#,
            r#"{"provider": "p"}"#,
        ] {
            let mut id = identity(&format!(r#"{{"kratos_jit_claims": {carried}, "a": 1}}"#));
            let (taken, rest) = take_carried(&mut id);
            assert!(taken.is_none(), "{carried}");
            assert_eq!(Value::Object(rest), json!({"a": 1}), "{carried}");
        }
    }

    #[test]
    fn metadata_public_that_is_not_an_object_reads_as_empty() {
        for value in ["null", "\"x\"", "3", "true", "[1, {\"a\": 2}]"] {
            let mut id = identity(value);
            let (taken, rest) = take_carried(&mut id);
            assert!(taken.is_none() && rest.is_empty(), "{value}");
        }
    }

    #[test]
    fn the_issue_time_comes_from_raw_claims_first() {
        let raw = |s: &str| -> Box<RawValue> { serde_json::from_str(s).unwrap() };
        assert_eq!(
            issued_at(&raw(r#"{"raw_claims": {"iat": 5}, "iat": 7}"#)),
            Some(5)
        );
        assert_eq!(issued_at(&raw(r#"{"iat": 7}"#)), Some(7));
        assert_eq!(issued_at(&raw(r#"{"iat": "7"}"#)), None);
    }

    #[test]
    fn claims_without_a_string_subject_have_an_empty_one() {
        for claims in [r#"{}"#, r#"{"sub": 5}"#, r#"{"sub": null, "x": [1]}"#] {
            let raw: Box<RawValue> = serde_json::from_str(claims).unwrap();
            assert_eq!(subject_of(&raw), "", "{claims}");
        }
    }
}
