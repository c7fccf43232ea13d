//! Checks that deserialized configuration makes sense, reporting every problem with its path.
//!
//! What is checked here cannot fail later: [`crate::snapshot::Snapshot::compile`] relies on it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::Uri;

use super::load::Report;
use super::model::*;
use crate::route::{PathPattern, PathTemplate, RouterBuilder};

/// Headers a mock cannot set: they would contradict the body the gateway sends or the
/// connection it keeps.
const MOCK_FRAMING_HEADERS: [HeaderName; 7] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::UPGRADE,
    http::header::TRAILER,
    http::header::TE,
    HeaderName::from_static("keep-alive"),
];

/// Maximum custom domains per service, as in the product.
const MAX_CUSTOM_DOMAINS: usize = 5;
/// Maximum custom path mappings per custom domain, as in the product.
const MAX_PATH_MAPPINGS: usize = 3;

/// Validates `config`, adding every problem found to `report`.
pub fn validate(config: &Config, report: &mut Report) {
    validate_server(&config.server, report);
    validate_upstreams(config, report);
    let custom_certificates = config
        .services
        .iter()
        .flat_map(|service| &service.custom_domains)
        .any(|domain| domain.certificate.is_some());
    if !config.server.listen_tls.is_empty() && config.server.tls.is_none() && !custom_certificates {
        report.push(
            "server.tls",
            "the HTTPS listeners need a certificate: set `server.tls` (the default \
             certificate) or give custom domains a `certificate`",
        );
    }
    super::access::validate(config, report);

    let mut service_ids = HashSet::new();
    let mut domains: HashMap<String, String> = HashMap::new();
    for (index, service) in config.services.iter().enumerate() {
        let path = report.service_path(index);
        if !service_ids.insert(service.id.as_str()) {
            report.push(
                format!("{path}.id"),
                format!("the service id `{}` is used twice", service.id),
            );
        }
        validate_service(service, &path, &mut domains, report);
    }
}

fn validate_upstreams(config: &Config, report: &mut Report) {
    let mut ids = HashSet::new();
    for (index, upstream) in config.upstreams.iter().enumerate() {
        let path = report.upstream_path(index);
        if !is_object_id(&upstream.id) {
            report.push(
                format!("{path}.id"),
                format!(
                    "the upstream id `{}` must be 1 to 50 letters, digits, `-`, `_` or `.`",
                    upstream.id
                ),
            );
        }
        if !ids.insert(upstream.id.as_str()) {
            report.push(
                format!("{path}.id"),
                format!("the upstream id `{}` is used twice", upstream.id),
            );
        }
        if upstream.nodes.is_empty() || upstream.nodes.len() > 200 {
            report.push(format!("{path}.nodes"), "an upstream has 1 to 200 nodes");
        }
        if upstream.nodes.iter().all(|node| node.weight == 0) && !upstream.nodes.is_empty() {
            report.push(
                format!("{path}.nodes"),
                "every node has weight 0, so no request could be served",
            );
        }
        validate_balance(
            upstream.retries,
            upstream.sticky.as_ref(),
            &upstream.health,
            &path,
            report,
        );
        validate_nodes(&upstream.nodes, &format!("{path}.nodes"), report);
    }
    validate_registry(&config.registry, report);
    validate_probe_targets(config, report);
    let known: HashSet<&str> = config.upstreams.iter().map(|u| u.id.as_str()).collect();
    for (service_index, service) in config.services.iter().enumerate() {
        for (api_index, api) in service.apis.iter().enumerate() {
            if let BackendConfig::Http(http) = &api.backend {
                if let Some(id) = &http.upstream {
                    if !known.contains(id.as_str()) && !report.is_unparsed_upstream(id) {
                        let service_path = report.service_path(service_index);
                        report.push(
                            format!(
                                "{}.backend.upstream",
                                report.api_path(&service_path, api_index)
                            ),
                            format!("no upstream has the id `{id}`"),
                        );
                    }
                }
            }
        }
    }
}

/// Checks that active checks can reach an upstream's nodes the way its APIs do: one scheme,
/// one `ca_file` and one `http2` setting among the APIs that use it.
fn validate_probe_targets(config: &Config, report: &mut Report) {
    for (index, upstream) in config.upstreams.iter().enumerate() {
        if !upstream.health.enable_active_check {
            continue;
        }
        let mut ways = HashSet::new();
        for api in config.services.iter().flat_map(|service| &service.apis) {
            if let BackendConfig::Http(http) = &api.backend {
                if http.upstream.as_deref() == Some(upstream.id.as_str()) {
                    let scheme = upstream_url_scheme(&http.url).unwrap_or(upstream.scheme);
                    ways.insert((scheme, http.ca_file.clone(), http.http2));
                }
            }
        }
        if ways.len() > 1 {
            report.push(
                format!("{}.health.enable_active_check", report.upstream_path(index)),
                format!(
                    "the APIs using upstream `{}` reach it in different ways (scheme, \
                     `ca_file` or `http2`), so active checks cannot reach it as all of them \
                     do: give those APIs the same settings, or use one upstream per setting",
                    upstream.id
                ),
            );
        }
    }
}

fn validate_nodes(nodes: &[UpstreamNodeConfig], path: &str, report: &mut Report) {
    let mut seen = HashSet::new();
    for (index, node) in nodes.iter().enumerate() {
        let node_path = format!("{path}[{index}]");
        validate_node(node, &node_path, report);
        if !seen.insert((node.host.as_str(), node.port)) {
            report.push(
                node_path,
                format!(
                    "`{}:{}` is listed twice: give each node once, with its weight",
                    node.host, node.port
                ),
            );
        }
    }
}

fn validate_node(node: &UpstreamNodeConfig, path: &str, report: &mut Report) {
    if node.weight > 100 {
        report.push(
            format!("{path}.weight"),
            format!("{} is out of range: weights are 0 to 100", node.weight),
        );
    }
    if !is_node_host(&node.host) {
        report.push(
            format!("{path}.host"),
            format!("`{}` is not a host name or IP address", node.host),
        );
    }
    if node.port == 0 {
        report.push(format!("{path}.port"), "the port is 1 to 65535");
    }
}

/// Checks the retries, stickiness and health settings of an upstream or a microservice
/// backend at `path`.
fn validate_balance(
    retries: usize,
    sticky: Option<&StickyConfig>,
    health: &HealthConfig,
    path: &str,
    report: &mut Report,
) {
    if retries > 100 {
        report.push(format!("{path}.retries"), "retries are 0 to 100");
    }
    if let Some(sticky) = sticky {
        let sticky_path = format!("{path}.sticky");
        match (&sticky.cookie, &sticky.header) {
            (Some(_), Some(_)) | (None, None) => report.push(
                &sticky_path,
                "give `cookie` (a cookie the gateway sets) or `header` (a header the client \
                 sends), not both",
            ),
            (Some(cookie), None) => {
                let valid = !cookie.is_empty()
                    && cookie
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !valid {
                    report.push(
                        format!("{sticky_path}.cookie"),
                        format!("`{cookie}` is not a cookie name: use letters, digits, `-`, `_` and `.`"),
                    );
                }
            }
            (None, Some(header)) => {
                if HeaderName::from_bytes(header.as_bytes()).is_err() {
                    report.push(
                        format!("{sticky_path}.header"),
                        format!("`{header}` is not a valid header name"),
                    );
                }
            }
        }
        if sticky.timeout_secs == 0 {
            report.push(
                format!("{sticky_path}.timeout_secs"),
                "the stickiness timeout is at least 1 second",
            );
        }
    }
    let health_path = format!("{path}.health");
    for (name, value) in [
        ("http_failure_threshold", health.http_failure_threshold),
        ("tcp_failure_threshold", health.tcp_failure_threshold),
        ("timeout_threshold", health.timeout_threshold),
    ] {
        if value > 254 {
            report.push(
                format!("{health_path}.{name}"),
                format!("{value} is out of range: 0 to 254, where 0 turns this count off"),
            );
        }
    }
    if !(1..=254).contains(&health.healthy_threshold) {
        report.push(
            format!("{health_path}.healthy_threshold"),
            format!("{} is out of range: 1 to 254", health.healthy_threshold),
        );
    }
    for (name, statuses) in [
        ("healthy_http_status", &health.healthy_http_status),
        ("unhealthy_http_status", &health.unhealthy_http_status),
    ] {
        if let Some(status) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
            report.push(
                format!("{health_path}.{name}"),
                format!("{status} is not an HTTP status (100 to 599)"),
            );
        }
    }
    if health.enable_active_check && health.healthy_http_status.is_empty() {
        report.push(
            format!("{health_path}.healthy_http_status"),
            "active checks need at least one healthy status",
        );
    }
    let check_path_ok = health.active_check_http_path.starts_with('/')
        && health
            .active_check_http_path
            .parse::<PathAndQuery>()
            .is_ok_and(|parsed| parsed.as_str() == health.active_check_http_path);
    if !check_path_ok {
        report.push(
            format!("{health_path}.active_check_http_path"),
            format!(
                "`{}` is not a URL path starting with `/`",
                health.active_check_http_path
            ),
        );
    }
    for (name, value) in [
        (
            "active_check_interval_secs",
            health.active_check_interval_secs,
        ),
        (
            "active_check_timeout_secs",
            health.active_check_timeout_secs,
        ),
    ] {
        if !(1..=300).contains(&value) {
            report.push(
                format!("{health_path}.{name}"),
                format!("{value} is out of range: 1 to 300 seconds"),
            );
        }
    }
    if health.unhealthy_timeout_secs == 0 || health.unhealthy_timeout_secs > 86_400 {
        report.push(
            format!("{health_path}.unhealthy_timeout_secs"),
            format!(
                "{} is out of range: 1 to 86400 seconds",
                health.unhealthy_timeout_secs
            ),
        );
    }
}

fn validate_registry(registry: &RegistryConfig, report: &mut Report) {
    match registry.kind {
        RegistryKind::Static => {
            for (key, given) in [
                ("endpoints", !registry.endpoints.is_empty()),
                ("prefix", registry.prefix.is_some()),
                (
                    "connect_timeout_secs",
                    registry.connect_timeout_secs.is_some(),
                ),
                ("username", registry.username.is_some()),
                ("password", registry.password.is_some()),
            ] {
                if given {
                    report.push(
                        format!("registry.{key}"),
                        "this applies to `type: etcd` registries; set `type: etcd` or remove it",
                    );
                }
            }
            let mut seen = HashSet::new();
            for (index, service) in registry.services.iter().enumerate() {
                let path = format!("registry.services[{index}]");
                if service.namespace.is_empty() || service.name.is_empty() {
                    report.push(&path, "a microservice needs a `namespace` and a `name`");
                }
                if !seen.insert((&service.namespace, &service.name)) {
                    report.push(
                        &path,
                        format!(
                            "the microservice `{}/{}` is listed twice",
                            service.namespace, service.name
                        ),
                    );
                }
                validate_nodes(&service.instances, &format!("{path}.instances"), report);
            }
        }
        RegistryKind::Etcd => {
            let etcd = registry.etcd().expect("an etcd registry");
            if !registry.services.is_empty() {
                report.push(
                    "registry.services",
                    "a `type: etcd` registry reads its instances from etcd: remove `services`, \
                     or set `type: static`",
                );
            }
            if cfg!(not(feature = "etcd")) {
                report.push(
                    "registry.type",
                    "this build has no etcd registry: build Tollgate with `--features etcd`",
                );
            }
            if etcd.endpoints.is_empty() {
                report.push(
                    "registry.endpoints",
                    "give at least one etcd endpoint, such as `http://127.0.0.1:2379`",
                );
            }
            for (index, endpoint) in etcd.endpoints.iter().enumerate() {
                let uri = endpoint.parse::<Uri>().ok();
                let ok = uri.as_ref().is_some_and(|uri| {
                    uri.host().is_some() && uri.path_and_query().is_none_or(|pq| pq.as_str() == "/")
                });
                let endpoint_path = format!("registry.endpoints[{index}]");
                if !ok {
                    report.push(
                        endpoint_path,
                        format!(
                            "`{endpoint}` is not an etcd endpoint such as `http://127.0.0.1:2379`"
                        ),
                    );
                } else if uri.is_some_and(|uri| uri.scheme_str() != Some("http")) {
                    // NOTE: the etcd client is built without TLS, so `https://` cannot connect.
                    report.push(
                        endpoint_path,
                        format!("`{endpoint}`: this version reaches etcd over `http://` only"),
                    );
                }
            }
            if !etcd.prefix.starts_with('/') || !etcd.prefix.ends_with('/') {
                report.push(
                    "registry.prefix",
                    format!("`{}` must start and end with `/`", etcd.prefix),
                );
            }
            if !(1..=300).contains(&etcd.connect_timeout_secs) {
                report.push(
                    "registry.connect_timeout_secs",
                    format!(
                        "{} is out of range: 1 to 300 seconds",
                        etcd.connect_timeout_secs
                    ),
                );
            }
            if etcd.password.is_some() && etcd.username.is_none() {
                report.push("registry.password", "a password needs a `username`");
            }
            if let Some(password) = &etcd.password {
                if let Err(message) = resolve_secret(password) {
                    report.push("registry.password", message);
                }
            }
        }
    }
}

/// Parses an IP address or a CIDR range; a single address is a range of one.
pub fn parse_ip_range(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Checks that a certificate chain and its key load and fit together.
fn validate_certificate(certificate: &CertificateConfig, path: &str, report: &mut Report) {
    if let Err(message) =
        crate::tls::load_certified_key(&certificate.cert_file, &certificate.key_file)
    {
        report.push(path, message);
    }
}

fn validate_server(server: &ServerConfig, report: &mut Report) {
    if let Some(secs) = server.backend_pool.connect_timeout_secs {
        if !(1..=MAX_BACKEND_TIMEOUT_SECS).contains(&secs) {
            report.push(
                "server.backend_pool.connect_timeout_secs",
                format!("{secs} is out of range: 1 to {MAX_BACKEND_TIMEOUT_SECS} seconds"),
            );
        }
    }
    if server.listen.is_empty() && server.listen_tls.is_empty() && server.listen_unix.is_empty() {
        report.push(
            "server.listen",
            "at least one listener is required in `listen`, `listen_tls` or `listen_unix`",
        );
    }
    for (key, addresses) in [
        ("listen", &server.listen),
        ("listen_tls", &server.listen_tls),
    ] {
        for (index, address) in addresses.iter().enumerate() {
            if address.parse::<SocketAddr>().is_err() {
                report.push(
                    format!("server.{key}[{index}]"),
                    format!("`{address}` is not an IP:PORT address, such as `127.0.0.1:8080`"),
                );
            }
        }
    }
    if let Some(certificate) = &server.tls {
        validate_certificate(certificate, "server.tls", report);
    }
    for (index, range) in server.trusted_proxies.iter().enumerate() {
        if parse_ip_range(range).is_none() {
            report.push(
                format!("server.trusted_proxies[{index}]"),
                format!("`{range}` is not an IP address or CIDR range, such as `10.0.0.0/8`"),
            );
        }
    }
    for (index, path) in server.listen_unix.iter().enumerate() {
        if path.as_os_str().is_empty() {
            report.push(
                format!("server.listen_unix[{index}]"),
                "the socket path is empty",
            );
        }
    }
    for (index, range) in server.backend_denied_ranges.iter().enumerate() {
        if parse_ip_range(range).is_none() {
            report.push(
                format!("server.backend_denied_ranges[{index}]"),
                format!("`{range}` is not an IP address or CIDR range, such as `169.254.0.0/16`"),
            );
        }
    }
    let limits = &server.limits;
    if limits.max_header_bytes < 8192 {
        report.push(
            "server.limits.max_header_bytes",
            format!("{} is below the minimum of 8192", limits.max_header_bytes),
        );
    }
    if limits.max_headers == 0 {
        report.push("server.limits.max_headers", "must be at least 1");
    }
    if limits.header_read_timeout_secs == 0 {
        report.push(
            "server.limits.header_read_timeout_secs",
            "must be at least 1",
        );
    }
}

fn validate_service(
    service: &ServiceConfig,
    path: &str,
    domains: &mut HashMap<String, String>,
    report: &mut Report,
) {
    if !is_object_id(&service.id) {
        report.push(
            format!("{path}.id"),
            format!(
                "the service id `{}` must be 1 to 50 letters, digits, `-`, `_` or `.`",
                service.id
            ),
        );
    }
    if !is_service_name(&service.name) {
        report.push(
            format!("{path}.name"),
            format!(
                "the service name `{}` must be 1 to 50 letters, digits or underscores",
                service.name
            ),
        );
    }
    if service.default_domains.is_empty() && service.custom_domains.is_empty() {
        report.push(
            path,
            "the service has no domain: add `default_domains` or `custom_domains`",
        );
    }
    for (index, domain) in service.default_domains.iter().enumerate() {
        let domain_path = format!("{path}.default_domains[{index}]");
        claim_domain(domain, &domain_path, domains, report);
    }
    if service.custom_domains.len() > MAX_CUSTOM_DOMAINS {
        report.push(
            format!("{path}.custom_domains"),
            format!("a service has at most {MAX_CUSTOM_DOMAINS} custom domains"),
        );
    }

    let mut published = HashSet::new();
    for name in service.environments.keys() {
        match EnvironmentName::parse(name) {
            Some(env) => {
                published.insert(env);
            }
            None => report.push(
                format!("{path}.environments.{name}"),
                format!("unknown environment `{name}`, expected `test`, `prepub` or `release`"),
            ),
        }
    }
    for (index, domain) in service.custom_domains.iter().enumerate() {
        let domain_path = format!("{path}.custom_domains[{index}]");
        validate_custom_domain(domain, &domain_path, &published, domains, report);
    }

    let mut api_ids = HashMap::new();
    let mut api_names = HashSet::new();
    let mut patterns = Vec::with_capacity(service.apis.len());
    for (index, api) in service.apis.iter().enumerate() {
        let api_path = report.api_path(path, index);
        if api_ids.insert(api.id.as_str(), index).is_some() {
            report.push(
                format!("{api_path}.id"),
                format!("the API id `{}` is used twice in this service", api.id),
            );
        }
        if !api_names.insert(api.name.as_str()) {
            report.push(
                format!("{api_path}.name"),
                format!("the API name `{}` is used twice in this service", api.name),
            );
        }
        patterns.push(validate_api(api, &api_path, report));
    }
    for (index, api) in service.apis.iter().enumerate() {
        let Some(business) = &api.oauth_business else {
            continue;
        };
        let known = service
            .apis
            .iter()
            .any(|other| other.id == business.authorization_api);
        if !known && !report.is_unparsed_api(path, &business.authorization_api) {
            report.push(
                format!(
                    "{}.oauth_business.authorization_api",
                    report.api_path(path, index)
                ),
                format!(
                    "no API of this service has the id `{}`",
                    business.authorization_api
                ),
            );
        }
    }

    for (name, env) in &service.environments {
        let env_path = format!("{path}.environments.{name}");
        let members: Vec<usize> = match &env.apis {
            None => (0..service.apis.len()).collect(),
            Some(ids) => ids
                .iter()
                .enumerate()
                .filter_map(|(index, id)| {
                    let found = api_ids.get(id.as_str()).copied();
                    if found.is_none() && !report.is_unparsed_api(path, id) {
                        report.push(
                            format!("{env_path}.apis[{index}]"),
                            format!("no API of this service has the id `{id}`"),
                        );
                    }
                    found
                })
                .collect(),
        };
        check_route_conflicts(service, &members, &patterns, &env_path, report);
        if env.requests_per_second == Some(0) {
            report.push(
                format!("{env_path}.requests_per_second"),
                "0 would refuse every request: give a positive number, or remove the key for \
                 no limit",
            );
        }
        for (id, limit) in &env.api_requests_per_second {
            let limit_path = format!("{env_path}.api_requests_per_second.{id}");
            match api_ids.get(id.as_str()) {
                None if report.is_unparsed_api(path, id) => {}
                None => report.push(
                    &limit_path,
                    format!("no API of this service has the id `{id}`"),
                ),
                Some(index) if !members.contains(index) => report.push(
                    &limit_path,
                    format!("the API `{id}` is not published to this environment"),
                ),
                Some(_) if *limit == 0 => report.push(
                    &limit_path,
                    "0 would refuse every request: give a positive number, or remove the key",
                ),
                Some(_) => {}
            }
        }
    }
}

/// Reports APIs of one environment that share a path and method.
fn check_route_conflicts(
    service: &ServiceConfig,
    members: &[usize],
    patterns: &[Option<PathPattern>],
    env_path: &str,
    report: &mut Report,
) {
    let mut builder = RouterBuilder::default();
    for &index in members {
        let Some(pattern) = &patterns[index] else {
            continue;
        };
        let api = &service.apis[index];
        if let Err(conflict) = builder.insert(pattern, api.method, index) {
            report.push(
                env_path,
                format!(
                    "API `{}` ({} {}): {conflict}",
                    api.id,
                    method_name(api.method),
                    api.path
                ),
            );
        }
    }
}

fn method_name(method: ApiMethod) -> String {
    method
        .to_http()
        .map_or_else(|| "ANY".to_string(), |m| m.to_string())
}

fn validate_custom_domain(
    domain: &CustomDomainConfig,
    path: &str,
    published: &HashSet<EnvironmentName>,
    domains: &mut HashMap<String, String>,
    report: &mut Report,
) {
    claim_domain(&domain.domain, &format!("{path}.domain"), domains, report);
    if let Some(certificate) = &domain.certificate {
        validate_certificate(certificate, &format!("{path}.certificate"), report);
    }
    if domain.force_https && domain.protocol == Some(FrontendProtocol::Http) {
        report.push(
            format!("{path}.force_https"),
            "a domain with `protocol: http` cannot redirect to HTTPS",
        );
    }
    if domain.path_mappings.len() > MAX_PATH_MAPPINGS {
        report.push(
            format!("{path}.path_mappings"),
            format!("a custom domain has at most {MAX_PATH_MAPPINGS} path mappings"),
        );
    }
    let mut prefixes = HashSet::new();
    for (index, mapping) in domain.path_mappings.iter().enumerate() {
        let mapping_path = format!("{path}.path_mappings[{index}]");
        if !mapping.path.starts_with('/') {
            report.push(
                format!("{mapping_path}.path"),
                format!("the mapping path `{}` must start with `/`", mapping.path),
            );
        }
        if !prefixes.insert(normalize_mapping_prefix(&mapping.path)) {
            report.push(
                format!("{mapping_path}.path"),
                format!("the mapping path `{}` is mapped twice", mapping.path),
            );
        }
        match EnvironmentName::parse(&mapping.environment) {
            None => report.push(
                format!("{mapping_path}.environment"),
                format!(
                    "unknown environment `{}`, expected `test`, `prepub` or `release`",
                    mapping.environment
                ),
            ),
            Some(env) if !published.contains(&env) => report.push(
                format!("{mapping_path}.environment"),
                format!(
                    "the service is not published to `{}`: add it under `environments`",
                    mapping.environment
                ),
            ),
            Some(_) => {}
        }
    }
}

/// Returns a custom mapping prefix without its trailing `/`, keeping `/` itself.
pub fn normalize_mapping_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn claim_domain(
    domain: &str,
    path: &str,
    domains: &mut HashMap<String, String>,
    report: &mut Report,
) {
    if !is_host_name(domain) {
        report.push(
            path,
            format!(
                "`{domain}` is not a host name: write it in lower case, without scheme, port or path"
            ),
        );
        return;
    }
    if let Some(first) = domains.insert(domain.to_string(), path.to_string()) {
        report.push(
            path,
            format!("the domain `{domain}` is already used at {first}"),
        );
    }
}

/// Validates one API; returns its parsed path when that is valid.
fn validate_api(api: &ApiConfig, path: &str, report: &mut Report) -> Option<PathPattern> {
    if !is_object_id(&api.id) {
        report.push(
            format!("{path}.id"),
            format!(
                "the API id `{}` must be 1 to 50 letters, digits, `-`, `_` or `.`; it is sent \
                 in the `X-Api-ID` header and written to the access log",
                api.id
            ),
        );
    }
    if api.name.is_empty() || api.name.chars().count() > 60 {
        report.push(
            format!("{path}.name"),
            "the API name must be 1 to 60 characters",
        );
    }
    if !(1..=MAX_BACKEND_TIMEOUT_SECS).contains(&api.timeout_secs) {
        report.push(
            format!("{path}.timeout_secs"),
            format!(
                "{} is out of range: the backend timeout is 1 to {MAX_BACKEND_TIMEOUT_SECS} seconds",
                api.timeout_secs
            ),
        );
    }
    validate_oauth(api, path, report);
    if let Some(control) = &api.ip_control {
        let entries = control.blocks.entries();
        if entries.is_empty() && control.kind == IpControlType::WhiteList {
            report.push(
                format!("{path}.ip_control.blocks"),
                "an empty white list rejects every client: list the addresses to admit",
            );
        }
        for entry in entries {
            if parse_ip_range(entry).is_none() {
                report.push(
                    format!("{path}.ip_control.blocks"),
                    format!("`{entry}` is not an IP address or CIDR range"),
                );
            }
        }
    }
    // NOTE: CORS and WebSocket APIs are rejected here until the gateway implements them, so
    // that no configured protection is silently skipped.
    let key_pair = &api.key_pair;
    if api.auth != AuthType::Secret && (key_pair.sign_request_target || key_pair.require_digest) {
        report.push(
            format!("{path}.key_pair"),
            "these options apply to key-pair APIs only: set `auth: SECRET` or remove them",
        );
    }
    if let Some(plugin) = &api.cors_plugin {
        for (index, origin) in plugin.allow_origin.iter().enumerate() {
            if let Err(message) = crate::pipeline::cors::OriginRule::parse(origin) {
                report.push(format!("{path}.cors_plugin.allow_origin[{index}]"), message);
            }
        }
        for (index, method) in plugin.allow_methods.iter().enumerate() {
            if http::Method::from_bytes(method.as_bytes()).is_err() {
                report.push(
                    format!("{path}.cors_plugin.allow_methods[{index}]"),
                    format!("`{method}` is not a method"),
                );
            }
        }
        for (key, names) in [
            ("allow_headers", &plugin.allow_headers),
            ("expose_headers", &plugin.expose_headers),
        ] {
            for (index, name) in names.iter().enumerate() {
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    report.push(
                        format!("{path}.cors_plugin.{key}[{index}]"),
                        format!("`{name}` is not a valid header name"),
                    );
                }
            }
        }
    }
    if api.protocol == ApiProtocol::Websocket && matches!(api.backend, BackendConfig::Mock(_)) {
        report.push(
            format!("{path}.backend"),
            "a WEBSOCKET API needs a `ws://` or `wss://` backend, not a mock",
        );
    }

    let pattern = match PathPattern::parse(&api.path) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            report.push(format!("{path}.path"), message);
            None
        }
    };
    let frontend_variables = pattern.as_ref().map_or(&[][..], |p| p.variables());
    validate_parameters(api, frontend_variables, path, report);
    // The backend path may use the frontend's variables and parameters mapped to the path.
    let mut variables: Vec<String> = frontend_variables.to_vec();
    variables.extend(
        api.parameters
            .iter()
            .filter(|parameter| parameter.backend_position == Some(ParameterPosition::Path))
            .map(|parameter| {
                parameter
                    .backend_name
                    .clone()
                    .unwrap_or(parameter.name.clone())
            }),
    );
    let variables = &variables[..];
    for (index, constant) in api.constant_parameters.iter().enumerate() {
        let constant_path = format!("{path}.constant_parameters[{index}]");
        match constant.position {
            ParameterPosition::Header => {
                if HeaderName::from_bytes(constant.name.as_bytes()).is_err() {
                    report.push(
                        format!("{constant_path}.name"),
                        format!("`{}` is not a valid header name", constant.name),
                    );
                }
                if HeaderValue::from_str(&constant.value).is_err() {
                    report.push(
                        format!("{constant_path}.value"),
                        "the value is not a valid header value",
                    );
                }
            }
            ParameterPosition::Query => {}
            _ => report.push(
                format!("{constant_path}.position"),
                "constant parameters go in `header` or `query`",
            ),
        }
    }
    match &api.backend {
        BackendConfig::Http(backend) => {
            let websocket = api.protocol == ApiProtocol::Websocket;
            validate_http_backend(
                backend,
                websocket,
                variables,
                &format!("{path}.backend"),
                report,
            )
        }
        BackendConfig::Mock(mock) => validate_mock(mock, &format!("{path}.backend"), report),
        BackendConfig::Microservice(micro) => {
            let backend_path = format!("{path}.backend");
            if api.protocol == ApiProtocol::Websocket {
                report.push(
                    format!("{backend_path}.type"),
                    "microservice backends serve HTTP and HTTPS APIs, not WebSocket",
                );
            }
            validate_balance(
                micro.retries,
                micro.sticky.as_ref(),
                &micro.health,
                &backend_path,
                report,
            );
            // The path, method and headers are checked as an HTTP backend's are.
            let as_http = micro.as_http_backend();
            validate_http_backend(&as_http, false, variables, &backend_path, report);
        }
    }
    pattern
}

/// Checks the OAuth settings that cannot be answered with one of the product's 481 errors at
/// request time. A bad token location or public key is left to those errors, and logged at
/// load.
fn validate_oauth(api: &ApiConfig, path: &str, report: &mut Report) {
    match (&api.auth, &api.oauth_business) {
        (AuthType::Oauth, None) => report.push(
            format!("{path}.oauth_business"),
            "an `auth: OAUTH` API needs `oauth_business.authorization_api`: the id of the \
             authorization API whose keys verify its tokens",
        ),
        (AuthType::Oauth, Some(_)) | (_, None) => {}
        (_, Some(_)) => report.push(
            format!("{path}.oauth_business"),
            "`oauth_business` applies to `auth: OAUTH` APIs only",
        ),
    }
    if let Some(business) = &api.oauth_business {
        for (claim, header) in &business.claim_headers {
            if HeaderName::from_bytes(header.as_bytes()).is_err() {
                report.push(
                    format!("{path}.oauth_business.claim_headers.{claim}"),
                    format!("`{header}` is not a valid header name"),
                );
            }
        }
    }
    let Some(oauth) = &api.oauth else {
        return;
    };
    if api.auth != AuthType::None {
        report.push(
            format!("{path}.oauth"),
            "an authorization API is called without a token: set `auth: NONE`",
        );
    }
    if oauth.public_key.is_none() && oauth.jwks_url.is_none() {
        report.push(
            format!("{path}.oauth"),
            "give `public_key` (a JWK or JWK set) or `jwks_url`, or business APIs get 481 \
             Oauth found no public key.",
        );
    }
    if let Some(url) = &oauth.jwks_url {
        match url.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
            _ => report.push(
                format!("{path}.oauth.jwks_url"),
                format!("`{url}` is not an `http://` or `https://` URL"),
            ),
        }
    }
    if let Some(url) = &oauth.login_redirect_url {
        if url.parse::<Uri>().is_err() || HeaderValue::from_str(url).is_err() {
            report.push(
                format!("{path}.oauth.login_redirect_url"),
                format!("`{url}` is not a URL"),
            );
        }
    }
}

fn validate_parameters(api: &ApiConfig, variables: &[String], path: &str, report: &mut Report) {
    let mut seen = HashSet::new();
    for (index, parameter) in api.parameters.iter().enumerate() {
        let parameter_path = format!("{path}.parameters[{index}]");
        if !seen.insert((parameter.position, parameter.name.to_ascii_lowercase())) {
            report.push(
                format!("{parameter_path}.name"),
                format!("the parameter `{}` is declared twice", parameter.name),
            );
        }
        match parameter.position {
            ParameterPosition::Header => {
                if HeaderName::from_bytes(parameter.name.as_bytes()).is_err() {
                    report.push(
                        format!("{parameter_path}.name"),
                        format!("`{}` is not a valid header name", parameter.name),
                    );
                }
                if let Some(default) = &parameter.default {
                    if HeaderValue::from_str(default).is_err() {
                        report.push(
                            format!("{parameter_path}.default"),
                            "the default is not a valid header value",
                        );
                    }
                }
            }
            ParameterPosition::Query => {}
            ParameterPosition::Path => {
                if !variables.contains(&parameter.name) {
                    report.push(
                        format!("{parameter_path}.name"),
                        format!(
                            "the path parameter `{}` has no `{{{}}}` in the path `{}`",
                            parameter.name, parameter.name, api.path
                        ),
                    );
                }
            }
            ParameterPosition::Body => {}
        }
        match parameter.backend_position {
            Some(ParameterPosition::Body) => report.push(
                format!("{parameter_path}.backend_position"),
                "a parameter can be sent to the backend in `header`, `query` or `path`, not `body`",
            ),
            Some(ParameterPosition::Header) => {
                let name = parameter.backend_name.as_ref().unwrap_or(&parameter.name);
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    report.push(
                        format!("{parameter_path}.backend_name"),
                        format!("`{name}` is not a valid header name"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn validate_http_backend(
    backend: &HttpBackendConfig,
    websocket: bool,
    variables: &[String],
    path: &str,
    report: &mut Report,
) {
    let scheme_only: [&str; 2] = if websocket {
        ["ws://", "wss://"]
    } else {
        ["http://", "https://"]
    };
    if backend.upstream.is_some()
        && !backend.url.is_empty()
        && !scheme_only.contains(&backend.url.as_str())
    {
        report.push(
            format!("{path}.url"),
            format!(
                "with `upstream`, `url` is left out or gives the scheme only (`{}`)",
                scheme_only[1]
            ),
        );
    }
    let url_check = match &backend.upstream {
        Some(_) if scheme_only.contains(&backend.url.as_str()) => {
            format!("{}upstream", backend.url).parse::<Uri>()
        }
        Some(_) => format!("{}upstream", scheme_only[0]).parse::<Uri>(),
        None => backend.url.parse::<Uri>(),
    };
    match url_check {
        Err(error) => report.push(
            format!("{path}.url"),
            format!("`{}` is not a URL: {error}", backend.url),
        ),
        Ok(uri) => {
            let (plain, secure) = if websocket {
                ("ws", "wss")
            } else {
                ("http", "https")
            };
            match uri.scheme_str() {
                Some(scheme) if scheme == plain && backend.ca_file.is_some() => report.push(
                    format!("{path}.ca_file"),
                    format!("`ca_file` applies to `{secure}://` backends only"),
                ),
                Some(scheme) if scheme == plain || scheme == secure => {}
                _ => report.push(
                    format!("{path}.url"),
                    format!(
                        "`{}` must start with `{plain}://` or `{secure}://`",
                        backend.url
                    ),
                ),
            }
            if websocket && backend.http2 {
                report.push(
                    format!("{path}.http2"),
                    "WebSocket backends are reached over HTTP/1.1",
                );
            }
            if uri.host().is_none_or(str::is_empty) {
                report.push(format!("{path}.url"), "the backend URL has no host");
            }
            let has_path = uri.path_and_query().is_some_and(|pq| pq.as_str() != "/");
            if has_path {
                report.push(
                    format!("{path}.url"),
                    "the backend URL must not hold a path or query: put the path in `path`",
                );
            }
        }
    }
    if !backend.path.is_empty() && !backend.path.starts_with('/') {
        report.push(
            format!("{path}.path"),
            format!("the backend path `{}` must start with `/`", backend.path),
        );
    }
    if let Some(file) = &backend.ca_file {
        if let Err(message) = crate::backend::http::load_roots(file) {
            report.push(format!("{path}.ca_file"), message);
        }
    }
    match PathTemplate::parse(&backend.path) {
        Err(message) => report.push(format!("{path}.path"), message),
        Ok(template) => {
            for name in template.variables() {
                if !variables.iter().any(|known| known == name) {
                    report.push(
                        format!("{path}.path"),
                        format!(
                            "the backend path uses `{{{name}}}`, which the frontend path does \
                             not capture"
                        ),
                    );
                }
            }
            // Captured values come from a path the client sent, so they are valid in a path;
            // a stand-in value shows whether the literal text is.
            let stand_ins: Vec<(&str, String)> = template
                .variables()
                .map(|name| (name, "x".to_string()))
                .collect();
            let mut rendered = String::new();
            template.render(&stand_ins, &mut rendered);
            let valid = rendered.is_ascii()
                && rendered
                    .parse::<PathAndQuery>()
                    .is_ok_and(|parsed| parsed.as_str() == rendered && parsed.query().is_none());
            if rendered.starts_with('/') && !valid {
                report.push(
                    format!("{path}.path"),
                    format!(
                        "the backend path `{}` holds characters that are not allowed in a URL \
                         path (spaces, `?`, `#` or non-ASCII): percent-encode them",
                        backend.path
                    ),
                );
            }
        }
    }
    for (name, value) in &backend.headers {
        let header_path = format!("{path}.headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            report.push(&header_path, format!("`{name}` is not a valid header name"));
        }
        match resolve_secret(value) {
            Err(message) => report.push(&header_path, message),
            Ok(text) if HeaderValue::from_str(&text).is_err() => {
                report.push(&header_path, "the value is not a valid header value");
            }
            Ok(_) => {}
        }
    }
}

fn validate_mock(mock: &MockBackendConfig, path: &str, report: &mut Report) {
    if !(200..=599).contains(&mock.status) {
        report.push(
            format!("{path}.status"),
            format!(
                "{} is not a final response status (200 to 599)",
                mock.status
            ),
        );
    }
    for (name, value) in &mock.headers {
        let header_path = format!("{path}.headers.{name}");
        match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => report.push(&header_path, format!("`{name}` is not a valid header name")),
            Ok(header) if MOCK_FRAMING_HEADERS.contains(&header) => report.push(
                &header_path,
                format!(
                    "`{name}` describes the connection or the body's framing, which the gateway \
                     sets itself; remove it"
                ),
            ),
            Ok(_) => {}
        }
        if HeaderValue::from_str(value).is_err() {
            report.push(&header_path, "the value is not a valid header value");
        }
    }
    match (&mock.body, &mock.body_file) {
        (Some(_), Some(_)) => report.push(path, "set `body` or `body_file`, not both"),
        (None, Some(file)) => match std::fs::metadata(file) {
            Err(error) => report.push(
                format!("{path}.body_file"),
                format!("cannot read `{}`: {error}", file.display()),
            ),
            Ok(metadata) if !metadata.is_file() => report.push(
                format!("{path}.body_file"),
                format!("`{}` is not a regular file", file.display()),
            ),
            Ok(_) => {}
        },
        _ => {}
    }
}

/// Reads a secret value from its configured source.
pub fn resolve_secret(value: &SecretValue) -> Result<String, String> {
    match value {
        SecretValue::Inline(text) => Ok(text.clone()),
        SecretValue::From(SecretSource::Env(name)) => std::env::var(name)
            .map_err(|_| format!("the environment variable `{name}` is not set or not UTF-8")),
        SecretValue::From(SecretSource::File(file)) => {
            let display = file.display();
            // A FIFO or a device could block or never end; a secret is a small regular file.
            let metadata = std::fs::metadata(file)
                .map_err(|error| format!("cannot read `{display}`: {error}"))?;
            if !metadata.is_file() {
                return Err(format!("`{display}` is not a regular file"));
            }
            if metadata.len() > MAX_SECRET_FILE_BYTES {
                return Err(format!(
                    "`{display}` is {} bytes; a secret file holds at most {MAX_SECRET_FILE_BYTES}",
                    metadata.len()
                ));
            }
            std::fs::read_to_string(file)
                .map(|text| {
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    text.strip_suffix('\r').unwrap_or(text).to_string()
                })
                .map_err(|error| format!("cannot read `{display}`: {error}"))
        }
    }
}

/// The largest secret file read, in bytes.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Service and API ids appear in response headers and log lines, so they are kept to a
/// character set that needs no escaping in either.
pub(super) fn is_object_id(id: &str) -> bool {
    (1..=50).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_service_name(name: &str) -> bool {
    (1..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for an IP address or a host name a node can have: lower-case DNS labels of 1 to 63
/// letters, digits and inner `-`, the last one not all digits. Some resolvers read
/// `2130706433` and `0177.0.0.1` as IP addresses, so these are not names.
pub fn is_node_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.len() <= 253
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

/// True for a lower-case DNS name of letters, digits, `-` and `.`.
pub fn is_host_name(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}
