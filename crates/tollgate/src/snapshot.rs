//! The immutable runtime model compiled from a validated configuration.
//!
//! A request reads one [`Snapshot`] from start to end. A reload compiles a new one and swaps
//! it in; requests in flight keep the `Arc` they started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme as UriScheme};
use http::{Method, StatusCode, Uri};

use crate::auth::signature::SigningKey;
use crate::balance::{BalanceSettings, Balancer, Node, ProbeTarget};
use crate::config::{
    self, ApiConfig, ApiMethod, AuthType, BackendConfig, Config, EmptyPathRule, EnvironmentName,
    FrontendProtocol, HostHeader, KeyPairApiConfig, ParameterPosition,
};
use crate::discovery::ServiceKey;
use crate::error::GatewayError;
use crate::log_throttle::LogThrottle;
use crate::oauth::OauthVerifier;
use crate::pipeline::cors::CorsPolicy;
use crate::route::{PathPattern, PathTemplate, Router, RouterBuilder};
use crate::tls::{load_certified_key, CertificateStore};

/// Everything a request needs from the configuration.
pub struct Snapshot {
    hosts: HashMap<String, HostEntry>,
    services: Vec<Service>,
    /// Maximum request body in bytes; `None` for no limit.
    pub max_body_bytes: Option<u64>,
    pub access_log: bool,
    /// Key pairs by secret id.
    pub key_pairs: HashMap<String, KeyPair>,
    pub plans: Vec<UsagePlan>,
    /// How far a signed `X-Date` may be from the gateway's clock.
    pub x_date_window: Duration,
    /// Whether a signed `Date` is held to the same window.
    pub check_date: bool,
    /// The verifiers of every OAuth authorization API, for starting their JWK set fetches.
    pub oauth_verifiers: Vec<Arc<OauthVerifier>>,
    /// The certificates of the HTTPS listeners.
    pub certificates: CertificateStore,
    /// The port of redirects to HTTPS, omitted from the URL when 443.
    pub https_port: u16,
    /// Proxies whose forwarded client addresses are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Every upstream and every microservice of a microservice API, for their health
    /// checks.
    pub balancers: Vec<Arc<Balancer>>,
}

/// A key pair, with the plans that hold it.
#[derive(Debug)]
pub struct KeyPair {
    pub secret_id: String,
    pub signing_key: SigningKey,
    pub enabled: bool,
    /// Each plan holding the key, by index into [`Snapshot::plans`], with the name its
    /// counters are kept under.
    pub plans: Vec<(usize, Arc<str>)>,
}

impl KeyPair {
    /// Returns the first of `bound` plans that contains this key, with its counter name.
    pub fn plan_in(&self, bound: &[usize]) -> Option<(usize, &Arc<str>)> {
        self.plans
            .iter()
            .find(|(plan, _)| bound.contains(plan))
            .map(|(plan, counter)| (*plan, counter))
    }
}

/// A usage plan's limits, per key.
#[derive(Debug)]
pub struct UsagePlan {
    pub id: String,
    pub per_second: Option<u64>,
    pub quota: Option<u64>,
}

/// The service and environment mapping of one host name.
pub struct HostEntry {
    pub service: usize,
    /// Schemes accepted on this host.
    pub protocol: FrontendProtocol,
    /// Plain HTTP requests are redirected to HTTPS.
    pub force_https: bool,
    pub mapping: EnvMapping,
}

/// The rule a host uses to pick the environment.
pub enum EnvMapping {
    /// The first path segment names the environment.
    Default,
    /// Path prefixes map to environments, longest prefix first.
    Custom(Vec<PathMapping>),
}

/// A custom path mapping: requests under `prefix` go to `environment`.
pub struct PathMapping {
    /// Without a trailing `/`, except for the root mapping `/`.
    pub prefix: String,
    pub environment: EnvironmentName,
}

pub struct Service {
    pub id: String,
    pub name: String,
    pub oauth_verifiers: Vec<Arc<OauthVerifier>>,
    /// Indexed by [`EnvironmentName::index`]; `None` where the service is not published.
    pub environments: [Option<Environment>; 3],
}

/// The APIs a service publishes to one environment.
pub struct Environment {
    pub name: EnvironmentName,
    pub router: Router<PublishedApi>,
    /// The service's requests per second in this environment, and its counter name.
    pub throttle: Option<Throttle>,
}

/// A requests-per-second limit and the name of its counter.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub per_second: u64,
    pub counter: Arc<str>,
}

/// An API as published to one environment: what the environment adds to it.
pub struct PublishedApi {
    pub api: Arc<Api>,
    /// The usage plans bound here, by index into [`Snapshot::plans`].
    pub plans: Arc<[usize]>,
    pub throttle: Option<Throttle>,
    /// For `auth: OAUTH` business APIs: how their tokens are checked here.
    pub oauth: Option<OauthBusiness>,
}

/// An OAuth business API's link to its authorization API in one environment.
pub struct OauthBusiness {
    pub link: OauthLink,
    /// Claim names and the headers they are sent in.
    pub claim_headers: Vec<(String, HeaderName)>,
    pub strip_token: bool,
}

pub enum OauthLink {
    /// The authorization API is not published in this environment.
    NoRelatedApi,
    /// The named API has no OAuth settings.
    NoConfig,
    Verifier(Arc<OauthVerifier>),
}

/// One API, ready to serve.
pub struct Api {
    pub id: String,
    /// `id` as the `X-Api-ID` response header value.
    pub id_header: HeaderValue,
    pub name: String,
    /// The frontend path as configured, for logs.
    pub path: String,
    pub timeout: Duration,
    pub parameters: Vec<Parameter>,
    pub constants: Vec<ConstantParameter>,
    /// The query string must be parsed: query parameters or mappings are declared.
    pub parses_query: bool,
    /// Body parameters are declared, so the body is read whole.
    pub body_params: bool,
    pub backend: Backend,
    pub auth: AuthType,
    pub key_pair: KeyPairApiConfig,
    /// WebSocket APIs check the upgrade headers and relay the upgraded connection.
    pub websocket: bool,
    /// For authorization APIs: the verifier of their business APIs' tokens.
    pub oauth_provider: Option<Arc<OauthVerifier>>,
    pub ip_control: Option<IpControl>,
    /// The CORS policy: the plugin's, or the flag's defaults.
    pub cors: Option<Arc<CorsPolicy>>,
}

/// A compiled IP access control plugin.
pub struct IpControl {
    pub kind: config::IpControlType,
    pub blocks: Vec<ipnet::IpNet>,
}

/// A declared header or query parameter that the gateway checks or fills in.
pub struct Parameter {
    pub name: String,
    pub position: ParameterPosition,
    pub required: bool,
    pub default: Option<String>,
    /// The backend position and name, when they differ from the request's.
    pub backend: Option<(ParameterPosition, String)>,
}

/// A parameter added to every backend request.
pub struct ConstantParameter {
    pub name: String,
    pub value: String,
    /// The header name and value, for header constants; `None` for query constants.
    pub header: Option<HeaderName>,
    pub header_value: HeaderValue,
}

pub enum Backend {
    Http(HttpBackend),
    Mock(MockBackend),
    Microservice(MicroserviceBackend),
}

/// A microservice backend: the request names the microservice, whose instances serve it.
pub struct MicroserviceBackend {
    /// Path, method, headers and Host rule; every attempt is pointed at an instance.
    pub http: HttpBackend,
    /// The locations of the namespace code and the microservice name, or the 481 the API
    /// returns when its settings cannot be used.
    pub locations: Result<[Location; 2], GatewayError>,
    /// The API's microservices, each balanced over its own instances.
    pub services: HashMap<ServiceKey, Arc<Balancer>>,
}

/// The place a request carries a value in: `method.req.{header|query|path}.{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header(HeaderName),
    Query(String),
    Path(String),
}

impl Location {
    /// Parses a location expression; `None` when it is not of the supported form.
    pub fn parse(expression: &str) -> Option<Location> {
        let rest = expression.strip_prefix("method.req.")?;
        let (kind, name) = rest.split_once('.')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(Location::Header),
            "query" => Some(Location::Query(name.to_string())),
            "path" => Some(Location::Path(name.to_string())),
            _ => None,
        }
    }
}

pub struct HttpBackend {
    pub scheme: UriScheme,
    pub authority: Authority,
    /// The backend's own `host[:port]`, sent as Host unless the client's is chosen.
    pub host_value: HeaderValue,
    pub host_header: HostHeader,
    pub path: PathTemplate,
    pub empty_path: EmptyPathRule,
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Certificate authorities trusted beside the system's, for `https://` backends.
    pub ca_file: Option<PathBuf>,
    pub http2: bool,
    /// The backend's address when its URL names an IP, for the address guard.
    pub literal_ip: Option<std::net::IpAddr>,
    /// The upstream whose nodes serve the API, instead of the single URL.
    pub upstream: Option<Arc<Balancer>>,
    /// Keeps the warnings about this backend's failures to one a second.
    pub failure_log: LogThrottle,
}

pub struct MockBackend {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: MockBody,
}

pub enum MockBody {
    Inline(Bytes),
    /// Read on every request.
    File(PathBuf),
}

/// Upstreams by id.
type Upstreams = HashMap<String, Arc<Balancer>>;

fn compile_upstreams(config: &Config) -> anyhow::Result<Upstreams> {
    let mut upstreams = HashMap::new();
    for upstream in &config.upstreams {
        let nodes = upstream
            .nodes
            .iter()
            .map(Node::new)
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("upstream `{}`", upstream.id))?;
        let settings = BalanceSettings {
            retries: upstream.retries,
            sticky: upstream.sticky.as_ref(),
            health: &upstream.health,
            scheme: upstream.scheme,
            probe: upstream_probe(config, upstream),
            cookie_suffix: None,
        };
        let label = format!("upstream `{}`", upstream.id);
        let balancer = Balancer::new(label, settings, nodes, None)
            .with_context(|| format!("upstream `{}`", upstream.id))?;
        upstreams.insert(upstream.id.clone(), Arc::new(balancer));
    }
    Ok(upstreams)
}

/// Active checks reach an upstream's nodes as the APIs that use it do: validation makes
/// them all agree when active checks are on.
fn upstream_probe(config: &Config, upstream: &config::UpstreamConfig) -> ProbeTarget {
    let user = config
        .services
        .iter()
        .flat_map(|service| &service.apis)
        .find_map(|api| match &api.backend {
            BackendConfig::Http(http) if http.upstream.as_deref() == Some(&upstream.id) => {
                Some(http)
            }
            _ => None,
        });
    match user {
        Some(http) => ProbeTarget {
            scheme: config::upstream_url_scheme(&http.url)
                .unwrap_or(upstream.scheme)
                .uri_scheme(),
            ca_file: http.ca_file.clone(),
            http2: http.http2,
        },
        None => ProbeTarget {
            scheme: upstream.scheme.uri_scheme(),
            ca_file: None,
            http2: false,
        },
    }
}

impl Snapshot {
    /// Compiles a validated configuration. Errors here mean the configuration changed its
    /// mind between validation and compilation, such as an environment variable unset.
    pub fn compile(config: &Config) -> anyhow::Result<Snapshot> {
        let mut hosts = HashMap::new();
        let upstreams = compile_upstreams(config)?;
        let mut balancers: Vec<Arc<Balancer>> = upstreams.values().cloned().collect();
        let mut services = Vec::with_capacity(config.services.len());
        for (index, service) in config.services.iter().enumerate() {
            for domain in &service.default_domains {
                hosts.insert(
                    domain.clone(),
                    HostEntry {
                        service: index,
                        protocol: service.protocol,
                        force_https: false,
                        mapping: EnvMapping::Default,
                    },
                );
            }
            for domain in &service.custom_domains {
                let mapping = if domain.path_mappings.is_empty() {
                    EnvMapping::Default
                } else {
                    let mut mappings: Vec<PathMapping> = domain
                        .path_mappings
                        .iter()
                        .map(|mapping| PathMapping {
                            prefix: config::normalize_mapping_prefix(&mapping.path),
                            environment: EnvironmentName::parse(&mapping.environment)
                                .expect("validated environment name"),
                        })
                        .collect();
                    mappings.sort_by_key(|mapping| std::cmp::Reverse(mapping.prefix.len()));
                    EnvMapping::Custom(mappings)
                };
                hosts.insert(
                    domain.domain.clone(),
                    HostEntry {
                        service: index,
                        protocol: domain.protocol.unwrap_or(service.protocol),
                        force_https: domain.force_https,
                        mapping,
                    },
                );
            }
            services.push(compile_service(
                service,
                &config.usage_plans,
                &upstreams,
                &mut balancers,
            )?);
        }
        let plans = config
            .usage_plans
            .iter()
            .map(|plan| UsagePlan {
                id: plan.id.clone(),
                per_second: u64::try_from(plan.requests_per_second).ok(),
                quota: u64::try_from(plan.quota).ok(),
            })
            .collect();
        let mut key_pairs = HashMap::with_capacity(config.key_pairs.len());
        for key in &config.key_pairs {
            let secret = config::resolve_secret(&key.secret_key)
                .map_err(|e| anyhow!("key pair `{}`: {e}", key.secret_id))?;
            let plans = config
                .usage_plans
                .iter()
                .enumerate()
                .filter(|(_, plan)| plan.key_pairs.contains(&key.secret_id))
                .map(|(index, plan)| {
                    let counter = format!("plan:{}:key:{}", plan.id, key.secret_id);
                    (index, Arc::from(counter))
                })
                .collect();
            key_pairs.insert(
                key.secret_id.clone(),
                KeyPair {
                    secret_id: key.secret_id.clone(),
                    signing_key: SigningKey::new(secret.as_bytes()),
                    enabled: key.enabled,
                    plans,
                },
            );
        }
        let oauth_verifiers = services
            .iter()
            .flat_map(|service: &Service| service.oauth_verifiers.iter().cloned())
            .collect();
        let mut certificates = CertificateStore::default();
        if let Some(default) = &config.server.tls {
            let key = load_certified_key(&default.cert_file, &default.key_file)
                .map_err(|e| anyhow!("server.tls: {e}"))?;
            certificates.set_default(Arc::new(key));
        }
        for domain in config.services.iter().flat_map(|s| &s.custom_domains) {
            if let Some(certificate) = &domain.certificate {
                let key = load_certified_key(&certificate.cert_file, &certificate.key_file)
                    .map_err(|e| anyhow!("the certificate of `{}`: {e}", domain.domain))?;
                certificates.insert(&domain.domain, Arc::new(key));
            }
        }
        let limits = &config.server.limits;
        Ok(Snapshot {
            hosts,
            services,
            max_body_bytes: (limits.max_body_bytes > 0).then_some(limits.max_body_bytes),
            access_log: config.server.access_log.enabled,
            key_pairs,
            plans,
            x_date_window: Duration::from_secs(config.key_pair_auth.x_date_window_secs),
            check_date: config.key_pair_auth.check_date,
            oauth_verifiers,
            certificates,
            https_port: config.server.https_port,
            trusted_proxies: config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|range| config::parse_ip_range(range))
                .collect(),
            balancers,
        })
    }

    /// Takes over the node health (and a microservice's instances) of the balancers that
    /// `old` has under the same name, so a reload does not bring back a node that was out.
    pub fn inherit_health(&self, old: &Snapshot) {
        let previous: HashMap<&str, &Arc<Balancer>> = old
            .balancers
            .iter()
            .map(|balancer| (balancer.label.as_str(), balancer))
            .collect();
        for balancer in &self.balancers {
            if let Some(old) = previous.get(balancer.label.as_str()) {
                balancer.inherit(old);
            }
        }
    }

    /// Returns what a lower-case host name without port leads to.
    pub fn host(&self, host: &str) -> Option<(&HostEntry, &Service)> {
        let entry = self.hosts.get(host)?;
        Some((entry, &self.services[entry.service]))
    }
}

fn compile_service(
    service: &config::ServiceConfig,
    plans: &[config::UsagePlanConfig],
    upstreams: &Upstreams,
    balancers: &mut Vec<Arc<Balancer>>,
) -> anyhow::Result<Service> {
    let apis: Vec<Arc<Api>> = service
        .apis
        .iter()
        .map(|api| compile_api(&service.id, api, upstreams, balancers).map(Arc::new))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("service `{}`", service.id))?;
    let mut environments: [Option<Environment>; 3] = [None, None, None];
    for (name, env) in &service.environments {
        let env_name = name;
        let name = EnvironmentName::parse(name).ok_or_else(|| anyhow!("environment `{name}`"))?;
        let bound = |api: Option<&str>| -> Vec<usize> {
            plans
                .iter()
                .enumerate()
                .filter(|(_, plan)| {
                    plan.bindings.iter().any(|binding| {
                        binding.service == service.id
                            && binding.environment == *env_name
                            && match (&binding.apis, api) {
                                (None, _) => true,
                                (Some(apis), Some(api)) => apis.iter().any(|id| id == api),
                                (Some(_), None) => false,
                            }
                    })
                })
                .map(|(index, _)| index)
                .collect()
        };
        let environment_plans: Arc<[usize]> = bound(None).into();
        let service_counter = format!("svc:{}:{}", service.id, name.as_str());
        let mut builder = RouterBuilder::default();
        for (index, api_config) in service.apis.iter().enumerate() {
            let published = env
                .apis
                .as_ref()
                .is_none_or(|ids| ids.contains(&api_config.id));
            if !published {
                continue;
            }
            let pattern = PathPattern::parse(&api_config.path).map_err(|e| anyhow!(e))?;
            let api_plans = bound(Some(&api_config.id));
            let published = PublishedApi {
                api: apis[index].clone(),
                plans: if api_plans.len() == environment_plans.len() {
                    environment_plans.clone()
                } else {
                    api_plans.into()
                },
                throttle: env
                    .api_requests_per_second
                    .get(&api_config.id)
                    .map(|&per_second| Throttle {
                        per_second,
                        counter: format!("{service_counter}:api:{}", api_config.id).into(),
                    }),
                oauth: oauth_business(service, env, &apis, api_config)?,
            };
            builder
                .insert(&pattern, api_config.method, published)
                .map_err(|e| anyhow!("API `{}`: {e}", api_config.id))?;
        }
        let router = builder.build();
        let throttle = env.requests_per_second.map(|per_second| Throttle {
            per_second,
            counter: service_counter.into(),
        });
        environments[name.index()] = Some(Environment {
            name,
            router,
            throttle,
        });
    }
    let oauth_verifiers = apis
        .iter()
        .filter_map(|api| api.oauth_provider.clone())
        .collect();
    Ok(Service {
        id: service.id.clone(),
        name: service.name.clone(),
        oauth_verifiers,
        environments,
    })
}

/// Links an `auth: OAUTH` business API to its authorization API in one environment.
fn oauth_business(
    service: &config::ServiceConfig,
    env: &config::EnvironmentConfig,
    apis: &[Arc<Api>],
    api: &ApiConfig,
) -> anyhow::Result<Option<OauthBusiness>> {
    if api.auth != AuthType::Oauth {
        return Ok(None);
    }
    let business = api
        .oauth_business
        .as_ref()
        .context("validated: OAUTH APIs name their authorization API")?;
    let published = env
        .apis
        .as_ref()
        .is_none_or(|ids| ids.contains(&business.authorization_api));
    let provider = service
        .apis
        .iter()
        .position(|other| other.id == business.authorization_api)
        .map(|index| &apis[index]);
    let link = match provider {
        Some(provider) if published => match &provider.oauth_provider {
            Some(verifier) => OauthLink::Verifier(verifier.clone()),
            None => OauthLink::NoConfig,
        },
        _ => OauthLink::NoRelatedApi,
    };
    let claim_headers = business
        .claim_headers
        .iter()
        .map(|(claim, header)| Ok((claim.clone(), HeaderName::from_bytes(header.as_bytes())?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(OauthBusiness {
        link,
        claim_headers,
        strip_token: business.strip_token,
    }))
}

fn compile_oauth_provider(api: &ApiConfig) -> Option<Arc<OauthVerifier>> {
    let config = api.oauth.as_ref()?;
    let public_key = config.public_key.as_ref().map(config::resolve_secret);
    let verifier = OauthVerifier::new(&api.id, config, public_key);
    if verifier.location.is_none() {
        tracing::warn!(
            api = %api.id,
            location = %config.token_location,
            "the OAuth token location is neither method.req.header.authorization nor \
             method.req.header.cookie; business APIs get 481 Oauth id_token location forbidden."
        );
    }
    if let Some(error) = &verifier.key_error {
        tracing::warn!(
            api = %api.id,
            %error,
            "the OAuth public key cannot be used; business APIs get 481 Oauth public key error."
        );
    }
    Some(Arc::new(verifier))
}

fn compile_api(
    service_id: &str,
    api: &ApiConfig,
    upstreams: &Upstreams,
    balancers: &mut Vec<Arc<Balancer>>,
) -> anyhow::Result<Api> {
    let backend = match &api.backend {
        BackendConfig::Http(http) => Backend::Http(compile_http_backend(http, upstreams)?),
        BackendConfig::Microservice(micro) => {
            let backend = compile_microservice_backend(service_id, api, micro, upstreams)?;
            balancers.extend(backend.services.values().cloned());
            Backend::Microservice(backend)
        }
        BackendConfig::Mock(mock) => {
            let mut headers = HeaderMap::new();
            for (name, value) in &mock.headers {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_str(value)?,
                );
            }
            let body = match (&mock.body, &mock.body_file) {
                (_, Some(file)) => MockBody::File(file.clone()),
                (body, None) => MockBody::Inline(Bytes::from(body.clone().unwrap_or_default())),
            };
            Backend::Mock(MockBackend {
                status: StatusCode::from_u16(mock.status)?,
                headers,
                body,
            })
        }
    };
    let parameters: Vec<Parameter> = api
        .parameters
        .iter()
        .filter(|p| {
            p.required
                || p.default.is_some()
                || p.backend_name.is_some()
                || p.backend_position.is_some()
        })
        .map(|p| {
            let target = (
                p.backend_position.unwrap_or(p.position),
                p.backend_name.clone().unwrap_or(p.name.clone()),
            );
            Parameter {
                name: p.name.clone(),
                position: p.position,
                required: p.required,
                default: p.default.clone(),
                backend: (target != (p.position, p.name.clone())).then_some(target),
            }
        })
        .collect();
    let constants = api
        .constant_parameters
        .iter()
        .map(|c| {
            let header = match c.position {
                ParameterPosition::Header => Some(HeaderName::from_bytes(c.name.as_bytes())?),
                _ => None,
            };
            Ok(ConstantParameter {
                name: c.name.clone(),
                value: c.value.clone(),
                header,
                header_value: HeaderValue::from_str(&c.value)
                    .unwrap_or(HeaderValue::from_static("")),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let parses_query = parameters
        .iter()
        .any(|p| p.position == ParameterPosition::Query || p.backend.is_some());
    let body_params = parameters
        .iter()
        .any(|p| p.position == ParameterPosition::Body);
    Ok(Api {
        id: api.id.clone(),
        id_header: HeaderValue::from_str(&api.id)
            .with_context(|| format!("API id `{}` as a header value", api.id))?,
        name: api.name.clone(),
        path: api.path.clone(),
        timeout: Duration::from_secs(api.timeout_secs),
        parameters,
        constants,
        parses_query,
        body_params,
        backend,
        auth: api.auth,
        key_pair: api.key_pair.clone(),
        websocket: api.protocol == config::ApiProtocol::Websocket,
        oauth_provider: compile_oauth_provider(api),
        cors: match (&api.cors_plugin, api.cors) {
            (Some(plugin), _) => {
                let policy = CorsPolicy::from_plugin(plugin);
                if !policy.usable {
                    tracing::warn!(
                        api = %api.id,
                        "the CORS plugin allows no origin; cross-origin requests get 481 Found no valid cors config."
                    );
                }
                Some(Arc::new(policy))
            }
            (None, true) => Some(Arc::new(CorsPolicy::product_default())),
            (None, false) => None,
        },
        ip_control: api.ip_control.as_ref().map(|control| IpControl {
            kind: control.kind,
            blocks: control
                .blocks
                .entries()
                .into_iter()
                .filter_map(config::parse_ip_range)
                .collect(),
        }),
    })
}

fn compile_microservice_backend(
    service_id: &str,
    api: &ApiConfig,
    micro: &config::MicroserviceBackendConfig,
    upstreams: &Upstreams,
) -> anyhow::Result<MicroserviceBackend> {
    let http = compile_http_backend(&micro.as_http_backend(), upstreams)?;
    let locations = microservice_locations(api, micro).map_err(|(error, reason)| {
        tracing::warn!(
            service = %service_id, api = %api.id, %reason,
            "the microservice backend's settings cannot be used; its requests get 481 {error}"
        );
        error
    });
    let mut services = HashMap::new();
    for service in &micro.microservices {
        let key: ServiceKey = (service.namespace.clone(), service.name.clone());
        let settings = BalanceSettings {
            retries: micro.retries,
            sticky: micro.sticky.as_ref(),
            health: &micro.health,
            scheme: micro.scheme,
            probe: ProbeTarget {
                scheme: micro.scheme.uri_scheme(),
                ca_file: None,
                http2: false,
            },
            cookie_suffix: Some(cookie_suffix(&key)),
        };
        let label = format!(
            "microservice `{}/{}` of API `{}` in service `{service_id}`",
            service.namespace, service.name, api.id
        );
        let balancer = Balancer::new(label, settings, Vec::new(), Some(key.clone()))?;
        services.insert(key, Arc::new(balancer));
    }
    Ok(MicroserviceBackend {
        http,
        locations,
        services,
    })
}

/// Returns the suffix of a microservice's stickiness cookie: 8 hex digits of a digest of its
/// namespace and name, which may hold characters a cookie name cannot.
fn cookie_suffix(key: &ServiceKey) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{}", key.0, key.1).as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads where a microservice API finds the namespace and microservice name, with the
/// product's 481 for settings that cannot be used.
fn microservice_locations(
    api: &ApiConfig,
    micro: &config::MicroserviceBackendConfig,
) -> Result<[Location; 2], (GatewayError, String)> {
    let (Some(namespace_text), Some(service_text)) =
        (&micro.namespace_location, &micro.service_location)
    else {
        return Err((
            GatewayError::MicroServiceLocationMissing,
            "set both `namespace_location` and `service_location`".to_string(),
        ));
    };
    let malformed = |text: &str| {
        (
            GatewayError::MicroServiceLocationMalformed,
            format!("`{text}` is not method.req.{{header,query,path}}.NAME"),
        )
    };
    let namespace = Location::parse(namespace_text).ok_or_else(|| malformed(namespace_text))?;
    let service = Location::parse(service_text).ok_or_else(|| malformed(service_text))?;
    let unusable = |reason: String| (GatewayError::TsfConfig, reason);
    if micro.microservices.is_empty() {
        return Err(unusable("`microservices` lists none".to_string()));
    }
    if let Some(index) = micro
        .microservices
        .iter()
        .position(|service| service.namespace.is_empty() || service.name.is_empty())
    {
        return Err(unusable(format!(
            "`microservices[{index}]` has an empty namespace or name"
        )));
    }
    for location in [&namespace, &service] {
        if let Location::Path(name) = location {
            if !api.path.contains(&format!("{{{name}}}")) {
                return Err(unusable(format!(
                    "the frontend path `{}` has no `{{{name}}}`",
                    api.path
                )));
            }
        }
    }
    Ok([namespace, service])
}

fn compile_http_backend(
    http: &config::HttpBackendConfig,
    upstreams: &Upstreams,
) -> anyhow::Result<HttpBackend> {
    let upstream = match &http.upstream {
        Some(id) => Some(
            upstreams
                .get(id)
                .cloned()
                .with_context(|| format!("upstream `{id}`"))?,
        ),
        None => None,
    };
    // An upstream backend starts from its first node; each request picks its own. A `url`
    // gives the scheme; without one, the upstream's scheme applies.
    let url = match &upstream {
        Some(upstream) => {
            let secure = match config::upstream_url_scheme(&http.url) {
                Some(scheme) => scheme == config::BackendScheme::Https,
                None => upstream.default_scheme == UriScheme::HTTPS,
            };
            format!(
                "{}://{}",
                if secure { "https" } else { "http" },
                upstream.nodes().nodes[0].authority
            )
        }
        None => http.url.clone(),
    };
    let uri: Uri = url.parse()?;
    let parts = uri.into_parts();
    let authority = parts.authority.context("backend URL without host")?;
    let literal_ip = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    let mut headers = Vec::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        let value = config::resolve_secret(value).map_err(|e| anyhow!(e))?;
        headers.push((
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        ));
    }
    // WebSocket backends are reached with an HTTP/1.1 upgrade, over TLS for `wss`.
    let scheme = match parts.scheme.as_ref().map(|scheme| scheme.as_str()) {
        Some("https" | "wss") => UriScheme::HTTPS,
        _ => UriScheme::HTTP,
    };
    Ok(HttpBackend {
        scheme,
        host_value: HeaderValue::from_str(authority.as_str())?,
        authority,
        host_header: http.host_header,
        path: PathTemplate::parse(&http.path).map_err(|e| anyhow!(e))?,
        empty_path: http.empty_path,
        method: http.method.and_then(ApiMethod::to_http),
        headers,
        ca_file: http.ca_file.clone(),
        http2: http.http2,
        literal_ip: literal_ip.filter(|_| upstream.is_none()),
        upstream,
        failure_log: LogThrottle::new(Duration::from_secs(1)),
    })
}
