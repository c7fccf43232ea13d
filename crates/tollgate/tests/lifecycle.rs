//! The `tollgate` binary: reload on SIGHUP, graceful shutdown, the access log and 499.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::GatewayProcess;
use common::{client, full, TestBackend};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const SERVER: &str = r#"
server:
  listen: ["127.0.0.1:0"]
  log_format: json
  grace_period_secs: GRACE
"#;

fn config(grace_secs: u64, apis: &str) -> String {
    format!(
        r#"{}
services:
  - id: service-life0001
    name: life
    protocol: http
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
{apis}"#,
        SERVER.replace("GRACE", &grace_secs.to_string())
    )
}

fn mock_api(body: &str) -> String {
    format!(
        "      - {{ id: api-mock0001, name: mock, path: /mock, method: ANY, backend: {{ type: mock, body: '{body}' }} }}\n"
    )
}

fn http_api(url: &str) -> String {
    format!(
        "      - {{ id: api-slow0001, name: slow, path: /slow, method: ANY, timeout_secs: 60, \
         backend: {{ type: http, url: '{url}' }} }}\n"
    )
}

/// The flags of the slow backends that received a request. A `Weak` keeps the flag's
/// allocation, so another test's flag can never take its address.
static RECEIVED: std::sync::Mutex<Vec<std::sync::Weak<AtomicBool>>> =
    std::sync::Mutex::new(Vec::new());

/// A backend that answers after `delay`, and sets `dropped` if its request is abandoned.
async fn slow_backend(delay: Duration, dropped: Arc<AtomicBool>) -> TestBackend {
    TestBackend::start(move |_request| {
        let dropped = dropped.clone();
        RECEIVED.lock().unwrap().push(Arc::downgrade(&dropped));
        async move {
            let guard = DropFlag(dropped);
            tokio::time::sleep(delay).await;
            std::mem::forget(guard);
            hyper::Response::new(full("slow answer"))
        }
    })
    .await
}

/// Waits until a slow backend holds a request, so a signal sent next finds it in flight; a
/// fixed sleep is not enough on a loaded machine.
async fn wait_for_backend(dropped: &Arc<AtomicBool>) {
    let received = || {
        RECEIVED
            .lock()
            .unwrap()
            .iter()
            .any(|flag| std::ptr::eq(flag.as_ptr(), Arc::as_ptr(dropped)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn body_of(gateway: &GatewayProcess, path: &str) -> (u16, String) {
    let response = client().get(gateway.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn sighup_reloads_a_good_file_and_rejects_a_bad_one() {
    let gateway = GatewayProcess::start(&config(5, &mock_api("v1"))).await;
    assert_eq!(
        body_of(&gateway, "/release/mock").await,
        (200, "v1".to_string())
    );

    gateway.rewrite_config(&config(5, &mock_api("v2")));
    gateway.signal("HUP");
    gateway
        .wait_for_log(|line| line["message"] == "configuration reloaded")
        .await;
    assert_eq!(
        body_of(&gateway, "/release/mock").await,
        (200, "v2".to_string())
    );

    gateway.rewrite_config(&config(5, &mock_api("v3")).replace("path: /mock", "path: mock"));
    gateway.signal("HUP");
    let rejected = gateway
        .wait_for_log(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reload rejected"))
        })
        .await;
    let message = rejected["message"].as_str().unwrap();
    assert!(message.contains("services[0].apis[0].path"), "{message}");
    assert_eq!(rejected["level"], "ERROR");
    assert_eq!(
        body_of(&gateway, "/release/mock").await,
        (200, "v2".to_string())
    );
}

#[tokio::test]
async fn request_in_flight_finishes_on_the_old_config() {
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = slow_backend(Duration::from_millis(800), dropped.clone()).await;
    let gateway = GatewayProcess::start(&config(5, &http_api(&backend.url()))).await;
    let in_flight = tokio::spawn(body_of_owned(gateway.url("/release/slow")));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let old_backend = format!("backend: {{ type: http, url: '{}' }}", backend.url());
    let replaced =
        http_api(&backend.url()).replace(&old_backend, "backend: { type: mock, body: replaced }");
    gateway.rewrite_config(&config(5, &replaced));
    gateway.signal("HUP");
    gateway
        .wait_for_log(|line| line["message"] == "configuration reloaded")
        .await;
    assert_eq!(
        body_of(&gateway, "/release/slow").await,
        (200, "replaced".to_string())
    );
    assert_eq!(in_flight.await.unwrap(), (200, "slow answer".to_string()));
}

async fn body_of_owned(url: String) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = slow_backend(Duration::from_millis(1500), dropped.clone()).await;
    let mut gateway = GatewayProcess::start(&config(10, &http_api(&backend.url()))).await;
    let in_flight = tokio::spawn(body_of_owned(gateway.url("/release/slow")));
    wait_for_backend(&dropped).await;

    gateway.signal("TERM");
    gateway
        .wait_for_log(|line| line["message"] == "shutting down")
        .await;
    let refused = tokio::net::TcpStream::connect(gateway.addr).await;
    assert!(refused.is_err(), "the gateway still accepts after SIGTERM");

    assert_eq!(in_flight.await.unwrap(), (200, "slow answer".to_string()));
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn sigterm_stops_after_the_grace_period() {
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = slow_backend(Duration::from_secs(30), dropped.clone()).await;
    let mut gateway = GatewayProcess::start(&config(1, &http_api(&backend.url()))).await;
    let in_flight = tokio::spawn(body_of_owned_result(gateway.url("/release/slow")));
    wait_for_backend(&dropped).await;

    let started = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let answer = in_flight.await.unwrap();
    assert!(
        answer.is_err(),
        "the cut-off request got an answer: {answer:?}"
    );
}

#[tokio::test]
async fn second_sigterm_stops_at_once() {
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = slow_backend(Duration::from_secs(30), dropped.clone()).await;
    let mut gateway = GatewayProcess::start(&config(30, &http_api(&backend.url()))).await;
    let in_flight = tokio::spawn(body_of_owned_result(gateway.url("/release/slow")));
    wait_for_backend(&dropped).await;

    gateway.signal("TERM");
    gateway
        .wait_for_log(|line| line["message"] == "shutting down")
        .await;
    let started = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(in_flight.await.unwrap().is_err());
}

async fn body_of_owned_result(url: String) -> Result<String, reqwest::Error> {
    client().get(url).send().await?.text().await
}

#[tokio::test]
async fn client_gone_is_logged_as_499_and_backend_cancelled() {
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = slow_backend(Duration::from_secs(10), dropped.clone()).await;
    let gateway = GatewayProcess::start(&config(5, &http_api(&backend.url()))).await;

    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /release/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    wait_for_backend(&dropped).await;
    drop(stream);

    let line = gateway
        .wait_for_log(|line| line["target"] == "tollgate::access")
        .await;
    assert_eq!(line["status"], 499);
    assert_eq!(line["err_msg"], "Client closed connetion.");
    assert_eq!(line["api"], "api-slow0001");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the backend request was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn access_log_has_the_product_fields() {
    let backend = TestBackend::echo().await;
    let gateway = GatewayProcess::start(&config(5, &http_api(&backend.url()))).await;
    let response = client()
        .get(gateway.url("/release/slow/x?q=1"))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-api-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let sent = response.bytes().await.unwrap().len() as u64;

    let line = gateway
        .wait_for_log(|line| line["target"] == "tollgate::access")
        .await;
    let expected: [(&str, Value); 11] = [
        ("request_id", request_id.into()),
        ("service", "service-life0001".into()),
        ("environment", "release".into()),
        ("api", "api-slow0001".into()),
        ("method", "GET".into()),
        ("uri", "/release/slow/x?q=1".into()),
        ("scheme", "http".into()),
        ("status", 200.into()),
        ("ups_status", 200.into()),
        ("upstream", backend.addr.to_string().into()),
        ("bytes_sent", sent.into()),
    ];
    for (field, value) in expected {
        assert_eq!(line[field], value, "field {field} in {line}");
    }
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        line["request_time_ms"].as_f64().unwrap() >= line["upstream_time_ms"].as_f64().unwrap()
    );
    assert!(line.get("err_msg").is_none());

    let _ = client()
        .get(gateway.url("/release/none"))
        .send()
        .await
        .unwrap();
    let error_line = gateway
        .wait_for_log(|line| line["target"] == "tollgate::access" && line["status"] == 404)
        .await;
    assert_eq!(
        error_line["err_msg"],
        "There is no api match uri[/none] host [127.0.0.1]"
    );
    assert!(error_line.get("ups_status").is_none());
}

/// A HEAD response has no body to send, so its log line carries no error.
#[tokio::test]
async fn head_requests_are_logged_without_an_error() {
    let backend = TestBackend::echo().await;
    let apis = mock_api("hello") + &http_api(&backend.url());
    let gateway = GatewayProcess::start(&config(5, &apis)).await;
    for path in ["/release/mock", "/release/slow"] {
        let response = client().head(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let request_id = response.headers()["x-api-requestid"]
            .to_str()
            .unwrap()
            .to_string();
        let line = gateway
            .wait_for_log(|line| {
                line["target"] == "tollgate::access" && line["request_id"] == request_id.as_str()
            })
            .await;
        assert_eq!(line["status"], 200, "{path}: {line}");
        assert!(line.get("err_msg").is_none(), "{path}: {line}");
    }
}

/// A dead backend fails every request; the operator gets one warning a second, not one per
/// request, while each access-log line still carries the error.
#[tokio::test]
async fn dead_backend_warnings_are_throttled() {
    let url = format!("http://127.0.0.1:{}", common::closed_port());
    let gateway = GatewayProcess::start(&config(5, &http_api(&url))).await;
    for _ in 0..30 {
        let (status, _) = body_of(&gateway, "/release/slow").await;
        assert_eq!(status, 502);
    }
    gateway
        .wait_for_log(|line| line["target"] == "tollgate::access" && line["status"] == 502)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gateway.logs();
    let access = logs
        .iter()
        .filter(|line| line["target"] == "tollgate::access" && line["err_msg"] == "Bad Gateway.")
        .count();
    let warnings = logs
        .iter()
        .filter(|line| line["message"] == "backend request failed: Bad Gateway.")
        .count();
    assert_eq!(access, 30);
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} warnings for 30 failures"
    );
}
