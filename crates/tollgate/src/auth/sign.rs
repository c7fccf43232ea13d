//! Signing requests for key-pair APIs, as the product's SDK samples do.
//!
//! ```
//! use tollgate::auth::sign::{authorization, http_date};
//! use tollgate::auth::signature::Algorithm;
//!
//! let date = http_date(std::time::SystemTime::now());
//! let header = authorization(
//!     "AKIDexample",
//!     b"my-secret-key-1234",
//!     Algorithm::HmacSha256,
//!     &[("x-date", date.as_str()), ("source", "my-app")],
//! );
//! assert!(header.starts_with(r#"hmac id="AKIDexample", algorithm="hmac-sha256", headers="x-date source""#));
//! ```

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest as _, Sha256};

use super::signature::{push_line, Algorithm};
use super::REQUEST_LINE;

/// Returns the `Authorization` value that signs `signed`, a list of `(name, value)` pairs in
/// signing order. The `request-line` pseudo-header's value is the whole request line, such as
/// `GET /release/x HTTP/1.1`; `@request-target`'s is the path and query.
pub fn authorization(
    secret_id: &str,
    secret_key: &[u8],
    algorithm: Algorithm,
    signed: &[(&str, &str)],
) -> String {
    let mut signing = String::new();
    let mut names = String::new();
    for (name, value) in signed {
        let lower = name.to_ascii_lowercase();
        if lower == REQUEST_LINE {
            if !signing.is_empty() {
                signing.push('\n');
            }
            signing.push_str(value);
        } else {
            push_line(&mut signing, &lower, value);
        }
        if !names.is_empty() {
            names.push(' ');
        }
        names.push_str(&lower);
    }
    let signature = algorithm.sign(secret_key, signing.as_bytes());
    format!(
        r#"hmac id="{secret_id}", algorithm="{}", headers="{names}", signature="{signature}""#,
        algorithm.name()
    )
}

/// A request to sign.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a [u8],
    pub algorithm: Algorithm,
    /// `x-date` (checked against the gateway's clock) or `date` (not checked).
    pub date_header: &'a str,
    pub now: SystemTime,
    /// Further headers to send and sign, in order, such as `Source`.
    pub headers: &'a [(String, String)],
    /// The path and query to sign as `@request-target`, for APIs that ask for it.
    pub request_target: Option<&'a str>,
    /// The body to sign through a `Digest` header, for APIs that ask for it.
    pub body: Option<&'a [u8]>,
}

/// Returns the headers to send, the date first and `Authorization` last, every one of them
/// signed.
pub fn sign_request(request: &SignRequest<'_>) -> Vec<(String, String)> {
    let date_name = if request.date_header.eq_ignore_ascii_case("date") {
        "Date"
    } else {
        "X-Date"
    };
    let mut headers = vec![(date_name.to_string(), http_date(request.now))];
    headers.extend(request.headers.iter().cloned());
    if let Some(body) = request.body {
        headers.push(("Digest".to_string(), body_digest(body)));
    }
    let mut signed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    if let Some(target) = request.request_target {
        signed.push((super::REQUEST_TARGET, target));
    }
    let value = authorization(
        request.secret_id,
        request.secret_key,
        request.algorithm,
        &signed,
    );
    headers.push(("Authorization".to_string(), value));
    headers
}

/// Returns a `curl` command line that sends the signed headers.
pub fn curl_command(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body_file: Option<&str>,
) -> String {
    let mut command = format!("curl -i -X {} {}", shell_quote(method), shell_quote(url));
    for (name, value) in headers {
        command.push_str(" \\\n  -H ");
        command.push_str(&shell_quote(&format!("{name}: {value}")));
    }
    if let Some(file) = body_file {
        command.push_str(" \\\n  --data-binary ");
        command.push_str(&shell_quote(&format!("@{file}")));
    }
    command
}

/// Quotes a word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Formats a time as an HTTP date for `Date` or `X-Date`: `Fri, 09 Oct 2015 00:00:00 GMT`.
pub fn http_date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// Returns the `Digest` header value for a body: `SHA-256=<Base64>`.
pub fn body_digest(body: &[u8]) -> String {
    format!("SHA-256={}", BASE64.encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_header() {
        let header = authorization(
            "AKIDCgOPWjQ6BAxvHtyckhWABJVYSBj548pN",
            b"ZxF2whO0RhuwnVCj5JMMAuqcDcN2oPrC",
            Algorithm::HmacSha1,
            &[
                ("Date", "Fri, 09 Oct 2015 00:00:00 GMT"),
                ("Source", "AndriodApp"),
            ],
        );
        assert_eq!(
            header,
            r#"hmac id="AKIDCgOPWjQ6BAxvHtyckhWABJVYSBj548pN", algorithm="hmac-sha1", headers="date source", signature="zJ1fUmiWSmSZUoqgZi+dGUJvxn0=""#
        );
    }

    #[test]
    fn signed_request_lists_every_header_in_order() {
        let extra = [("Source".to_string(), "app".to_string())];
        let headers = sign_request(&SignRequest {
            secret_id: "AKIDtest1",
            secret_key: b"secret-key-123",
            algorithm: Algorithm::HmacSha256,
            date_header: "x-date",
            now: SystemTime::UNIX_EPOCH,
            headers: &extra,
            request_target: Some("/release/a?b=1"),
            body: Some(b"{}"),
        });
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["X-Date", "Source", "Digest", "Authorization"]);
        assert!(headers[3]
            .1
            .contains(r#"headers="x-date source digest @request-target""#));
    }

    #[test]
    fn curl_quotes_values() {
        let command = curl_command("GET", "http://h/x", &[("A".into(), "it's".into())], None);
        assert_eq!(
            command,
            "curl -i -X 'GET' 'http://h/x' \\\n  -H 'A: it'\\''s'"
        );
    }

    #[test]
    fn http_date_format() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_444_348_800);
        assert_eq!(http_date(time), "Fri, 09 Oct 2015 00:00:00 GMT");
    }
}
