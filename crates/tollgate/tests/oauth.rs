//! OAuth 2.0 id_token authentication over real sockets. Tokens and keys are made by PyJWT
//! (tests/fixtures/make_tokens.py), not by Tollgate.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{client, closed_port, echoed_header, error_body, full, TestBackend, TestGateway};
use serde_json::{json, Value};
use tollgate::clock::ManualClock;

const HOST: &str = "oauth.example.com";
/// 2026-01-01T00:00:00Z: the gateway's clock in these tests.
const NOW: u64 = 1_767_225_600;

/// Keys and tokens from PyJWT.
struct Tokens {
    jwks_a: Value,
    jwks_b: Value,
    tokens: Value,
}

impl Tokens {
    fn get(&self, name: &str) -> String {
        self.tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("no token {name}"))
            .to_string()
    }
}

fn make_tokens() -> Tokens {
    let claims = |sub: &str, exp: i64, extra: Value| {
        let mut claims = json!({ "sub": sub, "exp": (NOW as i64 + exp), "iat": NOW - 10 });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    };
    let spec = |name: &str, alg: &str, kid: &str, claims: Value| json!({ "name": name, "alg": alg, "kid": kid, "claims": claims });
    let mut specs = vec![
        spec(
            "rs256",
            "RS256",
            "rsa-1",
            claims("alice", 300, json!({"email": "alice@example.com"})),
        ),
        spec("rs384", "RS384", "rsa-1", claims("bob", 300, json!({}))),
        spec("rs512", "RS512", "rsa-1", claims("carol", 300, json!({}))),
        spec("ps256", "PS256", "rsa-1", claims("dave", 300, json!({}))),
        spec("es256", "ES256", "ec-1", claims("erin", 300, json!({}))),
        spec("expired", "RS256", "rsa-1", claims("old", -100, json!({}))),
        spec(
            "just_expired",
            "RS256",
            "rsa-1",
            claims("late", -10, json!({})),
        ),
        spec(
            "not_yet",
            "RS256",
            "rsa-1",
            claims("early", 600, json!({"nbf": NOW + 100})),
        ),
        spec("no_exp", "RS256", "rsa-1", json!({"sub": "forever"})),
        spec("rotated", "RS256", "rsa-2", claims("frank", 300, json!({}))),
        spec(
            "issued",
            "RS256",
            "rsa-1",
            claims(
                "gina",
                300,
                json!({"iss": "https://login.example.com", "aud": ["shop", "other"]}),
            ),
        ),
        spec(
            "wrong_iss",
            "RS256",
            "rsa-1",
            claims(
                "hank",
                300,
                json!({"iss": "https://evil.example.com", "aud": "shop"}),
            ),
        ),
    ];
    let mut hs = spec("hs256", "HS256", "rsa-1", claims("mallory", 300, json!({})));
    hs["key"] = json!("hs");
    specs.push(hs);
    let mut unknown_kid = spec("unknown_kid", "RS256", "rsa-9", claims("x", 300, json!({})));
    unknown_kid["key"] = json!("rsa-1");
    specs.push(unknown_kid);
    let mut wrong_key = spec(
        "wrong_key",
        "RS256",
        "rsa-1",
        claims("ivan", 300, json!({})),
    );
    wrong_key["key"] = json!("rsa-2");
    specs.push(wrong_key);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/make_tokens.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs PyJWT)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(specs).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "make_tokens.py failed");
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    Tokens {
        jwks_a: value["jwks_a"].clone(),
        jwks_b: value["jwks_b"].clone(),
        tokens: value["tokens"].clone(),
    }
}

/// A JWK set server whose response the test can change: 0 serves set A, 1 set B, 2 fails.
struct JwksServer {
    backend: TestBackend,
    mode: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(tokens: &Tokens) -> JwksServer {
    let mode = Arc::new(AtomicUsize::new(0));
    let fetches = Arc::new(AtomicUsize::new(0));
    let sets = [tokens.jwks_a.to_string(), tokens.jwks_b.to_string()];
    let (mode_in, fetches_in) = (mode.clone(), fetches.clone());
    let backend = TestBackend::start(move |_request| {
        let mode = mode_in.load(Ordering::SeqCst);
        fetches_in.fetch_add(1, Ordering::SeqCst);
        let sets = sets.clone();
        async move {
            match mode {
                0 | 1 => hyper::Response::new(full(sets[mode].clone())),
                _ => {
                    let mut response = hyper::Response::new(full("down"));
                    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                    response
                }
            }
        }
    })
    .await;
    JwksServer {
        backend,
        mode,
        fetches,
    }
}

fn config(tokens: &Tokens, backend: &str, jwks_url: &str) -> String {
    let jwks = tokens.jwks_a.to_string();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    format!(
        r#"
services:
  - id: service-oauth001
    name: oauth
    default_domains: [{HOST}]
    environments:
      release: {{ apis: [api-auth, api-auth-cookie, api-auth-iss, api-auth-badloc, api-auth-badkey,
                        api-auth-nokey, api-auth-jwks, api-auth-dead, api-plain, api-biz, api-biz-strip,
                        api-biz-cookie, api-biz-iss, api-biz-badloc, api-biz-badkey, api-biz-nokey,
                        api-biz-noconfig, api-biz-unpublished, api-biz-rotate] }}
    apis:
      - id: api-auth
        name: auth
        path: /oauth/token
        backend: {{ type: http, url: '{backend}' }}
        oauth:
          public_key: '{jwks}'
          login_redirect_url: http://127.0.0.1:9/login/start
      - {{ id: api-auth-cookie, name: auth-cookie, path: /oauth/cookie, backend: {{ type: mock }},
          oauth: {{ public_key: '{jwks}', token_location: method.req.header.cookie }} }}
      - {{ id: api-auth-iss, name: auth-iss, path: /oauth/iss, backend: {{ type: mock }},
          oauth: {{ public_key: '{jwks}', issuer: 'https://login.example.com', audience: shop }} }}
      - {{ id: api-auth-badloc, name: auth-badloc, path: /oauth/badloc, backend: {{ type: mock }},
          oauth: {{ public_key: '{jwks}', token_location: method.req.query.token }} }}
      - {{ id: api-auth-badkey, name: auth-badkey, path: /oauth/badkey, backend: {{ type: mock }},
          oauth: {{ public_key: 'not a key' }} }}
      - {{ id: api-auth-nokey, name: auth-nokey, path: /oauth/nokey, backend: {{ type: mock }},
          oauth: {{ jwks_url: '{dead}/jwks' }} }}
      - {{ id: api-auth-jwks, name: auth-jwks, path: /oauth/jwks, backend: {{ type: mock }},
          oauth: {{ jwks_url: '{jwks_url}', jwks_refresh_secs: 1 }} }}
      - {{ id: api-auth-dead, name: auth-dead, path: /oauth/dead, backend: {{ type: http, url: '{dead}' }},
          oauth: {{ public_key: '{jwks}' }} }}
      - {{ id: api-auth-test, name: auth-test, path: /oauth/test, backend: {{ type: mock }},
          oauth: {{ public_key: '{jwks}' }} }}
      - {{ id: api-plain, name: plain, path: /plain, backend: {{ type: mock }} }}
      - {{ id: api-biz, name: biz, path: /biz, method: ANY, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth }}, backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-biz-strip, name: biz-strip, path: /strip, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth, strip_token: true,
                             claim_headers: {{ sub: X-User, email: X-Email }} }},
          backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-biz-cookie, name: biz-cookie, path: /cookie, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-cookie, strip_token: true }},
          backend: {{ type: http, url: '{backend}' }} }}
      - {{ id: api-biz-iss, name: biz-iss, path: /iss, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-iss }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-badloc, name: biz-badloc, path: /badloc, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-badloc }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-badkey, name: biz-badkey, path: /badkey, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-badkey }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-nokey, name: biz-nokey, path: /nokey, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-nokey }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-noconfig, name: biz-noconfig, path: /noconfig, auth: OAUTH,
          oauth_business: {{ authorization_api: api-plain }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-unpublished, name: biz-unpublished, path: /unpublished, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-test }}, backend: {{ type: mock }} }}
      - {{ id: api-biz-rotate, name: biz-rotate, path: /rotate, auth: OAUTH,
          oauth_business: {{ authorization_api: api-auth-jwks }}, backend: {{ type: mock, body: rotated }} }}
"#
    )
}

struct Fixture {
    tokens: Tokens,
    gateway: TestGateway,
    clock: Arc<ManualClock>,
    jwks: JwksServer,
    _backend: TestBackend,
}

async fn fixture() -> Fixture {
    let tokens = make_tokens();
    let backend = TestBackend::echo().await;
    let jwks = jwks_server(&tokens).await;
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
    ));
    let yaml = config(
        &tokens,
        &backend.url(),
        &format!("{}/jwks", jwks.backend.url()),
    );
    let gateway = TestGateway::start_with_clock(&yaml, clock.clone()).await;
    Fixture {
        tokens,
        gateway,
        clock,
        jwks,
        _backend: backend,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn call(fixture: &Fixture, path: &str, headers: &[(&str, String)]) -> Answer {
    let mut request = client().get(fixture.gateway.url(path)).header("host", HOST);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer id_token=\"{token}\""))]
}

fn assert_error(answer: &Answer, status: u16, message: &str) {
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (status, error_body(message).as_str())
    );
}

#[tokio::test]
async fn every_algorithm_verifies_and_the_subject_is_forwarded() {
    let fixture = fixture().await;
    for (name, subject) in [
        ("rs256", "alice"),
        ("rs384", "bob"),
        ("rs512", "carol"),
        ("ps256", "dave"),
        ("es256", "erin"),
    ] {
        let token = fixture.tokens.get(name);
        let answer = call(&fixture, "/release/biz", &bearer(&token)).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        let echo: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            echoed_header(&echo, "x-oauth-subject"),
            Some(subject),
            "{name}"
        );
        // The token is forwarded unless the API strips it.
        assert!(echoed_header(&echo, "authorization").is_some(), "{name}");
    }
    // The plain `Bearer <jwt>` form works too.
    let token = fixture.tokens.get("rs256");
    let answer = call(
        &fixture,
        "/release/biz",
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn missing_and_malformed_tokens_have_their_own_401() {
    let fixture = fixture().await;
    let answer = call(&fixture, "/release/biz", &[]).await;
    assert_error(&answer, 401, "Oauth found no authorization header.");
    let answer = call(
        &fixture,
        "/release/biz",
        &[("authorization", "Basic dXNlcg==".into())],
    )
    .await;
    assert_error(&answer, 401, "Oauth authorization header format error.");
    let answer = call(
        &fixture,
        "/release/biz",
        &[("authorization", "Bearer id_token=\"\"".into())],
    )
    .await;
    assert_error(&answer, 401, "Oauth miss Oauth id_token.");
    let answer = call(
        &fixture,
        "/release/cookie",
        &[("cookie", "theme=dark".into())],
    )
    .await;
    assert_error(&answer, 401, "Oauth found no id_token.");
}

#[tokio::test]
async fn tokens_that_do_not_verify_get_401() {
    let fixture = fixture().await;
    let good = fixture.tokens.get("rs256");
    let (rest, signature) = good.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{rest}.{flipped}{}", &signature[1..]);
    let payload_swapped = {
        let other = fixture.tokens.get("rs384");
        let parts: Vec<&str> = other.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            good.split('.').nth(1).unwrap(),
            parts[2]
        )
    };
    for (name, token) in [
        ("tampered signature", tampered),
        ("swapped payload", payload_swapped),
        ("expired", fixture.tokens.get("expired")),
        ("not yet valid", fixture.tokens.get("not_yet")),
        ("no exp", fixture.tokens.get("no_exp")),
        ("unknown kid", fixture.tokens.get("unknown_kid")),
        ("wrong key", fixture.tokens.get("wrong_key")),
        ("HS256 with a shared secret", fixture.tokens.get("hs256")),
        ("not a JWT", "not.a.jwt".to_string()),
    ] {
        let answer = call(&fixture, "/release/biz", &bearer(&token)).await;
        assert_error(&answer, 401, "Oauth id_token verify error.");
        let _ = name;
    }
    // Within the 30-second leeway, a token 10 seconds past exp still passes.
    let answer = call(
        &fixture,
        "/release/biz",
        &bearer(&fixture.tokens.get("just_expired")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn time_checks_follow_the_gateway_clock() {
    let fixture = fixture().await;
    let early = fixture.tokens.get("not_yet");
    assert_eq!(
        call(&fixture, "/release/biz", &bearer(&early)).await.status,
        401
    );
    fixture.clock.advance(Duration::from_secs(100));
    assert_eq!(
        call(&fixture, "/release/biz", &bearer(&early)).await.status,
        200
    );

    // A cached token still expires: the cache keeps it only until its exp.
    let token = fixture.tokens.get("rs256");
    assert_eq!(
        call(&fixture, "/release/biz", &bearer(&token)).await.status,
        200
    );
    fixture.clock.advance(Duration::from_secs(300));
    let answer = call(&fixture, "/release/biz", &bearer(&token)).await;
    assert_error(&answer, 401, "Oauth id_token verify error.");
}

#[tokio::test]
async fn tampered_token_misses_cache() {
    let fixture = fixture().await;
    let good = fixture.tokens.get("rs256");
    assert_eq!(
        call(&fixture, "/release/biz", &bearer(&good)).await.status,
        200
    );
    assert_eq!(
        call(&fixture, "/release/biz", &bearer(&good)).await.status,
        200
    );
    let (header_and_payload, signature) = good.rsplit_once('.').unwrap();
    let shortened = format!("{header_and_payload}.{}", &signature[..signature.len() - 2]);
    let answer = call(&fixture, "/release/biz", &bearer(&shortened)).await;
    assert_error(&answer, 401, "Oauth id_token verify error.");
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let fixture = fixture().await;
    let answer = call(
        &fixture,
        "/release/iss",
        &bearer(&fixture.tokens.get("issued")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = call(
        &fixture,
        "/release/iss",
        &bearer(&fixture.tokens.get("wrong_iss")),
    )
    .await;
    assert_error(&answer, 401, "Oauth id_token verify error.");
    // A token without iss and aud passes an authorization API that checks neither...
    assert_eq!(
        call(
            &fixture,
            "/release/biz",
            &bearer(&fixture.tokens.get("rs256"))
        )
        .await
        .status,
        200
    );
    // ...and fails one that checks them.
    let answer = call(
        &fixture,
        "/release/iss",
        &bearer(&fixture.tokens.get("rs256")),
    )
    .await;
    assert_error(&answer, 401, "Oauth id_token verify error.");
}

#[tokio::test]
async fn claims_replace_client_headers_and_the_token_can_be_stripped() {
    let fixture = fixture().await;
    let token = fixture.tokens.get("rs256");
    let mut headers = bearer(&token);
    headers.push(("x-user", "admin".to_string()));
    let answer = call(&fixture, "/release/strip", &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let echo: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(echo["headers"]["x-user"], json!(["alice"]));
    assert_eq!(echoed_header(&echo, "x-email"), Some("alice@example.com"));
    assert_eq!(echoed_header(&echo, "authorization"), None);

    let cookie = format!("theme=dark; id_token={token}; lang=en");
    let answer = call(&fixture, "/release/cookie", &[("cookie", cookie)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let echo: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(echoed_header(&echo, "cookie"), Some("theme=dark; lang=en"));
    assert_eq!(echoed_header(&echo, "x-oauth-subject"), Some("alice"));
}

#[tokio::test]
async fn configuration_errors_are_481_and_missing_links_401() {
    let fixture = fixture().await;
    let token = bearer(&fixture.tokens.get("rs256"));
    for (path, status, message) in [
        ("/release/badloc", 481, "Oauth id_token location forbidden."),
        ("/release/badkey", 481, "Oauth public key error."),
        ("/release/nokey", 481, "Oauth found no public key."),
        ("/release/noconfig", 481, "Oauth found no oauth config."),
        (
            "/release/unpublished",
            401,
            "Oauth found no related Oauth api.",
        ),
    ] {
        let answer = call(&fixture, path, &token).await;
        assert_error(&answer, status, message);
    }
}

#[tokio::test]
async fn failing_authorization_server_is_401() {
    let fixture = fixture().await;
    let answer = call(&fixture, "/release/oauth/dead", &[]).await;
    assert_error(&answer, 401, "Oauth call authentication server fail.");
    // A working authorization server is proxied like any backend.
    let answer = call(&fixture, "/release/oauth/token?grant=code", &[]).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn browsers_without_a_token_are_sent_to_log_in() {
    let fixture = fixture().await;
    let answer = call(
        &fixture,
        "/release/biz",
        &[("accept", "text/html,application/xhtml+xml".into())],
    )
    .await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.headers["location"], "http://127.0.0.1:9/login/start");
    // An API client without a token gets the 401.
    let answer = call(
        &fixture,
        "/release/biz",
        &[("accept", "application/json".into())],
    )
    .await;
    assert_error(&answer, 401, "Oauth found no authorization header.");
}

async fn wait_for_status(fixture: &Fixture, token: &str, expected: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call(fixture, "/release/rotate", &bearer(token)).await;
        if answer.status == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} ({}) instead of {expected}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_rotate_by_kid_and_a_failed_fetch_keeps_the_last_set() {
    let fixture = fixture().await;
    let old = fixture.tokens.get("rs256");
    let new = fixture.tokens.get("rotated");
    wait_for_status(&fixture, &old, 200).await;
    assert_eq!(
        call(&fixture, "/release/rotate", &bearer(&new))
            .await
            .status,
        401
    );

    // The server now publishes only the new key.
    fixture.jwks.mode.store(1, Ordering::SeqCst);
    wait_for_status(&fixture, &new, 200).await;
    assert_eq!(
        call(&fixture, "/release/rotate", &bearer(&old))
            .await
            .status,
        401
    );

    // The server fails; the last good set stays in use.
    fixture.jwks.mode.store(2, Ordering::SeqCst);
    let fetched = fixture.jwks.fetches.load(Ordering::SeqCst);
    while fixture.jwks.fetches.load(Ordering::SeqCst) < fetched + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = call(&fixture, "/release/rotate", &bearer(&new)).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "rotated"));
}
