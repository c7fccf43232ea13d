//! Microservice APIs over real sockets, with the static registry: the caller names the
//! microservice in the path, a header or the query, and the gateway balances over its
//! instances. Every message of the product's microservice errors is checked.

mod common;

use std::collections::HashMap;

use common::{client, echoed_header, error_body, full, TestBackend, TestGateway};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

fn instance(backend: &TestBackend, weight: u32) -> String {
    format!(
        "{{ host: 127.0.0.1, port: {}, weight: {weight} }}",
        backend.addr.port()
    )
}

/// Returns a configuration with the static registry `registry` (YAML list items) behind
/// several microservice APIs.
fn config(registry: &str) -> String {
    format!(
        r#"
registry:
  type: static
  services:
{registry}
services:
  - id: service-ms000001
    name: microservices
    default_domains: [ms.example.com]
    environments:
      release: {{}}
    apis:
      - id: api-ms000001
        name: by-path
        path: /{{X-NameSpace-Code}}/{{X-MicroService-Name}}/service
        method: ANY
        backend:
          type: microservice
          namespace_location: method.req.path.X-NameSpace-Code
          service_location: method.req.path.X-MicroService-Name
          path: /api
          microservices:
            - {{ namespace: crgt, name: coupon }}
            - {{ namespace: crgt, name: empty }}
            - {{ namespace: crgt, name: resting }}
            - {{ namespace: crgt, name: unregistered }}
            - {{ namespace: crgt, name: flaky }}
          health: {{ enable_passive_check: true, http_failure_threshold: 1, unhealthy_timeout_secs: 60 }}
      - id: api-ms000002
        name: by-header-and-query
        path: /lookup
        method: GET
        backend:
          type: microservice
          namespace_location: method.req.header.X-NameSpace-Code
          service_location: method.req.query.X-MicroService-Name
          microservices: [{{ namespace: crgt, name: coupon }}]
      - id: api-ms000003
        name: no-location
        path: /no-location
        method: GET
        backend:
          type: microservice
          microservices: [{{ namespace: crgt, name: coupon }}]
      - id: api-ms000004
        name: malformed-location
        path: /malformed
        method: GET
        backend:
          type: microservice
          namespace_location: method.req.cookie.ns
          service_location: method.req.query.name
          microservices: [{{ namespace: crgt, name: coupon }}]
      - id: api-ms000005
        name: no-microservices
        path: /unusable
        method: GET
        backend:
          type: microservice
          namespace_location: method.req.header.X-NameSpace-Code
          service_location: method.req.header.X-MicroService-Name
      - id: api-ms000006
        name: path-not-captured
        path: /uncaptured
        method: GET
        backend:
          type: microservice
          namespace_location: method.req.path.X-NameSpace-Code
          service_location: method.req.header.X-MicroService-Name
          microservices: [{{ namespace: crgt, name: coupon }}]
"#
    )
}

async fn get(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = client()
        .get(gateway.url(path))
        .header("host", "ms.example.com");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn served_by(body: &str) -> (String, String) {
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {body}"));
    (
        echoed_header(&echo, "host").unwrap().to_string(),
        echo["uri"].as_str().unwrap().to_string(),
    )
}

async fn failing_backend() -> TestBackend {
    TestBackend::start(|_request: Request<Incoming>| async move {
        let mut response = Response::new(full("broken"));
        *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
    .await
}

#[tokio::test]
async fn the_caller_names_the_microservice_and_its_instances_share_by_weight() {
    let light = TestBackend::echo().await;
    let heavy = TestBackend::echo().await;
    let registry = format!(
        "    - {{ namespace: crgt, name: coupon, instances: [{}, {}] }}",
        instance(&light, 1),
        instance(&heavy, 3)
    );
    let gateway = TestGateway::start(&config(&registry)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let (status, body) = get(&gateway, "/release/crgt/coupon/service/orders", &[]).await;
        assert_eq!(status, 200, "{body}");
        let (host, uri) = served_by(&body);
        assert_eq!(uri, "/api/orders");
        *counts.entry(host).or_default() += 1;
    }
    assert_eq!(counts[&light.addr.to_string()], 10, "{counts:?}");
    assert_eq!(counts[&heavy.addr.to_string()], 30, "{counts:?}");

    // The same microservice named by a header and a query parameter.
    let (status, body) = get(
        &gateway,
        "/release/lookup?X-MicroService-Name=coupon",
        &[("X-NameSpace-Code", "crgt")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unknown_or_empty_microservices_are_404() {
    let backend = TestBackend::echo().await;
    let registry = format!(
        "    - {{ namespace: crgt, name: coupon, instances: [{}] }}\n\
         \x20   - {{ namespace: crgt, name: empty, instances: [] }}\n\
         \x20   - {{ namespace: crgt, name: resting, instances: [{}] }}\n\
         \x20   - {{ namespace: other, name: coupon, instances: [{}] }}",
        instance(&backend, 10),
        instance(&backend, 0),
        instance(&backend, 10),
    );
    let gateway = TestGateway::start(&config(&registry)).await;
    let not_found = (404, error_body("Not found micro service with key."));
    for path in [
        // Registered, but not one of the API's microservices.
        "/release/other/coupon/service",
        // Neither listed nor registered.
        "/release/crgt/nothing/service",
        // Listed, never registered.
        "/release/crgt/unregistered/service",
        // Registered without instances, or with weight 0 only.
        "/release/crgt/empty/service",
        "/release/crgt/resting/service",
    ] {
        assert_eq!(get(&gateway, path, &[]).await, not_found, "{path}");
    }
    // A value missing from the request names no microservice.
    assert_eq!(
        get(&gateway, "/release/lookup?X-MicroService-Name=coupon", &[]).await,
        not_found
    );
    assert_eq!(
        get(&gateway, "/release/lookup", &[("X-NameSpace-Code", "crgt")]).await,
        not_found
    );
    assert_eq!(
        get(&gateway, "/release/crgt/coupon/service", &[]).await.0,
        200
    );
}

#[tokio::test]
async fn unusable_microservice_settings_are_481() {
    let backend = TestBackend::echo().await;
    let registry = format!(
        "    - {{ namespace: crgt, name: coupon, instances: [{}] }}",
        instance(&backend, 10)
    );
    let gateway = TestGateway::start(&config(&registry)).await;
    let headers = [
        ("X-NameSpace-Code", "crgt"),
        ("X-MicroService-Name", "coupon"),
    ];
    assert_eq!(
        get(&gateway, "/release/no-location", &headers).await,
        (481, error_body("Get location of micro service info fail."))
    );
    assert_eq!(
        get(&gateway, "/release/malformed?name=coupon", &headers).await,
        (
            481,
            error_body("Only support the map_from like method.req.{path}.{}.")
        )
    );
    assert_eq!(
        get(&gateway, "/release/unusable", &headers).await,
        (481, error_body("TSF config error."))
    );
    assert_eq!(
        get(&gateway, "/release/uncaptured", &headers).await,
        (481, error_body("TSF config error."))
    );
}

#[tokio::test]
async fn each_microservice_has_its_own_health() {
    let failing = failing_backend().await;
    let healthy = TestBackend::echo().await;
    let registry = format!(
        "    - {{ namespace: crgt, name: flaky, instances: [{}, {}] }}\n\
         \x20   - {{ namespace: crgt, name: coupon, instances: [{}] }}",
        instance(&failing, 1),
        instance(&healthy, 1),
        instance(&failing, 1),
    );
    let gateway = TestGateway::start(&config(&registry)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&gateway, "/release/crgt/flaky/service", &[]).await.0);
    }
    assert_eq!(
        statuses.iter().filter(|&&status| status == 500).count(),
        1,
        "{statuses:?}"
    );
    // The same address is still in for the other microservice, because its own checks have
    // not seen it fail. Its first failure there takes it out too, and then nothing is left.
    assert_eq!(
        get(&gateway, "/release/crgt/coupon/service", &[]).await.0,
        500
    );
    assert_eq!(
        get(&gateway, "/release/crgt/coupon/service", &[]).await,
        (502, error_body("Bad Gateway."))
    );
}

#[tokio::test]
async fn a_reload_applies_the_static_registry() {
    let before = TestBackend::echo().await;
    let after = TestBackend::echo().await;
    let registry = |backend: &TestBackend| {
        format!(
            "    - {{ namespace: crgt, name: coupon, instances: [{}] }}",
            instance(backend, 10)
        )
    };
    let gateway = TestGateway::start(&config(&registry(&before))).await;
    let body = get(&gateway, "/release/crgt/coupon/service", &[]).await.1;
    assert_eq!(served_by(&body).0, before.addr.to_string());
    std::fs::write(
        &gateway.config_path,
        format!(
            "server:\n  listen: [\"127.0.0.1:0\"]\n  access_log: {{ enabled: false }}\n{}",
            config(&registry(&after))
        ),
    )
    .unwrap();
    gateway.server().reload().await.unwrap();
    let body = get(&gateway, "/release/crgt/coupon/service", &[]).await.1;
    assert_eq!(served_by(&body).0, after.addr.to_string());
}

#[tokio::test]
async fn microservice_names_are_decoded_in_the_path() {
    let backend = TestBackend::echo().await;
    let registry = format!(
        "    - {{ namespace: crgt, name: coupon, instances: [{}] }}",
        instance(&backend, 10)
    );
    let gateway = TestGateway::start(&config(&registry)).await;
    let (status, body) = get(&gateway, "/release/crgt/cou%70on/service", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn each_microservice_has_its_own_sticky_cookie() {
    let backends = [TestBackend::echo().await, TestBackend::echo().await];
    let instances = format!(
        "[{}, {}]",
        instance(&backends[0], 1),
        instance(&backends[1], 1)
    );
    let registry = format!(
        "    - {{ namespace: crgt, name: coupon, instances: {instances} }}\n\
         \x20   - {{ namespace: crgt, name: flaky, instances: {instances} }}"
    );
    let yaml = config(&registry).replace(
        "health: { enable_passive_check: true, http_failure_threshold: 1, unhealthy_timeout_secs: 60 }",
        "sticky: { cookie: ms_node }",
    );
    assert!(yaml.contains("ms_node"));
    let gateway = TestGateway::start(&yaml).await;
    let cookie_of = |response: &reqwest::Response| {
        let set = response.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    };
    let call = |path: &'static str, cookies: String| {
        let request = client()
            .get(gateway.url(path))
            .header("host", "ms.example.com")
            .header("cookie", cookies);
        async move { request.send().await.unwrap() }
    };
    let coupon = call("/release/crgt/coupon/service", String::new()).await;
    let coupon_cookie = cookie_of(&coupon);
    let coupon_node = served_by(&coupon.text().await.unwrap()).0;
    let flaky = call("/release/crgt/flaky/service", String::new()).await;
    let flaky_cookie = cookie_of(&flaky);
    let (coupon_name, _) = coupon_cookie.split_once('=').unwrap();
    let (flaky_name, _) = flaky_cookie.split_once('=').unwrap();
    assert!(coupon_name.starts_with("ms_node_"), "{coupon_name}");
    assert_ne!(coupon_name, flaky_name);
    // A client holding both cookies stays on its coupon node while it calls both.
    let both = format!("{coupon_cookie}; {flaky_cookie}");
    for _ in 0..3 {
        let response = call("/release/crgt/flaky/service", both.clone()).await;
        assert_eq!(response.status(), 200);
        let response = call("/release/crgt/coupon/service", both.clone()).await;
        assert_eq!(served_by(&response.text().await.unwrap()).0, coupon_node);
    }
}
