//! nsqd 1.3's options: every flag with nsqd's name, default and meaning, the
//! `--config` TOML file (flag > config > default), start-up validation, and the
//! `GET /config/:opt` view.

use std::path::PathBuf;
use std::time::Duration;

use nsq_common::flags::{self, FlagKind, FlagSet, ParsedFlags};
use nsq_common::logging::LogLevel;
use serde_json::Value;

/// `--tls-min-version` names and Go's `tls.Version*` numbers.
const TLS_VERSIONS: [(&str, u16); 5] = [
    ("ssl3.0", 0x0300),
    ("tls1.0", 0x0301),
    ("tls1.1", 0x0302),
    ("tls1.2", 0x0303),
    ("tls1.3", 0x0304),
];

/// nsqd's configuration. Field names follow nsqd's Go fields in snake_case.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--version`: print `version_line("nsqd")` and exit 0.
    pub version: bool,
    /// The `--config` file that was read, if any.
    pub config_path: Option<PathBuf>,

    pub log_level: LogLevel,
    pub log_prefix: String,
    /// Deprecated; accepted and ignored.
    pub verbose: bool,

    /// Message-ID node part, [0,1024); nsqd's `ID` (config key `id`).
    pub node_id: i64,
    pub tcp_address: String,
    pub http_address: String,
    pub https_address: String,
    pub broadcast_address: String,
    /// 0 means the port actually listened on.
    pub broadcast_tcp_port: u16,
    pub broadcast_http_port: u16,
    pub lookupd_tcp_addresses: Vec<String>,
    pub auth_http_addresses: Vec<String>,
    /// `get` or `post`.
    pub auth_http_request_method: String,
    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    pub topology_region: String,
    pub topology_zone: String,
    /// `--enable-experiment` names (e.g. `topology-aware-consumption`).
    pub experiments: Vec<String>,

    /// Empty means the working directory, as in nsqd.
    pub data_path: PathBuf,
    pub mem_queue_size: i64,
    /// Beyond nsqd: bytes kept in memory per topic/channel (0: no bound).
    pub max_mem_queue_bytes: i64,
    pub max_bytes_per_file: i64,
    pub sync_every: i64,
    pub sync_timeout: Duration,

    // In-flight/deferred scanning; only the two counts are flags.
    pub queue_scan_interval: Duration,
    pub queue_scan_refresh_interval: Duration,
    pub queue_scan_selection_count: i64,
    pub queue_scan_worker_pool_max: i64,
    pub queue_scan_dirty_percent: f64,

    pub msg_timeout: Duration,
    pub max_msg_timeout: Duration,
    pub max_msg_size: i64,
    pub max_body_size: i64,
    pub max_req_timeout: Duration,
    /// Default client heartbeat timeout (no flag in nsqd).
    pub client_timeout: Duration,

    pub max_heartbeat_interval: Duration,
    pub max_rdy_count: i64,
    pub max_output_buffer_size: i64,
    pub max_output_buffer_timeout: Duration,
    pub min_output_buffer_timeout: Duration,
    pub output_buffer_timeout: Duration,
    /// 0 means unlimited.
    pub max_channel_consumers: i64,

    pub statsd_address: String,
    /// `%s` is replaced by the host key.
    pub statsd_prefix: String,
    pub statsd_interval: Duration,
    pub statsd_mem_stats: bool,
    pub statsd_udp_packet_size: i64,
    pub statsd_exclude_ephemeral: bool,

    pub e2e_processing_latency_window_time: Duration,
    /// Each in (0, 1]; sorted high to low when given on the command line.
    pub e2e_processing_latency_percentiles: Vec<f64>,

    pub tls_cert: String,
    pub tls_key: String,
    pub tls_client_auth_policy: String,
    pub tls_root_ca_file: String,
    /// `true`, or `tcp-https` (TLS for TCP and HTTPS but not plain HTTP), was given.
    pub tls_required: bool,
    /// `tcp-https` was given: plain HTTP stays allowed. Implies `tls_required`.
    pub tls_required_except_http: bool,
    /// Go's `tls.Version*` number; default TLS 1.0 (769).
    pub tls_min_version: u16,

    pub deflate_enabled: bool,
    pub max_deflate_level: i64,
    pub snappy_enabled: bool,
}

impl Default for Options {
    /// nsqd's defaults, i.e. an empty command line.
    fn default() -> Self {
        Options::parse_from(Vec::<String>::new()).expect("nsqd defaults parse")
    }
}

/// nsqd's default node ID: CRC-32 (IEEE) of the MD5 of the hostname, mod 1024.
pub fn default_node_id(hostname: &str) -> i64 {
    let digest = md5::compute(hostname.as_bytes());
    i64::from(crc32fast::hash(&digest.0) % 1024)
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

fn parse_tls_required(s: &str) -> Result<(bool, bool), String> {
    let s = s.to_ascii_lowercase();
    if s == "tcp-https" {
        return Ok((true, true));
    }
    flags::parse_bool(&s).map(|required| (required, false))
}

fn parse_tls_min_version(s: &str) -> Result<u16, String> {
    let lower = s.to_ascii_lowercase();
    if lower.is_empty() {
        return Ok(0x0301);
    }
    TLS_VERSIONS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            format!("unknown TLS version \"{s}\" (ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3)")
        })
}

fn parse_port(s: &str) -> Result<u16, String> {
    let n = flags::parse_int(s)?;
    u16::try_from(n).map_err(|_| format!("invalid port \"{s}\""))
}

fn flag_set(host: &str) -> FlagSet {
    let secs = Duration::from_secs;
    let millis = Duration::from_millis;
    FlagSet::new("nsqd")
        .about("nsqd: receives, queues and delivers NSQ messages")
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
        .string("log-prefix", "[nsqd] ", "Prefix of every log line")
        .bool("verbose", false, "[deprecated] no effect; use --log-level")
        .int(
            "node-id",
            default_node_id(host),
            "Node part of message IDs, in [0,1024) (default: hash of the hostname)",
        )
        .cfg("node-id", "id")
        .cli_arg(
            flags::go_bool_arg("worker-id")
                .default_value("false")
                .help("[deprecated] no effect; use --node-id"),
        )
        .string(
            "https-address",
            "0.0.0.0:4152",
            "<addr>:<port> for HTTPS clients",
        )
        .string(
            "http-address",
            "0.0.0.0:4151",
            "<addr>:<port> for HTTP clients",
        )
        .string(
            "tcp-address",
            "0.0.0.0:4150",
            "<addr>:<port> for TCP clients",
        )
        .string_list(
            "auth-http-address",
            "<addr>:<port> of an auth server (repeatable)",
        )
        .cfg("auth-http-address", "auth_http_addresses")
        .string(
            "auth-http-request-method",
            "get",
            "HTTP method for auth server requests: get or post",
        )
        .string(
            "broadcast-address",
            host,
            "Address registered with nsqlookupd (default: the hostname)",
        )
        .arg(
            flags::go_value_arg("broadcast-tcp-port")
                .value_name("int")
                .value_parser(parse_port)
                .default_value("0")
                .help("TCP port registered with nsqlookupd (default: the listening TCP port)"),
            FlagKind::Int,
        )
        .arg(
            flags::go_value_arg("broadcast-http-port")
                .value_name("int")
                .value_parser(parse_port)
                .default_value("0")
                .help("HTTP port registered with nsqlookupd (default: the listening HTTP port)"),
            FlagKind::Int,
        )
        .string_list("lookupd-tcp-address", "nsqlookupd TCP address (repeatable)")
        .cfg("lookupd-tcp-address", "nsqlookupd_tcp_addresses")
        .duration(
            "http-client-connect-timeout",
            secs(2),
            "Connect timeout of outgoing HTTP requests",
        )
        .duration(
            "http-client-request-timeout",
            secs(5),
            "Total timeout of outgoing HTTP requests",
        )
        .string(
            "topology-region",
            "",
            "Region of this nsqd, to prefer consumers in the same region",
        )
        .string(
            "topology-zone",
            "",
            "Zone of this nsqd, to prefer consumers in the same zone",
        )
        .string_list(
            "enable-experiment",
            "Experimental feature to enable (repeatable): topology-aware-consumption",
        )
        // diskqueue
        .string("data-path", "", "Directory for disk-backed messages")
        .int(
            "mem-queue-size",
            10_000,
            "Messages kept in memory per topic/channel",
        )
        .int(
            "max-mem-queue-bytes",
            0,
            "Bytes of messages kept in memory per topic/channel before the rest goes to disk \
             (0: no limit beyond --mem-queue-size)",
        )
        .int(
            "max-bytes-per-file",
            100 * 1024 * 1024,
            "Bytes per diskqueue file before rolling",
        )
        .int("sync-every", 2500, "Messages per diskqueue fsync")
        .duration(
            "sync-timeout",
            secs(2),
            "Longest time between diskqueue fsyncs",
        )
        .int(
            "queue-scan-worker-pool-max",
            4,
            "Most workers checking in-flight and deferred timeouts",
        )
        .int(
            "queue-scan-selection-count",
            20,
            "Channels checked per 100ms scan for in-flight and deferred timeouts",
        )
        // messages and commands
        .duration(
            "msg-timeout",
            secs(60),
            "Default time before an unfinished message is requeued",
        )
        .duration("max-msg-timeout", secs(15 * 60), "Longest message timeout")
        .int("max-msg-size", 1024 * 1024, "Largest message, in bytes")
        .duration("max-req-timeout", secs(3600), "Longest requeue delay")
        .int(
            "max-body-size",
            5 * 1024 * 1024,
            "Largest command body, in bytes",
        )
        // limits on what clients may ask for
        .duration(
            "max-heartbeat-interval",
            secs(60),
            "Longest heartbeat interval a client may ask for",
        )
        .int("max-rdy-count", 2500, "Largest RDY count a client may set")
        .int(
            "max-output-buffer-size",
            64 * 1024,
            "Largest output buffer a client may ask for, in bytes",
        )
        .duration(
            "max-output-buffer-timeout",
            secs(30),
            "Longest output flush interval a client may ask for",
        )
        .duration(
            "min-output-buffer-timeout",
            millis(25),
            "Shortest output flush interval a client may ask for",
        )
        .duration(
            "output-buffer-timeout",
            millis(250),
            "Default output flush interval",
        )
        .int(
            "max-channel-consumers",
            0,
            "Most consumers per channel on this nsqd (0 = unlimited)",
        )
        // statsd
        .string(
            "statsd-address",
            "",
            "UDP <addr>:<port> of a statsd daemon to push stats to",
        )
        .duration("statsd-interval", secs(60), "Time between statsd pushes")
        .bool(
            "statsd-mem-stats",
            true,
            "Also push memory and GC stats to statsd",
        )
        .string(
            "statsd-prefix",
            "nsq.%s",
            "Prefix of statsd keys (%s becomes the host)",
        )
        .int(
            "statsd-udp-packet-size",
            508,
            "Size of statsd UDP packets, in bytes",
        )
        .bool(
            "statsd-exclude-ephemeral",
            false,
            "Leave ephemeral topics and channels out of statsd",
        )
        // end-to-end latency
        .float_list(
            "e2e-processing-latency-percentile",
            "Processing-time percentile to track, in (0, 1] (repeatable or comma separated)",
        )
        .cfg(
            "e2e-processing-latency-percentile",
            "e2e_processing_latency_percentiles",
        )
        .duration(
            "e2e-processing-latency-window-time",
            secs(600),
            "Window the latency percentiles cover",
        )
        // TLS
        .string("tls-cert", "", "Path to the certificate file")
        .string("tls-key", "", "Path to the key file")
        .string(
            "tls-client-auth-policy",
            "",
            "Client certificate policy: require or require-verify",
        )
        .string(
            "tls-root-ca-file",
            "",
            "Path to the certificate authority file",
        )
        .arg(
            flags::go_bool_arg("tls-required")
                .value_name("true|false|tcp-https")
                .value_parser(parse_tls_required)
                .default_value("false")
                .help("Require TLS from clients (true, false, tcp-https)"),
            FlagKind::Str,
        )
        .arg(
            flags::go_value_arg("tls-min-version")
                .value_name("version")
                .value_parser(parse_tls_min_version)
                .default_value("tls1.0")
                .help("Oldest TLS version accepted: ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3"),
            FlagKind::Str,
        )
        // compression
        .bool("deflate", true, "Let clients negotiate deflate compression")
        .int(
            "max-deflate-level",
            6,
            "Highest deflate level a client may negotiate",
        )
        .bool("snappy", true, "Let clients negotiate snappy compression")
}

impl Options {
    /// Parses a command line as from `std::env::args()` (program name first), then the
    /// `--config` file. `Err` is a clap error: call `err.exit()` (status 2, 0 for help).
    pub fn parse_from<I: IntoIterator<Item = String>>(args: I) -> Result<Options, clap::Error> {
        let host = hostname();
        let parsed = flag_set(&host).parse(args)?;
        Ok(Options::from_parsed(&parsed))
    }

    /// The clap command behind [`Options::parse_from`] (for usage text and tests).
    pub fn command() -> clap::Command {
        flag_set(&hostname()).command().clone()
    }

    fn from_parsed(p: &ParsedFlags) -> Options {
        let dur = |n: &str| p.get_duration(n);
        let int = |n: &str| p.get_i64(n);
        let string = |n: &str| p.get_string(n);
        let mut percentiles = p.get_list::<f64>("e2e-processing-latency-percentile");
        if !p.from_config("e2e-processing-latency-percentile") {
            // nsqd keeps command-line percentiles sorted high to low.
            percentiles.sort_by(|a, b| b.total_cmp(a));
        }
        let (mut tls_required, mut tls_required_except_http) = p
            .get::<(bool, bool)>("tls-required")
            .unwrap_or((false, false));
        // nsqd: a client certificate policy implies TLS everywhere.
        if !p.get_string("tls-client-auth-policy").is_empty() && !tls_required {
            (tls_required, tls_required_except_http) = (true, false);
        }
        Options {
            version: p.get_bool("version"),
            config_path: p.config_path().map(PathBuf::from),
            log_level: p.get::<LogLevel>("log-level").unwrap_or_default(),
            log_prefix: string("log-prefix"),
            verbose: p.get_bool("verbose"),
            node_id: int("node-id"),
            tcp_address: string("tcp-address"),
            http_address: string("http-address"),
            https_address: string("https-address"),
            broadcast_address: string("broadcast-address"),
            broadcast_tcp_port: p.get::<u16>("broadcast-tcp-port").unwrap_or(0),
            broadcast_http_port: p.get::<u16>("broadcast-http-port").unwrap_or(0),
            lookupd_tcp_addresses: p.get_list("lookupd-tcp-address"),
            auth_http_addresses: p.get_list("auth-http-address"),
            auth_http_request_method: string("auth-http-request-method"),
            http_client_connect_timeout: dur("http-client-connect-timeout"),
            http_client_request_timeout: dur("http-client-request-timeout"),
            topology_region: string("topology-region"),
            topology_zone: string("topology-zone"),
            experiments: p.get_list("enable-experiment"),
            data_path: PathBuf::from(string("data-path")),
            mem_queue_size: int("mem-queue-size"),
            max_mem_queue_bytes: int("max-mem-queue-bytes"),
            max_bytes_per_file: int("max-bytes-per-file"),
            sync_every: int("sync-every"),
            sync_timeout: dur("sync-timeout"),
            queue_scan_interval: Duration::from_millis(100),
            queue_scan_refresh_interval: Duration::from_secs(5),
            queue_scan_selection_count: int("queue-scan-selection-count"),
            queue_scan_worker_pool_max: int("queue-scan-worker-pool-max"),
            queue_scan_dirty_percent: 0.25,
            msg_timeout: dur("msg-timeout"),
            max_msg_timeout: dur("max-msg-timeout"),
            max_msg_size: int("max-msg-size"),
            max_body_size: int("max-body-size"),
            max_req_timeout: dur("max-req-timeout"),
            client_timeout: Duration::from_secs(60),
            max_heartbeat_interval: dur("max-heartbeat-interval"),
            max_rdy_count: int("max-rdy-count"),
            max_output_buffer_size: int("max-output-buffer-size"),
            max_output_buffer_timeout: dur("max-output-buffer-timeout"),
            min_output_buffer_timeout: dur("min-output-buffer-timeout"),
            output_buffer_timeout: dur("output-buffer-timeout"),
            max_channel_consumers: int("max-channel-consumers"),
            statsd_address: string("statsd-address"),
            statsd_prefix: string("statsd-prefix"),
            statsd_interval: dur("statsd-interval"),
            statsd_mem_stats: p.get_bool("statsd-mem-stats"),
            statsd_udp_packet_size: int("statsd-udp-packet-size"),
            statsd_exclude_ephemeral: p.get_bool("statsd-exclude-ephemeral"),
            e2e_processing_latency_window_time: dur("e2e-processing-latency-window-time"),
            e2e_processing_latency_percentiles: percentiles,
            tls_cert: string("tls-cert"),
            tls_key: string("tls-key"),
            tls_client_auth_policy: string("tls-client-auth-policy"),
            tls_root_ca_file: string("tls-root-ca-file"),
            tls_required,
            tls_required_except_http,
            tls_min_version: p.get::<u16>("tls-min-version").unwrap_or(0x0301),
            deflate_enabled: p.get_bool("deflate"),
            max_deflate_level: int("max-deflate-level"),
            snappy_enabled: p.get_bool("snappy"),
        }
    }

    /// Refuses what nsqd refuses at start-up (the TLS files are read later, by
    /// [`crate::tls::server_config`]), and a client certificate policy nsqd
    /// would silently ignore.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.max_deflate_level) {
            return Err("--max-deflate-level must be [1,9]".into());
        }
        if !(0..1024).contains(&self.node_id) {
            return Err("--node-id must be [0,1024)".into());
        }
        if self.tls_required && self.tls_cert.is_empty() && self.tls_key.is_empty() {
            return Err("cannot require TLS client connections without TLS key and cert".into());
        }
        if !matches!(
            self.tls_client_auth_policy.as_str(),
            "" | "require" | "require-verify"
        ) {
            return Err(format!(
                "--tls-client-auth-policy must be require or require-verify, not {:?}",
                self.tls_client_auth_policy
            ));
        }
        if self.auth_http_request_method != "get" && self.auth_http_request_method != "post" {
            return Err("--auth-http-request-method must be post or get".into());
        }
        if let Some(p) = self
            .e2e_processing_latency_percentiles
            .iter()
            .find(|&&p| !(p > 0.0 && p <= 1.0))
        {
            return Err(format!("invalid E2E processing latency percentile: {p}"));
        }
        Ok(())
    }

    /// The option's value as nsqd's `GET /config/:opt` returns it, by config name
    /// (the flag name with `-` → `_`, or nsqd's own name: `id`,
    /// `nsqlookupd_tcp_addresses`, `auth_http_addresses`,
    /// `e2e_processing_latency_percentiles`). Durations are integer nanoseconds.
    /// `None` for an unknown name (nsqd answers 400 INVALID_OPTION).
    pub fn get_by_cfg_name(&self, name: &str) -> Option<Value> {
        let ns = |d: &Duration| Value::from(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let s = |v: &str| Value::from(v);
        let list = |v: &[String]| Value::from(v.to_vec());
        Some(match name {
            "id" => Value::from(self.node_id),
            "log_level" => Value::from(self.log_level.as_i64()),
            "log_prefix" => s(&self.log_prefix),
            "tcp_address" => s(&self.tcp_address),
            "http_address" => s(&self.http_address),
            "https_address" => s(&self.https_address),
            "broadcast_address" => s(&self.broadcast_address),
            "broadcast_tcp_port" => Value::from(self.broadcast_tcp_port),
            "broadcast_http_port" => Value::from(self.broadcast_http_port),
            "nsqlookupd_tcp_addresses" => list(&self.lookupd_tcp_addresses),
            "auth_http_addresses" => list(&self.auth_http_addresses),
            "auth_http_request_method" => s(&self.auth_http_request_method),
            "http_client_connect_timeout" => ns(&self.http_client_connect_timeout),
            "http_client_request_timeout" => ns(&self.http_client_request_timeout),
            "topology_region" => s(&self.topology_region),
            "topology_zone" => s(&self.topology_zone),
            "enable_experiment" => list(&self.experiments),
            "data_path" => s(&self.data_path.to_string_lossy()),
            "mem_queue_size" => Value::from(self.mem_queue_size),
            "max_mem_queue_bytes" => Value::from(self.max_mem_queue_bytes),
            "max_bytes_per_file" => Value::from(self.max_bytes_per_file),
            "sync_every" => Value::from(self.sync_every),
            "sync_timeout" => ns(&self.sync_timeout),
            "queue_scan_selection_count" => Value::from(self.queue_scan_selection_count),
            "queue_scan_worker_pool_max" => Value::from(self.queue_scan_worker_pool_max),
            "msg_timeout" => ns(&self.msg_timeout),
            "max_msg_timeout" => ns(&self.max_msg_timeout),
            "max_msg_size" => Value::from(self.max_msg_size),
            "max_body_size" => Value::from(self.max_body_size),
            "max_req_timeout" => ns(&self.max_req_timeout),
            "max_heartbeat_interval" => ns(&self.max_heartbeat_interval),
            "max_rdy_count" => Value::from(self.max_rdy_count),
            "max_output_buffer_size" => Value::from(self.max_output_buffer_size),
            "max_output_buffer_timeout" => ns(&self.max_output_buffer_timeout),
            "min_output_buffer_timeout" => ns(&self.min_output_buffer_timeout),
            "output_buffer_timeout" => ns(&self.output_buffer_timeout),
            "max_channel_consumers" => Value::from(self.max_channel_consumers),
            "statsd_address" => s(&self.statsd_address),
            "statsd_prefix" => s(&self.statsd_prefix),
            "statsd_interval" => ns(&self.statsd_interval),
            "statsd_mem_stats" => Value::from(self.statsd_mem_stats),
            "statsd_udp_packet_size" => Value::from(self.statsd_udp_packet_size),
            "statsd_exclude_ephemeral" => Value::from(self.statsd_exclude_ephemeral),
            "e2e_processing_latency_window_time" => ns(&self.e2e_processing_latency_window_time),
            "e2e_processing_latency_percentiles" => Value::from(
                self.e2e_processing_latency_percentiles
                    .iter()
                    .map(|&f| go_float(f))
                    .collect::<Vec<_>>(),
            ),
            "tls_cert" => s(&self.tls_cert),
            "tls_key" => s(&self.tls_key),
            "tls_client_auth_policy" => s(&self.tls_client_auth_policy),
            "tls_root_ca_file" => s(&self.tls_root_ca_file),
            // nsqd's TLSNotRequired = 0, TLSRequiredExceptHTTP = 1, TLSRequired = 2.
            "tls_required" => {
                Value::from(match (self.tls_required, self.tls_required_except_http) {
                    (false, _) => 0,
                    (true, true) => 1,
                    (true, false) => 2,
                })
            }
            "tls_min_version" => Value::from(self.tls_min_version),
            "deflate" => Value::from(self.deflate_enabled),
            "max_deflate_level" => Value::from(self.max_deflate_level),
            "snappy" => Value::from(self.snappy_enabled),
            _ => return None,
        })
    }
}

/// Go's JSON writes whole floats without a fraction (`1`, not `1.0`).
fn go_float(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse_from(
            std::iter::once("nsqd")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_match_nsqd() {
        let o = Options::default();
        let host = hostname();
        assert_eq!(o, parse(&[]).unwrap());
        assert!(!o.version);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!(o.log_prefix, "[nsqd] ");
        assert_eq!(o.node_id, default_node_id(&host));
        assert!((0..1024).contains(&o.node_id));
        assert_eq!(o.broadcast_address, host);
        assert_eq!(
            (
                o.tcp_address.as_str(),
                o.http_address.as_str(),
                o.https_address.as_str()
            ),
            ("0.0.0.0:4150", "0.0.0.0:4151", "0.0.0.0:4152")
        );
        assert_eq!((o.broadcast_tcp_port, o.broadcast_http_port), (0, 0));
        assert!(o.lookupd_tcp_addresses.is_empty() && o.auth_http_addresses.is_empty());
        assert_eq!(o.auth_http_request_method, "get");
        assert_eq!(o.http_client_connect_timeout, secs(2));
        assert_eq!(o.http_client_request_timeout, secs(5));
        assert_eq!(o.data_path, PathBuf::new());
        assert_eq!(o.mem_queue_size, 10_000);
        assert_eq!(o.max_bytes_per_file, 104_857_600);
        assert_eq!(o.sync_every, 2500);
        assert_eq!(o.sync_timeout, secs(2));
        assert_eq!(o.queue_scan_selection_count, 20);
        assert_eq!(o.queue_scan_worker_pool_max, 4);
        assert_eq!(o.msg_timeout, secs(60));
        assert_eq!(o.max_msg_timeout, secs(900));
        assert_eq!(o.max_msg_size, 1_048_576);
        assert_eq!(o.max_body_size, 5_242_880);
        assert_eq!(o.max_req_timeout, secs(3600));
        assert_eq!(o.client_timeout, secs(60));
        assert_eq!(o.max_heartbeat_interval, secs(60));
        assert_eq!(o.max_rdy_count, 2500);
        assert_eq!(o.max_output_buffer_size, 65_536);
        assert_eq!(o.max_output_buffer_timeout, secs(30));
        assert_eq!(o.min_output_buffer_timeout, Duration::from_millis(25));
        assert_eq!(o.output_buffer_timeout, Duration::from_millis(250));
        assert_eq!(o.max_channel_consumers, 0);
        assert_eq!(o.statsd_address, "");
        assert_eq!(o.statsd_prefix, "nsq.%s");
        assert_eq!(o.statsd_interval, secs(60));
        assert!(o.statsd_mem_stats && !o.statsd_exclude_ephemeral);
        assert_eq!(o.statsd_udp_packet_size, 508);
        assert_eq!(o.e2e_processing_latency_window_time, secs(600));
        assert!(o.e2e_processing_latency_percentiles.is_empty());
        assert!(!o.tls_required && o.tls_cert.is_empty() && o.tls_key.is_empty());
        assert_eq!(o.tls_min_version, 769);
        assert!(o.deflate_enabled && o.snappy_enabled);
        assert_eq!(o.max_deflate_level, 6);
        assert_eq!(
            (o.topology_region.as_str(), o.topology_zone.as_str()),
            ("", "")
        );
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn node_id_is_crc32_of_md5_of_hostname_mod_1024() {
        let digest = md5::compute(b"example.com");
        assert_eq!(
            default_node_id("example.com"),
            i64::from(crc32fast::hash(&digest.0) % 1024)
        );
        assert_ne!(default_node_id("a"), default_node_id("b"));
    }

    #[test]
    fn every_go_flag_syntax_sets_options() {
        let o = parse(&[
            "-tcp-address",
            "127.0.0.1:5150",
            "--http-address",
            "127.0.0.1:5151",
            "-https-address=",
            "--mem-queue-size=100",
            "-snappy=false",
            "--deflate=0",
            "-statsd-exclude-ephemeral",
            "--log-level",
            "DEBUG",
            "-data-path=/tmp/nsq",
            "--node-id",
            "7",
            "--broadcast-tcp-port=4000",
            "--topology-zone",
            "z1",
            "--verbose",
            "--worker-id",
        ])
        .unwrap();
        assert_eq!(o.tcp_address, "127.0.0.1:5150");
        assert_eq!(o.http_address, "127.0.0.1:5151");
        assert_eq!(o.https_address, "");
        assert_eq!(o.mem_queue_size, 100);
        assert!(!o.snappy_enabled && !o.deflate_enabled);
        assert!(o.statsd_exclude_ephemeral);
        assert_eq!(o.log_level, LogLevel::Debug);
        assert_eq!(o.data_path, PathBuf::from("/tmp/nsq"));
        assert_eq!(o.node_id, 7);
        assert_eq!(o.broadcast_tcp_port, 4000);
        assert_eq!(o.topology_zone, "z1");
        assert!(o.verbose);
    }

    #[test]
    fn durations_take_go_syntax() {
        let o = parse(&[
            "--msg-timeout=1m30s",
            "--sync-timeout",
            "100ms",
            "-max-req-timeout=1h",
            "--output-buffer-timeout=1.5s",
            "--min-output-buffer-timeout=250us",
            "--statsd-interval=0",
        ])
        .unwrap();
        assert_eq!(o.msg_timeout, secs(90));
        assert_eq!(o.sync_timeout, Duration::from_millis(100));
        assert_eq!(o.max_req_timeout, secs(3600));
        assert_eq!(o.output_buffer_timeout, Duration::from_millis(1500));
        assert_eq!(o.min_output_buffer_timeout, Duration::from_micros(250));
        assert_eq!(o.statsd_interval, Duration::ZERO);
        assert!(parse(&["--msg-timeout=60"]).is_err());
    }

    #[test]
    fn repeatable_flags_accumulate() {
        let o = parse(&[
            "--lookupd-tcp-address",
            "a:4160",
            "-lookupd-tcp-address=b:4160",
            "--auth-http-address=auth:4181",
            "--e2e-processing-latency-percentile=0.5,0.99",
            "--e2e-processing-latency-percentile",
            "1.0",
            "--enable-experiment=topology-aware-consumption",
        ])
        .unwrap();
        assert_eq!(o.lookupd_tcp_addresses, ["a:4160", "b:4160"]);
        assert_eq!(o.auth_http_addresses, ["auth:4181"]);
        assert_eq!(o.e2e_processing_latency_percentiles, [1.0, 0.99, 0.5]);
        assert_eq!(o.experiments, ["topology-aware-consumption"]);
    }

    #[test]
    fn config_file_is_below_flags_and_above_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqd.cfg");
        std::fs::write(
            &path,
            r#"
mem_queue_size = 100
msg_timeout = "90s"
sync_timeout = 1500
tcp_address = "10.0.0.1:4150"
nsqlookupd_tcp_addresses = ["l1:4160", "l2:4160"]
e2e_processing_latency_percentiles = [0.5, 1.0]
id = 12
snappy = false
log_level = "warn"
tls_min_version = "tls1.2"
max_deflate_level = 3
"#,
        )
        .unwrap();
        let cfg = path.to_str().unwrap();
        let o = parse(&[
            "--config",
            cfg,
            "--tcp-address=127.0.0.1:1",
            "--max-deflate-level",
            "9",
        ])
        .unwrap();
        assert_eq!(o.config_path.as_deref(), Some(path.as_path()));
        assert_eq!(o.tcp_address, "127.0.0.1:1");
        assert_eq!(o.max_deflate_level, 9);
        assert_eq!(o.mem_queue_size, 100);
        assert_eq!(o.msg_timeout, secs(90));
        assert_eq!(o.sync_timeout, Duration::from_millis(1500));
        assert_eq!(o.lookupd_tcp_addresses, ["l1:4160", "l2:4160"]);
        // Config percentiles keep their order, as in nsqd.
        assert_eq!(o.e2e_processing_latency_percentiles, [0.5, 1.0]);
        assert_eq!(o.node_id, 12);
        assert!(!o.snappy_enabled);
        assert_eq!(o.log_level, LogLevel::Warn);
        assert_eq!(o.tls_min_version, 0x0303);
        assert_eq!(o.http_address, "0.0.0.0:4151");

        let single_dash = format!("-config={cfg}");
        let o = parse(&[&single_dash]).unwrap();
        assert_eq!(o.tcp_address, "10.0.0.1:4150");

        std::fs::write(&path, "mem_queue_size = \"lots\"\n").unwrap();
        assert!(parse(&["--config", cfg]).is_err());
        assert!(parse(&["--config", "/nonexistent/nsqd.cfg"]).is_err());
        assert!(
            parse(&["--config", "/nonexistent/nsqd.cfg", "--version"])
                .unwrap()
                .version
        );
    }

    #[test]
    fn unknown_flag_is_a_usage_error_with_status_2() {
        let err = parse(&["--no-such-flag"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["-mem-queue-size", "lots"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.exit_code(), 0);
    }

    #[test]
    fn version_flag_is_reported() {
        assert!(parse(&["--version"]).unwrap().version);
        assert!(parse(&["-version"]).unwrap().version);
        assert!(!parse(&["--version=false"]).unwrap().version);
    }

    #[test]
    fn validate_refuses_what_nsqd_refuses() {
        let bad = |args: &[&str]| parse(args).unwrap().validate().unwrap_err();
        assert!(bad(&["--max-deflate-level=0"]).contains("[1,9]"));
        assert!(bad(&["--node-id=1024"]).contains("[0,1024)"));
        assert!(bad(&["--node-id=-1"]).contains("[0,1024)"));
        assert!(bad(&["--auth-http-request-method=put"]).contains("post or get"));
        assert!(bad(&["--e2e-processing-latency-percentile=1.5"]).contains("percentile"));
        assert!(bad(&["--e2e-processing-latency-percentile=0"]).contains("percentile"));
        assert!(bad(&["--tls-required"]).contains("without TLS key and cert"));
        assert!(bad(&["--tls-client-auth-policy=require"]).contains("without TLS key and cert"));
        assert!(bad(&[
            "--tls-cert=c",
            "--tls-key=k",
            "--tls-client-auth-policy=maybe"
        ])
        .contains("must be require or require-verify"));
        assert_eq!(
            parse(&[
                "--tls-cert=c.pem",
                "--tls-key=k.pem",
                "--tls-required=tcp-https"
            ])
            .unwrap()
            .validate(),
            Ok(())
        );
        assert_eq!(
            parse(&["--tls-required=false", "--auth-http-request-method=post"])
                .unwrap()
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn tls_flags_parse_like_nsqd() {
        let o = parse(&["--tls-required=tcp-https", "--tls-min-version=TLS1.2"]).unwrap();
        assert!(o.tls_required && o.tls_required_except_http);
        assert_eq!(o.tls_min_version, 771);
        assert_eq!(o.get_by_cfg_name("tls_required"), Some(json!(1)));
        let o = parse(&["-tls-required"]).unwrap();
        assert_eq!(o.get_by_cfg_name("tls_required"), Some(json!(2)));
        assert!(parse(&["--tls-min-version=tls9"]).is_err());
        let o = parse(&["--tls-client-auth-policy=require-verify"]).unwrap();
        assert!(
            o.tls_required && !o.tls_required_except_http,
            "policy implies TLS"
        );
        let o = parse(&[
            "--tls-client-auth-policy=require",
            "--tls-required=tcp-https",
        ])
        .unwrap();
        assert!(o.tls_required_except_http, "an explicit setting stays");
    }

    #[test]
    fn config_values_read_like_nsqd_get_config() {
        let o = parse(&[
            "--lookupd-tcp-address=a:4160",
            "--e2e-processing-latency-percentile=1,0.99",
        ])
        .unwrap();
        assert_eq!(
            o.get_by_cfg_name("nsqlookupd_tcp_addresses"),
            Some(json!(["a:4160"]))
        );
        assert_eq!(o.get_by_cfg_name("lookupd_tcp_address"), None);
        assert_eq!(
            o.get_by_cfg_name("msg_timeout"),
            Some(json!(60_000_000_000i64))
        );
        assert_eq!(o.get_by_cfg_name("mem_queue_size"), Some(json!(10_000)));
        assert_eq!(o.get_by_cfg_name("id"), Some(json!(o.node_id)));
        assert_eq!(o.get_by_cfg_name("node_id"), None);
        assert_eq!(o.get_by_cfg_name("log_level"), Some(json!(2)));
        assert_eq!(o.get_by_cfg_name("snappy"), Some(json!(true)));
        assert_eq!(o.get_by_cfg_name("tls_min_version"), Some(json!(769)));
        assert_eq!(
            o.get_by_cfg_name("e2e_processing_latency_percentiles"),
            Some(json!([1, 0.99]))
        );
        assert_eq!(o.get_by_cfg_name("auth_http_addresses"), Some(json!([])));
        assert_eq!(o.get_by_cfg_name("data_path"), Some(json!("")));
        assert_eq!(o.get_by_cfg_name("topology_zone"), Some(json!("")));
        assert_eq!(o.get_by_cfg_name("nope"), None);
    }
}
