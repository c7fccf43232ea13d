//! Validation of key pairs, usage plans, their bindings and the counter store.
//!
//! Bindings are checked as the product checks them when a plan is bound: a service uses one
//! binding level (whole environments, or single APIs), and a key may reach a service
//! environment or an API through one plan only, so every request has one plan or none.

use std::collections::{HashMap, HashSet};

use super::load::Report;
use super::model::*;
use super::validate::{is_object_id, resolve_secret};

pub fn validate(config: &Config, report: &mut Report) {
    let keys = validate_key_pairs(&config.key_pairs, report);
    validate_plans(config, &keys, report);
    validate_counters(&config.counters, report);
    if config.key_pair_auth.x_date_window_secs == 0 {
        report.push(
            "key_pair_auth.x_date_window_secs",
            "0 would refuse every X-Date signature: give the allowed clock difference in \
             seconds (900 in the product)",
        );
    }
}

fn is_key_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks the key pairs and returns their secret ids.
fn validate_key_pairs<'c>(keys: &'c [KeyPairConfig], report: &mut Report) -> HashSet<&'c str> {
    let mut ids = HashSet::new();
    for (index, key) in keys.iter().enumerate() {
        let path = format!("key_pairs[{index}]");
        let id = key.secret_id.as_str();
        if !(5..=50).contains(&id.len()) || !is_key_text(id) {
            report.push(
                format!("{path}.secret_id"),
                format!("the secret id `{id}` must be 5 to 50 letters, digits, `_` or `-`"),
            );
        }
        if !ids.insert(id) {
            report.push(
                format!("{path}.secret_id"),
                format!("the secret id `{id}` is used twice"),
            );
        }
        match resolve_secret(&key.secret_key) {
            Err(message) => report.push(format!("{path}.secret_key"), message),
            Ok(secret) if !(10..=50).contains(&secret.len()) || !is_key_text(&secret) => {
                report.push(
                    format!("{path}.secret_key"),
                    "the secret key must be 10 to 50 letters, digits, `_` or `-`",
                );
            }
            Ok(_) => {}
        }
    }
    ids
}

/// What a usage plan binds in one service.
#[derive(Default)]
struct ServiceBindings<'c> {
    /// The first binding of each level, as a path, for the mixed-levels message.
    environment_level: Option<String>,
    api_level: Option<String>,
    /// The plan through which each key reaches an environment or an API.
    key_routes: HashMap<(&'c str, &'c str, Option<&'c str>), &'c str>,
}

fn validate_plans(config: &Config, keys: &HashSet<&str>, report: &mut Report) {
    let services: HashMap<&str, &ServiceConfig> = config
        .services
        .iter()
        .map(|service| (service.id.as_str(), service))
        .collect();
    let mut plan_ids = HashSet::new();
    let mut bindings: HashMap<&str, ServiceBindings> = HashMap::new();
    for (index, plan) in config.usage_plans.iter().enumerate() {
        let path = format!("usage_plans[{index}]");
        if !is_object_id(&plan.id) {
            report.push(
                format!("{path}.id"),
                format!(
                    "the plan id `{}` must be 1 to 50 letters, digits, `-`, `_` or `.`",
                    plan.id
                ),
            );
        }
        if !plan_ids.insert(plan.id.as_str()) {
            report.push(
                format!("{path}.id"),
                format!("the plan id `{}` is used twice", plan.id),
            );
        }
        for (field, value) in [
            ("requests_per_second", plan.requests_per_second),
            ("quota", plan.quota),
        ] {
            if value != -1 && value < 1 {
                report.push(
                    format!("{path}.{field}"),
                    format!("{value} is not allowed: use -1 for no limit, or a positive number"),
                );
            }
        }
        let mut plan_keys = HashSet::new();
        for (key_index, id) in plan.key_pairs.iter().enumerate() {
            let key_path = format!("{path}.key_pairs[{key_index}]");
            if !keys.contains(id.as_str()) {
                report.push(&key_path, format!("no key pair has the secret id `{id}`"));
            }
            if !plan_keys.insert(id.as_str()) {
                report.push(&key_path, format!("the key pair `{id}` is listed twice"));
            }
        }
        for (binding_index, binding) in plan.bindings.iter().enumerate() {
            let binding_path = format!("{path}.bindings[{binding_index}]");
            let Some(service) = services.get(binding.service.as_str()) else {
                report.push(
                    format!("{binding_path}.service"),
                    format!("no service has the id `{}`", binding.service),
                );
                continue;
            };
            let Some(environment) = service.environments.get(&binding.environment) else {
                report.push(
                    format!("{binding_path}.environment"),
                    format!(
                        "the service `{}` is not published to `{}`",
                        service.id, binding.environment
                    ),
                );
                continue;
            };
            let seen = bindings.entry(service.id.as_str()).or_default();
            match &binding.apis {
                None => {
                    if let Some(api_level) = &seen.api_level {
                        report.push(
                            &binding_path,
                            format!(
                                "the service `{}` already has API-level plan bindings \
                                 ({api_level}); one service uses environment-level or \
                                 API-level bindings, not both",
                                service.id
                            ),
                        );
                    }
                    seen.environment_level.get_or_insert(binding_path.clone());
                    for key in &plan.key_pairs {
                        let route = (binding.environment.as_str(), key.as_str(), None);
                        check_key_route(seen, route, &plan.id, &binding_path, report);
                    }
                }
                Some(apis) => {
                    if let Some(environment_level) = &seen.environment_level {
                        report.push(
                            &binding_path,
                            format!(
                                "the service `{}` already has environment-level plan bindings \
                                 ({environment_level}); one service uses environment-level or \
                                 API-level bindings, not both",
                                service.id
                            ),
                        );
                    }
                    seen.api_level.get_or_insert(binding_path.clone());
                    if apis.is_empty() {
                        report.push(
                            format!("{binding_path}.apis"),
                            "list at least one API, or remove `apis` to bind the whole \
                             environment",
                        );
                    }
                    for (api_index, api) in apis.iter().enumerate() {
                        let api_path = format!("{binding_path}.apis[{api_index}]");
                        if !is_published(service, environment, api) {
                            report.push(
                                &api_path,
                                format!(
                                    "the service `{}` has no API `{api}` in `{}`",
                                    service.id, binding.environment
                                ),
                            );
                        }
                        for key in &plan.key_pairs {
                            let route = (
                                binding.environment.as_str(),
                                key.as_str(),
                                Some(api.as_str()),
                            );
                            check_key_route(seen, route, &plan.id, &api_path, report);
                        }
                    }
                }
            }
        }
    }
}

fn is_published(service: &ServiceConfig, environment: &EnvironmentConfig, api: &str) -> bool {
    service.apis.iter().any(|known| known.id == api)
        && environment
            .apis
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == api))
}

fn check_key_route<'c>(
    seen: &mut ServiceBindings<'c>,
    route: (&'c str, &'c str, Option<&'c str>),
    plan: &'c str,
    path: &str,
    report: &mut Report,
) {
    match seen.key_routes.insert(route, plan) {
        Some(other) if other != plan => {
            let (environment, key, api) = route;
            let target = match api {
                Some(api) => format!("the API `{api}` in `{environment}`"),
                None => format!("`{environment}`"),
            };
            report.push(
                path,
                format!(
                    "the key pair `{key}` already reaches {target} through the plan `{other}`; \
                     two plans sharing a key cannot be bound to the same place"
                ),
            );
        }
        _ => {}
    }
}

fn validate_counters(counters: &CountersConfig, report: &mut Report) {
    let CountersConfig::Redis(redis) = counters else {
        return;
    };
    match (&redis.url, redis.cluster_nodes.is_empty()) {
        (None, true) => report.push(
            "counters",
            "the Redis store needs `url`, or `cluster_nodes` for Redis Cluster",
        ),
        (Some(_), false) => report.push(
            "counters",
            "set `url` for one Redis server or `cluster_nodes` for Redis Cluster, not both",
        ),
        _ => {}
    }
    let urls = redis
        .url
        .iter()
        .map(|url| ("counters.url".to_string(), url))
        .chain(
            redis
                .cluster_nodes
                .iter()
                .enumerate()
                .map(|(index, url)| (format!("counters.cluster_nodes[{index}]"), url)),
        );
    for (path, url) in urls {
        match resolve_secret(url) {
            Err(message) => report.push(path, message),
            Ok(text) => {
                if let Err(error) = redis::Client::open(text.as_str()) {
                    report.push(
                        path,
                        format!("not a Redis URL such as `redis://127.0.0.1:6379`: {error}"),
                    );
                }
            }
        }
    }
    if redis.key_prefix.is_empty() || redis.key_prefix.contains(['{', '}']) {
        report.push(
            "counters.key_prefix",
            "the key prefix must be non-empty and hold no `{` or `}` (Tollgate adds its own \
             hash tags)",
        );
    }
    if redis.timeout_ms == 0 {
        report.push("counters.timeout_ms", "the timeout must be at least 1 ms");
    }
}
