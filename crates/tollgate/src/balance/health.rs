//! Node health: passive checks on real requests and active HTTP checks on a schedule.
//!
//! Passive checks count consecutive failures of real requests: responses with a status in
//! `unhealthy_http_status`, connections that fail, and timeouts, each against its own
//! threshold. Any other response resets the counts. A node taken out this way is tried again
//! after `unhealthy_timeout`.
//!
//! Active checks send `GET {active_check_http_path}` to every node with a weight, every
//! `active_check_interval`. A status in `healthy_http_status` is a success; anything else,
//! and a connection failure or a timeout, is a failure counted against the same thresholds.
//! A node taken out by active checks comes back after `healthy_threshold` successes in a row;
//! active successes also end a passive outage early.
//!
//! Each change of a node's state is logged once: a warning when it goes out, with the reason,
//! and a line when it comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::task::JoinSet;

use super::{Balancer, Node};
use crate::backend::HttpClient;
use crate::config::HealthConfig;
use crate::discovery::Registry;

/// The settings of a balancer's health checks.
pub struct HealthPolicy {
    pub active: bool,
    pub passive: bool,
    healthy_status: Vec<u16>,
    unhealthy_status: Vec<u16>,
    http_threshold: u32,
    tcp_threshold: u32,
    timeout_threshold: u32,
    healthy_threshold: u32,
    pub check_path: String,
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub unhealthy_timeout: Duration,
}

impl HealthPolicy {
    pub fn new(config: &HealthConfig) -> HealthPolicy {
        HealthPolicy {
            active: config.enable_active_check,
            passive: config.enable_passive_check,
            healthy_status: config.healthy_http_status.clone(),
            unhealthy_status: config.unhealthy_http_status.clone(),
            http_threshold: config.http_failure_threshold,
            tcp_threshold: config.tcp_failure_threshold,
            timeout_threshold: config.timeout_threshold,
            healthy_threshold: config.healthy_threshold.max(1),
            check_path: config.active_check_http_path.clone(),
            check_interval: Duration::from_secs(config.active_check_interval_secs.max(1)),
            check_timeout: Duration::from_secs(config.active_check_timeout_secs.max(1)),
            unhealthy_timeout: Duration::from_secs(config.unhealthy_timeout_secs),
        }
    }

    /// Records a real request's outcome.
    pub fn record_passive(
        &self,
        health: &NodeHealth,
        outcome: Outcome,
        now: Instant,
        label: &str,
        node: &Authority,
    ) {
        let failure = match outcome {
            Outcome::Status(status) if self.unhealthy_status.contains(&status) => {
                Some(Failure::Status(status))
            }
            Outcome::Status(_) => None,
            Outcome::Connect => Some(Failure::Connect),
            Outcome::Timeout => Some(Failure::Timeout),
        };
        let mut state = health.lock();
        if state.down.is_some() {
            return;
        }
        match failure {
            None => state.passive = Failures::default(),
            Some(failure) => {
                if let Some(reason) = self.count(&mut state.passive, failure) {
                    state.take_out(Down::Until(now + self.unhealthy_timeout));
                    health.down.store(true, Ordering::Release);
                    tracing::warn!(
                        balancer = label, %node, reason = %reason,
                        unhealthy_timeout_secs = self.unhealthy_timeout.as_secs(),
                        "node taken out by passive health checks"
                    );
                }
            }
        }
    }

    /// Records an active check's outcome.
    fn record_active(&self, health: &NodeHealth, outcome: Outcome, label: &str, node: &Authority) {
        let failure = match outcome {
            Outcome::Status(status) if self.healthy_status.contains(&status) => None,
            Outcome::Status(status) => Some(Failure::Status(status)),
            Outcome::Connect => Some(Failure::Connect),
            Outcome::Timeout => Some(Failure::Timeout),
        };
        let mut state = health.lock();
        match failure {
            None => {
                state.active = Failures::default();
                if state.down.is_some() {
                    state.successes += 1;
                    if state.successes >= self.healthy_threshold {
                        state.bring_back();
                        health.down.store(false, Ordering::Release);
                        tracing::info!(
                            balancer = label, %node, successes = self.healthy_threshold,
                            "node back in: active health checks pass"
                        );
                    }
                }
            }
            Some(failure) => {
                state.successes = 0;
                if matches!(state.down, Some(Down::UntilChecksPass)) {
                    return;
                }
                // Failures count during a passive outage too, so a node that fails its
                // checks does not come back when the unhealthy timeout ends.
                if let Some(reason) = self.count(&mut state.active, failure) {
                    let already_out = state.down.is_some();
                    state.take_out(Down::UntilChecksPass);
                    health.down.store(true, Ordering::Release);
                    if already_out {
                        tracing::warn!(
                            balancer = label, %node, reason = %reason,
                            "node kept out by active health checks until they pass"
                        );
                    } else {
                        tracing::warn!(
                            balancer = label, %node, reason = %reason,
                            "node taken out by active health checks"
                        );
                    }
                }
            }
        }
    }

    /// Counts one failure; returns why the node goes out when a threshold is reached.
    fn count(&self, failures: &mut Failures, failure: Failure) -> Option<String> {
        let (count, threshold, what) = match failure {
            Failure::Status(_) => {
                failures.status += 1;
                (failures.status, self.http_threshold, "unhealthy statuses")
            }
            Failure::Connect => {
                failures.connect += 1;
                (failures.connect, self.tcp_threshold, "connection failures")
            }
            Failure::Timeout => {
                failures.timeout += 1;
                (failures.timeout, self.timeout_threshold, "timeouts")
            }
        };
        if threshold == 0 || count < threshold {
            return None;
        }
        Some(match failure {
            Failure::Status(status) => format!("{count} {what} in a row, the last {status}"),
            _ => format!("{count} {what} in a row"),
        })
    }
}

/// The outcome of one request or check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status.
    Status(u16),
    /// The connection could not be made, or broke before the response head.
    Connect,
    /// No response head in time.
    Timeout,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Status(u16),
    Connect,
    Timeout,
}

#[derive(Debug, Default)]
struct Failures {
    status: u32,
    connect: u32,
    timeout: u32,
}

/// One node's health.
#[derive(Default)]
pub struct NodeHealth {
    /// Set while the node is out: the request path reads only this while a node is up.
    down: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set while the node is out.
    down: Option<Down>,
    passive: Failures,
    active: Failures,
    /// Healthy active checks in a row while out.
    successes: u32,
}

/// How long a node that is out stays out.
#[derive(Debug, Clone, Copy)]
enum Down {
    /// Taken out by passive checks: until the unhealthy timeout ends.
    Until(Instant),
    /// Taken out by active checks: until they pass.
    UntilChecksPass,
}

impl State {
    fn take_out(&mut self, down: Down) {
        self.down = Some(down);
        self.passive = Failures::default();
        self.active = Failures::default();
        self.successes = 0;
    }

    fn bring_back(&mut self) {
        self.down = None;
        self.passive = Failures::default();
        self.active = Failures::default();
        self.successes = 0;
    }
}

impl NodeHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fits the node's state to a new policy after a reload. Returns true when that brings
    /// the node back.
    pub fn adapt(&self, policy: &HealthPolicy, now: Instant) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return false;
        }
        let mut state = self.lock();
        match state.down {
            Some(Down::UntilChecksPass) if !policy.active => {
                state.bring_back();
                self.down.store(false, Ordering::Release);
                true
            }
            Some(Down::Until(until)) if until > now + policy.unhealthy_timeout => {
                state.down = Some(Down::Until(now + policy.unhealthy_timeout));
                false
            }
            _ => false,
        }
    }

    /// True when the node may take requests. A passive outage that has timed out ends here,
    /// and `on_back` logs it.
    pub fn is_up(&self, now: Instant, on_back: impl FnOnce()) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let mut state = self.lock();
        match state.down {
            None => true,
            Some(Down::Until(until)) if now >= until => {
                state.bring_back();
                self.down.store(false, Ordering::Release);
                on_back();
                true
            }
            Some(_) => false,
        }
    }
}

/// Starts the active checks of `balancer`, if it has them on. The task ends when the
/// balancer is dropped, with the configuration snapshot that held it.
pub fn spawn_active_checks(
    balancer: &Arc<Balancer>,
    client: Arc<HttpClient>,
    registry: Arc<Registry>,
) {
    if !balancer.health.active {
        return;
    }
    let weak: Weak<Balancer> = Arc::downgrade(balancer);
    let interval = balancer.health.check_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(balancer) = weak.upgrade().filter(|balancer| !balancer.is_retired()) else {
                return;
            };
            balancer.sync(&registry);
            let mut checks = JoinSet::new();
            for node in balancer.nodes().nodes.iter().filter(|node| node.weight > 0) {
                let node: Arc<Node> = node.clone();
                let balancer = balancer.clone();
                let client = client.clone();
                checks.spawn(async move {
                    let policy = &balancer.health;
                    let outcome = client
                        .probe(
                            &balancer.probe,
                            &node,
                            &policy.check_path,
                            policy.check_timeout,
                        )
                        .await;
                    tracing::debug!(balancer = %balancer.label, node = %node.authority, ?outcome, "active check");
                    policy.record_active(&node.health, outcome, &balancer.label, &node.authority);
                });
            }
            drop(balancer);
            while checks.join_next().await.is_some() {}
        }
    });
}
