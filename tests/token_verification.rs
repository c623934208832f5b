//! ID token verification end to end: a test issuer on loopback serves discovery and a JWKS
//! (switchable keys, request counters, failure modes), and each test asserts the specific
//! `TokenError` an operator would see. The issuer itself is `tests/common/issuer.rs`.

#[path = "common/issuer.rs"]
mod issuer;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use kratos_jit::provider::Providers;
use kratos_jit::token::{IssuerSettings, TokenError, TokenVerifier, VerifierOptions};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use issuer::{
    AUDIENCE, EMAIL, SUBJECT, TestIssuer, TestKey, b64, key_a, key_b, key_file, key_path, now,
    payload_of, signed_raw, unsigned, with_payload,
};

const PROVIDER: &str = "okta-oidc-umbrella";

fn verifier() -> TokenVerifier {
    TokenVerifier::new(VerifierOptions::default())
}

fn verifier_with(options: VerifierOptions) -> TokenVerifier {
    TokenVerifier::new(options)
}

/// Errors name the failed check; they must not echo the token or its other claim values.
fn assert_reveals_nothing(error: &TokenError, token: &str) {
    let shown = format!("{error} {error:?}");
    for part in token.split('.').filter(|part| part.len() > 8) {
        assert!(
            !shown.contains(part),
            "the error echoes part of the token: {shown}"
        );
    }
    for value in [EMAIL, SUBJECT, "Umbrella-Users"] {
        assert!(
            !shown.contains(value),
            "the error echoes a claim value: {shown}"
        );
    }
}

/// What the provider loader makes of the `[token]` table `token_table` (TOML lines) in a provider
/// folder of its own: the settings it builds, or the message of every problem it reports.
fn load_token_table(token_table: &str) -> Result<IssuerSettings, Vec<String>> {
    let tree = tempfile::tempdir().expect("temporary directory");
    let dir = tree.path().join(PROVIDER);
    std::fs::create_dir_all(&dir).expect("provider folder");
    std::fs::write(dir.join("mapper.jsonnet"), "{ identity: { traits: {} } }\n").expect("mapper");
    let settings = format!(
        "schema_id = \"default\"\n[[tenants]]\nid = \"tenant-umbrella\"\n\
         verified_domains = [\"umbrella.example\"]\n[token]\n{token_table}"
    );
    std::fs::write(dir.join("provider.toml"), settings).expect("provider.toml");
    match Providers::load(tree.path()) {
        Ok((providers, _)) => Ok(providers
            .get(PROVIDER)
            .and_then(|provider| provider.settings.token.clone())
            .expect("the provider has token settings")),
        Err(errors) => Err(errors.into_iter().map(|error| error.message).collect()),
    }
}

async fn refused(verifier: &TokenVerifier, settings: &IssuerSettings, token: &str) -> TokenError {
    let error = verifier
        .verify(PROVIDER, settings, token)
        .await
        .expect_err("the token should have been refused");
    assert_reveals_nothing(&error, token);
    error
}

#[tokio::test]
async fn a_valid_rs256_token_is_accepted_and_its_claims_returned() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let signed = issuer.claims();
    let token = key.sign(&signed);
    let verifier = verifier();

    let claims = verifier
        .verify(PROVIDER, &issuer.settings(), &token)
        .await
        .expect("accepted");

    assert_eq!(Value::Object(claims), signed);
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1)
    );

    verifier
        .verify(PROVIDER, &issuer.settings(), &token)
        .await
        .expect("accepted again");
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1),
        "keys are cached"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_saying_how_long_ago() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"iat": now() - 900, "exp": now() - 600})));

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    let TokenError::Expired { ago, skew } = error else {
        panic!("expected Expired, got {error:?}")
    };
    assert!((595..=605).contains(&ago.as_secs()), "{ago:?}");
    assert_eq!(skew, Duration::from_secs(60));
    assert!(
        error.to_string().starts_with("the ID token expired 10m"),
        "{error}"
    );
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_not_yet_valid() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"nbf": now() + 600, "exp": now() + 900})));

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert!(
        matches!(error, TokenError::NotYetValid { remaining, .. } if (595..=605).contains(&remaining.as_secs())),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"iat": now() + 600, "exp": now() + 900})));

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert!(
        matches!(error, TokenError::IssuedInFuture { ahead, .. } if (595..=605).contains(&ahead.as_secs())),
        "{error:?}"
    );
    assert!(error.to_string().contains("check the clocks"), "{error}");
}

#[tokio::test]
async fn time_claims_within_the_clock_skew_are_accepted() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(
        &issuer.claims_with(json!({"exp": now() - 30, "nbf": now() + 30, "iat": now() + 30})),
    );

    let verified = verifier()
        .verify(PROVIDER, &issuer.settings(), &token)
        .await;

    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn a_token_without_exp_or_iat_is_refused() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier();

    for claim in ["exp", "iat"] {
        let token = key.sign(&issuer.claims_with(json!({ claim: null })));

        let error = refused(&verifier, &issuer.settings(), &token).await;

        assert_eq!(error, TokenError::MissingClaim { claim }, "{claim}");
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_naming_both() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"aud": ["other-app", "another-app"]})));

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert_eq!(
        error,
        TokenError::WrongAudience {
            expected: vec![AUDIENCE.into()],
            got: vec!["other-app".into(), "another-app".into()]
        }
    );
}

#[tokio::test]
async fn a_token_listing_our_audience_among_others_is_accepted() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"aud": ["other-app", AUDIENCE]})));

    assert!(
        verifier()
            .verify(PROVIDER, &issuer.settings(), &token)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused_naming_both() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier();

    for other in [
        "https://evil.example".to_owned(),
        format!("{}/", issuer.url),
    ] {
        let token = key.sign(&issuer.claims_with(json!({ "iss": other })));

        let error = refused(&verifier, &issuer.settings(), &token).await;

        assert_eq!(
            error,
            TokenError::WrongIssuer {
                expected: issuer.url.clone(),
                got: other
            }
        );
    }
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier();

    for alg in ["none", "None", "NONE"] {
        let token = unsigned(alg, key.kid, &issuer.claims());

        let error = refused(&verifier, &issuer.settings(), &token).await;

        assert_eq!(error, TokenError::Unsigned, "{alg}");
    }
    assert_eq!(
        issuer.jwks_requests(),
        0,
        "an unsigned token never reaches the key set"
    );
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_public_key_is_refused_even_if_hs256_is_listed() {
    let key = key_a();
    let public_pem = key_file("rsa-a.pub.pem");
    let issuer = TestIssuer::start(&[&key]).await;
    // The key set even carries that "secret" as a symmetric key: it must never be used.
    let oct = json!({"kty": "oct", "kid": "key-a", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(&public_pem)});
    issuer.publish_raw(vec![oct, key.jwk.clone()]);
    let mut settings = issuer.settings();
    settings.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
    let configured = load_token_table(&format!(
        "issuer = '{}'\naudiences = ['{AUDIENCE}']\nalgorithms = ['RS256', 'HS256']\n",
        issuer.url
    ));
    assert!(
        configured.is_err_and(|problems| problems
            .iter()
            .any(|problem| problem.contains("HS256 is a shared-secret (HMAC) algorithm"))),
        "configuration must already refuse HS256"
    );
    let forger = TestKey::new(
        "key-a",
        Algorithm::HS256,
        EncodingKey::from_secret(&public_pem),
    );
    let token = forger.sign(&issuer.claims());

    let error = refused(&verifier(), &settings, &token).await;

    assert_eq!(
        error,
        TokenError::SymmetricAlgorithm {
            alg: "HS256".into()
        }
    );
}

#[tokio::test]
async fn a_symmetric_key_in_the_key_set_is_never_used() {
    let key = key_a();
    let issuer = TestIssuer::start(&[]).await;
    issuer.publish_raw(vec![json!({"kty": "oct", "kid": "key-a", "k": "c2VjcmV0"})]);
    let token = key.sign(&issuer.claims());

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert_eq!(
        error,
        TokenError::UnknownKid {
            kid: "key-a".into()
        }
    );
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature_check() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims());
    let mut claims = payload_of(&token);
    claims["groups"] = json!(["Umbrella-Admins"]);
    let tampered = with_payload(&token, &claims);

    let error = refused(&verifier(), &issuer.settings(), &tampered).await;

    assert_eq!(
        error,
        TokenError::BadSignature {
            kid: Some("key-a".into())
        }
    );
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_fails_the_signature_check() {
    let (key, impostor) = (key_a(), key_b());
    let issuer = TestIssuer::start(&[&key]).await;
    let token = impostor.sign_as(Algorithm::RS256, Some("key-a"), &issuer.claims());

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert_eq!(
        error,
        TokenError::BadSignature {
            kid: Some("key-a".into())
        }
    );
}

#[tokio::test]
async fn an_unknown_kid_refreshes_once_then_fails_and_the_rate_limit_holds() {
    let (key, unpublished) = (key_a(), key_b());
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier_with(VerifierOptions {
        min_refresh_interval: Duration::from_secs(60),
        ..VerifierOptions::default()
    });
    let settings = issuer.settings();
    verifier
        .verify(PROVIDER, &settings, &key.sign(&issuer.claims()))
        .await
        .expect("warm-up");
    assert_eq!(issuer.jwks_requests(), 1);

    let token = unpublished.sign(&issuer.claims());
    let error = refused(&verifier, &settings, &token).await;

    assert_eq!(
        error,
        TokenError::UnknownKid {
            kid: "key-b".into()
        }
    );
    assert_eq!(issuer.jwks_requests(), 2, "one refresh for the unknown kid");

    let again = refused(&verifier, &settings, &token).await;
    let other = refused(
        &verifier,
        &settings,
        &unpublished.sign_as(Algorithm::RS256, Some("key-c"), &issuer.claims()),
    )
    .await;

    assert_eq!(
        again,
        TokenError::UnknownKid {
            kid: "key-b".into()
        }
    );
    assert_eq!(
        other,
        TokenError::UnknownKid {
            kid: "key-c".into()
        }
    );
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "no second refresh within the interval"
    );
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_with_exactly_one_refetch() {
    let (old, new) = (key_a(), key_b());
    let issuer = TestIssuer::start(&[&old]).await;
    let verifier = verifier();
    let settings = issuer.settings();
    verifier
        .verify(PROVIDER, &settings, &old.sign(&issuer.claims()))
        .await
        .expect("old key");
    assert_eq!(issuer.jwks_requests(), 1);

    issuer.publish(&[&new]);
    let verified = verifier
        .verify(PROVIDER, &settings, &new.sign(&issuer.claims()))
        .await;

    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(issuer.jwks_requests(), 2, "exactly one refetch");
    verifier
        .verify(PROVIDER, &settings, &new.sign(&issuer.claims()))
        .await
        .expect("cached");
    assert_eq!(issuer.jwks_requests(), 2);
    let retired = refused(&verifier, &settings, &old.sign(&issuer.claims())).await;
    assert_eq!(
        retired,
        TokenError::UnknownKid {
            kid: "key-a".into()
        }
    );
    assert_eq!(issuer.discovery_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tokens_with_a_new_kid_share_one_refetch() {
    let (old, new) = (key_a(), key_b());
    let issuer = TestIssuer::start(&[&old]).await;
    let verifier = Arc::new(verifier_with(VerifierOptions {
        min_refresh_interval: Duration::ZERO,
        ..VerifierOptions::default()
    }));
    let settings = issuer.settings();
    verifier
        .verify(PROVIDER, &settings, &old.sign(&issuer.claims()))
        .await
        .expect("warm-up");
    issuer.publish(&[&new]);
    issuer.delay_jwks(Duration::from_millis(300));
    let token = new.sign(&issuer.claims());

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, settings, token) = (verifier.clone(), settings.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(PROVIDER, &settings, &token).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("verified");
    }

    assert_eq!(
        issuer.jwks_requests(),
        2,
        "eight verifications, one refetch"
    );
}

#[tokio::test]
async fn a_withdrawn_key_stops_verifying_once_the_cached_set_is_too_old() {
    let (withdrawn, kept) = (key_a(), key_b());
    let issuer = TestIssuer::start(&[&withdrawn, &kept]).await;
    let verifier = verifier_with(VerifierOptions {
        max_key_age: Duration::ZERO,
        ..VerifierOptions::default()
    });
    let settings = issuer.settings();
    verifier
        .verify(PROVIDER, &settings, &withdrawn.sign(&issuer.claims()))
        .await
        .expect("published");

    issuer.publish(&[&kept]);
    let error = refused(&verifier, &settings, &withdrawn.sign(&issuer.claims())).await;

    assert_eq!(
        error,
        TokenError::UnknownKid {
            kid: "key-a".into()
        }
    );
    verifier
        .verify(PROVIDER, &settings, &kept.sign(&issuer.claims()))
        .await
        .expect("still published");
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_503_class_error() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let key = key_a();
    let settings = IssuerSettings::new(format!("http://{address}"), [AUDIENCE]);

    let error = refused(&verifier(), &settings, &key.sign(&json!({}))).await;

    assert!(error.is_unavailable(), "{error:?}");
    let TokenError::JwksUnavailable { url, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        url,
        &format!("http://{address}/.well-known/openid-configuration")
    );
}

#[tokio::test]
async fn a_failing_jwks_endpoint_is_a_503_class_error_until_it_recovers() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier_with(VerifierOptions {
        min_refresh_interval: Duration::ZERO,
        ..VerifierOptions::default()
    });
    let token = key.sign(&issuer.claims());
    issuer.answer_jwks_with_status(500);

    let error = refused(&verifier, &issuer.settings(), &token).await;

    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(
        error,
        TokenError::JwksUnavailable {
            url: format!("{}/jwks", issuer.url),
            reason: "it answered HTTP 500 Internal Server Error".into()
        }
    );

    issuer.answer_jwks_with_status(0);
    assert!(
        verifier
            .verify(PROVIDER, &issuer.settings(), &token)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_failed_fetch_is_not_retried_within_the_minimum_interval() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier_with(VerifierOptions {
        min_refresh_interval: Duration::from_secs(60),
        ..VerifierOptions::default()
    });
    let token = key.sign(&issuer.claims());
    issuer.answer_jwks_with_status(503);
    let first = refused(&verifier, &issuer.settings(), &token).await;

    issuer.answer_jwks_with_status(0);
    let second = refused(&verifier, &issuer.settings(), &token).await;

    assert!(second.is_unavailable());
    assert_eq!(second, first, "the failure is answered from memory");
    assert_eq!(issuer.jwks_requests(), 1);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    issuer.claim_to_be("https://evil.example");

    let error = refused(&verifier(), &issuer.settings(), &key.sign(&issuer.claims())).await;

    assert!(
        error.is_unavailable(),
        "a configuration problem, not the token's fault"
    );
    assert_eq!(
        error,
        TokenError::DiscoveryIssuerMismatch {
            url: format!("{}/.well-known/openid-configuration", issuer.url),
            expected: issuer.url.clone(),
            got: "https://evil.example".into()
        }
    );
    assert_eq!(issuer.jwks_requests(), 0);
}

#[tokio::test]
async fn a_configured_jwks_url_skips_discovery() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    issuer.claim_to_be("https://never-read.example");
    let mut settings = issuer.settings();
    settings.jwks_url = Some(format!("{}/jwks", issuer.url));

    let verified = verifier()
        .verify(PROVIDER, &settings, &key.sign(&issuer.claims()))
        .await;

    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (0, 1)
    );
}

#[tokio::test]
async fn a_token_without_kid_is_accepted_only_when_the_key_set_holds_one_key() {
    let (key, other) = (key_a(), key_b());
    let single = TestIssuer::start(&[&key]).await;
    let several = TestIssuer::start(&[&key, &other]).await;
    let verifier = verifier();

    let token = key.sign_as(Algorithm::RS256, None, &single.claims());
    assert!(
        verifier
            .verify(PROVIDER, &single.settings(), &token)
            .await
            .is_ok()
    );

    let token = key.sign_as(Algorithm::RS256, None, &several.claims());
    let error = refused(&verifier, &several.settings(), &token).await;
    assert_eq!(error, TokenError::MissingKid { keys: 2 });
}

#[tokio::test]
async fn a_key_published_for_another_algorithm_is_not_used() {
    let key = key_a().publishing(json!({"alg": "RS512"}));
    let issuer = TestIssuer::start(&[&key]).await;
    let mut settings = issuer.settings();
    settings.algorithms = vec![Algorithm::RS256, Algorithm::RS512];

    let error = refused(&verifier(), &settings, &key.sign(&issuer.claims())).await;

    assert_eq!(
        error,
        TokenError::KeyDoesNotFit {
            kid: Some("key-a".into()),
            alg: "RS256".into(),
            reason: "the issuer publishes it for RS512 only".into()
        }
    );
}

#[tokio::test]
async fn a_key_of_another_type_is_not_used() {
    // Published without its own `alg`, so only the key type can tell it does not fit.
    let (rsa, ec) = (
        key_a(),
        TestKey::ec("ec-p256.pem", "key-ec").publishing(json!({"alg": null})),
    );
    let issuer = TestIssuer::start(&[&ec]).await;
    let token = rsa.sign_as(Algorithm::RS256, Some("key-ec"), &issuer.claims());

    let error = refused(&verifier(), &issuer.settings(), &token).await;

    assert_eq!(
        error,
        TokenError::KeyDoesNotFit {
            kid: Some("key-ec".into()),
            alg: "RS256".into(),
            reason: "it is an EC key".into()
        }
    );
}

#[tokio::test]
async fn an_encryption_key_in_the_key_set_is_not_used_for_signatures() {
    let key = key_a().publishing(json!({"use": "enc"}));
    let issuer = TestIssuer::start(&[&key]).await;

    let error = refused(&verifier(), &issuer.settings(), &key.sign(&issuer.claims())).await;

    assert_eq!(
        error,
        TokenError::UnknownKid {
            kid: "key-a".into()
        }
    );
}

#[tokio::test]
async fn an_es256_token_is_accepted_when_es256_is_allowed() {
    let key = TestKey::ec("ec-p256.pem", "key-ec");
    let issuer = TestIssuer::start(&[&key]).await;
    let mut settings = issuer.settings();
    settings.algorithms = vec![Algorithm::ES256];

    let verified = verifier()
        .verify(PROVIDER, &settings, &key.sign(&issuer.claims()))
        .await;

    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn an_algorithm_outside_the_allow_list_is_refused_naming_it() {
    let (rsa, ec) = (key_a(), TestKey::ec("ec-p256.pem", "key-ec"));
    let issuer = TestIssuer::start(&[&rsa, &ec]).await;
    let verifier = verifier();

    for (token, alg) in [
        (
            rsa.sign_as(Algorithm::RS384, Some("key-a"), &issuer.claims()),
            "RS384",
        ),
        (ec.sign(&issuer.claims()), "ES256"),
    ] {
        let error = refused(&verifier, &issuer.settings(), &token).await;

        assert_eq!(
            error,
            TokenError::AlgorithmNotAllowed {
                alg: alg.into(),
                allowed: "RS256".into()
            }
        );
    }
    let header = json!({"alg": "XS999", "kid": "key-a"});
    let error = refused(
        &verifier,
        &issuer.settings(),
        &format!("{}.e30.c2ln", b64(&header)),
    )
    .await;
    assert_eq!(
        error,
        TokenError::AlgorithmNotAllowed {
            alg: "XS999".into(),
            allowed: "RS256".into()
        }
    );
}

#[tokio::test]
async fn a_malformed_token_is_refused_as_malformed() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = verifier();
    let valid = key.sign(&issuer.claims());
    let [header, _, signature]: [&str; 3] = valid
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three parts");

    for token in [
        "not-a-token".to_owned(),
        "a.b".to_owned(),
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".to_owned(),
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode("not json"),
            b64(&issuer.claims())
        ),
        format!("{}.e30.{signature}", b64(&json!({"kid": "key-a"}))),
        format!(
            "{}.e30.{signature}",
            b64(&json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"]}))
        ),
        signed_raw(&key, &format!("{header}.bm90IGpzb24")),
    ] {
        let error = refused(&verifier, &issuer.settings(), &token).await;

        assert!(
            matches!(error, TokenError::Malformed(_)),
            "{token}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_ca_bundle_gets_its_own_client_and_still_verifies() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let settings = load_token_table(&format!(
        "issuer = '{}'\naudiences = ['{AUDIENCE}']\nca_bundle = '{}'\n",
        issuer.url,
        key_path("test-ca.pem").display()
    ))
    .expect("the loader accepts the bundle");
    assert_eq!(settings.ca_bundle, Some(key_path("test-ca.pem")));

    let verified = verifier()
        .verify(PROVIDER, &settings, &key.sign(&issuer.claims()))
        .await;

    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn an_unusable_ca_bundle_is_a_503_class_error_naming_the_file() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let bundle = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(bundle.path(), "not a certificate").expect("write");
    let problems = load_token_table(&format!(
        "issuer = '{}'\naudiences = ['{AUDIENCE}']\nca_bundle = '{}'\n",
        issuer.url,
        bundle.path().display()
    ))
    .expect_err("the loader refuses the bundle");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("holds no PEM certificate"),
        "{problems:?}"
    );
    // A bundle that goes bad after the load is only met when the verifier first fetches keys.
    let mut settings = issuer.settings();
    settings.ca_bundle = Some(bundle.path().to_owned());

    let error = refused(&verifier(), &settings, &key.sign(&issuer.claims())).await;

    assert!(error.is_unavailable());
    assert!(
        error.to_string().contains("holds no PEM certificate"),
        "{error}"
    );
}

#[test]
fn the_verifier_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<TokenVerifier>();
    shareable::<Arc<TokenVerifier>>();
    shareable::<TokenError>();
}

#[tokio::test]
async fn claims_of_a_verified_token_feed_the_kratos_claims_builder() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = key.sign(&issuer.claims_with(json!({"email_verified": "true"})));

    let claims: Map<String, Value> = verifier()
        .verify(PROVIDER, &issuer.settings(), &token)
        .await
        .expect("accepted");
    let for_mapper = kratos_jit::claims::kratos_claims(&claims).expect("Kratos-compatible");

    assert_eq!(for_mapper["email"], EMAIL);
    assert_eq!(for_mapper["email_verified"], true);
    assert_eq!(
        for_mapper["raw_claims"]["groups"],
        json!(["Umbrella-Users"])
    );
}

#[tokio::test]
async fn a_token_of_the_same_issuer_without_the_providers_required_claim_is_refused() {
    let key = key_a();
    let issuer = TestIssuer::start(&[&key]).await;
    let mut settings = issuer.settings();
    settings.require = vec![kratos_jit::token::RequiredClaim::new(
        [
            "raw",
            "http://schemas.microsoft.com/identity/claims/tenantid",
        ],
        "tenant-of-this-provider",
    )];
    let raw = |tenant: &str| json!({"raw": {"http://schemas.microsoft.com/identity/claims/tenantid": tenant}});
    let ours = key.sign(&issuer.claims_with(raw("tenant-of-this-provider")));
    let theirs = key.sign(&issuer.claims_with(raw("tenant-of-another-customer")));
    let without = key.sign(&issuer.claims());

    let accepted = verifier().verify(PROVIDER, &settings, &ours).await;
    let other = refused(&verifier(), &settings, &theirs).await;
    let missing = refused(&verifier(), &settings, &without).await;

    assert!(accepted.is_ok(), "{accepted:?}");
    let claim = "raw › http://schemas.microsoft.com/identity/claims/tenantid".to_owned();
    assert_eq!(
        other,
        TokenError::OtherProvider {
            claim: claim.clone(),
            problem: "holds another value than the one required"
        }
    );
    assert_eq!(
        missing,
        TokenError::OtherProvider {
            claim,
            problem: "is missing"
        }
    );
    assert_eq!(other.code(), "other_provider");
    assert!(
        !format!("{other} {other:?}").contains("tenant-of-"),
        "{other:?}"
    );
    assert!(!other.is_unavailable());
}

#[tokio::test]
async fn required_claims_are_read_from_the_token_table() {
    let settings = load_token_table(
        "issuer = \"https://sso.example.test\"\naudiences = [\"kratos\"]\n\
         [[token.require]]\nclaim = \"tid\"\nequals = \"t-1\"\n",
    )
    .expect("loads");

    assert_eq!(
        settings.require,
        [kratos_jit::token::RequiredClaim::new(["tid"], "t-1")]
    );
}
