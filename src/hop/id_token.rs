//! What the hop tells Kratos about a sign-in: the ID token it mints and the userinfo answer.
//!
//! Kratos v26.2.0 decodes the standard claims strictly into typed fields
//! (`selfservice/strategy/oidc/provider_generic_oidc.go@v26.2.0`, `verifyAndDecodeClaimsWithProvider`,
//! into `claims.Claims`): an `email` that is a list fails the login. So the hop carries only
//! correctly typed standard claims, whatever shape the bridge sent ([`standard_claims`]):
//! `email`, `name`, `given_name`, `family_name` as strings (a list of exactly one string counts
//! as that string; anything else is left out) and `email_verified` as a boolean (the strings
//! `"true"`/`"false"` count). The identity the login use case wrote travels in
//! `kratos_jit_identity` (`{traits, metadata_public, verified_addresses}`), so that the hop-mode
//! Kratos-side mapper is `{ identity: std.extVar('claims').raw_claims.kratos_jit_identity }`.

use serde_json::{Map, Value, json};

use crate::domain::mapped::MappedIdentity;

/// The string standard claims carried, in the order they are looked at.
const STRING_CLAIMS: &[&str] = &["email", "name", "given_name", "family_name"];

/// The typed standard claims of an upstream token's claims (see the module documentation).
pub fn standard_claims(upstream: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for &name in STRING_CLAIMS {
        let value = match upstream.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(s)] => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.insert(name.to_owned(), Value::String(value));
        }
    }
    let verified = match upstream.get("email_verified") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s == "true" => Some(true),
        Some(Value::String(s)) if s == "false" => Some(false),
        _ => None,
    };
    if let (Some(verified), true) = (verified, out.contains_key("email")) {
        out.insert("email_verified".into(), Value::Bool(verified));
    }
    out
}

/// The identity the login use case wrote, as `kratos_jit_identity` carries it.
pub fn identity_claim(mapped: &MappedIdentity) -> Value {
    let mut identity = Map::new();
    identity.insert("traits".into(), Value::Object(mapped.traits.clone()));
    if let Some(public) = &mapped.metadata_public {
        identity.insert("metadata_public".into(), Value::Object(public.clone()));
    }
    let addresses: Vec<Value> = mapped
        .verified_addresses
        .iter()
        .map(|a| json!({"value": a.value, "via": a.via}))
        .collect();
    identity.insert("verified_addresses".into(), Value::Array(addresses));
    Value::Object(identity)
}

/// The claims of a minted ID token.
pub struct Minted<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub subject: &'a str,
    pub now: u64,
    pub lifetime_secs: u64,
    pub auth_time: u64,
    /// Kratos's own nonce, when it sent one (v26.2.0 sends none).
    pub nonce: Option<&'a str>,
    pub standard: &'a Map<String, Value>,
    pub identity: &'a Value,
}

impl Minted<'_> {
    pub fn claims(&self) -> Value {
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.into());
        claims.insert("aud".into(), self.audience.into());
        claims.insert("sub".into(), self.subject.into());
        claims.insert("iat".into(), self.now.into());
        claims.insert("exp".into(), (self.now + self.lifetime_secs).into());
        claims.insert("auth_time".into(), self.auth_time.into());
        if let Some(nonce) = self.nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        for (name, value) in self.standard {
            claims.insert(name.clone(), value.clone());
        }
        claims.insert("kratos_jit_identity".into(), self.identity.clone());
        Value::Object(claims)
    }
}

/// The userinfo answer: the subject, the same standard claims and the identity.
pub fn userinfo(subject: &str, standard: &Map<String, Value>, identity: &Value) -> Value {
    let mut claims = Map::new();
    claims.insert("sub".into(), subject.into());
    for (name, value) in standard {
        claims.insert(name.clone(), value.clone());
    }
    claims.insert("kratos_jit_identity".into(), identity.clone());
    Value::Object(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn standard_claims_are_typed_whatever_shape_the_bridge_sent() {
        let upstream = map(json!({
            "email": ["ada@acme.example"],
            "email_verified": "true",
            "name": ["Ada", "Lovelace"],
            "given_name": "Ada",
            "family_name": 7,
            "groups": ["admins"],
        }));

        let claims = standard_claims(&upstream);

        assert_eq!(
            Value::Object(claims),
            json!({"email": "ada@acme.example", "email_verified": true, "given_name": "Ada"})
        );
    }

    #[test]
    fn email_verified_is_left_out_without_an_email() {
        let claims = standard_claims(&map(
            json!({"email": ["a@x.example", "b@x.example"], "email_verified": true}),
        ));

        assert!(claims.is_empty(), "{claims:?}");
    }
}
