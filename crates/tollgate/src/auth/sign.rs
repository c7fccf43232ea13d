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
    fn http_date_format() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_444_348_800);
        assert_eq!(http_date(time), "Fri, 09 Oct 2015 00:00:00 GMT");
    }
}
