//! Declared parameters over real sockets: required ones, defaults, mapping between header,
//! query and path, constants, body parameters of form bodies, and malformed query strings.

mod common;

use common::{client, echoed_header, error_body, TestBackend, TestGateway};
use serde_json::Value;

fn config(backend: &str) -> String {
    format!(
        r#"
services:
  - id: service-params01
    name: params
    default_domains: [params.example.com]
    environments:
      release: {{}}
    apis:
      - id: api-map00001
        name: map
        path: /map/{{id}}
        method: ANY
        backend: {{ type: http, url: '{backend}', path: '/users/{{id}}/{{region}}' }}
        parameters:
          - {{ name: X-Tenant, position: header, backend_name: tenant, backend_position: query }}
          - {{ name: page, position: query, backend_name: X-Page, backend_position: header }}
          - {{ name: region, position: query, default: gz, backend_position: path }}
          - {{ name: id, position: path, required: true, backend_name: X-User, backend_position: header }}
        constant_parameters:
          - {{ name: X-Source, position: header, value: gateway }}
          - {{ name: channel, position: query, value: web }}
      - id: api-form0001
        name: form
        path: /form
        method: POST
        backend: {{ type: http, url: '{backend}' }}
        parameters:
          - {{ name: user, position: body, required: true, backend_name: X-Form-User, backend_position: header }}
      - id: api-query001
        name: query
        path: /query
        backend: {{ type: http, url: '{backend}' }}
        parameters:
          - {{ name: q, position: query, required: true }}
"#
    )
}

async fn request(
    gateway: &TestGateway,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut request = client()
        .request(method, gateway.url(path))
        .header("host", "params.example.com");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn parameters_are_mapped_moved_and_added() {
    let backend = TestBackend::echo().await;
    let gateway = TestGateway::start(&config(&backend.url())).await;
    let (status, body) = request(
        &gateway,
        reqwest::Method::GET,
        "/release/map/42?page=3&keep=1",
        &[("x-tenant", "acme")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    let uri = echo["uri"].as_str().unwrap();
    let (path, query) = uri.split_once('?').unwrap();
    // `region` was absent: its default fills the backend path variable.
    assert_eq!(path, "/users/42/gz");
    let mut query: Vec<&str> = query.split('&').collect();
    query.sort();
    // `page` moved to a header; `X-Tenant` moved to the query; the constant was added.
    assert_eq!(query, ["channel=web", "keep=1", "tenant=acme"]);
    assert_eq!(echoed_header(&echo, "x-page"), Some("3"));
    assert_eq!(echoed_header(&echo, "x-tenant"), None);
    assert_eq!(echoed_header(&echo, "x-user"), Some("42"));
    assert_eq!(echoed_header(&echo, "x-source"), Some("gateway"));

    let (status, body) = request(&gateway, reqwest::Method::GET, "/release/map//", &[], None).await;
    assert_eq!(
        (status, body),
        (403, error_body("path variable id is required."))
    );

    let (status, body) = request(
        &gateway,
        reqwest::Method::GET,
        "/release/map/7?region=sh",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert!(
        echo["uri"].as_str().unwrap().starts_with("/users/7/sh?"),
        "{echo}"
    );
}

#[tokio::test]
async fn form_body_parameters() {
    let backend = TestBackend::echo().await;
    let gateway = TestGateway::start(&config(&backend.url())).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = request(
        &gateway,
        reqwest::Method::POST,
        "/release/form",
        &form,
        Some("user=ann+lee&x=1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed_header(&echo, "x-form-user"), Some("ann lee"));
    // The body itself goes to the backend as sent.
    assert_eq!(echo["body_len"], "user=ann+lee&x=1".len());

    let (status, body) = request(
        &gateway,
        reqwest::Method::POST,
        "/release/form",
        &form,
        Some("x=1"),
    )
    .await;
    assert_eq!(
        (status, body),
        (403, error_body("body param user is required."))
    );
    let json = [("content-type", "application/json")];
    let (status, body) = request(
        &gateway,
        reqwest::Method::POST,
        "/release/form",
        &json,
        Some("{\"user\":1}"),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            403,
            error_body("req content type need application/x-www-form-urlencoded.")
        )
    );
    let (status, body) = request(
        &gateway,
        reqwest::Method::POST,
        "/release/form",
        &form,
        Some("user=%zz"),
    )
    .await;
    assert_eq!((status, body), (403, error_body("Get user params fail.")));
}

#[tokio::test]
async fn malformed_query_strings_are_500() {
    let backend = TestBackend::echo().await;
    let gateway = TestGateway::start(&config(&backend.url())).await;
    for query in ["q=%zz", "q=%2", "q=%c3%28"] {
        let (status, body) = request(
            &gateway,
            reqwest::Method::GET,
            &format!("/release/query?{query}"),
            &[],
            None,
        )
        .await;
        assert_eq!(
            (status, body),
            (500, error_body("Error occurred during query params.")),
            "{query}"
        );
    }
    let (status, _) = request(
        &gateway,
        reqwest::Method::GET,
        "/release/query?q=%41",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = request(
        &gateway,
        reqwest::Method::GET,
        "/release/query?x=1",
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (403, error_body("querystring q is required."))
    );
}
