//! The valid inputs mutations start from: the mappers' claims fixtures, and the web hook bodies
//! Kratos sends for them (the shipped body templates over the `ctx` fixtures, the identity as the
//! shipped Kratos-side mapper leaves it).

use std::path::{Path, PathBuf};

use kratos_jit::carrier::{CARRIED_CLAIMS_KEY, IdentityVar, kratos_mapper, placeholder_traits};
use kratos_jit::mapper::{Evaluator, Limits, MapperSource, empty_identity};
use serde_json::{Value, json};

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One claims fixture of a sample provider.
#[derive(Clone, Debug)]
pub struct ClaimsFixture {
    pub provider: String,
    pub claims: Value,
}

/// Every `mappers/<provider>/tests/<case>.claims.json`, in path order.
pub fn claims_fixtures() -> Vec<ClaimsFixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("mappers"))
        .unwrap()
        .flat_map(|provider| std::fs::read_dir(provider.unwrap().path().join("tests")).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".claims.json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let provider = path
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let claims = serde_json::from_str(&read(&path)).unwrap();
            ClaimsFixture { provider, claims }
        })
        .collect()
}

/// Evaluates Jsonnet `code` with `value` as `std.extVar('claims')`; `None` when it fails.
fn evaluate(name: &str, code: &str, value: &Value) -> Option<Value> {
    let evaluator =
        Evaluator::new(&[MapperSource::new("x", name, code)], Limits::default()).unwrap();
    evaluator.evaluate("x", value, &empty_identity()).ok()
}

/// The `ctx` of `flow`: at registration the identity Kratos builds with the carrier mapper
/// (placeholder traits, the carried claims), at login the traits the provider's mapper gives
/// (what kratos-jit wrote); `None` where the provider's mapper refuses the claims.
fn ctx(flow: &str, provider: &str, claims: &Value) -> Option<Value> {
    let mapper = read(
        &manifest_dir()
            .join("mappers")
            .join(provider)
            .join("mapper.jsonnet"),
    );
    let decided = evaluate("mapper.jsonnet", &mapper, claims)?["identity"].clone();
    let placeholder = placeholder_traits(None).unwrap();
    let carrier = kratos_mapper(provider, &placeholder, IdentityVar::Registration);
    let mapped =
        evaluate("carrier.jsonnet", &carrier, claims).expect("the carrier never fails")["identity"]
            .clone();
    let path = manifest_dir().join(format!(
        "tests/fixtures/kratos-webhooks/{flow}-oidc-ctx.json"
    ));
    let mut ctx: Value = serde_json::from_str(&read(&path)).unwrap();
    ctx["identity"]["traits"] = match flow {
        "login" => decided["traits"].clone(),
        _ => mapped["traits"].clone(),
    };
    ctx["identity"]["metadata_public"] = mapped["metadata_public"].clone();
    if let Some(session) = ctx.get_mut("session") {
        session["authentication_methods"][0]["provider"] = json!(provider);
        session["identity"] = Value::Null;
    }
    Some(ctx)
}

/// The body the shipped template of `flow` makes of `ctx`.
fn hook_body(flow: &str, ctx: &Value) -> Value {
    let template = read(&manifest_dir().join(format!("deploy/kratos/hooks/{flow}.jsonnet")));
    evaluate(
        &format!("{flow}.jsonnet"),
        &format!("({template})(std.extVar('claims'))"),
        ctx,
    )
    .expect("the body template evaluates")
}

/// What Kratos sends the registration hook for `claims`.
pub fn registration_body(provider: &str, claims: &Value) -> Option<Value> {
    Some(hook_body(
        "registration",
        &ctx("registration", provider, claims)?,
    ))
}

/// What Kratos sends the login hook for `claims` and the identity `identity_id`: with claims
/// issued for this sign-in when `fresh` (Kratos re-ran the mapper), else the registration's.
pub fn login_body(provider: &str, claims: &Value, identity_id: &str, fresh: bool) -> Option<Value> {
    let mut ctx = ctx("login", provider, claims)?;
    ctx["identity"]["id"] = json!(identity_id);
    if fresh {
        let iat =
            ctx["identity"]["metadata_public"][CARRIED_CLAIMS_KEY]["claims"]["raw_claims"]["iat"]
                .as_i64()?;
        let at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(iat as u64 + 2),
        );
        ctx["session"]["authenticated_at"] = json!(at.to_string());
    }
    Some(hook_body("login", &ctx))
}
