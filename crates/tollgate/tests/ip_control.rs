//! The IP access control plugin over real sockets: white and black lists of IPv4 and IPv6
//! addresses and ranges, trusted proxies, and a Unix socket listener, whose clients have no
//! address.

mod common;

use common::{client, echoed_header, error_body, TestBackend, TestGateway};
use serde_json::Value;

fn config(backend: &str, server: &str) -> String {
    format!(
        r#"
server:
  listen: ["127.0.0.1:0", "[::1]:0"]
  access_log: {{ enabled: false }}
{server}
services:
  - id: service-ipctl001
    name: ipcontrol
    default_domains: [ip.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-white001, name: white, path: /white, backend: {{ type: http, url: '{backend}' }},
          ip_control: {{ type: white_list, blocks: ["127.0.0.0/8", "203.0.113.0/24"] }} }}
      - {{ id: api-black001, name: black, path: /black, backend: {{ type: http, url: '{backend}' }},
          ip_control: {{ type: black_list, blocks: "127.0.0.1\n::1" }} }}
      - {{ id: api-six00001, name: six, path: /six, backend: {{ type: http, url: '{backend}' }},
          ip_control: {{ type: white_list, blocks: "::1/128;198.51.100.0/24" }} }}
      - {{ id: api-open0001, name: open, path: /open, backend: {{ type: http, url: '{backend}' }} }}
"#
    )
}

async fn get(url: String, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = client().get(url).header("host", "ip.example.com");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn white_and_black_lists_over_ipv4_and_ipv6() {
    let backend = TestBackend::echo().await;
    let gateway = TestGateway::start(&config(&backend.url(), "")).await;
    let v4 = gateway.server().local_addrs()[0];
    let v6 = gateway.server().local_addrs()[1];
    let url = |addr: std::net::SocketAddr, path: &str| format!("http://{addr}{path}");
    let denied = error_body("Client IP address is not allowed.");

    assert_eq!(get(url(v4, "/release/white"), &[]).await.0, 200);
    assert_eq!(
        get(url(v6, "/release/white"), &[]).await,
        (403, denied.clone())
    );
    assert_eq!(
        get(url(v4, "/release/black"), &[]).await,
        (403, denied.clone())
    );
    assert_eq!(
        get(url(v6, "/release/black"), &[]).await,
        (403, denied.clone())
    );
    assert_eq!(get(url(v6, "/release/six"), &[]).await.0, 200);
    assert_eq!(
        get(url(v4, "/release/six"), &[]).await,
        (403, denied.clone())
    );
    // A client cannot pick its address with headers when no proxy is trusted.
    let spoofed = [
        ("x-forwarded-for", "198.51.100.4"),
        ("x-real-ip", "198.51.100.4"),
    ];
    assert_eq!(get(url(v4, "/release/six"), &spoofed).await, (403, denied));
}

#[tokio::test]
async fn trusted_proxies_give_the_client_address() {
    let backend = TestBackend::echo().await;
    let server = "  trusted_proxies: [127.0.0.1]";
    let gateway = TestGateway::start(&config(&backend.url(), server)).await;
    let v4 = gateway.server().local_addrs()[0];
    let forwarded = [("x-forwarded-for", "198.51.100.4, 127.0.0.1")];
    let (status, body) = get(format!("http://{v4}/release/six"), &forwarded).await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    // The backend gets the client's address as X-Real-IP, and the chain with the peer added.
    assert_eq!(echoed_header(&echo, "x-real-ip"), Some("198.51.100.4"));
    assert_eq!(
        echoed_header(&echo, "x-forwarded-for"),
        Some("198.51.100.4, 127.0.0.1, 127.0.0.1")
    );
    let (status, _) = get(format!("http://{v4}/release/black"), &forwarded).await;
    assert_eq!(status, 200, "the client, not the proxy, is checked");
}

/// Sends one HTTP/1.1 request over a Unix socket and returns the response text.
async fn unix_request(path: &std::path::Path, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: ip.example.com\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn unix_socket_clients_have_no_address() {
    let backend = TestBackend::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tollgate.sock");
    let server = format!("  listen_unix: ['{}']", socket.display());
    let gateway = TestGateway::start(&config(&backend.url(), &server)).await;

    let response = unix_request(&socket, "/release/white").await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.ends_with(&error_body(
            "Cannot identify the client IP address, unix domain sockets are not supported."
        )),
        "{response}"
    );
    let response = unix_request(&socket, "/release/open").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let echo: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed_header(&echo, "x-real-ip"), None);

    // Shutdown removes the socket file.
    let mut gateway = gateway;
    gateway.server.take().unwrap().shutdown().await;
    assert!(!socket.exists());
}
