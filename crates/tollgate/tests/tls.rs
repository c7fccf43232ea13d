//! HTTPS listeners over real TLS: certificates chosen by SNI, a client without SNI refused,
//! HTTP/2 by ALPN and with prior knowledge, the scheme checks, forced HTTPS, certificate
//! reload, and HTTPS and HTTP/2 backends.

mod common;

use common::tls::{tls_echo_backend, TestCa};
use common::{echoed_header, error_body, TestBackend, TestGateway};
use serde_json::Value;

struct Fixture {
    ca: TestCa,
    gateway: TestGateway,
    _backend: TestBackend,
}

fn config(dir: &std::path::Path, ca: &TestCa, backend: &str, extra_server: &str) -> String {
    let default = ca.issue(dir, "default", &["gw.example.com", "plain.example.com"]);
    let shop = ca.issue(dir, "shop", &["shop.example.com"]);
    format!(
        r#"
server:
  listen: ["127.0.0.1:0"]
  listen_tls: ["127.0.0.1:0"]
  tls: {{ cert_file: '{default_cert}', key_file: '{default_key}' }}
  https_port: 8443
  access_log: {{ enabled: false }}
{extra_server}
services:
  - id: service-tls00001
    name: tls
    default_domains: [gw.example.com]
    custom_domains:
      - domain: shop.example.com
        certificate: {{ cert_file: '{shop_cert}', key_file: '{shop_key}' }}
        force_https: true
    environments:
      release: {{}}
    apis:
      - {{ id: api-echo0001, name: echo, path: /, method: ANY, backend: {{ type: http, url: '{backend}' }} }}
  - id: service-plain001
    name: plain
    protocol: http
    default_domains: [plain.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-plain001, name: plain, path: /, backend: {{ type: mock, body: plain }} }}
"#,
        default_cert = default.cert_file.display(),
        default_key = default.key_file.display(),
        shop_cert = shop.cert_file.display(),
        shop_key = shop.key_file.display(),
    )
}

async fn fixture(extra_server: &str) -> Fixture {
    let ca = TestCa::new();
    let backend = TestBackend::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), &ca, &backend.url(), extra_server);
    let gateway = TestGateway::start(&yaml).await;
    // The certificates were read at start; the gateway keeps its own copy of the folder.
    std::mem::forget(dir);
    Fixture {
        ca,
        gateway,
        _backend: backend,
    }
}

impl Fixture {
    fn tls_addr(&self) -> std::net::SocketAddr {
        self.gateway.server().tls_addrs()[0]
    }

    fn https(&self) -> reqwest::Client {
        self.ca.https_client(
            &["gw.example.com", "shop.example.com", "plain.example.com"],
            self.tls_addr(),
        )
    }
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let fixture = fixture("").await;
    let addr = fixture.tls_addr();
    let shop = fixture
        .ca
        .handshake(addr, "shop.example.com")
        .await
        .unwrap();
    let default = fixture.ca.handshake(addr, "gw.example.com").await.unwrap();
    assert_ne!(shop, default);
    // The default certificate serves every name without one of its own.
    let other = fixture
        .ca
        .handshake(addr, "plain.example.com")
        .await
        .unwrap();
    assert_eq!(other, default);
}

#[tokio::test]
async fn a_client_without_sni_is_refused() {
    let fixture = fixture("").await;
    // A client connecting by IP address sends no SNI.
    let result = fixture.ca.handshake(fixture.tls_addr(), "127.0.0.1").await;
    assert!(result.is_err(), "the handshake without SNI succeeded");
    // The listener keeps serving others.
    assert!(fixture
        .ca
        .handshake(fixture.tls_addr(), "gw.example.com")
        .await
        .is_ok());
}

#[tokio::test]
async fn https_serves_http2_and_http1_with_the_same_pipeline() {
    let fixture = fixture("").await;
    let url = format!(
        "https://gw.example.com:{}/release/x?a=1",
        fixture.tls_addr().port()
    );
    let response = fixture.https().get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-api-id"], "api-echo0001");
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(echo["uri"], "/x?a=1");
    assert_eq!(echoed_header(&echo, "x-client-proto"), Some("https"));
    assert_eq!(echoed_header(&echo, "x-client-proto-ver"), Some("HTTP/2.0"));
    assert_eq!(echoed_header(&echo, "x-api-scheme"), Some("https"));

    let http1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .use_preconfigured_tls(fixture.ca.client_config(&[b"http/1.1"]))
        .resolve("gw.example.com", fixture.tls_addr())
        .build()
        .unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);

    // Errors are the same over HTTP/2.
    let missing = format!(
        "https://gw.example.com:{}/test/x",
        fixture.tls_addr().port()
    );
    let response = fixture.https().get(&missing).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("There is no api match default env_mapping[test].")
    );
}

#[tokio::test]
async fn https_to_an_http_only_service_is_426() {
    let fixture = fixture("").await;
    let url = format!(
        "https://plain.example.com:{}/release/",
        fixture.tls_addr().port()
    );
    let response = fixture.https().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("Not allow use HTTPS protocol.")
    );
}

#[tokio::test]
async fn forced_https_redirects_with_308() {
    let fixture = fixture("").await;
    let response = common::client()
        .post(fixture.gateway.url("/release/orders?id=7"))
        .header("host", "shop.example.com")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://shop.example.com:8443/release/orders?id=7"
    );
    // Over HTTPS the same domain is served.
    let url = format!(
        "https://shop.example.com:{}/release/orders",
        fixture.tls_addr().port()
    );
    let response = fixture
        .https()
        .post(&url)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn certificates_reload_with_the_configuration() {
    let fixture = fixture("").await;
    let addr = fixture.tls_addr();
    let before = fixture
        .ca
        .handshake(addr, "shop.example.com")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let renewed = fixture
        .ca
        .issue(dir.path(), "shop-renewed", &["shop.example.com"]);
    let yaml = std::fs::read_to_string(&fixture.gateway.config_path).unwrap();
    let old_cert = yaml
        .lines()
        .find(|line| line.contains("shop.crt"))
        .unwrap()
        .to_string();
    let new_line = format!(
        "        certificate: {{ cert_file: '{}', key_file: '{}' }}",
        renewed.cert_file.display(),
        renewed.key_file.display()
    );
    std::fs::write(
        &fixture.gateway.config_path,
        yaml.replace(&old_cert, &new_line),
    )
    .unwrap();
    fixture.gateway.server().reload().await.unwrap();
    let after = fixture
        .ca
        .handshake(addr, "shop.example.com")
        .await
        .unwrap();
    assert_ne!(before, after);
    assert_eq!(after, renewed.der);
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge() {
    let fixture = fixture("  http2_cleartext: true").await;
    common::install_crypto_provider();
    // An HTTP/2 client names the host in `:authority`, not in a Host header.
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("gw.example.com", fixture.gateway.addr)
        .build()
        .unwrap();
    let url = format!(
        "http://gw.example.com:{}/release/h2c",
        fixture.gateway.addr.port()
    );
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    // HTTP/1.1 still works on the same listener.
    let response = common::client()
        .get(fixture.gateway.url("/release/h1"))
        .header("host", "gw.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn https_backends_trust_the_configured_ca() {
    common::install_crypto_provider();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue(dir.path(), "backend", &["localhost"]);
    let (addr, _task) = tls_echo_backend(&leaf).await;
    let ca_file = ca.write_pem(dir.path());
    let url = format!("https://localhost:{}", addr.port());
    let yaml = format!(
        r#"
services:
  - id: service-https001
    name: https
    default_domains: [gw.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-trusted1, name: trusted, path: /trusted, timeout_secs: 5,
          backend: {{ type: http, url: '{url}', ca_file: '{ca}' }} }}
      - {{ id: api-h2tls01, name: h2tls, path: /h2, timeout_secs: 5,
          backend: {{ type: http, url: '{url}', ca_file: '{ca}', http2: true }} }}
      - {{ id: api-untrust, name: untrusted, path: /untrusted, timeout_secs: 5,
          backend: {{ type: http, url: '{url}' }} }}
"#,
        ca = ca_file.display()
    );
    let gateway = TestGateway::start(&yaml).await;
    let get = |path: &'static str| {
        let url = gateway.url(path);
        async move {
            let response = common::client()
                .get(url)
                .header("host", "gw.example.com")
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = get("/release/trusted/a").await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(
        echoed_header(&echo, "host"),
        Some(format!("localhost:{}", addr.port()).as_str())
    );

    let (status, body) = get("/release/h2/b").await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");

    // Without the CA, the backend's certificate is not trusted.
    let (status, body) = get("/release/untrusted/c").await;
    assert_eq!((status, body), (502, error_body("Bad Gateway.")));
}

#[tokio::test]
async fn http2_prior_knowledge_to_a_plain_backend() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request| async move {
                    Ok::<_, std::convert::Infallible>(common::echo(request).await)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let yaml = format!(
        r#"
services:
  - id: service-h2c00001
    name: h2c
    default_domains: [gw.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-h2c00001, name: h2c, path: /, timeout_secs: 5,
          backend: {{ type: http, url: 'http://{addr}', http2: true }} }}
"#
    );
    let gateway = TestGateway::start(&yaml).await;
    let response = common::client()
        .get(gateway.url("/release/x"))
        .header("host", "gw.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echoed_header(&echo, "connection"), None);
}
