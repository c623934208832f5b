use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;
use crate::token::IssuerSettings;

const MAPPER: &str = "local claims = std.extVar('claims');\n\
{ identity: { traits: { email: claims.email, tenant_id: 'tenant-x', role: 'user' } } }\n";

const SETTINGS: &str = r#"schema_id = "default"

[[tenants]]
id = "tenant-x"
verified_domains = ["x.example"]
"#;

/// A self-signed CA certificate, for `ca_bundle`.
const TEST_CA: &str = include_str!("../../tests/fixtures/keys/test-ca.pem");

const CLAIMS: &str = r#"{"sub": "1", "email": "ada@x.example"}"#;
const EXPECT: &str = r#"{"identity": {"traits": {
    "email": "ada@x.example", "tenant_id": "tenant-x", "role": "user"
}}}"#;

/// A `mappers/` tree in a temporary folder.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, content: &str) -> &Self {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    fn remove(&self, relative: &str) -> &Self {
        std::fs::remove_file(self.path(relative)).unwrap();
        self
    }

    /// A provider folder that loads without errors or warnings.
    fn provider(&self, id: &str) -> &Self {
        self.write(&format!("{id}/mapper.jsonnet"), MAPPER)
            .write(&format!("{id}/provider.toml"), SETTINGS)
            .write(&format!("{id}/tests/user.claims.json"), CLAIMS)
            .write(&format!("{id}/tests/user.expect.json"), EXPECT)
    }

    fn load(&self) -> Result<(Providers, Vec<LoadWarning>), Vec<LoadError>> {
        Providers::load(self.dir.path())
    }

    #[track_caller]
    fn errors(&self) -> Vec<LoadError> {
        match self.load() {
            Ok((providers, _)) => panic!("expected errors, loaded {} providers", providers.len()),
            Err(errors) => errors,
        }
    }

    #[track_caller]
    fn loaded(&self) -> (Providers, Vec<LoadWarning>) {
        self.load()
            .unwrap_or_else(|errors| panic!("expected no errors, got:\n{}", show(&errors)))
    }
}

fn show(errors: &[LoadError]) -> String {
    errors.iter().map(|e| format!("  {e}\n")).collect()
}

/// The one error at `relative` (inside the tree) whose message contains `needle`; checks its line.
#[track_caller]
fn assert_error(
    tree: &Tree,
    errors: &[LoadError],
    relative: &str,
    line: Option<usize>,
    needle: &str,
) {
    let path = tree.path(relative);
    let found: Vec<&LoadError> = errors
        .iter()
        .filter(|e| e.path == path && e.message.contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one error at {relative} containing {needle:?}, got:\n{}",
        show(errors)
    );
    assert_eq!(found[0].line, line, "line of {}", found[0]);
    if line.is_some() {
        assert!(found[0].column.is_some(), "{} has no column", found[0]);
    }
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers")
}

// ---------------------------------------------------------------------------------------------
// Trees that load
// ---------------------------------------------------------------------------------------------

#[test]
fn the_four_sample_providers_load_without_errors_or_warnings() {
    let (providers, warnings) = Providers::load(&samples_dir())
        .unwrap_or_else(|errors| panic!("the samples do not load:\n{}", show(&errors)));

    let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "entra-globex",
            "okta-acme",
            "okta-oidc-umbrella",
            "onelogin-initech"
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(providers.iter().all(|p| !p.fixtures.is_empty()));
}

#[test]
fn okta_acme_has_the_settings_its_provider_toml_declares() {
    let (providers, _) = Providers::load(&samples_dir()).unwrap();

    let acme = providers.get("okta-acme").expect("okta-acme is loaded");

    assert_eq!(acme.settings.schema_id, "default");
    assert_eq!(
        acme.settings.jit,
        JitSettings {
            create: true,
            update: true,
            link_by_verified_email: false
        }
    );
    assert_eq!(
        acme.settings.tenants,
        [TenantBinding {
            id: "tenant-acme".into(),
            verified_domains: vec!["acme.example".into()]
        }]
    );
    assert_eq!(
        acme.settings
            .tenant("tenant-acme")
            .map(|t| t.verified_domains.clone()),
        Some(vec!["acme.example".to_owned()])
    );
    assert_eq!(acme.settings.tenant("tenant-globex"), None);
    assert_eq!(
        acme.settings.token,
        Some(IssuerSettings {
            issuer: "http://polis.localhost:5225".into(),
            audiences: vec!["tenant=okta-acme&product=kratos".into()],
            jwks_url: None,
            algorithms: vec![Algorithm::RS256],
            ca_bundle: None,
            require: vec![],
        })
    );
    assert_eq!(acme.mapper.provider, "okta-acme");
    assert_eq!(
        acme.mapper.path,
        samples_dir().join("okta-acme/mapper.jsonnet")
    );
}

#[test]
fn okta_acme_fixtures_are_paired_sorted_and_parsed() {
    let (providers, _) = Providers::load(&samples_dir()).unwrap();
    let acme = providers.get("okta-acme").unwrap();

    let names: Vec<&str> = acme.fixtures.iter().map(|f| f.name.as_str()).collect();
    let demoted = acme.fixtures.iter().find(|f| f.name == "demoted").unwrap();
    let foreign = acme
        .fixtures
        .iter()
        .find(|f| f.name == "foreign-domain")
        .unwrap();

    // The hand-written cases, the same cases as real Polis and SATOSA bridges emit them, and
    // the SCIM cases.
    assert_eq!(names.len(), 29);
    let scim: Vec<&str> = acme
        .fixtures
        .iter()
        .filter(|f| f.kind == MapperKind::Scim)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(scim.len(), 6, "{scim:?}");
    assert!(scim.iter().all(|n| n.starts_with("scim-")), "{scim:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(
        demoted.identity.as_ref().unwrap()["traits"]["role"],
        json!("admin")
    );
    assert!(
        matches!(&demoted.expect, Expectation::Identity(i) if i["traits"]["role"] == json!("user"))
    );
    assert_eq!(foreign.identity, None);
    assert_eq!(
        foreign.expect,
        Expectation::Denied("is not a verified domain of tenant".into())
    );
    assert_eq!(
        foreign.claims_path,
        samples_dir().join("okta-acme/tests/foreign-domain.claims.json")
    );
    assert_eq!(
        foreign.expect_path,
        samples_dir().join("okta-acme/tests/foreign-domain.expect.json")
    );
}

#[test]
fn providers_are_sorted_by_id_and_found_by_id() {
    let tree = Tree::new();
    tree.provider("zeta").provider("alpha").provider("mid_1");

    let (providers, warnings) = tree.loaded();

    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(providers.len(), 3);
    let ids: Vec<String> = providers.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(ids, ["alpha", "mid_1", "zeta"]);
    assert_eq!(
        providers.get("mid_1").map(|p| p.dir.clone()),
        Some(tree.path("mid_1"))
    );
    assert!(providers.get("MID_1").is_none());
    let sources: Vec<String> = providers
        .mapper_sources()
        .into_iter()
        .map(|s| s.provider)
        .collect();
    assert_eq!(sources, ["alpha", "mid_1", "zeta"]);
}

#[test]
fn a_provider_without_jit_or_token_tables_gets_the_defaults() {
    let tree = Tree::new();
    tree.provider("p");

    let (providers, _) = tree.loaded();
    let settings = &providers.get("p").unwrap().settings;

    assert_eq!(
        settings.jit,
        JitSettings {
            create: true,
            update: true,
            link_by_verified_email: false
        }
    );
    assert_eq!(settings.token, None);
}

#[test]
fn every_setting_is_read_and_domains_are_stored_lower_cased() {
    let tree = Tree::new();
    tree.provider("p").write("p/ca.pem", TEST_CA).write(
        "p/provider.toml",
        r#"schema_id = "staff"
[jit]
create = false
update = false
link_by_verified_email = true
[[tenants]]
id = "t1"
verified_domains = ["X.Example", "sub.x.example"]
[[tenants]]
id = "t2"
verified_domains = ["y.example"]
[token]
issuer = "http://127.0.0.1:4444/"
audiences = ["a", "b"]
jwks_url = "https://idp.example/keys"
algorithms = ["ES256", "EdDSA"]
ca_bundle = "ca.pem"
"#,
    );

    let (providers, _) = tree.loaded();
    let settings = &providers.get("p").unwrap().settings;

    assert_eq!(settings.schema_id, "staff");
    assert_eq!(
        settings.jit,
        JitSettings {
            create: false,
            update: false,
            link_by_verified_email: true
        }
    );
    assert_eq!(
        settings.tenant("t1").unwrap().verified_domains,
        ["x.example", "sub.x.example"]
    );
    assert_eq!(
        settings.tenant("t2").unwrap().verified_domains,
        ["y.example"]
    );
    let token = settings.token.as_ref().unwrap();
    assert_eq!(token.issuer, "http://127.0.0.1:4444/");
    assert_eq!(token.audiences, ["a", "b"]);
    assert_eq!(token.jwks_url.as_deref(), Some("https://idp.example/keys"));
    assert_eq!(token.algorithms, [Algorithm::ES256, Algorithm::EdDSA]);
    assert_eq!(token.ca_bundle, Some(tree.path("p/ca.pem")));
}

#[test]
fn stray_files_are_warnings_and_do_not_stop_the_load() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/notes.txt", "")
        .write("p/tests/user.expected.json", "{}")
        .write("p/.hidden", "")
        .write("README.md", "");

    let (providers, warnings) = tree.loaded();

    assert_eq!(providers.len(), 1);
    let paths: Vec<PathBuf> = warnings.iter().map(|w| w.path.clone()).collect();
    assert_eq!(
        paths,
        [
            tree.path("README.md"),
            tree.path("p/notes.txt"),
            tree.path("p/tests/user.expected.json")
        ]
    );
    assert!(
        warnings[2]
            .message
            .contains("did you mean user.expect.json?"),
        "{}",
        warnings[2]
    );
}

#[test]
fn a_provider_without_fixtures_is_a_warning() {
    let tree = Tree::new();
    tree.provider("p")
        .remove("p/tests/user.claims.json")
        .remove("p/tests/user.expect.json");
    tree.provider("q");
    std::fs::remove_dir_all(tree.path("q/tests")).unwrap();

    let (providers, warnings) = tree.loaded();

    assert_eq!(providers.len(), 2);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].path, tree.path("p/tests"));
    assert_eq!(warnings[1].path, tree.path("q"));
}

// ---------------------------------------------------------------------------------------------
// Folders and files
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_mappers_folder_is_one_error_naming_it() {
    let tree = Tree::new();

    let errors = Providers::load(&tree.path("nope")).unwrap_err();

    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, tree.path("nope"));
    assert!(errors[0].message.contains("cannot list"), "{}", errors[0]);
}

#[test]
fn a_folder_name_that_is_not_a_provider_id_says_what_is_allowed() {
    let tree = Tree::new();
    tree.provider("okta acme")
        .provider("-okta")
        .provider(&"a".repeat(64));

    let errors = tree.errors();

    assert_error(
        &tree,
        &errors,
        "okta acme",
        None,
        "characters other than a-z, 0-9, '-' and '_'",
    );
    assert_error(&tree, &errors, "-okta", None, "starts with '-' or '_'");
    assert_error(
        &tree,
        &errors,
        &"a".repeat(64),
        None,
        "longer than 63 characters",
    );
    assert!(
        errors[0]
            .message
            .contains("1 to 63 characters of a-z, 0-9, '-' and '_'")
    );
}

#[test]
fn provider_ids_that_differ_only_by_case_are_reported_as_duplicates() {
    let tree = Tree::new();
    tree.provider("okta-acme").provider("Okta-Acme");

    let errors = tree.errors();

    assert_error(
        &tree,
        &errors,
        "okta-acme",
        None,
        "same provider id as \"Okta-Acme\"",
    );
    assert_error(&tree, &errors, "Okta-Acme", None, "upper-case");
}

#[test]
fn a_missing_mapper_or_settings_file_is_reported_at_the_folder() {
    let tree = Tree::new();
    tree.provider("a").remove("a/mapper.jsonnet");
    tree.provider("b").remove("b/provider.toml");

    let errors = tree.errors();

    assert_eq!(errors.len(), 2, "{}", show(&errors));
    assert_error(&tree, &errors, "a", None, "mapper.jsonnet is missing");
    assert_error(&tree, &errors, "b", None, "provider.toml is missing");
}

#[test]
fn a_file_that_cannot_be_read_is_reported_with_the_reason() {
    let tree = Tree::new();
    tree.provider("p").remove("p/mapper.jsonnet");
    std::os::unix::fs::symlink(tree.path("p/nowhere"), tree.path("p/mapper.jsonnet")).unwrap();
    std::fs::write(tree.path("p/provider.toml"), b"schema_id = \"\xff\"\n").unwrap();

    let errors = tree.errors();

    assert_error(
        &tree,
        &errors,
        "p/mapper.jsonnet",
        None,
        "cannot read it (No such file",
    );
    assert_error(&tree, &errors, "p/provider.toml", Some(1), "not UTF-8");
}

#[test]
fn a_mapper_syntax_error_is_reported_at_its_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/mapper.jsonnet",
        "local x = 1;\n\n{ identity: { traits: x, } ]\n",
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].path, tree.path("p/mapper.jsonnet"));
    assert_eq!(errors[0].line, Some(3), "{}", errors[0]);
}

// ---------------------------------------------------------------------------------------------
// provider.toml
// ---------------------------------------------------------------------------------------------

#[test]
fn a_toml_syntax_error_is_reported_at_its_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        "schema_id = \"default\"\n[jit\ncreate = true\n",
    );

    let errors = tree.errors();

    assert_eq!(errors[0].path, tree.path("p/provider.toml"));
    assert_eq!(errors[0].line, Some(2), "{}", show(&errors));
    assert!(
        errors[0].message.starts_with("TOML syntax error"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_unknown_key_is_reported_at_its_line_with_the_closest_known_key() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        r#"schema_id = "default"
[jit]
crate = true
[[tenants]]
id = "tenant-x"
verified_domain = ["x.example"]
[tokens]
"#,
    );

    let errors = tree.errors();

    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(3),
        "unknown key `crate` in [jit] (did you mean `create`?)",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(6),
        "unknown key `verified_domain` in tenants[0] (did you mean `verified_domains`?)",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "unknown key `tokens` in the top level (did you mean `token`?)",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(4),
        "`tenants[0].verified_domains` is missing",
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_at_its_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        r#"schema_id = 3
jit = "on"
[[tenants]]
id = "tenant-x"
verified_domains = "x.example"
[[tenants]]
id = ["t"]
verified_domains = ["y.example", 7]
"#,
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 5, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(1),
        "`schema_id` must be a string, not an integer",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(2),
        "`jit` must be a table ([jit]), not a string",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(5),
        "`tenants[0].verified_domains` must be an array of strings",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "`tenants[1].id` must be a string, not an array",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(8),
        "`tenants[1].verified_domains`[1] must be a string, not an integer",
    );
}

#[test]
fn a_jit_flag_that_is_not_a_boolean_is_an_error() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!("{SETTINGS}[jit]\ncreate = \"yes\"\n"),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "`jit.create` must be true or false, not a string",
    );
}

#[test]
fn schema_id_and_at_least_one_tenant_are_required() {
    let tree = Tree::new();
    tree.provider("a")
        .write("a/provider.toml", "[jit]\ncreate = true\n");
    tree.provider("b")
        .write("b/provider.toml", "schema_id = \"\"\ntenants = []\n");

    let errors = tree.errors();

    assert_eq!(errors.len(), 4, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "a/provider.toml",
        Some(1),
        "`schema_id` is missing",
    );
    assert_error(
        &tree,
        &errors,
        "a/provider.toml",
        Some(1),
        "no [[tenants]]: a provider must be bound to at least one tenant",
    );
    assert_error(
        &tree,
        &errors,
        "b/provider.toml",
        Some(1),
        "`schema_id` must not be empty",
    );
    assert_error(
        &tree,
        &errors,
        "b/provider.toml",
        Some(2),
        "`tenants` is empty",
    );
}

#[test]
fn a_tenant_needs_an_id_and_domains_and_is_bound_once_per_provider() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        r#"schema_id = "default"
[[tenants]]
id = "t"
verified_domains = []
[[tenants]]
id = " padded"
verified_domains = ["x.example", ""]
[[tenants]]
id = "t"
verified_domains = ["x.example"]
[[tenants]]
verified_domains = ["x.example"]
"#,
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 5, "{}", show(&errors));
    let at = |line, needle| assert_error(&tree, &errors, "p/provider.toml", Some(line), needle);
    at(4, "`tenants[0].verified_domains` is empty");
    at(6, "`tenants[1].id` must not start or end with white space");
    at(7, "`tenants[1].verified_domains`[1] must not be empty");
    at(9, "tenant \"t\" is already bound on line 3");
    at(11, "`tenants[3].id` is missing");
}

#[test]
fn verified_domains_must_be_plain_dns_names() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        r#"schema_id = "default"
[[tenants]]
id = "t"
verified_domains = [
  "*.x.example",
  "ada@x.example",
  "localhost",
  "bad_label.example",
  "bücher.example",
  "x.example",
  "X.EXAMPLE",
]
"#,
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 6, "{}", show(&errors));
    assert_error(&tree, &errors, "p/provider.toml", Some(5), "is a wildcard");
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(6),
        "is an e-mail address",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "at least two labels",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(8),
        "is not a DNS name",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(9),
        "xn-- (punycode)",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(11),
        "lists \"x.example\" twice",
    );
}

#[test]
fn token_settings_are_checked_field_by_field() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            r#"{SETTINGS}
[token]
issuer = "http://idp.example/?tenant=1"
audiences = []
jwks_url = "ftp://idp.example/keys"
algorithms = ["RS256", "HS256", "rs384", "none"]
ca_bundle = "missing.pem"
"#
        ),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 8, "{}", show(&errors));
    let at = |line, needle| assert_error(&tree, &errors, "p/provider.toml", Some(line), needle);
    at(
        8,
        "`token.issuer` must use https (plain http is accepted only for a loopback address or a name under localhost)",
    );
    at(8, "`token.issuer` must not have a query or fragment");
    at(9, "`token.audiences` is empty");
    at(10, "`token.jwks_url` must use https");
    at(
        11,
        "HS256 is a shared-secret (HMAC) algorithm and is refused",
    );
    at(11, "unknown algorithm rs384 (did you mean `RS384`?)");
    at(11, "`none` (unsigned tokens) is refused");
    at(
        12,
        "missing.pem is not a file (the path is relative to the provider folder)",
    );
}

#[test]
fn a_token_table_needs_an_issuer_and_audiences() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!("{SETTINGS}\n[token]\njwks_uri = \"https://idp.example/keys\"\n"),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 3, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(8),
        "unknown key `jwks_uri` in [token] (did you mean `jwks_url`?)",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "`token.issuer` is missing",
    );
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(7),
        "`token.audiences` is missing",
    );
}

#[test]
fn a_token_table_with_only_issuer_and_audiences_verifies_rs256_through_discovery() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            "{SETTINGS}\n[token]\nissuer = \"https://idp.example\"\naudiences = [\"kratos\"]\n"
        ),
    );

    let (providers, _) = tree.loaded();

    assert_eq!(
        providers.get("p").unwrap().settings.token,
        Some(IssuerSettings::new("https://idp.example", ["kratos"]))
    );
}

#[test]
fn every_asymmetric_algorithm_can_be_allowed() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            r#"{SETTINGS}
[token]
issuer = "https://idp.example"
audiences = ["kratos"]
algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
"#
        ),
    );

    let (providers, _) = tree.loaded();

    let token = providers.get("p").unwrap().settings.token.clone().unwrap();
    assert_eq!(
        token.algorithms,
        [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ]
    );
}

#[test]
fn an_empty_algorithm_list_is_refused_naming_the_default() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            "{SETTINGS}\n[token]\nissuer = \"https://idp.example\"\naudiences = [\"kratos\"]\nalgorithms = []\n"
        ),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(10),
        "`token.algorithms` is empty: allow at least one, or leave it out for RS256",
    );
}

#[test]
fn every_token_problem_is_reported_at_once_each_at_its_line() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/ca.pem", "not a certificate")
        .write(
            "p/provider.toml",
            &format!(
                r#"{SETTINGS}
[token]
issuer = "https://idp.example#top"
audiences = ["kratos", " "]
jwks_url = "not a url"
algorithms = ["HS256", "RS256", "HS512"]
ca_bundle = "ca.pem"
"#
            ),
        );

    let errors = tree.errors();

    assert_eq!(errors.len(), 6, "{}", show(&errors));
    let at = |line, needle| assert_error(&tree, &errors, "p/provider.toml", Some(line), needle);
    at(8, "`token.issuer` must not have a query or fragment");
    at(9, "`token.audiences`[1] must not be empty");
    at(10, "`token.jwks_url` is not a URL");
    at(
        11,
        "`token.algorithms`: HS256 is a shared-secret (HMAC) algorithm",
    );
    at(
        11,
        "`token.algorithms`: HS512 is a shared-secret (HMAC) algorithm",
    );
    at(
        12,
        "ca.pem: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
    );
}

#[test]
fn a_ca_bundle_that_is_not_pem_is_reported_at_load() {
    let tree = Tree::new();
    tree.provider("p")
        .write(
            "p/ca.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .write(
            "p/provider.toml",
            &format!(
                "{SETTINGS}\n[token]\nissuer = \"https://idp.example\"\naudiences = [\"kratos\"]\nca_bundle = \"ca.pem\"\n"
            ),
        );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/provider.toml",
        Some(10),
        "`token.ca_bundle`: ",
    );
    assert!(
        errors[0]
            .message
            .contains("ca.pem: not a PEM certificate bundle"),
        "{}",
        errors[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fixture_that_is_not_json_is_reported_at_its_line_and_column() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/tests/user.claims.json",
        "{\n  \"sub\": \"1\",\n  \"email\": ada\n}\n",
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/tests/user.claims.json",
        Some(3),
        "not valid JSON: expected value",
    );
    assert_eq!(errors[0].column, Some(12));
}

#[test]
fn claims_must_be_a_json_object() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/tests/user.claims.json", "\n  [1, 2]\n");

    let errors = tree.errors();

    assert_error(
        &tree,
        &errors,
        "p/tests/user.claims.json",
        Some(2),
        "must be a JSON object",
    );
    assert_eq!(errors[0].column, Some(3));
}

#[test]
fn an_expect_file_without_claims_and_claims_without_expect_are_both_reported() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/tests/admin.expect.json", EXPECT)
        .write("p/tests/guest.claims.json", CLAIMS)
        .write("p/tests/lone.identity.json", r#"{"traits": {}}"#);

    let errors = tree.errors();

    assert_eq!(errors.len(), 3, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/tests/admin.expect.json",
        None,
        "has no admin.claims.json",
    );
    assert_error(
        &tree,
        &errors,
        "p/tests/guest.claims.json",
        None,
        "has no guest.expect.json",
    );
    assert_error(
        &tree,
        &errors,
        "p/tests/lone.identity.json",
        None,
        "belongs to no fixture",
    );
}

#[test]
fn an_expect_file_must_hold_exactly_an_identity_or_a_denial() {
    let tree = Tree::new();
    tree.provider("p");
    let cases = [
        ("empty", "{}", 1, "the expect file is empty"),
        (
            "both",
            "{\"denied\": \"no\",\n \"identity\": {\"traits\": {}}}",
            2,
            "either `identity` or `denied`, not both",
        ),
        ("blank", "{\"denied\": \"  \"}", 1, "`denied` is empty"),
        ("number", "{\"denied\": 3}", 1, "`denied` must be a string"),
        (
            "typo",
            "{\n\"identiy\": {}}",
            2,
            "unknown key `identiy` (did you mean `identity`?)",
        ),
        (
            "no-traits",
            "{\"identity\": {\n\"traits\": []\n}}",
            3,
            "`identity` is not a possible mapper output",
        ),
        (
            "array",
            "[]",
            1,
            "invalid type: sequence, expected an expectation",
        ),
        (
            "trailing",
            "{\"denied\": \"no\"} x",
            1,
            "trailing characters",
        ),
    ];
    for (case, expect, _, _) in cases {
        tree.write(&format!("p/tests/{case}.claims.json"), CLAIMS)
            .write(&format!("p/tests/{case}.expect.json"), expect);
    }

    let errors = tree.errors();

    assert_eq!(errors.len(), cases.len(), "{}", show(&errors));
    for (case, _, line, needle) in cases {
        assert_error(
            &tree,
            &errors,
            &format!("p/tests/{case}.expect.json"),
            Some(line),
            needle,
        );
    }
}

#[test]
fn an_identity_fixture_holds_only_the_identity_fields_kratos_passes() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/tests/a.claims.json", CLAIMS)
        .write("p/tests/a.expect.json", EXPECT)
        .write(
            "p/tests/a.identity.json",
            "{\"traits\": {},\n \"metadata\": {}}",
        )
        .write("p/tests/b.claims.json", CLAIMS)
        .write("p/tests/b.expect.json", EXPECT)
        .write(
            "p/tests/b.identity.json",
            r#"{"traits": {"role": "admin"}, "metadata_public": null}"#,
        );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "p/tests/a.identity.json",
        Some(2),
        "unknown key `metadata`",
    );
}

// ---------------------------------------------------------------------------------------------
// The tree as a whole
// ---------------------------------------------------------------------------------------------

#[test]
fn every_problem_in_every_provider_is_reported_in_one_load() {
    let tree = Tree::new();
    tree.provider("good");
    tree.provider("a").write("a/mapper.jsonnet", "{ identity: ");
    tree.provider("b")
        .write("b/provider.toml", &format!("{SETTINGS}[jit]\ncreate = 1\n"));
    tree.provider("c")
        .write("c/tests/user.expect.json", "{\"denied\": \"\"}")
        .remove("c/provider.toml");

    let errors = tree.errors();

    let places: Vec<String> = errors
        .iter()
        .map(|e| {
            e.path
                .strip_prefix(tree.path(""))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        places,
        [
            "a/mapper.jsonnet",
            "b/provider.toml",
            "c",
            "c/tests/user.expect.json"
        ],
        "{}",
        show(&errors)
    );
    assert!(
        errors
            .iter()
            .all(|e| e.path == tree.path("c") || e.line.is_some())
    );
}

#[test]
fn one_tenant_bound_by_two_providers_with_the_same_domains_is_accepted() {
    let tree = Tree::new();
    tree.provider("okta").provider("entra");

    let (providers, _) = tree.loaded();

    assert_eq!(providers.len(), 2);
}

#[test]
fn one_tenant_bound_by_two_providers_with_different_domains_is_a_conflict() {
    let tree = Tree::new();
    tree.provider("entra").provider("okta").write(
        "okta/provider.toml",
        "schema_id = \"default\"\n\n[[tenants]]\nid = \"tenant-x\"\nverified_domains = [\"x.example\", \"x.test\"]\n",
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_error(
        &tree,
        &errors,
        "okta/provider.toml",
        Some(5),
        "tenant \"tenant-x\" has verified domains [x.example, x.test] here but [x.example] in provider \"entra\"",
    );
}

#[test]
fn load_errors_display_as_path_line_column_message() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!("{SETTINGS}[jit]\n  crate = true\n"),
    );

    let errors = tree.errors();

    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}:7:3: unknown key `crate` in [jit] (did you mean `create`?); known keys: create, update, link_by_verified_email",
            tree.path("p/provider.toml").display()
        )
    );
}

#[test]
fn provider_ids_parse_only_when_valid() {
    assert_eq!(
        "okta-acme_2".parse::<ProviderId>().map(|id| id.to_string()),
        Ok("okta-acme_2".into())
    );
    assert_eq!(&*"x".parse::<ProviderId>().unwrap(), "x");
    for bad in ["", "Okta", "okta.acme", "_okta", "ø", &"a".repeat(64)] {
        assert!(bad.parse::<ProviderId>().is_err(), "{bad:?} was accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// [[token.require]] and [sessions]
// ---------------------------------------------------------------------------------------------

#[test]
fn required_claims_take_a_name_as_written_or_a_path_of_member_names() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            r#"{SETTINGS}
[token]
issuer = "https://idp.example"
audiences = ["kratos"]

[[token.require]]
claim = ["raw", "http://schemas.microsoft.com/identity/claims/tenantid"]
equals = "5f1c0b9e"

[[token.require]]
claim = "http://schemas.example/claims/org.id"
equals = "org-1"
"#
        ),
    );

    let (providers, _) = tree.loaded();

    let token = providers.get("p").unwrap().settings.token.clone().unwrap();
    assert_eq!(
        token.require,
        [
            crate::token::RequiredClaim::new(
                [
                    "raw",
                    "http://schemas.microsoft.com/identity/claims/tenantid"
                ],
                "5f1c0b9e"
            ),
            crate::token::RequiredClaim::new(["http://schemas.example/claims/org.id"], "org-1"),
        ]
    );
}

#[test]
fn every_required_claim_problem_is_reported_at_its_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            r#"{SETTINGS}
[token]
issuer = "https://idp.example"
audiences = ["kratos"]
require = [
  {{ claim = "tid" }},
  {{ equals = "x" }},
  {{ claim = [], equals = "x" }},
  {{ claim = 3, equals = "x" }},
  {{ claim = "aud", equals = "x" }},
  {{ claim = "tid", equals = "x", value = "y" }},
  {{ claim = ["tid"], equals = "z" }},
  "tid",
]
"#
        ),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 8, "{}", show(&errors));
    let at = |line, needle| assert_error(&tree, &errors, "p/provider.toml", Some(line), needle);
    at(11, "`token.require[0].equals` is missing");
    at(12, "`token.require[1].claim` is missing");
    at(13, "`token.require[2].claim` is empty");
    at(
        14,
        "`token.require[3].claim` must be a claim name or a list of names, not an integer",
    );
    at(15, "`aud` is checked by the verifier itself");
    at(16, "unknown key `value` in token.require[5]");
    at(17, "names `tid` a second time");
    at(
        18,
        "`token.require[7]` must be a table with claim and equals, not a string",
    );
}

#[test]
fn sessions_default_to_revoking_on_a_change_of_role_or_tenant() {
    let tree = Tree::new();
    tree.provider("p");

    let (providers, _) = tree.loaded();

    assert_eq!(
        providers
            .get("p")
            .unwrap()
            .settings
            .sessions
            .revoke_when_changed,
        ["traits.role", "traits.tenant_id"]
    );
}

#[test]
fn revoke_when_changed_replaces_the_defaults_and_may_be_empty() {
    let tree = Tree::new();
    tree.provider("p")
        .write(
            "p/provider.toml",
            &format!(
                "{SETTINGS}\n[sessions]\nrevoke_when_changed = [\"traits.role\", \"metadata_public.plan\"]\n"
            ),
        )
        .provider("q")
        .write(
            "q/provider.toml",
            &format!("{SETTINGS}\n[sessions]\nrevoke_when_changed = []\n"),
        );

    let (providers, _) = tree.loaded();

    let fields = |id| {
        providers
            .get(id)
            .unwrap()
            .settings
            .sessions
            .revoke_when_changed
            .clone()
    };
    assert_eq!(fields("p"), ["traits.role", "metadata_public.plan"]);
    assert!(fields("q").is_empty());
}

#[test]
fn unknown_or_malformed_session_fields_are_reported_at_their_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/provider.toml",
        &format!(
            r#"{SETTINGS}
[sessions]
revoke_when_changed = [
  "traits.rol",
  "role",
  "credentials.oidc",
  "metadata_admin.kratos_jit",
  "traits.role",
  "traits.role",
  7,
]
revoke = true
"#
        ),
    );

    let errors = tree.errors();

    assert_eq!(errors.len(), 7, "{}", show(&errors));
    let at = |line, needle| assert_error(&tree, &errors, "p/provider.toml", Some(line), needle);
    at(
        9,
        "the identity schema has no trait `rol` (its traits: email, first_name, last_name, role, tenant_id)",
    );
    at(10, "\"role\" is not a field path");
    at(11, "unknown section `credentials`");
    at(12, "kratos-jit's own provenance");
    at(14, "\"traits.role\" is listed twice");
    at(
        15,
        "`sessions.revoke_when_changed`[6] must be a string, not an integer",
    );
    at(
        17,
        "unknown key `revoke` in [sessions] (did you mean `revoke_when_changed`?)",
    );
}

// ---------------------------------------------------------------------------------------------
// SCIM mappers and fixtures
// ---------------------------------------------------------------------------------------------

const SCIM_MAPPER: &str = "local scim = std.extVar('scim');\n\
{ identity: { traits: { email: scim.userName, tenant_id: 'tenant-x', role: 'user' } } }\n";

const SCIM_INPUT: &str = r#"{"userName": "ada@x.example", "groups": [
    {"value": "g1", "display": "Staff", "displayName": "Staff", "externalId": null}
]}"#;

const SCIM_ENABLED: &str = "\n[scim]\nenabled = true\nsecrets_env = \"SCIM_SECRET\"\n";

#[test]
fn a_scim_mapper_and_its_fixtures_load_beside_the_claims_mapper() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/provider.toml", &format!("{SETTINGS}{SCIM_ENABLED}"))
        .write("p/scim.jsonnet", SCIM_MAPPER)
        .write("p/tests/pushed.scim.json", SCIM_INPUT)
        .write("p/tests/pushed.expect.json", EXPECT);

    let (providers, warnings) = tree.loaded();

    assert!(warnings.is_empty(), "{warnings:?}");
    let provider = providers.get("p").unwrap();
    assert!(provider.settings.scim.enabled);
    let scim = provider.mapper_of(MapperKind::Scim).unwrap();
    assert_eq!(scim.path, tree.path("p/scim.jsonnet"));
    assert_eq!(scim.kind, MapperKind::Scim);
    let kinds: Vec<(&str, MapperKind)> = provider
        .fixtures
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [("pushed", MapperKind::Scim), ("user", MapperKind::Claims)]
    );
    let sources: Vec<MapperKind> = providers.mapper_sources().iter().map(|s| s.kind).collect();
    assert_eq!(sources, [MapperKind::Claims, MapperKind::Scim]);
}

#[test]
fn enabled_scim_without_a_scim_mapper_is_reported_at_the_folder() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/provider.toml", &format!("{SETTINGS}{SCIM_ENABLED}"));

    let errors = tree.errors();

    assert_error(&tree, &errors, "p", None, "scim.jsonnet is missing");
}

#[test]
fn a_scim_mapper_syntax_error_is_reported_at_its_line() {
    let tree = Tree::new();
    tree.provider("p").write(
        "p/scim.jsonnet",
        "local scim = std.extVar('scim');\n{ identity: ",
    );

    let errors = tree.errors();

    assert_error(&tree, &errors, "p/scim.jsonnet", Some(2), "syntax error");
}

#[test]
fn scim_fixtures_need_a_scim_mapper_a_user_object_and_their_own_case_name() {
    let tree = Tree::new();
    tree.provider("p")
        .write("p/tests/pushed.scim.json", SCIM_INPUT)
        .write("p/tests/pushed.expect.json", EXPECT);
    assert_error(
        &tree,
        &tree.errors(),
        "p/tests/pushed.scim.json",
        None,
        "the provider has no scim.jsonnet",
    );

    tree.write("p/scim.jsonnet", SCIM_MAPPER)
        .write(
            "p/tests/pushed.scim.json",
            r#"{"groups": [{"display": "x"}]}"#,
        )
        .write("p/tests/user.scim.json", SCIM_INPUT);
    let errors = tree.errors();
    assert_error(
        &tree,
        &errors,
        "p/tests/pushed.scim.json",
        Some(1),
        "`groups` must be a list of memberships",
    );
    assert_error(
        &tree,
        &errors,
        "p/tests/user.scim.json",
        None,
        "has both user.claims.json and user.scim.json",
    );
}
