//! Wrong birth dates are limited, so the status look-up cannot be used to
//! find a person's birth date by trying them all: per reference and per
//! client address, at most `max` failures within `window` (a failure being a
//! wrong birth date for a file that exists: a reference not recorded yet, as
//! right after filing, is not one); past that, a 429
//! with `Retry-After` until the oldest failure leaves the window. The right
//! birth date is refused too while a key is over its limit, so an attacker
//! learns nothing from the answers.
//!
//! Held in this gateway's memory (each instance counts its own), pruned as
//! failures leave the window, and bounded in size.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Past this many keys, every key whose failures have all left the window
/// is forgotten at once.
const PRUNE_ABOVE_KEYS: usize = 100_000;

pub struct Tries {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl Tries {
    pub fn new(max: u32, window: std::time::Duration) -> Self {
        Tries {
            max: max.max(1) as usize,
            window: Duration::from_std(window).unwrap_or(Duration::MAX),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long until every one of `keys` may try again; `None` when all may
    /// now.
    pub fn wait(&self, keys: &[String], now: DateTime<Utc>) -> Option<std::time::Duration> {
        let mut failures = self.lock();
        keys.iter()
            .filter_map(|key| {
                let times = failures.get_mut(key)?;
                self.forget_old(times, now);
                (times.len() >= self.max).then(|| {
                    let oldest = times.front().copied().unwrap_or(now);
                    (oldest + self.window - now).to_std().unwrap_or_default()
                })
            })
            .max()
    }

    /// Counts a failure against each of `keys`.
    pub fn fail(&self, keys: &[String], now: DateTime<Utc>) {
        let mut failures = self.lock();
        if failures.len() > PRUNE_ABOVE_KEYS {
            let window = self.window;
            failures.retain(|_, times| times.back().is_some_and(|t| *t + window > now));
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            self.forget_old(times, now);
            times.push_back(now);
            // Only the last `max` matter for the answer.
            while times.len() > self.max {
                times.pop_front();
            }
        }
    }

    fn forget_old(&self, times: &mut VecDeque<DateTime<Utc>>, now: DateTime<Utc>) {
        while times.front().is_some_and(|t| *t + self.window <= now) {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<DateTime<Utc>>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_back_after_max_failures_until_the_window_passes() {
        let tries = Tries::new(3, std::time::Duration::from_secs(600));
        let t0 = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let at = |s: i64| t0 + Duration::seconds(s);
        let reference = ["ref:W26-AAAA-AAAA-A".to_string()];
        let both = [reference[0].clone(), "ip:10.0.0.1".to_string()];
        for s in 0..3 {
            assert_eq!(tries.wait(&both, at(s)), None, "try {s}");
            tries.fail(&both, at(s));
        }
        // Three failures: held back until the first leaves the window.
        assert_eq!(
            tries.wait(&both, at(10)),
            Some(std::time::Duration::from_secs(590))
        );
        // The same reference from another address: held back too.
        let elsewhere = [reference[0].clone(), "ip:10.0.0.2".to_string()];
        assert!(tries.wait(&elsewhere, at(10)).is_some());
        // Another reference from a fresh address: free.
        assert_eq!(
            tries.wait(&["ref:other".into(), "ip:10.0.0.3".into()], at(10)),
            None
        );
        // Once the first failure is 10 minutes old, one more try is allowed.
        assert_eq!(tries.wait(&both, at(600)), None);
        tries.fail(&both, at(600));
        assert_eq!(tries.wait(&both, at(601)), None, "the one at 1 s left too");
        tries.fail(&both, at(601));
        // Failures at 2, 600 and 601 s: free again when the one at 2 s leaves.
        assert_eq!(
            tries.wait(&both, at(601)),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(tries.wait(&both, at(602)), None);
    }
}
