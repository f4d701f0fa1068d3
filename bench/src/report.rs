//! What a run prints. On stderr, Go `log` style lines, including the Go tools' summary
//! `[bench_writer] 2006/01/02 15:04:05 duration: 10.0012s - 38.147mb/s - 200000.000ops/s -
//! 5.000us/op` (the shape `bench.py` parses). On stdout, one `key=value` line per run for
//! scripts: `writer: msgs=N msgs/sec=X MiB/s=Y ...`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gotime::{format_duration, log_timestamp_now};

/// `[kind] 2006/01/02 15:04:05 message`, like Go's `log` with a prefix.
pub fn log_line(kind: &str, msg: &str) -> String {
    format!("[{kind}] {} {msg}", log_timestamp_now())
}

/// The last failure of each source (a lookupd, a broker), logged on stderr only when
/// it differs from the one before there, so a source that keeps failing the same way
/// does not flood the log.
pub struct Failures {
    kind: &'static str,
    last: BTreeMap<String, String>,
}

impl Failures {
    pub fn new(kind: &'static str) -> Failures {
        Failures {
            kind,
            last: BTreeMap::new(),
        }
    }

    /// Remembers `e` as `source`'s failure, logging it when it is news.
    pub fn fail(&mut self, source: &str, e: &anyhow::Error) {
        let text = format!("{e:#}");
        if self.last.get(source) != Some(&text) {
            eprintln!("{}", log_line(self.kind, &format!("{source}: {text}")));
        }
        self.last.insert(source.to_string(), text);
    }

    /// `source` works again.
    pub fn clear(&mut self, source: &str) {
        self.last.remove(source);
    }

    /// `(source, last failure)` pairs, by source.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.last.iter()
    }
}

/// Go's `%.03f`, including its spelling of infinities and NaN.
fn go_f3(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{x:.3}")
    }
}

/// The Go tools' summary: MB/s counts `size` bytes per message, and us/op divides whole
/// microseconds by the message count, exactly as they compute it.
pub fn go_summary(duration: Duration, msgs: u64, size: usize) -> String {
    let secs = duration.as_secs_f64();
    let mb = (msgs as f64) * (size as f64) / secs / 1024.0 / 1024.0;
    let ops = msgs as f64 / secs;
    let us_per_op = duration.as_micros() as f64 / msgs as f64;
    format!(
        "duration: {} - {}mb/s - {}ops/s - {}us/op",
        format_duration(duration),
        go_f3(mb),
        go_f3(ops),
        go_f3(us_per_op)
    )
}

/// The parseable stdout line: `<role>: msgs=N msgs/sec=X MiB/s=Y duration_secs=D` followed
/// by `extra` pairs. `bytes` is the payload byte count the MiB/s figure is computed from.
pub fn parseable(
    role: &str,
    duration: Duration,
    msgs: u64,
    bytes: u64,
    extra: &[(&str, String)],
) -> String {
    let secs = duration.as_secs_f64().max(1e-9);
    let mut line = format!(
        "{role}: msgs={msgs} msgs/sec={:.1} MiB/s={:.3} duration_secs={:.6}",
        msgs as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0),
        duration.as_secs_f64()
    );
    for (k, v) in extra {
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_the_go_tools_arithmetic() {
        let s = go_summary(Duration::from_millis(10_000), 2_000_000, 200);
        assert_eq!(
            s,
            "duration: 10s - 38.147mb/s - 200000.000ops/s - 5.000us/op"
        );
        let none = go_summary(Duration::from_secs(1), 0, 200);
        assert_eq!(none, "duration: 1s - 0.000mb/s - 0.000ops/s - +Infus/op");
    }

    #[test]
    fn parseable_line_is_key_value() {
        let line = parseable(
            "writer",
            Duration::from_secs(2),
            1000,
            200_000,
            &[("conns", "2".into())],
        );
        assert_eq!(
            line,
            "writer: msgs=1000 msgs/sec=500.0 MiB/s=0.095 duration_secs=2.000000 conns=2"
        );
    }

    #[test]
    fn log_lines_carry_the_go_prefix() {
        let l = log_line("bench_reader", "hi");
        assert!(l.starts_with("[bench_reader] "));
        assert!(l.ends_with(" hi"));
        assert_eq!(l.len(), "[bench_reader] 2006/01/02 15:04:05 hi".len());
    }
}
