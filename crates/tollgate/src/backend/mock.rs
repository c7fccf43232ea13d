//! Mock backends: the configured status, headers and body.

use bytes::Bytes;
use http::Response;

use crate::error::GatewayError;
use crate::snapshot::{MockBackend, MockBody};

/// Builds the mock's response. A body file that cannot be read gives 481 `Mock config error.`,
/// with the cause returned for the log.
pub async fn respond(mock: &MockBackend) -> Result<Response<Bytes>, (GatewayError, String)> {
    let body = match &mock.body {
        MockBody::Inline(bytes) => bytes.clone(),
        MockBody::File(path) => match tokio::fs::read(path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                let cause = format!(
                    "cannot read the mock body file `{}`: {error}",
                    path.display()
                );
                return Err((GatewayError::MockConfig, cause));
            }
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = mock.status;
    *response.headers_mut() = mock.headers.clone();
    Ok(response)
}
