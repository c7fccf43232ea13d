//! Public keys as JWKs, and the JWK set fetched from a URL.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The token algorithms Tollgate verifies. The product requires RS256; the others are
/// Tollgate's own. Symmetric algorithms are never accepted, so a public key cannot be used
/// as an HMAC secret.
pub const SUPPORTED_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
];

/// One verification key.
pub struct PublicKey {
    pub kid: Option<String>,
    /// The algorithms this key verifies: the JWK's `alg` when given, else every supported
    /// algorithm of its key type.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// The keys of one authorization API.
pub struct KeySet {
    pub keys: Vec<PublicKey>,
    /// Changes whenever the set changes, so cached verifications by old keys are not used.
    pub generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl KeySet {
    /// Parses a JWK (`{"kty":...}`) or a JWK set (`{"keys":[...]}`).
    pub fn parse(json: &str) -> Result<KeySet, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|error| format!("not JSON: {error}"))?;
        let jwks: Vec<Jwk> = if value.get("keys").is_some() {
            serde_json::from_value::<JwkSet>(value)
                .map_err(|error| format!("not a JWK set: {error}"))?
                .keys
        } else {
            vec![serde_json::from_value::<Jwk>(value)
                .map_err(|error| format!("not a JWK: {error}"))?]
        };
        if jwks.is_empty() {
            return Err("the JWK set holds no key".to_string());
        }
        let keys = jwks.iter().map(public_key).collect::<Result<Vec<_>, _>>()?;
        Ok(KeySet {
            keys,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Returns the key for a token's `kid` and algorithm: the key with that `kid`, or, for a
    /// token without one, the only key of the set.
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&PublicKey> {
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return None,
        };
        key.algorithms.contains(&algorithm).then_some(key)
    }
}

fn public_key(jwk: &Jwk) -> Result<PublicKey, String> {
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
        ],
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        _ => {
            return Err(
                "only RSA and P-256 elliptic-curve keys are supported (RS256, RS384, RS512, \
                 PS256, ES256)"
                    .to_string(),
            )
        }
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(declared) => {
            let declared = match declared {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                other => return Err(format!("the algorithm {other:?} is not supported")),
            };
            if !by_type.contains(&declared) {
                return Err(format!(
                    "the key's `alg` {declared:?} does not fit its key type"
                ));
            }
            vec![declared]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|error| format!("unusable key: {error}"))?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"one","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#;

    #[test]
    fn a_single_jwk_and_a_set_parse() {
        let single = KeySet::parse(RSA).unwrap();
        assert_eq!(single.keys.len(), 1);
        assert!(single.find(None, Algorithm::RS256).is_some());
        assert!(single.find(Some("one"), Algorithm::PS256).is_some());
        assert!(single.find(Some("two"), Algorithm::RS256).is_none());
        assert!(single.find(None, Algorithm::ES256).is_none());
        let set = KeySet::parse(&format!(r#"{{"keys":[{RSA}]}}"#)).unwrap();
        assert_ne!(set.generation, single.generation);
    }

    #[test]
    fn unusable_keys_are_reported() {
        for (json, needle) in [
            ("not json", "not JSON"),
            (r#"{"keys":[]}"#, "holds no key"),
            (r#"{"kty":"oct","k":"c2VjcmV0"}"#, "only RSA and P-256"),
            (r#"{"kty":"RSA"}"#, "not a JWK"),
        ] {
            let error = KeySet::parse(json).err().unwrap();
            assert!(error.contains(needle), "{json}: {error}");
        }
    }
}
