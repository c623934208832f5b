//! The Kratos-side claims mapper that kratos-jit ships for each provider in web hook mode.
//!
//! Kratos never passes OIDC claims to web hooks (docs/kratos.md §1.6): the only way for the
//! registration and login hooks to see them is for Kratos's own claims mapper to copy them into
//! the identity, under `metadata_public.kratos_jit_claims`. This module generates that mapper.
//!
//! **It never fails, and it does not run the provider's mapper.** A mapper that fails inside
//! Kratos v26.2.0 — a Jsonnet `error`, which is how a provider's mapper refuses a login, or a
//! claim it reads that is missing — stops the registration inside Kratos's mapper step, and
//! Kratos shows its error page with the Jsonnet stack trace and the mapper's file path
//! (docs/hop.md §4). Jsonnet has no way to catch an error. So the provider's mapper runs only
//! in kratos-jit's registration hook, which can refuse with a message the user reads, and the
//! Kratos-side mapper outputs:
//!
//! - `traits`: placeholder traits that satisfy the identity schema ([`placeholder_traits`]).
//!   Kratos validates the mapped traits against the schema *before* the pre-persist hooks
//!   (`strategy_registration.go@v26.2.0`, `processRegistration`), so they must be valid; the
//!   registration hook then answers the real traits, which replace them wholesale, and Kratos
//!   validates again before it creates the identity (`selfservice/flow/registration/hook.go`,
//!   `PostRegistrationHook`). Placeholders are never persisted while the hook is configured;
//!   without it, every identity would land in a tenant that does not exist;
//! - `metadata_public.kratos_jit_claims`: `{provider, claims}`, which the registration hook
//!   removes before anything is persisted.
//!
//! Since the file no longer contains the provider's mapper, editing a mapper no longer needs a
//! Kratos redeployment in web hook mode.
//!
//! For a Kratos that re-runs the mapper at every login and passes the current identity
//! (`update_identity_on_login: automatic`, Kratos master and the enterprise build ≥ v26.2.2,
//! [`IdentityVar::FromKratos`]), the carrier outputs the *stored* traits and metadata unchanged
//! (Kratos's merge then changes nothing but the carried claims) and placeholders only when
//! there are none (a registration); the login hook applies the update through the admin API.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::schema::{DEFAULT_SCHEMA_ID, IdentitySchemas};

/// The key under `metadata_public` where the carrier puts the claims.
pub const CARRIED_CLAIMS_KEY: &str = "kratos_jit_claims";

/// The e-mail placeholder: in the reserved `.invalid` domain, so no mail can ever reach it.
pub const PLACEHOLDER_EMAIL: &str = "registration-pending@kratos-jit.invalid";

/// The string placeholder where the schema gives no `default`, `const` or `enum`.
const PLACEHOLDER_STRING: &str = "kratos-jit-pending";

/// Where the Kratos-side mapper's `std.extVar('identity')` comes from (docs/kratos.md §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityVar {
    /// Kratos v26.2.0 and earlier define no `identity` ext var, and run the mapper only in the
    /// registration flow: the carrier reads nothing but `claims`.
    Registration,
    /// Kratos master and the enterprise build (≥ v26.2.2) pass it, and with
    /// `update_identity_on_login: automatic` they run the mapper at every login with the
    /// current identity, merge its output into the stored one and write it before the login
    /// hooks: the carrier gives back what is stored, so that only the hook changes it.
    FromKratos,
}

/// The identity schema `kratos-jit kratos-mapper` reads by default: the sample one, which is
/// also kratos-jit's built-in `default` schema.
const BUILTIN_SCHEMA: &str = include_str!("../deploy/kratos/identity.schema.json");

/// Traits that satisfy the `traits` schema of an identity schema (`schema_file`, or the built-in
/// one), for the carrier to output while the registration hook decides the real ones. For each
/// required property, in this order: its `default`, its `const`, the last of its `enum` values
/// (the sample schema lists roles from most to least privileged), [`PLACEHOLDER_EMAIL`] for
/// `format: email`, otherwise a value of its type; nested objects likewise. The result is
/// checked against the schema with the rules Kratos applies ([`IdentitySchemas`]); a schema whose
/// constraints these rules do not meet (a `pattern` the placeholder string misses, say) is
/// reported with the violations and the way out: give those properties a `default`.
pub fn placeholder_traits(schema_file: Option<&Path>) -> Result<Value, String> {
    let (shown, text, schemas) = match schema_file {
        None => (
            "the built-in identity schema".to_owned(),
            BUILTIN_SCHEMA.to_owned(),
            IdentitySchemas::builtin(),
        ),
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading the identity schema {shown}: {e}"))?;
            let schemas =
                IdentitySchemas::load(&[(DEFAULT_SCHEMA_ID.to_owned(), path.to_path_buf())])
                    .map_err(|errors| errors.join("; "))?;
            (shown, text, schemas)
        }
    };
    let schema: Value =
        serde_json::from_str(&text).map_err(|e| format!("{shown} is not JSON: {e}"))?;
    let traits_schema = schema
        .pointer("/properties/traits")
        .ok_or_else(|| format!("{shown} has no properties.traits"))?;
    let traits = placeholder(traits_schema);
    schemas.validate_traits(DEFAULT_SCHEMA_ID, &traits).map_err(|e| {
        format!(
            "kratos-jit cannot make placeholder traits that satisfy {shown} ({e}); give those properties a `default`"
        )
    })?;
    Ok(traits)
}

fn placeholder(schema: &Value) -> Value {
    if let Some(value) = schema.get("default").or_else(|| schema.get("const")) {
        return value.clone();
    }
    if let Some(last) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.last())
    {
        return last.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str).unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            let mut out = Map::new();
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                out.insert(name.to_owned(), placeholder(property));
            }
            Value::Object(out)
        }
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(0)),
        "boolean" => json!(false),
        "array" => json!([]),
        "null" => Value::Null,
        _ if schema.get("format").and_then(Value::as_str) == Some("email") => {
            json!(PLACEHOLDER_EMAIL)
        }
        _ => json!(PLACEHOLDER_STRING),
    }
}

/// The Kratos-side mapper for `provider`, whose placeholder traits are `placeholder`.
pub fn kratos_mapper(provider: &str, placeholder: &Value, identity: IdentityVar) -> String {
    let quoted = serde_json::to_string(provider).unwrap_or_default();
    let id = quoted.trim_matches('"');
    let placeholder = serde_json::to_string_pretty(placeholder).unwrap_or_default();
    let carried = format!("{{ {CARRIED_CLAIMS_KEY}: {{ provider: {quoted}, claims: claims }} }}");
    let header = format!(
        "// Generated by `kratos-jit kratos-mapper --provider {id}{flag}`; do not edit.\n\
         // Kratos's claims mapper for provider {id} in web hook mode. It never fails and does not run the\n\
         // provider's mapper (mappers/{id}/mapper.jsonnet): kratos-jit's registration hook runs it on the\n\
         // claims carried under metadata_public.{CARRIED_CLAIMS_KEY}, answers the real traits (or refuses with a\n\
         // message), and removes the carried claims before Kratos persists the identity. The placeholder\n\
         // traits only satisfy the identity schema, which Kratos checks before the hook runs.\n",
        flag = match identity {
            IdentityVar::Registration => "",
            IdentityVar::FromKratos => " --identity-from-kratos",
        },
    );
    match identity {
        IdentityVar::Registration => format!(
            "{header}\
             local claims = std.extVar('claims');\n\
             local placeholder = {placeholder};\n\
             {{\n  identity: {{\n    traits: placeholder,\n    metadata_public: {carried},\n  }},\n}}\n"
        ),
        IdentityVar::FromKratos => format!(
            "{header}\
             // At a login (update_identity_on_login: automatic) it gives back the stored traits and metadata, so\n\
             // that Kratos's merge changes nothing but the carried claims; the login hook applies the update.\n\
             local claims = std.extVar('claims');\n\
             local placeholder = {placeholder};\n\
             local current = std.extVar('identity');\n\
             local part(name) = if std.isObject(current) && std.isObject(std.get(current, name)) then current[name] else {{}};\n\
             {{\n  identity: {{\n    traits: if std.length(part('traits')) > 0 then part('traits') else placeholder,\n    \
             metadata_public: part('metadata_public') + {carried},\n  }},\n}}\n"
        ),
    }
}

/// The hop-mode Kratos-side mapper (`deploy/kratos/mappers/hop.jsonnet`): the identity kratos-jit
/// wrote, as its id_token carries it in `kratos_jit_identity`. In hop mode Kratos finds that
/// identity and runs a login, so it never needs this mapper; should it ever register (an
/// identity deleted between the hop and Kratos's callback), it registers the same identity.
/// Without that claim it outputs empty traits, which the identity schema refuses in Kratos's
/// flow UI — never a Jsonnet error, whose page would show a stack trace.
pub const HOP_MAPPER: &str = "\
// The claims mapper of every provider in hop mode (deploy/kratos/kratos.yml): the identity kratos-jit
// wrote at the hop's callback, carried in its id_token's kratos_jit_identity claim (docs/hop.md).
// Kratos finds that identity and runs a login, so it does not run this mapper; should it ever
// register instead, it registers the same identity. It never fails: without the claim it gives
// empty traits, which the identity schema refuses.
local raw = std.get(std.extVar('claims'), 'raw_claims', {});
local carried = if std.isObject(raw) then std.get(raw, 'kratos_jit_identity') else null;
{
  identity: if std.isObject(carried) && std.isObject(std.get(carried, 'traits')) then carried else { traits: {} },
}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::{Evaluator, Limits, MapperSource, empty_identity};

    fn run_with(code: &str, claims: Value, identity: &Value) -> Value {
        let ev = Evaluator::new(
            &[MapperSource::new("p", "carrier.jsonnet", code)],
            Limits::default(),
        )
        .unwrap();
        ev.evaluate("p", &claims, identity).unwrap()
    }

    fn sample_placeholder() -> Value {
        placeholder_traits(None).unwrap()
    }

    #[test]
    fn the_sample_schemas_placeholders_are_valid_and_grant_nothing() {
        let traits = sample_placeholder();
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kratos/identity.schema.json");
        assert_eq!(placeholder_traits(Some(&file)).unwrap(), traits);
        assert_eq!(
            traits,
            json!({"email": PLACEHOLDER_EMAIL, "tenant_id": "kratos-jit-pending", "role": "guest"})
        );
        IdentitySchemas::builtin()
            .validate_traits("default", &traits)
            .unwrap();
    }

    #[test]
    fn a_schema_the_rules_cannot_satisfy_is_reported_with_the_way_out() {
        let dir = std::env::temp_dir().join(format!("carrier-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("schema.json");
        let schema = json!({"type": "object", "properties": {"traits": {"type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[0-9]{4}$"}}, "required": ["code"]}}});
        std::fs::write(&path, schema.to_string()).unwrap();
        let error = placeholder_traits(Some(&path)).unwrap_err();
        assert!(error.contains("default"), "{error}");
        let with_default = json!({"type": "object", "properties": {"traits": {"type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[0-9]{4}$", "default": "0000"}}, "required": ["code"]}}});
        std::fs::write(&path, with_default.to_string()).unwrap();
        assert_eq!(
            placeholder_traits(Some(&path)).unwrap(),
            json!({"code": "0000"})
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_carrier_carries_the_claims_with_placeholder_traits_and_never_fails() {
        let carrier = kratos_mapper(
            "okta-acme",
            &sample_placeholder(),
            IdentityVar::Registration,
        );
        assert!(
            carrier.starts_with("// Generated by `kratos-jit kratos-mapper --provider okta-acme`;")
        );
        for claims in [
            json!({"sub": "s1", "email": "ada@acme.example"}),
            json!({}),
            json!({"raw_claims": {"email": ["a", "b"], "groups": null}}),
        ] {
            let out = run_with(&carrier, claims.clone(), &empty_identity());
            assert_eq!(out["identity"]["traits"], sample_placeholder());
            assert_eq!(
                out["identity"]["metadata_public"],
                json!({CARRIED_CLAIMS_KEY: {"provider": "okta-acme", "claims": claims}})
            );
            assert_eq!(out["identity"].as_object().unwrap().len(), 2, "{out}");
        }
    }

    #[test]
    fn a_carrier_for_a_kratos_that_passes_the_identity_gives_back_what_is_stored() {
        let carrier = kratos_mapper("p", &sample_placeholder(), IdentityVar::FromKratos);
        assert!(carrier.starts_with(
            "// Generated by `kratos-jit kratos-mapper --provider p --identity-from-kratos`;"
        ));
        let claims = json!({"sub": "s1", "email": "ada@acme.example"});
        let stored = json!({"traits": {"role": "admin", "email": "ada@acme.example"},
            "metadata_public": {"x": 1}, "metadata_admin": {"y": 2}});
        let out = run_with(&carrier, claims.clone(), &stored);
        assert_eq!(out["identity"]["traits"], stored["traits"]);
        assert_eq!(
            out["identity"]["metadata_public"],
            json!({"x": 1, CARRIED_CLAIMS_KEY: {"provider": "p", "claims": claims}})
        );
        assert!(out["identity"].get("metadata_admin").is_none());
        // A registration: Kratos passes three empty objects.
        let out = run_with(&carrier, claims, &empty_identity());
        assert_eq!(out["identity"]["traits"], sample_placeholder());
    }

    #[test]
    fn the_hop_mapper_passes_the_carried_identity_through_and_never_fails() {
        let identity = json!({"traits": {"email": "ada@acme.example", "tenant_id": "tenant-acme", "role": "admin"},
            "metadata_public": {}, "verified_addresses": [{"value": "ada@acme.example", "via": "email"}]});
        let out = run_with(
            HOP_MAPPER,
            json!({"sub": "s", "raw_claims": {"kratos_jit_identity": identity}}),
            &empty_identity(),
        );
        assert_eq!(out["identity"], identity);
        for claims in [
            json!({}),
            json!({"raw_claims": {"kratos_jit_identity": "x"}}),
            json!({"raw_claims": []}),
        ] {
            let out = run_with(HOP_MAPPER, claims, &empty_identity());
            assert_eq!(out, json!({"identity": {"traits": {}}}));
        }
    }
}
