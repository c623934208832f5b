//! Sealed values: the hop's state, codes and access tokens, carried by the browser or by Kratos
//! instead of kept in a session store.
//!
//! A sealed value is `base64url(key tag ‖ nonce ‖ XChaCha20-Poly1305(JSON payload))`. The AEAD
//! key of each signing key is derived with HKDF-SHA256 from that key's private part, so every
//! replica configured with the same key files opens what another sealed, and nobody without
//! them can forge or read one. The newest key seals; each key's tag (8 bytes of the SHA-256 of
//! its `kid`) says which key opens, so values sealed before a rotation still open while their
//! key is listed. The associated data binds a value to its [`Purpose`] and to its provider: a
//! state is not a code, and a code of provider A does not open at provider B.
//!
//! Every payload carries its expiry (`exp`, Unix seconds), checked at opening.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::keys::SigningKeys;

const TAG_LEN: usize = 8;
const NONCE_LEN: usize = 24;
/// A sealed value longer than this is refused before any work (a URL parameter or a header).
pub const MAX_SEALED_CHARS: usize = 64 * 1024;

/// What a sealed value is for; part of what it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The upstream authorization request's `state`.
    State,
    /// The authorization code given to Kratos.
    Code,
    /// The access token for userinfo.
    AccessToken,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::State => "state",
            Purpose::Code => "code",
            Purpose::AccessToken => "access_token",
        }
    }
}

/// Why a sealed value did not open. Deliberately coarse: a forger learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("it is not a value this service issued, or it was altered")]
    Invalid,
    #[error("it has expired")]
    Expired,
}

/// Seals and opens values with the keys derived from the signing keys.
pub struct Sealer {
    /// `(tag, cipher)` in the key set's order; the last one seals.
    keys: Vec<([u8; TAG_LEN], XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    exp: u64,
    #[serde(flatten)]
    payload: T,
}

impl Sealer {
    pub fn new(keys: &SigningKeys) -> Sealer {
        let keys = keys
            .secrets()
            .map(|(kid, secret)| {
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&Sha256::digest(kid.as_bytes())[..TAG_LEN]);
                let hkdf = Hkdf::<Sha256>::new(Some(b"kratos-jit hop seal"), secret);
                let mut key = [0u8; 32];
                hkdf.expand(b"kratos-jit hop seal v1 xchacha20poly1305", &mut key)
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
                (tag, XChaCha20Poly1305::new(&key.into()))
            })
            .collect();
        Sealer { keys }
    }

    fn aad(purpose: Purpose, scope: &str) -> String {
        format!("kratos-jit/hop/v1/{}/{scope}", purpose.as_str())
    }

    /// Seals `payload` for `purpose` within `scope` (the provider id), valid until `exp`.
    pub fn seal<T: Serialize>(
        &self,
        purpose: Purpose,
        scope: &str,
        exp: u64,
        payload: T,
    ) -> String {
        let (tag, cipher) = self.keys.last().expect("a key set is never empty");
        let plaintext =
            serde_json::to_vec(&Envelope { exp, payload }).expect("hop payloads are serialisable");
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = Self::aad(purpose, scope);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a hop payload has");
        let mut out = Vec::with_capacity(TAG_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(tag);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a value sealed for `purpose` within `scope`, if it is authentic and `now` is
    /// before its expiry.
    pub fn open<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        scope: &str,
        sealed: &str,
        now: u64,
    ) -> Result<T, SealError> {
        if sealed.len() > MAX_SEALED_CHARS {
            return Err(SealError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Invalid)?;
        if bytes.len() < TAG_LEN + NONCE_LEN {
            return Err(SealError::Invalid);
        }
        let (tag, rest) = bytes.split_at(TAG_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Invalid)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(t, _)| t.as_slice() == tag)
            .ok_or(SealError::Invalid)?;
        let aad = Self::aad(purpose, scope);
        let plaintext = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Invalid)?;
        // Authentic, hence written by a replica of this service: plain serde is enough.
        let envelope: Envelope<T> =
            serde_json::from_slice(&plaintext).map_err(|_| SealError::Invalid)?;
        if now >= envelope.exp {
            return Err(SealError::Expired);
        }
        Ok(envelope.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn keys(names: &[&str]) -> SigningKeys {
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|n| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/keys")
                    .join(n)
            })
            .collect();
        SigningKeys::load(&paths).unwrap()
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Thing {
        value: String,
    }

    fn thing() -> Thing {
        Thing { value: "v".into() }
    }

    #[test]
    fn a_value_opens_for_its_purpose_and_scope_until_it_expires() {
        let sealer = Sealer::new(&keys(&["ec-p256.pem"]));
        let sealed = sealer.seal(Purpose::Code, "okta-acme", 100, thing());

        assert_eq!(
            sealer.open(Purpose::Code, "okta-acme", &sealed, 99),
            Ok(thing())
        );
        assert_eq!(
            sealer.open::<Thing>(Purpose::Code, "okta-acme", &sealed, 100),
            Err(SealError::Expired)
        );
        assert_eq!(
            sealer.open::<Thing>(Purpose::State, "okta-acme", &sealed, 1),
            Err(SealError::Invalid)
        );
        assert_eq!(
            sealer.open::<Thing>(Purpose::Code, "entra-globex", &sealed, 1),
            Err(SealError::Invalid)
        );
    }

    #[test]
    fn an_altered_or_foreign_value_does_not_open() {
        let sealer = Sealer::new(&keys(&["ec-p256.pem"]));
        let other = Sealer::new(&keys(&["rsa-a.pem"]));
        let sealed = sealer.seal(Purpose::State, "p", 100, thing());
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);

        for bad in [tampered.as_str(), "", "not base64!", "AAAA"] {
            assert_eq!(
                sealer.open::<Thing>(Purpose::State, "p", bad, 1),
                Err(SealError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            other.open::<Thing>(Purpose::State, "p", &sealed, 1),
            Err(SealError::Invalid)
        );
    }

    #[test]
    fn a_value_sealed_before_a_rotation_still_opens_with_the_key_listed() {
        let before = Sealer::new(&keys(&["ec-p256.pem"]));
        let after = Sealer::new(&keys(&["ec-p256.pem", "rsa-a.pem"]));
        let sealed = before.seal(Purpose::State, "p", 100, thing());

        assert_eq!(after.open(Purpose::State, "p", &sealed, 1), Ok(thing()));
        let new = after.seal(Purpose::State, "p", 100, thing());
        assert_eq!(
            before.open::<Thing>(Purpose::State, "p", &new, 1),
            Err(SealError::Invalid),
            "the new key seals"
        );
    }
}
