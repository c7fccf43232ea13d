//! Load balancing over backend nodes, for upstreams and for the instances of microservices.
//!
//! A [`Balancer`] keeps its nodes behind an atomic pointer, so a registry update swaps the
//! whole set while requests keep picking from the one they loaded. Nodes are chosen by smooth
//! weighted round robin: over many requests each node gets its share of the weights, spread
//! evenly rather than in runs. Weight 0 takes a node out; so does its health (see
//! [`health`]); session stickiness (see [`sticky`]) sends a client back to its node while
//! that node is up.

pub mod health;
pub mod sticky;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use sha2::{Digest, Sha256};

use crate::config::{self, UpstreamNodeConfig};
use crate::discovery::{Registry, ServiceKey};
pub use health::{HealthPolicy, NodeHealth, Outcome};
pub use sticky::Sticky;

/// A backend node: an upstream's node or a microservice's instance.
pub struct Node {
    pub authority: Authority,
    /// `host:port`, sent as Host unless the API sends the client's.
    pub host_value: HeaderValue,
    /// The node's address when it is given as an IP, for the address guard.
    pub literal_ip: Option<IpAddr>,
    pub weight: i64,
    /// The node's value in the stickiness cookie: a digest of its address, the same on every
    /// gateway and across reloads, so the cookie does not reveal backend addresses.
    pub token: String,
    pub health: NodeHealth,
}

impl Node {
    pub fn new(spec: &UpstreamNodeConfig) -> anyhow::Result<Node> {
        let host = if spec.host.contains(':') {
            format!("[{}]", spec.host)
        } else {
            spec.host.clone()
        };
        let authority: Authority = format!("{host}:{}", spec.port).parse()?;
        if authority.as_str().contains('@') {
            anyhow::bail!("`{}` is not a host name or IP address", spec.host);
        }
        // The guard checks literal IPs here: the connector does not resolve them.
        let literal_ip = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        let digest = Sha256::digest(authority.as_str().as_bytes());
        let token = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Node {
            literal_ip,
            host_value: HeaderValue::from_str(authority.as_str())?,
            authority,
            weight: i64::from(spec.weight),
            token,
            health: NodeHealth::default(),
        })
    }

    fn same_as(&self, other: &Node) -> bool {
        self.authority == other.authority && self.weight == other.weight
    }
}

/// The nodes a balancer chooses from at one moment.
pub struct NodeSet {
    pub nodes: Vec<Arc<Node>>,
    /// The running weights of the round robin, one per node.
    current: Mutex<Vec<i64>>,
}

impl NodeSet {
    fn new(nodes: Vec<Arc<Node>>) -> NodeSet {
        let current = Mutex::new(vec![0; nodes.len()]);
        NodeSet { nodes, current }
    }

    /// True when no node has a weight: nothing could ever be chosen.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|node| node.weight == 0)
    }

    /// Returns the node for the next attempt: `preferred` when it is up and not tried yet,
    /// otherwise the round robin's next among the nodes that are up and not in `tried`.
    pub fn pick(
        &self,
        tried: &[usize],
        preferred: Option<usize>,
        balancer: &Balancer,
        now: Instant,
    ) -> Option<usize> {
        let eligible = |index: usize| {
            let node = &self.nodes[index];
            node.weight > 0 && !tried.contains(&index) && balancer.is_up(node, now)
        };
        if let Some(index) = preferred.filter(|&index| eligible(index)) {
            return Some(index);
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let mut best: Option<usize> = None;
        for index in (0..self.nodes.len()).filter(|&index| eligible(index)) {
            let weight = self.nodes[index].weight;
            total += weight;
            current[index] += weight;
            if best.is_none_or(|best| current[index] > current[best]) {
                best = Some(index);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

/// A group of nodes with its balancing, stickiness and health settings.
pub struct Balancer {
    /// Names the group in logs: "upstream `shop`", "microservice `crgt/coupon`".
    pub label: String,
    /// How many other nodes a failed request may try.
    pub retries: usize,
    pub health: HealthPolicy,
    pub sticky: Option<Sticky>,
    /// The scheme of backends that name the upstream without a `url`.
    pub default_scheme: Scheme,
    /// The scheme, CA file and protocol of active checks.
    pub probe: ProbeTarget,
    /// The registry entry the nodes come from; `None` for an upstream's fixed nodes.
    pub registry_key: Option<ServiceKey>,
    nodes: ArcSwap<NodeSet>,
    /// The registry generation `nodes` was built from.
    generation: AtomicU64,
    /// Serializes rebuilds of `nodes`.
    rebuild: Mutex<()>,
    /// Set when a reload replaced the snapshot holding this balancer, to stop its active
    /// checks while requests still finish on it.
    retired: AtomicBool,
    /// Keeps the warnings about requests this balancer cannot serve to one a second.
    pub failure_log: crate::log_throttle::LogThrottle,
}

/// Settings shared by upstreams and microservice backends.
pub struct BalanceSettings<'a> {
    pub retries: usize,
    pub sticky: Option<&'a config::StickyConfig>,
    pub health: &'a config::HealthConfig,
    pub scheme: config::BackendScheme,
    pub probe: ProbeTarget,
    /// Appended to the stickiness cookie's name, so balancers that share settings (the
    /// microservices of one API) each have their own cookie.
    pub cookie_suffix: Option<String>,
}

/// The way active checks reach nodes: as the APIs that use them do.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub scheme: Scheme,
    /// Certificate authorities trusted beside the system's, for `https`.
    pub ca_file: Option<std::path::PathBuf>,
    pub http2: bool,
}

impl Balancer {
    pub fn new(
        label: String,
        settings: BalanceSettings<'_>,
        nodes: Vec<Node>,
        registry_key: Option<ServiceKey>,
    ) -> anyhow::Result<Balancer> {
        let sticky = settings
            .sticky
            .map(|sticky| Sticky::new(sticky, settings.cookie_suffix.as_deref()))
            .transpose()?;
        Ok(Balancer {
            label,
            retries: settings.retries,
            health: HealthPolicy::new(settings.health),
            sticky,
            default_scheme: settings.scheme.uri_scheme(),
            probe: settings.probe,
            registry_key,
            nodes: ArcSwap::from_pointee(NodeSet::new(nodes.into_iter().map(Arc::new).collect())),
            generation: AtomicU64::new(0),
            rebuild: Mutex::new(()),
            retired: AtomicBool::new(false),
            failure_log: crate::log_throttle::LogThrottle::new(std::time::Duration::from_secs(1)),
        })
    }

    /// Returns the nodes to choose from now.
    pub fn nodes(&self) -> Arc<NodeSet> {
        self.nodes.load_full()
    }

    /// Brings a microservice's nodes up to date with its registry entry. Nodes whose
    /// address and weight did not change keep their health.
    pub fn sync(&self, registry: &Registry) {
        let Some(key) = &self.registry_key else {
            return;
        };
        let generation_of = |entry: &Option<Arc<crate::discovery::Entry>>| {
            entry.as_ref().map_or(0, |entry| entry.generation)
        };
        if generation_of(&registry.get(key)) == self.generation.load(Ordering::Acquire) {
            return;
        }

        // Read again under the lock, so a slower rebuild never stores an older entry.
        let _rebuilding = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let entry = registry.get(key);
        let generation = generation_of(&entry);
        if generation == self.generation.load(Ordering::Acquire) {
            return;
        }
        let fresh: Vec<Node> = entry
            .iter()
            .flat_map(|entry| entry.instances.iter())
            .filter_map(|spec| match Node::new(spec) {
                Ok(node) => Some(node),
                Err(error) => {
                    tracing::warn!(
                        balancer = %self.label, host = %spec.host, port = spec.port, %error,
                        "a registered instance has an address that cannot be used; it is left out"
                    );
                    None
                }
            })
            .collect();

        let before = self.nodes.load().nodes.len();
        self.replace_nodes(fresh);
        self.generation.store(generation, Ordering::Release);
        let after = self.nodes.load().nodes.len();
        tracing::debug!(balancer = %self.label, before, after, "nodes rebuilt from the registry");
    }

    /// Takes over the health of `old`'s nodes, for the nodes both have: a reload does not
    /// bring back a node that was out. A microservice takes over its instances as well.
    pub fn inherit(&self, old: &Balancer) {
        if let (Some(sticky), Some(old_sticky)) = (&self.sticky, &old.sticky) {
            sticky.adopt(old_sticky);
        }
        if self.registry_key.is_some() {
            if self.registry_key == old.registry_key {
                self.nodes.store(old.nodes.load_full());
                self.generation
                    .store(old.generation.load(Ordering::Acquire), Ordering::Release);
                self.adapt_health();
            }
            return;
        }
        let old_nodes = old.nodes.load_full();
        let mine = self.nodes.load_full();
        let nodes = mine
            .nodes
            .iter()
            .map(|node| {
                old_nodes
                    .nodes
                    .iter()
                    .find(|old| old.same_as(node))
                    .cloned()
                    .unwrap_or_else(|| node.clone())
            })
            .collect();
        self.nodes.store(Arc::new(NodeSet::new(nodes)));
        self.adapt_health();
    }

    /// Brings the inherited health in line with this balancer's policy: without active
    /// checks nothing would bring back a node they took out, and a shorter unhealthy
    /// timeout applies to outages already running.
    fn adapt_health(&self) {
        let now = Instant::now();
        for node in &self.nodes.load().nodes {
            if node.health.adapt(&self.health, now) {
                tracing::info!(
                    balancer = %self.label, node = %node.authority,
                    "node back in: active health checks are off after the reload"
                );
            }
        }
    }

    /// Stops the active checks of this balancer; requests may still use it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn replace_nodes(&self, fresh: Vec<Node>) {
        let current = self.nodes.load_full();
        let nodes = fresh
            .into_iter()
            .map(|node| {
                current
                    .nodes
                    .iter()
                    .find(|old| old.same_as(&node))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(node))
            })
            .collect();
        self.nodes.store(Arc::new(NodeSet::new(nodes)));
    }

    /// True when the node may take requests now.
    pub fn is_up(&self, node: &Node, now: Instant) -> bool {
        node.health.is_up(now, || {
            tracing::info!(
                balancer = %self.label, node = %node.authority,
                "node back in after the unhealthy timeout"
            );
        })
    }

    /// Counts the outcome of a real request in the node's passive health.
    pub fn report(&self, node: &Node, outcome: Outcome, now: Instant) {
        if self.health.passive {
            self.health
                .record_passive(&node.health, outcome, now, &self.label, &node.authority);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str) -> UpstreamNodeConfig {
        UpstreamNodeConfig {
            host: host.to_string(),
            port: 8080,
            weight: 10,
        }
    }

    #[test]
    fn node_addresses_feed_the_address_guard() {
        let v4 = Node::new(&spec("10.0.0.5")).unwrap();
        assert_eq!(v4.literal_ip, "10.0.0.5".parse().ok());
        let v6 = Node::new(&spec("::1")).unwrap();
        assert_eq!(v6.authority.as_str(), "[::1]:8080");
        assert_eq!(v6.literal_ip, "::1".parse().ok());
        let named = Node::new(&spec("backend.internal")).unwrap();
        assert_eq!(named.literal_ip, None);
        assert!(Node::new(&spec("x@169.254.169.254")).is_err());
    }

    #[test]
    fn round_robin_spreads_by_weight() {
        let nodes = [1, 2, 0]
            .iter()
            .map(|&weight| {
                let mut node = Node::new(&spec("10.0.0.5")).unwrap();
                node.weight = weight;
                node
            })
            .collect();
        let balancer = Balancer::new(
            "test".to_string(),
            BalanceSettings {
                retries: 0,
                sticky: None,
                health: &config::HealthConfig::default(),
                scheme: config::BackendScheme::Http,
                probe: ProbeTarget {
                    scheme: Scheme::HTTP,
                    ca_file: None,
                    http2: false,
                },
                cookie_suffix: None,
            },
            nodes,
            None,
        )
        .unwrap();
        let set = balancer.nodes();
        let now = Instant::now();
        let picks: Vec<usize> = (0..6)
            .map(|_| set.pick(&[], None, &balancer, now).unwrap())
            .collect();
        assert_eq!(picks, [1, 0, 1, 1, 0, 1]);
        assert_eq!(set.pick(&[0, 1], None, &balancer, now), None);
    }
}
