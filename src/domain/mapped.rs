//! Kratos's contract for what a mapper returns, and for the `identity` it is given.
//!
//! [`MappedIdentity::from_output`] applies the checks Kratos applies to a mapper's output;
//! [`identity_ext_var`] builds the `identity` ext var the way Kratos coalesces it. Nothing here
//! knows how the mapper ran (that is the mapper engine's business): it is pure.

use serde_json::{Map, Value};

/// Why a mapper's output breaks Kratos's output contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the mapper output is invalid: {0}")]
pub struct InvalidOutput(pub String);

/// What a mapper produced, checked against Kratos's output contract.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedIdentity {
    pub traits: Map<String, Value>,
    pub metadata_public: Option<Map<String, Value>>,
    pub metadata_admin: Option<Map<String, Value>>,
    pub verified_addresses: Vec<VerifiedAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAddress {
    pub value: String,
    pub via: String,
}

impl MappedIdentity {
    /// Applies Kratos's checks on a mapper's output (`strategy_registration.go`): `identity.traits`
    /// must be an object, metadata objects if present, `verified_addresses` an array of
    /// `{value, via}` whose e-mail values Kratos lower-cases and trims.
    pub fn from_output(output: &Value) -> Result<Self, InvalidOutput> {
        let invalid = |m: &str| InvalidOutput(m.to_owned());
        let identity = output
            .get("identity")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("expected an object with an `identity` object at the top"))?;
        let traits = match identity.get("traits") {
            Some(Value::Object(t)) => t.clone(),
            Some(_) => return Err(invalid("`identity.traits` must be an object")),
            None => return Err(invalid("`identity.traits` is missing")),
        };
        let metadata = |key: &str| -> Result<Option<Map<String, Value>>, InvalidOutput> {
            match identity.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m.clone())),
                Some(_) => Err(InvalidOutput(format!("`identity.{key}` must be an object"))),
            }
        };
        let mut verified_addresses = Vec::new();
        match identity.get("verified_addresses") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = |k: &str| item.get(k).and_then(Value::as_str);
                    let (Some(value), Some(via)) = (field("value"), field("via")) else {
                        return Err(InvalidOutput(format!(
                            "`identity.verified_addresses[{i}]` must be {{value: string, via: string}}"
                        )));
                    };
                    let value = if via == "email" {
                        value.trim().to_lowercase()
                    } else {
                        value.to_owned()
                    };
                    verified_addresses.push(VerifiedAddress {
                        value,
                        via: via.to_owned(),
                    });
                }
            }
            Some(_) => return Err(invalid("`identity.verified_addresses` must be an array")),
        }
        Ok(MappedIdentity {
            traits,
            metadata_public: metadata("metadata_public")?,
            metadata_admin: metadata("metadata_admin")?,
            verified_addresses,
        })
    }
}

/// The `identity` ext var for a login without an identity yet.
pub fn empty_identity() -> Value {
    serde_json::json!({"traits": {}, "metadata_public": {}, "metadata_admin": {}})
}

/// Fills in what Kratos coalesces: a missing `traits`/`metadata_*` of the current identity is `{}`.
pub fn identity_ext_var(current: Option<&Value>) -> Value {
    let Some(current) = current else {
        return empty_identity();
    };
    let field = |k: &str| match current.get(k) {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => Value::Object(Default::default()),
    };
    serde_json::json!({
        "traits": field("traits"),
        "metadata_public": field("metadata_public"),
        "metadata_admin": field("metadata_admin"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_contract_is_checked_like_kratos() {
        let cases = [
            (
                json!({"identity": {"traits": "x"}}),
                "`identity.traits` must be an object",
            ),
            (json!({"identity": {}}), "`identity.traits` is missing"),
            (json!({"traits": {}}), "`identity` object"),
            (
                json!({"identity": {"traits": {}, "metadata_public": []}}),
                "`identity.metadata_public` must be an object",
            ),
            (
                json!({"identity": {"traits": {}, "verified_addresses": [{"value": 1}]}}),
                "verified_addresses[0]",
            ),
        ];
        for (output, expected) in cases {
            let err = MappedIdentity::from_output(&output).unwrap_err();
            assert!(err.to_string().contains(expected), "{output}: {err}");
        }
        let ok = MappedIdentity::from_output(&json!({"identity": {"traits": {"a": 1},
            "verified_addresses": [{"value": " Ada@Acme.Example ", "via": "email"}]}}))
        .unwrap();
        assert_eq!(
            ok.verified_addresses,
            vec![VerifiedAddress {
                value: "ada@acme.example".into(),
                via: "email".into()
            }]
        );
    }
}
