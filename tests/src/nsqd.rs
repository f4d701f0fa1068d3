//! One `nsqd` process under test.

use crate::daemon::{self, Daemon};
use crate::http::{self, Response};
use crate::v2::V2Client;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

pub use crate::daemon::StartFailure;

/// The `nsqd` binary: `NSQD_BIN`, else `<target>/<profile>/nsqd` beside the test
/// executable (which lives in `<target>/<profile>/deps/`).
pub fn nsqd_binary() -> PathBuf {
    daemon::binary("nsqd", "NSQD_BIN")
}

/// A command for the binary with nothing added (for `--version` and the like).
pub fn nsqd_command() -> Command {
    Command::new(nsqd_binary())
}

/// A running broker. Dropping it kills the process; the data directory lives
/// as long as any `Arc` to it.
pub struct Nsqd {
    // Declared first so the process dies before its data directory is removed.
    daemon: Daemon,
    dir: Arc<TempDir>,
    args: Vec<String>,
    /// A program (and its arguments) the broker runs under, e.g. strace.
    wrapper: Vec<String>,
}

impl Nsqd {
    /// Starts a broker on a fresh data directory with `args` added.
    pub fn start(args: &[&str]) -> Nsqd {
        Self::start_in(Arc::new(new_data_dir()), args)
    }

    /// Starts a broker on `dir` with `args` added; panics if it does not come up.
    pub fn start_in(dir: Arc<TempDir>, args: &[&str]) -> Nsqd {
        Self::try_start_in(dir, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a broker on `dir`; the error says how it failed (for tests that
    /// expect a refusal).
    pub fn try_start_in(dir: Arc<TempDir>, args: &[&str]) -> Result<Nsqd, StartFailure> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let daemon = spawn(&[], dir.path(), &args)?;
        Ok(Nsqd {
            daemon,
            dir,
            args,
            wrapper: Vec::new(),
        })
    }

    /// Starts a broker as `wrapper... nsqd <args>` (`strace -o FILE --`, say)
    /// on a fresh data directory. [`Self::pid`] is the wrapper's.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Nsqd {
        let dir = Arc::new(new_data_dir());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        let daemon = spawn(&wrapper, dir.path(), &args).unwrap_or_else(|e| panic!("{e}"));
        Nsqd {
            daemon,
            dir,
            args,
            wrapper,
        }
    }

    /// The process id (of the wrapper, when started under one).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Waits for the process (or its wrapper) to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.daemon.wait_exit(timeout)
    }

    /// SIGKILL: a crash, no clean-up of any kind.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Starts again on the same data path with the same flags (new ports),
    /// after [`Self::kill`] or an exit.
    pub fn start_again(&mut self) {
        self.daemon.kill();
        let daemon = spawn(&self.wrapper, self.dir.path(), &self.args)
            .unwrap_or_else(|e| panic!("start again: {e}"));
        daemon.prepend_stderr(self.daemon.stderr_lines());
        self.daemon = daemon;
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.daemon.tcp_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.daemon.http_addr()
    }

    pub fn data_path(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory, to start another broker on it.
    pub fn data_dir(&self) -> Arc<TempDir> {
        Arc::clone(&self.dir)
    }

    /// Every stderr line so far (all runs on this data directory by this handle).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.daemon.stderr_lines()
    }

    /// A raw V2 connection (magic already sent).
    pub fn connect(&self) -> V2Client {
        V2Client::connect(self.tcp_addr())
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.daemon.terminate()
    }

    /// Sends `sig` (`SIGSTOP` freezes the broker with its connections open:
    /// lookupd still lists it, its HTTP port accepts and never answers).
    pub fn signal(&self, sig: libc::c_int) {
        self.daemon.signal(sig)
    }

    /// SIGTERM, assert a clean exit, then start again on the same data path
    /// with the same flags (new ports).
    pub fn restart(&mut self) {
        self.daemon.stop();
        let daemon = spawn(&self.wrapper, self.dir.path(), &self.args)
            .unwrap_or_else(|e| panic!("restart: {e}"));
        daemon.prepend_stderr(self.daemon.stderr_lines());
        self.daemon = daemon;
    }

    /// The HTTPS address, from the `HTTPS: listening on` line (TLS brokers only).
    pub fn https_addr(&self) -> SocketAddr {
        crate::wait_for(
            Duration::from_secs(5),
            "the HTTPS: listening on line",
            || {
                self.stderr_lines()
                    .iter()
                    .find_map(|l| daemon::listening_addr(l, "HTTPS: listening on "))
            },
        )
    }

    /// One HTTP request to the broker's HTTP API.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Response {
        http::request(self.http_addr(), method, path, body)
            .unwrap_or_else(|e| panic!("HTTP {method} {path} failed: {e}"))
    }

    /// `POST path`, asserting a 200.
    pub fn http_post_ok(&self, path: &str) -> Response {
        let r = self.http("POST", path, b"");
        assert_eq!(r.status, 200, "POST {path}: {}", r.text());
        r
    }

    /// `GET /stats?format=json`, asserting a 200 with JSON.
    pub fn stats(&self) -> serde_json::Value {
        let r = self.http("GET", "/stats?format=json", b"");
        assert_eq!(r.status, 200, "GET /stats?format=json: {}", r.text());
        r.json()
    }

    /// `nsqd.dat` parsed, or `None` while it does not exist.
    pub fn metadata(&self) -> Option<serde_json::Value> {
        read_metadata(self.data_path())
    }
}

/// A fresh temporary data directory.
pub fn new_data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("nsqd-test-")
        .tempdir()
        .expect("create temp dir")
}

/// `<data_path>/nsqd.dat` parsed, or `None` while it does not exist.
pub fn read_metadata(data_path: &Path) -> Option<serde_json::Value> {
    let path = data_path.join("nsqd.dat");
    let data = std::fs::read(&path).ok()?;
    Some(serde_json::from_slice(&data).unwrap_or_else(|e| {
        panic!(
            "{} is not JSON ({e}): {:?}",
            path.display(),
            String::from_utf8_lossy(&data)
        )
    }))
}

fn spawn(wrapper: &[String], data_path: &Path, extra: &[String]) -> Result<Daemon, StartFailure> {
    let mut cmd = match wrapper.split_first() {
        None => nsqd_command(),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(nsqd_binary());
            cmd
        }
    };
    cmd.arg("--tcp-address")
        .arg("127.0.0.1:0")
        .arg("--http-address")
        .arg("127.0.0.1:0")
        // Only listened on with TLS configured; never the shared default port.
        .arg("--https-address")
        .arg("127.0.0.1:0")
        .arg("--data-path")
        .arg(data_path)
        .args(extra);
    Daemon::spawn("nsqd", cmd)
}
