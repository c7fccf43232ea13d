//! Mock backends: configured status, headers and body; 481 when the body cannot be served.

mod common;

use common::{error_body, get, TestGateway};

#[tokio::test]
async fn mock_serves_status_headers_and_body() {
    let gateway = TestGateway::start(
        r#"
services:
  - id: service-mock0001
    name: mock
    default_domains: [mock.example.com]
    environments:
      release: {}
    apis:
      - id: api-mock0001
        name: created
        path: =/items
        method: POST
        backend:
          type: mock
          status: 201
          headers: { content-type: application/json, x-mock: "yes" }
          body: '{"id":1}'
"#,
    )
    .await;
    let response = common::client()
        .post(gateway.url("/release/items"))
        .header("host", "mock.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-mock"], "yes");
    assert_eq!(response.headers()["x-api-id"], "api-mock0001");
    assert_eq!(response.text().await.unwrap(), r#"{"id":1}"#);
}

#[tokio::test]
async fn mock_body_file_is_read_per_request_and_481_when_gone() {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.txt");
    std::fs::write(&body_file, "first").unwrap();
    let gateway = TestGateway::start(&format!(
        r#"
services:
  - id: service-mock0002
    name: mockfile
    default_domains: [mock.example.com]
    environments:
      release: {{}}
    apis:
      - id: api-mock0002
        name: file
        path: /file
        backend: {{ type: mock, body_file: '{}' }}
"#,
        body_file.display()
    ))
    .await;
    let (status, _, body) = get(&gateway, "mock.example.com", "/release/file").await;
    assert_eq!((status, body.as_str()), (200, "first"));

    std::fs::write(&body_file, "edited").unwrap();
    let (status, _, body) = get(&gateway, "mock.example.com", "/release/file").await;
    assert_eq!((status, body.as_str()), (200, "edited"));

    std::fs::remove_file(&body_file).unwrap();
    let (status, headers, body) = get(&gateway, "mock.example.com", "/release/file").await;
    assert_eq!(status, 481);
    assert_eq!(body, error_body("Mock config error."));
    assert_eq!(headers["x-api-id"], "api-mock0002");
}

#[test]
fn mock_problems_are_caught_at_load() {
    let text = r#"
services:
  - id: service-mock0003
    name: badmock
    default_domains: [mock.example.com]
    environments:
      release: {}
    apis:
      - id: api-mock0003
        name: bad
        path: /bad
        backend:
          type: mock
          status: 99
          headers: { "bad header": x }
          body: inline
          body_file: /nonexistent/body.txt
"#;
    let problems = tollgate::config::load_str(text, "mock.yaml")
        .unwrap_err()
        .to_string();
    for needle in [
        "backend.status: 99 is not a final response status",
        "`bad header` is not a valid header name",
        "set `body` or `body_file`, not both",
    ] {
        assert!(
            problems.contains(needle),
            "missing `{needle}` in {problems}"
        );
    }
}
