//! Counters in Redis, shared by every gateway instance on the same Redis.
//!
//! Each step is one Lua script, so checking and counting are atomic across instances. The
//! keys of one step share a hash tag, so the store works on Redis Cluster:
//!
//! * `PREFIX:{svc:SERVICE:ENV}:SECOND` and `PREFIX:{svc:SERVICE:ENV}:api:API:SECOND` hold
//!   the throttle windows, and expire after two seconds;
//! * `PREFIX:{plan:PLAN:key:SECRET_ID}:SECOND` holds the plan's rate window, and
//!   `PREFIX:{plan:PLAN:key:SECRET_ID}:quota` the used quota, which never expires.
//!
//! The connection is made on first use and re-made by the `redis` crate after a failure. A
//! step that fails or takes longer than the timeout is an outage: it is logged once, with
//! one more line when Redis answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::Script;
use tokio::sync::OnceCell;

use super::{Outcome, PlanCounters, Refusal, StoreError, Usage, Window};
use crate::config::{resolve_secret, RedisCountersConfig, WhenUnreachable};

/// Checks every window, then counts the request in all of them when none is full.
/// KEYS: windows; ARGV: their limits. Returns 1 (counted) or 0 (refused), then each count.
const THROTTLE: &str = r"
local used = {}
local full = false
for i, key in ipairs(KEYS) do
  used[i] = tonumber(redis.call('GET', key) or '0')
  if used[i] >= tonumber(ARGV[i]) then full = true end
end
if full then
  table.insert(used, 1, 0)
  return used
end
for i, key in ipairs(KEYS) do
  used[i] = redis.call('INCR', key)
  if used[i] == 1 then redis.call('EXPIRE', key, 2) end
end
table.insert(used, 1, 1)
return used
";

/// Takes one request back out of each window that still counts one.
/// KEYS: windows. Returns the number of windows changed.
const REFUND: &str = r"
local changed = 0
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
    changed = changed + 1
  end
end
return {changed}
";

/// Checks a plan's rate window and quota, then counts the request in both.
/// KEYS: the window, the quota; ARGV: the rate limit and the quota, -1 for none.
/// Returns 0 (counted), 1 (rate limited) or 2 (quota exceeded), the window count, the quota
/// used.
const PLAN: &str = r"
local rate = tonumber(redis.call('GET', KEYS[1]) or '0')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local rate_limit = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
if rate_limit >= 0 and rate >= rate_limit then return {1, rate, used} end
if quota >= 0 and used >= quota then return {2, rate, used} end
if rate_limit >= 0 then
  rate = redis.call('INCR', KEYS[1])
  if rate == 1 then redis.call('EXPIRE', KEYS[1], 2) end
end
used = redis.call('INCR', KEYS[2])
return {0, rate, used}
";

enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisStore {
    target: Target,
    connection: OnceCell<Connection>,
    prefix: String,
    timeout: Duration,
    when_unreachable: WhenUnreachable,
    throttle: Script,
    refund: Script,
    plan: Script,
    /// Set while Redis is unreachable, so the outage is logged once.
    down: AtomicBool,
}

impl RedisStore {
    pub fn new(config: &RedisCountersConfig) -> anyhow::Result<RedisStore> {
        let target = match &config.url {
            Some(url) => {
                let url = resolve_secret(url).map_err(anyhow::Error::msg)?;
                Target::Single(redis::Client::open(url)?)
            }
            None => {
                let nodes = config
                    .cluster_nodes
                    .iter()
                    .map(resolve_secret)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                Target::Cluster(Box::new(ClusterClient::new(nodes)?))
            }
        };
        Ok(RedisStore {
            target,
            connection: OnceCell::new(),
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            when_unreachable: config.when_unreachable,
            throttle: Script::new(THROTTLE),
            refund: Script::new(REFUND),
            plan: Script::new(PLAN),
            down: AtomicBool::new(false),
        })
    }

    pub fn when_unreachable(&self) -> WhenUnreachable {
        self.when_unreachable
    }

    async fn connection(&self) -> redis::RedisResult<Connection> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => ConnectionManager::new(client.clone())
                        .await
                        .map(Connection::Single),
                    Target::Cluster(client) => {
                        client.get_async_connection().await.map(Connection::Cluster)
                    }
                }
            })
            .await?;
        Ok(connection.clone())
    }

    /// Runs a script within the timeout, logging the start and end of outages.
    async fn run(&self, invocation: redis::ScriptInvocation<'_>) -> Result<Vec<i64>, StoreError> {
        let attempt = async {
            match self.connection().await? {
                Connection::Single(mut connection) => {
                    invocation.invoke_async::<Vec<i64>>(&mut connection).await
                }
                Connection::Cluster(mut connection) => {
                    invocation.invoke_async::<Vec<i64>>(&mut connection).await
                }
            }
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(error)) => Err(StoreError(error.to_string())),
            Err(_) => Err(StoreError(format!(
                "no response within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::warn!("Redis is reachable again; limits and quotas apply again");
                }
            }
            Err(error) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    let effect = match self.when_unreachable {
                        WhenUnreachable::Allow => "requests are served without limits",
                        WhenUnreachable::Reject => {
                            "requests that need a counter get 500 Internal Server Error."
                        }
                    };
                    tracing::error!(
                        %error,
                        "Redis is unreachable; {effect} until it is reachable again"
                    );
                }
            }
        }
        result
    }

    /// Returns the Redis keys of the windows of one second, which share their service's tag.
    fn window_keys(&self, second: u64, windows: &[Window<'_>]) -> Vec<String> {
        let Some(first) = windows.first() else {
            return Vec::new();
        };
        let tag = first.counter.split(":api:").next().unwrap_or(first.counter);
        windows
            .iter()
            .map(|window| {
                let rest = window.counter.strip_prefix(tag).unwrap_or(window.counter);
                format!("{}:{{{tag}}}{rest}:{second}", self.prefix)
            })
            .collect()
    }

    pub async fn refund(&self, second: u64, windows: &[Window<'_>]) -> Result<(), StoreError> {
        let keys = self.window_keys(second, windows);
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.refund.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        self.run(invocation).await.map(|_| ())
    }

    pub async fn throttle(
        &self,
        second: u64,
        windows: &[Window<'_>],
    ) -> Result<Outcome, StoreError> {
        if windows.is_empty() {
            return Ok(Outcome::default());
        }
        let mut invocation = self.throttle.prepare_invoke();
        for key in self.window_keys(second, windows) {
            invocation.key(key);
        }
        for window in windows {
            invocation.arg(window.limit);
        }
        let values = self.run(invocation).await?;
        let counted = values.first() == Some(&1);
        let usage = windows
            .iter()
            .zip(values.iter().skip(1))
            .map(|(window, used)| Some(Usage::new(window.limit, (*used).max(0) as u64)))
            .collect();
        Ok(Outcome {
            refused: (!counted).then_some(Refusal::RateLimited),
            usage,
        })
    }

    pub async fn plan(&self, second: u64, plan: PlanCounters<'_>) -> Result<Outcome, StoreError> {
        let base = format!("{}:{{{}}}", self.prefix, plan.counter);
        let mut invocation = self.plan.prepare_invoke();
        invocation
            .key(format!("{base}:{second}"))
            .key(format!("{base}:quota"))
            .arg(plan.per_second.map_or(-1, |limit| limit as i64))
            .arg(plan.quota.map_or(-1, |quota| quota as i64));
        let values = self.run(invocation).await?;
        let [verdict, rate, used] = values[..] else {
            return Err(StoreError(format!("unexpected script reply {values:?}")));
        };
        let refused = match verdict {
            0 => None,
            1 => Some(Refusal::RateLimited),
            _ => Some(Refusal::QuotaExceeded),
        };
        Ok(Outcome {
            refused,
            usage: vec![
                plan.per_second
                    .map(|limit| Usage::new(limit, rate.max(0) as u64)),
                plan.quota
                    .map(|quota| Usage::new(quota, used.max(0) as u64)),
            ],
        })
    }
}
