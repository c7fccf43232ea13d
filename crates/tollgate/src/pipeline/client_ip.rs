//! Which address a request comes from, and the IP access control plugin.
//!
//! The client's address is the socket peer's, unless the peer is a trusted proxy
//! (`server.trusted_proxies`). Then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first address that is not one is the client; without `X-Forwarded-For`,
//! a valid `X-Real-IP` is used. A header from an untrusted peer is never believed, so a
//! client cannot choose its own address. A Unix socket peer has no address at all.

use std::net::IpAddr;

use http::header::HeaderMap;
use ipnet::IpNet;

use crate::config::IpControlType;
use crate::error::GatewayError;
use crate::snapshot::IpControl;

/// Returns the client's address, or `None` on a Unix socket.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    if let Some(client) = chain
        .iter()
        .rev()
        .map(|ip| ip.to_canonical())
        .find(|ip| !is_trusted(*ip, trusted))
    {
        return Some(client);
    }
    if chain.is_empty() {
        let real_ip = headers
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok());
        if let Some(real_ip) = real_ip {
            return Some(real_ip.to_canonical());
        }
    }
    // Every address is a trusted proxy: the first one is the furthest known.
    Some(chain.first().map_or(peer, |ip| ip.to_canonical()))
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|range| range.contains(&ip))
}

/// Applies an API's IP access control to the client's address.
pub fn check(control: &IpControl, client: Option<IpAddr>) -> Result<(), GatewayError> {
    let client = client.ok_or(GatewayError::ClientIpUnknown)?;
    let listed = control.blocks.iter().any(|range| range.contains(&client));
    let allowed = match control.kind {
        IpControlType::WhiteList => listed,
        IpControlType::BlackList => !listed,
    };
    if allowed {
        Ok(())
    } else {
        Err(GatewayError::ClientIpNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "1.2.3.4")]);
        assert_eq!(client_ip(Some(peer), &spoofed, &[]), Some(peer));
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(
            client_ip(Some(peer), &chain, &trusted),
            "198.51.100.7".parse().ok()
        );
        let real = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(
            client_ip(Some(peer), &real, &trusted),
            "198.51.100.8".parse().ok()
        );
        let garbage = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(Some(peer), &garbage, &trusted), Some(peer));
        assert_eq!(client_ip(None, &chain, &trusted), None);
    }
}
