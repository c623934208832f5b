//! The checks of one token, in the order [`super::TokenVerifier::verify`] runs them: the header
//! (a compact JWS, no `crit`), the algorithm allow-list (`none` and HMAC always refused), the fit
//! of the chosen key to the algorithm, the signature, then the claims (`iss`, `aud`, the
//! required claims of `[[token.require]]`, `exp`, `nbf`, `iat`) with the allowed clock skew.
//!
//! The header and the payload are read under the rules every JSON input meets
//! ([`crate::domain::input`]): a duplicate claim, or one nested too deep, refuses the token.
//!
//! Keys named by the token itself are never used, and errors show attacker-supplied strings only
//! cut short.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::domain::input;

use super::keys::{RingKey, VerificationKey};
use super::settings::{IssuerSettings, RequiredClaim};
use super::{TokenError, shown};

pub(super) struct TokenHeader {
    pub(super) alg: String,
    pub(super) kid: Option<String>,
}

/// Reads the header ourselves: jsonwebtoken refuses `alg: none` and unknown algorithms while
/// parsing, which would hide the algorithm from the error an operator sees.
pub(super) fn parse_header(token: &str) -> Result<TokenHeader, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(TokenError::Malformed(
                "it is an encrypted token (JWE); the issuer must send a signed ID token",
            ));
        }
        _ => {
            return Err(TokenError::Malformed(
                "it is not three base64url parts separated by dots",
            ));
        }
    }
    let bytes = base64url_decode(parts[0])
        .ok_or(TokenError::Malformed("its header is not base64url-encoded"))?;
    let header = json_object(&bytes, "header", "its header is not a JSON object")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(TokenError::Malformed("its `alg` header is not a string")),
        None => {
            return Err(TokenError::Malformed(
                "its header names no algorithm (`alg`)",
            ));
        }
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("its `kid` header is not a string")),
    };
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "it marks header parameters as critical (`crit`), which this verifier does not support",
        ));
    }
    // Keys named by the token itself (`jwk`, `jku`, `x5u`, `x5c`) are ignored on purpose: only
    // the configured issuer's key set is trusted.
    Ok(TokenHeader { alg, kid })
}

pub(super) fn allowed_algorithm(
    settings: &IssuerSettings,
    alg: &str,
) -> Result<Algorithm, TokenError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::Unsigned);
    }
    let not_allowed = || TokenError::AlgorithmNotAllowed {
        alg: shown(alg),
        allowed: settings.allowed_list(),
    };
    let parsed = Algorithm::from_str(alg).map_err(|_| not_allowed())?;
    // Refused even when listed: with an HMAC algorithm, the issuer's *public* key would become
    // the secret, and anyone could sign with it (algorithm confusion).
    if parsed.family() == AlgorithmFamily::Hmac {
        return Err(TokenError::SymmetricAlgorithm { alg: shown(alg) });
    }
    if !settings.algorithms.contains(&parsed) {
        return Err(not_allowed());
    }
    Ok(parsed)
}

/// The key must be able to verify `alg`: right type and curve, and its own `alg`/`use`, when
/// the issuer declares them, must agree.
pub(super) fn check_fit(key: &VerificationKey, alg: Algorithm) -> Result<(), String> {
    match &key.jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("its `use` is not `sig`".into()),
    }
    if let Some(declared) = key.jwk.common.key_algorithm {
        match Algorithm::from_str(&declared.to_string()) {
            Ok(declared) if declared == alg => {}
            Ok(declared) => return Err(format!("the issuer publishes it for {declared:?} only")),
            Err(_) => {
                return Err(format!(
                    "the issuer publishes it for {declared}, not for signatures"
                ));
            }
        }
    }
    match (&key.jwk.algorithm, alg.family()) {
        (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa) => Ok(()),
        (AlgorithmParameters::EllipticCurve(ec), AlgorithmFamily::Ec) => match (&ec.curve, alg) {
            (EllipticCurve::P256, Algorithm::ES256) | (EllipticCurve::P384, Algorithm::ES384) => {
                Ok(())
            }
            (curve, _) => Err(format!("it is an EC key on curve {curve:?}")),
        },
        (AlgorithmParameters::OctetKeyPair(okp), AlgorithmFamily::Ed)
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Ok(())
        }
        (AlgorithmParameters::RSA(_), _) => Err("it is an RSA key".into()),
        (AlgorithmParameters::EllipticCurve(_), _) => Err("it is an EC key".into()),
        (AlgorithmParameters::OctetKeyPair(okp), _) => {
            Err(format!("it is an OKP key on curve {:?}", okp.curve))
        }
        _ => Err("it is not a public signing key".into()),
    }
}

pub(super) fn verify_signature(
    token: &str,
    key: &VerificationKey,
    alg: Algorithm,
) -> Result<Map<String, Value>, TokenError> {
    if let Some(verified) = key
        .ring
        .as_ref()
        .and_then(|ring| ring_verify(token, ring, alg))
    {
        return verified
            .map_err(|failure| match failure {
                RingFailure::Malformed => {
                    TokenError::Malformed("its payload or signature is not base64url-encoded JSON")
                }
                RingFailure::BadSignature => TokenError::BadSignature {
                    kid: key.kid.clone(),
                },
            })
            .and_then(|()| payload(token));
    }
    let mut validation = Validation::new(alg);
    // jsonwebtoken checks only the signature here; the claims are checked afterwards, with
    // reasons an operator can act on.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    // jsonwebtoken reads the payload only to check the signature and its own claims; the
    // claims returned are read under the input rules, which see duplicate keys.
    let verified = jsonwebtoken::decode::<IgnoredAny>(token, &key.decoding, &validation);
    if let Err(error) = &verified
        && matches!(error.kind(), ErrorKind::Json(_))
    {
        // Say which rule the payload breaks where it breaks one; refused either way.
        payload(token)?;
    }
    verified
        .map_err(|error| {
            let unfit = |reason: &str| TokenError::KeyDoesNotFit {
                kid: key.kid.clone(),
                alg: format!("{alg:?}"),
                reason: reason.into(),
            };
            match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature {
                    kid: key.kid.clone(),
                },
                ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidKeyFormat => unfit("its key material is invalid"),
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    unfit("it is not a key for this algorithm")
                }
                _ => {
                    TokenError::Malformed("its payload or signature is not base64url-encoded JSON")
                }
            }
        })
        .and_then(|_| payload(token))
}

/// Why `ring` refused a token.
enum RingFailure {
    /// Not three parts, or a signature that is not base64url.
    Malformed,
    BadSignature,
}

/// Checks the signature of `token` (`header.payload.signature`) with `ring`, for the algorithms
/// it implements; `None` for the others (EdDSA), which `jsonwebtoken` verifies.
fn ring_verify(token: &str, key: &RingKey, alg: Algorithm) -> Option<Result<(), RingFailure>> {
    use ring::signature::{self as sig, UnparsedPublicKey};
    let rsa = match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    };
    let ec: Option<&'static sig::EcdsaVerificationAlgorithm> = match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    };
    if rsa.is_none() && ec.is_none() {
        return None;
    }
    let checked = (|| {
        let (message, signature) = token.rsplit_once('.').ok_or(RingFailure::Malformed)?;
        if message.bytes().filter(|b| *b == b'.').count() != 1 {
            return Err(RingFailure::Malformed);
        }
        let signature = base64url_decode(signature).ok_or(RingFailure::Malformed)?;
        match (key, rsa, ec) {
            (RingKey::Rsa { n, e }, Some(params), _) => sig::RsaPublicKeyComponents { n, e }
                .verify(params, message.as_bytes(), &signature)
                .map_err(|_| RingFailure::BadSignature),
            (RingKey::Ec { point }, _, Some(params)) => UnparsedPublicKey::new(params, point)
                .verify(message.as_bytes(), &signature)
                .map_err(|_| RingFailure::BadSignature),
            // `check_fit` has matched the key to the algorithm's family before.
            _ => Err(RingFailure::BadSignature),
        }
    })();
    Some(checked)
}

/// The payload's claims, read under the input rules.
fn payload(token: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .ok_or(TokenError::Malformed(
            "its payload is not base64url-encoded",
        ))?;
    json_object(&bytes, "payload", "its payload is not a JSON object")
}

/// A JSON object read from a part of the token under the input rules (no duplicate keys, …);
/// a part that is no JSON at all is simply malformed.
fn json_object(
    bytes: &[u8],
    part: &'static str,
    not_an_object: &'static str,
) -> Result<Map<String, Value>, TokenError> {
    match input::parse(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(TokenError::Malformed(not_an_object)),
        Err(error) if matches!(error.problem(), input::Problem::Syntax(_)) => {
            Err(TokenError::Malformed(not_an_object))
        }
        Err(error) => Err(TokenError::Json { part, error }),
    }
}

pub(super) fn check_claims(
    claims: &Map<String, Value>,
    settings: &IssuerSettings,
    skew: Duration,
    now: f64,
) -> Result<(), TokenError> {
    match claims.get("iss") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim { claim: "iss" }),
        Some(Value::String(iss)) if *iss == settings.issuer => {}
        Some(Value::String(iss)) => {
            return Err(TokenError::WrongIssuer {
                expected: settings.issuer.clone(),
                got: shown(iss),
            });
        }
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "iss",
                expected: "a string",
            });
        }
    }

    let invalid_aud = TokenError::InvalidClaim {
        claim: "aud",
        expected: "a string or a list of strings",
    };
    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim { claim: "aud" }),
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(invalid_aud.clone()))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid_aud),
    };
    if !audiences
        .iter()
        .any(|aud| settings.audiences.iter().any(|ours| ours == aud))
    {
        return Err(TokenError::WrongAudience {
            expected: settings.audiences.clone(),
            got: audiences.iter().take(10).map(|aud| shown(aud)).collect(),
        });
    }

    for required in &settings.require {
        check_required(claims, required)?;
    }

    let slack = skew.as_secs_f64();
    let exp = numeric(claims, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
    if now >= exp + slack {
        return Err(TokenError::Expired {
            ago: seconds(now - exp),
            skew,
        });
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && nbf > now + slack
    {
        return Err(TokenError::NotYetValid {
            remaining: seconds(nbf - now),
            skew,
        });
    }
    let iat = numeric(claims, "iat")?.ok_or(TokenError::MissingClaim { claim: "iat" })?;
    if iat > now + slack {
        return Err(TokenError::IssuedInFuture {
            ahead: seconds(iat - now),
            skew,
        });
    }
    Ok(())
}

/// The claim at `required.path` must be `required.equals`, or a list holding only it.
fn check_required(claims: &Map<String, Value>, required: &RequiredClaim) -> Result<(), TokenError> {
    let refuse = |problem| {
        Err(TokenError::OtherProvider {
            claim: required.name(),
            problem,
        })
    };
    let mut path = required.path.iter();
    let mut value = match path.next().and_then(|first| claims.get(first)) {
        Some(value) => value,
        None => return refuse("is missing"),
    };
    for member in path {
        match value.get(member) {
            Some(inner) => value = inner,
            None => return refuse("is missing"),
        }
    }
    let single = match value {
        Value::Array(items) => match items.as_slice() {
            [one] => one,
            [] => return refuse("is an empty list"),
            _ => return refuse("holds several values"),
        },
        other => other,
    };
    match single {
        Value::String(s) if *s == required.equals => Ok(()),
        Value::String(_) => refuse("holds another value than the one required"),
        Value::Null => refuse("is missing"),
        _ => refuse("is not a string"),
    }
}

fn numeric(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<f64>, TokenError> {
    let invalid = TokenError::InvalidClaim {
        claim,
        expected: "a number of seconds since 1970",
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(invalid),
        Some(_) => Err(invalid),
    }
}

fn seconds(value: f64) -> Duration {
    // `as` saturates: absurd timestamps give a huge duration, never a panic.
    Duration::from_secs(value.max(0.0).round() as u64)
}

pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unpadded base64url (RFC 7515 §2), for the header and the payload, which are read here;
/// jsonwebtoken decodes the signature.
fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in input.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A lone trailing character, or non-zero padding bits, is not canonical base64url.
    (bits < 6 && buffer == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decoding_matches_rfc_4648_test_vectors() {
        let cases = [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE", "fooba"),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(
                base64url_decode(encoded).as_deref(),
                Some(decoded.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    }

    #[test]
    fn base64url_decoding_refuses_padding_other_alphabets_and_lone_characters() {
        for bad in ["Zg==", "+/8", "Z", "Zm9vY", "Zh"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_header_with_a_duplicate_parameter_is_refused_naming_it() {
        use base64::Engine as _;
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!("{}.e30.sig", encode(r#"{"alg": "none", "alg": "RS256"}"#));

        let Err(TokenError::Json { part, error }) = parse_header(&token) else {
            panic!("a duplicate `alg` was accepted");
        };

        assert_eq!(
            (part, error.to_string().as_str()),
            ("header", "alg: duplicate key")
        );
        let not_json = format!("{}.e30.sig", encode("not json"));
        assert!(matches!(
            parse_header(&not_json),
            Err(TokenError::Malformed(_))
        ));
    }

    fn tenant_rule() -> RequiredClaim {
        RequiredClaim::new(
            [
                "raw",
                "http://schemas.microsoft.com/identity/claims/tenantid",
            ],
            "5f1c",
        )
    }

    fn claims(json: serde_json::Value) -> Map<String, Value> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn a_required_claim_matches_as_a_string_or_a_one_value_list_at_any_depth() {
        let rule = tenant_rule();
        let tid = "http://schemas.microsoft.com/identity/claims/tenantid";

        assert_eq!(
            check_required(&claims(serde_json::json!({"raw": {tid: "5f1c"}})), &rule),
            Ok(())
        );
        assert_eq!(
            check_required(&claims(serde_json::json!({"raw": {tid: ["5f1c"]}})), &rule),
            Ok(())
        );
        let top = RequiredClaim::new([tid], "5f1c");
        assert_eq!(
            check_required(&claims(serde_json::json!({tid: ["5f1c"]})), &top),
            Ok(())
        );
    }

    #[test]
    fn a_required_claim_that_is_missing_or_differs_refuses_without_its_value() {
        let rule = tenant_rule();
        let tid = "http://schemas.microsoft.com/identity/claims/tenantid";
        let cases = [
            (serde_json::json!({}), "is missing"),
            (serde_json::json!({"raw": "x"}), "is missing"),
            (
                serde_json::json!({"raw": {tid: "9999-secret"}}),
                "holds another value",
            ),
            (
                serde_json::json!({"raw": {tid: ["5f1c", "9999-secret"]}}),
                "holds several values",
            ),
            (serde_json::json!({"raw": {tid: []}}), "is an empty list"),
            (serde_json::json!({"raw": {tid: 5}}), "is not a string"),
            (serde_json::json!({"raw": {tid: null}}), "is missing"),
        ];
        for (payload, problem) in cases {
            let error = check_required(&claims(payload.clone()), &rule).unwrap_err();

            assert_eq!(error.code(), "other_provider", "{payload}");
            let text = error.to_string();
            assert!(text.contains(problem), "{payload}: {text}");
            assert!(
                text.contains("raw › http://schemas.microsoft.com/identity/claims/tenantid"),
                "{text}"
            );
            assert!(
                !text.contains("9999-secret") && !text.contains("5f1c"),
                "{text}"
            );
        }
    }

    #[test]
    fn required_claims_are_checked_after_the_audience_with_the_other_claims() {
        let mut settings = IssuerSettings::new("https://idp", ["c"]);
        settings.require = vec![RequiredClaim::new(["tid"], "t-1")];
        let base = serde_json::json!({"iss": "https://idp", "aud": "c", "exp": 2e9, "iat": 1e9});
        let mut other = base.clone();
        other["tid"] = "t-2".into();
        let mut ours = base.clone();
        ours["tid"] = "t-1".into();

        let refused = check_claims(&claims(other), &settings, Duration::ZERO, 1.5e9);
        let accepted = check_claims(&claims(ours), &settings, Duration::ZERO, 1.5e9);

        assert!(
            matches!(refused, Err(TokenError::OtherProvider { .. })),
            "{refused:?}"
        );
        assert_eq!(accepted, Ok(()));
    }

    #[test]
    fn attacker_supplied_strings_are_cut_short_in_errors() {
        let long = "a".repeat(10_000);
        let err = allowed_algorithm(&IssuerSettings::new("https://idp", ["c"]), &long).unwrap_err();

        assert!(err.to_string().len() < 400, "{err}");
    }
}
