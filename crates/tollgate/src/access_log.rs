//! One access-log line per request, through `tracing` (target `tollgate::access`, level info).
//!
//! The fields are the product's log fields: service, environment, API, URI, scheme, status,
//! the secret id of a verified key-pair signature,
//! backend status (`ups_status`, absent when the gateway responded itself), client and backend
//! addresses, request and backend times, bytes sent, the error message and the request id.
//! The line is written when the response body ends or the client goes away, so `status` and
//! `bytes_sent` are what the client really got; a client that leaves before the response
//! head is logged with status 499 and `Client closed connetion.`.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::Method;

/// A request id: 32 lower-case hex digits, as the product's `X-Api-RequestId`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

impl RequestId {
    /// Makes a new random id.
    pub fn random() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value: u128 = rand::random();
        let mut digits = [0u8; 32];
        for digit in digits.iter_mut().rev() {
            *digit = HEX[(value & 0xf) as usize];
            value >>= 4;
        }
        RequestId(digits)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// The facts gathered about one request, written out once by [`LogRecord::emit`].
#[derive(Debug)]
pub struct LogRecord {
    pub enabled: bool,
    pub request_id: RequestId,
    pub start: Instant,
    pub method: Method,
    /// Path and query as the client sent them.
    pub uri: Option<PathAndQuery>,
    /// Filled in only when the line is enabled.
    pub host: String,
    pub scheme: &'static str,
    /// The socket peer; `None` on a Unix socket, logged as `unix`.
    pub client: Option<SocketAddr>,
    pub service: Option<String>,
    pub environment: Option<&'static str>,
    pub api: Option<String>,
    /// The secret id of a verified key-pair signature.
    pub secret_id: Option<String>,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_time: Option<Duration>,
    pub error: Option<String>,
    pub bytes_sent: u64,
}

impl LogRecord {
    /// Starts the record of a request that has just arrived.
    pub fn new(
        enabled: bool,
        method: Method,
        uri: Option<PathAndQuery>,
        scheme: &'static str,
        client: Option<SocketAddr>,
    ) -> LogRecord {
        LogRecord {
            enabled,
            request_id: RequestId::random(),
            start: Instant::now(),
            method,
            uri,
            host: String::new(),
            scheme,
            client,
            service: None,
            environment: None,
            api: None,
            secret_id: None,
            status: 0,
            upstream_status: None,
            upstream_addr: None,
            upstream_time: None,
            error: None,
            bytes_sent: 0,
        }
    }

    /// Writes the access-log line.
    pub fn emit(&self) {
        if !self.enabled {
            return;
        }
        let request_time = self.start.elapsed();
        tracing::info!(
            target: "tollgate::access",
            request_id = %self.request_id,
            service = self.service.as_deref().unwrap_or("-"),
            environment = self.environment.unwrap_or("-"),
            api = self.api.as_deref().unwrap_or("-"),
            secret_id = self.secret_id.as_deref(),
            method = %self.method,
            host = %self.host,
            uri = self.uri.as_ref().map_or("/", PathAndQuery::as_str),
            scheme = self.scheme,
            status = self.status,
            ups_status = self.upstream_status,
            client = %ClientAddress(self.client),
            upstream = self.upstream_addr.map(tracing::field::display),
            request_time_ms = millis(request_time),
            upstream_time_ms = self.upstream_time.map(millis),
            bytes_sent = self.bytes_sent,
            err_msg = self.error.as_deref(),
            "request"
        );
    }
}

struct ClientAddress(Option<SocketAddr>);

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("unix"),
        }
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_32_lower_hex() {
        let id = RequestId::random();
        assert_eq!(id.as_str().len(), 32);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(RequestId::random(), id);
    }
}
