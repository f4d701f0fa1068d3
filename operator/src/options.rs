//! The operator's flags, parsed the way our NSQ binaries parse theirs (Go-style
//! `-flag value` / `--flag=value`, bare booleans, Go durations, a `--config`
//! TOML file below the command line and above the defaults), and their
//! start-up validation.

use nsq_common::http::client::{tls_config, ClientCert};
use std::path::PathBuf;
use std::time::Duration;

use nsq_common::flags::{self, FlagKind, FlagSet, ParsedFlags};
use nsq_common::logging::LogLevel;
use nsq_common::version::{self, CRATE_VERSION, NSQ_VERSION};

/// The binary's name, in `--version` and the usage text.
pub const APP: &str = "nsq-operator";

/// The operator's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--version`: print [`version_line`] and exit 0.
    pub version: bool,
    /// The `--config` file that was read, if any.
    pub config_path: Option<PathBuf>,

    pub log_level: LogLevel,
    pub log_prefix: String,

    /// lookupd HTTP addresses (`host:port`) the brokers are discovered from.
    pub lookupd_http_addresses: Vec<String>,
    /// How often every resource is reconciled again even when nothing changed.
    pub resync_period: Duration,
    /// `/metrics`, `/healthz` and `/readyz`; port 0 picks a free port.
    pub http_address: String,
    /// The namespace whose resources are managed; empty means all namespaces.
    pub namespace: String,

    /// Only the holder of the Lease acts; `false` acts at once, alone.
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    /// How long a lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the leader renews the lease and a standby looks at it.
    pub lease_renew_interval: Duration,
    /// This replica's name in the lease's `holderIdentity`.
    pub identity: String,

    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    /// CA of the brokers' HTTPS certificates (empty: the system's roots).
    pub http_client_tls_root_ca_file: String,
    /// Client certificate and key shown to brokers that ask for one.
    pub http_client_tls_cert: String,
    pub http_client_tls_key: String,
}

/// Defaults that come from the environment (the Downward API in a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDefaults {
    /// `$POD_NAMESPACE`, else `default`.
    pub lease_namespace: String,
    /// `$POD_NAME`, else the hostname.
    pub identity: String,
}

impl EnvDefaults {
    pub fn from_env() -> EnvDefaults {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EnvDefaults {
            lease_namespace: var("POD_NAMESPACE").unwrap_or_else(|| "default".into()),
            identity: var("POD_NAME").unwrap_or_else(hostname),
        }
    }
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `nsq-operator v0.1.0 (built w/rustc-1.95.0)`: our own crate version, where
/// nsqd and nsqlookupd print the NSQ release they speak.
pub fn version_line() -> String {
    let nsq_style = version::version_line(APP);
    let built = nsq_style
        .strip_prefix(&format!("{APP} v{NSQ_VERSION}"))
        .unwrap_or_default();
    format!("{APP} v{CRATE_VERSION}{built}")
}

fn flag_set(env: &EnvDefaults) -> FlagSet {
    let secs = Duration::from_secs;
    FlagSet::new(APP)
        .about("nsq-operator: reconciles NsqTopic and NsqChannel resources into every NSQ broker")
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
        .string("log-prefix", "[nsq-operator] ", "Prefix of every log line")
        .string_list(
            "lookupd-http-address",
            "nsqlookupd HTTP address <addr>:<port> to discover brokers from (repeatable)",
        )
        .cfg("lookupd-http-address", "nsqlookupd_http_addresses")
        .duration(
            "resync-period",
            secs(30),
            "How often every resource is reconciled even when nothing changed",
        )
        .string(
            "http-address",
            "0.0.0.0:8080",
            "<addr>:<port> for /metrics, /healthz and /readyz",
        )
        .string(
            "namespace",
            "",
            "Namespace whose NsqTopics and NsqChannels are managed (empty: all namespaces)",
        )
        .bool(
            "leader-election",
            true,
            "Act only while holding the leader Lease (run several replicas safely)",
        )
        .string("lease-name", "nsq-operator", "Name of the leader Lease")
        .string(
            "lease-namespace",
            env.lease_namespace.clone(),
            "Namespace of the leader Lease (default: $POD_NAMESPACE, else default)",
        )
        .duration(
            "lease-duration",
            secs(15),
            "How long a leader's lease stays valid without renewal",
        )
        .duration(
            "lease-renew-interval",
            secs(5),
            "How often the leader renews its lease and a standby checks it",
        )
        .string(
            "identity",
            env.identity.clone(),
            "This replica's holder identity in the Lease (default: $POD_NAME, else the hostname)",
        )
        .duration(
            "http-client-connect-timeout",
            secs(2),
            "Connect timeout of requests to nsqd and nsqlookupd",
        )
        .duration(
            "http-client-request-timeout",
            secs(5),
            "Total timeout of requests to nsqd and nsqlookupd",
        )
        .string(
            "http-client-tls-root-ca-file",
            "",
            "CA of brokers' HTTPS certificates, for brokers with --tls-required (default: the system's)",
        )
        .string(
            "http-client-tls-cert",
            "",
            "Client certificate (PEM) for brokers with a --tls-client-auth-policy",
        )
        .string(
            "http-client-tls-key",
            "",
            "Key (PEM) of --http-client-tls-cert",
        )
}

impl Default for Options {
    /// The defaults, i.e. an empty command line in this environment.
    fn default() -> Self {
        Options::parse_from(Vec::<String>::new()).expect("nsq-operator defaults parse")
    }
}

impl Options {
    /// Parses a command line as from `std::env::args()` (program name first), then the
    /// `--config` file. `Err` is a clap error: call `err.exit()` (status 2, 0 for help).
    pub fn parse_from<I: IntoIterator<Item = String>>(args: I) -> Result<Options, clap::Error> {
        Options::parse_with(&EnvDefaults::from_env(), args)
    }

    /// [`Options::parse_from`] with the environment's defaults given explicitly.
    pub fn parse_with<I: IntoIterator<Item = String>>(
        env: &EnvDefaults,
        args: I,
    ) -> Result<Options, clap::Error> {
        let parsed = flag_set(env).parse(args)?;
        Ok(Options::from_parsed(&parsed))
    }

    /// The clap command behind [`Options::parse_from`] (for usage text and tests).
    pub fn command() -> clap::Command {
        flag_set(&EnvDefaults::from_env()).command().clone()
    }

    fn from_parsed(p: &ParsedFlags) -> Options {
        Options {
            version: p.get_bool("version"),
            config_path: p.config_path().map(PathBuf::from),
            log_level: p.get::<LogLevel>("log-level").unwrap_or_default(),
            log_prefix: p.get_string("log-prefix"),
            lookupd_http_addresses: p.get_list("lookupd-http-address"),
            resync_period: p.get_duration("resync-period"),
            http_address: p.get_string("http-address"),
            namespace: p.get_string("namespace"),
            leader_election: p.get_bool("leader-election"),
            lease_name: p.get_string("lease-name"),
            lease_namespace: p.get_string("lease-namespace"),
            lease_duration: p.get_duration("lease-duration"),
            lease_renew_interval: p.get_duration("lease-renew-interval"),
            identity: p.get_string("identity"),
            http_client_connect_timeout: p.get_duration("http-client-connect-timeout"),
            http_client_request_timeout: p.get_duration("http-client-request-timeout"),
            http_client_tls_root_ca_file: p.get_string("http-client-tls-root-ca-file"),
            http_client_tls_cert: p.get_string("http-client-tls-cert"),
            http_client_tls_key: p.get_string("http-client-tls-key"),
        }
    }

    /// The namespace to watch, `None` for all of them.
    pub fn watch_namespace(&self) -> Option<String> {
        Some(self.namespace.clone()).filter(|ns| !ns.is_empty())
    }

    /// The TLS client for brokers that refuse plain HTTP (nsqadmin's
    /// `--http-client-tls-*` flags).
    pub fn http_client_tls(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        let client = (!self.http_client_tls_cert.is_empty()).then_some(ClientCert {
            cert: &self.http_client_tls_cert,
            key: &self.http_client_tls_key,
        });
        tls_config(&self.http_client_tls_root_ca_file, false, client)
            .map_err(|e| format!("failed to build the HTTP client's TLS config - {e}"))
    }

    /// Refuses settings the operator cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.http_client_tls_cert.is_empty() != self.http_client_tls_key.is_empty() {
            return Err("--http-client-tls-cert and --http-client-tls-key go together".into());
        }
        if self.resync_period.is_zero() {
            return Err("--resync-period must be greater than 0".into());
        }
        if self.http_client_connect_timeout.is_zero() || self.http_client_request_timeout.is_zero()
        {
            return Err("--http-client-*-timeout must be greater than 0".into());
        }
        if !self.leader_election {
            return Ok(());
        }
        for (flag, value) in [
            ("--lease-name", &self.lease_name),
            ("--lease-namespace", &self.lease_namespace),
            ("--identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(format!("{flag} must not be empty with --leader-election"));
            }
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err("--lease-duration must be at least 1s".into());
        }
        if self.lease_renew_interval.is_zero() || self.lease_renew_interval >= self.lease_duration {
            return Err(
                "--lease-renew-interval must be greater than 0 and less than --lease-duration"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> EnvDefaults {
        EnvDefaults {
            lease_namespace: "nsq".into(),
            identity: "nsq-operator-7d9f-abcde".into(),
        }
    }

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse_with(
            &env(),
            std::iter::once(APP)
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn defaults_come_from_the_brief_and_the_pod_environment() {
        let o = parse(&[]).unwrap();
        assert!(!o.version);
        assert_eq!(o.config_path, None);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!(o.log_prefix, "[nsq-operator] ");
        assert!(o.lookupd_http_addresses.is_empty());
        assert_eq!(o.resync_period, Duration::from_secs(30));
        assert_eq!(o.http_address, "0.0.0.0:8080");
        assert_eq!(o.namespace, "");
        assert_eq!(o.watch_namespace(), None);
        assert!(o.leader_election);
        assert_eq!(o.lease_name, "nsq-operator");
        assert_eq!(o.lease_namespace, "nsq");
        assert_eq!(o.lease_duration, Duration::from_secs(15));
        assert_eq!(o.lease_renew_interval, Duration::from_secs(5));
        assert_eq!(o.identity, "nsq-operator-7d9f-abcde");
        assert_eq!(o.http_client_connect_timeout, Duration::from_secs(2));
        assert_eq!(o.http_client_request_timeout, Duration::from_secs(5));
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn without_pod_environment_identity_is_the_hostname() {
        let e = EnvDefaults::from_env();
        if std::env::var_os("POD_NAME").is_none() {
            assert_eq!(e.identity, hostname());
        }
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(e.lease_namespace, "default");
        }
    }

    #[test]
    fn every_go_flag_spelling_sets_options() {
        let o = parse(&[
            "-lookupd-http-address",
            "lookupd-0:4161",
            "--lookupd-http-address=lookupd-1:4161",
            "--resync-period",
            "1m",
            "-http-address=127.0.0.1:0",
            "--namespace",
            "queues",
            "--leader-election=false",
            "--lease-name=op",
            "--lease-namespace",
            "kube-system",
            "--lease-duration=3s",
            "--lease-renew-interval",
            "500ms",
            "--identity=a",
            "--http-client-connect-timeout=100ms",
            "--http-client-request-timeout=1s",
            "--log-level",
            "DEBUG",
            "--log-prefix=",
        ])
        .unwrap();
        assert_eq!(
            o.lookupd_http_addresses,
            ["lookupd-0:4161", "lookupd-1:4161"]
        );
        assert_eq!(o.resync_period, Duration::from_secs(60));
        assert_eq!(o.http_address, "127.0.0.1:0");
        assert_eq!(o.watch_namespace().as_deref(), Some("queues"));
        assert!(!o.leader_election);
        assert_eq!(o.lease_name, "op");
        assert_eq!(o.lease_namespace, "kube-system");
        assert_eq!(o.lease_duration, Duration::from_secs(3));
        assert_eq!(o.lease_renew_interval, Duration::from_millis(500));
        assert_eq!(o.identity, "a");
        assert_eq!(o.http_client_connect_timeout, Duration::from_millis(100));
        assert_eq!(o.http_client_request_timeout, Duration::from_secs(1));
        assert_eq!(o.log_level, LogLevel::Debug);
        assert_eq!(o.log_prefix, "");
        // A bare boolean turns it back on and never eats the next argument.
        let o = parse(&["--leader-election", "--identity=b"]).unwrap();
        assert!(o.leader_election);
        assert_eq!(o.identity, "b");
    }

    #[test]
    fn config_file_is_below_flags_and_above_defaults() {
        let dir = std::env::temp_dir().join(format!("nsq-operator-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nsq-operator.cfg");
        std::fs::write(
            &path,
            "nsqlookupd_http_addresses = [\"l0:4161\", \"l1:4161\"]\n\
             resync_period = \"10s\"\nlease_duration = 20000\nleader_election = false\n\
             identity = \"from-config\"\nhttp_address = \"10.0.0.1:8080\"\n",
        )
        .unwrap();
        let cfg = path.to_str().unwrap();
        let o = parse(&["--config", cfg, "--http-address=127.0.0.1:1"]).unwrap();
        assert_eq!(o.config_path.as_deref(), Some(path.as_path()));
        assert_eq!(o.lookupd_http_addresses, ["l0:4161", "l1:4161"]);
        assert_eq!(o.resync_period, Duration::from_secs(10));
        // Integers are milliseconds, as go-options reads them.
        assert_eq!(o.lease_duration, Duration::from_secs(20));
        assert!(!o.leader_election);
        assert_eq!(o.identity, "from-config");
        assert_eq!(o.http_address, "127.0.0.1:1");

        // A comma-separated string is a list too.
        std::fs::write(&path, "nsqlookupd_http_addresses = \"a:1,b:2\"\n").unwrap();
        let o = parse(&["--config", cfg]).unwrap();
        assert_eq!(o.lookupd_http_addresses, ["a:1", "b:2"]);

        std::fs::write(&path, "lease_duration = true\n").unwrap();
        assert!(parse(&["--config", cfg]).is_err());
        assert!(parse(&["--config", "/nonexistent/nsq-operator.cfg"]).is_err());
        assert!(
            parse(&["--config", "/nonexistent/nsq-operator.cfg", "--version"])
                .unwrap()
                .version
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_flags_are_usage_errors_with_status_2() {
        for args in [
            &["--no-such-flag"][..],
            &["--resync-period=30"],
            &["--lease-duration=-1s"],
            &["--leader-election=maybe"],
            &["--log-level=loud"],
            &["--identity"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        assert_eq!(parse(&["-help"]).unwrap_err().exit_code(), 0);
        assert!(parse(&["-version"]).unwrap().version);
    }

    #[test]
    fn validate_refuses_leases_that_cannot_work() {
        let bad = |args: &[&str]| parse(args).unwrap().validate().unwrap_err();
        assert!(bad(&["--lease-duration=500ms"]).contains("at least 1s"));
        assert!(bad(&["--lease-renew-interval=15s"]).contains("less than --lease-duration"));
        assert!(bad(&["--lease-renew-interval=0"]).contains("greater than 0"));
        assert!(bad(&["--identity="]).contains("--identity"));
        assert!(bad(&["--lease-name="]).contains("--lease-name"));
        assert!(bad(&["--resync-period=0"]).contains("--resync-period"));
        // Without leader election the lease settings do not matter.
        let o = parse(&[
            "--leader-election=false",
            "--identity=",
            "--lease-duration=0",
        ])
        .unwrap();
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn version_line_carries_our_crate_version_and_compiler() {
        let line = version_line();
        assert!(
            line.starts_with(&format!("nsq-operator v{CRATE_VERSION} (built w/rustc-")),
            "{line}"
        );
        assert!(line.ends_with(')') && !line.contains('\n'), "{line}");
    }
}
