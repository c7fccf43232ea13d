//! Rate-limit windows and used quota: the embedded store and Redis.
//!
//! A request is counted in up to two steps. The throttle step checks the service's and the
//! API's requests per second in this environment; the plan step checks the key's plan rate
//! and quota. A step that refuses counts nothing, and a request the plan step refuses is taken
//! back out of the throttle windows, so a refused request uses up neither windows nor quota.
//! Rate windows are whole seconds of the gateway's clock: a limit of N admits N requests per
//! calendar second, and the N+1th gets 429.
//!
//! Counters are named after the ids in the configuration (`svc:SERVICE:ENV`,
//! `svc:SERVICE:ENV:api:API`, `plan:PLAN:key:SECRET_ID`), never after a snapshot, so a reload
//! with new limits keeps the counts already used.

mod local;
mod redis;

use std::path::Path;

use crate::config::{CountersConfig, WhenUnreachable};

pub use local::LocalStore;
pub use redis::RedisStore;

/// A requests-per-second window to check and count.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub counter: &'a str,
    pub limit: u64,
}

/// A key's plan limits; `None` for no limit.
#[derive(Debug, Clone, Copy)]
pub struct PlanCounters<'a> {
    pub counter: &'a str,
    pub per_second: Option<u64>,
    pub quota: Option<u64>,
}

/// How much of a limit is used, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub limit: u64,
    /// The count left after this request, 0 when rejected.
    pub remaining: u64,
}

impl Usage {
    fn new(limit: u64, used: u64) -> Usage {
        Usage {
            limit,
            remaining: limit.saturating_sub(used),
        }
    }
}

/// The reason a request was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    RateLimited,
    QuotaExceeded,
}

/// The outcome of one counting step.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub refused: Option<Refusal>,
    /// One entry per window or limit asked about, in order.
    pub usage: Vec<Option<Usage>>,
}

/// The store could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The configured counter store.
pub enum Counters {
    Local(LocalStore),
    Redis(Box<RedisStore>),
}

impl Counters {
    /// Opens the configured store. The local store reads its quota file; Redis is connected
    /// on first use, so the gateway starts while Redis is down.
    pub fn open(config: &CountersConfig) -> anyhow::Result<Counters> {
        Ok(match config {
            CountersConfig::Local { quota_file } => Counters::Local(LocalStore::open(quota_file)?),
            CountersConfig::Redis(redis) => Counters::Redis(Box::new(RedisStore::new(redis)?)),
        })
    }

    /// Returns an in-memory store that keeps nothing on disk, for tests and tools.
    pub fn in_memory() -> Counters {
        Counters::Local(LocalStore::in_memory())
    }

    /// Returns the policy for requests that need the store while it is unreachable.
    pub fn when_unreachable(&self) -> WhenUnreachable {
        match self {
            Counters::Local(_) => WhenUnreachable::Allow,
            Counters::Redis(redis) => redis.when_unreachable(),
        }
    }

    /// Checks every window against its limit for `second`; when all have room, counts the
    /// request in each.
    pub async fn throttle(
        &self,
        second: u64,
        windows: &[Window<'_>],
    ) -> Result<Outcome, StoreError> {
        match self {
            Counters::Local(local) => Ok(local.throttle(second, windows)),
            Counters::Redis(redis) => redis.throttle(second, windows).await,
        }
    }

    /// Takes a request back out of windows it was counted in by [`Counters::throttle`], when a
    /// later step refused it.
    pub async fn refund(&self, second: u64, windows: &[Window<'_>]) -> Result<(), StoreError> {
        match self {
            Counters::Local(local) => {
                local.refund(second, windows);
                Ok(())
            }
            Counters::Redis(redis) => redis.refund(second, windows).await,
        }
    }

    /// Checks a key's plan rate and quota; when both have room, counts the request in them.
    /// The returned usage lists the rate, then the quota.
    pub async fn plan(&self, second: u64, plan: PlanCounters<'_>) -> Result<Outcome, StoreError> {
        match self {
            Counters::Local(local) => Ok(local.plan(second, plan)),
            Counters::Redis(redis) => redis.plan(second, plan).await,
        }
    }

    /// Writes what must survive a restart. A no-op for Redis.
    pub fn flush(&self) -> std::io::Result<()> {
        match self {
            Counters::Local(local) => local.flush(),
            Counters::Redis(_) => Ok(()),
        }
    }

    /// Returns the file the local store keeps quota in.
    pub fn quota_file(&self) -> Option<&Path> {
        match self {
            Counters::Local(local) => local.quota_file(),
            Counters::Redis(_) => None,
        }
    }
}
