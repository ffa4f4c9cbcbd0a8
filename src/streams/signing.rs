//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`,
//! keyed by the bytes of a `whsec_<base64>` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::zeroize::Zeroizing;
use sha2::Sha256;

/// The key of a helper flow's `whsec_…` secret. `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Shortest and longest key the Standard Webhooks spec recommends.
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;

impl WebhookSecret {
    /// Parses `whsec_<standard base64 of 24 to 64 bytes>`. Errors never repeat the secret.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s
            .strip_prefix("whsec_")
            .ok_or("must start with \"whsec_\" followed by the base64 of the key")?;
        let key = Zeroizing::new(
            STANDARD
                .decode(b64)
                .map_err(|_| "the part after \"whsec_\" is not standard base64".to_string())?,
        );
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(format!(
                "the key must be {MIN_KEY} to {MAX_KEY} bytes long, this one is {} bytes",
                key.len()
            ));
        }
        Ok(WebhookSecret(key))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        // The reference vector of the Standard Webhooks libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn malformed_secrets_are_refused_without_echo() {
        for s in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_***notbase64***",
            "whsec_c2hvcnQ=",
        ] {
            let e = WebhookSecret::parse(s).unwrap_err();
            assert!(!e.contains(s), "{e}");
        }
        assert!(
            !format!(
                "{:?}",
                WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            )
            .contains("MfKQ")
        );
    }
}
