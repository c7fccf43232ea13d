//! Counter stores: used quota kept across a restart of the embedded store, limits shared by
//! two gateways on one Redis, Redis Cluster, and what happens while Redis is down.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::process::GatewayProcess;
use common::redis::{RedisCluster, RedisServer};
use common::{client, error_body, TestGateway};
use tollgate::auth::sign::{authorization, http_date};
use tollgate::auth::signature::Algorithm;
use tollgate::clock::{Clock, ManualClock};

const ID: &str = "AKIDcount001";
const KEY: &str = "countsecret-01";

/// A key-pair API on a mock backend, with the given plan limits and counter store.
fn config(rate: i64, quota: i64, counters: &str) -> String {
    format!(
        r#"
counters: {counters}
key_pairs:
  - {{ secret_id: {ID}, secret_key: {KEY} }}
usage_plans:
  - {{ id: plan-count, requests_per_second: {rate}, quota: {quota}, key_pairs: [{ID}],
      bindings: [{{ service: service-count001, environment: release }}] }}
services:
  - id: service-count001
    name: count
    default_domains: ["127.0.0.1"]
    environments:
      release: {{}}
    apis:
      - {{ id: api-count001, name: count, path: /, method: ANY, auth: SECRET,
          backend: {{ type: mock, body: counted }} }}
"#
    )
}

fn signed_headers(now: SystemTime) -> Vec<(&'static str, String)> {
    let date = http_date(now);
    let value = authorization(
        ID,
        KEY.as_bytes(),
        Algorithm::HmacSha1,
        &[("x-date", &date)],
    );
    vec![("x-date", date), ("authorization", value)]
}

/// Sends a signed request; returns the status, the body and the quota header.
async fn call(url: String, now: SystemTime) -> (u16, String, Option<String>) {
    let mut request = client().get(url);
    for (name, value) in signed_headers(now) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let quota = response
        .headers()
        .get("x-usageplan-quota")
        .map(|value| value.to_str().unwrap().to_string());
    (status, response.text().await.unwrap(), quota)
}

fn start_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

#[tokio::test]
async fn embedded_store_keeps_used_quota_across_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let quota_file = state.path().join("quota.json");
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  log_format: json\n{}",
        config(
            -1,
            3,
            &format!("{{ store: local, quota_file: '{}' }}", quota_file.display())
        )
    );

    let mut gateway = GatewayProcess::start(&yaml).await;
    for remaining in ["3/2", "3/1"] {
        let (status, body, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
        assert_eq!((status, body.as_str()), (200, "counted"));
        assert_eq!(quota.as_deref(), Some(remaining));
    }
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let gateway = GatewayProcess::start(&yaml).await;
    let (status, _, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!(status, 200);
    assert_eq!(quota.as_deref(), Some("3/0"));
    let (status, body, _) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!((status, body), (429, error_body("API quota exceeded.")));
}

#[tokio::test]
async fn two_gateways_share_one_rate_limit_and_one_quota_on_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let counters = format!("{{ store: redis, url: '{}' }}", redis.url());
    let clock = Arc::new(ManualClock::new(start_time()));
    let yaml = config(3, 5, &counters);
    let first = TestGateway::start_with_clock(&yaml, clock.clone()).await;
    let second = TestGateway::start_with_clock(&yaml, clock.clone()).await;
    let gateways = [&first, &second];

    // Second 0: three requests in all pass, alternating between the gateways.
    let mut statuses = Vec::new();
    for index in 0..4 {
        let gateway = gateways[index % 2];
        statuses.push(call(gateway.url("/release/"), clock.now()).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);

    // Second 1: two more use up the quota of five, wherever they go.
    clock.advance(Duration::from_secs(1));
    let mut answers = Vec::new();
    for index in 0..3 {
        let gateway = gateways[index % 2];
        answers.push(call(gateway.url("/release/"), clock.now()).await);
    }
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[1].0, 200);
    assert_eq!(answers[1].2.as_deref(), Some("5/0"));
    assert_eq!(
        (answers[2].0, answers[2].1.as_str()),
        (429, error_body("API quota exceeded.").as_str())
    );
    assert!(redis
        .cli(&["keys", "tollgate:*"])
        .contains("tollgate:{plan:plan-count:key:AKIDcount001}:quota"));
}

#[tokio::test]
async fn redis_cluster_counts_with_hash_tags() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start(dir.path());
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("'{}'", node.url()))
        .collect();
    let counters = format!("{{ store: redis, cluster_nodes: [{}] }}", nodes.join(", "));
    let clock = Arc::new(ManualClock::new(start_time()));
    let gateway = TestGateway::start_with_clock(&config(2, 3, &counters), clock.clone()).await;
    let mut statuses = Vec::new();
    for second in 0..2 {
        clock.set(start_time() + Duration::from_secs(second));
        for _ in 0..3 {
            statuses.push(call(gateway.url("/release/"), clock.now()).await.0);
        }
    }
    assert_eq!(statuses, [200, 200, 429, 200, 429, 429]);
}

#[tokio::test]
async fn redis_outage_serves_without_limits_and_logs_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  log_format: json\n{}",
        config(
            -1,
            1000,
            &format!(
                "{{ store: redis, url: '{}', timeout_ms: 500 }}",
                redis.url()
            )
        )
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let (status, _, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!((status, quota.as_deref()), (200, Some("1000/999")));

    redis.stop();
    for _ in 0..5 {
        let (status, body, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
        assert_eq!((status, body.as_str(), quota), (200, "counted", None));
    }
    let outages = gateway
        .logs()
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Redis is unreachable"))
        })
        .count();
    assert_eq!(outages, 1, "the outage is logged once, not per request");

    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
        assert_eq!(status, 200);
        if quota.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counting did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway
        .wait_for_log(|line| {
            line["message"] == "Redis is reachable again; limits and quotas apply again"
        })
        .await;
}

#[tokio::test]
async fn redis_outage_can_reject_with_500() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let counters = format!(
        "{{ store: redis, url: '{}', timeout_ms: 500, when_unreachable: reject }}",
        redis.url()
    );
    let gateway = TestGateway::start(&config(-1, -1, &counters)).await;
    assert_eq!(
        call(gateway.url("/release/"), SystemTime::now()).await.0,
        200
    );
    redis.stop();
    let (status, body, _) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!((status, body), (500, error_body("Internal Server Error.")));
}

#[tokio::test]
async fn gateway_starts_while_redis_is_down() {
    let port = common::redis::free_port();
    let counters = format!("{{ store: redis, url: 'redis://127.0.0.1:{port}', timeout_ms: 300 }}");
    let gateway = TestGateway::start(&config(-1, 10, &counters)).await;
    let (status, _, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!((status, quota), (200, None));

    let dir = tempfile::tempdir().unwrap();
    let _redis = RedisServer::start_with(dir.path(), port, &[]);
    let (status, _, quota) = call(gateway.url("/release/"), SystemTime::now()).await;
    assert_eq!((status, quota.as_deref()), (200, Some("10/9")));
}

#[tokio::test]
async fn redis_refunds_the_service_window_of_plan_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let counters = format!("{{ store: redis, url: '{}' }}", redis.url());
    let yaml =
        config(-1, 1, &counters).replace("release: {}", "release: { requests_per_second: 3 }");
    let clock = Arc::new(ManualClock::new(start_time()));
    let gateway = TestGateway::start_with_clock(&yaml, clock.clone()).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(gateway.url("/release/"), clock.now()).await.0);
    }
    // One request fits the quota; the others are refused for quota, never for the service's
    // rate of 3, because each refusal gives its place back.
    assert_eq!(statuses, [200, 429, 429, 429, 429]);
    let window = redis.cli(&[
        "get",
        &format!(
            "tollgate:{{svc:service-count001:release}}:{}",
            1_767_225_600
        ),
    ]);
    assert_eq!(window.trim(), "1");
}
