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
