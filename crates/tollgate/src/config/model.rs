//! The configuration file's types, as written in YAML.
//!
//! Every struct rejects unknown keys, so a misspelt key is an error rather than a silently
//! ignored setting. The JSON Schema in `schema/tollgate.schema.json` is generated from these
//! types (`tollgate schema`), so their doc comments are also what editors show.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default grace period for requests in flight at shutdown, in seconds.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 30;
/// Default maximum size of a request's header block, in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default maximum number of request headers.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default maximum request body size: the product's 16 MB upload limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default time a client has to send its request head, in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default backend timeout, in seconds: the product's console and SDK default.
pub const DEFAULT_BACKEND_TIMEOUT_SECS: u64 = 15;
/// Maximum backend timeout, in seconds: the product's newer limit of 30 minutes.
pub const MAX_BACKEND_TIMEOUT_SECS: u64 = 1800;
/// Default time an idle pooled backend connection is kept, in seconds.
pub const DEFAULT_POOL_IDLE_TIMEOUT_SECS: u64 = 90;
/// Default number of idle connections kept per backend host.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, limits, logging and shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// The services this gateway serves.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// Key pairs that sign requests to key-pair (`SECRET`) APIs.
    #[serde(default)]
    pub key_pairs: Vec<KeyPairConfig>,
    /// Usage plans: the rate limit and quota of the key pairs they hold, and where they apply.
    #[serde(default)]
    pub usage_plans: Vec<UsagePlanConfig>,
    /// Settings of key-pair signature checks.
    #[serde(default)]
    pub key_pair_auth: KeyPairAuthConfig,
    /// The store of rate-limit windows and used quota.
    #[serde(default)]
    pub counters: CountersConfig,
    /// Named groups of backend nodes that HTTP and WebSocket backends can use instead of one
    /// URL.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// The registry in which microservice backends find the instances of their microservices.
    #[serde(default)]
    pub registry: RegistryConfig,
}

/// A named group of backend nodes, balanced by weighted round robin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The id backends name it by.
    pub id: String,
    /// The nodes (at most 200).
    pub nodes: Vec<UpstreamNodeConfig>,
    /// The scheme of active health checks, and of backends that name this upstream without
    /// a `url`.
    #[serde(default)]
    pub scheme: BackendScheme,
    /// How many other nodes a request tries when a node fails: 0 to 100, 3 by default, as
    /// the product's upstreams. Only requests without a body, or with a body of at most
    /// 64 KiB and a `Content-Length`, are sent again: after a refused connection whatever
    /// the method, and after a broken one only for idempotent methods.
    #[serde(default = "default_upstream_retries")]
    pub retries: usize,
    /// Session stickiness: requests of one client go to the same node while it is up.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Passive and active health checks.
    #[serde(default)]
    pub health: HealthConfig,
}

/// Returns the scheme an upstream backend's scheme-only `url` gives: `http://` and `ws://`
/// are plain, `https://` and `wss://` are TLS, and an empty `url` gives none.
pub fn upstream_url_scheme(url: &str) -> Option<BackendScheme> {
    match url {
        "https://" | "wss://" => Some(BackendScheme::Https),
        "http://" | "ws://" => Some(BackendScheme::Http),
        _ => None,
    }
}

/// The scheme of an upstream's or a microservice's nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendScheme {
    #[default]
    Http,
    Https,
}

fn default_upstream_retries() -> usize {
    3
}

/// One node of an upstream, or one instance of a microservice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamNodeConfig {
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// 0 to 100: the node's share of requests. 0 takes the node out.
    #[serde(default = "default_node_weight")]
    pub weight: u32,
}

fn default_node_weight() -> u32 {
    10
}

/// Session stickiness, by a cookie the gateway sets or by a header the client sends.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// The name of a cookie the gateway sets to the node that served the client. Give
    /// `cookie` or `header`, not both.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A request header whose value keys the client, such as a user id or a session header.
    #[serde(default)]
    pub header: Option<String>,
    /// How long a client stays on its node, in seconds: the cookie's `Max-Age`, or the time
    /// since a header value was last seen. 1800 by default.
    #[serde(default = "default_sticky_timeout")]
    pub timeout_secs: u64,
}

fn default_sticky_timeout() -> u64 {
    1800
}

/// Health checks. The names are the product's, and so are the defaults of the path, the
/// interval, the timeout and the unhealthy timeout.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Probes every node with an HTTP GET on a schedule.
    #[serde(default)]
    pub enable_active_check: bool,
    /// Watches real requests: consecutive failures take a node out.
    #[serde(default)]
    pub enable_passive_check: bool,
    /// Statuses an active check counts as healthy; any other status is a failure.
    #[serde(default = "default_healthy_status")]
    pub healthy_http_status: Vec<u16>,
    /// Statuses a real response counts as a failure in passive checks.
    #[serde(default = "default_unhealthy_status")]
    pub unhealthy_http_status: Vec<u16>,
    /// Consecutive failed statuses that take a node out: 0 to 254, 0 never does.
    #[serde(default = "default_http_failures")]
    pub http_failure_threshold: u32,
    /// Consecutive connection failures that take a node out: 0 to 254, 0 never does.
    #[serde(default = "default_tcp_failures")]
    pub tcp_failure_threshold: u32,
    /// Consecutive timeouts that take a node out: 0 to 254, 0 never does.
    #[serde(default = "default_timeouts")]
    pub timeout_threshold: u32,
    /// Consecutive healthy active checks that bring a node back: 1 to 254.
    #[serde(default = "default_healthy_successes")]
    pub healthy_threshold: u32,
    /// The path active checks request.
    #[serde(default = "default_check_path")]
    pub active_check_http_path: String,
    /// Seconds between active checks of a node.
    #[serde(default = "default_check_interval")]
    pub active_check_interval_secs: u64,
    /// Seconds an active check waits for the response head.
    #[serde(default = "default_check_timeout")]
    pub active_check_timeout_secs: u64,
    /// Seconds a node taken out by passive checks stays out before it is tried again.
    #[serde(default = "default_unhealthy_timeout")]
    pub unhealthy_timeout_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            enable_active_check: false,
            enable_passive_check: false,
            healthy_http_status: default_healthy_status(),
            unhealthy_http_status: default_unhealthy_status(),
            http_failure_threshold: default_http_failures(),
            tcp_failure_threshold: default_tcp_failures(),
            timeout_threshold: default_timeouts(),
            healthy_threshold: default_healthy_successes(),
            active_check_http_path: default_check_path(),
            active_check_interval_secs: default_check_interval(),
            active_check_timeout_secs: default_check_timeout(),
            unhealthy_timeout_secs: default_unhealthy_timeout(),
        }
    }
}

fn default_healthy_status() -> Vec<u16> {
    vec![200, 302]
}
fn default_unhealthy_status() -> Vec<u16> {
    vec![500, 502, 503, 504]
}
fn default_http_failures() -> u32 {
    5
}
fn default_tcp_failures() -> u32 {
    2
}
fn default_timeouts() -> u32 {
    3
}
fn default_healthy_successes() -> u32 {
    2
}
fn default_check_path() -> String {
    "/".to_string()
}
fn default_check_interval() -> u64 {
    5
}
fn default_check_timeout() -> u64 {
    5
}
fn default_unhealthy_timeout() -> u64 {
    30
}

/// The registry of microservice instances: listed here (`type: static`, the default), or
/// registered in etcd (`type: etcd`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default, rename = "type")]
    pub kind: RegistryKind,
    /// For `type: static`: the microservices and their instances; a reload applies changes.
    #[serde(default)]
    pub services: Vec<StaticMicroserviceConfig>,
    /// For `type: etcd`: client endpoints, such as `http://127.0.0.1:2379`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// For `type: etcd`: the key prefix instances are registered under, as
    /// `{prefix}{namespace}/{service}/{instance}`; it starts and ends with `/`.
    /// `/tollgate/microservices/` by default.
    #[serde(default)]
    pub prefix: Option<String>,
    /// For `type: etcd`: seconds to wait for a connection to an endpoint, 3 by default.
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    /// For `type: etcd`: user name, when the cluster has authentication on.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretValue>,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            kind: RegistryKind::Static,
            services: Vec::new(),
            endpoints: Vec::new(),
            prefix: None,
            connect_timeout_secs: None,
            username: None,
            password: None,
        }
    }
}

impl RegistryConfig {
    /// Returns the etcd settings of a `type: etcd` registry.
    pub fn etcd(&self) -> Option<EtcdRegistryConfig> {
        (self.kind == RegistryKind::Etcd).then(|| EtcdRegistryConfig {
            endpoints: self.endpoints.clone(),
            prefix: self
                .prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_string()),
            connect_timeout_secs: self
                .connect_timeout_secs
                .unwrap_or(DEFAULT_ETCD_CONNECT_TIMEOUT_SECS),
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

/// The kind of registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    #[default]
    Static,
    Etcd,
}

/// A microservice and its instances, in the static registry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticMicroserviceConfig {
    /// The namespace code callers send in `X-NameSpace-Code`.
    pub namespace: String,
    /// The microservice name callers send in `X-MicroService-Name`.
    pub name: String,
    pub instances: Vec<UpstreamNodeConfig>,
}

/// The etcd settings of a `type: etcd` registry.
#[derive(Debug, Clone)]
pub struct EtcdRegistryConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub connect_timeout_secs: u64,
    pub username: Option<String>,
    pub password: Option<SecretValue>,
}

/// The default etcd key prefix of microservice instances.
pub const DEFAULT_ETCD_PREFIX: &str = "/tollgate/microservices/";

/// The default seconds to wait for a connection to an etcd endpoint.
pub const DEFAULT_ETCD_CONNECT_TIMEOUT_SECS: u64 = 3;

/// Default time an `X-Date` may differ from the gateway's clock, in seconds: the product's 15
/// minutes.
pub const DEFAULT_X_DATE_WINDOW_SECS: u64 = 900;

/// A key pair: the secret id a client sends and the secret key it signs with.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPairConfig {
    /// The public id sent in `Authorization: hmac id="..."`: 5 to 50 letters, digits, `_` or
    /// `-`.
    pub secret_id: String,
    /// The secret key, 10 to 50 letters, digits, `_` or `-`: best read from an environment
    /// variable (`{ env: NAME }`) or a file (`{ file: PATH }`) than written inline.
    pub secret_key: SecretValue,
    /// A disabled key is refused with 401 `HMAC signature cannot be verified.`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A name for people; not used by the gateway.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A usage plan.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsagePlanConfig {
    /// Plan id, for example `usagePlan-8bbr8pup`; counters are kept under it, so renaming a
    /// plan starts its counts from zero.
    pub id: String,
    /// A name for people; not used by the gateway.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests per second each key of the plan may make: -1 (the default) for no limit, or 1
    /// to 2000.
    #[serde(default = "unlimited")]
    pub requests_per_second: i64,
    /// Total requests each key of the plan may make: -1 (the default) for no limit, or 1 to
    /// 99999999. The quota does not reset.
    #[serde(default = "unlimited")]
    pub quota: i64,
    /// Secret ids of the key pairs in the plan.
    #[serde(default)]
    pub key_pairs: Vec<String>,
    /// The places the plan applies to: whole service environments, or chosen APIs in one.
    #[serde(default)]
    pub bindings: Vec<PlanBindingConfig>,
}

fn unlimited() -> i64 {
    -1
}

/// A usage plan's binding to a service environment, or to some of its APIs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBindingConfig {
    /// The service id.
    pub service: String,
    /// The environment: `test`, `prepub` or `release`.
    pub environment: String,
    /// API ids for an API-level binding; absent for a binding to every API of the
    /// environment. One service uses one level: its plans bind either whole environments or
    /// APIs.
    #[serde(default)]
    pub apis: Option<Vec<String>>,
}

/// Settings of key-pair signature checks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPairAuthConfig {
    /// Seconds a signed `X-Date` may be before or after the gateway's clock (900, the
    /// product's 15 minutes). A signed `Date` is not checked against the clock.
    pub x_date_window_secs: u64,
    /// Checks a signed `Date` against the same window. Off by default, as in the product,
    /// where a request signed over `Date` alone can be replayed at any later time.
    pub check_date: bool,
}

impl Default for KeyPairAuthConfig {
    fn default() -> Self {
        KeyPairAuthConfig {
            x_date_window_secs: DEFAULT_X_DATE_WINDOW_SECS,
            check_date: false,
        }
    }
}

/// The store of rate-limit windows and used quota. It is read at start, so changing it
/// needs a restart.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "store", rename_all = "lowercase")]
pub enum CountersConfig {
    /// In this process. Used quota is written to `quota_file` once a second and at shutdown.
    Local {
        /// The file used quota is kept in, relative to the configuration file's folder.
        #[serde(default = "default_quota_file")]
        quota_file: PathBuf,
    },
    /// In Redis, shared by every gateway instance that uses the same Redis.
    Redis(RedisCountersConfig),
}

impl Default for CountersConfig {
    fn default() -> Self {
        CountersConfig::Local {
            quota_file: default_quota_file(),
        }
    }
}

fn default_quota_file() -> PathBuf {
    PathBuf::from("tollgate-quota.json")
}

/// Counting in Redis.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisCountersConfig {
    /// The server, as `redis://[user:password@]host:port[/db]`; may hold a password, so it
    /// can be read from an environment variable or a file.
    #[serde(default)]
    pub url: Option<SecretValue>,
    /// Redis Cluster seed nodes, each a `redis://` URL, instead of `url`.
    #[serde(default)]
    pub cluster_nodes: Vec<SecretValue>,
    /// Prefix of every key Tollgate writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Milliseconds to wait for Redis on a request before treating it as unreachable.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// The response to requests that need a counter while Redis is unreachable.
    #[serde(default)]
    pub when_unreachable: WhenUnreachable,
}

fn default_key_prefix() -> String {
    "tollgate".to_string()
}

fn default_redis_timeout_ms() -> u64 {
    250
}

/// The choice when the counter store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnreachable {
    /// Serve the request without limits, and log the outage once.
    #[default]
    Allow,
    /// Reject with 500 `Internal Server Error.`, and log the outage once.
    Reject,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP on, as `IP:PORT`. Changing them needs a restart.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Addresses to accept HTTPS on (HTTP/1.1 and HTTP/2 by ALPN), as `IP:PORT`. Changing
    /// them needs a restart.
    #[serde(default)]
    pub listen_tls: Vec<String>,
    /// The default certificate of the HTTPS listeners: for default domains, and for every
    /// name without a custom domain certificate.
    #[serde(default)]
    pub tls: Option<CertificateConfig>,
    /// Serves HTTP/2 with prior knowledge (h2c) on the plain listeners, beside HTTP/1.1.
    #[serde(default)]
    pub http2_cleartext: bool,
    /// The port in the `Location` of redirects to HTTPS (`force_https`), 443 by default, for
    /// gateways whose HTTPS listener is reached through another port.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// Worker threads of the runtime; 0 (the default) uses one per available core.
    #[serde(default)]
    pub workers: usize,
    /// Seconds that requests in flight get to finish after SIGTERM or SIGINT.
    #[serde(default = "default_grace_period_secs")]
    pub grace_period_secs: u64,
    /// Request size and time limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Format of every log line on standard output. Changing it needs a restart.
    #[serde(default)]
    pub log_format: LogFormat,
    /// The access log: one line per request.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Pooled connections to backends.
    #[serde(default)]
    pub backend_pool: BackendPoolConfig,
    /// Unix domain socket paths to accept plain HTTP on. A stale socket file at the path is
    /// replaced; the file is removed at shutdown. Changing them needs a restart.
    #[serde(default)]
    pub listen_unix: Vec<PathBuf>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` and `X-Real-IP` are
    /// believed when working out the client's address; by default no proxy is, and the
    /// client is the socket peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Address ranges (CIDR or single addresses) the gateway never connects to, checked on
    /// the addresses a backend name resolves to. A request whose backend is only there gets
    /// 403 `Endpoint IP address is not allowed.`. The default contains the link-local ranges
    /// (with 169.254.169.254) and the metadata addresses 100.100.100.200 and fd00:ec2::254;
    /// `[]` allows every address. Read at start.
    #[serde(default = "default_backend_denied_ranges")]
    pub backend_denied_ranges: Vec<String>,
}

fn default_backend_denied_ranges() -> Vec<String> {
    crate::backend::guard::DEFAULT_DENIED
        .iter()
        .map(|range| range.to_string())
        .collect()
}

fn default_https_port() -> u16 {
    443
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The certificate chain, leaf first, relative to the configuration file's folder.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            listen_tls: Vec::new(),
            tls: None,
            http2_cleartext: false,
            https_port: default_https_port(),
            workers: 0,
            grace_period_secs: DEFAULT_GRACE_PERIOD_SECS,
            limits: LimitsConfig::default(),
            log_format: LogFormat::default(),
            access_log: AccessLogConfig::default(),
            backend_pool: BackendPoolConfig::default(),
            backend_denied_ranges: default_backend_denied_ranges(),
            listen_unix: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".to_string()]
}

fn default_grace_period_secs() -> u64 {
    DEFAULT_GRACE_PERIOD_SECS
}

/// Limits on what a client may send. `max_body_bytes` changes on reload; the others are read
/// at start and need a restart.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Maximum bytes of the request line and headers together; at least 8192. Over it the
    /// client gets 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// Maximum number of request headers. Over it the client gets 431.
    pub max_headers: usize,
    /// Maximum request body in bytes (16 MB, the product's upload limit). Over it the client
    /// gets 413 `Request Entity Too Large.`. 0 turns the limit off.
    pub max_body_bytes: u64,
    /// Seconds a client has to send the request head before the connection is closed.
    pub header_read_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` fields after the level and target.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Access log settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Whether a line is written per request (target `tollgate::access`, level info).
    pub enabled: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { enabled: true }
    }
}

/// The shared pool of keep-alive connections to backends.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackendPoolConfig {
    /// Seconds an idle connection stays in the pool.
    pub idle_timeout_secs: u64,
    /// Idle connections kept per backend host and port.
    pub max_idle_per_host: usize,
    /// Seconds to wait for a TCP connection to a backend before it counts as failed: 502,
    /// or the next node of an upstream. None by default: the API's timeout bounds it (504).
    pub connect_timeout_secs: Option<u64>,
}

impl Default for BackendPoolConfig {
    fn default() -> Self {
        BackendPoolConfig {
            idle_timeout_secs: DEFAULT_POOL_IDLE_TIMEOUT_SECS,
            max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            connect_timeout_secs: None,
        }
    }
}

/// A service: the unit of publishing, with its domains, environments and APIs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service id: letters, digits, `-`, `_` or `.`, such as the product's `service-n904iiau`.
    pub id: String,
    /// Service name: up to 50 letters, digits or underscores.
    pub name: String,
    /// Schemes the service accepts on its default domains.
    #[serde(default)]
    pub protocol: FrontendProtocol,
    /// Default domains, reached as `http://DOMAIN/{environment}/{api path}`.
    #[serde(default)]
    pub default_domains: Vec<String>,
    /// Custom domains (at most 5).
    #[serde(default)]
    pub custom_domains: Vec<CustomDomainConfig>,
    /// The environments the service is published to, by name (`test`, `prepub`, `release`).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// The service's APIs.
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
}

/// Schemes a service or custom domain accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum FrontendProtocol {
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "https")]
    Https,
    /// Both schemes; the default.
    #[default]
    #[serde(rename = "http&https")]
    HttpAndHttps,
}

/// A custom domain bound to a service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomDomainConfig {
    /// The host name, for example `api.example.com`.
    pub domain: String,
    /// Schemes this domain accepts; the service's protocol when absent.
    #[serde(default)]
    pub protocol: Option<FrontendProtocol>,
    /// Custom path mappings (at most 3). Absent or empty means the default mapping,
    /// `DOMAIN/{environment}/{api path}`; when present, only these prefixes are served.
    #[serde(default)]
    pub path_mappings: Vec<PathMappingConfig>,
    /// The certificate this domain presents on the HTTPS listeners; the default certificate
    /// when absent.
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// Redirects plain HTTP requests to HTTPS with 308, which keeps the method and body.
    #[serde(default)]
    pub force_https: bool,
}

/// One custom path mapping: a path prefix that selects an environment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathMappingConfig {
    /// Path prefix starting with `/`; `/` maps the whole domain. Matched on segment boundaries.
    pub path: String,
    /// The environment it selects.
    pub environment: String,
}

/// An environment a service is published to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Ids of the APIs published here. Absent means every API of the service, as a full
    /// release of the product does.
    #[serde(default)]
    pub apis: Option<Vec<String>>,
    /// Requests per second the whole service may serve in this environment, summed over
    /// every caller; absent for no limit. Over it: 429 `API rate limit exceeded.`.
    #[serde(default)]
    pub requests_per_second: Option<u64>,
    /// Requests per second of single APIs in this environment, by API id.
    #[serde(default)]
    pub api_requests_per_second: BTreeMap<String, u64>,
}

/// One API of a service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// API id: letters, digits, `-`, `_` or `.`, such as the product's `api-3fvhfwso`.
    pub id: String,
    /// API name, unique in the service, up to 60 characters.
    pub name: String,
    /// Frontend path: `=/exact`, `^~/priority-prefix`, a path with `{var}` or regex
    /// operators, or a plain prefix.
    pub path: String,
    /// Request method the API serves.
    #[serde(default)]
    pub method: ApiMethod,
    /// Frontend protocol.
    #[serde(default)]
    pub protocol: ApiProtocol,
    /// Authentication type.
    #[serde(default)]
    pub auth: AuthType,
    /// Stronger key-pair signatures, beyond the product; for `auth: SECRET` only.
    #[serde(default)]
    pub key_pair: KeyPairApiConfig,
    /// Makes this API an OAuth authorization API: it fronts the authorization server (its
    /// backend), and these settings verify the tokens of the business APIs that name it.
    #[serde(default)]
    pub oauth: Option<OauthConfig>,
    /// On an `auth: OAUTH` business API: its authorization API and what reaches the backend.
    #[serde(default)]
    pub oauth_business: Option<OauthBusinessConfig>,
    /// The IP access control plugin: which client addresses may call the API.
    #[serde(default)]
    pub ip_control: Option<IpControlConfig>,
    /// Enables CORS with the product's defaults: any origin, the common methods and headers,
    /// credentials allowed, a max age of one day.
    #[serde(default)]
    pub cors: bool,
    /// The CORS plugin: origins, methods, headers, credentials and max age of one's own. It
    /// takes precedence over `cors`.
    #[serde(default)]
    pub cors_plugin: Option<CorsPluginConfig>,
    /// Declared request parameters.
    #[serde(default)]
    pub parameters: Vec<ParameterConfig>,
    /// Parameters added to every backend request, whatever the client sent.
    #[serde(default)]
    pub constant_parameters: Vec<ConstantParameterConfig>,
    /// Backend timeout in seconds, 1 to 1800: waiting longer for the backend's response head
    /// gives 504 `Gateway Time-out.`.
    #[serde(default = "default_backend_timeout_secs")]
    pub timeout_secs: u64,
    /// The backend that serves the API's requests.
    pub backend: BackendConfig,
}

fn default_backend_timeout_secs() -> u64 {
    DEFAULT_BACKEND_TIMEOUT_SECS
}

/// The request method an API serves; `ANY` matches every method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiMethod {
    #[default]
    Get,
    Post,
    Put,
    Delete,
    Head,
    /// An extension of the product's set.
    Patch,
    /// An extension of the product's set.
    Options,
    Any,
}

/// An API's frontend protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiProtocol {
    /// HTTP and HTTPS.
    #[default]
    Http,
    /// WS and WSS.
    Websocket,
}

/// The authentication type of an API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthType {
    /// No authentication.
    #[default]
    None,
    /// Key pair (HMAC) authentication.
    Secret,
    /// OAuth 2.0 id_token authentication.
    Oauth,
}

/// Per-API options of key-pair signatures. Both are off by default, so the product's clients
/// work unchanged.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPairApiConfig {
    /// The signature must cover the method and path: `headers` must list `request-line` or
    /// `@request-target`.
    pub sign_request_target: bool,
    /// The signature must cover a `Digest: SHA-256=<Base64>` header, and the body must match
    /// it. The gateway reads the whole body (up to the body limit) before forwarding it.
    pub require_digest: bool,
}

/// The CORS plugin, as the product's `Cors` plugin data.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsPluginConfig {
    /// Allowed origins: `*` for any, an origin as `scheme://host[:port]` (compared exactly,
    /// default ports ignored), or a regex anchored with `^` and `$` matched against the
    /// whole origin. An empty list cannot be applied: requests get 481.
    pub allow_origin: Vec<String>,
    /// Methods a preflight may ask for.
    #[serde(default = "default_plugin_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for; empty allows none.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the page may read; empty exposes none beyond the safelisted ones.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allows cookies and credentials; the response then names the origin, never `*`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds a browser may cache a preflight response.
    #[serde(default = "default_plugin_max_age")]
    pub max_age: u64,
}

fn default_plugin_methods() -> Vec<String> {
    ["GET", "PUT", "POST", "DELETE", "HEAD"]
        .iter()
        .map(|method| method.to_string())
        .collect()
}

fn default_plugin_max_age() -> u64 {
    600
}

/// The IP access control plugin, as the product's `IPControl` plugin data.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpControlConfig {
    /// `white_list` admits only the listed clients; `black_list` rejects them. Others get
    /// 403 `Client IP address is not allowed.`.
    #[serde(rename = "type")]
    pub kind: IpControlType,
    /// IPv4 and IPv6 addresses and CIDR ranges: a list, or one string with entries separated
    /// by newlines or `;` as the product's plugin data has them.
    pub blocks: IpBlocks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpControlType {
    WhiteList,
    BlackList,
}

/// IP entries, as a list or as one separated string.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IpBlocks {
    List(Vec<String>),
    Text(String),
}

impl IpBlocks {
    /// Returns every entry, trimmed, without empty ones.
    pub fn entries(&self) -> Vec<&str> {
        let items: Vec<&str> = match self {
            IpBlocks::List(items) => items.iter().map(String::as_str).collect(),
            IpBlocks::Text(text) => vec![text.as_str()],
        };
        items
            .into_iter()
            .flat_map(|item| item.split(['\n', ';']))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect()
    }
}

/// Token verification settings of an OAuth authorization API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthConfig {
    /// The public key as a JWK (`{"kty":"RSA","e":"AQAB","n":"..."}`) or a JWK set
    /// (`{"keys":[...]}`), as JSON text, inline or from a file. Keys in a set are chosen by
    /// the token's `kid`.
    #[serde(default)]
    pub public_key: Option<SecretValue>,
    /// An `http://` or `https://` URL serving a JWK set (verified against the system's
    /// certificate authorities), fetched at start and every `jwks_refresh_secs`; the
    /// last good set is kept when a fetch fails. Used with or instead of `public_key`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between fetches of `jwks_url`.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// Where business APIs find the token: `method.req.header.authorization` (the default;
    /// `Authorization: Bearer id_token="<jwt>"` or `Bearer <jwt>`) or
    /// `method.req.header.cookie` (the `id_token` cookie). Any other value rejects the
    /// business APIs' requests with 481 `Oauth id_token location forbidden.`.
    #[serde(default = "default_token_location")]
    pub token_location: String,
    /// The login page a browser without a token is redirected to, with 302.
    #[serde(default)]
    pub login_redirect_url: Option<String>,
    /// The `iss` a token must carry; not checked when absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// An `aud` a token must carry; not checked when absent.
    #[serde(default)]
    pub audience: Option<String>,
    /// Seconds of clock difference allowed when checking `exp` and `nbf`.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Verified tokens kept, until they expire, so a token is verified once; 0 turns the
    /// cache off.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: usize,
}

fn default_jwks_refresh_secs() -> u64 {
    300
}

fn default_token_location() -> String {
    "method.req.header.authorization".to_string()
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_token_cache_entries() -> usize {
    10_000
}

/// The authorization API and forwarding options of an `auth: OAUTH` business API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthBusinessConfig {
    /// Id of the authorization API, in the same service, whose settings verify tokens.
    pub authorization_api: String,
    /// Claims sent to the backend, as claim name to header name. The headers are removed
    /// from the client's request first, so a client cannot set them.
    #[serde(default = "default_claim_headers")]
    pub claim_headers: BTreeMap<String, String>,
    /// Removes the token (the `Authorization` header, or the `id_token` cookie) before the
    /// request goes to the backend.
    #[serde(default)]
    pub strip_token: bool,
}

fn default_claim_headers() -> BTreeMap<String, String> {
    BTreeMap::from([("sub".to_string(), "X-Oauth-Subject".to_string())])
}

/// A declared request parameter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterConfig {
    /// Parameter name.
    pub name: String,
    /// The part of the request that carries the parameter.
    pub position: ParameterPosition,
    /// Free-form type name, such as `string` or `int`; documentation only.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether the request must carry the parameter.
    #[serde(default)]
    pub required: bool,
    /// Value used when the request does not carry the parameter.
    #[serde(default)]
    pub default: Option<String>,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// The name the backend gets the parameter under; the same name when absent.
    #[serde(default)]
    pub backend_name: Option<String>,
    /// Where the backend gets the parameter: `header`, `query` or `path` (a `{name}` of the
    /// backend path); the same position when absent. A moved header or query parameter is
    /// removed from where the client sent it.
    #[serde(default)]
    pub backend_position: Option<ParameterPosition>,
}

/// A parameter the gateway adds to every backend request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstantParameterConfig {
    pub name: String,
    /// `header` or `query`.
    pub position: ParameterPosition,
    pub value: String,
}

/// The part of a request that carries a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterPosition {
    Header,
    Query,
    Path,
    Body,
}

/// An API's backend, selected by `type`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// Proxy to an HTTP server.
    Http(HttpBackendConfig),
    /// A fixed response from configuration, without a backend.
    Mock(MockBackendConfig),
    /// A microservice the caller names, served by its instances in the registry.
    Microservice(MicroserviceBackendConfig),
}

/// A microservice backend: the caller names the microservice by `X-NameSpace-Code` and
/// `X-MicroService-Name`, read from the request at the locations the API configures.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MicroserviceBackendConfig {
    /// The location of the namespace code: `method.req.{header|query|path}.{name}`, such as
    /// `method.req.path.X-NameSpace-Code` for a frontend path `/{X-NameSpace-Code}/...`.
    #[serde(default)]
    pub namespace_location: Option<String>,
    /// The location of the microservice name, in the same form.
    #[serde(default)]
    pub service_location: Option<String>,
    /// The microservices this API may reach.
    #[serde(default)]
    pub microservices: Vec<MicroserviceRef>,
    /// `http` (the default) or `https`.
    #[serde(default)]
    pub scheme: BackendScheme,
    /// Backend path, as for HTTP backends.
    #[serde(default)]
    pub path: String,
    /// The rule for an empty backend path.
    #[serde(default)]
    pub empty_path: EmptyPathRule,
    /// Backend method; the client's method when absent.
    #[serde(default)]
    pub method: Option<ApiMethod>,
    /// The Host header the instance receives: its own address, or the client's Host.
    #[serde(default)]
    pub host_header: HostHeader,
    /// Headers added to every backend request.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretValue>,
    /// How many other instances a request tries when an instance fails: 0 to 100, 3 by default, as
    /// the product's upstreams. Only requests without a body, or with a body of at most
    /// 64 KiB and a `Content-Length`, are sent again: after a refused connection whatever
    /// the method, and after a broken one only for idempotent methods.
    #[serde(default = "default_upstream_retries")]
    pub retries: usize,
    /// Session stickiness: requests of one client go to the same instance while it is up.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Passive and active health checks.
    #[serde(default)]
    pub health: HealthConfig,
}

impl MicroserviceBackendConfig {
    /// Returns the HTTP backend every attempt starts from: this backend's path, method,
    /// Host rule and headers, with a placeholder host that is never connected to, because
    /// each attempt is pointed at an instance.
    pub fn as_http_backend(&self) -> HttpBackendConfig {
        let scheme = match self.scheme {
            BackendScheme::Http => "http",
            BackendScheme::Https => "https",
        };
        HttpBackendConfig {
            url: format!("{scheme}://microservice"),
            upstream: None,
            path: self.path.clone(),
            empty_path: self.empty_path,
            method: self.method,
            host_header: self.host_header,
            headers: self.headers.clone(),
            ca_file: None,
            http2: false,
        }
    }
}

impl BackendScheme {
    pub fn uri_scheme(self) -> http::uri::Scheme {
        match self {
            BackendScheme::Http => http::uri::Scheme::HTTP,
            BackendScheme::Https => http::uri::Scheme::HTTPS,
        }
    }
}

/// A microservice by namespace code and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MicroserviceRef {
    pub namespace: String,
    pub name: String,
}

/// An HTTP backend.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpBackendConfig {
    /// Scheme, host and optional port, without a path: `http://10.0.0.5:8080`. For an
    /// upstream backend, the scheme only (`http://` or `https://`, the default `http://`).
    #[serde(default)]
    pub url: String,
    /// The id of an upstream whose nodes serve the API, instead of the host in `url`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Backend path, starting with `/`; may hold the frontend's `{var}` names. Empty means
    /// the remainder of the request path after the matched frontend prefix.
    #[serde(default)]
    pub path: String,
    /// The rule for an empty backend path.
    #[serde(default)]
    pub empty_path: EmptyPathRule,
    /// Backend method; the client's method when absent.
    #[serde(default)]
    pub method: Option<ApiMethod>,
    /// The Host header the backend receives.
    #[serde(default)]
    pub host_header: HostHeader,
    /// Headers added to every backend request. Values are inline, or read from an
    /// environment variable or a file at load time.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretValue>,
    /// For `https://` backends: a PEM bundle of the certificate authorities to trust instead
    /// of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Speaks HTTP/2 to the backend: by ALPN over TLS, with prior knowledge over plain TCP.
    #[serde(default)]
    pub http2: bool,
}

/// The path an HTTP backend with an empty `path` receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmptyPathRule {
    /// The request path with the matched frontend prefix removed: frontend `/product/` and
    /// request `/product/apigw/doc` forward `/apigw/doc` (the product's current rule).
    #[default]
    StripPrefix,
    /// The whole request path after the environment: `/product/apigw/doc` (the product's
    /// older rule).
    KeepFullPath,
}

/// The Host header sent to an HTTP backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The backend URL's host and port.
    #[default]
    Backend,
    /// The Host the client sent.
    Client,
}

/// A mock backend: a fixed response.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockBackendConfig {
    /// Response status, 200 to 599.
    #[serde(default = "default_mock_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: Option<String>,
    /// A file whose content is the response body, read on every request so edits show at
    /// once. A file that cannot be read then gives 481 `Mock config error.`.
    #[serde(default)]
    pub body_file: Option<PathBuf>,
}

fn default_mock_status() -> u16 {
    200
}

/// A value given inline, or read from an environment variable or a file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretValue {
    /// The value itself.
    Inline(String),
    /// A reference to where the value is kept.
    From(SecretSource),
}

/// The source a secret value is read from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// The file's content, with one trailing newline removed.
    File(PathBuf),
}

impl ApiMethod {
    /// Returns the HTTP method, or `None` for `ANY`.
    pub fn to_http(self) -> Option<http::Method> {
        Some(match self {
            ApiMethod::Get => http::Method::GET,
            ApiMethod::Post => http::Method::POST,
            ApiMethod::Put => http::Method::PUT,
            ApiMethod::Delete => http::Method::DELETE,
            ApiMethod::Head => http::Method::HEAD,
            ApiMethod::Patch => http::Method::PATCH,
            ApiMethod::Options => http::Method::OPTIONS,
            ApiMethod::Any => return None,
        })
    }
}

impl FrontendProtocol {
    /// Returns true when requests over `scheme` are accepted.
    pub fn allows(self, scheme: Scheme) -> bool {
        matches!(
            (self, scheme),
            (FrontendProtocol::HttpAndHttps, _)
                | (FrontendProtocol::Http, Scheme::Http)
                | (FrontendProtocol::Https, Scheme::Https)
        )
    }
}

/// The scheme a request arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The three environments a service can be published to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvironmentName {
    Test,
    Prepub,
    Release,
}

impl EnvironmentName {
    pub const ALL: [EnvironmentName; 3] = [
        EnvironmentName::Test,
        EnvironmentName::Prepub,
        EnvironmentName::Release,
    ];

    /// Parses `test`, `prepub` or `release`.
    pub fn parse(name: &str) -> Option<EnvironmentName> {
        match name {
            "test" => Some(EnvironmentName::Test),
            "prepub" => Some(EnvironmentName::Prepub),
            "release" => Some(EnvironmentName::Release),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EnvironmentName::Test => "test",
            EnvironmentName::Prepub => "prepub",
            EnvironmentName::Release => "release",
        }
    }

    /// Position in per-environment arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
