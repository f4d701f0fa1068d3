//! Per-connection counters, the optional `--progress` printer and the `--flight-recorder`:
//! a bounded window of the most recent throughput samples and events (connects, error
//! frames, failures), written to a file when the run ends, however it ends.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::gotime::format_duration;
use crate::report::log_line;

/// Events kept by the flight recorder; older ones are dropped first.
const MAX_EVENTS: usize = 1000;

/// Counts owned by one connection's task and read by the sampler and the final report.
/// The owner publishes once per read batch, so relaxed atomics cost nothing per message.
#[derive(Default)]
pub struct Counters {
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    /// Error frames the broker sent that did not end the connection (e.g. `E_FIN_FAILED`).
    pub error_frames: AtomicU64,
}

impl Counters {
    pub fn add(&self, msgs: u64, bytes: u64) {
        self.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error_frame(&self) -> u64 {
        self.error_frames.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn msgs(&self) -> u64 {
        self.msgs.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Shared by every task of one run: the counters of each connection and the event log.
pub struct Run {
    /// `bench_writer` or `bench_reader`, the Go tools' log prefix.
    pub kind: &'static str,
    pub counters: Vec<Arc<Counters>>,
    epoch: Instant,
    events: Mutex<VecDeque<(Duration, String)>>,
}

impl Run {
    pub fn new(kind: &'static str, connections: usize) -> Arc<Self> {
        Arc::new(Run {
            kind,
            counters: (0..connections).map(|_| Arc::default()).collect(),
            epoch: Instant::now(),
            events: Mutex::new(VecDeque::new()),
        })
    }

    /// Records an event for the flight recorder (cheap; not for per-message use).
    pub fn event(&self, what: impl Into<String>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back((self.epoch.elapsed(), what.into()));
    }

    /// Records an event and logs it to stderr.
    pub fn warn(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("{}", log_line(self.kind, &what));
        self.event(what);
    }

    pub fn total_msgs(&self) -> u64 {
        self.counters.iter().map(|c| c.msgs()).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.counters.iter().map(|c| c.bytes()).sum()
    }

    pub fn total_error_frames(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.error_frames.load(Ordering::Relaxed))
            .sum()
    }

    /// The smallest and largest per-connection message counts (fairness at a glance).
    pub fn conn_spread(&self) -> (u64, u64) {
        let counts = self.counters.iter().map(|c| c.msgs());
        (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0))
    }
}

/// One sample: time since the run's epoch and the cumulative count of each connection.
pub struct Sample {
    pub at: Duration,
    pub per_conn: Vec<u64>,
}

/// Samples the counters every `interval` and once more when `stop` turns true, printing a
/// progress line per interval when asked and keeping the last `window` samples.
pub async fn sample(
    run: Arc<Run>,
    interval: Duration,
    window: usize,
    progress: bool,
    mut stop: watch::Receiver<bool>,
) -> VecDeque<Sample> {
    let mut samples: VecDeque<Sample> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Duration, u64)> = None;
    loop {
        // The last sample is taken at the stop signal, when every connection is done.
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let at = run.epoch.elapsed();
        let per_conn: Vec<u64> = run.counters.iter().map(|c| c.msgs()).collect();
        let total: u64 = per_conn.iter().sum();
        if let (true, false, Some((prev_at, prev_total))) = (progress, stopping, last) {
            let secs = (at - prev_at).as_secs_f64();
            let rate = (total - prev_total) as f64 / secs;
            eprintln!(
                "{}",
                log_line(
                    run.kind,
                    &format!("progress: {rate:.0} msgs/s, {total} msgs total")
                )
            );
        }
        last = Some((at, total));
        if window > 0 {
            if samples.len() == window {
                samples.pop_front();
            }
            samples.push_back(Sample { at, per_conn });
        }
        if stopping {
            return samples;
        }
    }
}

/// The flight recorder's file: `#` comment lines (settings and events), then CSV samples
/// `elapsed_s,total_msgs,interval_msgs,msgs_per_sec,conn_0,...`.
pub fn render_flight_recording(run: &Run, header: &str, samples: &VecDeque<Sample>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# nsq-bench flight recorder ({})", run.kind);
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let events = run.events.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(
        out,
        "# events (last {MAX_EVENTS} kept), time since process start:"
    );
    for (at, what) in events.iter() {
        let _ = writeln!(out, "# +{} {what}", format_duration(*at));
    }
    let _ = write!(out, "elapsed_s,total_msgs,interval_msgs,msgs_per_sec");
    for i in 0..run.counters.len() {
        let _ = write!(out, ",conn_{i}");
    }
    out.push('\n');
    let mut prev: Option<(Duration, u64)> = None;
    for s in samples {
        let total: u64 = s.per_conn.iter().sum();
        let (delta, rate) = match prev {
            Some((at, t)) => {
                let d = total.saturating_sub(t);
                (d, d as f64 / (s.at - at).as_secs_f64().max(1e-9))
            }
            None => (0, 0.0),
        };
        let _ = write!(out, "{:.3},{total},{delta},{rate:.1}", s.at.as_secs_f64());
        for c in &s.per_conn {
            let _ = write!(out, ",{c}");
        }
        out.push('\n');
        prev = Some((s.at, total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_recording_lists_events_and_interval_rates() {
        let run = Run::new("bench_writer", 2);
        run.event("conn 0 connected");
        let samples = VecDeque::from([
            Sample {
                at: Duration::from_secs(1),
                per_conn: vec![10, 20],
            },
            Sample {
                at: Duration::from_secs(2),
                per_conn: vec![110, 120],
            },
        ]);
        let text = render_flight_recording(&run, "connections: 2", &samples);
        assert!(text.contains("# connections: 2\n"));
        assert!(text.contains(" conn 0 connected\n"));
        assert!(text.contains("elapsed_s,total_msgs,interval_msgs,msgs_per_sec,conn_0,conn_1\n"));
        assert!(text.contains("1.000,30,0,0.0,10,20\n"));
        assert!(text.ends_with("2.000,230,200,200.0,110,120\n"));
    }
}
