//! The one clock every part of Gatehouse reads: the server, the operator, standalone and the
//! in-memory store. Time is unix seconds, the unit of every expiry Gatehouse keeps. Passed in
//! rather than read from the system wherever a rule depends on it, so tests set the time
//! instead of sleeping through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> u64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The system clock, shared.
#[must_use]
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until moved: for tests of expiry, `max_age`, polling intervals.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `now`.
    #[must_use]
    pub fn at(now: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicU64::new(now),
        })
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: u64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(100);
        assert_eq!(clock.now(), 100);
        clock.advance(5);
        assert_eq!(clock.now(), 105);
        clock.set(7);
        assert_eq!(clock.now(), 7);
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
