//! The response body the gateway sends: fixed bytes or a backend's streamed body, counted
//! as it goes, with the access-log line written when it ends or is dropped.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::access_log::LogRecord;

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The source of the response bytes.
#[derive(Debug)]
pub enum BodySource {
    /// Fixed bytes: an error, a mock; `None` once sent.
    Full(Option<Bytes>),
    /// A backend's body, streamed through.
    Backend(Incoming),
}

impl BodySource {
    /// Returns true when no more data will come.
    fn is_finished(&self) -> bool {
        match self {
            BodySource::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            BodySource::Backend(body) => body.is_end_stream(),
        }
    }
}

/// A response body that logs its request when done.
#[derive(Debug)]
pub struct ResponseBody {
    source: BodySource,
    log: Option<Box<LogRecord>>,
    ended: bool,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(mut log) = self.log.take() {
            // Fixed bytes go out in one write, and hyper drops them unsent for HEAD, 204 and
            // 304; only a backend stream cut short means the client left early.
            let cut_short =
                matches!(&self.source, BodySource::Backend(body) if !body.is_end_stream());
            if !self.ended && cut_short {
                log.error.get_or_insert_with(|| {
                    "client closed connection before the response body ended".into()
                });
            }
            log.emit();
        }
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(BodySource::Full(Some(bytes)))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::new(BodySource::Full(None))
    }

    pub fn backend(body: Incoming) -> ResponseBody {
        ResponseBody::new(BodySource::Backend(body))
    }

    fn new(source: BodySource) -> ResponseBody {
        ResponseBody {
            source,
            log: None,
            ended: false,
        }
    }

    /// Attaches the access-log record, written when the body ends or is dropped.
    pub fn set_log(&mut self, log: Box<LogRecord>) {
        self.log = Some(log);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.source {
            BodySource::Full(bytes) => bytes.take().map(|bytes| Ok(Frame::data(bytes))),
            BodySource::Backend(body) => {
                ready!(Pin::new(body).poll_frame(cx)).map(|frame| frame.map_err(BoxError::from))
            }
        };
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(log)) = (frame.data_ref(), this.log.as_mut()) {
                    log.bytes_sent += data.len() as u64;
                }
            }
            Some(Err(error)) => {
                if let Some(log) = this.log.as_mut() {
                    log.error = Some(format!("backend body failed: {error}"));
                    tracing::warn!(
                        request_id = %log.request_id,
                        %error,
                        "backend response body failed after the head was sent"
                    );
                }
                this.ended = true;
            }
            None => this.ended = true,
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_finished()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            BodySource::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodySource::Backend(body) => body.size_hint(),
        }
    }
}

/// Reads a request body whole, up to `limit` bytes: 413 over it. A body that stops arriving
/// means the client went away (499).
pub async fn read_whole<B>(body: B, limit: Option<u64>) -> Result<Bytes, crate::error::GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    use http_body_util::{BodyExt, Limited};
    let limit = limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(crate::error::GatewayError::BodyTooLarge)
        }
        Err(_) => Err(crate::error::GatewayError::ClientClosed),
    }
}
