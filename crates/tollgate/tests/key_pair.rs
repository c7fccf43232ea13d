//! Key-pair authentication and usage plans over real sockets: every 401 and 403 message,
//! the X-Date window on an injected clock, plan rate limits and quotas reached exactly, and
//! service and API throttling.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{client, echoed_header, error_body, TestBackend, TestGateway};
use serde_json::Value;
use tollgate::auth::sign::{authorization, body_digest, http_date};
use tollgate::auth::signature::Algorithm;
use tollgate::clock::ManualClock;

const HOST: &str = "auth.example.com";
const GOOD_ID: &str = "AKIDgood0001";
const GOOD_KEY: &str = "goodsecret-0001";
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600;

struct Limits {
    plan_rate: i64,
    plan_quota: i64,
    service_rate: Option<u64>,
    api_rate: Option<u64>,
}

const UNLIMITED: Limits = Limits {
    plan_rate: -1,
    plan_quota: -1,
    service_rate: None,
    api_rate: None,
};

fn config(backend: &str, limits: &Limits) -> String {
    let service_rate = limits
        .service_rate
        .map(|rate| format!("requests_per_second: {rate}, "))
        .unwrap_or_default();
    let api_rate = limits
        .api_rate
        .map(|rate| format!("api_requests_per_second: {{ api-secure01: {rate} }}"))
        .unwrap_or_default();
    format!(
        r#"
key_pairs:
  - {{ secret_id: {GOOD_ID}, secret_key: {GOOD_KEY} }}
  - {{ secret_id: AKIDoff00001, secret_key: offsecret-0001, enabled: false }}
  - {{ secret_id: AKIDother001, secret_key: othersecret-01 }}
  - {{ secret_id: AKIDfree0001, secret_key: freesecret-001 }}
usage_plans:
  - id: plan-basic
    requests_per_second: {rate}
    quota: {quota}
    key_pairs: [{GOOD_ID}, AKIDoff00001]
    bindings: [{{ service: service-auth0001, environment: release }}]
  - id: plan-other
    key_pairs: [AKIDother001]
    bindings: [{{ service: service-other001, environment: release }}]
services:
  - id: service-auth0001
    name: auth
    default_domains: [{HOST}]
    environments:
      release: {{ {service_rate}{api_rate} }}
      test: {{}}
    apis:
      - {{ id: api-secure01, name: secure, path: /secure, method: ANY, auth: SECRET,
          backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-open0001, name: open, path: /open, method: ANY,
          backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-target01, name: target, path: /target, method: ANY, auth: SECRET,
          key_pair: {{ sign_request_target: true }},
          backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-digest01, name: digest, path: /digest, method: ANY, auth: SECRET,
          key_pair: {{ require_digest: true }},
          backend: {{ type: http, url: '{backend}' }} }}
  - id: service-other001
    name: other
    default_domains: [other.example.com]
    environments:
      release: {{}}
    apis:
      - {{ id: api-other001, name: other, path: /, method: ANY, auth: SECRET,
          backend: {{ type: mock, body: other }} }}
"#,
        rate = limits.plan_rate,
        quota = limits.plan_quota,
    )
}

struct Fixture {
    gateway: TestGateway,
    clock: Arc<ManualClock>,
    _backend: TestBackend,
}

async fn fixture(limits: &Limits) -> Fixture {
    let backend = TestBackend::echo().await;
    let clock = Arc::new(ManualClock::new(at(0)));
    let gateway =
        TestGateway::start_with_clock(&config(&backend.url(), limits), clock.clone()).await;
    Fixture {
        gateway,
        clock,
        _backend: backend,
    }
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(START + seconds)
}

/// Signed headers for a request: `X-Date` at `date`, `Source`, and `Authorization`.
fn signed(id: &str, key: &str, date: SystemTime) -> Vec<(String, String)> {
    let date = http_date(date);
    let authorization = authorization(
        id,
        key.as_bytes(),
        Algorithm::HmacSha256,
        &[("x-date", &date), ("source", "tests")],
    );
    vec![
        ("x-date".into(), date),
        ("source".into(), "tests".into()),
        ("authorization".into(), authorization),
    ]
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn call(fixture: &Fixture, path: &str, headers: &[(String, String)]) -> Answer {
    call_with(fixture, reqwest::Method::GET, path, headers, Vec::new()).await
}

async fn call_with(
    fixture: &Fixture,
    method: reqwest::Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let mut request = client()
        .request(method, fixture.gateway.url(path))
        .header("host", HOST)
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

fn assert_error(answer: &Answer, status: u16, message: &str) {
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (status, error_body(message).as_str())
    );
}

fn with_authorization(value: &str) -> Vec<(String, String)> {
    vec![
        ("x-date".into(), http_date(at(0))),
        ("authorization".into(), value.into()),
    ]
}

#[tokio::test]
async fn signed_request_reaches_backend() {
    let fixture = fixture(&UNLIMITED).await;
    let answer = call(
        &fixture,
        "/release/secure/x?a=1",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let echo: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(echo["uri"], "/x?a=1");
    // The caller's signature headers are passed on, as the product does.
    assert_eq!(echoed_header(&echo, "source"), Some("tests"));
    assert!(echoed_header(&echo, "authorization").is_some());
    assert_eq!(answer.headers["x-usageplan-ratelimit"], "unlimited");
    assert_eq!(answer.headers["x-usageplan-quota"], "unlimited");
}

#[tokio::test]
async fn every_header_problem_has_its_own_401() {
    let fixture = fixture(&UNLIMITED).await;
    let date = http_date(at(0));
    let sig = |headers: &str| {
        let mut signing = String::new();
        for name in headers.split(' ') {
            let value = match name {
                "x-date" | "date" => date.as_str(),
                _ => "tests",
            };
            if !signing.is_empty() {
                signing.push('\n');
            }
            signing.push_str(&format!("{name}: {value}"));
        }
        Algorithm::HmacSha1.sign(GOOD_KEY.as_bytes(), signing.as_bytes())
    };
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            vec![("x-date".into(), date.clone())],
            "HMAC signature cannot be verified, a validate authorization header is required",
        ),
        (
            with_authorization("Basic dXNlcjpwYXNz"),
            "HMAC authorization format error.",
        ),
        (
            with_authorization(r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", headers="x-date""#),
            "HMAC id or signature missing.",
        ),
        (
            with_authorization(r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", signature="abc=""#),
            "HMAC authorization headers is invalidate.",
        ),
        (
            with_authorization(r#"hmac id="AKIDgood0001", algorithm="hmac-md5", headers="x-date", signature="abc=""#),
            "HMAC algorithm hmac-md5 not supported.",
        ),
        (
            with_authorization(r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", headers="x-date source", signature="abc=""#),
            "HMAC signature cannot be verified, a valid source header is required.",
        ),
        (
            vec![
                ("source".into(), "tests".into()),
                (
                    "authorization".into(),
                    format!(r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", headers="source", signature="{}""#, sig("source")),
                ),
            ],
            "HMAC signature cannot be verified, a valid date or x-date header is required.",
        ),
        (
            vec![
                ("x-date".into(), "yesterday".into()),
                (
                    "authorization".into(),
                    r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", headers="x-date", signature="abc=""#.into(),
                ),
            ],
            "HMAC signature cannot be verified, a valid x-date header is required for HMAC Authentication.",
        ),
        (
            with_authorization(&format!(r#"hmac id="AKIDnobody01", algorithm="hmac-sha1", headers="x-date", signature="{}""#, sig("x-date"))),
            "HMAC signature cannot be verified.",
        ),
        (
            with_authorization(&format!(
                r#"hmac id="AKIDgood0001", algorithm="hmac-sha1", headers="x-date", signature="{}""#,
                Algorithm::HmacSha1.sign(b"not-the-key", format!("x-date: {date}").as_bytes())
            )),
            "HMAC signature does not match.",
        ),
    ];
    for (headers, message) in cases {
        let answer = call(&fixture, "/release/secure", &headers).await;
        assert_error(&answer, 401, message);
    }
}

#[tokio::test]
async fn signed_header_sent_twice_rejected() {
    let fixture = fixture(&UNLIMITED).await;
    let mut request = client()
        .get(fixture.gateway.url("/release/secure"))
        .header("host", HOST);
    for (name, value) in signed(GOOD_ID, GOOD_KEY, at(0)) {
        request = request.header(name, value);
    }
    let response = request.header("source", "second").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        error_body("HMAC do not support multiple HTTP header.")
    );
}

#[tokio::test]
async fn x_date_must_be_within_the_window_and_date_is_not_checked() {
    let fixture = fixture(&UNLIMITED).await;
    fixture.clock.set(at(10_000));
    for (offset, expected) in [(-900i64, 200), (900, 200), (-901, 401), (901, 401)] {
        let date = at((10_000 + offset) as u64);
        let answer = call(
            &fixture,
            "/release/secure",
            &signed(GOOD_ID, GOOD_KEY, date),
        )
        .await;
        assert_eq!(
            answer.status, expected,
            "X-Date {offset} s away: {}",
            answer.body
        );
        if expected == 401 {
            assert_error(
                &answer,
                401,
                "HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication.",
            );
        }
    }
    // A signed Date a day old still passes: the product checks only X-Date.
    let date = http_date(at(0));
    let value = authorization(
        GOOD_ID,
        GOOD_KEY.as_bytes(),
        Algorithm::HmacSha512,
        &[("date", &date)],
    );
    fixture.clock.set(at(86_400));
    let answer = call(
        &fixture,
        "/release/secure",
        &[("date".into(), date), ("authorization".into(), value)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn disabled_unbound_and_planless_keys_are_refused() {
    let fixture = fixture(&UNLIMITED).await;
    let answer = call(
        &fixture,
        "/release/secure",
        &signed("AKIDoff00001", "offsecret-0001", at(0)),
    )
    .await;
    assert_error(&answer, 401, "HMAC signature cannot be verified.");

    let answer = call(
        &fixture,
        "/release/secure",
        &signed("AKIDother001", "othersecret-01", at(0)),
    )
    .await;
    assert_error(&answer, 401, "HMAC apikey is invalid for API.");

    let answer = call(
        &fixture,
        "/release/secure",
        &signed("AKIDfree0001", "freesecret-001", at(0)),
    )
    .await;
    assert_error(&answer, 401, "HMAC apikey is invalid for API.");

    // No plan is bound to the test environment at all.
    let answer = call(&fixture, "/test/secure", &signed(GOOD_ID, GOOD_KEY, at(0))).await;
    assert_error(&answer, 403, "Found no validate usage plan.");
}

#[tokio::test]
async fn plan_rate_limit_is_reached_exactly() {
    let limits = Limits {
        plan_rate: 3,
        ..UNLIMITED
    };
    let fixture = fixture(&limits).await;
    for remaining in [2, 1, 0] {
        let answer = call(
            &fixture,
            "/release/secure",
            &signed(GOOD_ID, GOOD_KEY, at(0)),
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.headers["x-usageplan-ratelimit"],
            format!("3/{remaining}").as_str()
        );
    }
    let answer = call(
        &fixture,
        "/release/secure",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_error(&answer, 429, "API rate limit exceeded.");
    assert_eq!(answer.headers["x-usageplan-ratelimit"], "3/0");

    fixture.clock.advance(Duration::from_secs(1));
    let answer = call(
        &fixture,
        "/release/secure",
        &signed(GOOD_ID, GOOD_KEY, at(1)),
    )
    .await;
    assert_eq!(answer.status, 200, "a new second has room again");
}

#[tokio::test]
async fn quota_is_reached_exactly_and_refused_requests_do_not_use_it() {
    let limits = Limits {
        plan_rate: 2,
        plan_quota: 3,
        ..UNLIMITED
    };
    let fixture = fixture(&limits).await;
    let mut statuses = Vec::new();
    for second in 0..3 {
        fixture.clock.set(at(second));
        for _ in 0..3 {
            let answer = call(
                &fixture,
                "/release/secure",
                &signed(GOOD_ID, GOOD_KEY, at(second)),
            )
            .await;
            statuses.push((answer.status, answer.body));
        }
    }
    let quota = error_body("API quota exceeded.");
    let rate = error_body("API rate limit exceeded.");
    let expected = [
        (200, None),
        (200, None),
        (429, Some(&rate)),
        (200, None),
        (429, Some(&quota)),
        (429, Some(&quota)),
        (429, Some(&quota)),
        (429, Some(&quota)),
        (429, Some(&quota)),
    ];
    for (index, ((status, body), (want_status, want_body))) in
        statuses.iter().zip(expected).enumerate()
    {
        assert_eq!(*status, want_status, "request {index}: {body}");
        if let Some(want_body) = want_body {
            assert_eq!(body, want_body, "request {index}");
        }
    }
    // Requests refused before the counters, such as a bad signature, use nothing either.
    let answer = call(
        &fixture,
        "/release/secure",
        &signed(GOOD_ID, "wrong-key-000", at(2)),
    )
    .await;
    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn service_and_api_throttling_take_the_smallest_limit() {
    let limits = Limits {
        service_rate: Some(3),
        api_rate: Some(2),
        ..UNLIMITED
    };
    let fixture = fixture(&limits).await;
    let headers = signed(GOOD_ID, GOOD_KEY, at(0));
    let first = call(&fixture, "/release/secure", &headers).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-service-ratelimit"], "3/2");
    assert_eq!(first.headers["x-api-ratelimit"], "2/1");
    assert_eq!(
        call(&fixture, "/release/secure", &headers).await.status,
        200
    );
    let refused = call(&fixture, "/release/secure", &headers).await;
    assert_error(&refused, 429, "API rate limit exceeded.");

    // The API's limit refused the third call, so the service had one left for another API.
    let open = call(&fixture, "/release/open", &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.headers["x-service-ratelimit"], "3/0");
    assert!(open.headers.get("x-api-ratelimit").is_none());
    let open = call(&fixture, "/release/open", &[]).await;
    assert_error(&open, 429, "API rate limit exceeded.");
}

#[tokio::test]
async fn open_api_counts_signed_caller() {
    let limits = Limits {
        plan_quota: 1,
        ..UNLIMITED
    };
    let fixture = fixture(&limits).await;
    let answer = call(&fixture, "/release/open", &signed(GOOD_ID, GOOD_KEY, at(0))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-usageplan-quota"], "1/0");
    let answer = call(&fixture, "/release/open", &signed(GOOD_ID, GOOD_KEY, at(0))).await;
    assert_error(&answer, 429, "API quota exceeded.");
    // Anonymous callers, and callers with a bad signature, pass without a plan.
    let answer = call(&fixture, "/release/open", &[]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers.get("x-usageplan-quota").is_none());
    let answer = call(
        &fixture,
        "/release/open",
        &signed(GOOD_ID, "wrong-key-000", at(0)),
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn reload_applies_new_limits_and_keeps_used_quota() {
    let backend = TestBackend::echo().await;
    let limits = Limits {
        plan_quota: 5,
        ..UNLIMITED
    };
    let clock = Arc::new(ManualClock::new(at(0)));
    let gateway =
        TestGateway::start_with_clock(&config(&backend.url(), &limits), clock.clone()).await;
    let fixture = Fixture {
        gateway,
        clock,
        _backend: backend,
    };
    for _ in 0..2 {
        let answer = call(
            &fixture,
            "/release/secure",
            &signed(GOOD_ID, GOOD_KEY, at(0)),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    let smaller = Limits {
        plan_quota: 3,
        ..UNLIMITED
    };
    let yaml = std::fs::read_to_string(&fixture.gateway.config_path).unwrap();
    let yaml = yaml.replace("quota: 5", &format!("quota: {}", smaller.plan_quota));
    std::fs::write(&fixture.gateway.config_path, yaml).unwrap();
    fixture.gateway.server().reload().await.unwrap();

    let answer = call(
        &fixture,
        "/release/secure",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-usageplan-quota"], "3/0");
    let answer = call(
        &fixture,
        "/release/secure",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_error(&answer, 429, "API quota exceeded.");
}

#[tokio::test]
async fn request_target_signing_binds_the_path() {
    let fixture = fixture(&UNLIMITED).await;
    let answer = call(
        &fixture,
        "/release/target/a",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_error(
        &answer,
        401,
        "HMAC signature cannot be verified, a valid @request-target header is required.",
    );

    let date = http_date(at(0));
    let target = "/release/target/a?x=1";
    let value = authorization(
        GOOD_ID,
        GOOD_KEY.as_bytes(),
        Algorithm::HmacSha256,
        &[("x-date", &date), ("@request-target", target)],
    );
    let headers = [
        ("x-date".to_string(), date),
        ("authorization".to_string(), value),
    ];
    assert_eq!(call(&fixture, target, &headers).await.status, 200);
    // The same headers replayed on another path do not verify.
    let replayed = call(&fixture, "/release/target/b?x=1", &headers).await;
    assert_error(&replayed, 401, "HMAC signature does not match.");

    // `request-line` signs the method too.
    let date = http_date(at(0));
    let line = format!("POST {target} HTTP/1.1");
    let value = authorization(
        GOOD_ID,
        GOOD_KEY.as_bytes(),
        Algorithm::HmacSha256,
        &[("x-date", &date), ("request-line", &line)],
    );
    let headers = [
        ("x-date".to_string(), date),
        ("authorization".to_string(), value),
    ];
    let post = call_with(
        &fixture,
        reqwest::Method::POST,
        target,
        &headers,
        Vec::new(),
    )
    .await;
    assert_eq!(post.status, 200, "{}", post.body);
    let put = call_with(&fixture, reqwest::Method::PUT, target, &headers, Vec::new()).await;
    assert_error(&put, 401, "HMAC signature does not match.");
}

#[tokio::test]
async fn digest_signing_checks_the_body() {
    let fixture = fixture(&UNLIMITED).await;
    let body = br#"{"order":42}"#.to_vec();
    let date = http_date(at(0));
    let digest = body_digest(&body);
    let value = authorization(
        GOOD_ID,
        GOOD_KEY.as_bytes(),
        Algorithm::HmacSha256,
        &[("x-date", &date), ("digest", &digest)],
    );
    let headers = [
        ("x-date".to_string(), date.clone()),
        ("digest".to_string(), digest.clone()),
        ("authorization".to_string(), value),
    ];
    let answer = call_with(
        &fixture,
        reqwest::Method::POST,
        "/release/digest",
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let echo: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(echo["body_len"], body.len());

    let tampered = call_with(
        &fixture,
        reqwest::Method::POST,
        "/release/digest",
        &headers,
        br#"{"order":43}"#.to_vec(),
    )
    .await;
    assert_error(&tampered, 401, "HMAC body digest does not match.");

    let unsigned = call(
        &fixture,
        "/release/digest",
        &signed(GOOD_ID, GOOD_KEY, at(0)),
    )
    .await;
    assert_error(
        &unsigned,
        401,
        "HMAC signature cannot be verified, a valid digest header is required.",
    );
}

/// Signs with Python's `hmac` module, an implementation independent of Tollgate's.
#[tokio::test]
async fn python_signed_request_verifies() {
    let fixture = fixture(&UNLIMITED).await;
    let date = http_date(at(0));
    let script = r#"
import base64, hashlib, hmac, sys
key, date = sys.argv[1], sys.argv[2]
signing = "x-date: " + date + "\nsource: python"
digest = hmac.new(key.encode(), signing.encode(), hashlib.sha384).digest()
print(base64.b64encode(digest).decode())
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, GOOD_KEY, &date])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signature = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let headers = [
        ("x-date".to_string(), date),
        ("source".to_string(), "python".to_string()),
        (
            "authorization".to_string(),
            format!(
                r#"hmac id="{GOOD_ID}", algorithm="hmac-sha384", headers="x-date source", signature="{signature}""#
            ),
        ),
    ];
    let answer = call(&fixture, "/release/secure", &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// `tollgate sign` prints headers that the gateway accepts.
#[tokio::test]
async fn sign_command_output_verifies() {
    let backend = TestBackend::echo().await;
    let gateway = TestGateway::start(&config(&backend.url(), &UNLIMITED)).await;
    let key_file = gateway.dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{GOOD_KEY}\n")).unwrap();
    let url = gateway.url("/release/target/a?x=1");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["sign", "--secret-id", GOOD_ID, "--secret-key-file"])
        .arg(&key_file)
        .args([
            "--algorithm",
            "hmac-sha384",
            "-H",
            "Source: cli",
            "--url",
            &url,
        ])
        .arg("--sign-request-target")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (head, curl) = text.split_once("\n\n").unwrap();
    assert!(curl.starts_with("curl -i -X 'GET' "), "{curl}");
    let mut request = client().get(&url).header("host", HOST);
    for line in head.lines() {
        let (name, value) = line.split_once(": ").unwrap();
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// A request that its plan refuses gives its place in the service's second back.
#[tokio::test]
async fn plan_refusals_do_not_use_the_service_window() {
    let limits = Limits {
        plan_quota: 1,
        service_rate: Some(3),
        ..UNLIMITED
    };
    let fixture = fixture(&limits).await;
    let headers = signed(GOOD_ID, GOOD_KEY, at(0));
    let first = call(&fixture, "/release/secure", &headers).await;
    assert_eq!(first.headers["x-service-ratelimit"], "3/2");
    for _ in 0..3 {
        let refused = call(&fixture, "/release/secure", &headers).await;
        assert_error(&refused, 429, "API quota exceeded.");
    }
    let open = call(&fixture, "/release/open", &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.headers["x-service-ratelimit"], "3/1");
}

/// The signature covers the header bytes as sent, so bytes that are not UTF-8 cannot be
/// swapped for others.
#[tokio::test]
async fn signed_values_are_compared_as_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = fixture(&UNLIMITED).await;
    let date = http_date(at(0));
    let mut signing = format!("x-date: {date}\nx-user: ").into_bytes();
    signing.push(0xfe);
    let signature = Algorithm::HmacSha256.sign(GOOD_KEY.as_bytes(), &signing);
    let send = |byte: u8| {
        let mut request = format!(
            "GET /release/secure HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nX-Date: {date}\r\n\
             Authorization: hmac id=\"{GOOD_ID}\", algorithm=\"hmac-sha256\", headers=\"x-date x-user\", \
             signature=\"{signature}\"\r\nX-User: "
        )
        .into_bytes();
        request.push(byte);
        request.extend_from_slice(b"\r\n\r\n");
        let addr = fixture.gateway.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(&request).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8_lossy(&response).into_owned()
        }
    };
    let signed_byte = send(0xfe).await;
    assert!(signed_byte.starts_with("HTTP/1.1 200"), "{signed_byte}");
    let other_byte = send(0xff).await;
    assert!(other_byte.starts_with("HTTP/1.1 401"), "{other_byte}");
    assert!(
        other_byte.contains("HMAC signature does not match."),
        "{other_byte}"
    );
}

#[tokio::test]
async fn check_date_holds_date_to_the_window() {
    let backend = TestBackend::echo().await;
    let yaml = config(&backend.url(), &UNLIMITED) + "key_pair_auth: { check_date: true }\n";
    let clock = Arc::new(ManualClock::new(at(86_400)));
    let gateway = TestGateway::start_with_clock(&yaml, clock.clone()).await;
    let fixture = Fixture {
        gateway,
        clock,
        _backend: backend,
    };
    let date_signed = |date: SystemTime| {
        let date = http_date(date);
        let value = authorization(
            GOOD_ID,
            GOOD_KEY.as_bytes(),
            Algorithm::HmacSha256,
            &[("date", &date)],
        );
        vec![
            ("date".to_string(), date),
            ("authorization".to_string(), value),
        ]
    };
    let stale = call(&fixture, "/release/secure", &date_signed(at(0))).await;
    assert_error(
        &stale,
        401,
        "HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication.",
    );
    let fresh = call(&fixture, "/release/secure", &date_signed(at(86_400 - 60))).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}
