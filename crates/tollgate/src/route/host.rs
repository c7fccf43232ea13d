//! Host and environment resolution.
//!
//! The host comes from the request URI's authority (HTTP/2, absolute-form requests) or else
//! the Host header, lower-cased and without its port. On a default mapping the first path
//! segment names the environment and is removed; on custom path mappings the longest
//! configured prefix, matched on segment boundaries, picks the environment and is removed.

use std::borrow::Cow;

use http::request::Parts;

use crate::error::GatewayError;
use crate::snapshot::{EnvMapping, Environment, HostEntry, Service};

/// The environment a request goes to and the API path left for routing.
pub struct EnvironmentMatch<'s, 'p> {
    pub environment: &'s Environment,
    /// The path after the environment segment or mapped prefix; starts with `/`.
    pub api_path: &'p str,
}

/// Returns the request's host, lower-cased, without port.
pub fn request_host(parts: &Parts) -> Result<Cow<'_, str>, GatewayError> {
    let raw = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => {
            let mut values = parts.headers.get_all(http::header::HOST).iter();
            let value = values.next().ok_or(GatewayError::HostMissing)?;
            if values.next().is_some() {
                return Err(GatewayError::HostInvalid);
            }
            value.to_str().map_err(|_| GatewayError::HostInvalid)?
        }
    };
    let host = strip_port(raw);
    if host.is_empty() {
        return Err(GatewayError::HostMissing);
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

fn strip_port(authority: &str) -> &str {
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split_once(':').map_or(host, |(name, _)| name)
}

/// Picks the environment for `path` on the host `entry` of `service`.
pub fn resolve_environment<'s, 'p>(
    entry: &HostEntry,
    service: &'s Service,
    path: &'p str,
) -> Result<EnvironmentMatch<'s, 'p>, GatewayError> {
    match &entry.mapping {
        EnvMapping::Default => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let (segment, api_path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            let environment = crate::config::EnvironmentName::parse(segment)
                .and_then(|name| service.environments[name.index()].as_ref())
                .ok_or_else(|| GatewayError::NoApiMatchesDefaultEnvMapping(segment.to_string()))?;
            Ok(EnvironmentMatch {
                environment,
                api_path,
            })
        }
        EnvMapping::Custom(mappings) => {
            for mapping in mappings {
                let Some(api_path) = strip_mapping_prefix(path, &mapping.prefix) else {
                    continue;
                };
                if let Some(environment) = &service.environments[mapping.environment.index()] {
                    return Ok(EnvironmentMatch {
                        environment,
                        api_path,
                    });
                }
            }
            Err(GatewayError::NoApiMatchesEnvMapping(
                first_segment(path).to_string(),
            ))
        }
    }
}

/// Removes a mapping prefix that ends on a segment boundary of `path`.
fn strip_mapping_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// Removes `.` and `..` segments (also written `%2e`), so that `/public/../admin` cannot reach
/// an API by one path and the backend by another. Percent-encoding is otherwise left as sent.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let has_dots = path
        .split('/')
        .any(|segment| is_dot_segment(segment).is_some());
    if !has_dots {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut pieces = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = pieces.next() {
        let last = pieces.peek().is_none();
        match is_dot_segment(segment) {
            Some(DotSegment::Current) => trailing_slash = last,
            Some(DotSegment::Parent) => {
                segments.pop();
                trailing_slash = last;
            }
            None => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || normalized.is_empty() {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

enum DotSegment {
    Current,
    Parent,
}

fn is_dot_segment(segment: &str) -> Option<DotSegment> {
    let lower = segment.to_ascii_lowercase();
    match lower.as_str() {
        "." | "%2e" => Some(DotSegment::Current),
        ".." | "%2e." | ".%2e" | "%2e%2e" => Some(DotSegment::Parent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dot_segments() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("/../../x", "/x"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/a.b/..c", "/a.b/..c"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_path(input), expected, "input {input}");
        }
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
    }

    #[test]
    fn mapping_prefix_on_segment_boundary() {
        assert_eq!(strip_mapping_prefix("/mypath/a", "/mypath"), Some("/a"));
        assert_eq!(strip_mapping_prefix("/mypath", "/mypath"), Some("/"));
        assert_eq!(strip_mapping_prefix("/mypathx", "/mypath"), None);
        assert_eq!(strip_mapping_prefix("/x", "/"), Some("/x"));
    }
}
