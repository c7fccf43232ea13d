//! `tollgate check` and `tollgate schema`, run as a user runs them.

use std::path::Path;
use std::process::Command;

fn tollgate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

const BROKEN: &str = r#"server:
  listen: ["127.0.0.1:80800"]
  limits: { max_header_bytes: 100 }
services:
  - id: service-bad00001
    name: bad name
    default_domains: [Bad.Example.com]
    environments:
      release: { apis: [api-missing, api-one00001] }
      staging: {}
    apis:
      - id: api-one00001
        name: one
        path: /one
        colour: blue
        backend: { type: mock }
      - id: api-two00001
        name: two
        path: /two/{id
        backend: { type: http, url: "ftp://x" }
      - id: api-two00001
        name: three
        path: /three
        timeout_secs: 0
        backend: { type: mock, status: 42 }
"#;

#[test]
fn check_lists_every_problem_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, BROKEN).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "line 2: server.listen[0]: `127.0.0.1:80800` is not an IP:PORT address",
        "line 3: server.limits.max_header_bytes: 100 is below the minimum of 8192",
        "line 6: services[0].name: the service name `bad name` must be",
        "line 7: services[0].default_domains[0]: `Bad.Example.com` is not a host name",
        "line 9: services[0].environments.release.apis[0]: no API of this service has the id `api-missing`",
        "line 10: services[0].environments.staging: unknown environment `staging`",
        "line 15: services[0].apis[0].colour: unknown field `colour`",
        "line 19: services[0].apis[1].path: the path `/two/{id` has a `{` without a closing `}`",
        "line 20: services[0].apis[1].backend.url: `ftp://x` must start with `http://`",
        "line 21: services[0].apis[2].id: the API id `api-two00001` is used twice",
        "line 24: services[0].apis[2].timeout_secs: 0 is out of range",
        "line 25: services[0].apis[2].backend.status: 42 is not a final response status",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(stderr.contains("12 problems"), "{stderr}");
    // The API that failed to parse is not reported again as an unknown reference.
    assert!(!stderr.contains("`api-one00001`"), "{stderr}");
}

const BAD_BACKENDS: &str = r#"services:
  - id: service-bad00002
    name: backends
    default_domains: [backends.example.com]
    environments:
      release: { apis: [api-path00001, api-path00002, api-mock00001] }
    apis:
      - id: api-path00001
        name: unclosed
        path: /a/{id}
        backend: { type: http, url: "http://127.0.0.1:9", path: "/b/{id" }
      - id: api-path00002
        name: spaces
        path: /c/{id}
        backend: { type: http, url: "http://127.0.0.1:9", path: "/my files/{id}" }
      - id: api-mock00001
        name: framing
        path: /m
        backend:
          type: mock
          headers: { Content-Length: "3", Transfer-Encoding: chunked }
      - id: "api with space"
        name: id
        path: /i
        backend: { type: mock }
"#;

#[test]
fn check_rejects_unusable_backend_paths_mock_headers_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backends.yaml");
    std::fs::write(&file, BAD_BACKENDS).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "line 11: services[0].apis[0].backend.path: the path `/b/{id` has a `{` without a closing `}`",
        "line 15: services[0].apis[1].backend.path: the backend path `/my files/{id}` holds characters that are not allowed in a URL path",
        "services[0].apis[2].backend.headers.Content-Length: `Content-Length` describes the connection or the body's framing",
        "services[0].apis[2].backend.headers.Transfer-Encoding: `Transfer-Encoding` describes",
        "line 22: services[0].apis[3].id: the API id `api with space` must be 1 to 50 letters",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(stderr.contains("5 problems"), "{stderr}");
}

const BAD_PLANS: &str = r#"key_pairs:
  - { secret_id: AKIDshared01, secret_key: sharedsecret01 }
  - { secret_id: bad id, secret_key: short }
usage_plans:
  - id: plan-a
    quota: 0
    key_pairs: [AKIDshared01, AKIDmissing1]
    bindings:
      - { service: service-plan0001, environment: release }
  - id: plan-b
    key_pairs: [AKIDshared01]
    bindings:
      - { service: service-plan0001, environment: release }
      - { service: service-plan0001, environment: release, apis: [api-plan00001] }
      - { service: service-nowhere1, environment: release }
      - { service: service-plan0001, environment: prepub }
counters: { store: redis, url: "http://not-redis" }
services:
  - id: service-plan0001
    name: plans
    default_domains: [plans.example.com]
    environments:
      release: { requests_per_second: 0, api_requests_per_second: { api-ghost00001: 5 } }
    apis:
      - { id: api-plan00001, name: one, path: /one, auth: SECRET, backend: { type: mock } }
"#;

#[test]
fn check_rejects_what_the_product_rejects_at_bind_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plans.yaml");
    std::fs::write(&file, BAD_PLANS).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "key_pairs[1].secret_id: the secret id `bad id` must be 5 to 50 letters",
        "key_pairs[1].secret_key: the secret key must be 10 to 50 letters",
        "usage_plans[0].quota: 0 is not allowed: use -1 for no limit, or a positive number",
        "usage_plans[0].key_pairs[1]: no key pair has the secret id `AKIDmissing1`",
        "usage_plans[1].bindings[0]: the key pair `AKIDshared01` already reaches `release` through the plan `plan-a`",
        "usage_plans[1].bindings[1]: the service `service-plan0001` already has environment-level plan bindings",
        "usage_plans[1].bindings[2].service: no service has the id `service-nowhere1`",
        "usage_plans[1].bindings[3].environment: the service `service-plan0001` is not published to `prepub`",
        "counters.url: not a Redis URL",
        "services[0].environments.release.requests_per_second: 0 would refuse every request",
        "services[0].environments.release.api_requests_per_second.api-ghost00001: no API of this service has the id `api-ghost00001`",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{} problems", expected.len())),
        "{stderr}"
    );
}

const BAD_OAUTH: &str = r#"services:
  - id: service-oauth001
    name: oauth
    default_domains: [oauth.example.com]
    environments:
      release: {}
    apis:
      - { id: api-auth, name: auth, path: /auth, auth: SECRET, backend: { type: mock },
          oauth: { jwks_url: "ftp://keys.example.com/jwks" } }
      - { id: api-nokey, name: nokey, path: /nokey, backend: { type: mock }, oauth: {} }
      - { id: api-biz, name: biz, path: /biz, auth: OAUTH, backend: { type: mock } }
      - { id: api-biz2, name: biz2, path: /biz2, auth: OAUTH, backend: { type: mock },
          oauth_business: { authorization_api: api-ghost, claim_headers: { sub: "bad header" } } }
      - { id: api-open, name: open, path: /open, backend: { type: mock },
          oauth_business: { authorization_api: api-auth } }
"#;

#[test]
fn check_reports_unusable_oauth_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oauth.yaml");
    std::fs::write(&file, BAD_OAUTH).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "services[0].apis[0].oauth: an authorization API is called without a token: set `auth: NONE`",
        "services[0].apis[0].oauth.jwks_url: `ftp://keys.example.com/jwks` is not an `http://` or `https://` URL",
        "services[0].apis[1].oauth: give `public_key` (a JWK or JWK set) or `jwks_url`",
        "services[0].apis[2].oauth_business: an `auth: OAUTH` API needs `oauth_business.authorization_api`",
        "services[0].apis[3].oauth_business.claim_headers.sub: `bad header` is not a valid header name",
        "services[0].apis[3].oauth_business.authorization_api: no API of this service has the id `api-ghost`",
        "services[0].apis[4].oauth_business: `oauth_business` applies to `auth: OAUTH` APIs only",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{} problems", expected.len())),
        "{stderr}"
    );
}

const BAD_UPSTREAMS: &str = r#"upstreams:
  - id: zeros
    nodes: [{ host: 10.0.0.1, port: 80, weight: 0 }]
  - id: heavy
    retries: 101
    nodes: [{ host: "bad host", port: 80, weight: 101 }]
services:
  - id: service-ups00002
    name: ups
    default_domains: [ups.example.com]
    environments:
      release: {}
    apis:
      - { id: api-ups00002, name: ups, path: /, backend: { type: http, upstream: ghost } }
      - { id: api-ups00003, name: ups2, path: /b, backend: { type: http, upstream: zeros, url: "http://x" } }
"#;

#[test]
fn check_reports_unusable_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstreams.yaml");
    std::fs::write(&file, BAD_UPSTREAMS).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "upstreams[0].nodes: every node has weight 0",
        "upstreams[1].retries: retries are 0 to 100",
        "upstreams[1].nodes[0].weight: 101 is out of range",
        "upstreams[1].nodes[0].host: `bad host` is not a host name or IP address",
        "services[0].apis[0].backend.upstream: no upstream has the id `ghost`",
        "services[0].apis[1].backend.url: with `upstream`, `url` is left out or gives the scheme only",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{} problems", expected.len())),
        "{stderr}"
    );
}

#[test]
fn check_reports_yaml_syntax_errors_with_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("syntax.yaml");
    std::fs::write(&file, "services:\n  - id: [unclosed\n").unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("invalid YAML"), "{stderr}");
    assert!(stderr.contains("line "), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let (ok, _, stderr) = tollgate(&["check", "-c", "/nonexistent/tollgate.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("cannot read the file"), "{stderr}");
}

#[test]
fn bundled_example_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.yaml");
    let (ok, stdout, stderr) = tollgate(&["check", "-c", example.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("valid (2 services, 5 APIs)"), "{stdout}");
}

#[test]
fn committed_schema_is_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/tollgate.schema.json");
    let committed = std::fs::read_to_string(committed).unwrap();
    let (ok, generated, _) = tollgate(&["schema"]);
    assert!(ok);
    assert!(
        committed == generated,
        "schema/tollgate.schema.json is stale: run `cargo run -p tollgate -- schema > schema/tollgate.schema.json`"
    );
}

#[test]
fn schema_describes_the_config_keys() {
    let (_, generated, _) = tollgate(&["schema"]);
    let schema: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let api = &schema["$defs"]["ApiConfig"];
    assert_eq!(api["additionalProperties"], false);
    for key in ["id", "path", "method", "backend", "timeout_secs"] {
        assert!(
            api["properties"].get(key).is_some(),
            "ApiConfig lacks {key}"
        );
    }
}

const BAD_BALANCING: &str = r#"upstreams:
  - id: shop
    nodes: [{ host: 127.0.0.1, port: 8080 }, { host: 127.0.0.1, port: 8080, weight: 5 },
            { host: "2130706433", port: 0 }]
    sticky: { cookie: tg, header: X-User }
    health:
      http_failure_threshold: 300
      healthy_threshold: 0
      unhealthy_http_status: [42]
      active_check_http_path: health
      active_check_interval_secs: 0
registry:
  type: static
  services:
    - { namespace: crgt, name: coupon, instances: [{ host: "bad host", port: 1, weight: 101 }] }
    - { namespace: crgt, name: coupon, instances: [] }
services:
  - id: service-bad00003
    name: micro
    default_domains: [micro.example.com]
    environments:
      release: {}
    apis:
      - id: api-micro0001
        name: micro
        path: /ws
        protocol: WEBSOCKET
        backend:
          type: microservice
          retries: 101
          sticky: { header: "bad header" }
          microservices: [{ namespace: crgt, name: coupon }]
"#;

#[test]
fn check_reports_balancing_and_registry_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("balancing.yaml");
    std::fs::write(&file, BAD_BALANCING).unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok, "check accepted a broken file");
    let expected = [
        "upstreams[0].sticky: give `cookie` (a cookie the gateway sets) or `header`",
        "upstreams[0].nodes[1]: `127.0.0.1:8080` is listed twice",
        "upstreams[0].nodes[2].host: `2130706433` is not a host name or IP address",
        "upstreams[0].nodes[2].port: the port is 1 to 65535",
        "upstreams[0].health.http_failure_threshold: 300 is out of range: 0 to 254",
        "upstreams[0].health.healthy_threshold: 0 is out of range: 1 to 254",
        "upstreams[0].health.unhealthy_http_status: 42 is not an HTTP status",
        "upstreams[0].health.active_check_http_path: `health` is not a URL path",
        "upstreams[0].health.active_check_interval_secs: 0 is out of range",
        "registry.services[0].instances[0].weight: 101 is out of range",
        "registry.services[0].instances[0].host: `bad host` is not a host name",
        "registry.services[1]: the microservice `crgt/coupon` is listed twice",
        "services[0].apis[0].backend.type: microservice backends serve HTTP and HTTPS APIs",
        "services[0].apis[0].backend.retries: retries are 0 to 100",
        "services[0].apis[0].backend.sticky.header: `bad header` is not a valid header name",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
}

#[test]
fn check_reports_etcd_registry_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.yaml");
    std::fs::write(
        &file,
        "registry:\n  type: etcd\n  endpoints: [\"not a url\", \"https://etcd:2379\"]\n  \
         prefix: services\n  password: secret\n",
    )
    .unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "registry.endpoints[0]: `not a url` is not an etcd endpoint",
        "registry.endpoints[1]: `https://etcd:2379`: this version reaches etcd over `http://` only",
        "registry.prefix: `services` must start and end with `/`",
        "registry.password: a password needs a `username`",
    ] {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    // A build without etcd explains how to get it.
    assert_eq!(
        stderr.contains("this build has no etcd registry"),
        cfg!(not(feature = "etcd")),
        "{stderr}"
    );
}

#[test]
fn check_rejects_active_checks_apis_cannot_share() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.yaml");
    std::fs::write(
        &file,
        r#"upstreams:
  - id: shop
    nodes: [{ host: 127.0.0.1, port: 8443 }]
    health: { enable_active_check: true }
services:
  - id: service-mixed001
    name: mixed
    default_domains: [mixed.example.com]
    environments:
      release: {}
    apis:
      - { id: api-mixed0001, name: plain, path: /a, backend: { type: http, upstream: shop } }
      - { id: api-mixed0002, name: tls, path: /b,
          backend: { type: http, upstream: shop, url: "https://" } }
"#,
    )
    .unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "upstreams[0].health.enable_active_check: the APIs using upstream `shop` reach it \
             in different ways"
        ),
        "{stderr}"
    );
}

#[test]
fn one_bad_upstream_hides_no_other_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstreams.yaml");
    std::fs::write(
        &file,
        r#"upstreams:
  - id: good
    nodes: [{ host: 127.0.0.1, port: 8080 }]
  - id: typed
    nodes: [{ host: 127.0.0.1, port: 70000 }]
  - id: ranged
    nodes: [{ host: 127.0.0.1, port: 8081 }]
    health: { healthy_threshold: 0 }
services:
  - id: service-ups00003
    name: users
    default_domains: [users.example.com]
    environments:
      release: {}
    apis:
      - { id: api-good0001, name: good, path: /a, backend: { type: http, upstream: good } }
      - { id: api-typed001, name: typed, path: /b, backend: { type: http, upstream: typed } }
"#,
    )
    .unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("upstreams[1].nodes[0].port: invalid value: integer `70000`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstreams[2].health.healthy_threshold: 0 is out of range"),
        "{stderr}"
    );
    assert!(!stderr.contains("no upstream has the id"), "{stderr}");
    assert!(stderr.contains("2 problems"), "{stderr}");
}

#[test]
fn registry_problems_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.yaml");
    // `type` defaults to `static`.
    std::fs::write(
        &file,
        "registry:\n  services:\n    - { namespace: a, name: b, instances: [{ host: 127.0.0.1, port: 99999 }] }\n",
    )
    .unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "line 3: registry.services[0].instances[0].port: invalid value: integer `99999`"
        ),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "registry:\n  services: []\n  endpoints: [\"http://127.0.0.1:2379\"]\n  prefix: /elsewhere/\n",
    )
    .unwrap();
    let (ok, _, stderr) = tollgate(&["check", "-c", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("registry.endpoints: this applies to `type: etcd` registries"),
        "{stderr}"
    );
    assert!(
        stderr.contains("registry.prefix: this applies to `type: etcd` registries"),
        "{stderr}"
    );
}
