//! End-to-end processing latency: the time from PUB to FIN. Like nsqd, it is
//! measured when a FIN succeeds, as now − the message's publish timestamp, so a
//! deferred or requeued message counts its whole stay.
//!
//! Two views, both fed by [`crate::channel::Channel::finish_many`] under the
//! channel lock the FIN already holds (no extra lock per message):
//!
//! - [`Histogram`]: a cumulative Prometheus histogram over [`BUCKETS`], per
//!   channel (under the channel lock) and per topic ([`AtomicHistogram`], added
//!   to once per FIN batch). Always on; `/metrics` exports both.
//! - [`Window`]: nsqd's `--e2e-processing-latency-percentile` quantiles over the
//!   last `--e2e-processing-latency-window-time`. As in nsqd's quantile package,
//!   the window is two halves; every half window the older half is dropped, so
//!   a result covers between half and all of the window. Each half is a
//!   log-linear histogram ([`LogHistogram`]) with 32 sub-buckets per power of
//!   two: a quantile is within ~1.6% of the true sample value, and the lowest
//!   and highest quantiles are exact. A topic's quantiles merge its channels'
//!   windows, as nsqd's `AggregateChannelE2eProcessingLatency` does.
//!
//! Whether windows are kept, and their length, is process-wide ([`configure`],
//! called once by [`crate::server::run`] from the options): the channels that
//! record latencies do not see the options.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the Prometheus histogram buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
];

/// [`BUCKETS`] in nanoseconds, for the hot path.
const BUCKET_NANOS: [u64; 14] = [
    1_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
];

/// One more than [`BUCKETS`]: the last slot is `+Inf`.
pub const SLOTS: usize = BUCKETS.len() + 1;

/// Window length in nanoseconds; 0 when no percentiles are tracked.
static WINDOW_NANOS: AtomicU64 = AtomicU64::new(0);

/// Sets, for the whole process, whether channels keep quantile windows
/// (`percentiles` non-empty) and how long they are.
pub fn configure(window: Duration, percentiles: &[f64]) {
    let nanos = if percentiles.is_empty() {
        0
    } else {
        u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(2)
    };
    WINDOW_NANOS.store(nanos, Ordering::Relaxed);
}

/// The quantile window length, when percentiles are tracked.
pub fn window() -> Option<u64> {
    match WINDOW_NANOS.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Latency of a message published at `timestamp` and finished at `now` (both
/// Unix nanoseconds); a timestamp in the future (clock skew) counts as 0.
pub fn latency(now: i64, timestamp: i64) -> u64 {
    u64::try_from(now.saturating_sub(timestamp)).unwrap_or(0)
}

/// Non-cumulative bucket counts and the sum of observed latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; SLOTS],
    pub sum_nanos: u64,
}

impl Histogram {
    pub fn observe(&mut self, nanos: u64) {
        let i = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_nanos = self.sum_nanos.wrapping_add(nanos);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_nanos = self.sum_nanos.wrapping_add(other.sum_nanos);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }
}

/// A [`Histogram`] several channels add to without a shared lock (a topic's).
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    counts: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    /// Adds a batch; buckets it left at zero are not touched.
    pub fn add(&self, batch: &Histogram) {
        for (a, &b) in self.counts.iter().zip(&batch.counts) {
            if b != 0 {
                a.fetch_add(b, Ordering::Relaxed);
            }
        }
        if batch.sum_nanos != 0 {
            self.sum_nanos.fetch_add(batch.sum_nanos, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Histogram {
        let mut h = Histogram::default();
        for (out, a) in h.counts.iter_mut().zip(&self.counts) {
            *out = a.load(Ordering::Relaxed);
        }
        h.sum_nanos = self.sum_nanos.load(Ordering::Relaxed);
        h
    }
}

/// Sub-buckets per power of two (2^5 = 32).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies of 2^42 ns (~73 minutes) and more share the last bucket (their
/// exact maximum is still kept).
const MAX_BITS: u32 = 42;
const LOG_BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize) * SUB as usize;

fn log_index(v: u64) -> usize {
    let v = v.min((1 << MAX_BITS) - 1);
    if v < SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    ((u64::from(shift) + 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The smallest value in bucket `i`.
fn log_lower(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    (SUB + i % SUB) << shift
}

/// A log-linear histogram of nanosecond values with the exact minimum and maximum.
#[derive(Clone)]
pub struct LogHistogram {
    counts: Box<[u32]>,
    total: u64,
    min: u64,
    max: u64,
    /// The lowest and highest bucket ever used since the last clear.
    lo: usize,
    hi: usize,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            counts: vec![0; LOG_BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            lo: LOG_BUCKETS,
            hi: 0,
        }
    }
}

impl std::fmt::Debug for LogHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHistogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

impl LogHistogram {
    pub fn insert(&mut self, v: u64) {
        let i = log_index(v);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.lo = self.lo.min(i);
        self.hi = self.hi.max(i);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn clear(&mut self) {
        if self.lo <= self.hi {
            self.counts[self.lo..=self.hi].fill(0);
        }
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
        self.lo = LOG_BUCKETS;
        self.hi = 0;
    }

    pub fn add(&mut self, other: &LogHistogram) {
        if other.total == 0 {
            return;
        }
        for (a, &b) in self.counts[other.lo..=other.hi]
            .iter_mut()
            .zip(&other.counts[other.lo..=other.hi])
        {
            *a = a.saturating_add(b);
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.lo = self.lo.min(other.lo);
        self.hi = self.hi.max(other.hi);
    }

    /// The value at quantile `q` (0 when empty): the sample of rank
    /// ⌈q·n⌉, estimated as its bucket's midpoint and kept within [min, max].
    pub fn query(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        if rank == 1 {
            return self.min;
        }
        let mut seen = 0u64;
        for i in self.lo..=self.hi {
            seen += u64::from(self.counts[i]);
            if seen >= rank {
                let (lower, upper) = (log_lower(i), log_lower(i + 1));
                let mid = lower + (upper - lower - 1) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// nsqd's quantile `Result`: the sample count and one value per percentile.
    pub fn quantiles(&self, percentiles: &[f64]) -> Quantiles {
        Quantiles {
            count: self.total,
            values: percentiles
                .iter()
                .map(|&q| (q, self.query(q) as f64))
                .collect(),
        }
    }
}

/// The quantiles over a window: how many samples, and `(quantile, nanoseconds)`
/// in the order the percentiles were given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quantiles {
    pub count: u64,
    pub values: Vec<(f64, f64)>,
}

/// One channel's sliding window: two halves, the current one taking inserts.
#[derive(Debug)]
pub struct Window {
    /// Half the window, in nanoseconds.
    half: i64,
    /// When the halves last swapped (Unix nanoseconds).
    last_move: i64,
    current: usize,
    halves: [LogHistogram; 2],
}

impl Window {
    pub fn new(window_nanos: u64, now: i64) -> Window {
        Window {
            half: i64::try_from(window_nanos / 2).unwrap_or(i64::MAX).max(1),
            last_move: now,
            current: 0,
            halves: [LogHistogram::default(), LogHistogram::default()],
        }
    }

    /// Drops what is older than the window: for each half window elapsed since
    /// the last move, the older half is cleared and becomes the current one.
    fn advance(&mut self, now: i64) {
        let elapsed = now.saturating_sub(self.last_move);
        if elapsed <= self.half {
            return;
        }
        let moves = (elapsed - 1) / self.half;
        self.last_move = self
            .last_move
            .saturating_add(moves.saturating_mul(self.half));
        for _ in 0..moves.min(2) {
            self.current ^= 1;
            self.halves[self.current].clear();
        }
    }

    pub fn insert(&mut self, now: i64, latency: u64) {
        self.advance(now);
        self.halves[self.current].insert(latency);
    }

    /// Adds both halves (after dropping stale data) to `into`.
    pub fn merge_into(&mut self, now: i64, into: &mut LogHistogram) {
        self.advance(now);
        into.add(&self.halves[0]);
        into.add(&self.halves[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::default();
        h.observe(0);
        h.observe(1_000_000);
        h.observe(1_000_001);
        h.observe(u64::MAX / 4);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[SLOTS - 1], 1);
        assert_eq!(h.count(), 4);
        let shared = AtomicHistogram::default();
        shared.add(&h);
        shared.add(&h);
        let mut twice = h;
        twice.merge(&h);
        assert_eq!(shared.snapshot(), twice);
    }

    #[test]
    fn bucket_constants_agree() {
        for (s, n) in BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }

    #[test]
    fn log_buckets_cover_values_in_order_within_three_percent() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let i = log_index(v);
            assert!(i >= last, "{v}");
            last = i;
        }
        let powers = (1..42).map(|s| 1u64 << s).flat_map(|p| [p - 1, p, p + 1]);
        for v in (0..100_000u64).chain(powers) {
            let i = log_index(v);
            assert!(log_lower(i) <= v && v < log_lower(i + 1), "{v} in {i}");
            if v >= SUB {
                let width = log_lower(i + 1) - log_lower(i);
                assert!(width as f64 / v as f64 <= 1.0 / 32.0 + 1e-9, "{v}");
            }
        }
        assert_eq!(log_index(u64::MAX), LOG_BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_close_and_the_extremes_exact() {
        let mut h = LogHistogram::default();
        for v in 1..=1000u64 {
            h.insert(v * 1_000_000);
        }
        let q = h.quantiles(&[1.0, 0.99, 0.5, 0.001]);
        assert_eq!(q.count, 1000);
        assert_eq!(q.values[0], (1.0, 1_000_000_000.0));
        assert_eq!(q.values[3], (0.001, 1_000_000.0));
        for &(quantile, value) in &q.values[1..3] {
            let want = quantile * 1_000_000_000.0;
            assert!((value - want).abs() / want < 0.02, "{quantile}: {value}");
        }
        let mut one = LogHistogram::default();
        one.insert(123_456_789);
        assert_eq!(one.query(0.5), 123_456_789);
        assert_eq!(
            LogHistogram::default().quantiles(&[0.5]).values,
            [(0.5, 0.0)]
        );
    }

    #[test]
    fn clear_and_add_keep_only_what_is_added() {
        let mut a = LogHistogram::default();
        a.insert(5);
        a.insert(5_000_000);
        let mut b = LogHistogram::default();
        b.insert(7);
        b.add(&a);
        assert_eq!((b.count(), b.query(0.0), b.query(1.0)), (3, 5, 5_000_000));
        b.clear();
        assert_eq!(b.count(), 0);
        assert!(b.counts.iter().all(|&c| c == 0));
        b.insert(9);
        assert_eq!((b.query(0.0), b.query(1.0)), (9, 9));
    }

    #[test]
    fn window_keeps_between_half_and_all_of_its_length() {
        const S: i64 = 1_000_000_000;
        let mut w = Window::new(10 * S as u64, 0);
        w.insert(S, 100);
        w.insert(6 * S, 200);
        let count = |w: &mut Window, now| {
            let mut h = LogHistogram::default();
            w.merge_into(now, &mut h);
            h.count()
        };
        assert_eq!(count(&mut w, 6 * S), 2);
        // At 11 s the half holding the 1 s sample is dropped.
        assert_eq!(count(&mut w, 11 * S), 1);
        assert_eq!(count(&mut w, 16 * S), 0);
        // A long silence clears both halves at once.
        w.insert(17 * S, 1);
        assert_eq!(count(&mut w, 1_000 * S), 0);
        w.insert(1_001 * S, 1);
        assert_eq!(count(&mut w, 1_001 * S), 1);
    }
}
