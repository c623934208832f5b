//! The seed corpus, `tests/fuzz/corpus/`: inputs worth replaying on every run, each checked
//! with the same property as the generated ones (see `corpus/README.md` for the layout).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::server::{HOOK_SECRET, Request, Server, TRUSTED_SECRET};
use crate::valid::manifest_dir;

/// `(file name, contents)` of every file in `corpus/<kind>/`, by name.
fn inputs(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = manifest_dir().join("tests/fuzz/corpus").join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn fail_on(name: &str, result: Result<(), proptest::test_runner::TestCaseError>) {
    if let Err(error) = result {
        panic!("corpus input {name}: {error}");
    }
}

#[test]
fn the_provisioning_corpus_keeps_the_api_properties() {
    let server = Server::start();
    for (name, body) in inputs("provision") {
        let request = Request::post(
            "/v1/provision",
            vec![(
                "Authorization".into(),
                format!("Bearer {TRUSTED_SECRET}").into_bytes(),
            )],
            body,
        );
        server.kratos.clear_log();
        let before = server.kratos.identities();
        let answer = server.send(&request);
        fail_on(
            &name,
            crate::provision::check_api_answer(&server, &request, &answer, &before),
        );
    }
}

#[test]
fn the_hook_corpus_keeps_the_hook_properties() {
    let server = Server::start();
    for (index, (name, body)) in inputs("hooks").into_iter().enumerate() {
        let path = if name.starts_with("login") {
            "/v1/hooks/login"
        } else {
            "/v1/hooks/registration"
        };
        let request = Request::post(
            path,
            vec![
                (
                    "Authorization".into(),
                    format!("Bearer {HOOK_SECRET}").into_bytes(),
                ),
                (
                    "Ory-Webhook-Trigger-ID".into(),
                    format!("corpus-{index}").into_bytes(),
                ),
            ],
            body,
        );
        server.kratos.clear_log();
        let before = server.kratos.identities();
        let answer = server.send(&request);
        fail_on(
            &name,
            crate::hooks::check_hook_answer(&server, &request, &answer, &before),
        );
    }
}

#[test]
fn the_claims_corpus_keeps_the_conversion_properties() {
    for (name, bytes) in inputs("claims") {
        let claims: Map<String, Value> = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("corpus input {name} is no JSON object: {e}"));
        fail_on(&name, crate::claims::check_claims(&claims));
    }
}

#[test]
fn the_token_corpus_is_refused() {
    let tokens: Vec<(String, String)> = inputs("tokens")
        .into_iter()
        .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
        .collect();
    crate::tokens::assert_refused(&tokens);
}

#[test]
fn the_provider_corpus_keeps_the_loading_properties() {
    let folder = manifest_dir().join("mappers/okta-acme");
    let settings = std::fs::read(folder.join("provider.toml")).unwrap();
    let mapper = std::fs::read(folder.join("mapper.jsonnet")).unwrap();
    for (name, bytes) in inputs("providers") {
        let result = if name.ends_with(".toml") {
            crate::providers::check_folder(&bytes, &mapper)
        } else {
            crate::providers::check_folder(&settings, &bytes)
        };
        if let Err(error) = result {
            panic!("corpus input {name}: {error}");
        }
    }
}
