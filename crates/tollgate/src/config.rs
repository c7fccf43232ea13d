//! The configuration file: its types, reading with every problem reported, and validation.

mod access;
mod load;
mod model;
mod validate;

pub use load::{finish, parse_str, read_file, Problem, Problems, Report};
pub use model::*;
pub use validate::{
    is_host_name, is_node_host, normalize_mapping_prefix, parse_ip_range, resolve_secret, validate,
};

use std::path::Path;

/// Reads, parses and validates a configuration file. Relative file paths in it are taken
/// relative to the file's own folder.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let (mut config, mut report) = read_file(path)?;
    if let Some(base) = path.parent() {
        resolve_relative_paths(&mut config, base);
    }
    validate(&config, &mut report);
    finish(config, report, &path.display().to_string())
}

/// Parses and validates configuration text; `source` names it in messages.
pub fn load_str(text: &str, source: &str) -> Result<Config, Problems> {
    let (config, mut report) = parse_str(text, source)?;
    validate(&config, &mut report);
    finish(config, report, source)
}

fn resolve_relative_paths(config: &mut Config, base: &Path) {
    let rebase = |file: &mut std::path::PathBuf| {
        if file.is_relative() {
            *file = base.join(&*file);
        }
    };
    let rebase_secret = |value: &mut SecretValue| {
        if let SecretValue::From(SecretSource::File(file)) = value {
            rebase(file);
        }
    };
    let rebase_certificate = |certificate: &mut Option<CertificateConfig>| {
        if let Some(certificate) = certificate {
            rebase(&mut certificate.cert_file);
            rebase(&mut certificate.key_file);
        }
    };
    rebase_certificate(&mut config.server.tls);
    for domain in config
        .services
        .iter_mut()
        .flat_map(|service| &mut service.custom_domains)
    {
        rebase_certificate(&mut domain.certificate);
    }
    for key in &mut config.key_pairs {
        rebase_secret(&mut key.secret_key);
    }
    match &mut config.counters {
        CountersConfig::Local { quota_file } => rebase(quota_file),
        CountersConfig::Redis(redis) => {
            redis.url.iter_mut().for_each(rebase_secret);
            redis.cluster_nodes.iter_mut().for_each(rebase_secret);
        }
    }
    for api in config
        .services
        .iter_mut()
        .flat_map(|service| &mut service.apis)
    {
        match &mut api.backend {
            BackendConfig::Mock(mock) => {
                if let Some(file) = &mut mock.body_file {
                    rebase(file);
                }
            }
            BackendConfig::Http(http) => {
                http.headers.values_mut().for_each(rebase_secret);
                if let Some(file) = &mut http.ca_file {
                    rebase(file);
                }
            }
            BackendConfig::Microservice(micro) => {
                micro.headers.values_mut().for_each(rebase_secret);
            }
        }
    }
    config.registry.password.iter_mut().for_each(rebase_secret);
}
