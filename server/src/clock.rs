//! The server's clock. Every instant the server records or judges by (a job's creation, a
//! desk record, a token's expiry, a report's signing time) comes from the [`Clock`] in
//! `Node`, so a test can run a server at any date and move its time by hand: no test
//! depends on the wall clock (CI also runs the suite with the wall clock a year ahead).
//!
//! Monotonic timers (pings, backoff, idle eviction) are not instants of the domain and keep
//! using `tokio::time` / `std::time::Instant`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use fieldsync_shared::time::Timestamp;

/// The wall clock, or a manual clock that only moves when told to. Cheap to clone; clones of
/// a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's wall clock (the default).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock stopped at `start`; [`advance`](Self::advance) and [`set`](Self::set) move it.
    pub fn manual(start: Timestamp) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start.as_millis()))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(ms) => Timestamp::from_millis(ms.load(Ordering::Relaxed)),
            None => system_now(),
        }
    }

    /// Moves a manual clock forward by `ms`. Returns false (and does nothing) on the wall
    /// clock, which nobody moves.
    pub fn advance(&self, ms: i64) -> bool {
        match &self.manual {
            Some(now) => {
                now.fetch_add(ms, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Sets a manual clock to `at`. Returns false (and does nothing) on the wall clock.
    pub fn set(&self, at: Timestamp) -> bool {
        match &self.manual {
            Some(now) => {
                now.store(at.as_millis(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// The wall clock, for the command line tools (which run once, now) and [`Clock::system`].
pub fn system_now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_it() {
        let clock = Clock::manual(Timestamp::from_millis(1_000));
        let clone = clock.clone();
        assert_eq!(clone.now(), Timestamp::from_millis(1_000));
        assert!(clock.advance(500));
        assert_eq!(clone.now(), Timestamp::from_millis(1_500));
        assert!(clone.set(Timestamp::from_millis(42)));
        assert_eq!(clock.now(), Timestamp::from_millis(42));
        assert!(!Clock::system().advance(1));
    }
}
