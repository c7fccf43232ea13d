//! HTTP backends over real sockets: the backend URL, forwarded headers, pooling, parameters,
//! limits, and the 502 and 504 errors.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{client, closed_port, echoed_header, error_body, full, TestBackend, TestGateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn service(apis: &str) -> String {
    format!(
        r#"
services:
  - id: service-proxy001
    name: proxy
    protocol: http
    default_domains: [gw.example.com]
    environments:
      release: {{}}
    apis:
{apis}"#
    )
}

fn http_api(id: &str, path: &str, backend_url: &str, extra_backend: &str) -> String {
    format!(
        "      - id: {id}\n        name: {id}\n        path: '{path}'\n        method: ANY\n        \
         timeout_secs: 1\n        backend: {{ type: http, url: '{backend_url}'{extra_backend} }}\n"
    )
}

async fn echo_get(gateway: &TestGateway, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .get(gateway.url(path))
        .header("host", "gw.example.com")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

#[tokio::test]
async fn backend_url_is_built_as_documented() {
    let backend = TestBackend::echo().await;
    let url = backend.url();
    let apis = [
        http_api("strip", "/product/", &url, ""),
        http_api("tencent", "/tencent-docs/", &url, ", path: /tencent/"),
        http_api("keep", "/apia/", &url, ", empty_path: keep_full_path"),
        http_api(
            "endpoint",
            "/apib/",
            &url,
            ", path: /endpoint/, empty_path: keep_full_path",
        ),
        http_api(
            "pets",
            "/pets/{petid}/photo",
            &url,
            ", path: '/v2/pet/{petid}'",
        ),
        http_api(
            "two",
            "/{PathA}/product/{PathB}",
            &url,
            ", path: '/b/{PathB}/a/{PathA}'",
        ),
        http_api("exact", "=/exact", &url, ", path: /backend-exact"),
        http_api("versioned", "/rx/(v1|v2)", &url, ", path: /versioned"),
    ]
    .concat();
    let gateway = TestGateway::start(&service(&apis)).await;
    let cases = [
        ("/release/product/apigw/document", "/apigw/document"),
        (
            "/release/tencent-docs/apigw/document",
            "/tencent/apigw/document",
        ),
        (
            "/release/apia/20171012/index.html",
            "/apia/20171012/index.html",
        ),
        (
            "/release/apib/20171012/index.html",
            "/endpoint/20171012/index.html",
        ),
        ("/release/pets/42/photo", "/v2/pet/42"),
        (
            "/release/middleware/product/apigw/detail",
            "/b/apigw/detail/a/middleware",
        ),
        ("/release/exact", "/backend-exact"),
        ("/release/rx/v2/items", "/versioned/items"),
        ("/release/product/q?a=1&b=%20x", "/q?a=1&b=%20x"),
    ];
    for (path, expected) in cases {
        let (status, _, echo) = echo_get(&gateway, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(echo["uri"], expected, "{path}");
    }
}

/// The documented path-variable examples: variables are greedy and may span `/`, and groups
/// written in the path do not shift them.
#[tokio::test]
async fn documented_path_variable_examples_reach_the_backend() {
    let backend = TestBackend::echo().await;
    let url = backend.url();
    let cases = [
        (
            "/{PathA}/{PathB}/detail",
            "/release/middleware/apigw/detail",
            "/a/middleware/b/apigw",
        ),
        (
            "/{PathA}/product/{PathB}",
            "/release/middleware/product/apigw/detail",
            "/a/middleware/b/apigw/detail",
        ),
        (
            "/{PathA}/{PathB}",
            "/release/middleware/apigw/detail",
            "/a/middleware/apigw/b/detail",
        ),
        (
            "/(v1|v2)/{PathA}/(x|y)/{PathB}",
            "/release/v2/middleware/y/apigw",
            "/a/middleware/b/apigw",
        ),
    ];
    for (frontend, request, expected) in cases {
        let api = http_api("vars", frontend, &url, ", path: '/a/{PathA}/b/{PathB}'");
        let gateway = TestGateway::start(&service(&api)).await;
        let (status, _, echo) = echo_get(&gateway, request).await;
        assert_eq!(status, 200, "{frontend} on {request}");
        assert_eq!(echo["uri"], expected, "{frontend} on {request}");
    }
}

/// Of two plain prefixes that both match, the longer one serves the request, and the rest of
/// the path after it goes to the backend.
#[tokio::test]
async fn longest_of_competing_prefixes_proxies() {
    let backend = TestBackend::echo().await;
    let url = backend.url();
    let apis = [
        http_api("short", "/a/", &url, ", path: /short/"),
        http_api("long", "/a/b/", &url, ", path: /long/"),
    ]
    .concat();
    let gateway = TestGateway::start(&service(&apis)).await;
    for (path, api, expected) in [
        ("/release/a/b/c", "long", "/long/c"),
        ("/release/a/bc", "short", "/short/bc"),
        ("/release/a/c/d", "short", "/short/c/d"),
    ] {
        let (status, headers, echo) = echo_get(&gateway, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["x-api-id"], api, "{path}");
        assert_eq!(echo["uri"], expected, "{path}");
    }
}

#[tokio::test]
async fn product_headers_reach_the_backend() {
    let backend = TestBackend::echo().await;
    let apis = http_api("echo", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let response = client()
        .get(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .header("x-forwarded-for", "106.19.71.102")
        .header("user-agent", "tollgate-test")
        .header("x-custom", "kept")
        .header("authorization", "Bearer abc")
        .header("cookie", "session=1; theme=dark")
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-api-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();

    assert_eq!(
        echoed_header(&echo, "x-forwarded-for"),
        Some("106.19.71.102, 127.0.0.1")
    );
    assert_eq!(echoed_header(&echo, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(echoed_header(&echo, "x-client-proto"), Some("http"));
    assert_eq!(echoed_header(&echo, "x-client-proto-ver"), Some("HTTP/1.1"));
    assert_eq!(echoed_header(&echo, "x-api-scheme"), Some("http"));
    assert_eq!(
        echoed_header(&echo, "x-api-requestid"),
        Some(request_id.as_str())
    );
    assert_eq!(
        echoed_header(&echo, "x-b3-traceid"),
        Some(request_id.as_str())
    );
    assert_eq!(echoed_header(&echo, "connection"), Some("keep-alive"));
    assert_eq!(echoed_header(&echo, "user-agent"), Some("tollgate-test"));
    assert_eq!(echoed_header(&echo, "x-custom"), Some("kept"));
    assert_eq!(echoed_header(&echo, "authorization"), Some("Bearer abc"));
    assert_eq!(
        echoed_header(&echo, "cookie"),
        Some("session=1; theme=dark")
    );
    let backend_host = backend.addr.to_string();
    assert_eq!(echoed_header(&echo, "host"), Some(backend_host.as_str()));
}

#[tokio::test]
async fn http_1_0_client_version_reaches_the_backend() {
    let backend = TestBackend::echo().await;
    let apis = http_api("echo", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /release/x HTTP/1.0\r\nHost: gw.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let echo: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed_header(&echo, "x-client-proto-ver"), Some("HTTP/1.0"));
}

#[tokio::test]
async fn client_host_is_an_option() {
    let backend = TestBackend::echo().await;
    let apis = http_api("echo", "/", &backend.url(), ", host_header: client");
    let gateway = TestGateway::start(&service(&apis)).await;
    let (_, _, echo) = echo_get(&gateway, "/release/x").await;
    assert_eq!(echoed_header(&echo, "host"), Some("gw.example.com"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let backend = TestBackend::start(
        |request: hyper::Request<hyper::body::Incoming>| async move {
            let mut response = common::echo(request).await;
            let headers = response.headers_mut();
            headers.insert("connection", "x-backend-hop".parse().unwrap());
            headers.insert("x-backend-hop", "1".parse().unwrap());
            headers.insert("keep-alive", "timeout=30".parse().unwrap());
            headers.insert("x-backend-kept", "1".parse().unwrap());
            response
        },
    )
    .await;
    let apis = http_api("echo", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;

    // A raw request, because client libraries manage Connection themselves.
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = "GET /release/x HTTP/1.1\r\nHost: gw.example.com\r\n\
                   Connection: close, x-client-hop\r\nx-client-hop: 1\r\n\
                   Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
                   TE: trailers\r\nx-client-kept: 1\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-backend-kept: 1"), "{head}");
    assert!(!head.contains("x-backend-hop"), "{head}");
    assert!(!head.contains("keep-alive: timeout=30"), "{head}");

    let echo: Value = serde_json::from_str(body).unwrap();
    for name in ["x-client-hop", "keep-alive", "proxy-authorization", "te"] {
        assert_eq!(
            echoed_header(&echo, name),
            None,
            "{name} reached the backend"
        );
    }
    assert_eq!(echoed_header(&echo, "x-client-kept"), Some("1"));
}

#[tokio::test]
async fn backend_connections_are_pooled() {
    let backend = TestBackend::echo().await;
    let apis = http_api("echo", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    for _ in 0..20 {
        let (status, _, _) = echo_get(&gateway, "/release/x").await;
        assert_eq!(status, 200);
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn backend_method_and_headers_from_config() {
    let backend = TestBackend::echo().await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let extra = format!(
        ", method: POST, headers: {{ x-token: {{ file: '{}' }}, x-team: platform }}",
        token.display()
    );
    let apis = http_api("echo", "/", &backend.url(), &extra);
    let gateway = TestGateway::start(&service(&apis)).await;
    let (_, _, echo) = echo_get(&gateway, "/release/x").await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echoed_header(&echo, "x-token"), Some("s3cret"));
    assert_eq!(echoed_header(&echo, "x-team"), Some("platform"));
}

#[tokio::test]
async fn declared_parameters_are_checked_and_defaulted() {
    let backend = TestBackend::echo().await;
    let apis = format!(
        "{}        parameters:\n\
         \x20         - {{ name: x-tenant, position: header, required: true }}\n\
         \x20         - {{ name: page, position: query, required: true }}\n\
         \x20         - {{ name: x-region, position: header, default: gz }}\n\
         \x20         - {{ name: size, position: query, default: '10 20' }}\n",
        http_api("params", "/", &backend.url(), "")
    );
    let gateway = TestGateway::start(&service(&apis)).await;
    let send = |path: &'static str, tenant: bool| {
        let mut request = client()
            .get(gateway.url(path))
            .header("host", "gw.example.com");
        if tenant {
            request = request.header("x-tenant", "t1");
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = send("/release/list?page=1", false).await;
    assert_eq!(status, 403);
    assert_eq!(body, error_body("header x-tenant is required."));

    let (status, body) = send("/release/list", true).await;
    assert_eq!(status, 403);
    assert_eq!(body, error_body("querystring page is required."));

    let (status, body) = send("/release/list?page=1", true).await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["uri"], "/list?page=1&size=10%2020");
    assert_eq!(echoed_header(&echo, "x-region"), Some("gz"));
}

#[tokio::test]
async fn refused_backend_is_502() {
    let port = closed_port();
    let apis = http_api("dead", "/", &format!("http://127.0.0.1:{port}"), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let (status, headers, body) = common::get(&gateway, "gw.example.com", "/release/x").await;
    assert_eq!(status, 502);
    assert_eq!(body, error_body("Bad Gateway."));
    assert_eq!(headers["x-api-id"], "dead");
}

#[tokio::test]
async fn reset_connection_is_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
        }
    });
    let apis = http_api("reset", "/", &format!("http://{addr}"), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let (status, _, body) = common::get(&gateway, "gw.example.com", "/release/x").await;
    assert_eq!(status, 502);
    assert_eq!(body, error_body("Bad Gateway."));
}

#[tokio::test]
async fn slow_backend_is_504() {
    let backend = TestBackend::start(|_request| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        hyper::Response::new(full("late"))
    })
    .await;
    let apis = http_api("slow", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = common::get(&gateway, "gw.example.com", "/release/x").await;
    assert_eq!(status, 504);
    assert_eq!(body, error_body("Gateway Time-out."));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}

#[tokio::test]
async fn declared_body_over_limit_is_413() {
    let backend = TestBackend::echo().await;
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  limits: {{ max_body_bytes: 1000 }}\n{}",
        service(&http_api("echo", "/", &backend.url(), ""))
    );
    let gateway = TestGateway::start(&yaml).await;
    let response = client()
        .post(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .body(vec![b'a'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("Request Entity Too Large.")
    );
    assert_eq!(backend.connections.load(Ordering::SeqCst), 0);

    let response = client()
        .post(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn streamed_body_over_limit_is_413() {
    let backend = TestBackend::echo().await;
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  limits: {{ max_body_bytes: 100000 }}\n{}",
        service(&http_api("echo", "/", &backend.url(), ""))
    );
    let gateway = TestGateway::start(&yaml).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'a'; 10_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client()
        .post(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("Request Entity Too Large.")
    );
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let gateway = TestGateway::start(&service(&http_api("x", "/", "http://127.0.0.1:1", ""))).await;
    let response = client()
        .get(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .header("x-big", "a".repeat(70 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);

    let mut request = client()
        .get(gateway.url("/release/x"))
        .header("host", "gw.example.com");
    for index in 0..120 {
        request = request.header(format!("x-h{index}"), "1");
    }
    assert_eq!(request.send().await.unwrap().status(), 431);
}

#[tokio::test]
async fn slow_header_read_closes_the_connection() {
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  limits: {{ header_read_timeout_secs: 1 }}\n{}",
        service(&http_api("x", "/", "http://127.0.0.1:1", ""))
    );
    let gateway = TestGateway::start(&yaml).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /release/x HTTP/1.1\r\nHost: gw")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the gateway kept a half-sent request open");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// A malformed chunk in the client's body is the client's fault: 400, not 502.
#[tokio::test]
async fn malformed_request_chunk_is_400() {
    let backend = TestBackend::echo().await;
    let apis = http_api("echo", "/", &backend.url(), "");
    let gateway = TestGateway::start(&service(&apis)).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"POST /release/x HTTP/1.1\r\nHost: gw.example.com\r\n\
              Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.ends_with(&error_body("Bad Request.")),
        "{response}"
    );
}

/// Denied backend ranges are checked on IP-literal backends and on the addresses a backend
/// name resolves to, before any connection is made.
#[tokio::test]
async fn denied_backend_addresses_are_403() {
    let backend = TestBackend::echo().await;
    let port = backend.addr.port();
    let apis = [
        http_api(
            "literal",
            "/literal",
            &format!("http://127.0.0.2:{port}"),
            "",
        ),
        http_api("named", "/named", &format!("http://localhost:{port}"), ""),
        http_api("allowed", "/allowed", &backend.url(), ""),
    ]
    .concat();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
         backend_denied_ranges: [127.0.0.2, 127.0.1.0/24]\n{}",
        service(&apis)
    );
    let gateway = TestGateway::start(&yaml).await;
    let (status, _, body) = echo_get(&gateway, "/release/literal").await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "Endpoint IP address is not allowed.");
    let (status, _, _) = echo_get(&gateway, "/release/allowed").await;
    assert_eq!(status, 200);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "no connection to a denied address"
    );

    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
         backend_denied_ranges: [127.0.0.0/8, \"::1\"]\n{}",
        service(&apis)
    );
    let gateway = TestGateway::start(&yaml).await;
    let (status, _, body) = echo_get(&gateway, "/release/named").await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "Endpoint IP address is not allowed.");
}
