//! The circuit breaker in front of Redis: a few calls in a row that fail or take
//! longer than `redis_timeout_ms` open it, and while it is open no request touches
//! Redis at all (each goes on with the node's own cache, limits and the database).
//! A lost subscription opens it at once. Requests never probe: the tier's probe task pings Redis every
//! [`super::PROBE_INTERVAL`] while the breaker is open and closes it when Redis
//! answers, so a redirect never waits on a Redis that is known to be down.
//!
//! Rejected: half-open probing by live requests (the usual pattern). It would make an
//! unlucky redirect a second after every failure pay a full timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Failed calls in a row that open the breaker: one slow answer under a burst is not
/// an outage, three are (a stopped server fails three calls within microseconds).
pub const FAILURES_TO_OPEN: u32 = 3;

#[derive(Debug, Default)]
pub struct Breaker {
    /// Failed calls since the last success.
    failures: AtomicU32,
    open: AtomicBool,
    /// Times it opened since start (`hop_redis_breaker_opened_total`).
    opened: AtomicU64,
}

impl Breaker {
    /// Whether calls may go to Redis.
    pub fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Relaxed)
    }

    pub fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; true when this one opened the breaker.
    pub fn failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_TO_OPEN && !self.open.swap(true, Ordering::AcqRel) {
            self.opened.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Opens the breaker at once (the connection to Redis was lost); true if it was
    /// closed.
    pub fn trip(&self) -> bool {
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.opened.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Closes the breaker (the probe reached Redis); true if it was open.
    pub fn close(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.open.swap(false, Ordering::AcqRel)
    }

    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_closes_on_probe() {
        let breaker = Breaker::default();
        assert!(breaker.is_closed());
        assert!(!breaker.failed());
        breaker.succeeded();
        // A success in between starts the count again.
        for _ in 1..FAILURES_TO_OPEN {
            assert!(!breaker.failed());
        }
        assert!(breaker.is_closed());
        assert!(breaker.failed());
        assert!(!breaker.is_closed());
        // Further failures while open do not count as openings.
        assert!(!breaker.failed());
        assert_eq!(breaker.opened_total(), 1);
        assert!(breaker.close());
        assert!(breaker.is_closed());
        assert!(!breaker.close());
        // A lost connection opens it at once.
        assert!(breaker.trip());
        assert!(!breaker.trip());
        assert!(!breaker.is_closed());
        assert_eq!(breaker.opened_total(), 2);
    }
}
