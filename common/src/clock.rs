//! The wall clock, passed around instead of read directly, so tests can move time by hand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The system clock, or a manual one in tests.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<SystemTime>>>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that stands at `at` until [`Clock::advance`] moves it.
    pub fn manual(at: SystemTime) -> Self {
        Clock { manual: Some(Arc::new(Mutex::new(at))) }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            // A poisoned lock only means another test thread panicked; its time is still valid.
            Some(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
            None => SystemTime::now(),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
    }
}
