use super::*;

const SECRET: &str = "0123456789abcdef0123";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_and_environment_make_a_valid_config() {
    let config = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__MAPPER__WORKERS", "3"),
        ]),
    )
    .unwrap();
    assert_eq!(config.listen, "127.0.0.1:4480".parse().unwrap());
    assert_eq!(config.kratos.admin_url, "http://127.0.0.1:4434");
    assert_eq!(config.mapper.workers, 3);
    assert_eq!(config.api.secrets, vec![Secret::new(SECRET)]);
}

#[test]
fn the_connection_and_body_limits_have_defaults_and_can_be_set() {
    let defaults = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();
    assert_eq!(defaults.max_connections, 512);
    assert_eq!(defaults.body_timeout, Duration::from_secs(5));
    assert_eq!(defaults.api.max_body_bytes, 64 * 1024);
    assert_eq!(defaults.hooks.max_body_bytes, 1 << 20);
    assert_eq!(defaults.hooks.retry_cache_bytes, 64 << 20);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(
        &path,
        "max_connections = 64\nbody_timeout = \"2s\"\n[hooks]\nmax_body_bytes = 2097152\n",
    )
    .unwrap();
    let set = load_from(
        Some(&path),
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__HOOKS__RETRY_CACHE_BYTES", "8388608"),
        ]),
    )
    .unwrap();
    assert_eq!(set.max_connections, 64);
    assert_eq!(set.body_timeout, Duration::from_secs(2));
    assert_eq!(set.hooks.max_body_bytes, 2 << 20);
    assert_eq!(set.hooks.retry_cache_bytes, 8 << 20);
}

#[test]
fn every_problem_is_reported_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(
        &path,
        "listen = \"nowhere\"\n[kratos]\nadmin_url = \"ftp://x\"\nrequest_timout = \"1s\"\n[api]\nmax_body_bytes = 5\n",
    )
    .unwrap();
    let errors = load_from(
        Some(&path),
        env(&[
            ("KRATOS_JIT__MAPPER__TIMEOUT", "soon"),
            ("KRATOS_JIT__NOPE", "1"),
        ]),
    )
    .unwrap_err();
    let all = errors.join("\n");
    let file = path.display().to_string();
    for expected in [
        format!("{file}:1:10: `listen` is invalid"),
        format!("{file}:3:13: `kratos.admin_url` is invalid"),
        format!(
            "{file}:4:1: unknown setting `kratos.request_timout` (did you mean `kratos.request_timeout`?)"
        ),
        format!("{file}:6:18: `api.max_body_bytes` is 5"),
        "environment variable KRATOS_JIT__MAPPER__TIMEOUT: `mapper.timeout` is invalid".to_owned(),
        "environment variable KRATOS_JIT__NOPE: unknown setting `nope`".to_owned(),
        "no API secret is configured".to_owned(),
    ] {
        assert!(all.contains(&expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn secrets_are_read_from_files_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api-secrets"),
        format!("# callers\n{SECRET}\n\n"),
    )
    .unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(&path, "[api]\nsecrets_file = \"api-secrets\"\n").unwrap();
    let config = load_from(Some(&path), env(&[])).unwrap();
    assert_eq!(config.api.secrets, vec![Secret::new(SECRET)]);
    assert!(!format!("{config:?}").contains(SECRET));
}

#[test]
fn short_secrets_are_refused() {
    let errors = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", "short")])).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("shorter than 16")),
        "{errors:?}"
    );
}

fn key_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_hop_is_off_without_signing_keys_and_has_its_defaults() {
    let config = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();

    assert_eq!(config.hop.signing_keys, None);
    assert_eq!(config.hop.code_ttl, Duration::from_secs(60));
    assert_eq!(config.hop.state_ttl, Duration::from_secs(600));
    assert_eq!(config.hop.login_deadline, Duration::from_secs(10));
}

#[test]
fn signing_keys_from_a_file_resolve_against_its_folder_and_the_last_one_signs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(key_fixture("ec-p256.pem"), dir.path().join("old.pem")).unwrap();
    std::fs::copy(key_fixture("rsa-a.pem"), dir.path().join("new.pem")).unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(
        &path,
        "[hop]\npublic_url = \"https://auth.example/\"\nsigning_keys = [\"old.pem\", \"new.pem\"]\n",
    )
    .unwrap();

    let config = load_from(Some(&path), env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();

    let keys = config.hop.signing_keys.unwrap();
    assert_eq!(keys.kids().count(), 2);
    assert_eq!(keys.signing_algorithm(), crate::hop::KeyAlgorithm::Rs256);
    assert_eq!(
        config.hop.public_url.as_deref(),
        Some("https://auth.example")
    );
}

#[test]
fn a_bad_signing_key_and_a_missing_public_url_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let public = key_fixture("rsa-a.pub.pem");
    let keys = format!("{},{}", key_fixture("ec-p256.pem"), public);

    let errors = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__HOP__SIGNING_KEYS", &keys),
        ]),
    )
    .unwrap_err();

    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("`hop.signing_keys`: {public}: holds a public key"))),
        "{errors:?}"
    );
    let good = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__HOP__SIGNING_KEYS", &key_fixture("ec-p256.pem")),
        ]),
    )
    .unwrap_err();
    assert!(
        good.iter().any(|e| e.contains("`hop.public_url` is not")),
        "{good:?}"
    );
    drop(dir);
}

#[test]
fn the_health_section_has_defaults_reads_file_and_environment_and_refuses_a_max_age_below_the_interval()
 {
    let defaults = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();
    assert_eq!(
        defaults.health,
        crate::health::HealthSettings {
            kratos_interval: Duration::from_secs(5),
            kratos_max_age: Duration::from_secs(15),
        }
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(&path, "[health]\nkratos_interval = \"2s\"\n").unwrap();
    let config = load_from(
        Some(&path),
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__HEALTH__KRATOS_MAX_AGE", "1m"),
        ]),
    )
    .unwrap();
    assert_eq!(config.health.kratos_interval, Duration::from_secs(2));
    assert_eq!(config.health.kratos_max_age, Duration::from_secs(60));

    let errors = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__HEALTH__KRATOS_INTERVAL", "30s"),
            ("KRATOS_JIT__HEALTH__KRATOS_MAX_AGE", "10s"),
            ("KRATOS_JIT__HEALTH__KRATOS_PROBE", "x"),
        ]),
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`health.kratos_max_age` is shorter than `health.kratos_interval`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown setting `health.kratos_probe`")),
        "{errors:?}"
    );
}

#[test]
fn the_audit_trail_defaults_to_standard_output_hashed_and_fail_closed() {
    use crate::audit::{AuditConfig, OnFailure, SinkConfig, ValueMode};
    let defaults = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();
    assert_eq!(defaults.audit, AuditConfig::default());
    assert_eq!(defaults.audit.sink, SinkConfig::Stdout);
    assert_eq!(defaults.audit.values, ValueMode::Hashed);
    assert_eq!(defaults.audit.on_failure, OnFailure::Refuse);

    // A file given in the file resolves against its folder and means the file sink.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(
        &path,
        "[audit]\nfile = \"audit.jsonl\"\nvalues = \"plain\"\nfsync = true\n",
    )
    .unwrap();
    let set = load_from(
        Some(&path),
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__AUDIT__ON_FAILURE", "proceed"),
            ("KRATOS_JIT__AUDIT__HASH_KEY", "audit-key-0123456789"),
        ]),
    )
    .unwrap();
    assert_eq!(
        set.audit.sink,
        SinkConfig::File(dir.path().join("audit.jsonl"))
    );
    assert_eq!(set.audit.values, ValueMode::Plain);
    assert_eq!(set.audit.on_failure, OnFailure::Proceed);
    assert!(set.audit.fsync);
    assert_eq!(
        set.audit.hash_key,
        Some(Secret::new("audit-key-0123456789"))
    );
}

#[test]
fn bad_audit_settings_are_reported_together() {
    let errors = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__AUDIT__SINK", "file"),
            ("KRATOS_JIT__AUDIT__VALUES", "clear"),
            ("KRATOS_JIT__AUDIT__ON_FAILURE", "ignore"),
            ("KRATOS_JIT__AUDIT__HASH_KEY", "short"),
        ]),
    )
    .unwrap_err();
    let text = errors.join("\n");
    for expected in [
        "`audit.sink` is file but `audit.file` is not set",
        "`audit.values` is invalid: must be hashed or plain",
        "`audit.on_failure` is invalid: must be refuse or proceed",
        "`audit.hash_key`: a secret is shorter than 16 characters",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    let both = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__AUDIT__SINK", "stdout"),
            ("KRATOS_JIT__AUDIT__FILE", "/tmp/audit.jsonl"),
        ]),
    )
    .unwrap_err();
    assert!(
        both.join("\n")
            .contains("`audit.file` is set but `audit.sink` is not file")
    );
}

#[test]
fn metrics_are_off_until_metrics_listen_is_set_and_never_share_the_public_address() {
    let off = load_from(None, env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();
    assert_eq!(off.metrics.listen, None);
    let empty = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__METRICS__LISTEN", " "),
        ]),
    )
    .unwrap();
    assert_eq!(empty.metrics.listen, None);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kratos-jit.toml");
    std::fs::write(&path, "[metrics]\nlisten = \"0.0.0.0:9480\"\n").unwrap();
    let on = load_from(Some(&path), env(&[("KRATOS_JIT__API__SECRETS", SECRET)])).unwrap();
    assert_eq!(on.metrics.listen, Some("0.0.0.0:9480".parse().unwrap()));

    let errors = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__METRICS__LISTEN", "127.0.0.1:4480"),
        ]),
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("never served on the public port")),
        "{errors:?}"
    );
    let errors = load_from(
        None,
        env(&[
            ("KRATOS_JIT__API__SECRETS", SECRET),
            ("KRATOS_JIT__METRICS__LISTEN", "9480"),
        ]),
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("KRATOS_JIT__METRICS__LISTEN") && e.contains("127.0.0.1:9480")),
        "{errors:?}"
    );
}
