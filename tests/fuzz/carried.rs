//! The carried claims → the hooks' use case, without HTTP in between: valid registration and
//! login bodies whose `metadata_public.kratos_jit_claims.claims` (the JSON text the Kratos-side
//! mapper carries, handed to the mapper worker unparsed) is mutated, run through
//! `hooks::registration` and `hooks::login` against the stand-in.
//!
//! For every body that parses: the hook answers 200, 204 or a 4xx other than 429, and a refusal
//! left Kratos's identities as they were (but for the documented "linked" 409).

use std::sync::Arc;
use std::time::Duration;

use kratos_jit::carrier::CARRIED_CLAIMS_KEY;
use kratos_jit::http::auth::Secrets;
use kratos_jit::http::hooks::body::HookBody;
use kratos_jit::http::hooks::{self, HookSettings};
use kratos_jit::kratos::{HttpKratos, KratosSettings};
use kratos_jit::login::Logins;
use kratos_jit::mapper::{Isolation, Limits, MapperEngine, WorkerProgram};
use kratos_jit::provider::Providers;
use kratos_jit::schema::IdentitySchemas;
use kratos_jit::standin::StandIn;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::json::{Doc, Mutated, mutated};
use crate::valid::{claims_fixtures, login_body, manifest_dir, registration_body};

/// One valid hook body and the claims it carries, as a tree to mutate.
struct Carrying {
    login: bool,
    body: Value,
    claims: Doc,
}

/// The body with the claims replaced by `claims` (JSON text, valid or not).
fn with_claims(body: &Value, claims: &[u8]) -> Vec<u8> {
    let mut doc = Doc::from_value(body);
    let carried = doc
        .get_mut("identity")
        .and_then(|i| i.get_mut("metadata_public"))
        .and_then(|m| m.get_mut(CARRIED_CLAIMS_KEY))
        .and_then(|c| c.get_mut("claims"))
        .expect("a body carrying claims");
    *carried = Doc::Raw(claims.to_vec());
    doc.to_bytes()
}

fn is_linked(answer: &hooks::answer::HookAnswer) -> bool {
    answer.status == 409
        && answer
            .body
            .as_ref()
            .is_some_and(|b| b["messages"][0]["messages"][0]["context"]["code"] == "linked")
}

#[test]
fn mutated_carried_claims_get_a_4xx_at_worst_and_refusals_write_nothing() {
    let kratos = StandIn::start().expect("the stand-in starts");
    let (providers, _) = Providers::load(&manifest_dir().join("mappers")).unwrap();
    let engine = MapperEngine::start(
        providers.mapper_sources(),
        Limits::default(),
        1,
        Isolation::Processes(WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit"))),
    )
    .unwrap();
    let http = HttpKratos::new(KratosSettings {
        admin_url: kratos.base_url(),
        request_timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(1),
        ..KratosSettings::default()
    })
    .unwrap();
    let logins = Logins::new(
        http,
        engine,
        Arc::new(providers),
        Arc::new(IdentitySchemas::builtin()),
    );
    let settings = HookSettings {
        secrets: Secrets::default(),
        deadline: Duration::from_secs(1),
        claims_max_age: Duration::from_secs(300),
        max_body_bytes: 1 << 20,
        body_timeout: Duration::from_secs(5),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Every fixture Kratos would register, and then sign in (its identity as Kratos stores it).
    let mut bodies = Vec::new();
    let mut held = std::collections::HashSet::new();
    for fixture in claims_fixtures() {
        let Some(registration) = registration_body(&fixture.provider, &fixture.claims) else {
            continue;
        };
        let parsed: HookBody = serde_json::from_value(registration.clone()).unwrap();
        let answer = runtime.block_on(hooks::registration(&logins, &settings, parsed));
        let identity = answer.body.map(|b| b["identity"].clone());
        // Several fixtures are one user (one e-mail, one subject): Kratos holds them once.
        if let Some(mut identity) = identity.filter(|i| {
            answer.status == 200
                && held.insert(i["traits"]["email"].clone())
                && held.insert(json!([fixture.provider, fixture.claims["sub"]]))
        }) {
            identity["schema_id"] = json!("default");
            identity["credentials"] = json!({"oidc": {"config": {"providers": [
                {"provider": fixture.provider, "subject": fixture.claims["sub"]}
            ]}}});
            let created = kratos.insert_identity(identity);
            let id = created["id"].as_str().unwrap();
            for fresh in [true, false] {
                if let Some(body) = login_body(&fixture.provider, &fixture.claims, id, fresh) {
                    bodies.push(Carrying {
                        login: true,
                        body,
                        claims: Doc::from_value(&fixture.claims),
                    });
                }
            }
        }
        bodies.push(Carrying {
            login: false,
            body: registration,
            claims: Doc::from_value(&fixture.claims),
        });
    }

    let tally = crate::Tally::default();
    let strategy = (any::<Index>(), mutated(6));
    crate::check(
        crate::regressions!("carried"),
        strategy,
        |(pick, mutation): (Index, Mutated)| {
            let base = &bodies[pick.index(bodies.len())];
            let claims = mutation.apply(&base.claims);
            let bytes = with_claims(&base.body, &claims);
            let shown = String::from_utf8_lossy(&claims[..claims.len().min(300)]).into_owned();
            // A body that does not parse is the HTTP layer's 400 (tests/fuzz/hooks.rs).
            let Ok(body) = serde_json::from_slice::<HookBody>(&bytes) else {
                tally.add("unparsed");
                return Ok(());
            };
            kratos.clear_log();
            let before = kratos.identities();
            let answer = runtime.block_on(async {
                let run = async {
                    if base.login {
                        hooks::login(&logins, &settings, body).await
                    } else {
                        hooks::registration(&logins, &settings, body).await
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), run).await
            });
            let Ok(answer) = answer else {
                return Err(TestCaseError::fail(format!(
                    "no answer within 10 s for {shown}"
                )));
            };
            tally.add(match answer.status {
                200 => "200",
                204 => "204",
                403 => "403",
                _ => "other",
            });
            prop_assert!(
                [200, 204].contains(&answer.status)
                    || ((400..500).contains(&answer.status) && answer.status != 429),
                "answered {} {:?} for claims {shown}",
                answer.status,
                answer.body
            );
            if answer.status >= 300 && !is_linked(&answer) {
                prop_assert!(
                    kratos.identities() == before,
                    "answered {} but changed Kratos's identities ({:?}) for claims {shown}",
                    answer.status,
                    kratos.writes()
                );
            }
            Ok(())
        },
    );
    // Registrations allowed, logins applied, and claims the mapper or the policy refused.
    tally.require(&["200", "204", "403"]);
}
