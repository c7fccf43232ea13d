//! Declared parameters: required ones must be present, defaults are filled in, and mapped
//! ones are renamed or moved between header, query and path on their way to the backend.
//! Constant parameters are added to every backend request.
//!
//! A query string is parsed only for APIs that declare query parameters or map parameters.
//! It is malformed, giving 500 `Error occurred during query params.`, when a `%` is not
//! followed by two hex digits or a decoded key or value is not UTF-8. Body parameters are
//! read from `application/x-www-form-urlencoded` bodies; the body itself is forwarded as
//! sent, JSON included.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::Uri;

use crate::config::ParameterPosition;
use crate::error::GatewayError;
use crate::snapshot::{Api, Parameter};

/// The additions of the parameters to the backend request.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Query parameters to append, already encoded.
    pub extra_query: String,
    /// Values for `{name}` in the backend path, from parameters mapped to the path.
    pub path_values: Vec<(String, String)>,
}

/// Checks the API's declared parameters against the request, fills in defaults, applies
/// mappings and constants. `captures` are the frontend path's variables; `body` is the
/// whole body when the API declares body parameters.
pub fn apply(
    api: &Api,
    parts: &mut Parts,
    captures: &[(&str, String)],
    body: Option<&Bytes>,
) -> Result<Mapped, GatewayError> {
    let mut mapped = Mapped::default();
    if api.parameters.is_empty() && api.constants.is_empty() {
        return Ok(mapped);
    }
    let query = if api.parses_query {
        parse_query(parts.uri.query().unwrap_or(""))?
    } else {
        Vec::new()
    };
    let form = match body {
        Some(body) => Some(parse_form(parts, body, &api.parameters)?),
        None => None,
    };
    let mut dropped_query_keys: Vec<&str> = Vec::new();
    for parameter in &api.parameters {
        let sent: Option<String> = match parameter.position {
            ParameterPosition::Header => match parts.headers.get(parameter.name.as_str()) {
                Some(value) => Some(
                    value
                        .to_str()
                        .map_err(|_| GatewayError::GetParamsFailed(parameter.name.clone()))?
                        .to_string(),
                ),
                None => None,
            },
            ParameterPosition::Query => lookup(&query, &parameter.name),
            // A capture of nothing but `/` (`/files//` for `/files/{name}`) is an empty
            // segment: the variable is missing.
            ParameterPosition::Path => captures
                .iter()
                .find(|(name, value)| {
                    *name == parameter.name && !value.trim_matches('/').is_empty()
                })
                .map(|(_, value)| value.clone()),
            ParameterPosition::Body => form.as_ref().and_then(|form| lookup(form, &parameter.name)),
        };
        let (value, from_client) = match (sent, &parameter.default) {
            (Some(value), _) => (value, true),
            (None, Some(default)) => (default.clone(), false),
            (None, None) if parameter.required => return Err(required(parameter)),
            (None, None) => continue,
        };
        let (target, target_name) = parameter
            .backend
            .clone()
            .unwrap_or((parameter.position, parameter.name.clone()));
        let moved = target != parameter.position || target_name != parameter.name;
        if from_client && !moved {
            continue;
        }
        if from_client {
            match parameter.position {
                ParameterPosition::Header => {
                    parts.headers.remove(parameter.name.as_str());
                }
                ParameterPosition::Query => dropped_query_keys.push(&parameter.name),
                ParameterPosition::Path | ParameterPosition::Body => {}
            }
        }
        match target {
            ParameterPosition::Header => {
                let name = HeaderName::from_bytes(target_name.as_bytes())
                    .map_err(|_| GatewayError::ApiConfig)?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| GatewayError::GetParamsFailed(parameter.name.clone()))?;
                parts.headers.insert(name, value);
            }
            ParameterPosition::Query => push_query(&mut mapped.extra_query, &target_name, &value),
            ParameterPosition::Path => {
                let mut encoded = String::new();
                percent_encode_into(&value, &mut encoded);
                mapped.path_values.push((target_name, encoded));
            }
            // Rejected at load; a default is not written into a body.
            ParameterPosition::Body => {}
        }
    }
    for constant in &api.constants {
        match &constant.header {
            Some(name) => {
                parts
                    .headers
                    .insert(name.clone(), constant.header_value.clone());
            }
            None => push_query(&mut mapped.extra_query, &constant.name, &constant.value),
        }
    }
    if !dropped_query_keys.is_empty() {
        drop_query_keys(&mut parts.uri, &dropped_query_keys)?;
    }
    Ok(mapped)
}

fn required(parameter: &Parameter) -> GatewayError {
    let name = parameter.name.clone();
    match parameter.position {
        ParameterPosition::Header => GatewayError::HeaderParamRequired(name),
        ParameterPosition::Query => GatewayError::QueryParamRequired(name),
        ParameterPosition::Path => GatewayError::PathParamRequired(name),
        ParameterPosition::Body => GatewayError::BodyParamRequired(name),
    }
}

/// Parses a query string into decoded pairs; a key without `=` has an empty value.
pub(super) fn parse_query(query: &str) -> Result<Vec<(String, String)>, GatewayError> {
    decode_pairs(query).ok_or(GatewayError::QueryParams)
}

fn decode_pairs(text: &str) -> Option<Vec<(String, String)>> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

/// Parses an urlencoded form body, after checking its content type.
fn parse_form(
    parts: &Parts,
    body: &Bytes,
    parameters: &[Parameter],
) -> Result<Vec<(String, String)>, GatewayError> {
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(GatewayError::FormContentTypeRequired);
    }
    let first = parameters
        .iter()
        .find(|parameter| parameter.position == ParameterPosition::Body)
        .map_or_else(|| "body".to_string(), |parameter| parameter.name.clone());
    let text =
        std::str::from_utf8(body).map_err(|_| GatewayError::GetParamsFailed(first.clone()))?;
    decode_pairs(text.trim()).ok_or(GatewayError::GetParamsFailed(first))
}

fn lookup(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

fn push_query(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    percent_encode_into(name, out);
    out.push('=');
    percent_encode_into(value, out);
}

/// Removes the pairs whose decoded key is one of `keys` from the URI's query, keeping the
/// others as sent.
fn drop_query_keys(uri: &mut Uri, keys: &[&str]) -> Result<(), GatewayError> {
    let query = uri.query().unwrap_or("");
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            let decoded = percent_decode(key).unwrap_or_default();
            !pair.is_empty() && !keys.contains(&decoded.as_str())
        })
        .collect();
    let mut path_and_query = uri.path().to_string();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| GatewayError::QueryParams)?);
    *uri = Uri::from_parts(parts).map_err(|_| GatewayError::QueryParams)?;
    Ok(())
}

fn percent_decode(text: &str) -> Option<String> {
    decode(text, true)
}

/// Decodes a path segment: `%XX` escapes only, since `+` is a plain character in paths.
pub(super) fn percent_decode_path(text: &str) -> Option<String> {
    decode(text, false)
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space`; `None` for a broken
/// escape or bytes that are not UTF-8.
fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                if !hex.bytes().all(|digit| digit.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode_into(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_decodes_and_rejects_malformed() {
        let pairs = parse_query("a=1&b%20c=2&flag").unwrap();
        assert_eq!(lookup(&pairs, "b c").as_deref(), Some("2"));
        assert_eq!(lookup(&pairs, "flag").as_deref(), Some(""));
        for bad in ["a=%zz", "a=%2", "%ff=1", "a=%c3%28"] {
            assert_eq!(
                parse_query(bad).unwrap_err(),
                GatewayError::QueryParams,
                "{bad}"
            );
        }
    }

    #[test]
    fn decoding_needs_two_hex_digits() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        for bad in ["%+1", "%2", "%zz", "%-1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn dropping_keys_keeps_the_rest_as_sent() {
        let mut uri: Uri = "/a?x=1&drop%20me=2&y=%41".parse().unwrap();
        drop_query_keys(&mut uri, &["drop me"]).unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/a?x=1&y=%41");
        let mut uri: Uri = "/a?only=1".parse().unwrap();
        drop_query_keys(&mut uri, &["only"]).unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/a");
    }

    #[test]
    fn encoding_escapes_reserved_bytes() {
        let mut out = String::new();
        percent_encode_into("a b&c", &mut out);
        assert_eq!(out, "a%20b%26c");
    }
}
