//! The embedded counter store: windows and quota in memory, quota written to a file.
//!
//! Used quota is written once a second when it changed, and at shutdown, to a temporary file
//! that is synced and then renamed over the quota file, so the file is always whole. A crash
//! loses at most the quota used in the last second before it: those requests were served
//! but are not counted after the restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Outcome, PlanCounters, Refusal, Usage, Window};

/// The quota file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFile {
    /// Format version, 1.
    version: u32,
    /// Requests counted per plan and key, by counter name.
    quota_used: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Counter name to (second, requests counted in it).
    windows: HashMap<String, (u64, u64)>,
    quota_used: HashMap<String, u64>,
}

pub struct LocalStore {
    state: Mutex<State>,
    file: Option<PathBuf>,
    dirty: AtomicBool,
    /// Serializes writers of the file.
    writing: Mutex<()>,
}

impl LocalStore {
    /// Opens the store, reading used quota from `file` when it exists.
    pub fn open(file: &Path) -> anyhow::Result<LocalStore> {
        let quota_used = match std::fs::read(file) {
            Ok(bytes) => {
                let parsed: QuotaFile = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "the quota file `{}` is not valid: fix it, or move it away to start \
                         every plan's quota from zero",
                        file.display()
                    )
                })?;
                parsed.quota_used
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read the quota file `{}`", file.display()))
            }
        };
        // Fail now, not at the first flush, when the folder cannot be written.
        let store = LocalStore {
            state: Mutex::new(State {
                windows: HashMap::new(),
                quota_used,
            }),
            file: Some(file.to_path_buf()),
            dirty: AtomicBool::new(true),
            writing: Mutex::new(()),
        };
        store
            .flush()
            .with_context(|| format!("cannot write the quota file `{}`", file.display()))?;
        Ok(store)
    }

    pub fn in_memory() -> LocalStore {
        LocalStore {
            state: Mutex::new(State::default()),
            file: None,
            dirty: AtomicBool::new(false),
            writing: Mutex::new(()),
        }
    }

    pub fn quota_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn throttle(&self, second: u64, windows: &[Window<'_>]) -> Outcome {
        let mut state = self.lock();
        let used: Vec<u64> = windows
            .iter()
            .map(|window| window_count(&state.windows, window.counter, second))
            .collect();
        let refused = windows
            .iter()
            .zip(&used)
            .any(|(window, used)| *used >= window.limit);
        if refused {
            return Outcome {
                refused: Some(Refusal::RateLimited),
                usage: windows
                    .iter()
                    .zip(&used)
                    .map(|(window, used)| Some(Usage::new(window.limit, *used)))
                    .collect(),
            };
        }
        let usage = windows
            .iter()
            .map(|window| {
                let used = increment_window(&mut state.windows, window.counter, second);
                Some(Usage::new(window.limit, used))
            })
            .collect();
        Outcome {
            refused: None,
            usage,
        }
    }

    pub fn refund(&self, second: u64, windows: &[Window<'_>]) {
        let mut state = self.lock();
        for window in windows {
            if let Some((at, count)) = state.windows.get_mut(window.counter) {
                if *at == second {
                    *count = count.saturating_sub(1);
                }
            }
        }
    }

    pub fn plan(&self, second: u64, plan: PlanCounters<'_>) -> Outcome {
        let mut state = self.lock();
        let rate_used = window_count(&state.windows, plan.counter, second);
        let quota_used = state.quota_used.get(plan.counter).copied().unwrap_or(0);
        let refused = if plan.per_second.is_some_and(|limit| rate_used >= limit) {
            Some(Refusal::RateLimited)
        } else if plan.quota.is_some_and(|quota| quota_used >= quota) {
            Some(Refusal::QuotaExceeded)
        } else {
            None
        };
        if refused.is_some() {
            return Outcome {
                refused,
                usage: vec![
                    plan.per_second.map(|limit| Usage::new(limit, rate_used)),
                    plan.quota.map(|quota| Usage::new(quota, quota_used)),
                ],
            };
        }
        let rate_used = match plan.per_second {
            Some(_) => increment_window(&mut state.windows, plan.counter, second),
            None => rate_used,
        };
        // Quota is counted even without a quota, so that one added later starts from the
        // requests already made.
        let quota_used = {
            let slot = match state.quota_used.get_mut(plan.counter) {
                Some(slot) => slot,
                None => state
                    .quota_used
                    .entry(plan.counter.to_string())
                    .or_insert(0),
            };
            *slot += 1;
            *slot
        };
        self.dirty.store(true, Ordering::Relaxed);
        Outcome {
            refused: None,
            usage: vec![
                plan.per_second.map(|limit| Usage::new(limit, rate_used)),
                plan.quota.map(|quota| Usage::new(quota, quota_used)),
            ],
        }
    }

    /// Writes used quota to the file if it changed since the last write, and removes windows
    /// of past seconds.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let _writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let content = {
            let mut state = self.lock();
            let newest = state.windows.values().map(|(second, _)| *second).max();
            if let Some(newest) = newest {
                state.windows.retain(|_, (second, _)| *second + 1 >= newest);
            }
            serde_json::to_vec_pretty(&QuotaFile {
                version: 1,
                quota_used: state.quota_used.clone(),
            })
            .expect("counts serialize")
        };
        let result = write_atomically(file, &content);
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }
}

fn window_count(windows: &HashMap<String, (u64, u64)>, counter: &str, second: u64) -> u64 {
    match windows.get(counter) {
        Some((at, count)) if *at == second => *count,
        _ => 0,
    }
}

fn increment_window(windows: &mut HashMap<String, (u64, u64)>, counter: &str, second: u64) -> u64 {
    let slot = match windows.get_mut(counter) {
        Some(slot) => slot,
        None => windows.entry(counter.to_string()).or_insert((second, 0)),
    };
    if slot.0 != second {
        *slot = (second, 0);
    }
    slot.1 += 1;
    slot.1
}

fn write_atomically(file: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(content)?;
        out.sync_all()?;
    }
    std::fs::rename(&temporary, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(counter: &str, per_second: Option<u64>, quota: Option<u64>) -> PlanCounters<'_> {
        PlanCounters {
            counter,
            per_second,
            quota,
        }
    }

    #[test]
    fn window_admits_exactly_its_limit_per_second() {
        let store = LocalStore::in_memory();
        let window = [Window {
            counter: "svc:a:release",
            limit: 3,
        }];
        for expected_remaining in [2, 1, 0] {
            let outcome = store.throttle(100, &window);
            assert_eq!(outcome.refused, None);
            assert_eq!(outcome.usage[0].unwrap().remaining, expected_remaining);
        }
        assert_eq!(
            store.throttle(100, &window).refused,
            Some(Refusal::RateLimited)
        );
        assert_eq!(store.throttle(101, &window).refused, None);
    }

    #[test]
    fn rejected_request_counts_nowhere() {
        let store = LocalStore::in_memory();
        let windows = [
            Window {
                counter: "svc",
                limit: 10,
            },
            Window {
                counter: "api",
                limit: 1,
            },
        ];
        assert_eq!(store.throttle(5, &windows).refused, None);
        assert_eq!(
            store.throttle(5, &windows).refused,
            Some(Refusal::RateLimited)
        );
        let outcome = store.throttle(5, &windows[..1]);
        assert_eq!(outcome.usage[0].unwrap().remaining, 8);
    }

    #[test]
    fn quota_is_not_used_by_rate_limited_requests() {
        let store = LocalStore::in_memory();
        let limits = plan("plan:p:key:k", Some(1), Some(2));
        assert_eq!(store.plan(1, limits).refused, None);
        assert_eq!(store.plan(1, limits).refused, Some(Refusal::RateLimited));
        assert_eq!(store.plan(2, limits).refused, None);
        let outcome = store.plan(3, limits);
        assert_eq!(outcome.refused, Some(Refusal::QuotaExceeded));
        assert_eq!(
            outcome.usage[1],
            Some(Usage {
                limit: 2,
                remaining: 0
            })
        );
    }

    #[test]
    fn quota_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("quota.json");
        {
            let store = LocalStore::open(&file).unwrap();
            for second in 0..3 {
                store.plan(second, plan("plan:p:key:k", None, Some(10)));
            }
            store.flush().unwrap();
        }
        let store = LocalStore::open(&file).unwrap();
        let outcome = store.plan(9, plan("plan:p:key:k", None, Some(10)));
        assert_eq!(
            outcome.usage[1],
            Some(Usage {
                limit: 10,
                remaining: 6
            })
        );
    }

    #[test]
    fn broken_quota_file_rejected_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("quota.json");
        std::fs::write(&file, "{not json").unwrap();
        let error = format!("{:#}", LocalStore::open(&file).err().unwrap());
        assert!(
            error.contains("is not valid: fix it, or move it away"),
            "{error}"
        );
    }
}
