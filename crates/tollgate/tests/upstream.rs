//! Upstreams over real sockets: weighted round robin, weight 0, and retries to another node
//! when one refuses the connection.

mod common;

use std::collections::HashMap;

use common::{client, closed_port, echoed_header, error_body, TestBackend, TestGateway};
use serde_json::Value;

fn config(nodes: &str, retries: usize) -> String {
    format!(
        r#"
upstreams:
  - id: shop
    retries: {retries}
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
    // A request with a body is not sent twice: when the dead node is chosen, it fails.
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(&gateway, reqwest::Method::POST, "payload").await.0);
        }
        statuses
    };
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
