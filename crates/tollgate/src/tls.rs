//! TLS for the HTTPS listeners: certificates chosen by SNI, and the rustls configurations.
//!
//! A custom domain with its own certificate gets it; every other name, default domains
//! included, gets the default certificate (`server.tls`). A client that sends no SNI is
//! refused during the handshake, as the product refuses it, because the gateway could not
//! tell which service it wants. Certificates are part of the configuration snapshot, so a
//! reload replaces them for new connections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pipeline::Gateway;

/// Returns the crypto provider of every TLS configuration of the gateway (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of one configuration snapshot.
#[derive(Default)]
pub struct CertificateStore {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateStore")
            .field("hosts", &self.by_host.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl CertificateStore {
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        self.by_host.insert(host.to_ascii_lowercase(), key);
    }

    /// Returns the certificate for a server name.
    pub fn find(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.by_host.get(&name).or(self.default.as_ref()).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.default.is_none()
    }
}

/// Reads a PEM certificate chain and its private key.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|error| format!("cannot read `{}`: {error}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| {
            format!(
                "`{}` is not a PEM certificate chain: {error}",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!("`{}` holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| format!("`{}` is not a PEM private key: {error}", key_file.display()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|error| format!("the certificate and key cannot be used together: {error}"))?;
    Ok(certified)
}

/// Chooses the certificate by SNI from the gateway's current snapshot.
pub struct SniResolver {
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.gateway.snapshot().certificates.find(name)
    }
}

/// Builds the rustls configuration of the HTTPS listeners: SNI certificates, and ALPN
/// offering HTTP/2 and HTTP/1.1.
pub fn server_config(gateway: Arc<Gateway>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { gateway }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
