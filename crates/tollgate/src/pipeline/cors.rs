//! CORS: the API flag with the product's defaults, the CORS plugin, preflight responses and
//! the cross-origin check.
//!
//! Origins are compared as normalized origins, `scheme://host[:port]` with the host in lower
//! case and the scheme's default port left out. A plugin entry matches an origin only when
//! it is equal to it, or when it is a regex written with `^` and `$` that matches the whole
//! origin, so `https://example.com` never admits `https://example.com.evil.net` or
//! `https://evilexample.com`, as a substring rule would.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use regex::Regex;

use super::ResponseBody;
use crate::config::CorsPluginConfig;

/// The product's default methods, headers and max age for the CORS flag.
const DEFAULT_METHODS: &str = "GET,POST,PUT,DELETE,HEAD,OPTIONS,PATCH";
const DEFAULT_HEADERS: &str = "X-Api-ID,X-Service-RateLimit,X-UsagePlan-RateLimit,X-UsagePlan-Quota,Cache-Control,Connection,Content-Disposition,Date,Keep-Alive,Pragma,Via,Accept,Accept-Charset,Accept-Encoding,Accept-Language,Authorization,Cookie,Expect,From,Host,If-Match,If-Modified-Since,If-None-Match,If-Range,If-Unmodified-Since,Range,Origin,Referer,User-Agent,X-Forwarded-For,X-Forwarded-Host,X-Forwarded-Proto,Accept-Range,Age,Content-Range,Content-Security-Policy,ETag,Expires,Last-Modified,Location,Server,Set-Cookie,Trailer,Transfer-Encoding,Vary,Allow,Content-Encoding,Content-Language,Content-Length,Content-Location,Content-Type";
const DEFAULT_MAX_AGE: &str = "86400";

/// One allowed-origin entry of the plugin.
#[derive(Debug)]
pub enum OriginRule {
    Any,
    Exact(String),
    Pattern(Regex),
}

impl OriginRule {
    /// Parses `*`, an origin, or a regex anchored at both ends.
    pub fn parse(text: &str) -> Result<OriginRule, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(OriginRule::Any);
        }
        if text.starts_with('^') {
            if !text.ends_with('$') {
                return Err(format!(
                    "the origin pattern `{text}` must end with `$`, so it matches whole origins"
                ));
            }
            return Regex::new(text)
                .map(OriginRule::Pattern)
                .map_err(|error| format!("`{text}` is not a valid regex: {error}"));
        }
        normalize_origin(text)
            .map(OriginRule::Exact)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not an origin: write `scheme://host[:port]` without a path, `*`, \
                 or a regex such as `^https://[a-z]+\\.example\\.com$`"
                )
            })
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(allowed) => allowed == origin,
            OriginRule::Pattern(pattern) => pattern.is_match(origin),
        }
    }
}

/// Returns `scheme://host[:port]` in lower case without the scheme's default port, or `None`
/// for text that is not an origin.
pub fn normalize_origin(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    let authority = match default_port {
        Some(port) => rest.strip_suffix(port).unwrap_or(&rest).to_string(),
        None => rest,
    };
    Some(format!("{scheme}://{authority}"))
}

/// The CORS response headers of one API.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<OriginRule>,
    methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
    /// The response names the request's origin, so caches must key on it.
    varies: bool,
    /// A plugin with no origin cannot be applied: 481 `Found no valid cors config.`.
    pub usable: bool,
}

impl CorsPolicy {
    /// Returns the policy of the CORS flag, with the product's defaults.
    pub fn product_default() -> CorsPolicy {
        CorsPolicy {
            origins: vec![OriginRule::Any],
            methods: HeaderValue::from_static(DEFAULT_METHODS),
            allow_headers: Some(HeaderValue::from_static(DEFAULT_HEADERS)),
            expose_headers: Some(HeaderValue::from_static(DEFAULT_HEADERS)),
            credentials: true,
            max_age: HeaderValue::from_static(DEFAULT_MAX_AGE),
            varies: false,
            usable: true,
        }
    }

    /// Builds the policy of a CORS plugin. Entries that do not parse were reported at load.
    pub fn from_plugin(config: &CorsPluginConfig) -> CorsPolicy {
        let origins: Vec<OriginRule> = config
            .allow_origin
            .iter()
            .filter_map(|origin| OriginRule::parse(origin).ok())
            .collect();
        let any = origins.iter().any(|rule| matches!(rule, OriginRule::Any));
        let join = |items: &[String]| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(",")).ok())
                .flatten()
        };
        CorsPolicy {
            usable: !origins.is_empty(),
            varies: !any || config.allow_credentials,
            origins,
            methods: join(&config.allow_methods).unwrap_or(HeaderValue::from_static("")),
            allow_headers: join(&config.allow_headers),
            expose_headers: join(&config.expose_headers),
            credentials: config.allow_credentials,
            max_age: HeaderValue::from(config.max_age),
        }
    }

    /// Returns the `Access-Control-Allow-Origin` value for a request's origin, or `None` when
    /// the origin is not allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        let normalized = normalize_origin(text)?;
        let rule = self.origins.iter().find(|rule| rule.matches(&normalized))?;
        match rule {
            // The plugin with credentials names the origin: browsers refuse `*` with them.
            OriginRule::Any if !self.varies => Some(HeaderValue::from_static("*")),
            _ => Some(origin.clone()),
        }
    }

    /// Adds the CORS headers of a normal (not preflight) response.
    pub fn add_headers(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if self.varies {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let Some(allowed) = origin.and_then(|origin| self.allow_origin(origin)) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }

    /// Returns the 204 response to a preflight. An origin that is not allowed gets no
    /// `Access-Control-Allow-Origin`, so the browser stops there.
    pub fn preflight(&self, origin: &HeaderValue) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        if self.varies {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(allowed) = self.allow_origin(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
            if let Some(allow_headers) = &self.allow_headers {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers.clone());
            }
            if self.credentials {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        response
    }
}

/// Returns the method a preflight requests, when the request is one: OPTIONS with `Origin` and
/// `Access-Control-Request-Method`.
pub fn preflight_method(parts: &Parts) -> Option<Method> {
    if parts.method != Method::OPTIONS || !parts.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let requested = parts.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(requested.as_bytes()).ok()
}

/// Returns the request's `Origin` when it names another origin than the request's own.
pub fn cross_origin<'p>(parts: &'p Parts, scheme: &str) -> Option<&'p HeaderValue> {
    let origin = parts.headers.get(header::ORIGIN)?;
    let own_authority = parts
        .uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
        });
    let own =
        own_authority.and_then(|authority| normalize_origin(&format!("{scheme}://{authority}")));
    let theirs = origin.to_str().ok().and_then(normalize_origin);
    match (own, theirs) {
        (Some(own), Some(theirs)) if own == theirs => None,
        _ => Some(origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize() {
        assert_eq!(
            normalize_origin("HTTPS://Example.COM:443").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            normalize_origin("http://a.example:8080").as_deref(),
            Some("http://a.example:8080")
        );
        assert_eq!(normalize_origin("https://example.com/path"), None);
        assert_eq!(normalize_origin("example.com"), None);
    }

    #[test]
    fn look_alike_origins_do_not_match() {
        let rule = OriginRule::parse("https://example.com").unwrap();
        for origin in [
            "https://example.com.evil.net",
            "https://evilexample.com",
            "http://example.com",
        ] {
            assert!(
                !rule.matches(&normalize_origin(origin).unwrap()),
                "{origin}"
            );
        }
        assert!(rule.matches("https://example.com"));
        let pattern = OriginRule::parse(r"^https://[a-z]+\.example\.com$").unwrap();
        assert!(pattern.matches("https://shop.example.com"));
        assert!(!pattern.matches("https://shop.example.com.evil.net"));
        assert!(OriginRule::parse("^https://x").is_err());
    }
}
