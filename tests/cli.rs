//! `kratos-jit check` and `kratos-jit map`, driven as a customer's CI would drive them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "common/tree.rs"]
mod tree;

use tree::copy_dir;

fn kratos_jit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running kratos-jit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A private copy of the sample providers that a test may break.
fn sample_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mappers");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers"), &dir);
    (tmp, dir)
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_passes_on_the_sample_providers() {
    let out = kratos_jit(&["check", "mappers"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for provider in [
        "okta-acme",
        "entra-globex",
        "onelogin-initech",
        "okta-oidc-umbrella",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(provider)),
            "{provider} missing:\n{stdout}"
        );
    }
}

#[test]
fn check_fails_on_a_mapper_syntax_error_naming_file_and_line() {
    let (_tmp, dir) = sample_copy();
    let mapper = dir.join("okta-acme/mapper.jsonnet");
    let original = std::fs::read_to_string(&mapper).unwrap();
    let lines = original.lines().count();
    std::fs::write(&mapper, format!("{original}\n{{ broken: ")).unwrap();
    let out = kratos_jit(&["check", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    let expected = format!("{}:{}", mapper.display(), lines + 2);
    assert!(
        stderr.contains(&expected),
        "expected {expected} in:\n{stderr}"
    );
}

/// A mapper nested a few hundred levels deep used to overflow the loader's stack and abort
/// `check` (and `serve`) with SIGSEGV. Now: a mapper of hostile depth is a compile error at its
/// line, reported like any other load error, and one nested 200 levels (which overflowed an
/// 8 MiB stack in a debug build) is parsed.
#[test]
fn check_refuses_a_mapper_nested_too_deeply_without_crashing() {
    let (_tmp, dir) = sample_copy();
    let deep = dir.join("okta-acme/mapper.jsonnet");
    let nested = |open: &str, close: &str, n: usize| {
        format!("{}\n{}1{}", "// padding", open.repeat(n), close.repeat(n))
    };
    for hostile in [nested("[", "]", 5_000), nested("{a:", "}", 2_000)] {
        std::fs::write(&deep, hostile).unwrap();
        let out = kratos_jit(&["check", dir.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let expected = format!("{}:2:", deep.display());
        assert!(
            stderr.contains(&expected),
            "expected {expected} in:\n{stderr}"
        );
        assert!(stderr.contains("nests too deeply"), "{stderr}");
        assert!(
            stderr.contains("1 problem(s)"),
            "only the deep mapper is at fault:\n{stderr}"
        );
    }

    // Deep, but within the bound: parsed (and, as its output nests 200 levels, refused by the
    // fixtures rather than by the loader).
    std::fs::write(&deep, nested("{a:", "}", 200)).unwrap();
    let out = kratos_jit(&["check", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(out.status.code() == Some(1), "{stderr}");
    assert!(!stderr.contains("nests too deeply"), "{stderr}");
}

#[test]
fn check_fails_on_a_bad_setting_naming_file_line_and_field() {
    let (_tmp, dir) = sample_copy();
    let settings = dir.join("entra-globex/provider.toml");
    replace_in(&settings, "create = true", "create = \"yes\"");
    replace_in(
        &dir.join("okta-acme/provider.toml"),
        "update = true",
        "updte = true",
    );
    let out = kratos_jit(&["check", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    // Both problems are reported, each with its file and line.
    let line_of = |path: &Path, needle: &str| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    };
    let create = format!("{}:{}", settings.display(), line_of(&settings, "create ="));
    assert!(stderr.contains(&create), "expected {create} in:\n{stderr}");
    let acme = dir.join("okta-acme/provider.toml");
    let updte = format!("{}:{}", acme.display(), line_of(&acme, "updte"));
    assert!(
        stderr.contains(&updte) && stderr.contains("updte"),
        "expected {updte} in:\n{stderr}"
    );
}

#[test]
fn check_fails_on_a_failing_fixture_with_a_diff() {
    let (_tmp, dir) = sample_copy();
    let expect = dir.join("okta-acme/tests/demoted.expect.json");
    replace_in(&expect, "\"role\": \"user\"", "\"role\": \"admin\"");
    let out = kratos_jit(&["check", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("okta-acme"),
        "{stdout}"
    );
    assert!(stdout.contains(&expect.display().to_string()), "{stdout}");
    let diff_line = |sign: char, text: &str| {
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with(sign) && l.contains(text))
    };
    assert!(
        diff_line('-', "\"role\": \"admin\"") && diff_line('+', "\"role\": \"user\""),
        "{stdout}"
    );
    // The other providers still pass and say so.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("entra-globex")),
        "{stdout}"
    );
}

/// Every fixture of every sample provider: (provider, claims file, optional identity file).
fn sample_fixtures() -> Vec<(String, PathBuf, Option<PathBuf>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers");
    let mut out = Vec::new();
    for provider in std::fs::read_dir(&root).unwrap() {
        let provider = provider.unwrap().path();
        let Ok(tests) = std::fs::read_dir(provider.join("tests")) else {
            continue;
        };
        for file in tests {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if let Some(case) = name.strip_suffix(".claims.json") {
                let identity = path.with_file_name(format!("{case}.identity.json"));
                let id = provider.file_name().unwrap().to_str().unwrap().to_owned();
                out.push((id, path, identity.exists().then_some(identity)));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 20,
        "expected the sample fixtures, found {}",
        out.len()
    );
    out
}

#[test]
fn map_prints_the_same_value_as_go_jsonnet_for_every_sample_fixture() {
    let probe = Command::new("python3")
        .args(["-c", "import _gojsonnet"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "go-jsonnet's Python binding is required: pip install gojsonnet==0.21.0 (the README's test command installs it)"
    );
    for (provider, claims, identity) in sample_fixtures() {
        let mapper = format!("mappers/{provider}/mapper.jsonnet");
        let mut reference = Command::new("python3");
        reference
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("scripts/gojsonnet-eval.py")
            .arg(&mapper)
            .arg(&claims);
        let mut ours = vec!["map".to_owned(), "--provider".into(), provider.clone()];
        if let Some(identity) = &identity {
            reference.arg(identity);
            ours.extend(["--identity".into(), identity.display().to_string()]);
        }
        ours.push(claims.display().to_string());
        let reference = reference.output().unwrap();
        let ours = kratos_jit(&ours.iter().map(String::as_str).collect::<Vec<_>>());
        let case = claims.display();
        if !reference.status.success() {
            // The mapper refused (`error "..."`): both engines refuse with the mapper's message.
            assert!(
                !ours.status.success(),
                "{case}: go-jsonnet refused but kratos-jit did not"
            );
            assert!(
                ours.stdout.is_empty(),
                "{case}: kratos-jit printed output for a refused mapping"
            );
            continue;
        }
        let expected: Value = serde_json::from_slice(&reference.stdout).unwrap();
        let actual: Value = serde_json::from_slice(&ours.stdout).unwrap_or_else(|e| {
            panic!(
                "{case}: kratos-jit printed no JSON ({e}); stderr: {}",
                text(&ours.stderr)
            )
        });
        assert_eq!(actual, expected, "{case}");
    }
}

#[test]
fn map_reports_a_policy_denial_on_stderr_and_exits_non_zero() {
    let out = kratos_jit(&[
        "map",
        "--provider",
        "okta-acme",
        "mappers/okta-acme/tests/wrong-tenant.claims.json",
    ]);
    assert!(!out.status.success());
    let output: Value =
        serde_json::from_slice(&out.stdout).expect("the mapper output is still printed");
    assert_eq!(output["identity"]["traits"]["tenant_id"], "tenant-globex");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not bound to tenant \"tenant-globex\""),
        "{stderr}"
    );
}

#[test]
fn map_reads_claims_from_standard_input() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .args(["map", "--provider", "okta-acme", "-"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let claims = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers/okta-acme/tests/admin.claims.json"),
    )
    .unwrap();
    child.stdin.take().unwrap().write_all(&claims).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["identity"]["traits"]["role"], "admin");
}

#[test]
fn check_runs_every_sample_providers_scim_fixtures_and_counts_them_apart() {
    let out = kratos_jit(&["check", "mappers"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for provider in [
        "okta-acme",
        "entra-globex",
        "onelogin-initech",
        "okta-oidc-umbrella",
    ] {
        let scim = std::fs::read_dir(Path::new("mappers").join(provider).join("tests"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".scim.json")
            })
            .count();
        assert!(scim >= 4, "{provider} has {scim} SCIM fixtures");
        assert!(
            stdout.lines().any(|l| l.starts_with("ok")
                && l.contains(provider)
                && l.contains(&format!(", {scim} scim)"))),
            "{provider} does not report its {scim} SCIM fixtures:\n{stdout}"
        );
    }
}

#[test]
fn check_fails_on_a_failing_scim_fixture_naming_its_kind_with_a_diff() {
    let (_tmp, dir) = sample_copy();
    let expect = dir.join("entra-globex/tests/scim-demoted.expect.json");
    replace_in(&expect, "\"role\": \"user\"", "\"role\": \"admin\"");

    let out = kratos_jit(&["check", dir.to_str().unwrap()]);

    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("scim-demoted (scim): ") && stdout.contains(&expect.display().to_string()),
        "{stdout}"
    );
    let diff_line = |sign: char, text: &str| {
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with(sign) && l.contains(text))
    };
    assert!(
        diff_line('-', "\"role\": \"admin\"") && diff_line('+', "\"role\": \"user\""),
        "{stdout}"
    );
}

#[test]
fn a_scim_mapper_reading_the_claims_fails_its_fixtures_naming_the_ext_var() {
    let (_tmp, dir) = sample_copy();
    let mapper = dir.join("okta-acme/scim.jsonnet");
    replace_in(
        &mapper,
        "local scim = std.extVar('scim');",
        "local scim = std.extVar('claims');",
    );

    let out = kratos_jit(&["check", dir.to_str().unwrap()]);

    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("std.extVar('claims') is not given to a SCIM mapper"),
        "{stdout}"
    );
    // The claims fixtures of the same provider still run their own mapper.
    assert!(
        stdout.contains("6 of 29 fixture(s) failed (23 claims, 6 scim)"),
        "{stdout}"
    );
}

#[test]
fn check_refuses_enabled_scim_without_a_scim_mapper() {
    let (_tmp, dir) = sample_copy();
    std::fs::remove_file(dir.join("okta-acme/scim.jsonnet")).unwrap();

    let out = kratos_jit(&["check", dir.to_str().unwrap()]);

    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("scim.jsonnet is missing: [scim] enabled = true"),
        "{stderr}"
    );
}
