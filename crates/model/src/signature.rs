//! Shopify webhook signatures: `X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(secret, raw body))`.
//!
//! The relay verifies with it and the sandbox signs with it, so both agree by construction and
//! the test vector in `contract/fixtures/hmac/` pins the algorithm. The comparison is constant-time
//! (it goes through the MAC's own verification), so a caller cannot learn a valid signature byte
//! by byte from response timings.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    mac
}

/// The `X-Shopify-Hmac-Sha256` header value for `body` signed with `secret`.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    STANDARD.encode(mac(secret, body).finalize().into_bytes())
}

/// Whether `header` (the `X-Shopify-Hmac-Sha256` value) is `body`'s signature under `secret`.
/// A header that is not valid base64 is simply not a valid signature.
pub fn verify_webhook(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Ok(tag) = STANDARD.decode(header.trim()) else {
        return false;
    };
    mac(secret, body).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contract/fixtures/hmac/shopify-app-js-validate-test-vector.json"
        );
        let text = std::fs::read_to_string(path).expect("the shared HMAC test vector");
        serde_json::from_str(&text).expect("vector is JSON")
    }

    #[test]
    fn shopify_test_vector_signs_and_verifies() {
        let v = vector();
        let secret = v["secret"].as_str().unwrap().as_bytes();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        let expected = v["expected_x_shopify_hmac_sha256"].as_str().unwrap();
        assert_eq!(sign_webhook(secret, body), expected);
        assert!(verify_webhook(secret, body, expected));
    }

    #[test]
    fn any_change_is_refused() {
        let v = vector();
        let secret = v["secret"].as_str().unwrap().as_bytes();
        let body = v["raw_body"].as_str().unwrap().as_bytes().to_vec();
        let expected = v["expected_x_shopify_hmac_sha256"].as_str().unwrap();
        let mut changed = body.clone();
        changed[3] ^= 1;
        assert!(
            !verify_webhook(secret, &changed, expected),
            "one body byte changed"
        );
        assert!(
            !verify_webhook(b"other_secret", &body, expected),
            "other secret"
        );
        assert!(
            !verify_webhook(secret, &body, "not base64!"),
            "garbage header"
        );
        assert!(!verify_webhook(secret, &body, ""), "empty header");
        let truncated = &expected[..expected.len() - 4];
        assert!(
            !verify_webhook(secret, &body, truncated),
            "truncated signature"
        );
    }
}
