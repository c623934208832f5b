//! `POST /v1/hooks/registration` and `/v1/hooks/login` through the real server: mutated hook
//! bodies (the carried claims included), every way of presenting the hook secret, and
//! `Ory-Webhook-Trigger-ID`s that are fresh, reused, empty, huge or not UTF-8.
//!
//! For every request: never a 5xx nor a 429 (Kratos retries those and drops their bodies,
//! docs/kratos.md §1.7); an answer within [`ANSWER_WITHIN`] when the request is whole;
//! `/health/alive` still answers; a call not answered 2xx left Kratos's identities as they were,
//! but for the documented registration answer "linked" (409), which adds this login's
//! credential.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::Tally;
use crate::json::{Doc, Mutated, mutated};
use crate::provision::{describe, framing, outcome, random_bytes};
use crate::server::{
    ANSWER_WITHIN, Answer, BODY_LIMIT, Framing, HOOK_SECRET, Request, Server, TRUSTED_SECRET,
};
use crate::valid::{claims_fixtures, login_body, registration_body};

#[derive(Clone, Debug)]
pub enum Body {
    Mutated(Index, Mutated),
    Random(Vec<u8>),
    Empty,
}

#[derive(Clone, Debug)]
pub enum Secret {
    Bearer,
    Bare,
    Basic,
    Wrong,
    Missing,
    Odd(Vec<u8>),
}

#[derive(Clone, Debug)]
pub enum Trigger {
    Fresh,
    /// The same id for every call that draws it.
    Reused,
    Missing,
    Empty,
    Huge(usize),
    Odd(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Case {
    /// `/v1/hooks/login` rather than `/v1/hooks/registration`.
    pub login: bool,
    pub body: Body,
    pub secret: Secret,
    pub trigger: Trigger,
    pub framing: Framing,
}

/// Header values that are not what anybody sends: empty, not UTF-8, control bytes, huge.
pub fn odd_header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"Bearer".to_vec()),
        Just(b"Bearer ".to_vec()),
        Just(b"Bearer \xff\xfe".to_vec()),
        Just(b"Basic \xc3\x28".to_vec()),
        Just(b"Basic !!!".to_vec()),
        Just(b"Basic Og==".to_vec()),
        Just(b"\x7f\x01".to_vec()),
        Just(format!("Bearer {}", "a".repeat(9_000)).into_bytes()),
        prop::collection::vec(0x20u8..=0xff, 0..40),
    ]
}

/// The valid bodies of each flow: `(registration, login)`. The login bodies name identities
/// that `server` now holds (each fixture is provisioned first), with fresh and stale claims.
pub fn valid_bodies(server: &Server) -> (Vec<Doc>, Vec<Doc>) {
    let (mut registration, mut login) = (Vec::new(), Vec::new());
    for fixture in claims_fixtures() {
        let Some(body) = registration_body(&fixture.provider, &fixture.claims) else {
            continue;
        };
        registration.push(Doc::from_value(&body));
        let provision = json!({"provider": fixture.provider, "claims": fixture.claims});
        let request = Request::post(
            "/v1/provision",
            vec![(
                "Authorization".into(),
                format!("Bearer {TRUSTED_SECRET}").into_bytes(),
            )],
            provision.to_string().into_bytes(),
        );
        let identity_id = match server.send(&request) {
            Answer::Status(200, body) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["identity_id"].as_str().map(str::to_owned)),
            _ => None,
        }
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        for fresh in [true, false] {
            if let Some(body) = login_body(&fixture.provider, &fixture.claims, &identity_id, fresh)
            {
                login.push(Doc::from_value(&body));
            }
        }
    }
    assert!(!registration.is_empty() && !login.is_empty());
    (registration, login)
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        12 => (any::<Index>(), mutated(4)).prop_map(|(i, m)| Body::Mutated(i, m)),
        2 => random_bytes().prop_map(Body::Random),
        1 => Just(Body::Empty),
    ];
    let secret = prop_oneof![
        12 => Just(Secret::Bearer),
        2 => Just(Secret::Bare),
        2 => Just(Secret::Basic),
        1 => Just(Secret::Wrong),
        1 => Just(Secret::Missing),
        1 => odd_header_value().prop_map(Secret::Odd),
    ];
    let trigger = prop_oneof![
        10 => Just(Trigger::Fresh),
        2 => Just(Trigger::Reused),
        1 => Just(Trigger::Missing),
        1 => Just(Trigger::Empty),
        1 => prop_oneof![Just(1_024usize), Just(16_000), Just(40_000)].prop_map(Trigger::Huge),
        1 => odd_header_value().prop_map(Trigger::Odd),
    ];
    (any::<bool>(), body, secret, trigger, framing()).prop_map(
        |(login, body, secret, trigger, framing)| Case {
            login,
            body,
            secret,
            trigger,
            framing,
        },
    )
}

static TRIGGERS: AtomicU64 = AtomicU64::new(0);

/// The request `case` describes. A body of one flow is sometimes sent to the other.
pub fn request(case: &Case, registration: &[Doc], login: &[Doc]) -> Request {
    let bodies = if case.login { login } else { registration };
    let body = match &case.body {
        Body::Mutated(i, mutated) => mutated.apply(&bodies[i.index(bodies.len())]),
        Body::Random(bytes) => bytes.clone(),
        Body::Empty => Vec::new(),
    };
    let mut headers = vec![("Content-Type".to_owned(), b"application/json".to_vec())];
    match &case.secret {
        Secret::Bearer => headers.push((
            "Authorization".into(),
            format!("Bearer {HOOK_SECRET}").into_bytes(),
        )),
        Secret::Bare => headers.push(("Authorization".into(), HOOK_SECRET.as_bytes().to_vec())),
        Secret::Basic => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("kratos:{HOOK_SECRET}"));
            headers.push(("Authorization".into(), format!("Basic {pair}").into_bytes()));
        }
        Secret::Wrong => headers.push((
            "Authorization".into(),
            b"Bearer wrong-secret-0123456789".to_vec(),
        )),
        Secret::Missing => {}
        Secret::Odd(value) => headers.push(("Authorization".into(), value.clone())),
    }
    let trigger = match &case.trigger {
        Trigger::Fresh => Some(
            format!(
                "fuzz-{}-{}",
                std::process::id(),
                TRIGGERS.fetch_add(1, Ordering::Relaxed)
            )
            .into_bytes(),
        ),
        Trigger::Reused => Some(b"fuzz-reused-trigger".to_vec()),
        Trigger::Missing => None,
        Trigger::Empty => Some(Vec::new()),
        Trigger::Huge(len) => Some(vec![b't'; *len]),
        Trigger::Odd(value) => Some(value.clone()),
    };
    if let Some(trigger) = trigger {
        headers.push(("Ory-Webhook-Trigger-ID".into(), trigger));
    }
    let path = if case.login {
        "/v1/hooks/login"
    } else {
        "/v1/hooks/registration"
    };
    let mut request = Request::post(path, headers, body);
    request.framing = case.framing.clone();
    request
}

/// Whether a hook answer is the registration's documented "linked" refusal (409), the one
/// non-2xx answer that follows a write.
fn is_linked(status: u16, body: &[u8]) -> bool {
    status == 409
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|b| b["messages"][0]["messages"][0]["context"]["code"] == "linked")
}

/// The hooks' properties for one request, on a server whose stand-in log was cleared before it.
pub fn check_hook_answer(
    server: &Server,
    request: &Request,
    answer: &Answer,
    before: &[Value],
) -> Result<(), TestCaseError> {
    let shown = describe(request);
    match answer {
        Answer::Status(status, body) => {
            prop_assert!(
                *status < 500 && *status != 429,
                "answered {status} {:?} to {shown}",
                String::from_utf8_lossy(body)
            );
            if !(200..300).contains(status) && !is_linked(*status, body) {
                prop_assert!(
                    server.kratos.identities() == before,
                    "answered {status} but changed Kratos's identities ({:?}) for {shown}",
                    server.kratos.writes()
                );
            }
        }
        Answer::Silent => {
            // Every request is answered: a body that never comes gets 408 at `body_timeout`.
            return Err(TestCaseError::fail(format!(
                "no answer within {ANSWER_WITHIN:?} to {shown}"
            )));
        }
        Answer::Closed => {
            prop_assert!(
                !request.is_complete() || request.body.len() > BODY_LIMIT,
                "the connection closed without an answer to {shown}"
            );
            prop_assert!(
                server.kratos.identities() == before,
                "an unanswered call wrote"
            );
        }
    }
    prop_assert!(
        server.alive(),
        "/health/alive stopped answering after {shown}"
    );
    Ok(())
}

#[test]
fn no_hook_call_gets_a_5xx_or_429_or_writes_when_refused() {
    let server = Server::start();
    let (registration, login) = valid_bodies(&server);
    let tally = Tally::default();
    crate::check(crate::regressions!("hooks"), case(), |case| {
        let request = request(&case, &registration, &login);
        server.kratos.clear_log();
        let before = server.kratos.identities();
        let answer = server.send(&request);
        tally.add(outcome(&answer));
        check_hook_answer(&server, &request, &answer, &before)?;
        if matches!(case.trigger, Trigger::Reused) {
            // A reused trigger id with another call is that call, not a retry of the first.
            let fresh = Case {
                trigger: Trigger::Fresh,
                ..case.clone()
            };
            let again = server.send(&self::request(&fresh, &registration, &login));
            prop_assert_eq!(
                answer.status(),
                again.status(),
                "a reused trigger id was answered unlike the same call with its own"
            );
        }
        Ok(())
    });
    // Registrations answered with an identity, and logins the use case itself refused.
    tally.require(&["2xx", "403"]);
}
