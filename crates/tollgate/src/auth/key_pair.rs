//! Verifying `Authorization: hmac id="...", algorithm="...", headers="...", signature="..."`.
//!
//! The checks run in this order, each with its own 401 message:
//!
//! 1. `Authorization` absent: `HMAC signature cannot be verified, a validate authorization
//!    header is required`; sent more than once: `HMAC do not support multiple HTTP header.`
//! 2. Not `hmac` followed by `key="value"` pairs: `HMAC authorization format error.`
//! 3. `id` or `signature` missing or empty: `HMAC id or signature missing.`
//! 4. `headers` or `algorithm` missing or empty: `HMAC authorization headers is invalidate.`
//! 5. An algorithm other than hmac-sha1/256/384/512: `HMAC algorithm xxx not supported.`
//! 6. For each listed header in order: absent, `HMAC signature cannot be verified, a valid xxx
//!    header is required.`; sent more than once, `HMAC do not support multiple HTTP header.`.
//!    An API that asks for a signed request target or body digest reports the missing
//!    `@request-target` or `digest` entry with the same message.
//! 7. Neither `date` nor `x-date` listed: `HMAC signature cannot be verified, a valid date or
//!    x-date header is required.`; a listed `x-date` that is not an HTTP date: `..., a valid
//!    x-date header is required for HMAC Authentication.`; one outside the window: `..., the
//!    x-date header is out of date for HMAC Authentication.`. A `Date` is not checked against
//!    the clock, as in the product, unless `key_pair_auth.check_date` asks for it.
//! 8. Unknown or disabled secret id: `HMAC signature cannot be verified.`
//! 9. Wrong signature: `HMAC signature does not match.`
//!
//! The usage plan checks (403 `Found no validate usage plan.`, 401 `HMAC apikey is invalid
//! for API.`) come after, in the pipeline: only a caller that proved it holds the key learns
//! where the key is bound.
//!
//! Parsing is tolerant where clients differ (parameters in any order, any spaces around
//! commas, names in any case) and strict where a loose reading could be abused: a parameter
//! given twice, or text outside `key="value"` pairs, is a format error.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::header::{HeaderMap, AUTHORIZATION};
use http::request::Parts;
use sha2::{Digest as _, Sha256};

use super::signature::Algorithm;
use crate::error::GatewayError;
use crate::snapshot::KeyPair;

/// The pseudo-header that signs the request line: `GET /path?query HTTP/1.1`.
pub const REQUEST_LINE: &str = "request-line";
/// The pseudo-header that signs the method-less target: `/path?query`.
pub const REQUEST_TARGET: &str = "@request-target";

/// Key-pair signature requirements of one API.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyPairOptions {
    pub sign_request_target: bool,
    pub require_digest: bool,
    /// How far a signed `X-Date` may be from the gateway's clock.
    pub x_date_window: Duration,
    /// Applies the window to a signed `Date` too, which the product does not check.
    pub check_date: bool,
}

/// A request whose signature verified.
#[derive(Debug)]
pub struct VerifiedKey<'s> {
    pub key: &'s KeyPair,
    /// The `Digest` header to check against the body, when the API asks for one.
    pub digest: Option<String>,
}

/// The parameters of an `Authorization: hmac ...` header.
#[derive(Debug, Default, PartialEq, Eq)]
struct HmacParams<'a> {
    id: Option<&'a str>,
    algorithm: Option<&'a str>,
    headers: Option<&'a str>,
    signature: Option<&'a str>,
}

/// Verifies a request's key-pair signature against the known keys.
pub fn verify<'s>(
    parts: &Parts,
    options: KeyPairOptions,
    now: SystemTime,
    find_key: impl FnOnce(&str) -> Option<&'s KeyPair>,
) -> Result<VerifiedKey<'s>, GatewayError> {
    let authorization = single_header(&parts.headers, AUTHORIZATION.as_str())
        .map_err(|_| GatewayError::HmacMultipleHeader)?
        .ok_or(GatewayError::HmacAuthorizationMissing)?;
    let authorization =
        std::str::from_utf8(authorization).map_err(|_| GatewayError::HmacAuthorizationFormat)?;
    let params = parse_authorization(authorization).ok_or(GatewayError::HmacAuthorizationFormat)?;
    let (Some(id), Some(signature)) = (params.id, params.signature) else {
        return Err(GatewayError::HmacIdOrSignatureMissing);
    };
    let (Some(header_list), Some(algorithm_name)) = (params.headers, params.algorithm) else {
        return Err(GatewayError::HmacAuthorizationHeadersInvalid);
    };
    let algorithm = Algorithm::parse(algorithm_name)
        .ok_or_else(|| GatewayError::HmacAlgorithmNotSupported(algorithm_name.to_string()))?;

    // The signing string is built from the header bytes as received, so a value that is not
    // UTF-8 is signed as it is and cannot be swapped for another with the same lossy text.
    let mut signing: Vec<u8> = Vec::with_capacity(128);
    let mut date = None;
    let mut x_date = None;
    let mut digest = None;
    let mut signs_target = false;
    for name in header_list.split_ascii_whitespace() {
        if name.eq_ignore_ascii_case(REQUEST_LINE) {
            if !signing.is_empty() {
                signing.push(b'\n');
            }
            signing.extend_from_slice(request_line(parts).as_bytes());
            signs_target = true;
            continue;
        }
        if name.eq_ignore_ascii_case(REQUEST_TARGET) {
            let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            push_line_bytes(&mut signing, REQUEST_TARGET, target.as_bytes());
            signs_target = true;
            continue;
        }
        let value = single_header(&parts.headers, name)
            .map_err(|_| GatewayError::HmacMultipleHeader)?
            .ok_or_else(|| GatewayError::HmacSignedHeaderMissing(name.to_ascii_lowercase()))?;
        push_line_bytes(&mut signing, name, value);
        let slot = if name.eq_ignore_ascii_case("date") {
            &mut date
        } else if name.eq_ignore_ascii_case("x-date") {
            &mut x_date
        } else if name.eq_ignore_ascii_case("digest") {
            &mut digest
        } else {
            continue;
        };
        *slot = Some(String::from_utf8_lossy(value));
    }
    if options.sign_request_target && !signs_target {
        return Err(GatewayError::HmacSignedHeaderMissing(
            REQUEST_TARGET.to_string(),
        ));
    }
    if options.require_digest && digest.is_none() {
        return Err(GatewayError::HmacSignedHeaderMissing("digest".to_string()));
    }
    let within_window = |sent: SystemTime| {
        let skew = now
            .duration_since(sent)
            .unwrap_or_else(|early| early.duration());
        skew <= options.x_date_window
    };
    match (&x_date, &date) {
        (Some(x_date), _) => {
            let sent =
                httpdate::parse_http_date(x_date).map_err(|_| GatewayError::HmacXDateRequired)?;
            if !within_window(sent) {
                return Err(GatewayError::HmacXDateOutOfDate);
            }
        }
        (None, Some(date)) if options.check_date => {
            let sent =
                httpdate::parse_http_date(date).map_err(|_| GatewayError::HmacDateRequired)?;
            if !within_window(sent) {
                return Err(GatewayError::HmacXDateOutOfDate);
            }
        }
        (None, Some(_)) => {}
        (None, None) => return Err(GatewayError::HmacDateRequired),
    }

    let key = find_key(id)
        .filter(|key| key.enabled)
        .ok_or(GatewayError::HmacSignatureUnverifiable)?;
    if !key.signing_key.verify(algorithm, &signing, signature) {
        return Err(GatewayError::HmacSignatureMismatch);
    }
    Ok(VerifiedKey {
        key,
        digest: digest
            .filter(|_| options.require_digest)
            .map(|value| value.into_owned()),
    })
}

/// Appends `lower-case name: value` to a signing string, after a `\n` unless it is the
/// first line.
fn push_line_bytes(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
}

/// Returns true when a `Digest` header value contains the body's SHA-256.
pub fn body_digest_matches(digest_header: &str, body: &[u8]) -> bool {
    let expected = BASE64.encode(Sha256::digest(body));
    digest_header.split(',').any(|item| {
        item.trim()
            .split_once('=')
            .is_some_and(|(algorithm, value)| {
                algorithm.trim().eq_ignore_ascii_case("SHA-256") && value.trim() == expected
            })
    })
}

/// Returns the request line as signed by `request-line`.
fn request_line(parts: &Parts) -> String {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{} {target} {:?}", parts.method, parts.version)
}

/// Returns a header's only value; `Err` when it is sent more than once. A name that is not a
/// valid header name is absent.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, ()> {
    let Ok(name) = http::header::HeaderName::from_bytes(name.as_bytes()) else {
        return Ok(None);
    };
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first.map(|value| value.as_bytes()))
}

/// Parses `hmac k="v", k="v"`; `None` when the text is not of that shape.
fn parse_authorization(text: &str) -> Option<HmacParams<'_>> {
    let text = text.trim();
    let (scheme, mut rest) = text.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("hmac") {
        return None;
    }
    let mut params = HmacParams::default();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let (key, after_key) = rest.split_once('=')?;
        let key = key.trim();
        let after_key = after_key.trim_start().strip_prefix('"')?;
        let (value, after_value) = after_key.split_once('"')?;
        if !after_value.is_empty()
            && !after_value.starts_with(|c: char| c.is_ascii_whitespace() || c == ',')
        {
            return None;
        }
        rest = after_value;
        let slot = match key.to_ascii_lowercase().as_str() {
            "id" => &mut params.id,
            "algorithm" => &mut params.algorithm,
            "headers" => &mut params.headers,
            "signature" => &mut params.signature,
            // Unknown parameters are allowed and ignored, so newer clients keep working.
            _ if !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                continue
            }
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(value).filter(|value| !value.trim().is_empty());
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_header() {
        let params = parse_authorization(
            r#"hmac id="AKIDCgOPWjQ6BAxvHtyckhWABJVYSBj548pN", algorithm="hmac-sha1", headers="date source", signature="zJ1fUmiWSmSZUoqgZi+dGUJvxn0=""#,
        )
        .unwrap();
        assert_eq!(params.id, Some("AKIDCgOPWjQ6BAxvHtyckhWABJVYSBj548pN"));
        assert_eq!(params.algorithm, Some("hmac-sha1"));
        assert_eq!(params.headers, Some("date source"));
        assert_eq!(params.signature, Some("zJ1fUmiWSmSZUoqgZi+dGUJvxn0="));
    }

    #[test]
    fn parsing_is_tolerant_of_order_and_spacing() {
        let params = parse_authorization(
            r#"HMAC signature="s",id="i" ,  headers="date",algorithm="hmac-sha256""#,
        )
        .unwrap();
        assert_eq!(params.id, Some("i"));
        assert_eq!(params.signature, Some("s"));
        assert_eq!(params.headers, Some("date"));
    }

    #[test]
    fn parsing_is_strict_where_it_matters() {
        for text in [
            r#"Basic dXNlcjpwYXNz"#,
            r#"hmac"#,
            r#"hmac id=i"#,
            r#"hmac id="i", id="j", signature="s""#,
            r#"hmac id="i"x, signature="s""#,
            r#"hmac id="unterminated"#,
        ] {
            assert_eq!(parse_authorization(text), None, "{text}");
        }
    }

    #[test]
    fn empty_values_count_as_missing() {
        let params = parse_authorization(r#"hmac id="", signature="s""#).unwrap();
        assert_eq!(params.id, None);
    }

    #[test]
    fn digest_check() {
        let body = b"{\"hello\":\"world\"}";
        let good = format!("SHA-256={}", BASE64.encode(Sha256::digest(body)));
        assert!(body_digest_matches(&good, body));
        let listed = format!("MD5=x, sha-256={}", BASE64.encode(Sha256::digest(body)));
        assert!(body_digest_matches(&listed, body));
        assert!(!body_digest_matches(&good, b"other"));
        assert!(!body_digest_matches("SHA-512=abc", body));
    }
}
