//! Host, environment and API routing over real sockets, with the product's exact errors.

mod common;

use common::{error_body, get, send, TestGateway};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every API is a mock whose body names the API, so a response shows which API matched.
fn mock(id: &str, path: &str, method: &str) -> String {
    format!(
        "      - {{ id: {id}, name: {id}, path: '{path}', method: {method}, \
         backend: {{ type: mock, body: {id} }} }}\n"
    )
}

fn routing_config() -> String {
    let mut apis = String::new();
    for (id, path, method) in [
        ("plain-user", "/user", "GET"),
        ("regex-user", "/user/{id}", "GET"),
        ("priority-vip", "^~/user/vip", "GET"),
        ("exact-user", "=/user/exact", "GET"),
        ("longer", "/user/list", "GET"),
        ("post-only", "/submit", "POST"),
        ("any", "/anything", "ANY"),
        ("admin", "/admin", "GET"),
        ("public", "/public/", "GET"),
    ] {
        apis.push_str(&mock(id, path, method));
    }
    format!(
        r#"
services:
  - id: service-routing1
    name: routing
    protocol: http
    default_domains: [default.example.com]
    custom_domains:
      - domain: custom.example.com
      - domain: mapped.example.com
        path_mappings:
          - {{ path: /mypath, environment: release }}
          - {{ path: /trial, environment: test }}
      - domain: secure.example.com
        protocol: https
    environments:
      release: {{}}
      test: {{ apis: [admin] }}
    apis:
{apis}
  - id: service-secure01
    name: secure
    protocol: https
    default_domains: [https-only.example.com]
    environments:
      release: {{}}
    apis:
{secure}
"#,
        secure = mock("secure-api", "/", "ANY"),
    )
}

async fn gateway() -> TestGateway {
    TestGateway::start(&routing_config()).await
}

#[tokio::test]
async fn api_priority_order() {
    let gateway = gateway().await;
    let cases = [
        ("/release/user/exact", "exact-user"),
        ("/release/user/vip", "priority-vip"),
        ("/release/user/vip/gold", "priority-vip"),
        ("/release/user/42", "regex-user"),
        ("/release/user", "plain-user"),
        ("/release/usertest", "plain-user"),
        ("/release/user/list", "regex-user"),
        ("/release/anything", "any"),
    ];
    for (path, expected) in cases {
        let (status, headers, body) = get(&gateway, "default.example.com", path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, expected, "{path}");
        assert_eq!(headers["x-api-id"], expected, "{path}");
    }
}

#[tokio::test]
async fn unknown_host_is_404() {
    let gateway = gateway().await;
    let (status, headers, body) = get(&gateway, "other.example.com", "/release/user").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        error_body("There is no api match host[other.example.com].")
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn host_is_case_insensitive_and_port_is_ignored() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "Default.Example.COM:8080", "/release/user").await;
    assert_eq!(status, 200);
    assert_eq!(body, "plain-user");
}

/// Sends raw bytes and returns the whole response text.
async fn raw(gateway: &TestGateway, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn missing_host_is_404() {
    let gateway = gateway().await;
    let response = raw(&gateway, b"GET /release/user HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 404"), "{response}");
    assert!(
        response.ends_with(&error_body("Not Found Host.")),
        "{response}"
    );
}

#[tokio::test]
async fn unreadable_host_is_404() {
    let gateway = gateway().await;
    let response = raw(
        &gateway,
        b"GET /release/user HTTP/1.1\r\nHost: caf\xe9.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(
        response.ends_with(&error_body("Get Host Fail.")),
        "{response}"
    );

    let twice = raw(
        &gateway,
        b"GET /release/user HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(twice.ends_with(&error_body("Get Host Fail.")), "{twice}");
}

#[tokio::test]
async fn default_env_mapping_errors() {
    let gateway = gateway().await;
    let cases = [
        ("/staging/user", "staging"),
        ("/prepub/user", "prepub"),
        ("/", ""),
        ("/user", "user"),
    ];
    for (path, segment) in cases {
        let (status, _, body) = get(&gateway, "default.example.com", path).await;
        assert_eq!(status, 404, "{path}");
        let message = format!("There is no api match default env_mapping[{segment}].");
        assert_eq!(body, error_body(&message), "{path}");
    }
}

#[tokio::test]
async fn environment_holds_only_its_apis() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "default.example.com", "/test/admin").await;
    assert_eq!((status, body.as_str()), (200, "admin"));
    let (status, _, body) = get(&gateway, "default.example.com", "/test/user").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        error_body("There is no api match uri[/user] host [default.example.com]")
    );
}

#[tokio::test]
async fn custom_domain_default_mapping() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "custom.example.com", "/release/user/7").await;
    assert_eq!((status, body.as_str()), (200, "regex-user"));
    let (status, _, body) = get(&gateway, "custom.example.com", "/nope/user").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        error_body("There is no api match default env_mapping[nope].")
    );
}

#[tokio::test]
async fn custom_path_mapping() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "mapped.example.com", "/mypath/user").await;
    assert_eq!((status, body.as_str()), (200, "plain-user"));
    let (status, _, body) = get(&gateway, "mapped.example.com", "/trial/admin").await;
    assert_eq!((status, body.as_str()), (200, "admin"));

    // The prefix matches on segment boundaries only.
    let (status, _, body) = get(&gateway, "mapped.example.com", "/mypathx/user").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        error_body("There is no api match env_mapping[mypathx].")
    );

    // With custom mappings, the `/{environment}` form is off.
    let (status, _, body) = get(&gateway, "mapped.example.com", "/release/user").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        error_body("There is no api match env_mapping[release].")
    );
}

#[tokio::test]
async fn no_api_matches_uri_in_observed_format() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "default.example.com", "/release/api/v1/tool").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        r#"{"message":"There is no api match uri[\/api\/v1\/tool] host [default.example.com]"}"#
    );
}

#[tokio::test]
async fn method_not_allowed_and_unsupported() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "default.example.com", "/release/submit").await;
    assert_eq!(status, 405);
    assert_eq!(body, error_body("Method Not Allowed."));

    let (status, _, body) = send(
        &gateway,
        Method::POST,
        "default.example.com",
        "/release/submit",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "post-only"));

    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    let (status, _, body) = send(
        &gateway,
        propfind,
        "default.example.com",
        "/release/anything",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body, error_body("Could not support method."));
}

#[tokio::test]
async fn http_on_https_only_service_is_426() {
    let gateway = gateway().await;
    let (status, _, body) = get(&gateway, "https-only.example.com", "/release/x").await;
    assert_eq!(status, 426);
    assert_eq!(body, error_body("Not allow use HTTP protocol."));

    // A custom domain's protocol overrides the service's.
    let (status, _, body) = get(&gateway, "secure.example.com", "/release/user").await;
    assert_eq!(status, 426);
    assert_eq!(body, error_body("Not allow use HTTP protocol."));
}

#[tokio::test]
async fn dot_segments_are_removed_before_routing() {
    // Raw requests, because HTTP client libraries remove dot segments themselves.
    let gateway = gateway().await;
    for path in ["/release/public/../admin", "/release/public/%2e%2E/admin"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: default.example.com\r\nConnection: close\r\n\r\n"
        );
        let response = raw(&gateway, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert!(response.ends_with("\r\n\r\nadmin"), "{path}: {response}");
    }
}

#[tokio::test]
async fn every_response_has_request_id_and_api_id() {
    let gateway = gateway().await;
    for (host, path, api_id) in [
        ("default.example.com", "/release/user", "plain-user"),
        ("default.example.com", "/release/zzz", "-"),
        ("nowhere.example.com", "/release/user", "-"),
        ("default.example.com", "/release/submit", "-"),
    ] {
        let (_, headers, _) = get(&gateway, host, path).await;
        let id = headers["x-api-requestid"].to_str().unwrap();
        assert_eq!(id.len(), 32, "{path}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(headers["x-api-id"], api_id, "{host}{path}");
    }
}

/// HTTPS listeners come with TLS support; until then the pipeline is driven directly with a
/// connection marked as HTTPS, which is what a TLS listener hands it.
#[tokio::test]
async fn https_on_http_only_service_is_426() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tollgate::config::{BackendPoolConfig, Scheme};
    use tollgate::pipeline::{ConnectionInfo, Gateway};
    use tollgate::snapshot::Snapshot;

    let config = tollgate::config::load_str(&routing_config(), "routing.yaml").unwrap();
    let gateway = Gateway::new(
        Snapshot::compile(&config).unwrap(),
        &BackendPoolConfig::default(),
        tollgate::backend::guard::AddressGuard::default(),
        std::sync::Arc::new(tollgate::counters::Counters::in_memory()),
        std::sync::Arc::new(tollgate::clock::SystemClock),
        tollgate::discovery::Registry::new(),
    );
    let conn = ConnectionInfo::new("127.0.0.1:40000".parse().unwrap(), Scheme::Https);
    let request = |host: &str| {
        http::Request::builder()
            .uri("/release/user")
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let response = gateway.handle(request("default.example.com"), &conn).await;
    assert_eq!(response.status(), 426);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, error_body("Not allow use HTTPS protocol."));

    let response = gateway.handle(request("secure.example.com"), &conn).await;
    assert_eq!(response.status(), 200);
}
