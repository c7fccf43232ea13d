//! The registry of microservice instances: listed in the configuration file, or watched in
//! etcd.
//!
//! The registry maps a (namespace, microservice) key to its instances. Each entry carries a
//! generation that changes whenever its instances do, so a balancer rebuilds its nodes only
//! when its own entry changed.

#[cfg(feature = "etcd")]
pub mod etcd;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{RegistryConfig, RegistryKind, UpstreamNodeConfig};

/// A microservice: namespace code and name.
pub type ServiceKey = (String, String);

/// One microservice's instances.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub generation: u64,
    pub instances: Vec<UpstreamNodeConfig>,
}

#[derive(Default)]
pub struct Registry {
    entries: ArcSwap<HashMap<ServiceKey, Arc<Entry>>>,
    /// The last generation handed out; 0 means "no entry".
    generation: AtomicU64,
    /// Serializes replacements.
    writing: Mutex<()>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    pub fn get(&self, key: &ServiceKey) -> Option<Arc<Entry>> {
        self.entries.load().get(key).cloned()
    }

    /// Replaces every entry. Entries whose instances did not change keep their generation,
    /// so their balancers keep their nodes.
    pub fn replace(&self, mut services: HashMap<ServiceKey, Vec<UpstreamNodeConfig>>) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.entries.load_full();
        let mut entries = HashMap::with_capacity(services.len());
        for (key, mut instances) in services.drain() {
            instances.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
            // One address registered twice counts once, with the first weight.
            instances.dedup_by(|b, a| a.host == b.host && a.port == b.port);
            let entry = match current.get(&key) {
                Some(entry) if entry.instances == instances => entry.clone(),
                _ => {
                    tracing::info!(
                        namespace = %key.0, microservice = %key.1, instances = instances.len(),
                        "microservice instances changed"
                    );
                    Arc::new(Entry {
                        generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
                        instances,
                    })
                }
            };
            entries.insert(key, entry);
        }
        for key in current.keys().filter(|key| !entries.contains_key(*key)) {
            tracing::info!(
                namespace = %key.0, microservice = %key.1, instances = 0,
                "microservice instances changed"
            );
        }
        self.entries.store(Arc::new(entries));
    }

    /// Loads the static registry's services; an etcd registry is filled by its watch.
    pub fn load_static(&self, config: &RegistryConfig) {
        if config.kind == RegistryKind::Static {
            let mut map: HashMap<ServiceKey, Vec<UpstreamNodeConfig>> = HashMap::new();
            for service in &config.services {
                map.entry((service.namespace.clone(), service.name.clone()))
                    .or_default()
                    .extend(service.instances.iter().cloned());
            }
            self.replace(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> UpstreamNodeConfig {
        UpstreamNodeConfig {
            host: "127.0.0.1".into(),
            port,
            weight: 10,
        }
    }

    #[test]
    fn unchanged_entries_keep_their_generation() {
        let registry = Registry::default();
        let a = ("ns".to_string(), "a".to_string());
        let b = ("ns".to_string(), "b".to_string());
        registry.replace(HashMap::from([
            (a.clone(), vec![node(1), node(2)]),
            (b.clone(), vec![node(3)]),
        ]));
        let first_a = registry.get(&a).unwrap().generation;
        let first_b = registry.get(&b).unwrap().generation;
        registry.replace(HashMap::from([
            (a.clone(), vec![node(2), node(1)]),
            (b.clone(), vec![node(4)]),
        ]));
        assert_eq!(registry.get(&a).unwrap().generation, first_a);
        assert_ne!(registry.get(&b).unwrap().generation, first_b);
        registry.replace(HashMap::new());
        assert!(registry.get(&a).is_none());
    }
}
