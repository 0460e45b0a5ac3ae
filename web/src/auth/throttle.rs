//! Slows down password guessing: after too many failures for one username within a window,
//! further attempts are refused until the window has passed. Kept in memory, per node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Failures allowed per username within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries kept at most, so a flood of random usernames cannot grow memory without bound.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
/// Failed logins per username.
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, SystemTime)>>,
}

impl LoginThrottle {
    /// How long `username` must wait before trying again, if it is blocked at `now`.
    pub fn blocked_for(&self, username: &str, now: SystemTime) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, first) = map.get(username)?;
        let until = *first + WINDOW;
        (*count >= MAX_FAILURES && now < until).then(|| until.duration_since(now).unwrap_or_default())
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, now: SystemTime) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, first)| now < *first + WINDOW);
        }
        let entry = map.entry(username.to_owned()).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// Forgets failures after a successful login.
    pub fn succeeded(&self, username: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let th = LoginThrottle::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(th.blocked_for("li", t0), None, "attempt {i}");
            th.failed("li", t0 + Duration::from_secs(i.into()));
        }
        assert!(th.blocked_for("li", t0 + Duration::from_secs(60)).is_some());
        assert_eq!(th.blocked_for("wang", t0), None, "other users are not affected");
        assert_eq!(th.blocked_for("li", t0 + WINDOW), None);
    }

    #[test]
    fn success_resets() {
        let t0 = UNIX_EPOCH;
        let th = LoginThrottle::default();
        for _ in 0..MAX_FAILURES - 1 {
            th.failed("li", t0);
        }
        th.succeeded("li");
        th.failed("li", t0);
        assert_eq!(th.blocked_for("li", t0), None);
    }
}
