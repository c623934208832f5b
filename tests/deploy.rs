//! What kratos-jit ships to wire it into Kratos, checked so that an edit cannot break it silently:
//! `deploy/kratos/kratos.yml` against Kratos's configuration schema and against the facts the
//! hooks depend on (docs/kratos.md §1), the generated Kratos-side claims mappers against the
//! providers they come from, the web hook body templates against Kratos's `ctx`
//! (tests/fixtures/kratos-webhooks/), and `docker-compose.yml`'s images and mounts.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::tla::{TlaArg, apply_tla};
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{State, Val};
use kratos_jit::mapper::{Evaluator, Limits, MapperError, MapperSource, empty_identity};
use kratos_jit::provider::{Fixture, Providers};
use serde::Deserialize as _;
use serde_json::{Value, json};

/// Where Kratos finds `deploy/kratos/` in the container (docker-compose.yml mounts it there).
const KRATOS_CONFIG_DIR: &str = "file:///etc/config/kratos/";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_file(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn kratos_yml() -> Value {
    yaml_file(&repo().join("deploy/kratos/kratos.yml"))
}

fn compose() -> Value {
    yaml_file(&repo().join("docker-compose.yml"))
}

/// The sample providers: the folders of `mappers/` that hold a `provider.toml`.
fn provider_ids() -> BTreeSet<String> {
    let ids: BTreeSet<String> = std::fs::read_dir(repo().join("mappers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("provider.toml").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!ids.is_empty(), "no provider folder in mappers/");
    ids
}

fn oidc_providers(config: &Value) -> Vec<Value> {
    config
        .pointer("/selfservice/methods/oidc/config/providers")
        .and_then(Value::as_array)
        .cloned()
        .expect("kratos.yml has no selfservice.methods.oidc.config.providers")
}

fn hooks(config: &Value, pointer: &str) -> Vec<Value> {
    config
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("kratos.yml has no hook list at {pointer}"))
}

/// The repository file a `file:///etc/config/kratos/...` URL names in the container.
fn deployed_file(url: &str) -> PathBuf {
    let relative = url
        .strip_prefix(KRATOS_CONFIG_DIR)
        .unwrap_or_else(|| panic!("{url} is not under {KRATOS_CONFIG_DIR}"));
    repo().join("deploy/kratos").join(relative)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// The validator of Kratos's configuration schema (draft-07). The schema's only reference
/// outside itself, `ory://tracing-config` (ory/x's tracing schema, which tests/fixtures/ does
/// not hold), is served as `false`: kratos.yml configures no tracing, and one that did would be
/// refused here rather than accepted unchecked.
fn kratos_config_validator() -> jsonschema::Validator {
    struct OryRefs;
    impl jsonschema::Retrieve for OryRefs {
        fn retrieve(
            &self,
            uri: &jsonschema::Uri<String>,
        ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            match uri.as_str() {
                "ory://tracing-config" => Ok(json!(false)),
                other => Err(format!("no offline copy of {other}").into()),
            }
        }
    }
    let schema = json_file(&fixtures().join("kratos/config.schema.json"));
    jsonschema::options()
        .should_validate_formats(true)
        .with_retriever(OryRefs)
        .build(&schema)
        .expect("Kratos's configuration schema compiles")
}

fn schema_violations(validator: &jsonschema::Validator, config: &Value) -> Vec<String> {
    validator
        .iter_errors(config)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn kratos_yml_is_valid_against_kratos_configuration_schema() {
    let violations = schema_violations(&kratos_config_validator(), &kratos_yml());
    assert!(
        violations.is_empty(),
        "deploy/kratos/kratos.yml:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_schema_check_refuses_a_misspelt_provider_key_and_an_unchecked_tracing_section() {
    let validator = kratos_config_validator();

    let mut misspelt = kratos_yml();
    let provider = misspelt
        .pointer_mut("/selfservice/methods/oidc/config/providers/0")
        .unwrap()
        .as_object_mut()
        .unwrap();
    let mapper = provider.remove("mapper_url").unwrap();
    provider.insert("mapper_uri".into(), mapper);
    assert!(!schema_violations(&validator, &misspelt).is_empty());

    let mut tracing = kratos_yml();
    tracing["tracing"] = json!({"provider": "otel"});
    assert!(!schema_violations(&validator, &tracing).is_empty());
}

#[test]
fn every_sample_provider_is_a_kratos_oidc_provider_running_its_generated_mapper() {
    let providers = oidc_providers(&kratos_yml());
    let configured: BTreeSet<String> = providers
        .iter()
        .map(|p| str_at(p, "/id").to_owned())
        .collect();
    assert_eq!(configured, provider_ids());
    for provider in &providers {
        let id = str_at(provider, "/id");
        assert_eq!(str_at(provider, "/provider"), "generic", "{id}");
        let mapper_url = str_at(provider, "/mapper_url");
        assert_eq!(
            mapper_url,
            format!("{KRATOS_CONFIG_DIR}mappers/{id}.jsonnet"),
            "{id}"
        );
        assert!(deployed_file(mapper_url).is_file(), "{mapper_url}");
        let scope: Vec<&str> = provider["scope"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has no scope"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(scope, ["openid", "email", "profile"], "{id}");
    }
}

#[test]
fn the_generated_kratos_side_mappers_are_up_to_date() {
    let committed: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kratos/mappers"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = provider_ids()
        .iter()
        .map(|id| format!("{id}.jsonnet"))
        .collect();
    assert_eq!(
        committed, expected,
        "deploy/kratos/mappers/ must hold exactly one generated mapper per provider in mappers/"
    );

    let config = kratos_yml();
    for id in provider_ids() {
        // A Kratos that re-runs the mapper at login passes the current identity itself, and the
        // mapper must see it; otherwise (Kratos v26.2.0) the carrier binds a registration's.
        let updates_on_login = oidc_providers(&config)
            .iter()
            .any(|p| p["id"] == id.as_str() && p["update_identity_on_login"] == "automatic");
        let mut args = vec!["kratos-mapper", "--provider", &id];
        if updates_on_login {
            args.push("--identity-from-kratos");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
            .args(&args)
            .current_dir(repo())
            .output()
            .expect("running kratos-jit kratos-mapper");
        assert!(
            out.status.success(),
            "kratos-mapper --provider {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let generated = String::from_utf8(out.stdout).unwrap();
        assert!(
            generated == read(&repo().join(format!("deploy/kratos/mappers/{id}.jsonnet"))),
            "deploy/kratos/mappers/{id}.jsonnet is not what Kratos should run for mappers/{id}/; \
             regenerate it: cargo run -- {} > deploy/kratos/mappers/{id}.jsonnet",
            args.join(" ")
        );
    }
}

/// The sample providers as `kratos-jit check` loads them.
fn sample_providers() -> Providers {
    Providers::load(&repo().join("mappers"))
        .unwrap_or_else(|errors| panic!("the sample providers do not load: {errors:?}"))
        .0
}

/// Every provider's registration fixtures: the cases without a current identity, the login that
/// creates it.
fn registration_fixtures(providers: &Providers) -> impl Iterator<Item = (&str, &Fixture)> {
    providers.iter().flat_map(|provider| {
        provider
            .fixtures
            .iter()
            .filter(|fixture| fixture.identity.is_none())
            .map(|fixture| (provider.id.as_str(), fixture))
    })
}

/// A Kratos-side mapper's identity without the carried claims: what the provider's own mapper
/// gave.
fn without_carried_claims(mut identity: Value) -> Value {
    let public = identity["metadata_public"]
        .as_object_mut()
        .expect("the carrier always writes metadata_public");
    assert!(
        public.remove("kratos_jit_claims").is_some(),
        "no carried claims"
    );
    if public.is_empty() {
        identity.as_object_mut().unwrap().remove("metadata_public");
    }
    identity
}

/// Kratos v26.2.0 binds only `claims` and runs the mapper only at registration. There each
/// committed Kratos-side mapper must give what kratos-jit's own evaluation of the provider's
/// mapper gives (with the empty identity of a registration): the same identity, or the same
/// refusal. entra-globex reads `std.extVar('identity')` on group overage, which Kratos v26.2.0
/// does not define.
#[test]
fn every_kratos_side_mapper_maps_a_registration_as_kratos_jit_does_in_kratos_v26_2_0() {
    let providers = sample_providers();
    assert!(
        registration_fixtures(&providers)
            .any(|(_, fixture)| fixture.name == "group-overage-new-user"),
        "the entra-globex overage case is among the fixtures"
    );
    let sources: Vec<MapperSource> = providers.iter().map(|p| p.mapper.clone()).collect();
    let evaluator = Evaluator::new(&sources, Limits::default()).unwrap();
    for (id, fixture) in registration_fixtures(&providers) {
        let case = fixture.claims_path.display();
        let claims = &fixture.claims;
        let ours = evaluator.evaluate(id, claims, &empty_identity());
        match (ours, kratos_side_mapping(id, claims)) {
            (Ok(ours), Ok(kratos)) => {
                assert_eq!(without_carried_claims(kratos), ours["identity"], "{case}")
            }
            (Err(MapperError::Denied { message, .. }), Err(kratos)) => {
                assert!(kratos.contains(&message), "{case}: {kratos}")
            }
            (ours, kratos) => panic!("{case}: kratos-jit gave {ours:?}, Kratos {kratos:?}"),
        }
    }
}

/// The same with go-jsonnet, the engine Kratos embeds (scripts/gojsonnet-eval.py).
#[test]
fn every_kratos_side_mapper_maps_a_registration_alike_in_go_jsonnet() {
    let go_jsonnet = |args: &[&str]| {
        let out = Command::new("python3")
            .arg("scripts/gojsonnet-eval.py")
            .args(args)
            .current_dir(repo())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.code() != Some(2),
            "gojsonnet-eval.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    let providers = sample_providers();
    for (id, fixture) in registration_fixtures(&providers) {
        let claims = fixture.claims_path.to_str().unwrap();
        let mapper = format!("mappers/{id}/mapper.jsonnet");
        let carrier = format!("deploy/kratos/mappers/{id}.jsonnet");
        // The provider's mapper as Kratos master runs it at registration, and the committed
        // Kratos-side mapper as Kratos v26.2.0 runs it.
        let reference = go_jsonnet(&[&mapper, claims]);
        let kratos = go_jsonnet(&["--no-identity", &carrier, claims]);
        match (reference, kratos) {
            (Some(reference), Some(kratos)) => assert_eq!(
                without_carried_claims(kratos["identity"].clone()),
                reference["identity"],
                "{claims}"
            ),
            (None, None) => {}
            (reference, kratos) => panic!("{claims}: {reference:?} against {kratos:?}"),
        }
    }
}

/// `hook` calls kratos-jit's `path` with `template` the way the hooks need.
fn check_kratos_jit_web_hook(hook: &Value, path: &str, template: &str) {
    assert_eq!(hook["hook"], "web_hook", "{hook}");
    let config = &hook["config"];
    let url = str_at(config, "/url");
    assert!(url.ends_with(path), "{url} does not call {path}");
    assert_eq!(config["method"], "POST");
    // Pre-persist registration, able to refuse with `messages` (docs/kratos.md §1.4, §1.7).
    assert_eq!(config.pointer("/response/parse"), Some(&json!(true)));
    assert_ne!(config.pointer("/response/ignore"), Some(&json!(true)));
    // Kratos's retries keep their Ory-Webhook-Trigger-ID only with analytics events on.
    assert_ne!(config.get("emit_analytics_event"), Some(&json!(false)));
    let body = str_at(config, "/body");
    assert_eq!(body, format!("{KRATOS_CONFIG_DIR}hooks/{template}"));
    assert!(deployed_file(body).is_file(), "{body}");
    assert_eq!(config.pointer("/auth/type"), Some(&json!("api_key")));
    assert_eq!(
        config.pointer("/auth/config/name"),
        Some(&json!("Authorization"))
    );
    assert_eq!(config.pointer("/auth/config/in"), Some(&json!("header")));
    assert!(str_at(config, "/auth/config/value").starts_with("Bearer "));
}

#[test]
fn the_registration_hook_runs_pre_persist_under_after_oidc_and_the_session_hook_last() {
    let list = hooks(
        &kratos_yml(),
        "/selfservice/flows/registration/after/oidc/hooks",
    );
    assert_eq!(list.len(), 2, "{list:?}");
    check_kratos_jit_web_hook(&list[0], "/v1/hooks/registration", "registration.jsonnet");
    assert_eq!(list[1], json!({"hook": "session"}));
}

#[test]
fn the_login_hook_runs_under_login_after_oidc() {
    let list = hooks(&kratos_yml(), "/selfservice/flows/login/after/oidc/hooks");
    assert_eq!(list.len(), 1, "{list:?}");
    check_kratos_jit_web_hook(&list[0], "/v1/hooks/login", "login.jsonnet");
}

#[test]
fn every_file_kratos_yml_names_is_in_deploy_kratos() {
    fn urls(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::String(s) if s.starts_with("file://") => found.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| urls(v, found)),
            Value::Object(map) => map.values().for_each(|v| urls(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    urls(&kratos_yml(), &mut found);
    // The identity schema, one mapper per provider, two body templates.
    assert_eq!(found.len(), provider_ids().len() + 3, "{found:?}");
    for url in found {
        assert!(deployed_file(&url).is_file(), "{url}");
    }
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .pointer(&format!("/services/{name}"))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no environment variable {name} in {service}"))
}

#[test]
fn the_local_stack_gives_kratos_jit_the_hook_secret_kratos_sends() {
    let (config, compose) = (kratos_yml(), compose());
    let kratos_jit = service(&compose, "kratos-jit");
    // The image listens where its Dockerfile says, unless the stack overrides it.
    let dockerfile = read(&repo().join("Dockerfile"));
    let listen = kratos_jit["environment"]["KRATOS_JIT__LISTEN"]
        .as_str()
        .or_else(|| {
            let rest = dockerfile.split("KRATOS_JIT__LISTEN=").nth(1)?;
            rest.split_whitespace().next()
        })
        .expect("kratos-jit's listen address");
    let port = listen.rsplit(':').next().unwrap();
    let accepted: Vec<&str> = env(kratos_jit, "KRATOS_JIT__HOOKS__SECRETS")
        .split(',')
        .collect();
    for pointer in [
        "/selfservice/flows/registration/after/oidc/hooks/0/config",
        "/selfservice/flows/login/after/oidc/hooks/0/config",
    ] {
        let hook = config.pointer(pointer).unwrap();
        let sent = str_at(hook, "/auth/config/value");
        let secret = sent.strip_prefix("Bearer ").unwrap();
        assert!(
            accepted.contains(&secret),
            "{pointer}: kratos-jit does not accept {sent}"
        );
        assert!(
            str_at(hook, "/url").starts_with(&format!("http://kratos-jit:{port}/")),
            "{pointer}: not the kratos-jit service"
        );
    }
}

#[test]
fn the_providers_behind_polis_are_exactly_the_polis_connections_of_the_local_stack() {
    let compose = compose();
    let polis = service(&compose, "polis");
    let setup = service(&compose, "polis-setup");
    let issuer = env(polis, "EXTERNAL_URL");
    let behind_polis: Vec<Value> = oidc_providers(&kratos_yml())
        .into_iter()
        .filter(|p| p["issuer_url"] == issuer)
        .collect();
    // The tenants deploy/polis/setup-connections.mjs creates connections for.
    let script = read(&repo().join("deploy/polis/setup-connections.mjs"));
    let connections: BTreeSet<&str> = script
        .split("tenant: '")
        .skip(1)
        .map(|rest| rest.split('\'').next().unwrap())
        .collect();
    let ids: BTreeSet<&str> = behind_polis.iter().map(|p| str_at(p, "/id")).collect();
    assert!(!ids.is_empty(), "no provider's issuer is Polis ({issuer})");
    assert_eq!(ids, connections);
    for provider in &behind_polis {
        let id = str_at(provider, "/id");
        assert_eq!(
            str_at(provider, "/client_id"),
            format!("tenant={id}&product={}", env(setup, "POLIS_PRODUCT"))
        );
        assert_eq!(
            str_at(provider, "/client_secret"),
            env(polis, "CLIENT_SECRET_VERIFIER")
        );
        // Polis's `raw` SAML attributes, which the mappers read, come only from userinfo.
        assert_eq!(str_at(provider, "/claims_source"), "userinfo");
    }
}

/// A jrsonnet state with the standard library and no import resolver (Kratos allows no imports).
fn jsonnet() -> (State, jrsonnet_stdlib::ContextInitializer) {
    let std_ctx = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    let mut builder = State::builder();
    builder.context_initializer(std_ctx.clone());
    (builder.build(), std_ctx)
}

fn to_json(val: Val) -> Value {
    serde_json::to_value(&val).expect("a JSON value")
}

/// What the committed Kratos-side mapper of `provider` outputs for `claims`, with only the
/// `claims` ext var bound, as in Kratos v26.2.0: its `identity`, or the error.
fn kratos_side_mapping(provider: &str, claims: &Value) -> Result<Value, String> {
    let (state, std_ctx) = jsonnet();
    std_ctx.add_ext_var("claims".into(), Val::deserialize(claims).unwrap());
    let path = repo().join(format!("deploy/kratos/mappers/{provider}.jsonnet"));
    state
        .evaluate_snippet(path.display().to_string(), read(&path))
        .and_then(|val| val.manifest(JsonFormat::minify()))
        .map(|json| serde_json::from_str::<Value>(&json).unwrap()["identity"].clone())
        .map_err(|e| e.to_string())
}

fn kratos_side_mapper(provider: &str, claims: &Value) -> Value {
    kratos_side_mapping(provider, claims).unwrap_or_else(|e| panic!("{provider}: {e}"))
}

/// The body Kratos would send: `template` (`function(ctx) ...`) applied to `ctx` as a
/// top-level argument, as Kratos does (docs/kratos.md §1.3).
// `apply_tla` takes its arguments keyed by `IStr`, whose interior mutability (the interner's
// reference count) never changes its hash.
#[allow(clippy::mutable_key_type)]
fn hook_body(template: &str, ctx: &Value) -> Value {
    let (state, _) = jsonnet();
    let path = repo().join("deploy/kratos/hooks").join(template);
    let args = HashMap::from([("ctx".into(), TlaArg::Val(Val::deserialize(ctx).unwrap()))]);
    state
        .evaluate_snippet(path.display().to_string(), read(&path))
        .and_then(|function| apply_tla(&args, function))
        .map(to_json)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Kratos's `ctx` for an okta-acme sign-in, with `ctx.identity` holding what the Kratos-side
/// mapper made of a sample login (the fixtures' `<< ... >>` placeholders replaced).
fn ctx_after_mapping(fixture: &str) -> (Value, Value) {
    let claims = json_file(&fixtures().join("claims/okta-acme/admin.json"));
    let mapped = kratos_side_mapper("okta-acme", &claims);
    assert_eq!(
        mapped["metadata_public"]["kratos_jit_claims"],
        json!({"provider": "okta-acme", "claims": claims}),
        "the Kratos-side mapper must carry the claims to the hooks"
    );
    let mut ctx = json_file(&fixtures().join("kratos-webhooks").join(fixture));
    ctx["identity"]["traits"] = mapped["traits"].clone();
    ctx["identity"]["metadata_public"] = mapped["metadata_public"].clone();
    if ctx.pointer("/session/identity").is_some() {
        ctx["session"]["identity"] = ctx["identity"].clone();
    }
    (ctx, mapped)
}

/// The body holds nothing of the browser's request: no cookie and no header value.
fn assert_no_request_data(body: &Value, ctx: &Value) {
    let text = body.to_string();
    let cookies = ctx["request_cookies"].as_object().unwrap();
    let headers = ctx["request_headers"].as_object().unwrap();
    assert!(!cookies.is_empty() && !headers.is_empty());
    for (name, value) in cookies {
        assert!(!text.contains(name.as_str()), "cookie {name} in {text}");
        assert!(
            !text.contains(value.as_str().unwrap()),
            "cookie {name} in {text}"
        );
    }
    for (name, values) in headers {
        for value in values.as_array().unwrap() {
            assert!(
                !text.contains(value.as_str().unwrap()),
                "header {name} in {text}"
            );
        }
    }
}

#[test]
fn the_registration_body_carries_the_mapped_identity_and_nothing_of_the_request() {
    let (ctx, mapped) = ctx_after_mapping("registration-oidc-ctx.json");

    let body = hook_body("registration.jsonnet", &ctx);

    assert_eq!(
        body,
        json!({
            "flow_id": ctx["flow"]["id"],
            "identity": {
                "traits": mapped["traits"],
                "metadata_public": mapped["metadata_public"],
                "verifiable_addresses": ctx["identity"]["verifiable_addresses"],
            },
        })
    );
    assert_eq!(body["identity"]["traits"]["role"], "admin");
    assert_no_request_data(&body, &ctx);
    let parsed: kratos_jit::http::hooks::body::HookBody = serde_json::from_value(body).unwrap();
    assert_eq!(parsed.identity.traits, mapped["traits"]);
}

#[test]
fn the_registration_body_tolerates_an_identity_without_metadata_or_addresses() {
    let (mut ctx, mapped) = ctx_after_mapping("registration-oidc-ctx.json");
    let identity = ctx["identity"].as_object_mut().unwrap();
    identity.remove("metadata_public");
    identity.remove("verifiable_addresses");

    let body = hook_body("registration.jsonnet", &ctx);

    assert_eq!(
        body["identity"],
        json!({"traits": mapped["traits"], "metadata_public": null, "verifiable_addresses": []})
    );
}

#[test]
fn the_login_body_carries_the_identity_and_the_sessions_authentication_only() {
    let (ctx, mapped) = ctx_after_mapping("login-oidc-ctx.json");

    let body = hook_body("login.jsonnet", &ctx);

    assert_eq!(
        body,
        json!({
            "flow_id": ctx["flow"]["id"],
            "identity": {
                "id": ctx["identity"]["id"],
                "traits": mapped["traits"],
                "metadata_public": mapped["metadata_public"],
            },
            "session": {
                "authenticated_at": ctx["session"]["authenticated_at"],
                "authentication_methods": ctx["session"]["authentication_methods"],
            },
        })
    );
    assert_no_request_data(&body, &ctx);
    // Neither the session's devices (IP address, user agent) nor its copy of the identity.
    assert!(!body.to_string().contains("203.0.113.7"));
    let parsed: kratos_jit::http::hooks::body::HookBody = serde_json::from_value(body).unwrap();
    let session = parsed.session.expect("the session");
    assert_eq!(session.authentication_methods[0]["provider"], "okta-acme");
}

#[test]
fn the_login_body_leaves_the_session_out_when_kratos_sends_none() {
    let (mut ctx, _) = ctx_after_mapping("login-oidc-ctx.json");
    ctx.as_object_mut().unwrap().remove("session");

    let body = hook_body("login.jsonnet", &ctx);

    assert_eq!(body.get("session"), None);
    assert_eq!(body["identity"]["id"], ctx["identity"]["id"]);
}

/// An image reference names a version: a tag other than `latest`, or a digest.
fn is_pinned(image: &str) -> bool {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        return digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
    }
    // A tag is after the last `/`: a `:` before it is a registry port.
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

#[test]
fn the_pin_rule_refuses_latest_and_untagged_images() {
    assert!(is_pinned("postgres:17.6-alpine"));
    assert!(is_pinned("quay.io/keycloak/keycloak:26.7.0"));
    assert!(is_pinned(&format!("oryd/kratos@sha256:{}", "a".repeat(64))));
    assert!(!is_pinned("postgres"));
    assert!(!is_pinned("postgres:latest"));
    assert!(!is_pinned("registry.example:5000/kratos"));
    assert!(!is_pinned("oryd/kratos@sha256:abc"));
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has services")
}

#[test]
fn every_compose_image_is_pinned_to_a_version() {
    let compose = compose();
    for (name, service) in services(&compose) {
        match service.get("image").and_then(Value::as_str) {
            Some(image) => assert!(is_pinned(image), "{name}: {image} is not pinned"),
            None => assert!(service.get("build").is_some(), "{name}: no image, no build"),
        }
    }
}

#[test]
fn every_host_path_the_compose_file_mounts_exists_in_the_repository() {
    let compose = compose();
    let named: BTreeSet<&String> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().collect())
        .unwrap_or_default();
    let mut checked = 0;
    for (name, service) in services(&compose) {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = match volume {
                Value::String(short) => short.split(':').next().unwrap().to_owned(),
                long => str_at(long, "/source").to_owned(),
            };
            if source.starts_with('.') || source.starts_with('/') {
                let path = repo().join(&source);
                assert!(
                    path.exists() && path.starts_with(repo()) && !source.contains(".."),
                    "{name}: {source} is not a path in the repository"
                );
                checked += 1;
            } else {
                assert!(
                    named.contains(&source),
                    "{name}: undeclared volume {source}"
                );
            }
        }
        if let Some(build) = service.get("build") {
            let context = repo().join(str_at(build, "/context"));
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(context.join(dockerfile).is_file(), "{name}: {dockerfile}");
        }
    }
    assert!(checked >= 5, "only {checked} host paths mounted");
}

#[test]
fn every_published_port_is_bound_to_loopback() {
    let compose = compose();
    for (name, service) in services(&compose) {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {port} not as HOST_IP:HOST:CONTAINER"));
            assert!(port.starts_with("127.0.0.1:"), "{name}: {port}");
        }
    }
}
