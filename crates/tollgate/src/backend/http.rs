//! Proxying to HTTP backends over pooled keep-alive connections.
//!
//! Toward the backend: hop-by-hop headers are removed, the product's headers are added
//! (`X-Forwarded-For` appended, `X-Real-IP`, `X-Client-Proto`, `X-Client-Proto-Ver`,
//! `X-Api-RequestId`, `x-b3-traceid`, `X-Api-Scheme`), Host is the backend's unless the API
//! is set to send the client's, and the body streams through under the size limit. Back from the
//! backend: hop-by-hop headers are removed and the body streams to the client.
//!
//! A response head later than the API's timeout gives 504 `Gateway Time-out.`; a connection
//! that cannot be made or breaks gives 502 `Bad Gateway.`. Dropping the returned future (the
//! client went away) drops the backend request and closes its connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Method, Request, Response, Uri, Version};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{HttpConnector, HttpInfo};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::guard::{self, AddressGuard, GuardedResolver};
use crate::balance::sticky::Claim;
use crate::balance::{Balancer, Node, Outcome, ProbeTarget};
use crate::config::{BackendPoolConfig, EmptyPathRule, HostHeader, Scheme};
use crate::error::GatewayError;
use crate::pipeline::BoxError;
use crate::snapshot::HttpBackend;

type OutgoingBody = UnsyncBoxBody<Bytes, BoxError>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_CLIENT_PROTO: HeaderName = HeaderName::from_static("x-client-proto");
static X_CLIENT_PROTO_VER: HeaderName = HeaderName::from_static("x-client-proto-ver");
static X_API_REQUEST_ID: HeaderName = HeaderName::from_static("x-api-requestid");
static X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
static X_API_SCHEME: HeaderName = HeaderName::from_static("x-api-scheme");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The shared client for every HTTP backend; it outlives config reloads.
///
/// TODO(perf): hyper-util's pooled client costs about 1.3 µs of CPU per request here (pool
/// checkout, and a task per request to return the connection once the body ends). A pool
/// over `hyper::client::conn::http1` that takes the connection back when `ResponseBody`
/// ends would save most of it; see docs/benchmarks.md.
pub struct HttpClient {
    /// Plain HTTP/1.1 backends, the common case, on a connector without TLS.
    client: Client<HttpConnector<GuardedResolver>, OutgoingBody>,
    /// `https://` and HTTP/2 backends, one client per set of trusted roots and protocol.
    tls_clients: Mutex<HashMap<ClientKey, TlsClient>>,
    pool: BackendPoolConfig,
    guard: AddressGuard,
}

type TlsClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, OutgoingBody>;

/// The settings that make two backends need different clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    ca_file: Option<PathBuf>,
    http2: bool,
}

/// Reads a PEM bundle of certificate authorities.
pub fn load_roots(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|error| format!("cannot read `{}`: {error}", file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| {
            format!(
                "`{}` is not a PEM certificate bundle: {error}",
                file.display()
            )
        })?;
    if roots.is_empty() {
        return Err(format!("`{}` holds no certificate", file.display()));
    }
    Ok(roots)
}

/// Builds a TLS client configuration that trusts the system's certificate authorities, plus
/// the ones in `ca_file`.
pub fn client_tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(file) = ca_file {
        for root in load_roots(file)? {
            roots
                .add(root)
                .map_err(|error| format!("`{}`: {error}", file.display()))?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Returns the system's trusted roots, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system certificate could not be read");
        }
        found.certs
    })
}

/// One request to forward, with what routing found out about it.
pub struct Outgoing<'a, B> {
    pub parts: Parts,
    pub body: B,
    /// The path after the environment, normalized.
    pub api_path: &'a str,
    /// Bytes of `api_path` the frontend pattern consumed.
    pub matched_len: usize,
    pub captures: &'a [(&'a str, String)],
    /// Query parameters to append (defaults of declared parameters), already encoded.
    pub extra_query: &'a str,
    /// The client's IP address.
    /// The socket peer's address, appended to `X-Forwarded-For`; `None` on a Unix socket.
    pub client_ip: Option<&'a HeaderValue>,
    /// The client's address for `X-Real-IP`: the peer, or the address trusted proxies gave.
    pub real_ip: Option<HeaderValue>,
    /// Asks the backend to upgrade the connection to a WebSocket.
    pub upgrade: bool,
    pub scheme: Scheme,
    /// The request id as a header value.
    pub request_id: HeaderValue,
    pub timeout: Duration,
    pub max_body_bytes: Option<u64>,
}

/// A backend's response, with the facts the access log needs.
pub struct Answer {
    pub response: Response<Incoming>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_time: Duration,
}

/// A failed forward: the client's error and the cause for the log.
pub struct Failure {
    pub error: GatewayError,
    pub cause: String,
    pub upstream_time: Duration,
}

fn client_builder(pool: &BackendPoolConfig) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(pool.idle_timeout_secs))
        .pool_max_idle_per_host(pool.max_idle_per_host);
    builder
}

impl HttpClient {
    pub fn new(pool: &BackendPoolConfig, guard: AddressGuard) -> HttpClient {
        let mut connector = HttpConnector::new_with_resolver(GuardedResolver::new(guard.clone()));
        connector.set_nodelay(true);
        connector.set_connect_timeout(pool.connect_timeout_secs.map(Duration::from_secs));
        let client = client_builder(pool).build(connector);
        HttpClient {
            client,
            tls_clients: Mutex::new(HashMap::new()),
            pool: pool.clone(),
            guard,
        }
    }

    /// Returns the client for `https://` or HTTP/2 backends with these settings, made on
    /// first use. The trusted roots are the system's, plus the backend's `ca_file`.
    fn tls_client(&self, key: ClientKey) -> Result<TlsClient, String> {
        let mut clients = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let tls = client_tls_config(key.ca_file.as_deref())?;
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(self.guard.clone()));
        http.set_nodelay(true);
        http.set_connect_timeout(self.pool.connect_timeout_secs.map(Duration::from_secs));
        http.enforce_http(false);
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if key.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let mut client = client_builder(&self.pool);
        client.http2_only(key.http2);
        let client = client.build(connector);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Starts sending a request on the client that suits the backend.
    fn send(
        &self,
        backend: &HttpBackend,
        request: Request<OutgoingBody>,
    ) -> Result<ResponseFuture, Failure> {
        if backend.scheme == http::uri::Scheme::HTTP && !backend.http2 {
            return Ok(self.client.request(request));
        }
        let key = ClientKey {
            ca_file: backend.ca_file.clone(),
            http2: backend.http2,
        };
        let client = self.tls_client(key).map_err(|cause| Failure {
            error: GatewayError::BadGateway,
            cause,
            upstream_time: Duration::ZERO,
        })?;
        Ok(client.request(request))
    }

    /// Sends `outgoing` to `backend`, or to a node of `balancer` when the backend has one,
    /// and waits for the response head.
    pub async fn forward<B>(
        &self,
        backend: &HttpBackend,
        balancer: Option<&Balancer>,
        outgoing: Outgoing<'_, B>,
    ) -> Result<Answer, Failure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let timeout = outgoing.timeout;
        let upgrade = outgoing.upgrade;
        let claim = balancer
            .and_then(|balancer| balancer.sticky.as_ref())
            .map(|sticky| sticky.claim(&outgoing.parts.headers));
        let request = build_request(backend, outgoing).map_err(|cause| Failure {
            error: GatewayError::ApiConfig,
            cause,
            upstream_time: Duration::ZERO,
        })?;
        let started = Instant::now();
        if let Some(balancer) = balancer {
            let exchange = Exchange {
                backend,
                balancer,
                claim,
                started,
                deadline: started + timeout,
                timeout,
                upgrade,
            };
            return self.forward_balanced(exchange, request).await;
        }
        if backend.literal_ip.is_some_and(|ip| !self.guard.allows(ip)) {
            return Err(Failure {
                error: GatewayError::EndpointIpNotAllowed,
                cause: format!("{} is in a denied backend range", backend.authority),
                upstream_time: Duration::ZERO,
            });
        }
        let pending = self.send(backend, request)?;
        match tokio::time::timeout(timeout, pending).await {
            Err(_) => Err(timed_out(timeout, started)),
            Ok(Err(error)) => Err(failed(&error, started)),
            Ok(Ok(response)) => Ok(answer(response, upgrade, started)),
        }
    }

    /// Sends a request to a balancer's nodes: the sticky node or the round robin's next, and
    /// another one after a failure while retries last and the request can be sent again.
    async fn forward_balanced(
        &self,
        exchange: Exchange<'_>,
        mut request: Request<OutgoingBody>,
    ) -> Result<Answer, Failure> {
        let Exchange {
            backend,
            balancer,
            claim,
            started,
            deadline,
            timeout,
            upgrade,
        } = exchange;
        // A request can go to a second node if its body is kept: no body, or a small one
        // read whole first.
        let mut replay: Option<Bytes> = None;
        if request.body().is_end_stream() {
            replay = Some(Bytes::new());
        } else if balancer.retries > 0
            && request
                .body()
                .size_hint()
                .exact()
                .is_some_and(|length| length <= RESEND_BODY_LIMIT)
        {
            let (parts, body) = request.into_parts();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let bytes = match tokio::time::timeout(remaining, body.collect()).await {
                Err(_) => {
                    return Err(Failure {
                        error: GatewayError::GatewayTimeout,
                        cause: format!(
                            "the client's body did not arrive within {} s; no node was called",
                            timeout.as_secs()
                        ),
                        upstream_time: started.elapsed(),
                    })
                }
                Ok(Err(error)) => return Err(body_failed(&*error, started)),
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            request = Request::from_parts(parts, full_body(bytes.clone()));
            replay = Some(bytes);
        }
        let idempotent = is_idempotent(request.method());

        let set = balancer.nodes();
        let sticky = balancer.sticky.as_ref();
        let preferred = match (sticky, &claim) {
            (Some(sticky), Some(claim)) => sticky
                .token(claim, Instant::now())
                .and_then(|token| set.nodes.iter().position(|node| node.token == token)),
            _ => None,
        };
        let mut tried: Vec<usize> = Vec::new();
        // The last node skipped because its address is in a denied range.
        let mut denied: Option<Authority> = None;
        // Nodes the request was sent to; skipped nodes do not use up the retries.
        let mut attempts = 0;
        // The cause of the last node's failure, for the log when none is left.
        let mut last_failure: Option<String> = None;
        loop {
            let Some(index) = set.pick(&tried, preferred, balancer, Instant::now()) else {
                // 403 only when no node was reached at all; otherwise the nodes' failure.
                if let Some(authority) = denied.filter(|_| attempts == 0) {
                    return Err(Failure {
                        error: GatewayError::EndpointIpNotAllowed,
                        cause: format!("{authority} is in a denied backend range"),
                        upstream_time: Duration::ZERO,
                    });
                }
                let cause = match &last_failure {
                    _ if tried.is_empty() => format!("every node of {} is out", balancer.label),
                    Some(last) => format!(
                        "no node of {} is left to try; the last one failed: {last}",
                        balancer.label
                    ),
                    None => format!("no node of {} is left to try", balancer.label),
                };
                return Err(Failure {
                    error: GatewayError::BadGateway,
                    cause,
                    upstream_time: started.elapsed(),
                });
            };
            tried.push(index);
            let node = &set.nodes[index];
            if node.literal_ip.is_some_and(|ip| !self.guard.allows(ip)) {
                // Nothing was sent, so the next node gets the request as it is.
                denied = Some(node.authority.clone());
                continue;
            }
            retarget(&mut request, backend, node);
            attempts += 1;
            // A node given by name may resolve only to denied addresses, which sends nothing,
            // so its request is kept even when the retries are used up.
            // Without another node to try, nothing is kept.
            let keep = tried.len() < set.nodes.len()
                && (attempts <= balancer.retries || node.literal_ip.is_none());
            let retry = match &replay {
                Some(body) if keep => Some(copy_request(&request, body.clone())),
                _ => None,
            };
            let pending = self.send(backend, request)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(remaining, pending).await;
            let now = Instant::now();
            let error = match result {
                Err(_) => {
                    // A streamed body may still have been arriving from a slow client, so
                    // only a timeout after a kept (fully read) body is the node's.
                    if replay.is_some() {
                        balancer.report(node, Outcome::Timeout, now);
                    }
                    return Err(timed_out(timeout, started));
                }
                Ok(Ok(response)) => {
                    balancer.report(node, Outcome::Status(response.status().as_u16()), now);
                    let mut answer = answer(response, upgrade, started);
                    if let (Some(sticky), Some(claim)) = (sticky, &claim) {
                        if let Some(cookie) = sticky.bind(claim, &node.token, now) {
                            answer
                                .response
                                .headers_mut()
                                .append(header::SET_COOKIE, cookie);
                        }
                    }
                    return Ok(answer);
                }
                Ok(Err(error)) => error,
            };
            let failure = failed(&error, started);
            if matches!(failure.error, GatewayError::EndpointIpNotAllowed) {
                // The node's name resolved only to denied addresses, so nothing was sent.
                let Some(copy) = retry else {
                    return Err(failure);
                };
                denied = Some(node.authority.clone());
                attempts -= 1;
                request = copy;
                continue;
            }
            if !matches!(failure.error, GatewayError::BadGateway) {
                // The client's body or the address guard failed, not the node.
                return Err(failure);
            }
            balancer.report(node, Outcome::Connect, now);
            // Past the connection, the backend may have acted on the request: only an
            // idempotent one is sent again.
            match retry {
                Some(copy)
                    if attempts <= balancer.retries && (error.is_connect() || idempotent) =>
                {
                    match balancer.failure_log.allow() {
                        Some(held_back) => tracing::warn!(
                            balancer = %balancer.label, node = %node.authority,
                            cause = %failure.cause, similar_warnings_held_back = held_back,
                            "node failed; trying another"
                        ),
                        None => tracing::debug!(
                            balancer = %balancer.label, node = %node.authority,
                            cause = %failure.cause, "node failed; trying another"
                        ),
                    }
                    last_failure = Some(format!("{}: {}", node.authority, failure.cause));
                    request = copy;
                }
                _ => {
                    return Err(Failure {
                        cause: format!("{}: {}", node.authority, failure.cause),
                        ..failure
                    })
                }
            }
        }
    }

    /// Sends an active health check to a node and reports what came back.
    pub async fn probe(
        &self,
        target: &ProbeTarget,
        node: &Node,
        path: &str,
        timeout: Duration,
    ) -> Outcome {
        if node.literal_ip.is_some_and(|ip| !self.guard.allows(ip)) {
            return Outcome::Connect;
        }
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(node.authority.clone())
            .path_and_query(path)
            .build();
        let Ok(uri) = uri else {
            return Outcome::Connect;
        };
        let mut request = Request::new(full_body(Bytes::new()));
        *request.uri_mut() = uri;
        if target.http2 {
            *request.version_mut() = Version::HTTP_2;
        }
        let headers = request.headers_mut();
        headers.insert(header::HOST, node.host_value.clone());
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("tollgate-health-check"),
        );
        let pending = if target.scheme == http::uri::Scheme::HTTP && !target.http2 {
            self.client.request(request)
        } else {
            let key = ClientKey {
                ca_file: target.ca_file.clone(),
                http2: target.http2,
            };
            match self.tls_client(key) {
                Ok(client) => client.request(request),
                Err(_) => return Outcome::Connect,
            }
        };
        match tokio::time::timeout(timeout, pending).await {
            Err(_) => Outcome::Timeout,
            Ok(Err(_)) => Outcome::Connect,
            Ok(Ok(response)) => Outcome::Status(response.status().as_u16()),
        }
    }
}

/// Bodies up to this size are kept, so a request can be sent to another node.
const RESEND_BODY_LIMIT: u64 = 64 * 1024;

/// One request to a balancer's nodes.
struct Exchange<'a> {
    backend: &'a HttpBackend,
    balancer: &'a Balancer,
    claim: Option<Claim>,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    upgrade: bool,
}

/// Methods that can be sent twice with the effect of once (RFC 9110 section 9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

fn full_body(bytes: Bytes) -> OutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn timed_out(timeout: Duration, started: Instant) -> Failure {
    Failure {
        error: GatewayError::GatewayTimeout,
        cause: format!("no response head within {} s", timeout.as_secs()),
        upstream_time: started.elapsed(),
    }
}

/// Maps a failed backend exchange to the client's error.
fn failed(error: &hyper_util::client::legacy::Error, started: Instant) -> Failure {
    let gateway_error = if is_length_limit(error) {
        GatewayError::BodyTooLarge
    } else if guard::is_denied(error) {
        GatewayError::EndpointIpNotAllowed
    } else if is_request_body_error(error) {
        GatewayError::BadRequestBody
    } else {
        GatewayError::BadGateway
    };
    Failure {
        error: gateway_error,
        cause: describe(error),
        upstream_time: started.elapsed(),
    }
}

/// Maps a failure to read the client's body to the client's error.
fn body_failed(
    error: &(dyn std::error::Error + Send + Sync + 'static),
    started: Instant,
) -> Failure {
    let error: &(dyn std::error::Error + 'static) = error;
    Failure {
        error: if is_length_limit(error) {
            GatewayError::BodyTooLarge
        } else {
            GatewayError::BadRequestBody
        },
        cause: describe(error),
        upstream_time: started.elapsed(),
    }
}

fn answer(mut response: Response<Incoming>, upgrade: bool, started: Instant) -> Answer {
    let upstream_addr = response
        .extensions()
        .get::<HttpInfo>()
        .map(HttpInfo::remote_addr);
    // A 101 keeps its `Upgrade` and `Connection`: they are the handshake's response.
    if !(upgrade && response.status() == http::StatusCode::SWITCHING_PROTOCOLS) {
        remove_hop_by_hop(response.headers_mut());
    }
    Answer {
        response,
        upstream_addr,
        upstream_time: started.elapsed(),
    }
}

/// Points a request at a node: its authority, and its Host unless the client's is
/// forwarded.
fn retarget(request: &mut Request<OutgoingBody>, backend: &HttpBackend, node: &Node) {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.authority = Some(node.authority.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    if backend.host_header == HostHeader::Backend {
        request
            .headers_mut()
            .insert(header::HOST, node.host_value.clone());
    }
}

/// Copies a request with a kept body, to send it again.
fn copy_request(request: &Request<OutgoingBody>, body: Bytes) -> Request<OutgoingBody> {
    let mut copy = Request::new(full_body(body));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Builds the backend request, or explains why its URL cannot be formed.
fn build_request<B>(
    backend: &HttpBackend,
    outgoing: Outgoing<'_, B>,
) -> Result<Request<OutgoingBody>, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Outgoing {
        mut parts,
        body,
        api_path,
        matched_len,
        captures,
        extra_query,
        client_ip,
        real_ip,
        scheme,
        request_id,
        max_body_bytes,
        upgrade,
        ..
    } = outgoing;

    let mut path_and_query = backend_path(backend, api_path, matched_len, captures);
    let query = parts.uri.query().unwrap_or("");
    if !query.is_empty() || !extra_query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(query);
        if !query.is_empty() && !extra_query.is_empty() {
            path_and_query.push('&');
        }
        path_and_query.push_str(extra_query);
    }
    let uri = match Uri::builder()
        .scheme(backend.scheme.clone())
        .authority(backend.authority.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(error) => {
            return Err(format!(
                "the backend path and query are not a valid URL: {error}"
            ))
        }
    };

    let headers = &mut parts.headers;
    // HTTP/2 clients give the host in `:authority` instead of `Host`.
    let client_host = headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    remove_hop_by_hop(headers);
    add_forwarding_headers(
        headers,
        client_ip,
        real_ip,
        scheme,
        parts.version,
        request_id,
    );
    let host = match (backend.host_header, client_host) {
        (HostHeader::Client, Some(host)) => host,
        _ => backend.host_value.clone(),
    };
    headers.insert(header::HOST, host);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    } else if !backend.http2 {
        // HTTP/2 has no connection headers.
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    for (name, value) in &backend.headers {
        headers.insert(name.clone(), value.clone());
    }

    let body: OutgoingBody = if body.is_end_stream() {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    } else {
        match max_body_bytes {
            Some(limit) => Limited::new(body, limit as usize)
                .map_err(Into::into)
                .boxed_unsync(),
            None => body.map_err(Into::into).boxed_unsync(),
        }
    };

    parts.uri = uri;
    parts.version = if backend.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    if let Some(method) = &backend.method {
        parts.method = method.clone();
    }
    Ok(Request::from_parts(parts, body))
}

/// Computes the backend path. With a backend path, the remainder after the matched frontend
/// prefix is appended to it (`/product/` + `/tencent/` on `/product/a/b` gives `/tencent/a/b`);
/// without one, [`EmptyPathRule`] decides.
pub fn backend_path(
    backend: &HttpBackend,
    api_path: &str,
    matched_len: usize,
    captures: &[(&str, String)],
) -> String {
    let remainder = api_path.get(matched_len..).unwrap_or("");
    let mut path = String::with_capacity(api_path.len() + 16);
    if backend.path.is_empty() {
        match backend.empty_path {
            EmptyPathRule::StripPrefix => path.push_str(remainder),
            EmptyPathRule::KeepFullPath => path.push_str(api_path),
        }
    } else {
        backend.path.render(captures, &mut path);
        if path.ends_with('/') && remainder.starts_with('/') {
            path.pop();
        }
        path.push_str(remainder);
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    path
}

fn add_forwarding_headers(
    headers: &mut HeaderMap,
    client_ip: Option<&HeaderValue>,
    real_ip: Option<HeaderValue>,
    scheme: Scheme,
    version: Version,
    request_id: HeaderValue,
) {
    let forwarded_for = match (forwarded_for_chain(headers), client_ip) {
        (Some(mut chain), Some(client_ip)) => {
            chain.push_str(", ");
            chain.push_str(client_ip.to_str().unwrap_or_default());
            HeaderValue::try_from(chain).ok()
        }
        (None, Some(client_ip)) => Some(client_ip.clone()),
        // A Unix socket peer has no address to add; the chain goes on as sent.
        (chain, None) => chain.and_then(|chain| HeaderValue::try_from(chain).ok()),
    };
    let scheme_value = HeaderValue::from_static(scheme.as_str());
    let version_value = HeaderValue::from_static(match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    });
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    match real_ip {
        Some(real_ip) => {
            headers.insert(X_REAL_IP.clone(), real_ip);
        }
        None => {
            headers.remove(&X_REAL_IP);
        }
    }
    headers.insert(X_CLIENT_PROTO.clone(), scheme_value.clone());
    headers.insert(X_CLIENT_PROTO_VER.clone(), version_value);
    headers.insert(X_API_REQUEST_ID.clone(), request_id.clone());
    headers.insert(X_B3_TRACEID.clone(), request_id);
    headers.insert(X_API_SCHEME.clone(), scheme_value);
}

/// Joins every `X-Forwarded-For` value the client sent, in order.
fn forwarded_for_chain(headers: &HeaderMap) -> Option<String> {
    let mut chain: Option<String> = None;
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else { continue };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match &mut chain {
            Some(chain) => {
                chain.push_str(", ");
                chain.push_str(text);
            }
            None => chain = Some(text.to_string()),
        }
    }
    chain
}

/// The connection-specific headers of RFC 9110 section 7.6.1, with the `Keep-Alive`,
/// `Proxy-Connection` and proxy authentication headers that RFC 2616 proxies also drop.
/// `Trailer` is end to end and passes through.
static HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Removes the hop-by-hop headers, and the headers that `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these headers, and
    // comparing names is cheaper than nine hashed removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Returns true when the client's request body failed while it was sent on, such as a
/// malformed chunk or a connection closed before the declared length: the client's fault,
/// not the backend's.
fn is_request_body_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Renders an error with its causes, for logs.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::PathTemplate;

    fn backend(path: &str, empty_path: EmptyPathRule) -> HttpBackend {
        HttpBackend {
            scheme: http::uri::Scheme::HTTP,
            authority: "127.0.0.1:1".parse().unwrap(),
            host_value: HeaderValue::from_static("127.0.0.1:1"),
            host_header: HostHeader::Backend,
            path: PathTemplate::parse(path).unwrap(),
            empty_path,
            method: None,
            headers: Vec::new(),
            ca_file: None,
            http2: false,
            literal_ip: None,
            upstream: None,
            failure_log: crate::log_throttle::LogThrottle::new(Duration::from_secs(1)),
        }
    }

    #[test]
    fn backend_path_follows_the_documented_examples() {
        // Frontend `/product/` and request `/product/apigw/document`.
        let api_path = "/product/apigw/document";
        let matched = "/product/".len();
        let strip = backend("", EmptyPathRule::StripPrefix);
        assert_eq!(
            backend_path(&strip, api_path, matched, &[]),
            "/apigw/document"
        );
        let tencent = backend("/tencent/", EmptyPathRule::StripPrefix);
        assert_eq!(
            backend_path(&tencent, api_path, matched, &[]),
            "/tencent/apigw/document"
        );
        // The older rule: frontend `/apia/`, request `/apia/20171012/index.html`.
        let old_path = "/apia/20171012/index.html";
        let keep = backend("", EmptyPathRule::KeepFullPath);
        assert_eq!(backend_path(&keep, old_path, 6, &[]), old_path);
        let endpoint = backend("/endpoint/", EmptyPathRule::KeepFullPath);
        assert_eq!(
            backend_path(&endpoint, old_path, 6, &[]),
            "/endpoint/20171012/index.html"
        );
    }

    #[test]
    fn backend_path_joins_without_double_slash() {
        let svc = backend("/svc/", EmptyPathRule::StripPrefix);
        assert_eq!(backend_path(&svc, "/user/a", 5, &[]), "/svc/a");
        let exact = backend("", EmptyPathRule::StripPrefix);
        assert_eq!(backend_path(&exact, "/user", 5, &[]), "/");
    }

    #[test]
    fn backend_path_fills_variables() {
        let pets = backend("/pets/{id}", EmptyPathRule::StripPrefix);
        let captures = [("id", "42".to_string())];
        assert_eq!(backend_path(&pets, "/p/42", 5, &captures), "/pets/42");
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
