//! One `nsqlookupd` process under test, and helpers for its HTTP API.

use crate::daemon::{self, Daemon};
use crate::http::{self, Response};
use crate::nsqd::Nsqd;
use crate::v1::V1Client;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

pub use crate::daemon::StartFailure;

/// The `nsqlookupd` binary: `NSQLOOKUPD_BIN`, else `<target>/<profile>/nsqlookupd`
/// beside the test executable.
pub fn nsqlookupd_binary() -> PathBuf {
    daemon::binary("nsqlookupd", "NSQLOOKUPD_BIN")
}

/// A command for the binary with nothing added.
pub fn nsqlookupd_command() -> Command {
    Command::new(nsqlookupd_binary())
}

/// A running lookupd. Dropping it kills the process.
pub struct Nsqlookupd {
    daemon: Daemon,
}

impl Nsqlookupd {
    /// Starts a lookupd on `127.0.0.1:0` ports with `--broadcast-address
    /// 127.0.0.1` and `args` added (a repeated flag's last value wins).
    pub fn start(args: &[&str]) -> Nsqlookupd {
        Self::try_start(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a lookupd whose TCP side listens on `127.0.0.1:<tcp_port>` (to
    /// come back where brokers expect it).
    pub fn start_on_tcp_port(tcp_port: u16, args: &[&str]) -> Nsqlookupd {
        let tcp = format!("127.0.0.1:{tcp_port}");
        let mut all = vec!["--tcp-address", tcp.as_str()];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    pub fn try_start(args: &[&str]) -> Result<Nsqlookupd, StartFailure> {
        let mut cmd = nsqlookupd_command();
        cmd.args(["--tcp-address", "127.0.0.1:0"])
            .args(["--http-address", "127.0.0.1:0"])
            .args(["--broadcast-address", "127.0.0.1"])
            .args(args);
        Ok(Nsqlookupd {
            daemon: Daemon::spawn("nsqlookupd", cmd)?,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.daemon.tcp_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.daemon.http_addr()
    }

    /// Sends `sig` (`SIGSTOP` freezes it with its listeners open).
    pub fn signal(&self, sig: libc::c_int) {
        self.daemon.signal(sig)
    }

    /// `http://<http address>`, as HTTP clients are given it.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.daemon.stderr_lines()
    }

    /// A raw V1 connection (magic already sent).
    pub fn connect(&self) -> V1Client {
        V1Client::connect(self.tcp_addr())
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.daemon.terminate()
    }

    /// SIGTERM, asserting a clean exit.
    pub fn stop(&mut self) {
        self.daemon.stop()
    }

    /// One HTTP request to the lookupd's HTTP API.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Response {
        http::request(self.http_addr(), method, path, body)
            .unwrap_or_else(|e| panic!("HTTP {method} {path} on nsqlookupd failed: {e}"))
    }

    /// `GET path`, asserting a 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.http("GET", path, b"");
        assert_eq!(r.status, 200, "GET {path} on nsqlookupd: {}", r.text());
        r.json()
    }

    /// `POST path`, asserting a 200.
    pub fn http_post_ok(&self, path: &str) -> Response {
        let r = self.http("POST", path, b"");
        assert_eq!(r.status, 200, "POST {path} on nsqlookupd: {}", r.text());
        r
    }

    /// `GET /lookup?topic=`: `None` for 404 `TOPIC_NOT_FOUND`, else the document.
    pub fn lookup(&self, topic: &str) -> Option<Value> {
        let path = format!("/lookup?topic={topic}");
        let r = self.http("GET", &path, b"");
        match r.status {
            200 => Some(r.json()),
            404 => {
                assert_eq!(
                    r.json(),
                    serde_json::json!({"message": "TOPIC_NOT_FOUND"}),
                    "GET {path}"
                );
                None
            }
            s => panic!("GET {path} on nsqlookupd: {s} {}", r.text()),
        }
    }

    /// The producers `/lookup?topic=` lists (none for an unknown topic).
    pub fn producers(&self, topic: &str) -> Vec<Value> {
        self.lookup(topic)
            .map(|d| d["producers"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// `<broadcast_address>:<tcp_port>` of each producer of `topic`, sorted.
    pub fn producer_tcp_addrs(&self, topic: &str) -> Vec<String> {
        let mut v: Vec<String> = self.producers(topic).iter().map(tcp_address).collect();
        v.sort();
        v
    }

    /// `GET /channels?topic=`, sorted.
    pub fn channels(&self, topic: &str) -> Vec<String> {
        let mut v = strings(&self.get_json(&format!("/channels?topic={topic}"))["channels"]);
        v.sort();
        v
    }

    /// `GET /topics`, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut v = strings(&self.get_json("/topics")["topics"]);
        v.sort();
        v
    }

    /// `GET /nodes`'s producers.
    pub fn nodes(&self) -> Vec<Value> {
        self.get_json("/nodes")["producers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `/nodes` entry whose `broadcast_address:tcp_port` is `tcp`.
    pub fn node(&self, tcp: SocketAddr) -> Option<Value> {
        let want = tcp.to_string();
        self.nodes().into_iter().find(|n| tcp_address(n) == want)
    }

    /// `GET /debug`'s keys (`category:key:subkey` of registrations with producers), sorted.
    pub fn debug_keys(&self) -> Vec<String> {
        let doc = self.get_json("/debug");
        let mut v: Vec<String> = doc
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// `<broadcast_address>:<tcp_port>` of a `/lookup` producer or `/nodes` entry.
pub fn tcp_address(p: &Value) -> String {
    format!(
        "{}:{}",
        p["broadcast_address"].as_str().unwrap_or_default(),
        p["tcp_port"]
    )
}

/// A JSON array of strings as a `Vec`.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The machine's hostname as `os.Hostname()` reports it (what nsqd and
/// nsqlookupd put in their `hostname` fields).
pub fn os_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname: {}", std::io::Error::last_os_error());
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A broker registered with `lookupds` (`--lookupd-tcp-address` each) under
/// `--broadcast-address 127.0.0.1`, with `extra` flags added.
pub fn registered_nsqd(lookupds: &[&Nsqlookupd], extra: &[&str]) -> Nsqd {
    let addrs: Vec<String> = lookupds.iter().map(|l| l.tcp_addr().to_string()).collect();
    let mut args = vec!["--broadcast-address", "127.0.0.1"];
    for a in &addrs {
        args.extend(["--lookupd-tcp-address", a.as_str()]);
    }
    args.extend_from_slice(extra);
    Nsqd::start(&args)
}
