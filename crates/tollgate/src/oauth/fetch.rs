//! Fetching an authorization API's JWK set from its `jwks_url`, on a schedule.
//!
//! The last good set stays in use when a fetch fails. A failure is logged when fetches start
//! failing and again when one succeeds, not at every attempt.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::keys::KeySet;
use super::verify::OauthVerifier;

/// The largest JWK set read, in bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts refreshing `verifier`'s keys from its `jwks_url`, if it has one. The task ends
/// when the verifier is dropped, as after a reload.
pub fn spawn_refresh(verifier: &Arc<OauthVerifier>) {
    let Some(url) = verifier.jwks_url.clone() else {
        return;
    };
    let period = verifier.jwks_refresh;
    // Logs name the host and path only: a URL may carry credentials.
    let shown = format!(
        "{}{}",
        url.host().unwrap_or_default(),
        url.path_and_query().map_or("", |pq| pq.path())
    );
    let weak: Weak<OauthVerifier> = Arc::downgrade(verifier);
    tokio::spawn(async move {
        let client = match https_client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(url = %shown, %error, "cannot build the JWK set client");
                return;
            }
        };
        let mut failing = false;
        loop {
            let Some(verifier) = weak.upgrade() else {
                return;
            };
            match fetch(&client, &url).await {
                Ok(keys) => {
                    let count = keys.keys.len();
                    verifier.set_keys(keys);
                    if failing {
                        tracing::info!(api = %verifier.api_id, url = %shown, keys = count, "JWK set fetched again");
                    } else {
                        tracing::debug!(api = %verifier.api_id, url = %shown, keys = count, "JWK set fetched");
                    }
                    failing = false;
                }
                Err(error) => {
                    if !failing {
                        let kept = if verifier.has_keys() {
                            "the last good set stays in use"
                        } else {
                            "requests get 481 Oauth found no public key. until a fetch succeeds"
                        };
                        tracing::warn!(api = %verifier.api_id, url = %shown, %error, "JWK set fetch failed; {kept}");
                    }
                    failing = true;
                }
            }
            drop(verifier);
            tokio::time::sleep(period).await;
        }
    });
}

type FetchClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for `http://` and `https://` JWK set URLs, trusting the system's certificate
/// authorities.
fn https_client() -> Result<FetchClient, String> {
    let tls = crate::backend::http::client_tls_config(None)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn fetch(client: &FetchClient, url: &http::Uri) -> Result<KeySet, String> {
    let attempt = async {
        let response = client
            .get(url.clone())
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|error| format!("body: {error}"))?
            .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| "the body is not UTF-8".to_string())?;
        KeySet::parse(text)
    };
    tokio::time::timeout(FETCH_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no response within {} s", FETCH_TIMEOUT.as_secs()))?
}
