//! What `bench produce` and `bench consume` agree on for a rolling-restart soak test:
//! message bodies `<run-id>-<seq>` (seq zero padded to 8 digits, 0..N-1), the run id
//! (the topic unless given), and the parts of their summary lines.
//!
//! The test they make together: `produce` publishes N numbered messages through one
//! address (a Kubernetes Service), re-sending whatever was not acknowledged whenever
//! its connection fails; `consume` reads the topic's channel from every broker
//! nsqlookupd lists, re-dialling brokers as they restart, and counts which numbers
//! arrived and how often. "Zero acknowledged messages lost" is `consume`'s
//! `missing=0` after `produce` reported `acked=N`; re-sends and redeliveries show up
//! as `duplicates=`.

use std::time::Duration;

use anyhow::{bail, Result};

/// The run id: `given`, else the topic (so both sides agree without a flag).
pub fn run_id(given: Option<&str>, topic: &str) -> Result<String> {
    let id = given.unwrap_or(topic);
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        bail!("the run id must be non-empty and without spaces, not {id:?}");
    }
    Ok(id.to_string())
}

/// Message `seq` of the run: `<run-id>-<seq>`.
pub fn body(run_id: &str, seq: u64) -> Vec<u8> {
    format!("{run_id}-{seq:08}").into_bytes()
}

/// The seq of a body of this run, or `None` for any other body.
pub fn seq_of(run_id: &str, body: &[u8]) -> Option<u64> {
    let digits = body.strip_prefix(run_id.as_bytes())?.strip_prefix(b"-")?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `elapsed_secs=` of the summary lines.
pub fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Doubling waits between connection attempts, from `min` up to `max`.
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt (each one twice the last, up to `max`).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A connection worked: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_others_are_foreign() {
        let b = body("run-7", 42);
        assert_eq!(b, b"run-7-00000042");
        assert_eq!(seq_of("run-7", &b), Some(42));
        assert_eq!(
            seq_of("run-7", &body("run-7", 123_456_789_012)),
            Some(123_456_789_012)
        );
        assert_eq!(seq_of("run-7", b"run-7-12"), Some(12), "unpadded is fine");
        for other in [
            &b"run-8-00000042"[..],
            b"run-7-",
            b"run-7",
            b"run-7-00x1",
            b"run-7-+1",
            b"run-7--1",
            b"xrun-7-1",
            b"run-7-99999999999999999999",
            b"",
        ] {
            assert_eq!(
                seq_of("run-7", other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // A run id that is a prefix of another's is not confused with it.
        assert_eq!(seq_of("run", b"run-7-00000042"), None);
    }

    #[test]
    fn run_ids_default_to_the_topic() {
        assert_eq!(run_id(None, "soak").unwrap(), "soak");
        assert_eq!(run_id(Some("r1"), "soak").unwrap(), "r1");
        assert!(run_id(Some(""), "soak").is_err());
        assert!(run_id(Some("a b"), "soak").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.next_wait(), ms(100));
    }
}
