//! The backend address guard: address ranges the gateway never connects to.
//!
//! Backend names are resolved by a resolver that drops denied addresses, so the check holds
//! for the addresses actually dialled, after DNS, and a name that resolves only to denied
//! addresses fails with [`DeniedAddress`]. Backends written as IP addresses are checked
//! before the request. The default list contains the link-local ranges, where cloud metadata
//! services live, and the metadata addresses outside them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use ipnet::IpNet;
use tower_service::Service;

use crate::pipeline::BoxError;

/// The ranges denied by default: IPv4 and IPv6 link-local (including 169.254.169.254), and
/// the metadata addresses 100.100.100.200 and fd00:ec2::254.
pub const DEFAULT_DENIED: [&str; 4] = [
    "169.254.0.0/16",
    "fe80::/10",
    "100.100.100.200/32",
    "fd00:ec2::254/128",
];

/// Every address of a backend name is denied.
#[derive(Debug, thiserror::Error)]
#[error("every address of `{name}` is in a denied backend range")]
pub struct DeniedAddress {
    pub name: String,
}

/// The denied backend ranges.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    denied: Arc<Vec<IpNet>>,
}

impl AddressGuard {
    pub fn new(denied: Vec<IpNet>) -> AddressGuard {
        AddressGuard {
            denied: Arc::new(denied),
        }
    }

    /// Returns true when the gateway may connect to `ip`. IPv4 addresses written as IPv6
    /// (`::ffff:a.b.c.d`) are checked as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.denied.iter().any(|range| range.contains(&ip))
    }
}

/// The system resolver, with denied addresses removed from its results.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    guard: AddressGuard,
}

impl GuardedResolver {
    pub fn new(guard: AddressGuard) -> GuardedResolver {
        GuardedResolver {
            inner: GaiResolver::new(),
            guard,
        }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>;

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(BoxError::from)
    }

    fn call(&mut self, name: Name) -> Resolving {
        let resolving = self.inner.call(name.clone());
        let guard = self.guard.clone();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = resolving
                .await?
                .filter(|address| guard.allows(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(DeniedAddress {
                    name: name.as_str().to_string(),
                }
                .into());
            }
            Ok(addresses.into_iter())
        })
    }
}

/// Returns true when an error chain contains a [`DeniedAddress`].
pub fn is_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<DeniedAddress>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ranges_cover_metadata_addresses() {
        let guard = AddressGuard::new(DEFAULT_DENIED.iter().map(|r| r.parse().unwrap()).collect());
        for denied in [
            "169.254.169.254",
            "fe80::1",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(!guard.allows(denied.parse().unwrap()), "{denied}");
        }
        for allowed in ["127.0.0.1", "10.0.0.1", "::1", "100.100.100.201"] {
            assert!(guard.allows(allowed.parse().unwrap()), "{allowed}");
        }
    }
}
