//! The etcd registry: microservice instances registered under leases, watched by prefix.
//!
//! An instance is the key `{prefix}{namespace}/{service}/{instance}`, bound to a lease, with
//! the value `{"host": "10.0.0.5", "port": 8080, "weight": 10}` (`weight` is optional, 10 by
//! default; other fields are ignored). An instance that stops renewing its lease disappears
//! when the lease expires.
//!
//! The gateway reads the prefix once, then watches it from the next revision, so a change
//! reaches the balancers as soon as etcd reports it. When etcd cannot be reached, the last
//! known instances keep serving, the outage is logged once, and the gateway reconnects with
//! a backoff of up to two seconds. On reconnection it reads the prefix again, so it catches
//! up with whatever changed meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{Registry, ServiceKey};
use crate::config::{self, EtcdRegistryConfig, UpstreamNodeConfig};

/// The value stored for one instance.
#[derive(Debug, Deserialize, Serialize)]
pub struct InstanceValue {
    pub host: String,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    10
}

/// Returns the key of one instance.
pub fn instance_key(prefix: &str, namespace: &str, service: &str, instance: &str) -> String {
    format!("{prefix}{namespace}/{service}/{instance}")
}

async fn connect(config: &EtcdRegistryConfig) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .with_timeout(Duration::from_secs(config.connect_timeout_secs.max(1) * 2))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true)
        // A member cut off from the cluster's leader cancels the watch instead of going
        // quiet, so the gateway moves to another endpoint.
        .with_require_leader(true);
    if let Some(user) = &config.username {
        let password = match &config.password {
            Some(password) => config::resolve_secret(password).map_err(|e| anyhow::anyhow!(e))?,
            None => String::new(),
        };
        options = options.with_user(user.clone(), password);
    }
    Ok(Client::connect(&config.endpoints, Some(options)).await?)
}

/// Starts watching the registry's prefix; the task runs until it is aborted.
pub fn spawn_watch(config: EtcdRegistryConfig, registry: Arc<Registry>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut outage = false;
        // Whether etcd was ever read: before that, there are no instances to fall back on.
        let mut reached = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            let Err(error) = watch(&config, &registry, &mut outage, &mut reached).await;
            // A watch that ran a while had reached etcd: start the backoff over. One that
            // fails at once keeps it growing.
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(100);
            }
            if !outage {
                outage = true;
                if reached {
                    tracing::warn!(
                        endpoints = ?config.endpoints, error = %format!("{error:#}"),
                        "etcd cannot be reached; serving the last known microservice instances \
                         until it is back"
                    );
                } else {
                    tracing::warn!(
                        endpoints = ?config.endpoints, error = %format!("{error:#}"),
                        "etcd cannot be reached, so no microservice instance is known and \
                         microservice APIs answer 404 until it is: check that etcd runs and \
                         `registry.endpoints`"
                    );
                }
            } else {
                tracing::debug!(error = %format!("{error:#}"), "etcd still cannot be reached");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// Reads the prefix, then applies its changes as they come; returns when the connection or
/// the watch fails.
async fn watch(
    config: &EtcdRegistryConfig,
    registry: &Registry,
    outage: &mut bool,
    reached: &mut bool,
) -> anyhow::Result<Infallible> {
    let mut client = connect(config).await?;
    let listing = client
        .get(
            config.prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .context("cannot read the instances")?;
    let revision = listing.header().map_or(0, |header| header.revision());

    let mut known: BTreeMap<String, UpstreamNodeConfig> = BTreeMap::new();
    for kv in listing.kvs() {
        if let Some(instance) = parse(&config.prefix, kv.key(), kv.value()) {
            known.insert(String::from_utf8_lossy(kv.key()).into_owned(), instance);
        }
    }
    apply(registry, &config.prefix, &known);
    *reached = true;
    if std::mem::take(outage) {
        tracing::info!(
            instances = known.len(),
            "etcd is back; microservice instances read again"
        );
    } else {
        tracing::info!(instances = known.len(), prefix = %config.prefix, "microservice instances read from etcd");
    }

    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = client
        .watch(config.prefix.as_str(), Some(options))
        .await
        .context("cannot watch the instances")?;
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            bail!("etcd cancelled the watch: {}", response.cancel_reason());
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match event.event_type() {
                EventType::Put => match parse(&config.prefix, kv.key(), kv.value()) {
                    Some(instance) => {
                        known.insert(key, instance);
                    }
                    None => {
                        known.remove(&key);
                    }
                },
                EventType::Delete => {
                    known.remove(&key);
                }
            }
            changed = true;
        }
        if changed {
            apply(registry, &config.prefix, &known);
        }
    }
    bail!("the watch stream ended")
}

/// Groups the known instances by microservice and hands them to the registry.
fn apply(registry: &Registry, prefix: &str, known: &BTreeMap<String, UpstreamNodeConfig>) {
    let mut services: HashMap<ServiceKey, Vec<UpstreamNodeConfig>> = HashMap::new();
    for (key, instance) in known {
        if let Some((service, _)) = split_key(prefix, key.as_bytes()) {
            services.entry(service).or_default().push(instance.clone());
        }
    }
    registry.replace(services);
}

/// Splits `{prefix}{namespace}/{service}/{instance}`.
fn split_key(prefix: &str, key: &[u8]) -> Option<(ServiceKey, String)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let mut parts = rest.splitn(3, '/');
    let (namespace, service, instance) = (parts.next()?, parts.next()?, parts.next()?);
    if namespace.is_empty() || service.is_empty() || instance.is_empty() {
        return None;
    }
    Some((
        (namespace.to_string(), service.to_string()),
        instance.to_string(),
    ))
}

/// Reads one instance; a key or value of the wrong form is logged and left out.
fn parse(prefix: &str, key: &[u8], value: &[u8]) -> Option<UpstreamNodeConfig> {
    let key_text = String::from_utf8_lossy(key);
    if split_key(prefix, key).is_none() {
        tracing::warn!(key = %key_text, "an etcd key under the prefix is not {{namespace}}/{{service}}/{{instance}}; it is left out");
        return None;
    }
    match serde_json::from_slice::<InstanceValue>(value) {
        Ok(value)
            if value.host.parse::<std::net::IpAddr>().is_err()
                && !config::is_host_name(&value.host) =>
        {
            tracing::warn!(key = %key_text, host = %value.host, "an instance's host is not a host name or IP address; it is left out");
            None
        }
        Ok(value) if value.weight <= 100 => Some(UpstreamNodeConfig {
            host: value.host,
            port: value.port,
            weight: value.weight,
        }),
        Ok(value) => {
            tracing::warn!(key = %key_text, weight = value.weight, "an instance's weight is over 100; it is left out");
            None
        }
        Err(error) => {
            tracing::warn!(
                key = %key_text, %error,
                "an instance's value is not {{\"host\": ..., \"port\": ..., \"weight\": ...}}; it is left out"
            );
            None
        }
    }
}

/// One instance to register by hand.
pub struct Registration {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub namespace: String,
    pub service: String,
    pub instance: String,
    pub value: InstanceValue,
    pub ttl_secs: i64,
}

/// Registers an instance under a lease and renews the lease until `stop` resolves; then
/// revokes it, which removes the instance at once.
pub async fn register(
    registration: Registration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    let unreachable = || format!("cannot reach etcd at {}", registration.endpoints.join(", "));
    let mut client = Client::connect(&registration.endpoints, Some(options))
        .await
        .with_context(unreachable)?;
    let lease = client
        .lease_grant(registration.ttl_secs, None)
        .await
        .with_context(unreachable)?
        .id();
    let key = instance_key(
        &registration.prefix,
        &registration.namespace,
        &registration.service,
        &registration.instance,
    );

    let value = serde_json::to_string(&registration.value)?;
    client
        .put(
            key.as_str(),
            value.as_str(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .context("cannot write the instance")?;
    tracing::info!(%key, %value, lease, ttl_secs = registration.ttl_secs, "instance registered; renewing its lease until stopped");
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease)
        .await
        .context("cannot renew the lease")?;

    let period = Duration::from_secs((registration.ttl_secs / 3).max(1) as u64);
    let renew = async {
        loop {
            keeper.keep_alive().await?;
            let answer = tokio::time::timeout(period * 2, answers.message())
                .await
                .context("etcd did not answer a lease renewal in time")??;
            match answer {
                Some(answer) if answer.ttl() > 0 => {}
                _ => bail!("the lease expired; the instance is gone"),
            }
            tokio::time::sleep(period).await;
        }
    };
    tokio::select! {
        result = renew => result,
        () = stop => {
            client.lease_revoke(lease).await.context("cannot revoke the lease")?;
            tracing::info!(%key, "instance deregistered");
            Ok(())
        }
    }
}

/// Removes an instance's key.
pub async fn deregister(
    endpoints: &[String],
    prefix: &str,
    namespace: &str,
    service: &str,
    instance: &str,
) -> anyhow::Result<bool> {
    let unreachable = || format!("cannot reach etcd at {}", endpoints.join(", "));
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    let mut client = Client::connect(endpoints, Some(options))
        .await
        .with_context(unreachable)?;
    let key = instance_key(prefix, namespace, service, instance);
    let deleted = client
        .delete(key.as_str(), None)
        .await
        .with_context(unreachable)?
        .deleted();
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_namespace_service_and_instance() {
        let prefix = "/tollgate/microservices/";
        assert_eq!(
            split_key(prefix, b"/tollgate/microservices/crgt/coupon/i-1"),
            Some((("crgt".into(), "coupon".into()), "i-1".into()))
        );
        assert_eq!(
            split_key(prefix, b"/tollgate/microservices/crgt/coupon"),
            None
        );
        assert_eq!(split_key(prefix, b"/tollgate/microservices/crgt//i"), None);
        assert_eq!(split_key(prefix, b"/other/crgt/coupon/i"), None);
    }

    #[test]
    fn values_need_host_and_port() {
        let key = b"/p/ns/s/i";
        let parsed = parse("/p/", key, br#"{"host":"127.0.0.1","port":80,"zone":"a"}"#).unwrap();
        assert_eq!(
            (parsed.host.as_str(), parsed.port, parsed.weight),
            ("127.0.0.1", 80, 10)
        );
        assert!(parse("/p/", key, br#"{"host":"127.0.0.1"}"#).is_none());
        assert!(parse("/p/", key, br#"{"host":"h","port":1,"weight":101}"#).is_none());
        // A host with user information would let a registrant steer around the address
        // guard, which checks the IP it finds in `host`.
        assert!(parse("/p/", key, br#"{"host":"x@169.254.169.254","port":80}"#).is_none());
        assert!(parse("/p/", key, br#"{"host":"a b","port":80}"#).is_none());
    }
}
