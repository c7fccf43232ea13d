//! 100 MB bodies stream through the gateway both ways without being held whole.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::process::GatewayProcess;
use common::{client, full, TestBackend};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const TOTAL: usize = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Peak memory the gateway may reach while moving 100 MB each way. A debug build idles at
/// about 10 MiB, so a buffered body would exceed this by far.
const MAX_PEAK_RSS_KIB: u64 = 48 * 1024;

fn chunks() -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    futures_util::stream::iter((0..TOTAL / CHUNK).map(move |_| Ok(chunk.clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_both_ways() {
    let backend = TestBackend::start(
        |request: hyper::Request<hyper::body::Incoming>| async move {
            if request.uri().path() == "/download" {
                let body = StreamBody::new(chunks().map(|chunk| chunk.map(Frame::data)));
                return hyper::Response::new(body.map_err(Into::into).boxed());
            }
            let mut body = request.into_body();
            let mut received = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    received += data.len();
                }
            }
            hyper::Response::new(full(received.to_string()))
        },
    )
    .await;
    let yaml = format!(
        r#"
server:
  listen: ["127.0.0.1:0"]
  log_format: json
  limits: {{ max_body_bytes: 0 }}
services:
  - id: service-stream01
    name: stream
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
      - {{ id: api-stream01, name: stream, path: /, method: ANY, timeout_secs: 60,
           backend: {{ type: http, url: '{}' }} }}
"#,
        backend.url()
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let http = client();

    let upload = http
        .post(gateway.url("/release/upload"))
        .body(reqwest::Body::wrap_stream(chunks()))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    assert_eq!(upload.text().await.unwrap(), TOTAL.to_string());

    let download = http
        .get(gateway.url("/release/download"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut stream = download.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, TOTAL);

    let peak = gateway.peak_rss_kib();
    eprintln!("gateway peak RSS: {peak} KiB");
    assert!(peak < MAX_PEAK_RSS_KIB, "gateway peak RSS {peak} KiB");
}
