//! The gateway's clock, which signature windows and rate-limit seconds read.
//!
//! The binary uses [`SystemClock`]; tests use [`ManualClock`] to put a request at any time
//! without sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Whole seconds since the Unix epoch: the rate-limit window.
    fn unix_second(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when set or advanced.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(now: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new(now),
        }
    }

    pub fn set(&self, now: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
