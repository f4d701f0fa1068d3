//! What `nsqd`, `nsqlookupd` and `nsq-operator` under test have in common:
//! finding the binary, starting it with stdout and stderr drained and kept,
//! learning its TCP and HTTP addresses from the `TCP: listening on` /
//! `HTTP: listening on` log lines, signals, and killing it on drop.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long start-up may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERMed daemon may take to exit before the harness gives up.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary `name`: the path in `env_var`, else `<target>/<profile>/<name>`
/// beside the test executable (which lives in `<target>/<profile>/deps/`).
pub fn binary(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{name} binary not found at {}: run `cargo build --workspace --bins` first \
         (scripts/test does), or set {env_var}",
        bin.display()
    );
    bin
}

/// Why a daemon did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// `nsqd` or `nsqlookupd`.
    pub name: &'static str,
    pub reason: String,
    /// The exit status when the process ended on its own.
    pub status: Option<ExitStatus>,
    pub stderr: Vec<String>,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} did not start: {} (status {:?}); stderr:",
            self.name, self.reason, self.status
        )?;
        for l in &self.stderr {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// A running daemon. Dropping it kills the process and, when the test is
/// failing, prints the tail of its stderr.
pub struct Daemon {
    name: &'static str,
    child: Option<Child>,
    /// `None` for a daemon with only an HTTP side (the operator).
    tcp: Option<SocketAddr>,
    http: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Spawns `cmd` (stdin null, stdout and stderr piped) and waits for both
    /// listening lines.
    pub fn spawn(name: &'static str, cmd: Command) -> Result<Daemon, StartFailure> {
        Self::spawn_listening(name, cmd, true)
    }

    /// Spawns `cmd` and waits for its `HTTP: listening on` line (and its
    /// `TCP: listening on` line when `tcp_side`).
    pub fn spawn_listening(
        name: &'static str,
        mut cmd: Command,
        tcp_side: bool,
    ) -> Result<Daemon, StartFailure> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| StartFailure {
            name,
            reason: format!("spawn {:?}: {e}", cmd.get_program()),
            status: None,
            stderr: Vec::new(),
        })?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        // Drain both pipes for the process's whole life so neither fills; the
        // lines of both are kept together, in arrival order.
        let stdout_pipe = child.stdout.take().expect("piped stdout");
        drain(stdout_pipe, Arc::clone(&stderr), tx.clone());
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        drain(stderr_pipe, Arc::clone(&stderr), tx);
        let fail = |child: &mut Child, reason: String, status: Option<ExitStatus>| {
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            StartFailure {
                name,
                reason,
                status,
                stderr: stderr.lock().unwrap().clone(),
            }
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut tcp, mut http) = (None, None);
        while (tcp_side && tcp.is_none()) || http.is_none() {
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
                    let reason = format!("no listening lines within {START_TIMEOUT:?}");
                    return Err(fail(&mut child, reason, None));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Output closed: the process is exiting; collect its status.
                    let status = wait_timeout(&mut child, Duration::from_secs(10));
                    return Err(fail(&mut child, "exited during start-up".into(), status));
                }
            }
        }
        Ok(Daemon {
            name,
            child: Some(child),
            tcp,
            http: http.unwrap(),
            stderr,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
            .unwrap_or_else(|| panic!("{} has no TCP side", self.name))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `sig` (e.g. `SIGSTOP`, `SIGCONT`) to the running process.
    pub fn signal(&self, sig: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        signal(child, sig);
    }

    /// SIGKILL (a crash: no clean-up of any kind), waiting for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Every output line so far (stderr and stdout).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Puts `earlier` (a previous run's lines) before this run's.
    pub fn prepend_stderr(&self, earlier: Vec<String>) {
        self.stderr.lock().unwrap().splice(0..0, earlier);
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is running", self.name));
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
                    "{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                    self.name,
                    self.stderr_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit on its own (a wrapper whose child was
    /// signalled, say).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = wait_timeout(child, timeout)
            .unwrap_or_else(|| panic!("{} did not exit within {timeout:?}", self.name));
        self.child = None;
        status
    }

    /// SIGTERM, asserting a clean exit.
    pub fn stop(&mut self) {
        let (status, _) = self.terminate();
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM; stderr:\n{}",
            self.name,
            self.stderr_lines().join("\n")
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies of SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let lines = self.stderr_lines();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "---- {} {} output (last {} lines) ----",
                self.name,
                self.tcp.unwrap_or(self.http),
                tail.len()
            );
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Has the daemon killed when the thread that starts it ends (Linux: the
/// parent-death signal follows the spawning thread), so a test process that
/// is killed, never running `Drop`, leaves no daemon behind. Tests own their
/// daemons on the test's thread, which outlives them.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(2) and getppid(2) are async-signal-safe, as pre_exec requires.
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Reads `pipe` line by line into `lines` and `tx` until it closes.
fn drain(
    pipe: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<String>,
) {
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

/// The address after `marker`, up to the next space (colour codes ignored).
pub fn listening_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    let at = line.find(marker)?;
    line[at + marker.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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

/// A `127.0.0.1` port that was free a moment ago (bound, then released), for a
/// daemon that must come back on the same port.
pub fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
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
        let coloured = "\x1b[2m2024-01-01T00:00:00Z\x1b[0m \x1b[32m INFO\x1b[0m \
                        nsq_operator: HTTP: listening on \x1b[1m127.0.0.1:8080\x1b[0m x=1";
        assert_eq!(
            listening_addr(coloured, "HTTP: listening on "),
            Some("127.0.0.1:8080".parse().unwrap())
        );
    }
}
