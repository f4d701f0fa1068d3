//! NSQ's stderr log format on top of `tracing`.
//!
//! Every event becomes one line shaped like Go NSQ's `lg` output:
//! `[nsqd] 2026/11/21 10:00:00.123456 INFO: TCP: listening on 127.0.0.1:4150`.
//! Fields other than the message are appended as ` key=value`.
//!
//! The level is process-wide and can change at runtime ([`set_level`]), which is
//! what nsqd's `PUT /config/log_level` needs. tracing has no FATAL level, so a
//! fatal line is an ERROR event carrying a `fatal` field; [`fatal!`](crate::fatal)
//! writes one.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use time::{OffsetDateTime, UtcOffset};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[doc(hidden)]
pub use tracing as __tracing;

/// Name of the field that turns an ERROR event into a FATAL line.
pub const FATAL_FIELD: &str = "fatal";

/// NSQ's log levels; the numbers are the ones nsqd reports in `GET /config/log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum LogLevel {
    Debug = 1,
    #[default]
    Info = 2,
    Warn = 3,
    Error = 4,
    Fatal = 5,
}

impl LogLevel {
    /// The word NSQ prints in front of the message (note `WARNING`, not `WARN`).
    pub fn label(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }

    /// nsqd's integer for this level (its JSON encoding).
    pub fn as_i64(self) -> i64 {
        self as u8 as i64
    }

    fn from_u8(v: u8) -> LogLevel {
        match v {
            1 => LogLevel::Debug,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Fatal,
            _ => LogLevel::Info,
        }
    }

    /// The NSQ level an event or span at this callsite is printed at.
    fn of(meta: &Metadata<'_>) -> LogLevel {
        match *meta.level() {
            Level::ERROR if meta.fields().field(FATAL_FIELD).is_some() => LogLevel::Fatal,
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }

    fn as_filter(self) -> LevelFilter {
        match self {
            LogLevel::Debug => LevelFilter::TRACE,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A `--log-level` value that is none of debug, info, warn, error, fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level '{0}' (debug, info, warn, error, fatal)")]
pub struct ParseLogLevelError(pub String);

impl FromStr for LogLevel {
    type Err = ParseLogLevelError;

    /// Case-insensitive, like nsqd's `--log-level`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            "fatal" => Ok(LogLevel::Fatal),
            _ => Err(ParseLogLevelError(s.to_string())),
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// The level currently printed.
pub fn level() -> LogLevel {
    LogLevel::from_u8(LEVEL.load(Ordering::Relaxed))
}

/// Changes the printed level for the whole process, effective for the next event.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    // Callsites cache whether they are enabled; make them ask again.
    tracing::callsite::rebuild_interest_cache();
}

/// Installs the NSQ-format stderr logger as the global subscriber.
///
/// Call it before starting a multi-threaded runtime: the local UTC offset can only be
/// read safely while the process has one thread (otherwise times print in UTC).
/// A second call only changes the level; the first prefix stays.
pub fn init(prefix: &str, level: LogLevel) {
    set_level(level);
    let subscriber = tracing_subscriber::registry().with(layer(prefix));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The layer [`init`] installs, writing to stderr; use [`NsqLayer::with_writer`] to
/// send lines elsewhere (tests, files).
pub fn layer(prefix: &str) -> NsqLayer<fn() -> std::io::Stderr> {
    NsqLayer {
        prefix: prefix.to_string(),
        offset: UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC),
        writer: std::io::stderr,
    }
}

/// A `tracing_subscriber` layer printing NSQ-format lines at the process-wide level.
pub struct NsqLayer<W> {
    prefix: String,
    offset: UtcOffset,
    writer: W,
}

impl<W> NsqLayer<W> {
    pub fn with_writer<W2>(self, writer: W2) -> NsqLayer<W2>
    where
        W2: for<'a> MakeWriter<'a> + 'static,
    {
        NsqLayer {
            prefix: self.prefix,
            offset: self.offset,
            writer,
        }
    }
}

fn enabled_now(meta: &Metadata<'_>) -> bool {
    LogLevel::of(meta) >= level()
}

impl<S, W> Layer<S> for NsqLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if enabled_now(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        enabled_now(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(level().as_filter())
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !enabled_now(meta) {
            return;
        }
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let line = format_line(
            &self.prefix,
            now,
            LogLevel::of(meta),
            &fields.message,
            &fields.rest,
        );
        // One write per line so concurrent lines do not interleave.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// Builds one log line, newline included.
pub fn format_line(
    prefix: &str,
    at: OffsetDateTime,
    level: LogLevel,
    message: &str,
    extra: &str,
) -> String {
    let mut line = String::with_capacity(prefix.len() + 40 + message.len() + extra.len());
    let _ = write!(
        line,
        "{prefix}{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06} {}: {message}{extra}",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond(),
        level.label(),
    );
    if !line.ends_with('\n') {
        line.push('\n');
    }
    line
}

/// The message and the ` key=value` text of an event's other fields.
#[derive(Default)]
struct FieldText {
    message: String,
    rest: String,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            FATAL_FIELD => {}
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            FATAL_FIELD => {}
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

/// Logs at NSQ's FATAL level (an ERROR event with a `fatal` field). It does not exit.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)+) => {
        $crate::logging::__tracing::error!(fatal = true, $($arg)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    #[test]
    fn log_level_parses_case_insensitively_and_prints_like_nsq() {
        assert_eq!("DEBUG".parse::<LogLevel>(), Ok(LogLevel::Debug));
        assert_eq!("Warn".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert_eq!("fatal".parse::<LogLevel>(), Ok(LogLevel::Fatal));
        assert!("warning".parse::<LogLevel>().is_err());
        assert!("".parse::<LogLevel>().is_err());
        assert_eq!(LogLevel::Warn.to_string(), "WARNING");
        assert_eq!(LogLevel::Info.as_i64(), 2);
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }

    #[test]
    fn line_has_prefix_date_micros_and_level_word() {
        let at = time::macros::datetime!(2026-11-21 10:00:00.123456 UTC);
        let line = format_line(
            "[nsqd] ",
            at,
            LogLevel::Info,
            "TCP: listening on 127.0.0.1:4150",
            "",
        );
        assert_eq!(
            line,
            "[nsqd] 2026/11/21 10:00:00.123456 INFO: TCP: listening on 127.0.0.1:4150\n"
        );
        let at = time::macros::datetime!(2026-01-02 03:04:05.000007 UTC);
        assert_eq!(
            format_line("", at, LogLevel::Warn, "x", " k=v"),
            "2026/01/02 03:04:05.000007 WARNING: x k=v\n"
        );
    }

    // One test owns the process-wide level so parallel tests cannot race on it.
    #[test]
    fn events_are_filtered_by_the_runtime_level_and_formatted() {
        let buf = Buf::default();
        let subscriber =
            tracing_subscriber::registry().with(layer("[t] ").with_writer(buf.clone()));
        tracing::subscriber::with_default(subscriber, || {
            set_level(LogLevel::Info);
            tracing::debug!("hidden");
            tracing::info!(topic = "t1", n = 3, "TOPIC: created");
            let out = buf.take();
            assert!(out.starts_with("[t] "), "{out}");
            assert!(
                out.ends_with(" INFO: TOPIC: created topic=t1 n=3\n"),
                "{out}"
            );
            assert_eq!(out.lines().count(), 1);

            set_level(LogLevel::Debug);
            tracing::debug!("shown");
            tracing::trace!("trace prints as debug");
            let out = buf.take();
            assert!(out.contains(" DEBUG: shown\n"), "{out}");
            assert!(out.contains(" DEBUG: trace prints as debug\n"), "{out}");

            set_level(LogLevel::Fatal);
            tracing::error!("plain error is below fatal");
            crate::fatal!("going down: {}", 42);
            let out = buf.take();
            assert_eq!(out.lines().count(), 1, "{out}");
            assert!(out.ends_with(" FATAL: going down: 42\n"), "{out}");

            set_level(LogLevel::Warn);
            tracing::info!("quiet");
            tracing::warn!("loud");
            let out = buf.take();
            assert!(
                !out.contains("quiet") && out.contains(" WARNING: loud\n"),
                "{out}"
            );
            set_level(LogLevel::Info);
        });
    }
}
