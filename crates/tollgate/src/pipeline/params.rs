//! Declared header and query parameters: required ones must be present, and defaults are
//! filled in for the backend when the request leaves a parameter out.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;

use crate::config::ParameterPosition;
use crate::error::GatewayError;
use crate::snapshot::Api;

/// Checks the API's declared parameters against the request and fills in default header
/// values. Returns query parameters to append for the backend, already encoded.
pub fn apply(api: &Api, parts: &mut Parts) -> Result<String, GatewayError> {
    let mut extra_query = String::new();
    for parameter in &api.parameters {
        match parameter.position {
            ParameterPosition::Header => {
                if parts.headers.contains_key(parameter.name.as_str()) {
                    continue;
                }
                match &parameter.default {
                    Some(default) => {
                        let name = HeaderName::from_bytes(parameter.name.as_bytes())
                            .map_err(|_| GatewayError::ApiConfig)?;
                        let value =
                            HeaderValue::from_str(default).map_err(|_| GatewayError::ApiConfig)?;
                        parts.headers.insert(name, value);
                    }
                    None if parameter.required => {
                        return Err(GatewayError::HeaderParamRequired(parameter.name.clone()));
                    }
                    None => {}
                }
            }
            ParameterPosition::Query => {
                let query = parts.uri.query().unwrap_or("");
                if query_has(query, &parameter.name) {
                    continue;
                }
                match &parameter.default {
                    Some(default) => {
                        if !extra_query.is_empty() {
                            extra_query.push('&');
                        }
                        percent_encode_into(&parameter.name, &mut extra_query);
                        extra_query.push('=');
                        percent_encode_into(default, &mut extra_query);
                    }
                    None if parameter.required => {
                        return Err(GatewayError::QueryParamRequired(parameter.name.clone()));
                    }
                    None => {}
                }
            }
            ParameterPosition::Path | ParameterPosition::Body => {}
        }
    }
    Ok(extra_query)
}

/// Returns true when the query string has the key `name`, decoded as a form would be.
fn query_has(query: &str, name: &str) -> bool {
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
        .any(|key| key == name || percent_decode(key).as_deref() == Some(name))
}

fn percent_decode(text: &str) -> Option<String> {
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
            b'+' => {
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
    fn query_lookup_decodes_keys() {
        assert!(query_has("a=1&b%20c=2", "b c"));
        assert!(query_has("flag&x=1", "flag"));
        assert!(!query_has("ab=1", "a"));
    }

    #[test]
    fn decoding_needs_two_hex_digits() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        for bad in ["%+1", "%2", "%zz", "%-1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn encoding_escapes_reserved_bytes() {
        let mut out = String::new();
        percent_encode_into("a b&c", &mut out);
        assert_eq!(out, "a%20b%26c");
    }
}
