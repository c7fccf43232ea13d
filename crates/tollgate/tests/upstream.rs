//! Upstreams over real sockets: weighted round robin, weight 0, stickiness, passive and active
//! health checks, and retries to another node.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::GatewayProcess;
use common::{client, closed_port, echoed_header, error_body, full, TestBackend, TestGateway};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

fn config(nodes: &str, retries: usize) -> String {
    config_with(nodes, &format!("retries: {retries}"))
}

/// Returns a configuration with an upstream `shop`, given `settings` (YAML lines at its
/// level), behind one API.
fn config_with(nodes: &str, settings: &str) -> String {
    let settings = settings.replace('\n', "\n    ");
    format!(
        r#"
upstreams:
  - id: shop
    {settings}
    nodes: [{nodes}]
services:
  - id: service-ups00001
    name: upstream
    default_domains: [ups.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-ups00001, name: ups, path: /, method: ANY, timeout_secs: 5,
          backend: {{ type: http, upstream: shop }} }}
"#
    )
}

async fn call(gateway: &TestGateway, method: reqwest::Method, body: &str) -> (u16, String) {
    call_with(&client(), gateway, method, body).await
}

async fn call_with(
    client: &reqwest::Client,
    gateway: &TestGateway,
    method: reqwest::Method,
    body: &str,
) -> (u16, String) {
    let response = client
        .request(method, gateway.url("/release/x"))
        .header("host", "ups.example.com")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn weights_share_the_requests() {
    let backends = [
        TestBackend::echo().await,
        TestBackend::echo().await,
        TestBackend::echo().await,
    ];
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {}, weight: 1 }}, {{ host: 127.0.0.1, port: {}, weight: 2 }}, \
         {{ host: 127.0.0.1, port: {}, weight: 0 }}",
        backends[0].addr.port(),
        backends[1].addr.port(),
        backends[2].addr.port()
    );
    let gateway = TestGateway::start(&config(&nodes, 3)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let client = client();
    for _ in 0..300 {
        let (status, body) = call_with(&client, &gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        let host = echoed_header(&echo, "host").unwrap().to_string();
        *counts.entry(host).or_default() += 1;
    }
    let count = |backend: &TestBackend| counts.get(&backend.addr.to_string()).copied().unwrap_or(0);
    assert_eq!(count(&backends[0]), 100, "{counts:?}");
    assert_eq!(count(&backends[1]), 200, "{counts:?}");
    assert_eq!(
        count(&backends[2]),
        0,
        "a weight-0 node was chosen: {counts:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_node() {
    let live = TestBackend::echo().await;
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        closed_port(),
        live.addr.port()
    );
    let gateway = TestGateway::start(&config(&nodes, 3)).await;
    for _ in 0..10 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
    }
    // A refused connection sent nothing, so a small body is sent again too.
    for _ in 0..4 {
        let (status, body) = call(&gateway, reqwest::Method::POST, "payload").await;
        assert_eq!(status, 200, "{body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["body_len"], 7);
    }
    // A body over 64 KiB is not kept, so it cannot be sent again: the dead node's turns fail.
    let large = "x".repeat(100 * 1024);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&gateway, reqwest::Method::POST, &large).await.0);
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");

    // Without retries, the dead node's turns fail even without a body.
    let gateway = TestGateway::start(&config(&nodes, 0)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&gateway, reqwest::Method::GET, "").await.0);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn every_node_down_is_502() {
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        closed_port(),
        closed_port()
    );
    let gateway = TestGateway::start(&config(&nodes, 3)).await;
    let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!((status, body), (502, error_body("Bad Gateway.")));
}

fn nodes(backends: &[&TestBackend]) -> String {
    backends
        .iter()
        .map(|backend| {
            format!(
                "{{ host: 127.0.0.1, port: {}, weight: 1 }}",
                backend.addr.port()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the node that served a response, from the echoed Host header.
fn served_by(body: &str) -> String {
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {body}"));
    echoed_header(&echo, "host").unwrap().to_string()
}

async fn call_headers(
    gateway: &TestGateway,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = client()
        .get(gateway.url("/release/x"))
        .header("host", "ups.example.com");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Starts a backend whose `/health` returns a status the test sets, and that echoes the rest.
async fn health_backend(status: Arc<AtomicU16>) -> TestBackend {
    TestBackend::start(move |request: Request<Incoming>| {
        let status = status.clone();
        async move {
            if request.uri().path() == "/health" {
                let mut response = Response::new(full("health"));
                *response.status_mut() =
                    hyper::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                response
            } else {
                common::echo(request).await
            }
        }
    })
    .await
}

/// Starts a backend that returns 500 to every request.
async fn failing_backend() -> TestBackend {
    TestBackend::start(|_request: Request<Incoming>| async move {
        let mut response = Response::new(full("broken"));
        *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
    .await
}

#[tokio::test]
async fn a_sticky_cookie_keeps_a_client_on_its_node() {
    let backends = [
        TestBackend::echo().await,
        TestBackend::echo().await,
        TestBackend::echo().await,
    ];
    let nodes = nodes(&[&backends[0], &backends[1], &backends[2]]);
    let gateway = TestGateway::start(&config_with(
        &nodes,
        "sticky: { cookie: tg_node, timeout_secs: 60 }",
    ))
    .await;

    let (status, headers, body) = call_headers(&gateway, &[]).await;
    assert_eq!(status, 200, "{body}");
    let first = served_by(&body);
    let set_cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.starts_with("tg_node=") && set_cookie.contains("Max-Age=60"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let (status, headers, body) = call_headers(&gateway, &[("cookie", &cookie)]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by(&body), first);
        // Each response sets the cookie again, so its timeout counts from the last request.
        assert_eq!(headers["set-cookie"].to_str().unwrap(), set_cookie);
    }
    // Clients without the cookie are still spread over every node.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        seen.insert(served_by(&call_headers(&gateway, &[]).await.2));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // When the client's node is taken out (weight 0, by a reload), the client moves to
    // another node and gets a new cookie.
    let nodes = backends
        .iter()
        .map(|backend| {
            let weight = if backend.addr.to_string() == first {
                0
            } else {
                1
            };
            format!(
                "{{ host: 127.0.0.1, port: {}, weight: {weight} }}",
                backend.addr.port()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = config_with(&nodes, "sticky: { cookie: tg_node, timeout_secs: 60 }");
    std::fs::write(
        &gateway.config_path,
        format!("server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n{yaml}"),
    )
    .unwrap();
    gateway.server().reload().await.unwrap();
    let (status, headers, body) = call_headers(&gateway, &[("cookie", &cookie)]).await;
    assert_eq!(status, 200, "{body}");
    let moved_to = served_by(&body);
    assert_ne!(moved_to, first);
    let moved = headers["set-cookie"].to_str().unwrap();
    let new_cookie = moved.split(';').next().unwrap().to_string();
    assert_ne!(new_cookie, cookie);
    for _ in 0..4 {
        let body = call_headers(&gateway, &[("cookie", &new_cookie)]).await.2;
        assert_eq!(served_by(&body), moved_to);
    }
}

#[tokio::test]
async fn a_sticky_header_keeps_a_client_on_its_node() {
    let backends = [
        TestBackend::echo().await,
        TestBackend::echo().await,
        TestBackend::echo().await,
    ];
    let nodes = nodes(&[&backends[0], &backends[1], &backends[2]]);
    let gateway = TestGateway::start(&config_with(
        &nodes,
        "sticky: { header: X-User, timeout_secs: 60 }",
    ))
    .await;
    let mut homes = HashMap::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let first = served_by(&call_headers(&gateway, &[("x-user", user)]).await.2);
        for _ in 0..6 {
            let (status, headers, body) = call_headers(&gateway, &[("x-user", user)]).await;
            assert_eq!(status, 200);
            assert_eq!(served_by(&body), first, "{user} moved");
            assert!(headers.get("set-cookie").is_none());
        }
        homes.insert(user, first);
    }
    // A reload keeps the clients on their nodes.
    gateway.server().reload().await.unwrap();
    for (user, home) in &homes {
        let body = call_headers(&gateway, &[("x-user", user)]).await.2;
        assert_eq!(&served_by(&body), home, "{user} moved after the reload");
    }
}

#[tokio::test]
async fn passive_checks_take_a_failing_node_out_and_bring_it_back() {
    let failing = failing_backend().await;
    let healthy = TestBackend::echo().await;
    let gateway = TestGateway::start(&config_with(
        &nodes(&[&failing, &healthy]),
        "health: { enable_passive_check: true, http_failure_threshold: 2, \
         unhealthy_timeout_secs: 1 }",
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(call(&gateway, reqwest::Method::GET, "").await.0);
    }
    // The round robin alternates; the second 500 in a row takes the node out.
    assert_eq!(
        statuses.iter().filter(|&&status| status == 500).count(),
        2,
        "{statuses:?}"
    );
    assert!(
        statuses[4..].iter().all(|&status| status == 200),
        "{statuses:?}"
    );
    let reached = failing
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);

    // After the unhealthy timeout, the node is tried again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&gateway, reqwest::Method::GET, "").await.0);
    }
    assert!(
        statuses.contains(&500),
        "the node did not come back: {statuses:?}"
    );
    assert!(
        failing
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= reached
    );
}

#[tokio::test]
async fn a_node_refusing_connections_is_taken_out_by_passive_checks() {
    let healthy = TestBackend::echo().await;
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        closed_port(),
        healthy.addr.port()
    );
    let gateway = TestGateway::start(&config_with(
        &nodes,
        "retries: 0\nhealth: { enable_passive_check: true, tcp_failure_threshold: 1 }",
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(call(&gateway, reqwest::Method::GET, "").await.0);
    }
    assert_eq!(statuses[0], 502, "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|&status| status == 200),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn every_node_out_is_502_without_calling_a_node() {
    let a = failing_backend().await;
    let b = failing_backend().await;
    let gateway = TestGateway::start(&config_with(
        &nodes(&[&a, &b]),
        "health: { enable_passive_check: true, http_failure_threshold: 1, \
         unhealthy_timeout_secs: 60 }",
    ))
    .await;
    assert_eq!(call(&gateway, reqwest::Method::GET, "").await.0, 500);
    assert_eq!(call(&gateway, reqwest::Method::GET, "").await.0, 500);
    let calls = a.connections.load(std::sync::atomic::Ordering::SeqCst)
        + b.connections.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!((status, body), (502, error_body("Bad Gateway.")));
    }
    let after = a.connections.load(std::sync::atomic::Ordering::SeqCst)
        + b.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, after, "a node that is out was called");
}

#[tokio::test]
async fn only_idempotent_requests_are_sent_again_after_the_node_got_them() {
    // A node that reads the request and closes the connection without a response.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dropping = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
            });
        }
    });
    let healthy = TestBackend::echo().await;
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        dropping.port(),
        healthy.addr.port()
    );
    let gateway = TestGateway::start(&config(&nodes, 3)).await;
    for _ in 0..4 {
        let (status, body) = call(&gateway, reqwest::Method::PUT, "payload").await;
        assert_eq!(status, 200, "PUT is idempotent: {body}");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&gateway, reqwest::Method::POST, "payload").await.0);
    }
    assert_eq!(
        statuses.iter().filter(|&&status| status == 502).count(),
        2,
        "a POST the node got is not sent again: {statuses:?}"
    );
    task.abort();
}

/// Active checks, in the real binary so its log lines can be counted.
#[tokio::test]
async fn active_checks_take_a_node_out_and_bring_it_back() {
    let status = Arc::new(AtomicU16::new(200));
    let checked = health_backend(status.clone()).await;
    let other = TestBackend::echo().await;
    let yaml = format!(
        r#"
server:
  listen: ["127.0.0.1:0"]
  log_format: json
  access_log: {{ enabled: false }}
{}"#,
        config_with(
            &nodes(&[&checked, &other]),
            "health: { enable_active_check: true, active_check_http_path: /health, \
             active_check_interval_secs: 1, active_check_timeout_secs: 1, \
             http_failure_threshold: 1, healthy_threshold: 2 }",
        )
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let client = client();
    let served = |gateway: &GatewayProcess| {
        let request = client
            .get(gateway.url("/release/x"))
            .header("host", "ups.example.com");
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            served_by(&response.text().await.unwrap())
        }
    };
    let checked_addr = checked.addr.to_string();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(served(&gateway).await);
    }
    assert!(seen.contains(&checked_addr), "{seen:?}");

    status.store(503, Ordering::SeqCst);
    let out = gateway
        .wait_for_log(|line| line["message"] == "node taken out by active health checks")
        .await;
    assert_eq!(out["node"], checked_addr);
    for _ in 0..6 {
        assert_ne!(served(&gateway).await, checked_addr);
    }
    // Later failing checks do not log again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let count = |message: &str| {
        gateway
            .logs()
            .iter()
            .filter(|line| line["message"] == message)
            .count()
    };
    assert_eq!(count("node taken out by active health checks"), 1);

    status.store(200, Ordering::SeqCst);
    let started = Instant::now();
    gateway
        .wait_for_log(|line| line["message"] == "node back in: active health checks pass")
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "healthy_threshold is 2"
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(served(&gateway).await);
    }
    assert!(seen.contains(&checked_addr), "{seen:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count("node back in: active health checks pass"), 1);
}

/// A backend that never answers `path` (or any path, for `None`) and echoes the rest.
async fn hanging_backend(path: Option<&'static str>) -> TestBackend {
    TestBackend::start(move |request: Request<Incoming>| async move {
        if path.is_none_or(|path| request.uri().path() == path) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        common::echo(request).await
    })
    .await
}

#[tokio::test]
async fn timeouts_take_a_node_out_by_passive_checks() {
    let hanging = hanging_backend(None).await;
    let healthy = TestBackend::echo().await;
    let yaml = config_with(
        &nodes(&[&hanging, &healthy]),
        "health: { enable_passive_check: true, timeout_threshold: 1 }",
    )
    .replace("timeout_secs: 5", "timeout_secs: 1");
    let gateway = TestGateway::start(&yaml).await;
    let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!((status, body), (504, error_body("Gateway Time-out.")));
    for _ in 0..6 {
        let started = Instant::now();
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by(&body), healthy.addr.to_string());
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

#[tokio::test]
async fn active_check_timeouts_take_a_node_out() {
    let hanging = hanging_backend(Some("/health")).await;
    let healthy = TestBackend::echo().await;
    let gateway = TestGateway::start(&config_with(
        &nodes(&[&hanging, &healthy]),
        "health: { enable_active_check: true, active_check_http_path: /health, \
         active_check_interval_secs: 1, active_check_timeout_secs: 1, timeout_threshold: 1, \
         healthy_http_status: [200] }",
    ))
    .await;
    // The healthy node's checks pass; the hanging node's first check times out after 1 s
    // (the first round starts at once).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..6 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by(&body), healthy.addr.to_string());
    }
}

/// Writes `yaml` over the gateway's file, with its test listener, and reloads it.
async fn reload_with(gateway: &TestGateway, yaml: &str) {
    std::fs::write(
        &gateway.config_path,
        format!("server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n{yaml}"),
    )
    .unwrap();
    gateway.server().reload().await.unwrap();
}

#[tokio::test]
async fn a_reload_without_active_checks_brings_nodes_back() {
    let status = Arc::new(AtomicU16::new(503));
    let checked = health_backend(status.clone()).await;
    let other = TestBackend::echo().await;
    let nodes = nodes(&[&checked, &other]);
    let gateway = TestGateway::start(&config_with(
        &nodes,
        "health: { enable_active_check: true, active_check_http_path: /health, \
         active_check_interval_secs: 1, http_failure_threshold: 1 }",
    ))
    .await;
    // The first round of checks runs at once and takes the node out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..4 {
        let body = call(&gateway, reqwest::Method::GET, "").await.1;
        assert_eq!(served_by(&body), other.addr.to_string());
    }
    // Without active checks nothing would bring it back, so the reload does.
    reload_with(&gateway, &config_with(&nodes, "retries: 3")).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(served_by(&call(&gateway, reqwest::Method::GET, "").await.1));
    }
    assert!(seen.contains(&checked.addr.to_string()), "{seen:?}");
}

#[tokio::test]
async fn active_checks_reach_nodes_as_the_apis_do() {
    common::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new();
    let leaf = ca.issue(dir.path(), "node", &["localhost"]);
    let ca_file = ca.write_pem(dir.path());
    let (addr, _task) = common::tls::tls_echo_backend(&leaf).await;
    let yaml = format!(
        r#"
upstreams:
  - id: secure
    nodes: [{{ host: localhost, port: {} }}]
    health: {{ enable_active_check: true, active_check_interval_secs: 1,
              tcp_failure_threshold: 1, http_failure_threshold: 1 }}
services:
  - id: service-ups00002
    name: secure
    default_domains: [ups.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-ups00002, name: secure, path: /, method: ANY,
          backend: {{ type: http, url: "https://", upstream: secure, ca_file: '{}' }} }}
"#,
        addr.port(),
        ca_file.display()
    );
    let gateway = TestGateway::start(&yaml).await;
    // Checks over plain HTTP, or without the API's CA, would fail and take the only node out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_node_in_a_denied_range_is_skipped() {
    let live = TestBackend::echo().await;
    let yaml = |nodes: &str| {
        format!(
            "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
             backend_denied_ranges: [127.0.0.2/32]\n{}",
            config_with(nodes, "retries: 0")
        )
    };
    let both = format!(
        "{{ host: 127.0.0.2, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        live.addr.port(),
        live.addr.port()
    );
    let gateway = TestGateway::start(&yaml(&both)).await;
    for _ in 0..6 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
    }
    let only_denied = format!("{{ host: 127.0.0.2, port: {} }}", live.addr.port());
    let gateway = TestGateway::start(&yaml(&only_denied)).await;
    let (status, _) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_slow_streamed_body_is_not_the_nodes_timeout() {
    let hanging = hanging_backend(None).await;
    let yaml = config_with(
        &nodes(&[&hanging]),
        "health: { enable_passive_check: true, timeout_threshold: 1 }",
    )
    .replace("timeout_secs: 5", "timeout_secs: 1");
    let gateway = TestGateway::start(&yaml).await;
    // A chunked body whose client stops sending: the timeout may be the client's doing.
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("part"))])
        .chain(futures_util::stream::pending());
    let response = client()
        .post(gateway.url("/release/x"))
        .header("host", "ups.example.com")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    // The node is still in: a request without a body times out on it, and that one counts.
    let (status, _) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!(status, 504);
    let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
    assert_eq!((status, body), (502, error_body("Bad Gateway.")));
}

/// A node whose connection attempts go unanswered is left after the pool's connect timeout,
/// for the next node.
#[tokio::test]
async fn a_connect_timeout_moves_on_to_the_next_node() {
    let live = TestBackend::echo().await;
    // A listener that never accepts, with its accept queue filled: the kernel then drops
    // further connection attempts, as a node behind a dropping firewall does, on loopback.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let silent = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let attempt = tokio::net::TcpStream::connect(silent);
        match tokio::time::timeout(Duration::from_millis(300), attempt).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    assert!(fillers.len() < 16, "the accept queue never filled");
    let nodes = format!(
        "{{ host: 127.0.0.1, port: {} }}, {{ host: 127.0.0.1, port: {} }}",
        silent.port(),
        live.addr.port()
    );
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
         backend_pool: {{ connect_timeout_secs: 1 }}\n{}",
        config_with(&nodes, "retries: 1")
    );
    let gateway = TestGateway::start(&yaml).await;
    for _ in 0..2 {
        let started = Instant::now();
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    drop(listener);
}

#[tokio::test]
async fn a_node_named_into_a_denied_range_is_skipped() {
    // `localhost` resolves into the denied ranges; the other node is on 127.0.0.2.
    let live = TestBackend::start_on("127.0.0.2", |request: Request<Incoming>| async move {
        common::echo(request).await
    })
    .await;
    let nodes = format!(
        "{{ host: localhost, port: {0}, weight: 100 }}, {{ host: 127.0.0.2, port: {0}, weight: 1 }}",
        live.addr.port()
    );
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n  \
         backend_denied_ranges: [127.0.0.1/32, \"::1/128\"]\n{}",
        config_with(&nodes, "retries: 0")
    );
    let gateway = TestGateway::start(&yaml).await;
    for _ in 0..4 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by(&body), live.addr.to_string());
    }
}

#[tokio::test]
async fn active_failures_during_a_passive_outage_keep_the_node_out() {
    let health = Arc::new(AtomicU16::new(200));
    let flag = health.clone();
    // `/health` answers the status the test sets; every other request fails with 500.
    let sick = TestBackend::start(move |request: Request<Incoming>| {
        let health = flag.clone();
        async move {
            let status = if request.uri().path() == "/health" {
                health.load(Ordering::SeqCst)
            } else {
                500
            };
            let mut response = Response::new(full("sick"));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
        }
    })
    .await;
    let healthy = TestBackend::echo().await;
    let gateway = TestGateway::start(&config_with(
        &nodes(&[&sick, &healthy]),
        "health: { enable_passive_check: true, enable_active_check: true, \
         active_check_http_path: /health, active_check_interval_secs: 1, \
         http_failure_threshold: 1, unhealthy_timeout_secs: 1 }",
    ))
    .await;
    // A real request fails: the node is out for the 1 s unhealthy timeout.
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(call(&gateway, reqwest::Method::GET, "").await.0);
    }
    assert!(first.contains(&500), "{first:?}");
    // Its checks now fail too, which keeps it out past the unhealthy timeout.
    health.store(503, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..6 {
        let (status, body) = call(&gateway, reqwest::Method::GET, "").await;
        assert_eq!(
            status, 200,
            "the node came back while failing its checks: {body}"
        );
    }
}
