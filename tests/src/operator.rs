//! One `nsq-operator` process under test, watching one test's namespace.

use crate::apiserver::Kube;
use crate::daemon::{self, Daemon, StartFailure};
use crate::http;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// The resync period the tests run the operator with.
pub const RESYNC: Duration = Duration::from_secs(2);
/// The Lease duration (and renew interval) of the tests' operators.
pub const LEASE_DURATION: Duration = Duration::from_secs(3);
pub const LEASE_RENEW: Duration = Duration::from_secs(1);
/// The Lease the tests' operators elect a leader on.
pub const LEASE_NAME: &str = "nsq-operator";

/// The `nsq-operator` binary: `NSQ_OPERATOR_BIN`, else
/// `<target>/<profile>/nsq-operator` beside the test executable. Its
/// `--log-level` is `NSQ_OPERATOR_LOG_LEVEL` (default `info`); its output is
/// printed when a test fails.
pub fn operator_binary() -> PathBuf {
    daemon::binary("nsq-operator", "NSQ_OPERATOR_BIN")
}

/// A running operator. Dropping it kills the process (and prints its output
/// when the test is failing).
pub struct Operator {
    daemon: Daemon,
    identity: String,
}

impl Operator {
    /// Starts an operator for `kube`'s namespace, with leader election on the
    /// namespace's `nsq-operator` Lease, that finds brokers through `lookupds`
    /// (HTTP addresses, `host:port`).
    pub fn start(kube: &Kube, lookupds: &[String]) -> Operator {
        Self::start_as(kube, lookupds, "operator-0")
    }

    /// [`Operator::start`] with `--identity identity` (for several replicas).
    pub fn start_as(kube: &Kube, lookupds: &[String], identity: &str) -> Operator {
        Self::try_start(kube, lookupds, identity, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts an operator with `extra` flags added; the error says how it failed.
    pub fn try_start(
        kube: &Kube,
        lookupds: &[String],
        identity: &str,
        extra: &[&str],
    ) -> Result<Operator, StartFailure> {
        let mut cmd = Command::new(operator_binary());
        cmd.env("KUBECONFIG", &kube.server().kubeconfig).args([
            "--log-level",
            &std::env::var("NSQ_OPERATOR_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
        ]);
        for l in lookupds {
            cmd.args(["--lookupd-http-address", l]);
        }
        cmd.args(["--resync-period", &secs(RESYNC)])
            .args(["--http-address", "127.0.0.1:0"])
            .args(["--namespace", kube.namespace()])
            .arg("--leader-election")
            .args(["--lease-name", LEASE_NAME])
            .args(["--lease-namespace", kube.namespace()])
            .args(["--lease-duration", &secs(LEASE_DURATION)])
            .args(["--lease-renew-interval", &secs(LEASE_RENEW)])
            .args(["--identity", identity])
            .args(extra);
        Ok(Operator {
            daemon: Daemon::spawn_listening("nsq-operator", cmd, false)?,
            identity: identity.to_owned(),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The operator's own HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub fn http_addr(&self) -> SocketAddr {
        self.daemon.http_addr()
    }

    /// `GET path` on the operator's port: the status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http::request(self.http_addr(), "GET", path, b"")
            .map(|r| (r.status, r.text()))
            .map_err(|e| format!("GET {path} on nsq-operator {}: {e}", self.identity))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body)) => body,
            Ok((s, body)) => panic!("GET /metrics on {}: {s} {body}", self.identity),
            Err(e) => panic!("{e}"),
        }
    }

    /// The value of one series of `/metrics`, e.g. `nsq_operator_leader` or
    /// `nsq_operator_reconciles_total{kind="NsqTopic"}`; `None` when absent.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    /// Every output line so far.
    pub fn output_lines(&self) -> Vec<String> {
        self.daemon.stderr_lines()
    }

    /// SIGKILL: a crash, with no chance to release the Lease.
    pub fn kill(&mut self) {
        self.daemon.kill()
    }

    /// SIGTERM, and the exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.daemon.terminate()
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The value of `series` (name and labels exactly as exposed) in Prometheus
/// text; the sum when `series` is a bare name whose samples carry labels.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let bare = name.split('{').next().unwrap_or(name);
        if name == series || (!series.contains('{') && bare == series) {
            let v: f64 = value.parse().ok()?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_and_sums_labelled_samples() {
        let text = "# HELP x\n# TYPE nsq_operator_leader gauge\nnsq_operator_leader 1\n\
                    nsq_operator_reconciles_total{kind=\"NsqChannel\"} 3\n\
                    nsq_operator_reconciles_total{kind=\"NsqTopic\"} 4\n";
        assert_eq!(metric_value(text, "nsq_operator_leader"), Some(1.0));
        assert_eq!(
            metric_value(text, "nsq_operator_reconciles_total{kind=\"NsqTopic\"}"),
            Some(4.0)
        );
        assert_eq!(
            metric_value(text, "nsq_operator_reconciles_total"),
            Some(7.0)
        );
        assert_eq!(metric_value(text, "nsq_operator_brokers"), None);
    }
}
