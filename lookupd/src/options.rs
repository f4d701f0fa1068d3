//! nsqlookupd 1.3's options: its flags with their names and defaults, and the
//! `--config` TOML file (flag > config > default).

use std::path::PathBuf;
use std::time::Duration;

use nsq_common::flags::{self, FlagKind, FlagSet, ParsedFlags};
use nsq_common::logging::LogLevel;

/// nsqlookupd's configuration. Field names follow nsqlookupd's Go fields in snake_case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--version`: print `version_line("nsqlookupd")` and exit 0.
    pub version: bool,
    /// The `--config` file that was read, if any.
    pub config_path: Option<PathBuf>,

    pub log_level: LogLevel,
    pub log_prefix: String,
    /// Deprecated; accepted and ignored (command line only, as in nsqlookupd).
    pub verbose: bool,

    pub tcp_address: String,
    pub http_address: String,
    /// Returned to nsqd in the IDENTIFY answer; default: the hostname.
    pub broadcast_address: String,

    /// A producer not heard from (IDENTIFY or PING) for longer is left out of
    /// `/lookup` and `/nodes`.
    pub inactive_producer_timeout: Duration,
    /// How long `/topic/tombstone` hides a producer of a topic.
    pub tombstone_lifetime: Duration,
}

impl Default for Options {
    /// nsqlookupd's defaults, i.e. an empty command line.
    fn default() -> Self {
        Options::parse_from(Vec::<String>::new()).expect("nsqlookupd defaults parse")
    }
}

/// The OS hostname, nsqlookupd's default `--broadcast-address`.
pub fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

fn flag_set(host: &str) -> FlagSet {
    FlagSet::new("nsqlookupd")
        .about("nsqlookupd: tells NSQ consumers which nsqd nodes have a topic")
        .with_version()
        .with_config()
        .arg(
            flags::go_value_arg("log-level")
                .value_name("level")
                .value_parser(|s: &str| s.parse::<LogLevel>())
                .default_value("info")
                .help("Log verbosity: debug, info, warn, error or fatal"),
            FlagKind::Str,
        )
        .string("log-prefix", "[nsqlookupd] ", "Prefix of every log line")
        .cli_arg(
            flags::go_bool_arg("verbose")
                .default_value("false")
                .help("[deprecated] no effect; use --log-level"),
        )
        .string(
            "tcp-address",
            "0.0.0.0:4160",
            "<addr>:<port> to listen on for TCP clients (nsqd)",
        )
        .string(
            "http-address",
            "0.0.0.0:4161",
            "<addr>:<port> to listen on for HTTP clients",
        )
        .string(
            "broadcast-address",
            host,
            "Address of this lookupd node (default: the hostname)",
        )
        .duration(
            "inactive-producer-timeout",
            Duration::from_secs(300),
            "How long a producer stays in the active list after its last ping",
        )
        .duration(
            "tombstone-lifetime",
            Duration::from_secs(45),
            "How long a producer stays tombstoned if its registration remains",
        )
}

impl Options {
    /// Parses a command line as from `std::env::args()` (program name first), then the
    /// `--config` file. `Err` is a clap error: call `err.exit()` (status 2, 0 for help).
    pub fn parse_from<I: IntoIterator<Item = String>>(args: I) -> Result<Options, clap::Error> {
        let parsed = flag_set(&hostname()).parse(args)?;
        Ok(Options::from_parsed(&parsed))
    }

    /// The clap command behind [`Options::parse_from`] (for usage text and tests).
    pub fn command() -> clap::Command {
        flag_set(&hostname()).command().clone()
    }

    fn from_parsed(p: &ParsedFlags) -> Options {
        Options {
            version: p.get_bool("version"),
            config_path: p.config_path().map(PathBuf::from),
            log_level: p.get::<LogLevel>("log-level").unwrap_or_default(),
            log_prefix: p.get_string("log-prefix"),
            verbose: p.get_bool("verbose"),
            tcp_address: p.get_string("tcp-address"),
            http_address: p.get_string("http-address"),
            broadcast_address: p.get_string("broadcast-address"),
            inactive_producer_timeout: p.get_duration("inactive-producer-timeout"),
            tombstone_lifetime: p.get_duration("tombstone-lifetime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse_from(
            std::iter::once("nsqlookupd")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn defaults_match_nsqlookupd() {
        let o = Options::default();
        assert!(!o.version && !o.verbose);
        assert_eq!(o.config_path, None);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!(o.log_prefix, "[nsqlookupd] ");
        assert_eq!(o.tcp_address, "0.0.0.0:4160");
        assert_eq!(o.http_address, "0.0.0.0:4161");
        assert_eq!(o.broadcast_address, hostname());
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(45));
    }

    #[test]
    fn every_go_flag_spelling_sets_options() {
        let o = parse(&[
            "-tcp-address",
            "127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "-broadcast-address=lookupd-0.lookupd",
            "--inactive-producer-timeout",
            "1m30s",
            "-tombstone-lifetime=500ms",
            "--log-level",
            "DEBUG",
            "--log-prefix=",
            "-verbose",
        ])
        .unwrap();
        assert_eq!(o.tcp_address, "127.0.0.1:0");
        assert_eq!(o.http_address, "127.0.0.1:0");
        assert_eq!(o.broadcast_address, "lookupd-0.lookupd");
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(90));
        assert_eq!(o.tombstone_lifetime, Duration::from_millis(500));
        assert_eq!(o.log_level, LogLevel::Debug);
        assert_eq!(o.log_prefix, "");
        assert!(o.verbose);
    }

    #[test]
    fn config_file_is_below_flags_and_above_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqlookupd.cfg");
        std::fs::write(
            &path,
            "tcp_address = \"10.0.0.1:4160\"\nhttp_address = \"10.0.0.1:4161\"\n\
             tombstone_lifetime = \"1m\"\ninactive_producer_timeout = 2000\n\
             log_level = \"warn\"\nverbose = true\n",
        )
        .unwrap();
        let cfg = path.to_str().unwrap();
        let o = parse(&["--config", cfg, "--http-address=127.0.0.1:1"]).unwrap();
        assert_eq!(o.config_path.as_deref(), Some(path.as_path()));
        assert_eq!(o.tcp_address, "10.0.0.1:4160");
        assert_eq!(o.http_address, "127.0.0.1:1");
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(60));
        // Integers are milliseconds, as go-options reads them.
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(2));
        assert_eq!(o.log_level, LogLevel::Warn);
        // `verbose` is not an nsqlookupd option, so the config file cannot set it.
        assert!(!o.verbose);

        std::fs::write(&path, "tombstone_lifetime = true\n").unwrap();
        assert!(parse(&["--config", cfg]).is_err());
        assert!(parse(&["--config", "/nonexistent/nsqlookupd.cfg"]).is_err());
        assert!(
            parse(&["--config", "/nonexistent/nsqlookupd.cfg", "--version"])
                .unwrap()
                .version
        );
    }

    #[test]
    fn bad_flags_are_usage_errors_with_status_2() {
        for args in [
            &["--no-such-flag"][..],
            &["--tombstone-lifetime=45"],
            &["--log-level=loud"],
            &["--data-path=/tmp"],
            &["--tcp-address"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        assert_eq!(parse(&["-help"]).unwrap_err().exit_code(), 0);
        assert!(parse(&["-version"]).unwrap().version);
    }
}
