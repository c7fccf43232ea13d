//! Test harness: gateways and backends on free ports of 127.0.0.1, and a plain HTTP client.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use tollgate::server::Server;

pub mod etcd;
pub mod process;
pub mod redis;
pub mod tls;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// A gateway serving a configuration written to a temporary folder.
pub struct TestGateway {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl TestGateway {
    /// Starts a gateway on `yaml`, listening on a free port of 127.0.0.1.
    pub async fn start(yaml: &str) -> TestGateway {
        TestGateway::start_with_clock(yaml, Arc::new(tollgate::clock::SystemClock)).await
    }

    /// Starts a gateway whose signature windows and rate-limit seconds read `clock`.
    pub async fn start_with_clock(
        yaml: &str,
        clock: Arc<dyn tollgate::clock::Clock>,
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, with_test_listener(yaml)).unwrap();
        let config = match tollgate::config::load(&config_path) {
            Ok(config) => config,
            Err(problems) => panic!("test config is invalid: {problems}"),
        };
        let server = Server::start_with_clock(config, Some(config_path.clone()), clock)
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        TestGateway {
            server: Some(server),
            addr,
            dir,
            config_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

/// Adds a `server` section listening on port 0 unless the YAML has one.
fn with_test_listener(yaml: &str) -> String {
    if yaml.contains("\nserver:") || yaml.starts_with("server:") {
        yaml.to_string()
    } else {
        format!("server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n{yaml}")
    }
}

/// An HTTP client that never uses a proxy from the environment and never follows redirects.
pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Makes ring the process's TLS crypto provider, which the TLS-capable test client needs.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends a request with a Host header and returns status, headers and body text.
pub async fn get(
    gateway: &TestGateway,
    host: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    send(gateway, reqwest::Method::GET, host, path).await
}

pub async fn send(
    gateway: &TestGateway,
    method: reqwest::Method,
    host: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .request(method, gateway.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    (status, headers, body)
}

/// The JSON body the product sends for a gateway error.
pub fn error_body(message: &str) -> String {
    format!("{{\"message\":\"{}\"}}", message.replace('/', "\\/"))
}

/// An in-process backend on a free port of 127.0.0.1.
pub struct TestBackend {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestBackend {
    /// Starts a backend that answers every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> TestBackend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        TestBackend::start_on("127.0.0.1", handler).await
    }

    /// Starts a backend on a free port of `ip`, a loopback address.
    pub async fn start_on<F, Fut>(ip: &str, handler: F) -> TestBackend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestBackend {
            addr,
            connections,
            task,
        }
    }

    /// Starts a backend that answers with a JSON description of the request it got.
    pub async fn echo() -> TestBackend {
        TestBackend::start(|request: Request<Incoming>| async move { echo(request).await }).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Describes a request as JSON: method, uri, headers (name to list of values), body length.
pub async fn echo(request: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        headers.insert(name.as_str().to_string(), Value::Array(values));
    }
    let description = json!({
        "method": parts.method.as_str(),
        "version": format!("{:?}", parts.version),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
    });
    let mut response = Response::new(full(description.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The first value of a header in an echo description.
pub fn echoed_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

/// Returns a port on 127.0.0.1 that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
