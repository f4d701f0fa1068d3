//! The broker's health as `/ping`, `/stats` and `nsq_healthy` report it: the
//! last disk error, until a later write to disk succeeds (nsqd's `SetHealth`
//! after every backend write).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    /// Checked on every successful write before taking the lock.
    failing: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Health {
    /// `None` when healthy, else the error `/ping` reports after `NOK - `.
    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    pub fn set(&self, err: Option<String>) {
        let mut e = self.error.lock();
        self.failing.store(err.is_some(), Ordering::Release);
        *e = err;
    }

    pub fn failed(&self, err: impl Into<String>) {
        self.set(Some(err.into()));
    }

    /// A write to disk succeeded.
    pub fn succeeded(&self) {
        if self.failing.load(Ordering::Acquire) {
            self.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_lasts_until_the_next_success() {
        let h = Health::default();
        h.succeeded();
        assert_eq!(h.error(), None);
        h.failed("no space left on device");
        assert_eq!(h.error().as_deref(), Some("no space left on device"));
        h.succeeded();
        assert_eq!(h.error(), None);
    }
}
