//! The key-pair signature: algorithms, the signing string and the HMAC itself.
//!
//! Shared by the gateway, which verifies, and by [`crate::auth::sign`], which signs for
//! clients. The signing string is each signed header as `lower-case name: value`, joined by
//! `\n` with no trailing newline; the signature is the standard Base64 of the raw HMAC.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};

/// The HMAC algorithms a signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// Every algorithm, in the order the product lists them.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::HmacSha1,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// Parses an `algorithm="..."` value; names are compared without regard to case.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
    }

    /// The name as written in the `Authorization` header.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// Computes the raw HMAC of `message` with `key`.
    pub fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac =
                <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, message),
            Algorithm::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Algorithm::HmacSha384 => run::<Hmac<sha2::Sha384>>(key, message),
            Algorithm::HmacSha512 => run::<Hmac<sha2::Sha512>>(key, message),
        }
    }

    /// Returns the Base64 signature of `message`.
    pub fn sign(self, key: &[u8], message: &[u8]) -> String {
        BASE64.encode(self.mac(key, message))
    }
}

/// HMAC states keyed once with a secret key, so that each signature costs a clone instead of
/// hashing the key again.
#[derive(Clone)]
pub struct SigningKey {
    sha1: Hmac<sha1::Sha1>,
    sha256: Hmac<sha2::Sha256>,
    sha384: Hmac<sha2::Sha384>,
    sha512: Hmac<sha2::Sha512>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn new(key: &[u8]) -> SigningKey {
        let keyed = "HMAC takes keys of any length";
        SigningKey {
            sha1: KeyInit::new_from_slice(key).expect(keyed),
            sha256: KeyInit::new_from_slice(key).expect(keyed),
            sha384: KeyInit::new_from_slice(key).expect(keyed),
            sha512: KeyInit::new_from_slice(key).expect(keyed),
        }
    }

    /// Checks a Base64 signature of `message` in constant time. A signature that is not
    /// Base64 does not match.
    pub fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &str) -> bool {
        let Ok(expected) = BASE64.decode(signature) else {
            return false;
        };
        fn run<M: Mac + Clone>(keyed: &M, message: &[u8], tag: &[u8]) -> bool {
            let mut mac = keyed.clone();
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        match algorithm {
            Algorithm::HmacSha1 => run(&self.sha1, message, &expected),
            Algorithm::HmacSha256 => run(&self.sha256, message, &expected),
            Algorithm::HmacSha384 => run(&self.sha384, message, &expected),
            Algorithm::HmacSha512 => run(&self.sha512, message, &expected),
        }
    }
}

/// Appends one signed line, `name: value`, with `name` lower-cased, to a signing string.
pub fn push_line(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    for c in name.chars() {
        out.push(c.to_ascii_lowercase());
    }
    out.push_str(": ");
    out.push_str(value);
}

/// Builds a signing string from `(name, value)` pairs in signing order.
pub fn signing_string<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        push_line(&mut out, name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"ZxF2whO0RhuwnVCj5JMMAuqcDcN2oPrC";

    /// The reference's computed vectors for the documented sample key.
    #[test]
    fn reference_test_vectors() {
        let date = signing_string([
            ("Date", "Fri, 09 Oct 2015 00:00:00 GMT"),
            ("Source", "AndriodApp"),
        ]);
        assert_eq!(
            date,
            "date: Fri, 09 Oct 2015 00:00:00 GMT\nsource: AndriodApp"
        );
        let cases = [
            (Algorithm::HmacSha1, "zJ1fUmiWSmSZUoqgZi+dGUJvxn0="),
            (
                Algorithm::HmacSha256,
                "P6FsmuKopyHp3tBPMSjBX/N2PG3dOU6NE0LVHAFfeFk=",
            ),
            (
                Algorithm::HmacSha384,
                "kzSkzNIpe60asglie56TdR1xRaY/BhTrtCl+4NMut3ZjbZ0K++lOFKvJ5L3APdH2",
            ),
            (
                Algorithm::HmacSha512,
                "2VujF0ZqeLRgQ/f7FhOiTvJB7bOvUCZHo1/aAiO8hYTg0tIvzhxKIjepwCM4DleQ0KMydlC2u96vgTl2TJZlXg==",
            ),
        ];
        for (algorithm, expected) in cases {
            assert_eq!(
                algorithm.sign(KEY, date.as_bytes()),
                expected,
                "{algorithm:?}"
            );
            assert!(SigningKey::new(KEY).verify(algorithm, date.as_bytes(), expected));
        }
        let x_date = signing_string([
            ("x-date", "Mon, 19 Mar 2018 12:08:40 GMT"),
            ("source", "AndriodApp"),
        ]);
        assert_eq!(
            Algorithm::HmacSha1.sign(KEY, x_date.as_bytes()),
            "NI05zGaK4h8BfAh6EQ05ZJ2vG4k="
        );
    }

    #[test]
    fn keyed_states_verify_like_fresh_ones() {
        let key = SigningKey::new(KEY);
        let message = b"x-date: Mon, 19 Mar 2018 12:08:40 GMT";
        for algorithm in Algorithm::ALL {
            let signature = algorithm.sign(KEY, message);
            assert!(key.verify(algorithm, message, &signature), "{algorithm:?}");
            assert!(
                key.verify(algorithm, message, &signature),
                "reused {algorithm:?}"
            );
            assert!(
                !key.verify(algorithm, b"other", &signature),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn verify_rejects_other_signatures() {
        let message = b"date: x";
        let good = Algorithm::HmacSha256.sign(KEY, message);
        let other = SigningKey::new(b"other key");
        let key = SigningKey::new(KEY);
        assert!(!other.verify(Algorithm::HmacSha256, message, &good));
        assert!(!key.verify(Algorithm::HmacSha1, message, &good));
        assert!(!key.verify(Algorithm::HmacSha256, message, "not base64!"));
        assert!(!key.verify(Algorithm::HmacSha256, message, ""));
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse("HMAC-SHA256"), Some(Algorithm::HmacSha256));
        assert_eq!(Algorithm::parse("hmac-md5"), None);
    }
}
