//! Finding and verifying a business API's token, with a cache of verified tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::{KeySet, SUPPORTED_ALGORITHMS};
use crate::config::OauthConfig;
use crate::error::GatewayError;

/// A verified token's claims.
pub type Claims = Map<String, Value>;

/// The place in a request that carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLocation {
    /// `Authorization: Bearer id_token="<jwt>"`, or `Bearer <jwt>`.
    Header,
    /// The `id_token` cookie.
    Cookie,
}

impl TokenLocation {
    pub fn parse(text: &str) -> Option<TokenLocation> {
        match text {
            "method.req.header.authorization" => Some(TokenLocation::Header),
            "method.req.header.cookie" => Some(TokenLocation::Cookie),
            _ => None,
        }
    }
}

struct CachedToken {
    generation: u64,
    expires: u64,
    claims: Arc<Claims>,
}

/// The verification settings and keys of one authorization API.
pub struct OauthVerifier {
    pub api_id: String,
    /// `None` when the configured location is not one of the two allowed.
    pub location: Option<TokenLocation>,
    pub login_redirect: Option<HeaderValue>,
    /// The reason `public_key` cannot be used, for 481 `Oauth public key error.`.
    pub key_error: Option<String>,
    pub jwks_url: Option<http::Uri>,
    pub jwks_refresh: Duration,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    keys: ArcSwapOption<KeySet>,
    cache: Mutex<HashMap<[u8; 32], CachedToken>>,
    cache_entries: usize,
}

impl OauthVerifier {
    /// Builds a verifier. A problem with the settings does not fail: requests get the 481
    /// that names it, and the problem is logged.
    /// `public_key` is the configured key's JSON text, or why it could not be read.
    pub fn new(
        api_id: &str,
        config: &OauthConfig,
        public_key: Option<Result<String, String>>,
    ) -> OauthVerifier {
        let parsed = public_key.map(|text| text.and_then(|json| KeySet::parse(&json)));
        let (keys, key_error) = match parsed {
            None => (None, None),
            Some(Ok(keys)) => (Some(Arc::new(keys)), None),
            Some(Err(error)) => (None, Some(error)),
        };
        OauthVerifier {
            api_id: api_id.to_string(),
            location: TokenLocation::parse(&config.token_location),
            login_redirect: config
                .login_redirect_url
                .as_deref()
                .and_then(|url| HeaderValue::from_str(url).ok()),
            key_error,
            jwks_url: config.jwks_url.as_deref().and_then(|url| url.parse().ok()),
            jwks_refresh: Duration::from_secs(config.jwks_refresh_secs.max(1)),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_secs,
            keys: ArcSwapOption::new(keys),
            cache: Mutex::new(HashMap::new()),
            cache_entries: config.token_cache_entries,
        }
    }

    /// Replaces the key set, as after a JWKS fetch.
    pub fn set_keys(&self, keys: KeySet) {
        self.keys.store(Some(Arc::new(keys)));
    }

    pub fn has_keys(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Returns the 481 for settings that cannot verify any token.
    pub fn config_error(&self) -> Option<GatewayError> {
        if self.location.is_none() {
            return Some(GatewayError::OauthIdTokenLocationForbidden);
        }
        if self.key_error.is_some() {
            return Some(GatewayError::OauthPublicKey);
        }
        if !self.has_keys() {
            return Some(GatewayError::OauthNoPublicKey);
        }
        None
    }

    /// Finds the token in a request, or the 401 for its absence.
    pub fn find_token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, GatewayError> {
        match self.location {
            Some(TokenLocation::Cookie) => cookie_token(headers),
            _ => header_token(headers),
        }
    }

    /// Verifies a token at `now` (seconds since the Unix epoch) and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, String> {
        let keys = self.keys.load_full().ok_or("no key set")?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.cache_entries > 0 {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(&digest) {
                if hit.generation == keys.generation
                    && now <= hit.expires.saturating_add(self.leeway)
                {
                    return Ok(hit.claims.clone());
                }
            }
        }
        let claims = Arc::new(self.verify_uncached(&keys, token, now)?);
        if self.cache_entries > 0 {
            let expires = claims
                .get("exp")
                .and_then(numeric_date)
                .expect("verified tokens have exp");
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= self.cache_entries {
                cache.retain(|_, entry| now <= entry.expires.saturating_add(self.leeway));
                if cache.len() >= self.cache_entries {
                    cache.clear();
                }
            }
            cache.insert(
                digest,
                CachedToken {
                    generation: keys.generation,
                    expires,
                    claims: claims.clone(),
                },
            );
        }
        Ok(claims)
    }

    fn verify_uncached(&self, keys: &KeySet, token: &str, now: u64) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|error| format!("malformed token: {error}"))?;
        if !SUPPORTED_ALGORITHMS.contains(&header.alg) {
            return Err(format!("the algorithm {:?} is not accepted", header.alg));
        }
        let key = keys
            .find(header.kid.as_deref(), header.alg)
            .ok_or("no key for the token's kid and algorithm")?;
        let mut validation = Validation::new(header.alg);
        // Times are checked below against the gateway's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let data = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| format!("signature: {error}"))?;
        let claims = data.claims;

        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or("no numeric exp claim")?;
        if now > exp.saturating_add(self.leeway) {
            return Err(format!("expired at {exp}, now {now}"));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or("nbf is not a number")?;
            if now.saturating_add(self.leeway) < nbf {
                return Err(format!("not valid before {nbf}, now {now}"));
            }
        }

        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err("wrong iss".to_string());
            }
        }
        if let Some(audience) = &self.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err("wrong aud".to_string());
            }
        }
        Ok(claims)
    }
}

/// Reads a JWT NumericDate: seconds since the epoch, which may have a fraction. Negative
/// times count as 0.
fn numeric_date(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_i64().map(|seconds| seconds.max(0) as u64))
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.max(0.0) as u64)
        })
}

/// Returns the token of `Authorization: Bearer id_token="<jwt>"` or `Bearer <jwt>`.
fn header_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or(GatewayError::OauthNoAuthorizationHeader)?;
    if values.next().is_some() {
        return Err(GatewayError::OauthAuthorizationFormat);
    }
    let value = value
        .to_str()
        .map_err(|_| GatewayError::OauthAuthorizationFormat)?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::OauthAuthorizationFormat);
    }
    let rest = rest.trim();
    let token = match rest.strip_prefix("id_token=") {
        Some(quoted) => quoted
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(quoted),
        None => rest,
    };
    if token.is_empty() {
        return Err(GatewayError::OauthMissIdToken);
    }
    Ok(token)
}

/// Returns the value of the `id_token` cookie.
fn cookie_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "id_token")
        .map(|(_, token)| token.trim_matches('"'))
        .filter(|token| !token.is_empty())
        .ok_or(GatewayError::OauthNoIdToken)
}

/// Removes the `id_token` cookie from the `Cookie` headers, keeping the others.
pub fn strip_token_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with("id_token="))
        .map(str::to_string)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, value);
        }
    }
}

/// Sets the claim headers: the client's own copies are removed first.
pub fn forward_claims(
    headers: &mut HeaderMap,
    claim_headers: &[(String, HeaderName)],
    claims: &Claims,
) {
    for (claim, header) in claim_headers {
        headers.remove(header);
        let text = match claims.get(claim) {
            Some(Value::String(text)) => text.clone(),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => value.to_string(),
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(header.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn header_forms() {
        for (value, expected) in [
            (r#"Bearer id_token="a.b.c""#, Ok("a.b.c")),
            ("Bearer a.b.c", Ok("a.b.c")),
            ("bearer   a.b.c ", Ok("a.b.c")),
            ("Bearer", Err(GatewayError::OauthMissIdToken)),
            (r#"Bearer id_token="""#, Err(GatewayError::OauthMissIdToken)),
            (
                "Basic dXNlcg==",
                Err(GatewayError::OauthAuthorizationFormat),
            ),
        ] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(header_token(&map), expected, "{value}");
        }
        assert_eq!(
            header_token(&HeaderMap::new()),
            Err(GatewayError::OauthNoAuthorizationHeader)
        );
    }

    #[test]
    fn cookie_forms() {
        let map = headers(&[("cookie", "theme=dark; id_token=a.b.c; lang=en")]);
        assert_eq!(cookie_token(&map), Ok("a.b.c"));
        let map = headers(&[("cookie", "theme=dark")]);
        assert_eq!(cookie_token(&map), Err(GatewayError::OauthNoIdToken));
        let mut map = headers(&[("cookie", "theme=dark; id_token=a.b.c; lang=en")]);
        strip_token_cookie(&mut map);
        assert_eq!(map[COOKIE], "theme=dark; lang=en");
    }
}
