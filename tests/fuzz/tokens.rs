//! ID tokens → `TokenVerifier::verify` against a test issuer on loopback that publishes RSA keys
//! `key-a` and `key-b`, for settings allowing RS256, RS384 and PS256.
//!
//! Tokens are valid tokens with mutated headers (`alg`, `kid`, any JSON) and payloads, signed
//! again with a published key, an unpublished one or HMAC keyed with the public key (algorithm
//! confusion), or kept with their original signature; then edited as text. Or random text.
//!
//! For every token: never a panic; a token accepted is three parts whose signature verifies —
//! checked here with the `rsa` crate, not the verifier's own code — with a published key under
//! the header's algorithm, and whose `iss`, `aud` and `exp` are the issuer's, ours and ahead.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use kratos_jit::token::{IssuerSettings, TokenVerifier, VerifierOptions};
use proptest::prelude::*;
use proptest::sample::Index;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use crate::issuer::{AUDIENCE, TestIssuer, TestKey, key_a, key_b, key_file, now};
use crate::json::{Doc, Edit, Mutated, escaped, mutated};

const PROVIDER: &str = "okta-oidc-umbrella";

/// The algorithms the settings allow.
const ALLOWED: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::PS256];

/// `alg` values: allowed, known but not allowed, never allowed, misspelt.
const ALGS: &[&str] = &[
    "RS256", "RS384", "PS256", "RS512", "PS512", "ES256", "EdDSA", "HS256", "HS512", "none",
    "None", "NONE", "rs256", "RS256 ", "",
];
const KIDS: &[&str] = &["key-a", "key-b", "key-c", "", "../key-a", "KEY-A"];

#[derive(Clone, Debug)]
pub enum Signer {
    KeyA(Algorithm),
    KeyB(Algorithm),
    /// A key the issuer does not publish.
    Unpublished,
    /// HMAC-SHA256 keyed with key A's public key PEM.
    HmacWithPublicKey,
    /// The signature of the unmutated token.
    Original,
    Bytes(Vec<u8>),
    Empty,
}

#[derive(Clone, Debug)]
pub enum TokenCase {
    Built {
        alg: Option<&'static str>,
        kid: Option<Option<&'static str>>,
        header: Mutated,
        payload: Mutated,
        signer: Signer,
        edits: Vec<Edit>,
    },
    Random(String),
}

fn signer() -> impl Strategy<Value = Signer> {
    let alg = prop::sample::select(
        &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::PS256,
            Algorithm::RS512,
        ][..],
    );
    prop_oneof![
        4 => alg.clone().prop_map(Signer::KeyA),
        1 => alg.prop_map(Signer::KeyB),
        1 => Just(Signer::Unpublished),
        1 => Just(Signer::HmacWithPublicKey),
        3 => Just(Signer::Original),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Signer::Bytes),
        1 => Just(Signer::Empty),
    ]
}

fn text_edit() -> impl Strategy<Value = Edit> {
    let inserted = prop_oneof![
        Just(b".".to_vec()),
        Just(b"=".to_vec()),
        Just(b" ".to_vec()),
        Just(b"+".to_vec()),
        Just(b"/".to_vec()),
        Just(b"\n".to_vec()),
        Just("é".as_bytes().to_vec()),
        "[A-Za-z0-9_-]{1,4}".prop_map(String::into_bytes),
    ];
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), inserted).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), prop_oneof![Just(1u8), Just(2), Just(0x20)])
            .prop_map(|(i, m)| Edit::Flip(i, m)),
    ]
}

fn token_case() -> impl Strategy<Value = TokenCase> {
    let built = (
        prop::option::weighted(0.3, prop::sample::select(ALGS)),
        prop::option::weighted(0.3, prop::option::of(prop::sample::select(KIDS))),
        prop_oneof![3 => Just(mutated_none()), 1 => mutated(2)],
        prop_oneof![1 => Just(mutated_none()), 1 => mutated(3)],
        signer(),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(text_edit(), 1..3)],
    )
        .prop_map(
            |(alg, kid, header, payload, signer, edits)| TokenCase::Built {
                alg,
                kid,
                header,
                payload,
                signer,
                edits,
            },
        );
    prop_oneof![
        8 => built,
        1 => "[A-Za-z0-9_.=-]{0,200}".prop_map(TokenCase::Random),
        1 => any::<String>().prop_map(TokenCase::Random),
    ]
}

struct Keys {
    a: TestKey,
    b: TestKey,
    unpublished: EncodingKey,
    a_public_pem: Vec<u8>,
    /// Key A's signature of the unmutated token (signing is slow in a debug build: made once).
    original_signature: String,
    /// The published keys, for the independent check.
    published: Vec<RsaPublicKey>,
}

/// The header of the unmutated token.
fn original_header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "key-a"})
}

fn keys() -> Keys {
    let public = |file: &str| {
        RsaPrivateKey::from_pkcs8_pem(std::str::from_utf8(&key_file(file)).unwrap())
            .unwrap()
            .to_public_key()
    };
    let a_public_pem = key_file("rsa-a.pub.pem");
    let a_public =
        RsaPublicKey::from_public_key_pem(std::str::from_utf8(&a_public_pem).unwrap()).unwrap();
    assert_eq!(a_public, public("rsa-a.pem"));
    Keys {
        a: key_a(),
        original_signature: String::new(),
        b: key_b(),
        // The EC test key, which the issuer does not publish.
        unpublished: EncodingKey::from_ec_pem(&key_file("ec-p256.pem")).unwrap(),
        a_public_pem,
        published: vec![a_public, public("rsa-b.pem")],
    }
}

impl Keys {
    /// With key A's signature of the unmutated token of `claims`.
    fn signing_original(mut self, claims: &Value) -> Keys {
        let original = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(original_header().to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        self.original_signature =
            jsonwebtoken::crypto::sign(original.as_bytes(), &self.a.encoding, Algorithm::RS256)
                .expect("signing");
        self
    }
}

/// The token text a case describes.
fn token(case: &TokenCase, keys: &Keys, claims: &Value) -> String {
    let TokenCase::Built {
        alg,
        kid,
        header,
        payload,
        signer,
        edits,
    } = case
    else {
        let TokenCase::Random(text) = case else {
            unreachable!()
        };
        return text.clone();
    };
    let mut header_doc = Doc::from_value(&original_header());
    if let Some(alg) = alg
        && let Some(slot) = header_doc.get_mut("alg")
    {
        *slot = Doc::Text(escaped(alg));
    }
    if let Some(kid) = kid
        && let Doc::Object(entries) = &mut header_doc
    {
        entries.retain(|(k, _)| k != b"kid");
        if let Some(kid) = kid {
            entries.push((b"kid".to_vec(), Doc::Text(escaped(kid))));
        }
    }
    let header_bytes = header.apply(&header_doc);
    let payload_bytes = payload.apply(&Doc::from_value(claims));
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header_bytes),
        URL_SAFE_NO_PAD.encode(&payload_bytes)
    );
    let sign = |key: &EncodingKey, alg: Algorithm| {
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing")
    };
    let signature = match signer {
        Signer::KeyA(alg) => sign(&keys.a.encoding, *alg),
        Signer::KeyB(alg) => sign(&keys.b.encoding, *alg),
        Signer::Unpublished => sign(&keys.unpublished, Algorithm::ES256),
        Signer::HmacWithPublicKey => sign(
            &EncodingKey::from_secret(&keys.a_public_pem),
            Algorithm::HS256,
        ),
        Signer::Original => keys.original_signature.clone(),
        Signer::Bytes(bytes) => URL_SAFE_NO_PAD.encode(bytes),
        Signer::Empty => String::new(),
    };
    let mut text = format!("{message}.{signature}").into_bytes();
    let edited = Mutated {
        mutations: vec![],
        edits: edits.clone(),
    };
    text = edited.apply(&Doc::Raw(text));
    String::from_utf8_lossy(&text).into_owned()
}

/// Whether `token`'s signature verifies, read strictly, with a published key under the
/// algorithm its header names.
fn independently_verified(token: &str, keys: &Keys) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return false;
    };
    let Ok(header_json) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(header_json) = serde_json::from_slice::<Value>(&header_json) else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let message = format!("{header}.{payload}");
    let message = message.as_bytes();
    keys.published
        .iter()
        .any(|key| match header_json["alg"].as_str() {
            Some("RS256") => rsa::pkcs1v15::Signature::try_from(&signature[..]).is_ok_and(|s| {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
                    .verify(message, &s)
                    .is_ok()
            }),
            Some("RS384") => rsa::pkcs1v15::Signature::try_from(&signature[..]).is_ok_and(|s| {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key.clone())
                    .verify(message, &s)
                    .is_ok()
            }),
            Some("PS256") => rsa::pss::Signature::try_from(&signature[..]).is_ok_and(|s| {
                rsa::pss::VerifyingKey::<sha2::Sha256>::new(key.clone())
                    .verify(message, &s)
                    .is_ok()
            }),
            _ => false,
        })
}

#[test]
fn no_token_is_accepted_unless_its_signature_verifies_with_a_published_key() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keys = keys();
    let issuer = runtime.block_on(TestIssuer::start(&[&keys.a, &keys.b]));
    let settings = IssuerSettings {
        algorithms: ALLOWED.to_vec(),
        ..issuer.settings()
    };
    let verifier = TokenVerifier::new(VerifierOptions::default());
    let claims = issuer.claims();
    let keys = keys.signing_original(&claims);
    let valid = token(
        &TokenCase::Built {
            alg: None,
            kid: None,
            header: mutated_none(),
            payload: mutated_none(),
            signer: Signer::KeyA(Algorithm::RS256),
            edits: vec![],
        },
        &keys,
        &claims,
    );
    runtime
        .block_on(verifier.verify(PROVIDER, &settings, &valid))
        .expect("the unmutated token is accepted");

    crate::check(crate::regressions!("tokens"), token_case(), |case| {
        let token = token(&case, &keys, &claims);
        let verified = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                verifier.verify(PROVIDER, &settings, &token),
            )
            .await
        });
        let Ok(verified) = verified else {
            return Err(TestCaseError::fail(format!(
                "no verdict within 10 s: {token}"
            )));
        };
        if let Ok(accepted) = verified {
            prop_assert!(
                independently_verified(&token, &keys),
                "accepted a token whose signature does not verify: {token}"
            );
            prop_assert_eq!(&accepted["iss"], &json!(issuer.url));
            let aud = &accepted["aud"];
            prop_assert!(
                aud == AUDIENCE
                    || aud
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == AUDIENCE)),
                "accepted a token for {aud}"
            );
            prop_assert!(
                accepted["exp"]
                    .as_f64()
                    .is_some_and(|exp| exp + 60.0 >= now() as f64),
                "accepted an expired token: {token}"
            );
        }
        Ok(())
    });
}

fn mutated_none() -> Mutated {
    Mutated {
        mutations: vec![],
        edits: vec![],
    }
}

/// The corpus's tokens are never validly signed: each is refused, and nothing panics.
pub fn assert_refused(tokens: &[(String, String)]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keys = keys();
    let issuer = runtime.block_on(TestIssuer::start(&[&keys.a, &keys.b]));
    let settings = IssuerSettings {
        algorithms: ALLOWED.to_vec(),
        ..issuer.settings()
    };
    let verifier = TokenVerifier::new(VerifierOptions::default());
    for (name, text) in tokens {
        let verdict = runtime.block_on(verifier.verify(PROVIDER, &settings, text.trim_end()));
        assert!(verdict.is_err(), "{name}: a corpus token was accepted");
    }
}
