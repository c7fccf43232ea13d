//! WebSocket APIs with a real WebSocket library on both sides: the handshake checks, frames
//! relayed both ways, close codes passed on, and the backend timeout on the handshake only.

mod common;

use std::time::Duration;

use common::{client, error_body, TestGateway};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Close codes the echo backend received from clients.
static CLIENT_CLOSES: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Starts a WebSocket backend that echoes every message, and closes with code 4000 on
/// `close-me`.
async fn echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    match message {
                        Message::Text(text) if text.as_str() == "close-me" => {
                            let frame = CloseFrame {
                                code: CloseCode::Library(4000),
                                reason: "asked to".into(),
                            };
                            let _ = socket.close(Some(frame)).await;
                            return;
                        }
                        Message::Text(_) | Message::Binary(_) => {
                            let Ok(()) = socket.send(message).await else {
                                return;
                            };
                        }
                        Message::Close(frame) => {
                            if let Some(frame) = frame {
                                CLIENT_CLOSES.lock().unwrap().push(u16::from(frame.code));
                            }
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

async fn gateway(backend: std::net::SocketAddr) -> TestGateway {
    TestGateway::start(&service(backend)).await
}

fn service(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
services:
  - id: service-ws000001
    name: ws
    default_domains: ["127.0.0.1", ws.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-ws000001, name: ws, path: /ws, protocol: WEBSOCKET, timeout_secs: 1,
          backend: {{ type: http, url: 'ws://{backend}', path: /socket }} }}
"#
    )
}

#[tokio::test]
async fn handshake_headers_are_required() {
    let gateway = gateway(echo_backend().await).await;
    let response = client()
        .get(gateway.url("/release/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("need header Sec-WebSocket-Key.")
    );
    let response = client()
        .get(gateway.url("/release/ws"))
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("need header Sec-WebSocket-Version.")
    );
}

#[tokio::test]
async fn messages_are_relayed_both_ways() {
    let gateway = gateway(echo_backend().await).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-api-id"], "api-ws000001");

    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    // A message larger than any buffer the gateway keeps passes whole.
    let large = vec![7u8; 4 * 1024 * 1024];
    socket.send(Message::binary(large.clone())).await.unwrap();
    match socket.next().await.unwrap().unwrap() {
        Message::Binary(data) => assert_eq!(data.len(), large.len()),
        other => panic!("expected binary, got {other:?}"),
    }

    // The backend timeout (1 s) covers the handshake only.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    socket.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn backend_close_reaches_client() {
    let gateway = gateway(echo_backend().await).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket.send(Message::text("close-me")).await.unwrap();
    match socket.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Library(4000));
            assert_eq!(frame.reason.as_str(), "asked to");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn dead_backend_handshake_is_502() {
    let port = common::closed_port();
    let gateway = gateway(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 502);
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn client_close_reaches_backend() {
    let gateway = gateway(echo_backend().await).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hi"));
    let frame = CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    };
    socket.close(Some(frame)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !CLIENT_CLOSES.lock().unwrap().contains(&4001) {
        assert!(
            std::time::Instant::now() < deadline,
            "the backend saw no close 4001"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// WebSocket over HTTPS: the client speaks `wss://` to the gateway's TLS listener.
#[tokio::test]
async fn websocket_over_tls() {
    use common::tls::TestCa;
    use rustls::pki_types::ServerName;
    let backend = echo_backend().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue(dir.path(), "ws", &["ws.example.com"]);
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  listen_tls: [\"127.0.0.1:0\"]\n  \
         tls: {{ cert_file: '{}', key_file: '{}' }}\n  access_log: {{ enabled: false }}\n{}",
        leaf.cert_file.display(),
        leaf.key_file.display(),
        service(backend)
    );
    let gateway = TestGateway::start(&yaml).await;
    let tls_addr = gateway.server().tls_addrs()[0];
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("ws.example.com").unwrap(), tcp)
        .await
        .unwrap();
    let (mut socket, response) =
        tokio_tungstenite::client_async("wss://ws.example.com/release/ws", tls)
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("over tls")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("over tls")
    );
    socket.close(None).await.unwrap();
}

/// A `wss://` backend: the gateway upgrades over TLS, trusting the backend's CA.
#[tokio::test]
async fn secure_websocket_backend() {
    use common::tls::TestCa;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    common::install_crypto_provider();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue(dir.path(), "backend", &["localhost"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf.cert_file)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&leaf.key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut socket) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let Ok(()) = socket.send(message).await else {
                            return;
                        };
                    }
                }
            });
        }
    });
    let yaml = format!(
        r#"
services:
  - id: service-wss00001
    name: wss
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
      - {{ id: api-wss00001, name: wss, path: /wss, protocol: WEBSOCKET, timeout_secs: 5,
          backend: {{ type: http, url: 'wss://localhost:{port}', ca_file: '{ca}' }} }}
"#,
        ca = ca.write_pem(dir.path()).display()
    );
    let gateway = TestGateway::start(&yaml).await;
    let url = format!("ws://{}/release/wss", gateway.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("secure")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("secure")
    );
}

#[tokio::test]
async fn an_upstream_serves_a_websocket_api() {
    let live = echo_backend().await;
    let closed = common::closed_port();
    let gateway = TestGateway::start(&format!(
        r#"
upstreams:
  - id: sockets
    nodes: [{{ host: 127.0.0.1, port: {closed} }}, {{ host: 127.0.0.1, port: {} }}]
services:
  - id: service-ws000002
    name: ws
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
      - {{ id: api-ws000002, name: ws, path: /ws, protocol: WEBSOCKET, timeout_secs: 2,
          backend: {{ type: http, url: 'ws://', upstream: sockets, path: /socket }} }}
"#,
        live.port()
    ))
    .await;
    // Every handshake reaches the live node: one refusing the connection is skipped.
    for round in 0..4 {
        let url = format!("ws://{}/release/ws", gateway.addr);
        let (mut socket, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
        assert_eq!(response.status(), 101);
        let text = format!("round {round}");
        socket.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(text));
        socket.close(None).await.unwrap();
    }
}

fn with_grace_period(backend: std::net::SocketAddr, secs: u64) -> String {
    format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
         grace_period_secs: {secs}\n{}",
        service(backend)
    )
}

#[tokio::test]
async fn shutdown_waits_for_open_websockets() {
    let mut gateway = TestGateway::start(&with_grace_period(echo_backend().await, 10)).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let server = gateway.server.take().unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the WebSocket"
    );
    // The WebSocket still relays while the gateway drains.
    socket.send(Message::text("draining")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("draining")
    );
    socket.close(None).await.unwrap();
    while socket.next().await.is_some() {}
    drop(socket);
    let finished = tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends once the WebSocket closed")
        .unwrap();
    assert!(
        finished,
        "every connection finished within the grace period"
    );
}

#[tokio::test]
async fn websockets_close_when_the_grace_period_ends() {
    let mut gateway = TestGateway::start(&with_grace_period(echo_backend().await, 1)).await;
    let url = format!("ws://{}/release/ws", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let server = gateway.server.take().unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown ends after the grace period");
    assert!(
        !finished,
        "the WebSocket was still open at the end of the grace period"
    );
    // The client's connection is closed: the next read ends instead of waiting.
    let next = tokio::time::timeout(Duration::from_secs(2), socket.next())
        .await
        .expect("the WebSocket was closed");
    assert!(
        !matches!(next, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{next:?}"
    );
}
