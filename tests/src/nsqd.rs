//! One `nsqd` process under test.

use crate::http::{self, Response};
use crate::v2::V2Client;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long start-up may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERMed broker may take to exit before the harness gives up.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `nsqd` binary: `NSQD_BIN`, else `<target>/<profile>/nsqd` beside the test
/// executable (which lives in `<target>/<profile>/deps/`).
pub fn nsqd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NSQD_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "NSQD_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join("nsqd");
    assert!(
        bin.is_file(),
        "nsqd binary not found at {}: run `cargo build --workspace --bins` first \
         (scripts/test does), or set NSQD_BIN",
        bin.display()
    );
    bin
}

/// A command for the binary with nothing added (for `--version` and the like).
pub fn nsqd_command() -> Command {
    Command::new(nsqd_binary())
}

/// Why a broker did not come up.
#[derive(Debug)]
pub struct StartFailure {
    pub reason: String,
    /// The exit status when the process ended on its own.
    pub status: Option<ExitStatus>,
    pub stderr: Vec<String>,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nsqd did not start: {} (status {:?}); stderr:",
            self.reason, self.status
        )?;
        for l in &self.stderr {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// A running broker. Dropping it kills the process; the data directory lives
/// as long as any `Arc` to it.
pub struct Nsqd {
    child: Option<Child>,
    dir: Arc<TempDir>,
    args: Vec<String>,
    tcp: SocketAddr,
    http: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
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
        let (child, tcp, http, stderr) = spawn(dir.path(), &args)?;
        Ok(Nsqd {
            child: Some(child),
            dir,
            args,
            tcp,
            http,
            stderr,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
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
        self.stderr.lock().unwrap().clone()
    }

    /// A raw V2 connection (magic already sent).
    pub fn connect(&self) -> V2Client {
        V2Client::connect(self.tcp)
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("nsqd is running");
        let started = Instant::now();
        signal(&child, libc::SIGTERM);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > EXIT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nsqd did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                    self.stderr_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, assert a clean exit, then start again on the same data path
    /// with the same flags (new ports).
    pub fn restart(&mut self) {
        let (status, _) = self.terminate();
        assert!(
            status.success(),
            "nsqd exited with {status} on SIGTERM; stderr:\n{}",
            self.stderr_lines().join("\n")
        );
        let (child, tcp, http, stderr) =
            spawn(self.dir.path(), &self.args).unwrap_or_else(|e| panic!("restart: {e}"));
        let earlier = std::mem::take(&mut *self.stderr.lock().unwrap());
        stderr.lock().unwrap().splice(0..0, earlier);
        self.child = Some(child);
        self.tcp = tcp;
        self.http = http;
        self.stderr = stderr;
    }

    /// One HTTP request to the broker's HTTP API.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Response {
        http::request(self.http, method, path, body)
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

impl Drop for Nsqd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let lines = self.stderr_lines();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("---- nsqd stderr (last {} lines) ----", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
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

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

type Spawned = (Child, SocketAddr, SocketAddr, Arc<Mutex<Vec<String>>>);

fn spawn(data_path: &Path, extra: &[String]) -> Result<Spawned, StartFailure> {
    let mut cmd = nsqd_command();
    cmd.arg("--tcp-address")
        .arg("127.0.0.1:0")
        .arg("--http-address")
        .arg("127.0.0.1:0")
        .arg("--data-path")
        .arg(data_path)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| StartFailure {
        reason: format!("spawn {:?}: {e}", cmd.get_program()),
        status: None,
        stderr: Vec::new(),
    })?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<String>();
    {
        // Drain stderr for the process's whole life so the pipe never fills.
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
                        lines.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                }
            }
        });
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut tcp, mut http) = (None, None);
    while tcp.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(a) = listening_addr(&line, "TCP: listening on ") {
                    tcp = Some(a);
                } else if let Some(a) = listening_addr(&line, "HTTP: listening on ") {
                    http = Some(a);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure {
                    reason: format!("no listening lines within {START_TIMEOUT:?}"),
                    status: None,
                    stderr: stderr.lock().unwrap().clone(),
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed: the process is exiting; collect its status.
                let status = wait_timeout(&mut child, Duration::from_secs(10));
                return Err(StartFailure {
                    reason: "exited during start-up".into(),
                    status,
                    stderr: stderr.lock().unwrap().clone(),
                });
            }
        }
    }
    Ok((child, tcp.unwrap(), http.unwrap(), stderr))
}

fn listening_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let at = line.find(marker)?;
    line[at + marker.len()..].trim().parse().ok()
}

/// Waits for the child to exit; kills it after `timeout`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_addresses_in_log_lines() {
        let tcp = "[nsqd] 2024/01/01 00:00:00.000000 INFO: TCP: listening on 127.0.0.1:4150";
        let http = "[nsqd] 2024/01/01 00:00:00.000000 INFO: HTTP: listening on 127.0.0.1:4151";
        assert_eq!(
            listening_addr(tcp, "TCP: listening on "),
            Some("127.0.0.1:4150".parse().unwrap())
        );
        assert_eq!(listening_addr(http, "TCP: listening on "), None);
        assert_eq!(
            listening_addr(http, "HTTP: listening on "),
            Some("127.0.0.1:4151".parse().unwrap())
        );
    }
}
