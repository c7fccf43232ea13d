//! CORS over real sockets, and in a real browser. Headless Chromium loads a page from one
//! origin that calls APIs through the gateway on another, and the test reads what the page saw.

mod common;

use std::sync::{Arc, Mutex};

use common::{client, error_body, full, TestBackend, TestGateway};

fn config(page_origin: &str) -> String {
    format!(
        r#"
services:
  - id: service-cors0001
    name: cors
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
      - {{ id: api-flag0001, name: flag, path: /flag, method: ANY, cors: true,
          backend: {{ type: mock, body: flag }} }}
      - {{ id: api-none0001, name: none, path: /none, method: ANY,
          backend: {{ type: mock, body: none }} }}
      - id: api-plugin01
        name: plugin
        path: /plugin
        method: ANY
        backend: {{ type: mock, body: plugin }}
        cors_plugin:
          allow_origin: ['{page_origin}']
          allow_methods: [GET, PUT]
          allow_headers: [X-Custom]
          expose_headers: [X-Api-ID]
          allow_credentials: true
          max_age: 60
      - {{ id: api-regex001, name: regex, path: /regex, backend: {{ type: mock, body: regex }},
          cors_plugin: {{ allow_origin: ['^http://127\.0\.0\.1:[0-9]+$'] }} }}
      - {{ id: api-other001, name: other, path: /other, backend: {{ type: mock, body: other }},
          cors_plugin: {{ allow_origin: ['https://example.com'] }} }}
      - {{ id: api-broken01, name: broken, path: /broken, backend: {{ type: mock, body: broken }},
          cors_plugin: {{ allow_origin: [] }} }}
"#
    )
}

const PAGE_ORIGIN: &str = "http://app.example.com";

async fn send(
    gateway: &TestGateway,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client()
        .request(method, gateway.url(path))
        .header("host", "127.0.0.1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn cors_flag_uses_product_defaults() {
    let gateway = TestGateway::start(&config(PAGE_ORIGIN)).await;
    let response = send(
        &gateway,
        reqwest::Method::GET,
        "/release/flag",
        &[("origin", "http://any.example")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .starts_with("X-Api-ID,X-Service-RateLimit,"));
    assert!(headers.get("vary").is_none());

    let preflight = [
        ("origin", "http://any.example"),
        ("access-control-request-method", "DELETE"),
    ];
    let response = send(
        &gateway,
        reqwest::Method::OPTIONS,
        "/release/flag",
        &preflight,
    )
    .await;
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET,POST,PUT,DELETE,HEAD,OPTIONS,PATCH"
    );
    assert_eq!(headers["access-control-max-age"], "86400");
    assert_eq!(headers["x-api-id"], "api-flag0001");
}

#[tokio::test]
async fn cross_origin_requests_need_cors() {
    let gateway = TestGateway::start(&config(PAGE_ORIGIN)).await;
    let response = send(
        &gateway,
        reqwest::Method::GET,
        "/release/none",
        &[("origin", "http://any.example")],
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.text().await.unwrap(),
        error_body(
            "req is cross origin, api /release/none need open cors flag on qcloud apigateway."
        )
    );
    // The gateway's own origin, and no origin at all, are not cross-origin.
    let own = format!("http://127.0.0.1:{}", gateway.addr.port());
    let response = client()
        .get(gateway.url("/release/none"))
        .header("origin", own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = send(&gateway, reqwest::Method::GET, "/release/none", &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn cors_plugin_admits_only_its_origins() {
    let gateway = TestGateway::start(&config(PAGE_ORIGIN)).await;
    let response = send(
        &gateway,
        reqwest::Method::GET,
        "/release/plugin",
        &[("origin", PAGE_ORIGIN)],
    )
    .await;
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], PAGE_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-expose-headers"], "X-Api-ID");
    assert_eq!(headers["vary"], "Origin");
    for look_alike in [
        "http://app.example.com.evil.net",
        "http://evilapp.example.com",
        "https://app.example.com",
    ] {
        let response = send(
            &gateway,
            reqwest::Method::GET,
            "/release/plugin",
            &[("origin", look_alike)],
        )
        .await;
        assert_eq!(response.status(), 200, "{look_alike}");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{look_alike}"
        );
        assert_eq!(response.headers()["vary"], "Origin");
    }
    let preflight = [
        ("origin", PAGE_ORIGIN),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-custom"),
    ];
    let response = send(
        &gateway,
        reqwest::Method::OPTIONS,
        "/release/plugin",
        &preflight,
    )
    .await;
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-methods"], "GET,PUT");
    assert_eq!(headers["access-control-allow-headers"], "X-Custom");
    assert_eq!(headers["access-control-max-age"], "60");

    let regex_origin = [("origin", "http://127.0.0.1:3000")];
    let response = send(
        &gateway,
        reqwest::Method::GET,
        "/release/regex",
        &regex_origin,
    )
    .await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );

    let response = send(
        &gateway,
        reqwest::Method::GET,
        "/release/broken",
        &[("origin", PAGE_ORIGIN)],
    )
    .await;
    assert_eq!(response.status(), 481);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("Found no valid cors config.")
    );
}

const PAGE: &str = r#"<!doctype html>
<html><body><pre id="out">pending</pre><script>
const gateway = "GATEWAY/release";
async function probe(name, path, init) {
  try {
    const response = await fetch(gateway + path, init);
    const text = await response.text();
    return name + "=ok " + response.status + " " + text + " " + (response.headers.get("x-api-id") || "-");
  } catch (error) {
    return name + "=blocked";
  }
}
(async () => {
  const results = [
    await probe("flag", "/flag"),
    await probe("none", "/none"),
    await probe("plugin", "/plugin", { method: "PUT", headers: { "X-Custom": "1" }, credentials: "include" }),
    await probe("other", "/other"),
  ];
  document.getElementById("out").textContent = results.join("\n");
})();
</script></body></html>"#;

/// Headless Chromium loads a page from one origin that calls the gateway on another.
#[tokio::test]
async fn browser_sees_what_cors_allows() {
    // The page server starts first, so its origin can go in the gateway's configuration;
    // the page names the gateway, so its text is set once the gateway listens.
    let html = Arc::new(Mutex::new(String::new()));
    let served = html.clone();
    let page = TestBackend::start(move |_request| {
        let body = served.lock().unwrap().clone();
        async move {
            let mut response = hyper::Response::new(full(body));
            response
                .headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            response
        }
    })
    .await;
    let page_origin = format!("http://127.0.0.1:{}", page.addr.port());
    let gateway = TestGateway::start(&config(&page_origin)).await;
    *html.lock().unwrap() = PAGE.replace(
        "GATEWAY",
        &format!("http://127.0.0.1:{}", gateway.addr.port()),
    );

    let dom = run_chromium(&format!("{page_origin}/")).await;
    let results = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no results in the page: {dom}"))
        .to_string();
    // The flag's defaults expose X-Api-ID to the page.
    assert!(
        results.contains("flag=ok 200 flag api-flag0001"),
        "{results}"
    );
    assert!(results.contains("none=blocked"), "{results}");
    assert!(results.contains("other=blocked"), "{results}");
    // A preflighted PUT with a custom header and credentials, from the allowed origin.
    assert!(
        results.contains("plugin=ok 200 plugin api-plugin01"),
        "{results}"
    );
}

async fn run_chromium(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = url.to_string();
    let profile_path = profile.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile_path.display()))
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/test installs it)")
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}
