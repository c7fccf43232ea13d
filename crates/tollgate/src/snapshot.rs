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

use crate::config::{
    self, ApiConfig, ApiMethod, BackendConfig, Config, EmptyPathRule, EnvironmentName,
    FrontendProtocol, HostHeader, ParameterPosition,
};
use crate::log_throttle::LogThrottle;
use crate::route::{PathPattern, PathTemplate, Router, RouterBuilder};

/// Everything a request needs from the configuration.
pub struct Snapshot {
    hosts: HashMap<String, HostEntry>,
    services: Vec<Service>,
    /// Maximum request body in bytes; `None` for no limit.
    pub max_body_bytes: Option<u64>,
    pub access_log: bool,
}

/// The service and environment mapping of one host name.
pub struct HostEntry {
    pub service: usize,
    /// Schemes accepted on this host.
    pub protocol: FrontendProtocol,
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
    /// Indexed by [`EnvironmentName::index`]; `None` where the service is not published.
    pub environments: [Option<Environment>; 3],
}

/// The APIs a service publishes to one environment.
pub struct Environment {
    pub name: EnvironmentName,
    pub router: Router<Arc<Api>>,
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
    pub backend: Backend,
}

/// A declared header or query parameter that the gateway checks or fills in.
pub struct Parameter {
    pub name: String,
    pub position: ParameterPosition,
    pub required: bool,
    pub default: Option<String>,
}

pub enum Backend {
    Http(HttpBackend),
    Mock(MockBackend),
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

impl Snapshot {
    /// Compiles a validated configuration. Errors here mean the configuration changed its
    /// mind between validation and compilation, such as an environment variable unset.
    pub fn compile(config: &Config) -> anyhow::Result<Snapshot> {
        let mut hosts = HashMap::new();
        let mut services = Vec::with_capacity(config.services.len());
        for (index, service) in config.services.iter().enumerate() {
            for domain in &service.default_domains {
                hosts.insert(
                    domain.clone(),
                    HostEntry {
                        service: index,
                        protocol: service.protocol,
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
                        mapping,
                    },
                );
            }
            services.push(compile_service(service)?);
        }
        let limits = &config.server.limits;
        Ok(Snapshot {
            hosts,
            services,
            max_body_bytes: (limits.max_body_bytes > 0).then_some(limits.max_body_bytes),
            access_log: config.server.access_log.enabled,
        })
    }

    /// Returns what a lower-case host name without port leads to.
    pub fn host(&self, host: &str) -> Option<(&HostEntry, &Service)> {
        let entry = self.hosts.get(host)?;
        Some((entry, &self.services[entry.service]))
    }
}

fn compile_service(service: &config::ServiceConfig) -> anyhow::Result<Service> {
    let apis: Vec<Arc<Api>> = service
        .apis
        .iter()
        .map(|api| compile_api(api).map(Arc::new))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("service `{}`", service.id))?;
    let mut environments: [Option<Environment>; 3] = [None, None, None];
    for (name, env) in &service.environments {
        let name = EnvironmentName::parse(name).ok_or_else(|| anyhow!("environment `{name}`"))?;
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
            builder
                .insert(&pattern, api_config.method, apis[index].clone())
                .map_err(|e| anyhow!("API `{}`: {e}", api_config.id))?;
        }
        let router = builder.build();
        environments[name.index()] = Some(Environment { name, router });
    }
    Ok(Service {
        id: service.id.clone(),
        name: service.name.clone(),
        environments,
    })
}

fn compile_api(api: &ApiConfig) -> anyhow::Result<Api> {
    let backend = match &api.backend {
        BackendConfig::Http(http) => Backend::Http(compile_http_backend(http)?),
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
    let parameters = api
        .parameters
        .iter()
        .filter(|p| {
            matches!(
                p.position,
                ParameterPosition::Header | ParameterPosition::Query
            )
        })
        .filter(|p| p.required || p.default.is_some())
        .map(|p| Parameter {
            name: p.name.clone(),
            position: p.position,
            required: p.required,
            default: p.default.clone(),
        })
        .collect();
    Ok(Api {
        id: api.id.clone(),
        id_header: HeaderValue::from_str(&api.id)
            .with_context(|| format!("API id `{}` as a header value", api.id))?,
        name: api.name.clone(),
        path: api.path.clone(),
        timeout: Duration::from_secs(api.timeout_secs),
        parameters,
        backend,
    })
}

fn compile_http_backend(http: &config::HttpBackendConfig) -> anyhow::Result<HttpBackend> {
    let uri: Uri = http.url.parse()?;
    let parts = uri.into_parts();
    let authority = parts.authority.context("backend URL without host")?;
    let mut headers = Vec::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        let value = config::resolve_secret(value).map_err(|e| anyhow!(e))?;
        headers.push((
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        ));
    }
    Ok(HttpBackend {
        scheme: parts.scheme.unwrap_or(UriScheme::HTTP),
        host_value: HeaderValue::from_str(authority.as_str())?,
        authority,
        host_header: http.host_header,
        path: PathTemplate::parse(&http.path).map_err(|e| anyhow!(e))?,
        empty_path: http.empty_path,
        method: http.method.and_then(ApiMethod::to_http),
        headers,
        failure_log: LogThrottle::new(Duration::from_secs(1)),
    })
}
