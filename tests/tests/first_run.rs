//! What a newcomer meets first: `scripts/run` (nsqlookupd, then nsqd, then an
//! orderly stop), every binary's `--help` and `--version`, and README commands
//! that agree with the files they use.

use nsq_tests::apiserver::workspace_root;
use nsq_tests::daemon::{binary, free_local_port, listening_addr};
use nsq_tests::http::request;
use nsq_tests::inspect::stats_topic;
use nsq_tests::nsqd::new_data_dir;
use nsq_tests::{nsqd_binary, wait_until, Nsqd};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tempfile::TempDir;

/// `scripts/run` on loopback ports and a temporary data path, with the build
/// skipped (the test binaries' directory holds the daemons). nsqd takes port 0
/// (its log says which); nsqlookupd's must be known in advance. Dropping it
/// kills whatever is left.
struct Run {
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
    lookupd_http: SocketAddr,
    /// Kept alive while the script runs.
    _data: Arc<TempDir>,
    daemons: Vec<u32>,
}

impl Run {
    fn start(data: Arc<TempDir>) -> Run {
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_local_port()));
        let (lookupd_tcp, lookupd_http) = (addr(), addr());
        let bin_dir = nsqd_binary().parent().unwrap().to_path_buf();
        let mut cmd = Command::new("bash");
        // As from a terminal: SIGINT at its default, even when this test runs
        // in a background job (which starts with SIGINT ignored, and bash
        // cannot trap a signal ignored on entry).
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .arg(workspace_root().join("scripts/run"))
            .env("NSQ_NO_BUILD", "1")
            .env("NSQ_BIN_DIR", bin_dir)
            .env("NSQ_DATA_PATH", data.path())
            .env("NSQD_TCP_ADDRESS", "127.0.0.1:0")
            .env("NSQD_HTTP_ADDRESS", "127.0.0.1:0")
            .env("NSQLOOKUPD_TCP_ADDRESS", lookupd_tcp.to_string())
            .env("NSQLOOKUPD_HTTP_ADDRESS", lookupd_http.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bash scripts/run");
        let output = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().unwrap(), &output);
        drain(child.stderr.take().unwrap(), &output);
        Run {
            child: Some(child),
            output,
            lookupd_http,
            _data: data,
            daemons: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// `nsqd` and `nsqlookupd`, as children of the script, by name.
    fn children(&self) -> BTreeMap<String, u32> {
        let ppid = self.pid().to_string();
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let mut rest = stat[close + 1..].split_whitespace();
            if rest.nth(1) == Some(ppid.as_str()) && (comm == "nsqd" || comm == "nsqlookupd") {
                found.insert(comm.to_owned(), stat[..open].trim().parse().unwrap());
            }
        }
        found
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, sig) }, 0);
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scripts/run still running after {timeout:?}; output:\n{}",
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The daemons are in process groups of their own: kill them by pid.
        for &pid in &self.daemons {
            if alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(stream: impl Read + Send + 'static, into: &Arc<Mutex<Vec<String>>>) {
    let into = Arc::clone(into);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

/// Whether `pid` is a live process (a zombie, exited but not reaped, is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn errors(lines: &[String], daemon: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with(daemon) && (l.contains(" ERROR: ") || l.contains("FATAL")))
        .cloned()
        .collect()
}

/// Starts the script, publishes over HTTP as the README does, stops it with
/// `sig`, and checks the order and completeness of the shutdown.
fn run_publish_and_stop(sig: libc::c_int) {
    let data = Arc::new(new_data_dir());
    let mut run = Run::start(Arc::clone(&data));
    let nsqd_http = wait_until(Duration::from_secs(15), "nsqd under scripts/run", || {
        let output = run.output();
        let addr = output
            .iter()
            .filter(|l| l.starts_with("[nsqd]"))
            .find_map(|l| listening_addr(l, "HTTP: listening on "))
            .ok_or_else(|| format!("output: {output:#?}"))?;
        match request(addr, "GET", "/ping", b"") {
            Ok(r) if r.status == 200 => Ok(addr),
            Ok(r) => Err(format!("{} {}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        }
    });
    run.daemons = run.children().into_values().collect();
    // nsqd registered with nsqlookupd: before that a new topic cannot ask it
    // for channels, and nsqd (as Go's) logs an ERROR saying so.
    let lookupd_http = run.lookupd_http;
    wait_until(
        Duration::from_secs(10),
        "nsqd in nsqlookupd's /nodes",
        || {
            let r = request(lookupd_http, "GET", "/nodes", b"").map_err(|e| e.to_string())?;
            let producers = r.json()["producers"].as_array().map_or(0, Vec::len);
            (producers == 1).then_some(()).ok_or(r.text())
        },
    );

    // curl -d hi 'http://127.0.0.1:<port>/pub?topic=t'
    let r = request(nsqd_http, "POST", "/pub?topic=t", b"hi").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    wait_until(
        Duration::from_secs(10),
        "t registered with nsqlookupd",
        || {
            let r =
                request(lookupd_http, "GET", "/lookup?topic=t", b"").map_err(|e| e.to_string())?;
            let producers = r.json()["producers"].as_array().map_or(0, Vec::len);
            (producers == 1).then_some(()).ok_or(r.text())
        },
    );

    let children = run.children();
    assert_eq!(
        children.keys().collect::<Vec<_>>(),
        ["nsqd", "nsqlookupd"],
        "the script's children"
    );
    let before = run.output();
    let all_errors = [errors(&before, "[nsqd]"), errors(&before, "[nsqlookupd]")].concat();
    assert!(
        all_errors.is_empty(),
        "ERROR lines before the stop: {all_errors:#?}"
    );
    let lookupd_listens = before
        .iter()
        .position(|l| l.starts_with("[nsqlookupd]") && l.contains("TCP: listening on"));
    let nsqd_starts = before.iter().position(|l| l.starts_with("[nsqd]"));
    assert!(
        lookupd_listens.is_some() && lookupd_listens < nsqd_starts,
        "nsqlookupd listens before nsqd starts: {before:#?}"
    );

    run.signal(sig);
    let status = run.wait(Duration::from_secs(15));
    let output = run.output();
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        output.join("\n")
    );
    for (name, pid) in &children {
        assert!(!alive(*pid), "{name} (pid {pid}) outlived scripts/run");
    }
    // nsqd left nsqlookupd while it still listened, and flushed to disk.
    assert!(
        errors(&output, "[nsqd]").is_empty(),
        "nsqd errors while stopping: {output:#?}"
    );
    let position = |daemon: &str, needle: &str| {
        output
            .iter()
            .position(|l| l.starts_with(daemon) && l.contains(needle))
            .unwrap_or_else(|| panic!("no {daemon} {needle:?} line: {output:#?}"))
    };
    assert!(
        position("[nsqd]", "NSQ: closed topics and channels")
            < position("[nsqlookupd]", "TCP: closing"),
        "nsqd finishes before nsqlookupd stops: {output:#?}"
    );

    // The data-path lock is free and the message is on disk.
    drop(run);
    let nsqd = Nsqd::start_in(data, &[]);
    let stats = nsqd.stats();
    let topic = stats_topic(&stats, "t").expect("topic t after the restart");
    assert_eq!(topic["depth"], 1, "{topic}");
}

#[test]
fn scripts_run_starts_lookupd_first_and_sigint_waits_for_both_daemons() {
    run_publish_and_stop(libc::SIGINT);
}

#[test]
fn scripts_run_sigterm_stops_nsqd_then_lookupd() {
    run_publish_and_stop(libc::SIGTERM);
}

#[test]
fn scripts_run_stops_lookupd_and_fails_when_nsqd_cannot_start() {
    // Another broker holds the data path: nsqd exits at once.
    let holder = Nsqd::start(&[]);
    let mut run = Run::start(holder.data_dir());
    let status = run.wait(Duration::from_secs(15));
    let output = run.output();
    assert_eq!(status.code(), Some(1), "output:\n{}", output.join("\n"));
    assert!(
        output.iter().any(|l| l.contains("in use")),
        "nsqd says why: {output:#?}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("[nsqlookupd]") && l.contains("closing")),
        "nsqlookupd was stopped: {output:#?}"
    );
}

/// Every workspace binary, as `scripts/test` builds them.
const BINARIES: [(&str, &str); 5] = [
    ("nsqd", "NSQD_BIN"),
    ("nsqlookupd", "NSQLOOKUPD_BIN"),
    ("nsq-operator", "NSQ_OPERATOR_BIN"),
    ("crdgen", "CRDGEN_BIN"),
    ("bench", "BENCH_BIN"),
];

#[test]
fn every_binary_answers_help_and_version_and_exits_0() {
    for (name, env) in BINARIES {
        let bin = binary(name, env);
        for flag in ["--help", "--version"] {
            let out = Command::new(&bin)
                .arg(flag)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{name} {flag}: {}; stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!stdout.trim().is_empty(), "{name} {flag} printed nothing");
            if flag == "--help" {
                assert!(
                    stdout.to_lowercase().contains("usage"),
                    "{name} --help: {stdout}"
                );
            }
        }
    }
}

/// Bytes and modification time of every committed CRD file.
fn crd_files() -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    ["deploy/crds", "charts/crds"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(workspace_root().join(dir)).unwrap())
        .map(|e| {
            let path = e.unwrap().path();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path.clone(), (std::fs::read(&path).unwrap(), modified))
        })
        .collect()
}

#[test]
fn crdgen_help_prints_usage_and_writes_nothing() {
    let before = crd_files();
    assert!(!before.is_empty());
    for args in [&["--help"][..], &["-h"], &["--version"]] {
        let out = Command::new(binary("crdgen", "CRDGEN_BIN"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "crdgen {args:?}: {}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("wrote"), "crdgen {args:?}: {stdout}");
    }
    let out = Command::new(binary("crdgen", "CRDGEN_BIN"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    assert_eq!(crd_files(), before, "the committed CRDs were touched");
}

#[test]
fn crdgen_without_flags_writes_both_crd_directories() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(binary("crdgen", "CRDGEN_BIN"))
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in ["deploy/crds", "charts/crds"] {
        for (name, yaml) in nsq_operator::crd::crd_yaml() {
            let path = root.path().join(dir).join(name);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                yaml,
                "{dir}/{name}"
            );
        }
    }
}

/// The namespace a command line names (`-n x`, `--namespace x` or `--namespace=x`).
fn namespace_of(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, w)| match *w {
        "-n" | "--namespace" => words.get(i + 1).map(|n| n.to_string()),
        w => w.strip_prefix("--namespace=").map(str::to_owned),
    })
}

#[test]
fn readme_kubernetes_commands_and_examples_agree_on_the_namespace() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Kubernetes\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Kubernetes section");
    let commands: Vec<&str> = section
        .lines()
        .filter(|l| {
            l.starts_with("helm install nsq ./charts")
                || l.starts_with("kubectl")
                    && (l.contains("deploy/examples") || l.contains("nsqtopics"))
        })
        .collect();
    assert!(commands.len() >= 4, "{commands:#?}");
    let release = namespace_of(commands[0]).expect("helm install names a namespace");
    for command in &commands {
        assert_eq!(
            namespace_of(command).as_deref(),
            Some(release.as_str()),
            "README: {command}"
        );
    }
    // The examples go where -n says: they must not name another namespace.
    for entry in std::fs::read_dir(workspace_root().join("deploy/examples")).unwrap() {
        let path = entry.unwrap().path();
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let ns = yaml["metadata"]["namespace"].as_str();
        assert!(
            ns.is_none() || ns == Some(release.as_str()),
            "{} names namespace {ns:?}",
            path.display()
        );
    }
}
