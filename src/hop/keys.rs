//! The hop's signing keys (`hop.signing_keys`): read from files, checked, published, used.
//!
//! A key file is a PEM private key — PKCS#8 (`BEGIN PRIVATE KEY`) holding RSA or EC P-256,
//! PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`) — or a JWK JSON object
//! with its private part (`d`, and for RSA `p` and `q`). RSA keys sign RS256 and must have at
//! least 2048 bits; P-256 keys sign ES256. Anything else is refused with the file's name and
//! the reason: a weak or unreadable key never starts a hop.
//!
//! [`SigningKeys`] holds them in the order listed: **all** are published in the JWKS (public
//! parts only, `kid` = the RFC 7638 thumbprint, `use: sig`, `alg`), the **last** signs. Rotating
//! is therefore: add the new key at the end on every replica, wait for relying parties to
//! refetch the JWKS, drop the old one. Each key also seeds the key that seals the hop's state,
//! codes and access tokens ([`super::seal`]), so every replica with the same files opens what
//! another sealed.
//!
//! Keys are never generated at start: [`generate`] writes one for `kratos-jit keys generate`.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use serde::Serialize;
use serde_json::Value;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The algorithm a key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rs256,
    Es256,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::Rs256 => Algorithm::RS256,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(KeyAlgorithm::Rs256),
            "ES256" => Ok(KeyAlgorithm::Es256),
            other => Err(format!("unknown algorithm {other:?}; use RS256 or ES256")),
        }
    }
}

/// A private key prepared once for signing, in `ring` (the crypto library rustls already brings):
/// its RSA and P-256 signatures are several times cheaper than the pure-Rust ones
/// (bench/README.md, "Claims hop logins"). RSA signs with blinding; ECDSA with a fresh random
/// nonce from the system's generator. ES256 is still the cheaper of the two: prefer ES256 keys.
pub enum Signer {
    Rs256(Box<ring::rsa::KeyPair>),
    Es256(Box<ring::signature::EcdsaKeyPair>),
}

impl Signer {
    /// An RS256 signer of `key`.
    pub fn rs256(key: &rsa::RsaPrivateKey) -> Result<Signer, String> {
        let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(key)
            .map_err(|e| format!("cannot be encoded ({e})"))?;
        ring::rsa::KeyPair::from_pkcs8(der.as_bytes())
            .map(|pair| Signer::Rs256(Box::new(pair)))
            .map_err(|e| format!("cannot be prepared for signing ({e})"))
    }

    /// An ES256 signer of `key`.
    pub fn es256(key: &p256::SecretKey) -> Result<Signer, String> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot be encoded ({e})"))?;
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map(|pair| Signer::Es256(Box::new(pair)))
        .map_err(|e| format!("cannot be prepared for signing ({e})"))
    }

    /// The compact JWS (RFC 7515 §7.1) of `claims` under `header`, whose `alg` must be this
    /// signer's.
    pub fn jws(&self, header: &Header, claims: &impl Serialize) -> String {
        let header = serde_json::to_vec(header).expect("a JWS header serialises");
        let payload = serde_json::to_vec(claims).expect("the claims serialise");
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        let signature = self.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        jws
    }

    /// The JWS signature of `input` (RFC 7518 §3.3 and §3.4: ES256 as the 64 bytes R ‖ S).
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            Signer::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    input,
                    &mut signature,
                )
                .expect("the system's random generator works");
                signature
            }
            Signer::Es256(pair) => pair
                .sign(&rng, input)
                .expect("the system's random generator works")
                .as_ref()
                .to_vec(),
        }
    }
}

/// One private key, ready to sign.
struct SigningKey {
    kid: String,
    alg: KeyAlgorithm,
    signer: Signer,
    /// The public JWK as published.
    jwk: Value,
    /// The private key's PKCS#8 DER: the input of the sealing key's derivation.
    secret_der: Vec<u8>,
}

/// The key set of the hop, in the order configured; the last one signs.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Arc<Vec<SigningKey>>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.alg.as_str())))
            .finish()
    }
}

impl PartialEq for SigningKeys {
    fn eq(&self, other: &Self) -> bool {
        self.kids().eq(other.kids())
    }
}

/// Why a key file was refused; its `Display` starts with the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct KeyError {
    pub path: PathBuf,
    pub reason: String,
}

impl SigningKeys {
    /// Reads every file; all problems are reported, each naming its file. An empty list is an
    /// error too: a hop needs a key.
    pub fn load(paths: &[PathBuf]) -> Result<SigningKeys, Vec<KeyError>> {
        let mut keys = Vec::with_capacity(paths.len());
        let mut errors = Vec::new();
        for path in paths {
            match load_file(path) {
                Ok(key) if keys.iter().any(|k: &SigningKey| k.kid == key.kid) => {
                    errors.push(KeyError {
                        path: path.clone(),
                        reason: "is the same key as one listed before it; list each key once"
                            .into(),
                    })
                }
                Ok(key) => keys.push(key),
                Err(reason) => errors.push(KeyError {
                    path: path.clone(),
                    reason,
                }),
            }
        }
        if errors.is_empty() && keys.is_empty() {
            errors.push(KeyError {
                path: PathBuf::from("hop.signing_keys"),
                reason: "lists no key file".into(),
            });
        }
        if errors.is_empty() {
            Ok(SigningKeys {
                keys: Arc::new(keys),
            })
        } else {
            Err(errors)
        }
    }

    /// The key ids, in the order configured.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    fn signer(&self) -> &SigningKey {
        self.keys.last().expect("a key set is never empty")
    }

    /// The algorithm of the signing key.
    pub fn signing_algorithm(&self) -> KeyAlgorithm {
        self.signer().alg
    }

    /// Every algorithm of the set, each once, in order (for discovery).
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = Vec::new();
        for key in self.keys.iter() {
            if !algs.contains(&key.alg.as_str()) {
                algs.push(key.alg.as_str());
            }
        }
        algs
    }

    /// A compact JWS of `claims`, signed by the last key, with its `kid`.
    pub fn sign(&self, claims: &impl Serialize) -> String {
        let key = self.signer();
        let mut header = Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        key.signer.jws(&header, claims)
    }

    /// Readiness (`crate::health`): a JWS signed by the signing key verifies with the JWK this
    /// set publishes for it, so relying parties (Kratos) can check what the hop signs. The
    /// error names the key id, never key material.
    pub fn self_check(&self) -> Result<(), String> {
        let key = self.signer();
        let token = self.sign(&serde_json::json!({"purpose": "kratos-jit readiness"}));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone())
            .map_err(|e| format!("the published JWK of key {} does not parse ({e})", key.kid))?;
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("the published JWK of key {} is unusable ({e})", key.kid))?;
        let mut validation = jsonwebtoken::Validation::new(key.alg.jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde::de::IgnoredAny>(&token, &decoding, &validation)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "a JWS signed by key {} does not verify with its published JWK ({e})",
                    key.kid
                )
            })
    }

    /// The public JWK set: `{"keys": [...]}`.
    pub fn jwks(&self) -> Value {
        serde_json::json!({"keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// `(kid, private key DER)` of each key, for deriving the sealing keys.
    pub(super) fn secrets(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys
            .iter()
            .map(|k| (k.kid.as_str(), k.secret_der.as_slice()))
    }
}

/// A private key as parsed, before it is made ready to sign.
enum Private {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ec(p256::SecretKey),
}

fn load_file(path: &Path) -> Result<SigningKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the key file ({e})"))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| "is not a PEM or JWK key file (it is not text)".to_owned())?;
    let trimmed = text.trim_start();
    let (private, declared_alg) = if trimmed.starts_with('{') {
        parse_jwk(trimmed)?
    } else if trimmed.starts_with("-----BEGIN") {
        (parse_pem(trimmed)?, None)
    } else {
        return Err(
            "is neither a PEM private key (-----BEGIN PRIVATE KEY-----) nor a JWK JSON object"
                .into(),
        );
    };
    let key = ready(private)?;
    if let Some(alg) = declared_alg
        && alg != key.alg.as_str()
    {
        return Err(format!(
            "declares `alg` {alg:?}, but this key signs {}",
            key.alg.as_str()
        ));
    }
    Ok(key)
}

fn parse_pem(text: &str) -> Result<Private, String> {
    let label = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("-----BEGIN ")
        .trim_end_matches("-----");
    match label {
        "PRIVATE KEY" => {
            if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
                return Ok(Private::Rsa(Box::new(key)));
            }
            p256::SecretKey::from_pkcs8_pem(text).map(Private::Ec).map_err(|_| {
                "is a PKCS#8 key that is neither RSA nor EC P-256 (or it is damaged); use RS256 (RSA) or ES256 (P-256) keys".to_owned()
            })
        }
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
            .map(|key| Private::Rsa(Box::new(key)))
            .map_err(|e| format!("is not a readable PKCS#1 RSA private key ({e})")),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(text)
            .map(Private::Ec)
            .map_err(|_| {
                "is not a readable EC P-256 private key (SEC1); only the P-256 curve is supported"
                    .to_owned()
            }),
        "ENCRYPTED PRIVATE KEY" => {
            Err("is an encrypted private key; store it decrypted with file mode 0600".into())
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => Err(format!(
            "holds a {}, not a private key; the hop signs, so it needs the private key",
            label.to_lowercase()
        )),
        other => Err(format!(
            "holds a PEM block `{other}`, not a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
        )),
    }
}

/// A JWK with its private part; returns the key and the `alg` it declares, if any.
fn parse_jwk(text: &str) -> Result<(Private, Option<String>), String> {
    let value = crate::domain::input::parse(text.as_bytes())
        .map_err(|e| format!("is not a JWK JSON object ({e})"))?;
    let Value::Object(jwk) = &value else {
        return Err("is not a JWK JSON object".into());
    };
    let string = |name: &str| jwk.get(name).and_then(Value::as_str);
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(alg.clone()),
        Some(_) => return Err("has an `alg` that is not a string".into()),
    };
    if jwk.get("use").is_some_and(|u| u != "sig") {
        return Err("is a JWK for another use than signing (`use` is not \"sig\")".into());
    }
    match string("kty") {
        Some("RSA") => {
            let part = |name: &'static str| {
                let text = string(name).ok_or_else(|| match name {
                    "d" | "p" | "q" => format!(
                        "is an RSA JWK without its private part (`{name}`); the hop needs the private key"
                    ),
                    _ => format!("is an RSA JWK without `{name}`"),
                })?;
                URL_SAFE_NO_PAD
                    .decode(text)
                    .map(|bytes| rsa::BigUint::from_bytes_be(&bytes))
                    .map_err(|_| format!("is an RSA JWK whose `{name}` is not base64url"))
            };
            let (n, e, d, p, q) = (part("n")?, part("e")?, part("d")?, part("p")?, part("q")?);
            let key = rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q])
                .map_err(|e| format!("is an RSA JWK whose parts do not form a key ({e})"))?;
            Ok((Private::Rsa(Box::new(key)), alg))
        }
        Some("EC") => {
            if string("crv") != Some("P-256") {
                return Err("is an EC JWK on another curve than P-256; use ES256 (P-256)".into());
            }
            if string("d").is_none() {
                return Err(
                    "is an EC JWK without its private part (`d`); the hop needs the private key"
                        .into(),
                );
            }
            let key = p256::SecretKey::from_jwk_str(text).map_err(|_| {
                "is an EC JWK whose parts do not form a P-256 key (check `d`, `x` and `y`)"
                    .to_owned()
            })?;
            Ok((Private::Ec(key), alg))
        }
        Some(other) => Err(format!(
            "is a JWK of type {other:?}; use an RSA (RS256) or EC P-256 (ES256) key"
        )),
        None => Err("is a JSON object without `kty`, so not a JWK".into()),
    }
}

/// Checks the key's strength and builds what signing and publishing need.
fn ready(private: Private) -> Result<SigningKey, String> {
    let (alg, encoding, signer, secret_der) = match &private {
        Private::Rsa(key) => {
            let bits = key.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "is an RSA key of {bits} bits, which is too weak; use at least {MIN_RSA_BITS} bits"
                ));
            }
            key.validate()
                .map_err(|e| format!("is not a consistent RSA key ({e})"))?;
            let pkcs1 = key
                .to_pkcs1_der()
                .map_err(|e| format!("cannot be encoded ({e})"))?;
            let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(key.as_ref())
                .map_err(|e| format!("cannot be encoded ({e})"))?;
            (
                KeyAlgorithm::Rs256,
                EncodingKey::from_rsa_der(pkcs1.as_bytes()),
                Signer::rs256(key)?,
                pkcs8.as_bytes().to_vec(),
            )
        }
        Private::Ec(key) => {
            let pkcs8 = key
                .to_pkcs8_der()
                .map_err(|e| format!("cannot be encoded ({e})"))?;
            (
                KeyAlgorithm::Es256,
                EncodingKey::from_ec_der(pkcs8.as_bytes()),
                Signer::es256(key)?,
                pkcs8.as_bytes().to_vec(),
            )
        }
    };
    let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt())
        .map_err(|e| format!("has no public key to publish ({e})"))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| format!("has no RFC 7638 thumbprint ({e})"))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let jwk = serde_json::to_value(&jwk).map_err(|e| format!("cannot be published ({e})"))?;
    Ok(SigningKey {
        kid,
        alg,
        signer,
        jwk,
        secret_der,
    })
}

/// Writes a new private key for `alg` to `out` as PKCS#8 PEM, with file mode 0600. An existing
/// file is never overwritten. Returns the new key's `kid`.
pub fn generate(alg: KeyAlgorithm, out: &Path) -> Result<String, String> {
    let mut rng = rand_core::OsRng;
    let (pem, private) = match alg {
        KeyAlgorithm::Rs256 => {
            let key = rsa::RsaPrivateKey::new(&mut rng, MIN_RSA_BITS)
                .map_err(|e| format!("cannot generate an RSA key ({e})"))?;
            let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
                .map_err(|e| format!("cannot encode the key ({e})"))?;
            (pem, Private::Rsa(Box::new(key)))
        }
        KeyAlgorithm::Es256 => {
            let key = p256::SecretKey::random(&mut rng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("cannot encode the key ({e})"))?;
            (pem, Private::Ec(key))
        }
    };
    let kid = ready(private)?.kid;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "{} already exists; kratos-jit never overwrites a key (choose another file)",
            out.display()
        ),
        _ => format!("cannot create {} ({e})", out.display()),
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {} ({e})", out.display()))?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn generated_keys_load_sign_and_publish_their_thumbprint() {
        let dir = tempfile::tempdir().unwrap();
        let ec = dir.path().join("ec.pem");

        let kid = generate(KeyAlgorithm::Es256, &ec).unwrap();
        let keys = SigningKeys::load(std::slice::from_ref(&ec)).unwrap();

        assert_eq!(keys.kids().collect::<Vec<_>>(), [kid.as_str()]);
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "ES256");
        assert!(jwk.get("d").is_none(), "no private part is published");
        let token = keys.sign(&serde_json::json!({"sub": "x"}));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&ec).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn generate_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "taken.pem", "precious");

        let error = generate(KeyAlgorithm::Es256, &path).unwrap_err();

        assert!(error.contains("already exists"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn the_last_key_signs_and_all_are_published() {
        let first = fixture("ec-p256.pem");
        let dir = tempfile::tempdir().unwrap();
        let second = dir.path().join("rsa.pem");
        generate(KeyAlgorithm::Rs256, &second).unwrap();

        let keys = SigningKeys::load(&[first, second]).unwrap();

        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_eq!(keys.signing_algorithm(), KeyAlgorithm::Rs256);
        assert_eq!(keys.algorithms(), ["ES256", "RS256"]);
        let token = keys.sign(&serde_json::json!({}));
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        assert_eq!(Some(kid.as_str()), keys.kids().last());
    }

    #[test]
    fn a_weak_rsa_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF).unwrap();
        let path = write(&dir, "weak.pem", &pem);

        let errors = SigningKeys::load(std::slice::from_ref(&path)).unwrap_err();

        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("1024 bits, which is too weak"),
            "{message}"
        );
    }

    #[test]
    fn files_that_hold_no_usable_private_key_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("garbage.pem", "hello", "neither a PEM private key"),
            (
                "public.pem",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "not a private key",
            ),
            (
                "public.jwk",
                r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
                "without its private part",
            ),
            (
                "octet.jwk",
                r#"{"kty":"oct","k":"AAAA"}"#,
                "of type \"oct\"",
            ),
        ];
        for (name, text, expected) in cases {
            let path = write(&dir, name, text);
            let errors = SigningKeys::load(&[path]).unwrap_err();
            assert!(errors[0].reason.contains(expected), "{name}: {}", errors[0]);
        }
        let missing = SigningKeys::load(&[dir.path().join("absent.pem")]).unwrap_err();
        assert!(missing[0].reason.starts_with("cannot read the key file"));
    }

    #[test]
    fn a_private_jwk_loads_as_the_same_key_as_its_pem() {
        let pem = fixture("ec-p256.pem");
        let from_pem = SigningKeys::load(std::slice::from_ref(&pem)).unwrap();
        let text = std::fs::read_to_string(&pem).unwrap();
        let secret = p256::SecretKey::from_pkcs8_pem(&text)
            .or_else(|_| p256::SecretKey::from_sec1_pem(&text))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwk = write(&dir, "key.jwk", &secret.to_jwk_string());

        let from_jwk = SigningKeys::load(&[jwk]).unwrap();

        assert_eq!(from_jwk, from_pem);
    }
}
