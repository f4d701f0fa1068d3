//! A full disk is loud, never silent: on a small tmpfs data path, publishes
//! past the point of full get `E_PUB_FAILED` (HTTP: 503), `/ping` and
//! `nsq_healthy` turn bad, and after space is freed the broker is healthy
//! again with every acknowledged message delivered, exactly once, and no
//! `.bad` or temporary file left behind. Needs root (CI runs as root) to
//! mount the tmpfs.

use nsq_tests::{Frame, Nsqd};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: Arc<tempfile::TempDir>,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test mounts a tmpfs: run it as root (as scripts/test and CI do)"
        );
        let dir = Arc::new(
            tempfile::Builder::new()
                .prefix("nsq-full-")
                .tempdir()
                .expect("temp dir"),
        );
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Tmpfs { dir }
    }

    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], self.dir.path());
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read data path")
        .map(|e| e.expect("entry").path())
        .collect()
}

/// Publishes `batch`-message MPUBs (PUB when 1) of 1 KiB bodies until the
/// broker refuses one; returns the bodies acknowledged and the error text.
fn publish_until_refused(nsqd: &Nsqd, topic: &str, batch: usize) -> (Vec<Vec<u8>>, String) {
    let mut acked = Vec::new();
    let mut c = nsqd.connect();
    // Ten times what the 2 MiB disk holds.
    for i in 0..20_000 / batch {
        let bodies: Vec<Vec<u8>> = (0..batch)
            .map(|j| {
                let mut b = format!("{topic}-{i:06}-{j:03}-").into_bytes();
                b.resize(1024, b'x');
                b
            })
            .collect();
        if batch == 1 {
            c.command_with_body(&format!("PUB {topic}"), &bodies[0]);
        } else {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            c.command_with_body(&format!("MPUB {topic}"), &nsq_tests::v2::mpub_body(&refs));
        }
        match c.next_frame() {
            Frame::Response(r) if r == b"OK" => acked.extend(bodies),
            Frame::Error(e) => {
                c.expect_closed();
                return (acked, String::from_utf8_lossy(&e).into_owned());
            }
            other => panic!("unexpected {}", nsq_tests::v2::describe(&other)),
        }
    }
    panic!(
        "{} KiB acknowledged on a 2 MiB disk: write errors are being swallowed",
        acked.len()
    );
}

/// Consumes `topic`/`c` until nothing comes for a while; returns the bodies.
fn consume_all(nsqd: &Nsqd, topic: &str) -> Vec<Vec<u8>> {
    let mut c = nsqd.connect();
    c.subscribe(topic, "c");
    c.rdy(1000);
    let mut got = Vec::new();
    while let Some(m) = c.message_within(Duration::from_secs(1)) {
        c.fin(&m.id);
        got.push(m.body);
    }
    got
}

fn assert_exactly(got: Vec<Vec<u8>>, acked: &[Vec<u8>], what: &str) {
    let n = got.len();
    let set: BTreeSet<Vec<u8>> = got.into_iter().collect();
    assert_eq!(n, set.len(), "{what}: duplicates delivered");
    let want: BTreeSet<Vec<u8>> = acked.iter().cloned().collect();
    let lost = want.difference(&set).count();
    let extra = set.difference(&want).count();
    assert_eq!(
        (lost, extra),
        (0, 0),
        "{what}: {lost} acknowledged messages lost, {extra} unacknowledged ones delivered"
    );
}

#[test]
fn full_disk_refuses_publishes_turns_unhealthy_and_loses_nothing_acknowledged() {
    let disk = Tmpfs::mount("2m");
    let nsqd = Nsqd::start(&[
        "--data-path",
        disk.path().to_str().unwrap(),
        "--mem-queue-size=0",
        "--max-bytes-per-file=262144",
    ]);
    // "direct" has a channel, so publishes go straight to the channel's
    // diskqueue; "backlog" has none, so they wait in the topic's.
    nsqd.http_post_ok("/topic/create?topic=direct");
    nsqd.http_post_ok("/channel/create?topic=direct&channel=c");
    let (direct, err) = publish_until_refused(&nsqd, "direct", 1);
    assert!(err.starts_with("E_PUB_FAILED PUB failed "), "{err}");
    assert!(!direct.is_empty(), "some publishes fit");
    let (backlog, err) = publish_until_refused(&nsqd, "backlog", 10);
    assert!(err.starts_with("E_MPUB_FAILED MPUB failed "), "{err}");
    assert_eq!(backlog.len() % 10, 0, "an MPUB is all or nothing");

    let ping = nsqd.http("GET", "/ping", b"");
    assert_eq!(ping.status, 500, "{}", ping.text());
    assert!(ping.text().starts_with("NOK - "), "{}", ping.text());
    let metrics = nsqd.http("GET", "/metrics", b"").text();
    assert!(metrics.contains("\nnsq_healthy 0\n"), "{metrics}");
    assert_eq!(
        nsqd.stats()["health"]
            .as_str()
            .map(|h| h.starts_with("NOK - ")),
        Some(true)
    );
    // Bigger than anything still free.
    let http = nsqd.http("POST", "/pub?topic=direct", &[b'y'; 256 * 1024]);
    assert_eq!(
        (http.status, http.text().as_str()),
        (503, r#"{"message":"EXITING"}"#),
        "nsqd's answer to a failed HTTP publish"
    );

    // Space comes back: the next write succeeds and health with it.
    disk.resize("16m");
    let mut c = nsqd.connect();
    let mut late = b"after-the-disk-grew-".to_vec();
    late.resize(1024, b'z');
    c.publish("direct", &late);
    let ping = nsqd.http("GET", "/ping", b"");
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));

    let mut want_direct = direct;
    want_direct.push(late);
    assert_exactly(consume_all(&nsqd, "direct"), &want_direct, "direct");
    nsqd.http_post_ok("/channel/create?topic=backlog&channel=c");
    assert_exactly(consume_all(&nsqd, "backlog"), &backlog, "backlog");

    let leftovers: Vec<_> = files(disk.path())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".bad") || name.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
