//! The etcd registry against a real etcd server: instances registering under leases, leases
//! expiring, watch updates reaching the gateway within a second, and an etcd outage during
//! which requests keep flowing to the last known instances. Also the `register` and
//! `deregister` commands.
#![cfg(feature = "etcd")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd::EtcdServer;
use common::process::GatewayProcess;
use common::{client, echoed_header, error_body, TestBackend};
use etcd_client::{Client, PutOptions};
use serde_json::Value;

const KEY_PREFIX: &str = "/tollgate/microservices/crgt/coupon/";

fn config(etcd: &EtcdServer) -> String {
    format!(
        r#"
server:
  listen: ["127.0.0.1:0"]
  log_format: json
  access_log: {{ enabled: false }}
registry:
  type: etcd
  endpoints: ["{}"]
services:
  - id: service-etcd0001
    name: discovered
    default_domains: [ms.example.com]
    environments:
      release: {{}}
    apis:
      - id: api-etcd0001
        name: coupon
        path: /{{X-NameSpace-Code}}/{{X-MicroService-Name}}/service
        method: ANY
        timeout_secs: 5
        backend:
          type: microservice
          namespace_location: method.req.path.X-NameSpace-Code
          service_location: method.req.path.X-MicroService-Name
          microservices: [{{ namespace: crgt, name: coupon }}]
"#,
        etcd.endpoint()
    )
}

fn value(backend: &TestBackend) -> String {
    format!(
        r#"{{"host":"127.0.0.1","port":{},"weight":10}}"#,
        backend.addr.port()
    )
}

/// Calls the microservice; returns the status and the node that served it, if one did.
async fn call(gateway: &GatewayProcess) -> (u16, Option<String>, String) {
    let response = client()
        .get(gateway.url("/release/crgt/coupon/service"))
        .header("host", "ms.example.com")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let node = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|echo| echoed_header(&echo, "host").map(str::to_string));
    (status, node, body)
}

/// Calls until `done` holds for a response, for up to `limit`; returns how long it took.
async fn until(
    gateway: &GatewayProcess,
    limit: Duration,
    done: impl Fn(u16, Option<&str>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, node, body) = call(gateway).await;
        if done(status, node.as_deref()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not reached within {limit:?}; last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn instances_appear_and_disappear_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path());
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    gateway
        .wait_for_log(|line| line["message"] == "microservice instances read from etcd")
        .await;
    let not_found = error_body("Not found micro service with key.");
    let (status, _, body) = call(&gateway).await;
    assert_eq!((status, body), (404, not_found.clone()));

    let mut etcd_client = Client::connect([etcd.endpoint()], None).await.unwrap();
    let first = TestBackend::echo().await;
    let second = TestBackend::echo().await;
    let first_addr = first.addr.to_string();
    let second_addr = second.addr.to_string();

    // An instance under a lease that is never renewed.
    let lease = etcd_client.lease_grant(2, None).await.unwrap().id();
    etcd_client
        .put(
            format!("{KEY_PREFIX}first"),
            value(&first),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    let took = until(&gateway, Duration::from_secs(3), |status, node| {
        status == 200 && node == Some(first_addr.as_str())
    })
    .await;
    assert!(took < Duration::from_secs(1), "the watch took {took:?}");

    // A second instance, then its removal.
    etcd_client
        .put(format!("{KEY_PREFIX}second"), value(&second), None)
        .await
        .unwrap();
    let took = until(&gateway, Duration::from_secs(3), |_, node| {
        node == Some(second_addr.as_str())
    })
    .await;
    assert!(took < Duration::from_secs(1), "the watch took {took:?}");
    etcd_client
        .delete(format!("{KEY_PREFIX}second"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..6 {
        assert_eq!(call(&gateway).await.1.as_deref(), Some(first_addr.as_str()));
    }

    // The first lease expires: the instance is gone and the microservice has none left.
    until(&gateway, Duration::from_secs(6), |status, _| status == 404).await;
    let (status, _, body) = call(&gateway).await;
    assert_eq!((status, body), (404, not_found));
}

#[tokio::test]
async fn an_etcd_outage_keeps_the_last_known_instances() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdServer::start(dir.path());
    let first = TestBackend::echo().await;
    let second = TestBackend::echo().await;
    let first_addr = first.addr.to_string();
    let second_addr = second.addr.to_string();
    let key = format!("{KEY_PREFIX}first");
    assert!(etcd.ctl(&["put", &key, &value(&first)]).1);
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    until(&gateway, Duration::from_secs(3), |status, node| {
        status == 200 && node == Some(first_addr.as_str())
    })
    .await;

    etcd.stop();
    gateway
        .wait_for_log(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot read the registry from etcd"))
        })
        .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let (status, node, body) = call(&gateway).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(node.as_deref(), Some(first_addr.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outages = gateway
        .logs()
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot read the registry from etcd"))
        })
        .count();
    assert_eq!(outages, 1, "an outage is logged once");

    // Back: the gateway reads the prefix again and finds what changed.
    etcd.restart();
    assert!(etcd.ctl(&["put", &key, &value(&second)]).1);
    gateway
        .wait_for_log(|line| line["message"] == "etcd is back; microservice instances read again")
        .await;
    until(&gateway, Duration::from_secs(5), |status, node| {
        status == 200 && node == Some(second_addr.as_str())
    })
    .await;
}

fn tollgate(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.args(args).stdin(Stdio::null());
    command
}

#[tokio::test]
async fn register_and_deregister_commands() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path());
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    let backend = TestBackend::echo().await;
    let addr = backend.addr.to_string();
    let port = backend.addr.port().to_string();
    let endpoint = etcd.endpoint();

    let mut registered = tollgate(&[
        "register",
        "--etcd",
        &endpoint,
        "--namespace",
        "crgt",
        "--service",
        "coupon",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--ttl",
        "5",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    until(&gateway, Duration::from_secs(10), |status, node| {
        status == 200 && node == Some(addr.as_str())
    })
    .await;
    let (listing, _) = etcd.ctl(&["get", "--prefix", KEY_PREFIX, "--keys-only"]);
    assert!(
        listing.contains(&format!("{KEY_PREFIX}127.0.0.1:{port}")),
        "{listing}"
    );

    // SIGTERM deregisters at once, well before the lease would expire.
    let pid = registered.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = registered.wait().unwrap();
    assert!(status.success(), "{status}");
    let took = until(&gateway, Duration::from_secs(3), |status, _| status == 404).await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // `deregister` removes an instance put by hand, and reports an error when there is none.
    assert!(
        etcd.ctl(&["put", &format!("{KEY_PREFIX}manual"), &value(&backend)])
            .1
    );
    until(&gateway, Duration::from_secs(3), |status, _| status == 200).await;
    let args = [
        "deregister",
        "--etcd",
        &endpoint,
        "--namespace",
        "crgt",
        "--service",
        "coupon",
        "--instance",
        "manual",
    ];
    let output = tollgate(&args).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    until(&gateway, Duration::from_secs(3), |status, _| status == 404).await;
    let output = tollgate(&args).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no instance /tollgate/microservices/crgt/coupon/manual is registered"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_registry_the_gateway_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path());
    let backend = TestBackend::echo().await;
    let addr = backend.addr.to_string();
    assert!(
        etcd.ctl(&["put", &format!("{KEY_PREFIX}one"), &value(&backend)])
            .1
    );
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    until(&gateway, Duration::from_secs(3), |status, node| {
        status == 200 && node == Some(addr.as_str())
    })
    .await;

    // The same file with a static registry, which needs a restart to take effect.
    let static_registry = config(&etcd).replace(
        &format!("  type: etcd\n  endpoints: [\"{}\"]", etcd.endpoint()),
        "  type: static",
    );
    assert!(static_registry.contains("type: static"));
    gateway.rewrite_config(&static_registry);
    gateway.signal("HUP");
    gateway
        .wait_for_log(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the registry's kind or etcd settings changed"))
        })
        .await;
    for _ in 0..4 {
        let (status, node, body) = call(&gateway).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(node.as_deref(), Some(addr.as_str()));
    }
}

#[tokio::test]
async fn oversized_values_do_not_stop_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path());
    let backend = TestBackend::echo().await;
    let addr = backend.addr.to_string();
    let mut etcd_client = Client::connect([etcd.endpoint()], None).await.unwrap();
    // 50 values of 1.4 MB, under etcd's 1.5 MiB request limit, make a listing larger than
    // gRPC's default 4 MiB message limit and than the gateway's own 64 MiB.
    let padding = "a".repeat(1_400_000);
    for index in 0..50 {
        let value = format!(
            r#"{{"host":"127.0.0.1","port":{},"meta":"{padding}"}}"#,
            backend.addr.port()
        );
        etcd_client
            .put(format!("{KEY_PREFIX}big{index}"), value, None)
            .await
            .unwrap();
    }
    etcd_client
        .put(format!("{KEY_PREFIX}small"), value(&backend), None)
        .await
        .unwrap();
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    until(&gateway, Duration::from_secs(10), |status, node| {
        status == 200 && node == Some(addr.as_str())
    })
    .await;
    let warnings: Vec<String> = gateway
        .logs()
        .iter()
        .filter(|line| line["level"] == "WARN" && line["target"] == "tollgate::discovery::etcd")
        .map(|line| line.to_string())
        .collect();
    assert_eq!(warnings.len(), 50, "{warnings:#?}");
    assert!(
        warnings.iter().all(|line| line.len() < 1000),
        "a warning quotes the large value: {warnings:#?}"
    );
}

#[tokio::test]
async fn register_survives_an_etcd_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdServer::start(dir.path());
    let gateway = GatewayProcess::start(&config(&etcd)).await;
    let backend = TestBackend::echo().await;
    let addr = backend.addr.to_string();
    let port = backend.addr.port().to_string();
    let endpoint = etcd.endpoint();
    let register = |args: &[&str]| {
        let mut all = vec!["register", "--etcd", &endpoint, "--namespace", "crgt"];
        all.extend_from_slice(args);
        tollgate(&all)
    };

    // Names with `/` would shift the key into another microservice.
    let output = register(&[
        "--service",
        "coupon/extra",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--service `coupon/extra` must be non-empty and without `/`"),
        "{stderr}"
    );
    let output = register(&["--service", "coupon", "--host", "127.0.0.1", "--port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());

    let mut registered = register(&[
        "--service",
        "coupon",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--ttl",
        "4",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    until(&gateway, Duration::from_secs(10), |status, node| {
        status == 200 && node == Some(addr.as_str())
    })
    .await;

    // etcd restarts; the command registers the instance again under a new lease, so it is
    // still there after the old lease would have expired.
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.restart();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(registered.try_wait().unwrap().is_none(), "register exited");
    until(&gateway, Duration::from_secs(5), |status, node| {
        status == 200 && node == Some(addr.as_str())
    })
    .await;
    let (listing, _) = etcd.ctl(&["get", "--prefix", KEY_PREFIX, "--keys-only"]);
    assert!(listing.contains(&format!("127.0.0.1:{port}")), "{listing}");
    let _ = registered.kill();
    let _ = registered.wait();
}
