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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    WatchOptions,
};
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
        .with_timeout(Duration::from_secs(
            config.connect_timeout_secs.max(1).saturating_mul(2),
        ))
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

/// The largest instance value read; larger ones are left out with a warning.
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Keys read per request when the gateway reads the whole prefix: at etcd's default limit of
/// 1.5 MiB per value, a page stays under `MAX_MESSAGE_BYTES`.
const PAGE_KEYS: i64 = 32;
/// The largest response accepted from etcd: a page of keys, or a batch of watch events.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Watch events that arrive this close together are applied together.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Starts watching the registry's prefix; the task runs until it is aborted.
pub fn spawn_watch(config: EtcdRegistryConfig, registry: Arc<Registry>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = WatchState::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            let Err(error) = watch(&config, &registry, &mut state).await;
            // A watch that ran a while had reached etcd: start the backoff over. One that
            // fails at once keeps it growing.
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(100);
            }
            if !state.outage {
                state.outage = true;
                if state.reached {
                    tracing::warn!(
                        endpoints = ?config.endpoints, error = %format!("{error:#}"),
                        "cannot read the registry from etcd; serving the last known \
                         microservice instances until it can be read again"
                    );
                } else {
                    tracing::warn!(
                        endpoints = ?config.endpoints, error = %format!("{error:#}"),
                        "cannot read the registry from etcd, so no microservice instance is \
                         known and microservice APIs answer 404 until it can: check that etcd \
                         runs at `registry.endpoints` and the error above"
                    );
                }
            } else {
                tracing::debug!(error = %format!("{error:#}"), "etcd still cannot be read");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// The watch's state across reconnections.
#[derive(Default)]
struct WatchState {
    /// Set while etcd cannot be read, so an outage is logged once.
    outage: bool,
    /// Whether etcd was ever read: before that, there are no instances to fall back on.
    reached: bool,
    /// Keys already warned about, so a bad entry is logged once, not at every reconnection.
    warned: HashSet<String>,
}

/// Returns the first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Reads the prefix page by page, at one revision; returns the instances and that revision.
async fn read_prefix(
    client: &Client,
    config: &EtcdRegistryConfig,
    warned: &mut HashSet<String>,
) -> anyhow::Result<(BTreeMap<String, UpstreamNodeConfig>, i64)> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let end = prefix_end(config.prefix.as_bytes());
    let mut start = config.prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut known = BTreeMap::new();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(PAGE_KEYS);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = kv
            .get(start.clone(), Some(options))
            .await
            .context("cannot read the instances")?;
        if revision == 0 {
            revision = page.header().map_or(0, |header| header.revision());
        }
        for entry in page.kvs() {
            if let Some(instance) = parse(&config.prefix, entry.key(), entry.value(), warned) {
                known.insert(String::from_utf8_lossy(entry.key()).into_owned(), instance);
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return Ok((known, revision)),
        }
    }
}

/// Reads the prefix, then applies its changes as they come; returns when the connection or
/// the watch fails.
async fn watch(
    config: &EtcdRegistryConfig,
    registry: &Registry,
    state: &mut WatchState,
) -> anyhow::Result<Infallible> {
    let client = connect(config).await?;
    let (mut known, revision) = read_prefix(&client, config, &mut state.warned).await?;
    apply(registry, &config.prefix, &known);
    state.reached = true;
    if std::mem::take(&mut state.outage) {
        tracing::info!(
            instances = known.len(),
            "etcd is back; microservice instances read again"
        );
    } else {
        tracing::info!(instances = known.len(), prefix = %config.prefix, "microservice instances read from etcd");
    }

    // Fragments keep a reply of many large events under the message limit.
    let options = WatchOptions::new()
        .with_prefix()
        .with_fragment()
        .with_start_revision(revision + 1);
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .watch(config.prefix.as_str(), Some(options))
        .await
        .context("cannot watch the instances")?;
    // Changes are applied `BATCH_WINDOW` after the first one not yet applied, so a burst of
    // registrations is grouped once rather than once per event, and a steady stream of
    // writes cannot hold changes back.
    let mut pending: Option<tokio::time::Instant> = None;
    loop {
        let message = match pending {
            Some(deadline) => match tokio::time::timeout_at(deadline, stream.message()).await {
                Ok(message) => message,
                Err(_) => {
                    apply(registry, &config.prefix, &known);
                    pending = None;
                    continue;
                }
            },
            None => stream.message().await,
        };
        // Changes received before a failure are kept: they are the last known state.
        let flush = |known: &BTreeMap<String, UpstreamNodeConfig>| {
            if pending.is_some() {
                apply(registry, &config.prefix, known);
            }
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                flush(&known);
                bail!("the watch stream ended");
            }
            Err(error) => {
                flush(&known);
                return Err(error.into());
            }
        };
        if response.canceled() {
            flush(&known);
            bail!("etcd cancelled the watch: {}", response.cancel_reason());
        }
        for event in response.events() {
            let Some(entry) = event.kv() else { continue };
            let key = String::from_utf8_lossy(entry.key()).into_owned();
            let instance = match event.event_type() {
                EventType::Put => parse(
                    &config.prefix,
                    entry.key(),
                    entry.value(),
                    &mut state.warned,
                ),
                EventType::Delete => {
                    state.warned.remove(&key);
                    None
                }
            };
            match instance {
                Some(instance) => known.insert(key, instance),
                None => known.remove(&key),
            };
            pending.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_WINDOW);
        }
    }
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

/// Reads one instance; a key or value of the wrong form is logged once and left out.
fn parse(
    prefix: &str,
    key: &[u8],
    value: &[u8],
    warned: &mut HashSet<String>,
) -> Option<UpstreamNodeConfig> {
    let key_text = String::from_utf8_lossy(key).into_owned();
    match check_instance(prefix, key, value) {
        Ok(instance) => {
            warned.remove(&key_text);
            Some(instance)
        }
        Err(problem) => {
            if warned.insert(key_text.clone()) {
                tracing::warn!(key = %key_text, "{problem}; the instance is left out");
            }
            None
        }
    }
}

/// Checks one etcd entry, explaining what is wrong with it.
fn check_instance(prefix: &str, key: &[u8], value: &[u8]) -> Result<UpstreamNodeConfig, String> {
    if split_key(prefix, key).is_none() {
        return Err(
            "an etcd key under the prefix is not {namespace}/{service}/{instance}".to_string(),
        );
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "an instance's value is {} bytes, over the limit of {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    let value: InstanceValue = serde_json::from_slice(value).map_err(|error| {
        // serde's messages quote the offending value, which can be large.
        format!(
            "an instance's value is not {{\"host\": ..., \"port\": ..., \"weight\": ...}}: {}",
            shorten(&error.to_string())
        )
    })?;
    if !config::is_node_host(&value.host) {
        return Err(format!(
            "an instance's host `{}` is not a host name or IP address",
            shorten(&value.host)
        ));
    }
    if value.port == 0 {
        return Err("an instance's port is 0".to_string());
    }
    if value.weight > 100 {
        return Err(format!("an instance's weight {} is over 100", value.weight));
    }
    Ok(UpstreamNodeConfig {
        host: value.host,
        port: value.port,
        weight: value.weight,
    })
}

/// Cuts text from an etcd value to 200 bytes for a log line.
fn shorten(text: &str) -> String {
    if text.len() <= 200 {
        return text.to_string();
    }
    let mut cut = 200;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
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

/// Checks the parts of a registration, so the key written is one the gateway reads as
/// meant: a `/` in a name would shift the key's parts into another microservice.
pub fn check_registration(registration: &Registration) -> anyhow::Result<()> {
    if !registration.prefix.starts_with('/') || !registration.prefix.ends_with('/') {
        bail!(
            "--prefix `{}` must start and end with `/`",
            registration.prefix
        );
    }
    for (option, value) in [
        ("--namespace", &registration.namespace),
        ("--service", &registration.service),
        ("--instance", &registration.instance),
    ] {
        if value.is_empty() || value.contains('/') {
            bail!("{option} `{value}` must be non-empty and without `/`");
        }
    }
    if !config::is_node_host(&registration.value.host) {
        bail!(
            "--host `{}` is not a host name or IP address",
            registration.value.host
        );
    }
    if registration.value.port == 0 {
        bail!("--port is 1 to 65535");
    }
    if registration.value.weight > 100 {
        bail!("--weight is 0 to 100");
    }
    if registration.ttl_secs < 2 {
        bail!("--ttl is at least 2 seconds");
    }
    Ok(())
}

/// Connects the `register` and `deregister` commands, with timeouts so that an etcd that
/// does not respond fails the command instead of hanging it.
async fn command_client(endpoints: &[String]) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("cannot reach etcd at {}", endpoints.join(", ")))
}

/// A lease that keeps the instance's key, with its renewal stream.
struct HeldLease {
    id: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

/// Grants a lease and writes the instance's key under it.
async fn put_under_lease(
    client: &mut Client,
    key: &str,
    value: &str,
    ttl_secs: i64,
) -> anyhow::Result<HeldLease> {
    let id = client.lease_grant(ttl_secs, None).await?.id();
    client
        .put(key, value, Some(PutOptions::new().with_lease(id)))
        .await?;
    let (keeper, answers) = client.lease_keep_alive(id).await?;
    Ok(HeldLease {
        id,
        keeper,
        answers,
    })
}

/// Renews a lease every `period`; returns when a renewal fails.
async fn renew(lease: &mut HeldLease, period: Duration) -> anyhow::Error {
    loop {
        if let Err(error) = lease.keeper.keep_alive().await {
            return error.into();
        }
        match tokio::time::timeout(period * 2, lease.answers.message()).await {
            Err(_) => return anyhow::anyhow!("etcd sent no response to a lease renewal in time"),
            Ok(Err(error)) => return error.into(),
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
            Ok(Ok(_)) => return anyhow::anyhow!("the lease expired"),
        }
        tokio::time::sleep(period).await;
    }
}

/// Registers an instance under a lease and renews the lease until `stop` resolves; then
/// revokes it, which removes the instance at once. When a renewal fails (etcd restarted or
/// unreachable), the instance is registered again under a new lease once etcd responds.
pub async fn register(
    registration: Registration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    check_registration(&registration)?;
    let unreachable = || format!("cannot reach etcd at {}", registration.endpoints.join(", "));
    let mut client = command_client(&registration.endpoints).await?;
    let key = instance_key(
        &registration.prefix,
        &registration.namespace,
        &registration.service,
        &registration.instance,
    );
    let value = serde_json::to_string(&registration.value)?;
    let ttl = registration.ttl_secs;
    let mut lease = put_under_lease(&mut client, &key, &value, ttl)
        .await
        .with_context(unreachable)?;
    tracing::info!(%key, %value, lease = lease.id, ttl_secs = ttl, "instance registered; renewing its lease until stopped");

    let period = Duration::from_secs((ttl / 3).max(1) as u64);
    tokio::pin!(stop);
    loop {
        let error = tokio::select! {
            error = renew(&mut lease, period) => error,
            () = &mut stop => {
                match client.lease_revoke(lease.id).await {
                    Ok(_) => tracing::info!(%key, "instance deregistered"),
                    Err(error) => tracing::warn!(
                        %key, %error, ttl_secs = ttl,
                        "cannot revoke the lease; the instance disappears when it expires"
                    ),
                }
                return Ok(());
            }
        };
        tracing::warn!(%key, error = %format!("{error:#}"), "lost the instance's lease; registering it again");
        let mut backoff = Duration::from_millis(200);
        lease = loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = &mut stop => return Ok(()),
            }
            match put_under_lease(&mut client, &key, &value, ttl).await {
                Ok(lease) => break lease,
                Err(error) => {
                    tracing::debug!(%key, error = %format!("{error:#}"), "cannot register the instance yet");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        tracing::info!(%key, lease = lease.id, "instance registered again");
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
    let mut client = command_client(endpoints).await?;
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

    fn parse(prefix: &str, key: &[u8], value: &[u8]) -> Option<UpstreamNodeConfig> {
        super::parse(prefix, key, value, &mut HashSet::new())
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
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
        assert!(parse("/p/", key, br#"{"host":"2130706433","port":80}"#).is_none());
        assert!(parse("/p/", key, br#"{"host":"127.0.0.1","port":0}"#).is_none());
        let huge = format!(
            r#"{{"host":"127.0.0.1","port":80,"pad":"{}"}}"#,
            "a".repeat(70_000)
        );
        assert!(parse("/p/", key, huge.as_bytes()).is_none());
    }
}
