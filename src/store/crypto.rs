//! Encryption of Kandji API tokens at rest.
//!
//! Tokens are sealed with AES-256-GCM. The stored form is
//! `"v1." + base64(nonce || ciphertext || tag)` with a fresh random 12-byte
//! nonce per encryption. The connection id is the associated data, so a
//! ciphertext copied onto another row does not decrypt.
//!
//! Nothing in this module ever puts key material or plaintext into an error
//! message or a `Debug` rendering.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::{Rng, TryRng};
use secrecy::SecretString;
use secrecy::zeroize::{Zeroize, Zeroizing};

/// Length of an AES-256 key in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PREFIX_V1: &str = "v1.";

/// Associated data of the key-check value; connection ids all start with
/// `conn_`, so this can never collide with a token's associated data.
const KEY_CHECK_AAD: &str = "key-check";
/// The fixed plaintext sealed into the key-check value.
const KEY_CHECK_MARKER: &str = "kandji-connector key check v1";

/// Errors from [`TokenCipher`]. Messages say what is wrong but never repeat
/// the key, the token, or the input that was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the secret key is not valid standard base64")]
    KeyNotBase64,
    #[error("the secret key must decode to exactly {KEY_LEN} bytes, but it decodes to {0} bytes")]
    KeyWrongLength(usize),
    #[error("the stored token has an unknown format (expected a \"v1.\" prefix)")]
    UnknownFormat,
    #[error("the stored token is malformed")]
    Malformed,
    #[error(
        "the stored token could not be decrypted: wrong secret key, or the ciphertext was altered \
         or belongs to another connection"
    )]
    DecryptFailed,
}

/// AES-256-GCM cipher for Kandji API tokens.
///
/// `Debug` prints `TokenCipher(..)` only.
#[derive(Clone)]
pub struct TokenCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(..)")
    }
}

impl TokenCipher {
    /// Builds a cipher from the standard (padded) base64 encoding of exactly
    /// 32 bytes. Surrounding ASCII whitespace (a trailing newline from a file
    /// or an environment variable) is ignored.
    pub fn from_base64(s: &str) -> Result<Self, CipherError> {
        // base64's own error names the offending byte and offset; do not pass it on.
        let bytes = Zeroizing::new(
            STANDARD
                .decode(s.trim_ascii())
                .map_err(|_| CipherError::KeyNotBase64)?,
        );
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, CipherError> {
        if bytes.len() != KEY_LEN {
            return Err(CipherError::KeyWrongLength(bytes.len()));
        }
        let aead = Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| CipherError::KeyWrongLength(bytes.len()))?;
        Ok(Self { aead })
    }

    /// Generates a fresh random key from the operating system's random number
    /// generator. Returns the cipher and the key's standard base64 encoding.
    ///
    /// # Panics
    /// If the operating system's random number generator is unavailable.
    pub fn generate() -> (Self, String) {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::SysRng
            .try_fill_bytes(key.as_mut_slice())
            .expect("the operating system's random number generator failed");
        let encoded = STANDARD.encode(key.as_slice());
        let cipher =
            Self::from_bytes(key.as_slice()).expect("a generated key has the right length");
        (cipher, encoded)
    }

    /// Encrypts `plaintext` bound to `connection_id` (the associated data).
    /// Returns `"v1." + base64(nonce || ciphertext || tag)`.
    pub fn encrypt(&self, connection_id: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .aead
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: connection_id.as_bytes(),
                },
            )
            // AES-GCM only fails for inputs of tens of gigabytes.
            .expect("AES-GCM encryption of a token cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        let mut s = String::with_capacity(PREFIX_V1.len() + out.len().div_ceil(3) * 4);
        s.push_str(PREFIX_V1);
        STANDARD.encode_string(&out, &mut s);
        s
    }

    /// Decrypts a value produced by [`TokenCipher::encrypt`] for the same
    /// `connection_id`.
    pub fn decrypt(&self, connection_id: &str, stored: &str) -> Result<SecretString, CipherError> {
        let body = stored
            .strip_prefix(PREFIX_V1)
            .ok_or(CipherError::UnknownFormat)?;
        let raw = STANDARD.decode(body).map_err(|_| CipherError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CipherError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CipherError::Malformed)?;
        let plain = self
            .aead
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: sealed,
                    aad: connection_id.as_bytes(),
                },
            )
            .map_err(|_| CipherError::DecryptFailed)?;
        match String::from_utf8(plain) {
            Ok(s) => Ok(SecretString::from(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(CipherError::Malformed)
            }
        }
    }

    /// A key-check value: a fixed marker encrypted under this key with the
    /// associated data `"key-check"`. It reveals nothing about the key, and
    /// [`TokenCipher::verify_fingerprint`] tells whether a stored value was
    /// made with this key. (The nonce is random, so two calls differ.)
    pub fn fingerprint(&self) -> String {
        self.encrypt(KEY_CHECK_AAD, KEY_CHECK_MARKER)
    }

    /// Whether `fingerprint` was produced by [`TokenCipher::fingerprint`]
    /// under this same key.
    pub fn verify_fingerprint(&self, fingerprint: &str) -> bool {
        use secrecy::ExposeSecret;
        self.decrypt(KEY_CHECK_AAD, fingerprint)
            .is_ok_and(|m| m.expose_secret() == KEY_CHECK_MARKER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn round_trip_and_aad_binding() {
        let (c, _) = TokenCipher::generate();
        let sealed = c.encrypt("conn_a", "tok-123");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("tok-123"));
        assert_eq!(
            c.decrypt("conn_a", &sealed).unwrap().expose_secret(),
            "tok-123"
        );
        assert_eq!(
            c.decrypt("conn_b", &sealed).unwrap_err(),
            CipherError::DecryptFailed
        );
        // Same plaintext twice gives different ciphertexts (random nonce).
        assert_ne!(sealed, c.encrypt("conn_a", "tok-123"));
    }

    #[test]
    fn wrong_key_and_malformed() {
        let (a, _) = TokenCipher::generate();
        let (b, _) = TokenCipher::generate();
        let sealed = a.encrypt("conn_a", "x");
        assert_eq!(
            b.decrypt("conn_a", &sealed).unwrap_err(),
            CipherError::DecryptFailed
        );
        assert_eq!(
            a.decrypt("conn_a", "v2.AAAA").unwrap_err(),
            CipherError::UnknownFormat
        );
        assert_eq!(
            a.decrypt("conn_a", "v1.%%%").unwrap_err(),
            CipherError::Malformed
        );
        assert_eq!(
            a.decrypt("conn_a", "v1.AAAA").unwrap_err(),
            CipherError::Malformed
        );
        assert!(a.verify_fingerprint(&a.fingerprint()));
        assert!(!b.verify_fingerprint(&a.fingerprint()));
        assert!(!a.verify_fingerprint(&a.encrypt("conn_x", KEY_CHECK_MARKER)));
    }

    #[test]
    fn key_parsing() {
        let (_, k) = TokenCipher::generate();
        assert!(TokenCipher::from_base64(&k).is_ok());
        assert!(TokenCipher::from_base64(&format!("{k}\n")).is_ok());
        assert_eq!(
            TokenCipher::from_base64("not base64!").unwrap_err(),
            CipherError::KeyNotBase64
        );
        assert_eq!(
            TokenCipher::from_base64(&STANDARD.encode([7u8; 16])).unwrap_err(),
            CipherError::KeyWrongLength(16)
        );
    }
}
