//! `POST /v1/provision` through the real server: mutated provisioning bodies (trusted claims and
//! ID tokens), every kind of secret, honest and lying framing.
//!
//! For every request: no 5xx but 503; an answer within [`ANSWER_WITHIN`] when the request is
//! whole; `/health/alive` still answers; a request not answered 2xx left Kratos's identities as
//! they were. (A refusal may follow a write Kratos itself refused: a create that meets another
//! identity's e-mail is answered `value_taken`; so the identities are compared, not the
//! stand-in's log of write requests.)

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::Tally;
use crate::json::{Doc, Mutated, mutated};
use crate::server::{
    ANSWER_WITHIN, API_SECRET, Answer, BODY_LIMIT, Framing, Request, Server, TRUSTED_SECRET,
};
use crate::valid::claims_fixtures;

#[derive(Clone, Debug)]
pub enum Body {
    /// A valid body (by index), mutated.
    Mutated(Index, Mutated),
    Random(Vec<u8>),
    Empty,
}

#[derive(Clone, Debug)]
pub enum Secret {
    Trusted,
    Api,
    Wrong,
    Missing,
    /// Any header value, not necessarily UTF-8.
    Odd(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub body: Body,
    pub secret: Secret,
    pub framing: Framing,
    pub json_content_type: bool,
}

/// The valid bodies: every claims fixture as a trusted caller sends it, and ID tokens for the
/// providers with `[token]` settings (the sample issuers cannot be reached: 503 at best).
pub fn valid_bodies() -> Vec<Doc> {
    let mut bodies: Vec<Doc> = claims_fixtures()
        .into_iter()
        .map(|f| Doc::from_value(&json!({"provider": f.provider, "claims": f.claims})))
        .collect();
    for provider in ["okta-oidc-umbrella", "okta-acme"] {
        let header = crate::issuer::b64(&json!({"alg": "RS256", "kid": "key-a", "typ": "JWT"}));
        let payload = crate::issuer::b64(&json!({"iss": "x", "sub": "ada"}));
        let token = format!("{header}.{payload}.c2lnbmF0dXJl");
        bodies.push(Doc::from_value(
            &json!({"provider": provider, "id_token": token}),
        ));
    }
    bodies
}

pub fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        12 => Just(Framing::Length),
        3 => prop::collection::vec(1usize..5_000, 1..4).prop_map(Framing::Chunked),
        1 => prop_oneof![Just(1u64), Just(1_000), Just(1 << 40)].prop_map(Framing::Promises),
    ]
}

pub fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        "[ -~]{0,64}".prop_map(String::into_bytes),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        12 => (any::<Index>(), mutated(4)).prop_map(|(i, m)| Body::Mutated(i, m)),
        2 => random_bytes().prop_map(Body::Random),
        1 => Just(Body::Empty),
    ];
    let secret = prop_oneof![
        12 => Just(Secret::Trusted),
        2 => Just(Secret::Api),
        1 => Just(Secret::Wrong),
        1 => Just(Secret::Missing),
        1 => crate::hooks::odd_header_value().prop_map(Secret::Odd),
    ];
    (body, secret, framing(), any::<bool>()).prop_map(|(body, secret, framing, json)| Case {
        body,
        secret,
        framing,
        json_content_type: json,
    })
}

/// The request `case` describes.
pub fn request(case: &Case, bodies: &[Doc]) -> Request {
    let body = match &case.body {
        Body::Mutated(i, mutated) => mutated.apply(&bodies[i.index(bodies.len())]),
        Body::Random(bytes) => bytes.clone(),
        Body::Empty => Vec::new(),
    };
    let mut headers = Vec::new();
    let bearer = |s: &str| format!("Bearer {s}").into_bytes();
    match &case.secret {
        Secret::Trusted => headers.push(("Authorization".into(), bearer(TRUSTED_SECRET))),
        Secret::Api => headers.push(("Authorization".into(), bearer(API_SECRET))),
        Secret::Wrong => headers.push(("Authorization".into(), bearer("wrong-secret-0123456789"))),
        Secret::Missing => {}
        Secret::Odd(value) => headers.push(("Authorization".into(), value.clone())),
    }
    if case.json_content_type {
        headers.push(("Content-Type".into(), b"application/json".to_vec()));
    }
    let mut request = Request::post("/v1/provision", headers, body);
    request.framing = case.framing.clone();
    request
}

/// The class of an answer, for a [`Tally`].
pub fn outcome(answer: &Answer) -> &'static str {
    match answer.status() {
        Some(200..=299) => "2xx",
        Some(400) => "400",
        Some(401) => "401",
        Some(403) => "403",
        Some(413) => "413",
        Some(_) => "other",
        None => "no answer",
    }
}

/// A short description of a request for a failure message (the body cut, bytes escaped).
pub fn describe(request: &Request) -> String {
    let body = String::from_utf8_lossy(&request.body[..request.body.len().min(300)]).into_owned();
    format!(
        "{} {} ({} body bytes, {:?}): {body:?}",
        request.method,
        request.path,
        request.body.len(),
        request.framing
    )
}

/// The API's properties for one request, on a server whose stand-in log was cleared before it.
pub fn check_api_answer(
    server: &Server,
    request: &Request,
    answer: &Answer,
    before: &[Value],
) -> Result<(), TestCaseError> {
    let shown = describe(request);
    match answer {
        Answer::Status(status, body) => {
            prop_assert!(
                *status < 500 || *status == 503,
                "answered {status} {:?} to {shown}",
                String::from_utf8_lossy(body)
            );
            if !(200..300).contains(status) {
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
            // A server may close early on a body over the limit it is still being sent.
            prop_assert!(
                !request.is_complete() || request.body.len() > BODY_LIMIT,
                "the connection closed without an answer to {shown}"
            );
            prop_assert!(
                server.kratos.identities() == before,
                "an unanswered request wrote"
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
fn no_provisioning_request_gets_a_5xx_other_than_503_or_writes_when_refused() {
    let server = Server::start();
    let bodies = valid_bodies();
    let tally = Tally::default();
    crate::check(crate::regressions!("provision"), case(), |case| {
        let request = request(&case, &bodies);
        server.kratos.clear_log();
        let before = server.kratos.identities();
        let answer = server.send(&request);
        tally.add(outcome(&answer));
        check_api_answer(&server, &request, &answer, &before)
    });
    // Logins provisioned, and logins the use case itself refused.
    tally.require(&["2xx", "403"]);
}
