//! WebSocket APIs: the handshake checks, and the relay of the upgraded connection.
//!
//! The handshake is an HTTP/1.1 request like any other, so it goes through routing, auth,
//! parameters and throttling, and the backend timeout covers it. When the backend answers
//! 101, both connections are upgraded and their bytes are copied both ways as they arrive,
//! frames and close frames included, with no timeout and no buffering of whole messages.
//! When either side closes or fails, the other side's connection is shut down.
//!
//! Relays are tracked, so a graceful shutdown waits for open WebSockets within its grace
//! period, and closes the ones still open when it ends.

use http::header::{HeaderMap, HeaderName};
use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ResponseBody;
use crate::access_log::RequestId;
use crate::error::GatewayError;

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");

/// Checks the headers the product requires of a WebSocket handshake.
pub fn check_handshake(headers: &HeaderMap) -> Result<(), GatewayError> {
    if !headers.contains_key(&SEC_WEBSOCKET_KEY) {
        return Err(GatewayError::WebSocketKeyMissing);
    }
    if !headers.contains_key(&SEC_WEBSOCKET_VERSION) {
        return Err(GatewayError::WebSocketVersionMissing);
    }
    Ok(())
}

/// The open WebSocket relays, for shutdown.
#[derive(Default)]
pub struct Relays {
    tracker: TaskTracker,
    /// Cancelled when the grace period of a shutdown is over.
    close: CancellationToken,
}

impl Relays {
    /// Waits until every relay has ended. Call it once the connections have finished, so no
    /// handshake in flight can start a relay after it returns.
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Closes the relays still open, and waits for them to end.
    pub async fn close_all(&self) {
        self.close.cancel();
        self.drain().await;
    }

    pub fn open(&self) -> usize {
        self.tracker.len()
    }
}

/// Returns the backend's 101 for the client and relays the two upgraded connections.
pub fn relay(
    mut backend_response: Response<Incoming>,
    client: OnUpgrade,
    request_id: RequestId,
    relays: &Relays,
) -> Response<ResponseBody> {
    let backend = hyper::upgrade::on(&mut backend_response);
    let close = relays.close.clone();
    relays.tracker.spawn(async move {
        let (client, backend) = match tokio::join!(client, backend) {
            (Ok(client), Ok(backend)) => (client, backend),
            (Err(error), _) | (_, Err(error)) => {
                tracing::info!(%request_id, %error, "WebSocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        let copied = tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => copied,
            () = close.cancelled() => {
                tracing::info!(%request_id, "WebSocket closed: the shutdown grace period is over");
                return;
            }
        };
        match copied {
            Ok((sent, received)) => tracing::debug!(
                %request_id, bytes_to_backend = sent, bytes_to_client = received,
                "WebSocket closed"
            ),
            Err(error) => tracing::debug!(%request_id, %error, "WebSocket ended with an error"),
        }
    });
    let (parts, _) = backend_response.into_parts();
    Response::from_parts(parts, ResponseBody::empty())
}
