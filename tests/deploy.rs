//! What kratos-jit ships to wire it into Kratos, checked so that an edit cannot break it silently:
//! both Kratos configurations — `deploy/kratos/kratos.yml` (hop mode, docs/hop.md) and
//! `deploy/kratos/kratos.hooks.yml` (web hook mode, docs/kratos.md §1) — against Kratos's
//! configuration schemas (v26.2.0's and master's) and against the facts each mode depends on,
//! the generated Kratos-side claims mappers (never failing, whatever the claims), the web hook
//! body templates against Kratos's `ctx` (tests/fixtures/kratos-webhooks/), and
//! `docker-compose.yml`'s images, mounts and hop wiring.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::tla::{TlaArg, apply_tla};
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{State, Val};
use kratos_jit::provider::Providers;
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

/// The web hook mode configuration.
fn kratos_yml() -> Value {
    yaml_file(&repo().join("deploy/kratos/kratos.hooks.yml"))
}

/// The hop mode configuration, the one the local stack runs.
fn hop_yml() -> Value {
    yaml_file(&repo().join("deploy/kratos/kratos.yml"))
}

/// Every Kratos configuration shipped: `deploy/kratos/kratos*.yml`.
fn shipped_configs() -> Vec<(String, Value)> {
    let mut configs: Vec<(String, Value)> = std::fs::read_dir(repo().join("deploy/kratos"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("kratos") && name.ends_with(".yml")
        })
        .map(|path| (path.display().to_string(), yaml_file(&path)))
        .collect();
    configs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        configs.len(),
        2,
        "{:?}",
        configs.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    configs
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
fn kratos_config_validator(schema_file: &str) -> jsonschema::Validator {
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
    let schema = json_file(&fixtures().join("kratos").join(schema_file));
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

/// Kratos v26.2.0's configuration schema (the release the stack runs) and master's.
const CONFIG_SCHEMAS: [&str; 2] = ["config.schema-v26.2.0.json", "config.schema.json"];

#[test]
fn every_shipped_kratos_yml_is_valid_against_kratos_configuration_schemas() {
    for schema in CONFIG_SCHEMAS {
        let validator = kratos_config_validator(schema);
        for (file, config) in shipped_configs() {
            let violations = schema_violations(&validator, &config);
            assert!(
                violations.is_empty(),
                "{file} against {schema}:\n{}",
                violations.join("\n")
            );
        }
    }
}

#[test]
fn the_schema_check_refuses_a_misspelt_provider_key_and_an_unchecked_tracing_section() {
    for schema in CONFIG_SCHEMAS {
        let validator = kratos_config_validator(schema);

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

        let mut pkce = hop_yml();
        pkce["selfservice"]["methods"]["oidc"]["config"]["providers"][0]["pkce"] = json!("always");
        assert!(!schema_violations(&validator, &pkce).is_empty());
    }
}

#[test]
fn every_sample_provider_is_a_kratos_oidc_provider_running_its_generated_mapper() {
    for (hop, config) in [(false, kratos_yml()), (true, hop_yml())] {
        let providers = oidc_providers(&config);
        let configured: BTreeSet<String> = providers
            .iter()
            .map(|p| str_at(p, "/id").to_owned())
            .collect();
        assert_eq!(configured, provider_ids());
        for provider in &providers {
            let id = str_at(provider, "/id");
            assert_eq!(str_at(provider, "/provider"), "generic", "{id}");
            let mapper_url = str_at(provider, "/mapper_url");
            let mapper = if hop { "hop" } else { id };
            assert_eq!(
                mapper_url,
                format!("{KRATOS_CONFIG_DIR}mappers/{mapper}.jsonnet"),
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
}

#[test]
fn the_generated_kratos_side_mappers_are_up_to_date() {
    let committed: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kratos/mappers"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = provider_ids()
        .iter()
        .map(|id| format!("{id}.jsonnet"))
        .collect();
    expected.insert("hop.jsonnet".into());
    assert_eq!(
        committed, expected,
        "deploy/kratos/mappers/ must hold exactly one generated mapper per provider in mappers/, and hop.jsonnet"
    );
    assert!(
        read(&repo().join("deploy/kratos/mappers/hop.jsonnet")) == kratos_jit::carrier::HOP_MAPPER,
        "deploy/kratos/mappers/hop.jsonnet is not kratos_jit::carrier::HOP_MAPPER"
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

/// Every claims file the project holds — the providers' fixtures and the three claims sets
/// (hand-written, real Ory Polis, real SATOSA) — with its provider, plus claims of odd shapes.
fn every_claims_case() -> Vec<(String, String, Value)> {
    let mut cases = Vec::new();
    for provider in sample_providers().iter() {
        for fixture in &provider.fixtures {
            let name = fixture.claims_path.display().to_string();
            cases.push((
                provider.id.as_str().to_owned(),
                name,
                fixture.claims.clone(),
            ));
        }
    }
    for set in ["claims", "claims-polis", "claims-satosa"] {
        for id in provider_ids() {
            let dir = fixtures().join(set).join(&id);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "json") {
                    cases.push((id.clone(), path.display().to_string(), json_file(&path)));
                }
            }
        }
    }
    for odd in [
        json!({}),
        json!({"sub": "s", "iss": "i"}),
        json!({"sub": "s", "iss": "i", "raw_claims": {"email": ["a@b.example", 1], "groups": null, "kratos_jit_identity": 7}}),
    ] {
        for id in provider_ids() {
            cases.push((id, format!("odd claims {odd}"), odd.clone()));
        }
    }
    assert!(cases.len() > 50, "only {} claims cases", cases.len());
    cases
}

/// Kratos v26.2.0 binds only `claims` and runs the mapper only at registration. Whatever the
/// claims, each committed Kratos-side mapper must succeed (a failure there is Kratos's error
/// page with a Jsonnet stack trace, docs/hop.md §4), give traits the identity schema accepts
/// (Kratos validates them before the hooks run) and carry exactly the claims — so every decision,
/// a refusal included, is the registration hook's.
#[test]
fn every_kratos_side_mapper_succeeds_for_every_claims_case_and_carries_the_claims() {
    let schemas = kratos_jit::schema::IdentitySchemas::builtin();
    for (id, case, claims) in every_claims_case() {
        let identity = kratos_side_mapping(&id, &claims)
            .unwrap_or_else(|e| panic!("{id} {case}: Kratos's mapper failed: {e}"));
        schemas
            .validate_traits("default", &identity["traits"])
            .unwrap_or_else(|e| panic!("{id} {case}: {e}"));
        assert_eq!(
            identity["metadata_public"],
            json!({"kratos_jit_claims": {"provider": id, "claims": claims}}),
            "{case}"
        );
        assert_eq!(identity.as_object().unwrap().len(), 2, "{case}: {identity}");
    }
}

/// The same with go-jsonnet, the engine Kratos embeds (scripts/gojsonnet-eval.py), for the
/// providers' registration fixtures and the real bridges' claims.
#[test]
fn every_kratos_side_mapper_succeeds_alike_in_go_jsonnet() {
    let dir = std::env::temp_dir().join(format!("deploy-gojsonnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (n, (id, case, claims)) in every_claims_case().into_iter().enumerate() {
        let file = dir.join(format!("{n}.json"));
        std::fs::write(&file, claims.to_string()).unwrap();
        let carrier = format!("deploy/kratos/mappers/{id}.jsonnet");
        let out = Command::new("python3")
            .arg("scripts/gojsonnet-eval.py")
            .args(["--no-identity", &carrier, file.to_str().unwrap()])
            .current_dir(repo())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{id} {case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kratos: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            kratos["identity"],
            kratos_side_mapper(&id, &claims),
            "{case}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
fn every_file_a_shipped_kratos_yml_names_is_in_deploy_kratos() {
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
    let mut hop = Vec::new();
    urls(&hop_yml(), &mut hop);
    // The identity schema and the hop mapper, named by every provider.
    assert_eq!(hop.len(), provider_ids().len() + 1, "{hop:?}");
    for url in found.into_iter().chain(hop) {
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
fn the_local_stack_waits_for_kratos_jit_to_be_ready_not_only_alive() {
    let compose = compose();
    let kratos_jit = service(&compose, "kratos-jit");
    let probe = kratos_jit["healthcheck"]["test"].to_string();
    assert!(
        probe.contains("GET /health/ready ") && probe.contains("/4480"),
        "the healthcheck asks readiness on the listen port: {probe}"
    );
    assert!(!probe.contains("/health/alive"), "{probe}");
}

#[test]
fn the_kubernetes_example_probes_liveness_and_readiness_apart() {
    let deployment = yaml_file(&repo().join("deploy/kubernetes/kratos-jit.yaml"));
    let container = deployment
        .pointer("/spec/template/spec/containers/0")
        .expect("a container");
    assert_eq!(
        str_at(container, "/livenessProbe/httpGet/path"),
        "/health/alive"
    );
    assert_eq!(
        str_at(container, "/readinessProbe/httpGet/path"),
        "/health/ready"
    );
    // Its settings are real ones: the configuration accepts every KRATOS_JIT__ variable.
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_at(e, "/name").to_owned(),
                str_at(e, "/value").to_owned(),
            )
        })
        .filter(|(name, _)| name.starts_with("KRATOS_JIT__HEALTH__"))
        .collect();
    assert_eq!(env.len(), 2);
    let mut settings = env;
    settings.push((
        "KRATOS_JIT__API__SECRETS".into(),
        "a-long-enough-api-secret".into(),
    ));
    kratos_jit::config::load_from(None, settings).expect("the example's health settings load");
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

/// Hop mode (docs/hop.md): every provider signs in with kratos-jit's hop for it, exactly at the
/// issuer the stack gives kratos-jit, with PKCE forced and the client secret kratos-jit reads;
/// Kratos registers nobody and calls no kratos-jit web hook; the upstream knows the hop's
/// callback; the signing key is mounted where kratos-jit is told to read it.
#[test]
fn hop_mode_signs_in_through_the_hop_the_stack_runs() {
    let (config, compose) = (hop_yml(), compose());
    let kratos_jit = service(&compose, "kratos-jit");
    let public_url = env(kratos_jit, "KRATOS_JIT__HOP__PUBLIC_URL");
    assert!(!public_url.ends_with('/'), "{public_url}");
    // Kratos (a container) and the browser both use the issuer: a name the compose network
    // resolves to kratos-jit, on the port kratos-jit listens on and publishes on loopback.
    let host = public_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once(':'))
        .map(|(host, port)| (host.to_owned(), port.to_owned()))
        .expect("http://HOST:PORT");
    let aliases = kratos_jit
        .pointer("/networks/default/aliases")
        .and_then(Value::as_array)
        .expect("kratos-jit has network aliases");
    assert!(aliases.contains(&json!(host.0)), "{host:?} is not an alias");
    assert!(
        host.0.ends_with(".localhost"),
        "browsers resolve *.localhost only"
    );
    let ports = kratos_jit["ports"].as_array().unwrap();
    assert!(
        ports.contains(&json!(format!("127.0.0.1:{0}:{0}", host.1))),
        "{ports:?}"
    );
    let secret = env(kratos_jit, "KRATOS_JIT_HOP_CLIENT_SECRET");
    for provider in oidc_providers(&config) {
        let id = str_at(&provider, "/id");
        assert_eq!(
            str_at(&provider, "/issuer_url"),
            format!("{public_url}/hop/{id}")
        );
        assert_eq!(str_at(&provider, "/pkce"), "force", "{id}");
        assert_eq!(str_at(&provider, "/client_secret"), secret, "{id}");
        assert_eq!(str_at(&provider, "/client_id"), "kratos", "{id}");
        // The claims come from the hop's id_token.
        assert!(
            provider
                .get("claims_source")
                .is_none_or(|s| s == "id_token"),
            "{id}"
        );
        // Upstream secret of each provider, as its [hop.upstream] section names it.
        let upstream = format!(
            "KRATOS_JIT_UPSTREAM_{}_SECRET",
            id.to_uppercase().replace('-', "_")
        );
        env(kratos_jit, &upstream);
    }
    assert_eq!(
        config.pointer("/selfservice/flows/registration/enabled"),
        Some(&json!(false))
    );
    assert!(config.pointer("/selfservice/flows/login/after").is_none());
    assert!(
        config
            .pointer("/selfservice/flows/registration/after")
            .is_none()
    );
    assert!(
        !serde_json::to_string(&config)
            .unwrap()
            .contains("/v1/hooks/")
    );

    // The signing key kratos-jit is given is a mounted file of the repository.
    let key = env(kratos_jit, "KRATOS_JIT__HOP__SIGNING_KEYS");
    let mount = kratos_jit["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| {
            let (source, rest) = v.split_once(':')?;
            let target = rest.trim_end_matches(":ro");
            key.strip_prefix(target)
                .map(|file| format!("{source}{file}"))
        })
        .expect("the signing key is in a mounted folder");
    let pem = read(&repo().join(&mount));
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{mount}");

    // Polis redirects to the hop's callback.
    let setup = service(&compose, "polis-setup");
    assert_eq!(env(setup, "HOP_PUBLIC_URL"), public_url);
    let script = read(&repo().join("deploy/polis/setup-connections.mjs"));
    assert!(script.contains("/hop/${c.tenant}/callback"));
    assert!(script.contains("defaultRedirectUrl: hopCallback"));

    // The stack runs hop mode unless told otherwise, and web hook mode on request.
    let command = service(&compose, "kratos")["command"].to_string();
    assert!(
        command.contains("/etc/config/kratos/${KRATOS_CONFIG:-kratos.yml}"),
        "{command}"
    );
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
