//! Monotonic instants as plain integers, so deadlines fit in atomics.

use std::sync::OnceLock;
use std::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process's clock base (0 for instants before it).
pub fn nanos(t: Instant) -> i64 {
    t.saturating_duration_since(base()).as_nanos() as i64
}
