//! The request's way through the gateway, in a fixed order:
//!
//! 1. Host to service: 404 `Not Found Host.`, `Get Host Fail.`, `There is no api match host[..].`
//! 2. Environment, from the first path segment or a custom path mapping: 404 env_mapping errors.
//! 3. Scheme against the service's or custom domain's protocol: 426. Before it, a plain HTTP
//!    request to a custom domain with `force_https` gets a 308 to the same URL over HTTPS.
//! 4. Method the gateway can serve at all: 404 `Could not support method.`
//! 5. API by path, then method: 404 `There is no api match uri[..] host [..]`, 405.
//! 6. Key-pair signature on `SECRET` APIs (401), then the usage plan that binds the key here
//!    (403 `Found no validate usage plan.`, 401 `HMAC apikey is invalid for API.`). A signed
//!    request to an API without auth is identified the same way, without refusals.
//! 7. Declared parameters: 403 when a required one is missing; defaults filled in.
//! 8. Body size: 413 when `Content-Length` is over the limit (streamed bodies are cut off too).
//! 9. Body digest, on APIs that require one: the body is read whole and checked (401).
//! 10. The microservice a microservice API's request names (481, 404).
//! 11. Throttling of the service and the API in this environment, then the key's plan rate
//!     and quota (429). These run last among the checks, so a request refused earlier never
//!     uses up a rate window or quota.
//! 12. Backend: mock, HTTP, or an upstream's or microservice's node (481, 502, 504).
//!
//! Every response gets `X-Api-RequestId` and `X-Api-ID` (`-` when no API matched).

mod access;
mod body;
mod client_ip;
pub mod cors;
mod params;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body::Body;

pub use body::{BoxError, ResponseBody};

use http_body_util::{BodyExt, Full};

use crate::access_log::LogRecord;
use crate::auth;
use crate::backend::guard::AddressGuard;
use crate::backend::http::{Failure, Outgoing};
use crate::backend::{mock, HttpClient};
use crate::balance::Balancer;
use crate::clock::Clock;
use crate::config::{BackendPoolConfig, Scheme};
use crate::counters::Counters;
use crate::discovery::Registry;
use crate::error::GatewayError;
use crate::route::{normalize_path, request_host, resolve_environment, RouteError};
use crate::snapshot::{Api, Backend, Location, MicroserviceBackend, PublishedApi, Snapshot};

static X_API_REQUEST_ID: HeaderName = HeaderName::from_static("x-api-requestid");
static X_API_ID: HeaderName = HeaderName::from_static("x-api-id");

/// Methods the gateway serves; others get 404 `Could not support method.`
const SUPPORTED_METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::PATCH,
    Method::OPTIONS,
];

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address; `None` on a Unix socket.
    pub peer: Option<SocketAddr>,
    /// The peer's IP address as a header value, made once per connection.
    pub peer_ip: Option<HeaderValue>,
    pub scheme: Scheme,
}

impl ConnectionInfo {
    pub fn new(peer: SocketAddr, scheme: Scheme) -> ConnectionInfo {
        // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`, so backends get `a.b.c.d`.
        let peer_ip = HeaderValue::try_from(peer.ip().to_canonical().to_string())
            .expect("an IP address is a valid header value");
        ConnectionInfo {
            peer: Some(peer),
            peer_ip: Some(peer_ip),
            scheme,
        }
    }

    /// Returns the information of a Unix socket connection, whose peer has no IP address.
    pub fn unix() -> ConnectionInfo {
        ConnectionInfo {
            peer: None,
            peer_ip: None,
            scheme: Scheme::Http,
        }
    }
}

/// The gateway: the current configuration snapshot, the backend client and the counters.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    client: Arc<HttpClient>,
    registry: Arc<Registry>,
    relays: websocket::Relays,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
}

/// The state one request collects on its way, for the response and the log line.
struct RequestState {
    record: Box<LogRecord>,
    request_id: HeaderValue,
    api_id: Option<HeaderValue>,
    /// Rate-limit and quota headers for the response.
    limit_headers: Vec<(HeaderName, HeaderValue)>,
    /// The API's CORS policy and the request's cross-origin `Origin`.
    cors: Option<(Arc<cors::CorsPolicy>, Option<HeaderValue>)>,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        pool: &BackendPoolConfig,
        guard: AddressGuard,
        counters: Arc<Counters>,
        clock: Arc<dyn Clock>,
        registry: Arc<Registry>,
    ) -> Gateway {
        Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            client: Arc::new(HttpClient::new(pool, guard)),
            registry,
            relays: websocket::Relays::default(),
            counters,
            clock,
        }
    }

    /// Replaces the configuration; requests in flight finish on the one they started with.
    /// Nodes keep their health across the swap, and the active health checks of the old
    /// configuration stop as those of the new one start.
    pub fn swap(&self, snapshot: Snapshot) {
        snapshot.inherit_health(&self.snapshot.load());
        self.start_health_checks(&snapshot);
        let old = self.snapshot.swap(Arc::new(snapshot));
        for balancer in &old.balancers {
            balancer.retire();
        }
    }

    /// Starts the active health checks of a snapshot's upstreams and microservices.
    pub fn start_health_checks(&self, snapshot: &Snapshot) {
        for balancer in &snapshot.balancers {
            crate::balance::health::spawn_active_checks(
                balancer,
                self.client.clone(),
                self.registry.clone(),
            );
        }
    }

    /// Returns the registry of microservice instances.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Returns the open WebSocket relays.
    pub fn relays(&self) -> &websocket::Relays {
        &self.relays
    }

    /// Returns the configuration snapshot that new requests use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Serves one request to the end.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        conn: &ConnectionInfo,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let snapshot = self.snapshot.load_full();
        let record = LogRecord::new(
            snapshot.access_log,
            request.method().clone(),
            request.uri().path_and_query().cloned(),
            conn.scheme.as_str(),
            conn.peer,
        );
        let request_id = HeaderValue::from_bytes(record.request_id.as_bytes()).expect("hex digits");
        let mut in_flight = InFlight {
            state: Some(RequestState {
                record: Box::new(record),
                request_id,
                api_id: None,
                limit_headers: Vec::new(),
                cors: None,
            }),
        };
        let state = in_flight.state.as_mut().expect("set above");
        let result = self.serve(&snapshot, request, conn, state).await;

        let RequestState {
            mut record,
            request_id,
            api_id,
            limit_headers,
            cors,
        } = in_flight.state.take().expect("set above");
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                record.error = Some(error.to_string());
                error_response(&error)
            }
        };
        record.status = response.status().as_u16();
        let headers = response.headers_mut();
        headers.insert(X_API_REQUEST_ID.clone(), request_id);
        headers.insert(
            X_API_ID.clone(),
            api_id.unwrap_or(HeaderValue::from_static("-")),
        );
        for (name, value) in limit_headers {
            headers.insert(name, value);
        }
        if let Some((policy, origin)) = cors {
            policy.add_headers(origin.as_ref(), headers);
        }
        response.body_mut().set_log(record);
        response
    }

    async fn serve<B>(
        &self,
        snapshot: &Snapshot,
        request: Request<B>,
        conn: &ConnectionInfo,
        state: &mut RequestState,
    ) -> Result<Response<ResponseBody>, GatewayError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let record = &mut state.record;
        let (mut parts, body) = request.into_parts();
        let host = request_host(&parts)?;
        if record.enabled {
            record.host = host.to_string();
        }
        let (entry, service) = snapshot
            .host(&host)
            .ok_or_else(|| GatewayError::NoApiMatchesHost(host.to_string()))?;
        record.service = Some(service.id.clone());
        if entry.force_https && conn.scheme == Scheme::Http {
            return Ok(https_redirect(&host, snapshot.https_port, &parts.uri));
        }

        let uri = parts.uri.clone();
        let path = normalize_path(uri.path());
        let matched_env = resolve_environment(entry, service, &path)?;
        let environment = matched_env.environment;
        record.environment = Some(environment.name.as_str());

        if !entry.protocol.allows(conn.scheme) {
            return Err(match conn.scheme {
                Scheme::Http => GatewayError::HttpNotAllowed,
                Scheme::Https => GatewayError::HttpsNotAllowed,
            });
        }
        if !SUPPORTED_METHODS.contains(&parts.method) {
            return Err(GatewayError::MethodNotSupported);
        }

        let api_path = matched_env.api_path;
        // A preflight is routed by the method it requests.
        let preflight = cors::preflight_method(&parts);
        let route = environment
            .router
            .find(api_path, preflight.as_ref().unwrap_or(&parts.method))
            .map_err(|error| match error {
                RouteError::NoMatch => GatewayError::NoApiMatchesUri {
                    uri: api_path.to_string(),
                    host: host.to_string(),
                },
                RouteError::MethodNotAllowed => GatewayError::MethodNotAllowed,
            })?;
        let published: &PublishedApi = route.value;
        let api: &Api = &published.api;
        record.api = Some(api.id.clone());
        state.api_id = Some(api.id_header.clone());

        if let Some(origin) = cors::cross_origin(&parts, conn.scheme.as_str()) {
            let policy = match &api.cors {
                None => return Err(GatewayError::CorsNotEnabled(parts.uri.path().to_string())),
                Some(policy) if !policy.usable => return Err(GatewayError::CorsConfig),
                Some(policy) => policy,
            };
            if preflight.is_some() {
                return Ok(policy.preflight(origin));
            }
            state.cors = Some((policy.clone(), Some(origin.clone())));
        } else if let Some(policy) = &api.cors {
            state.cors = Some((policy.clone(), None));
        }

        // The client's address is worked out only where something needs it.
        let client = if api.ip_control.is_some() || !snapshot.trusted_proxies.is_empty() {
            client_ip::client_ip(
                conn.peer.map(|peer| peer.ip()),
                &parts.headers,
                &snapshot.trusted_proxies,
            )
        } else {
            conn.peer.map(|peer| peer.ip().to_canonical())
        };
        if let Some(control) = &api.ip_control {
            client_ip::check(control, client)?;
        }
        let real_ip = if snapshot.trusted_proxies.is_empty() {
            conn.peer_ip.clone()
        } else {
            client.and_then(|ip| HeaderValue::try_from(ip.to_string()).ok())
        };

        let now = self.clock.now();
        let plan = access::identify(snapshot, published, &parts, now)?;
        if let (true, Some(identified)) = (record.enabled, &plan.key) {
            record.secret_id = Some(identified.key.secret_id.clone());
        }

        if let Some(business) = &published.oauth {
            let now = self.clock.unix_second();
            if let Some(redirect) =
                access::authorize_oauth(business, &mut parts, now, &record.request_id)?
            {
                return Ok(redirect);
            }
        }

        let client_upgrade = if api.websocket {
            websocket::check_handshake(&parts.headers)?;
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };

        if let Some(limit) = snapshot.max_body_bytes {
            let declared = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                return Err(GatewayError::BodyTooLarge);
            }
        }
        let digest = plan.key.as_ref().and_then(|key| key.digest.as_deref());
        // Body parameters and digests need the whole body; other bodies stream through.
        let body = if digest.is_some() || api.body_params {
            let bytes = body::read_whole(body, snapshot.max_body_bytes).await?;
            if let Some(digest) = digest {
                if !auth::body_digest_matches(digest, &bytes) {
                    return Err(GatewayError::HmacDigestMismatch);
                }
            }
            OutgoingBody::Whole(bytes)
        } else {
            OutgoingBody::Stream(body)
        };
        let whole_body = match &body {
            OutgoingBody::Whole(bytes) if api.body_params => Some(bytes),
            _ => None,
        };
        let mapped = params::apply(api, &mut parts, &route.captures, whole_body)?;
        let captures: std::borrow::Cow<'_, [(&str, String)]> = if mapped.path_values.is_empty() {
            std::borrow::Cow::Borrowed(&route.captures)
        } else {
            let mut all = route.captures.clone();
            all.extend(
                mapped
                    .path_values
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.clone())),
            );
            std::borrow::Cow::Owned(all)
        };
        let extra_query = mapped.extra_query;

        // The microservice is found before the counting, so a request for one that does
        // not exist uses no rate window or quota.
        let target = match &api.backend {
            Backend::Mock(_) => None,
            Backend::Http(backend) => Some((backend, backend.upstream.as_deref())),
            Backend::Microservice(micro) => {
                let balancer = self.find_microservice(micro, &parts, &captures)?;
                Some((&micro.http, Some(balancer)))
            }
        };

        let second = self.clock.unix_second();
        access::count(
            &self.counters,
            snapshot,
            environment,
            published,
            &plan,
            second,
            &mut state.limit_headers,
        )
        .await?;

        let Some((backend, balancer)) = target else {
            let Backend::Mock(mock) = &api.backend else {
                unreachable!("only mock backends have no target")
            };
            return match mock::respond(mock).await {
                Ok(response) => Ok(response.map(ResponseBody::full)),
                Err((error, cause)) => {
                    tracing::error!(request_id = %record.request_id, api = %api.id, %cause, "mock backend failed");
                    Err(error)
                }
            };
        };
        // One request shape for two body types.
        macro_rules! outgoing {
            ($body:expr) => {
                Outgoing {
                    parts,
                    body: $body,
                    api_path,
                    matched_len: route.matched_len,
                    captures: &captures,
                    extra_query: &extra_query,
                    client_ip: conn.peer_ip.as_ref(),
                    real_ip: real_ip.clone(),
                    upgrade: api.websocket,
                    scheme: conn.scheme,
                    request_id: state.request_id.clone(),
                    timeout: api.timeout,
                    max_body_bytes: snapshot.max_body_bytes,
                }
            };
        }
        let result = match body {
            OutgoingBody::Stream(body) => {
                self.client
                    .forward(backend, balancer, outgoing!(body))
                    .await
            }
            OutgoingBody::Whole(bytes) => {
                let body = Full::new(bytes).map_err(BoxError::from);
                self.client
                    .forward(backend, balancer, outgoing!(body))
                    .await
            }
        };
        match result {
            Ok(answer) => {
                record.upstream_status = Some(answer.response.status().as_u16());
                record.upstream_addr = answer.upstream_addr;
                record.upstream_time = Some(answer.upstream_time);
                if let Some(client_upgrade) = client_upgrade {
                    if answer.response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                        return Ok(websocket::relay(
                            answer.response,
                            client_upgrade,
                            record.request_id,
                            &self.relays,
                        ));
                    }
                }
                Ok(answer.response.map(ResponseBody::backend))
            }
            Err(failure) => {
                let backend_name =
                    balancer.map_or(backend.authority.as_str(), |b| b.label.as_str());
                let error = log_backend_failure(record, api, backend, backend_name, failure);
                // The authorization server of an authorization API failing is an OAuth
                // error, as the product reports it.
                let server_failed = matches!(
                    error,
                    GatewayError::BadGateway | GatewayError::GatewayTimeout
                );
                if api.oauth_provider.is_some() && server_failed {
                    Err(GatewayError::OauthCallAuthServerFailed)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Finds the microservice a request names, with instances to serve it. A name the API
    /// does not list, a value missing from the request, and a microservice without
    /// instances all get 404 `Not found micro service with key.`
    fn find_microservice<'a>(
        &self,
        micro: &'a MicroserviceBackend,
        parts: &http::request::Parts,
        captures: &[(&str, String)],
    ) -> Result<&'a Balancer, GatewayError> {
        let [namespace, name] = micro.locations.as_ref().map_err(Clone::clone)?;
        let read = |location: &Location| -> Result<Option<String>, GatewayError> {
            Ok(match location {
                Location::Header(name) => parts
                    .headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string),
                Location::Query(name) => match parts.uri.query() {
                    Some(query) => params::parse_query(query)?
                        .into_iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value),
                    None => None,
                },
                // Decoded as the query's values are, so `cou%70on` names `coupon` in both.
                Location::Path(name) => captures
                    .iter()
                    .find(|(key, _)| key == name)
                    .and_then(|(_, value)| params::percent_decode_path(value)),
            })
        };
        let (Some(namespace), Some(name)) = (read(namespace)?, read(name)?) else {
            tracing::debug!("the request does not name a namespace and a microservice");
            return Err(GatewayError::MicroServiceNotFound);
        };
        let Some(balancer) = micro.services.get(&(namespace, name)) else {
            tracing::debug!("the request names a microservice the API does not list");
            return Err(GatewayError::MicroServiceNotFound);
        };
        balancer.sync(&self.registry);
        if balancer.nodes().is_empty() {
            // The API lists it, so this is the registry's state, which an operator can fix.
            if let Some(held_back) = balancer.failure_log.allow() {
                tracing::warn!(
                    balancer = %balancer.label, similar_warnings_held_back = held_back,
                    "the microservice has no instance with a weight in the registry; requests get 404"
                );
            }
            return Err(GatewayError::MicroServiceNotFound);
        }
        Ok(balancer)
    }
}

/// The request body on its way to the backend.
enum OutgoingBody<B> {
    /// Streamed through as it arrives.
    Stream(B),
    /// Read whole first, to check its digest.
    Whole(Bytes),
}

fn log_backend_failure(
    record: &mut LogRecord,
    api: &Api,
    backend: &crate::snapshot::HttpBackend,
    address: &str,
    failure: Failure,
) -> GatewayError {
    record.upstream_time = Some(failure.upstream_time);
    match failure.error {
        GatewayError::BodyTooLarge => tracing::info!(
            request_id = %record.request_id, api = %api.id, backend = address,
            "request body over the limit; backend request cancelled"
        ),
        GatewayError::BadRequestBody => tracing::info!(
            request_id = %record.request_id, api = %api.id, backend = address,
            cause = %failure.cause, "the client's request body failed; backend request cancelled"
        ),
        _ => match backend.failure_log.allow() {
            Some(held_back) => tracing::warn!(
                request_id = %record.request_id, api = %api.id, backend = address,
                cause = %failure.cause, similar_warnings_held_back = held_back,
                "backend request failed: {}", failure.error
            ),
            None => tracing::debug!(
                request_id = %record.request_id, api = %api.id, backend = address,
                cause = %failure.cause, "backend request failed: {}", failure.error
            ),
        },
    }
    failure.error
}

/// Sends a plain HTTP request to the same URL over HTTPS. 308 keeps the method and the body,
/// so a POST is repeated as a POST.
fn https_redirect(host: &str, port: u16, uri: &http::Uri) -> Response<ResponseBody> {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    if let Ok(location) = HeaderValue::try_from(location) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// Renders a catalog error as the product does.
pub fn error_response(error: &GatewayError) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(error.body()));
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Writes the 499 log line if the request is dropped before its response head, because the
/// client closed the connection.
struct InFlight {
    state: Option<RequestState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(RequestState { mut record, .. }) = self.state.take() {
            let error = GatewayError::ClientClosed;
            record.status = error.status().as_u16();
            record.error = Some(error.to_string());
            record.emit();
        }
    }
}
