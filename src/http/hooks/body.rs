//! The body kratos-jit's hook templates make Kratos send, and the claims carried in it.
//!
//! The shipped templates (`deploy/kratos/hooks/*.jsonnet`) forward `ctx.identity` (id, traits,
//! `metadata_public`) and, at login, the session's authentication facts. The claims reach the
//! hooks inside `metadata_public.kratos_jit_claims`, put there by the Kratos-side claims mapper
//! ([`crate::carrier`]); they are kept as the JSON text they arrived as, because the mapper
//! worker reads them unparsed.
//!
//! A body is read only after its text met the rules every JSON input meets
//! ([`crate::domain::input`]), so the carried claims the mapper worker receives hold no
//! duplicate key, no nesting beyond the limit, no number out of range and no broken Unicode:
//! such claims are the request's fault, answered before any mapper runs, never an invalid
//! mapper output.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::carrier::CARRIED_CLAIMS_KEY;
use crate::domain::{Subject, input};

/// Reads a hook's body: the input rules over the whole text (carried claims included), then
/// the shape the body templates send. The error names the key path and the problem, never a
/// value.
pub fn parse(body: &[u8]) -> Result<HookBody, String> {
    input::check(body).map_err(|e| format!("the web hook body is refused: {e}"))?;
    serde_json::from_slice(body)
        .map_err(|_| "the web hook body is not what kratos-jit's body template sends".to_owned())
}

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

/// The subject (`sub`) of carried claims in JSON text; the error says why there is none.
pub fn subject_of(claims: &RawValue) -> Result<Subject, String> {
    #[derive(Deserialize)]
    struct Subject {
        #[serde(default)]
        sub: Value,
    }
    match serde_json::from_str::<Subject>(claims.get()) {
        Ok(Subject {
            sub: Value::String(sub),
        }) => crate::domain::Subject::parse(sub).map_err(|e| format!("the carried claims: {e}")),
        _ => Err("the carried claims have no `sub` string".to_owned()),
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
        assert_eq!(subject_of(&claims).unwrap().as_str(), "ada");
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
    fn claims_without_a_valid_subject_have_none_and_the_reason_names_sub() {
        let long = format!(r#"{{"sub": "{}"}}"#, "s".repeat(Subject::MAX_CHARS + 1));
        for claims in [
            r#"{}"#,
            r#"{"sub": 5}"#,
            r#"{"sub": null, "x": [1]}"#,
            r#"{"sub": ""}"#,
            &long,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(claims).unwrap();
            let reason = subject_of(&raw).unwrap_err();
            assert!(reason.contains("`sub`"), "{claims}: {reason}");
            assert!(!reason.contains("sss"), "{reason}");
        }
    }

    #[test]
    fn a_body_is_read_only_after_its_text_met_the_input_rules() {
        let body = |claims: &str| {
            format!(
                r#"{{"identity": {{"traits": {{}}, "metadata_public": {{"kratos_jit_claims":
                    {{"provider": "p", "claims": {claims}}}}}}}}}"#
            )
        };
        assert!(parse(body(r#"{"sub": "ada"}"#).as_bytes()).is_ok());
        let reason = parse(body(r#"{"sub": "ada", "sub": "eve"}"#).as_bytes()).unwrap_err();
        assert_eq!(
            reason,
            "the web hook body is refused: identity.metadata_public.kratos_jit_claims.claims.sub: duplicate key"
        );
        let reason = parse(body(r#"{"sub": "ada", "n": 1e999}"#).as_bytes()).unwrap_err();
        assert!(
            reason.ends_with("claims.n: number out of range (beyond what a double can hold)"),
            "{reason}"
        );
        let reason = parse(br#"{"identity": 5}"#).unwrap_err();
        assert!(
            reason.contains("not what kratos-jit's body template sends"),
            "{reason}"
        );
    }
}
