//! Taking over a Go nsqd 1.3.0 `--data-path` in place, and handing it back.
//!
//! The fixtures were written by the real Go nsqd 1.3.0 (see their README.md).
//! Expected messages are read from Go's files by this file's own reader of
//! go-diskqueue's documented layout, never from the broker: a metadata file
//! `"%d\n%d,%d\n%d,%d\n"` (depth, read file,pos, write file,pos) and data files
//! `<queue>.diskqueue.%06d.dat` of `[4-byte BE size][message]` records, a
//! message being `[8-byte ts][2-byte attempts][16-byte id][body]`. The same
//! reader then plays Go nsqd on the directory our broker leaves behind.

use nsq_tests::inspect::{stats_channel, stats_topic};
use nsq_tests::{wait_until, Msg, Nsqd, V2Client};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// nsqd's smallest message (`minValidMsgLength`) and, with the default
/// `--max-msg-size`, the largest record go-diskqueue accepts.
const MIN_RECORD: usize = 8 + 2 + 16;
const MAX_RECORD: usize = 1024 * 1024 + MIN_RECORD;

/// `rolled/` was written with these flags; running with them again makes our
/// writer roll small files and append every queued message to disk, so what we
/// hand back is many Go-format files, not one.
const ROLLED_FLAGS: [&str; 2] = ["--mem-queue-size=0", "--max-bytes-per-file=1024"];

fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("GO_NSQD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/go-nsqd-1.3.0")
        });
    let dir = root.join(name);
    assert!(
        dir.join("nsqd.dat").is_file(),
        "Go nsqd fixture {} missing (set GO_NSQD_FIXTURES)",
        dir.display()
    );
    dir
}

/// A writable copy of a fixture directory (the fixtures themselves stay untouched).
fn copy_fixture(name: &str) -> Arc<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = nsq_tests::nsqd::new_data_dir();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        // The fixtures are read-only; a data path is not.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    Arc::new(dir)
}

// ---- go-diskqueue, as Go reads it ----

/// `<queue>.diskqueue.meta.dat`, which must be exactly Go's `%d` text.
#[derive(Debug, Clone, Copy)]
struct QueueMeta {
    depth: i64,
    read: (i64, i64),
    write: (i64, i64),
}

fn data_file_name(queue: &str, num: i64) -> String {
    format!("{queue}.diskqueue.{num:06}.dat")
}

fn queue_meta(dir: &Path, queue: &str) -> QueueMeta {
    let path = dir.join(format!("{queue}.diskqueue.meta.dat"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n: Vec<i64> = text
        .split(['\n', ','])
        .take(5)
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{}: not go-diskqueue's text: {text:?}", path.display()))
        })
        .collect();
    assert_eq!(n.len(), 5, "{}: {text:?}", path.display());
    assert_eq!(
        text,
        format!("{}\n{},{}\n{},{}\n", n[0], n[1], n[2], n[3], n[4]),
        "{}: not byte for byte go-diskqueue's Fprintf",
        path.display()
    );
    assert!(n.iter().all(|v| *v >= 0), "{}: {text:?}", path.display());
    let meta = QueueMeta {
        depth: n[0],
        read: (n[1], n[2]),
        write: (n[3], n[4]),
    };
    assert!(meta.read <= meta.write, "{}: {text:?}", path.display());
    meta
}

/// The queue's unread messages in the order go-diskqueue v1.1.0 reads them:
/// from the read position to the write position, a file that is not the write
/// file ending at its size (then Go deletes it and opens the next). Panics
/// where Go would give a file up as bad or lose messages.
fn go_read(dir: &Path, queue: &str) -> Vec<Msg> {
    let meta = queue_meta(dir, queue);
    let (mut file, mut pos) = meta.read;
    let mut out = Vec::new();
    let mut data = Vec::new();
    let mut loaded = None;
    while (file, pos) < meta.write {
        let path = dir.join(data_file_name(queue, file));
        if loaded != Some(file) {
            data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; Go would skip the file", path.display()));
            loaded = Some(file);
        }
        let end = if file == meta.write.0 {
            meta.write.1 as usize
        } else {
            data.len()
        };
        let at = pos as usize;
        assert!(
            at + 4 <= end && end <= data.len(),
            "{}: no record at {at} (end {end}, size {}); Go would rename it .bad",
            path.display(),
            data.len()
        );
        let size = i32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            (MIN_RECORD..=MAX_RECORD).contains(&size) && at + 4 + size <= end,
            "{}: record of {size} bytes at {at}; Go would rename it .bad",
            path.display()
        );
        let rec = &data[at + 4..at + 4 + size];
        out.push(Msg {
            timestamp: i64::from_be_bytes(rec[..8].try_into().unwrap()),
            attempts: u16::from_be_bytes(rec[8..10].try_into().unwrap()),
            id: rec[10..26].try_into().unwrap(),
            body: rec[26..].to_vec(),
        });
        pos += (4 + size) as i64;
        if file < meta.write.0 && pos as usize >= end {
            (file, pos) = (file + 1, 0);
        }
    }
    assert_eq!(
        out.len() as i64,
        meta.depth,
        "{queue}: depth in its metadata"
    );
    out
}

/// Topic → (paused, channel → paused).
type Topology = BTreeMap<String, (bool, BTreeMap<String, bool>)>;

/// A topic as written in a test: name, paused, (channel, paused)s.
type TopicSpec<'a> = (&'a str, bool, &'a [(&'a str, bool)]);

fn topology(entries: &[TopicSpec]) -> Topology {
    entries
        .iter()
        .map(|(t, paused, chans)| {
            let chans = chans.iter().map(|(c, p)| (c.to_string(), *p)).collect();
            (t.to_string(), (*paused, chans))
        })
        .collect()
}

/// Exactly the keys of nsqd 1.3's `Metadata` struct, each with the JSON type
/// Go decodes into its field (a list may be `null`).
fn go_metadata(dir: &Path) -> Topology {
    let text = std::fs::read(dir.join("nsqd.dat")).unwrap();
    let doc: Value = serde_json::from_slice(&text).expect("nsqd.dat is JSON");
    let keys = |v: &Value, want: &[&str]| {
        let got: BTreeSet<&str> = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(got, want.iter().copied().collect(), "nsqd.dat: {doc}");
    };
    let list = |v: &Value| -> Vec<Value> {
        match v {
            Value::Null => vec![],
            Value::Array(a) => a.clone(),
            other => panic!("Go cannot decode {other} into a slice; nsqd.dat: {doc}"),
        }
    };
    let name_paused = |v: &Value| {
        let name = v["name"].as_str().unwrap_or_else(|| panic!("name: {doc}"));
        let paused = v["paused"]
            .as_bool()
            .unwrap_or_else(|| panic!("paused: {doc}"));
        (name.to_owned(), paused)
    };
    keys(&doc, &["topics", "version"]);
    assert!(doc["version"].is_string(), "nsqd.dat: {doc}");
    let mut out = Topology::new();
    for t in list(&doc["topics"]) {
        keys(&t, &["name", "paused", "channels"]);
        let mut chans = BTreeMap::new();
        for c in list(&t["channels"]) {
            keys(&c, &["name", "paused"]);
            let (name, paused) = name_paused(&c);
            assert!(chans.insert(name, paused).is_none(), "nsqd.dat: {doc}");
        }
        let (name, paused) = name_paused(&t);
        assert!(
            out.insert(name, (paused, chans)).is_none(),
            "nsqd.dat: {doc}"
        );
    }
    out
}

/// Checks every file in `dir` is one Go nsqd writes, in its format, and
/// returns the metadata and the files that are ours alone (the deferred
/// timings side files). `.bad` files must be Go's own, unchanged.
fn go_view(dir: &Path, fixture_dir: &Path) -> (Topology, Vec<String>) {
    let topics = go_metadata(dir);
    let mut queues: BTreeSet<String> = BTreeSet::new();
    for (t, (_, chans)) in &topics {
        queues.insert(t.clone());
        queues.extend(chans.keys().map(|c| format!("{t}:{c}")));
    }
    let mut metas = BTreeSet::new();
    let mut data: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut extras = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        if name == "nsqd.dat" {
        } else if let Some(q) = name.strip_suffix(".diskqueue.meta.dat") {
            metas.insert(q.to_owned());
        } else if name.ends_with(".dat.bad") {
            let ours = std::fs::read(dir.join(&name)).unwrap();
            let go = std::fs::read(fixture_dir.join(&name))
                .unwrap_or_else(|_| panic!("{name}: a .bad file Go did not leave"));
            assert!(ours == go, "{name} changed");
        } else if let Some((q, num)) = name
            .strip_suffix(".dat")
            .and_then(|s| s.rsplit_once(".diskqueue."))
            .and_then(|(q, n)| Some((q, n.parse::<i64>().ok()?)))
        {
            assert_eq!(name, data_file_name(q, num), "not go-diskqueue's %06d");
            data.entry(q.to_owned()).or_default().push(num);
        } else if name
            .strip_suffix(".deferred.dat")
            .is_some_and(|q| queues.contains(q) && q.contains(':'))
        {
            extras.push(name);
        } else {
            panic!("{name}: a file Go nsqd does not write");
        }
    }
    for q in &metas {
        assert!(queues.contains(q), "{q}: a queue nsqd.dat does not list");
        let m = queue_meta(dir, q);
        // Go reads every file from the read to the write file and deletes
        // what it has read; anything else is litter (or data Go never reads).
        let want: Vec<i64> = (m.read.0..=m.write.0)
            .filter(|n| *n < m.write.0 || m.write.1 > 0)
            .collect();
        let have = data.remove(q).unwrap_or_default();
        assert_eq!(have, want, "{q}: data files for {m:?}");
        if m.write.1 > 0 {
            let size = std::fs::metadata(dir.join(data_file_name(q, m.write.0)))
                .unwrap()
                .len();
            // Go moves writing to a new file when the write file is longer.
            assert_eq!(size as i64, m.write.1, "{q}: write file size vs {m:?}");
        }
    }
    assert!(data.is_empty(), "data files without metadata: {data:?}");
    (topics, extras)
}

// ---- the broker side ----

/// The messages as a consumer sees them: Go's records, one attempt more.
fn delivered(disk: &[Msg]) -> Vec<Msg> {
    disk.iter()
        .map(|m| Msg {
            attempts: m.attempts + 1,
            ..m.clone()
        })
        .collect()
}

fn bodies(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.body_str().to_owned()).collect()
}

fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u64) -> V2Client {
    let mut c = nsqd.connect();
    c.subscribe(topic, channel);
    c.rdy(rdy);
    c
}

fn receive(c: &mut V2Client, n: usize) -> Vec<Msg> {
    (0..n).map(|_| c.next_message()).collect()
}

fn fin_all(c: &mut V2Client, msgs: &[Msg]) {
    for m in msgs {
        c.fin(&m.id);
    }
}

/// Receives `n` messages, FINs each.
fn consume(c: &mut V2Client, n: usize) -> Vec<Msg> {
    let msgs = receive(c, n);
    fin_all(c, &msgs);
    msgs
}

/// Exact bodies first (a readable diff), then IDs, timestamps and attempts.
#[track_caller]
fn assert_msgs(got: &[Msg], want: &[Msg]) {
    assert_eq!(bodies(got), bodies(want));
    assert_eq!(got, want);
}

fn stats_of(nsqd: &Nsqd, topic: &str, channel: Option<&str>) -> Value {
    let stats = nsqd.stats();
    match channel {
        None => stats_topic(&stats, topic).cloned(),
        Some(c) => stats_channel(&stats, topic, c).cloned(),
    }
    .unwrap_or_else(|| panic!("{topic}/{channel:?} not in /stats: {stats}"))
}

/// Waits until the channel has nothing queued or in flight (its FINs landed).
fn wait_drained(nsqd: &Nsqd, topic: &str, channel: &str) {
    wait_until(Duration::from_secs(5), "the channel drained", || {
        let c = stats_of(nsqd, topic, Some(channel));
        nsq_tests::same((&c["depth"], &c["in_flight_count"]), (&0.into(), &0.into()))
    });
}

#[test]
fn go_data_path_with_null_channels_starts_and_delivers_every_message_with_pauses_kept() {
    let go_dir = fixture("basic");
    // The checks that judge our files accept Go's own.
    let (topics, _) = go_view(&go_dir, &go_dir);
    assert_eq!(
        topics,
        topology(&[
            ("bare", false, &[]),
            ("orders", false, &[("audit", true), ("billing", false)]),
            ("paused_topic", true, &[("c", false)]),
        ])
    );
    let billing = go_read(&go_dir, "orders:billing");
    let audit = go_read(&go_dir, "orders:audit");
    let bare = go_read(&go_dir, "bare");
    let paused = go_read(&go_dir, "paused_topic");
    let numbered = |prefix: &str, n: usize, width: usize| -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}{i:0width$}")).collect()
    };
    assert_eq!(bodies(&billing), numbered("order-", 50, 2));
    assert_eq!(bodies(&audit), bodies(&billing));
    assert_eq!(bodies(&bare), numbered("bare-", 5, 1));
    assert_eq!(bodies(&paused), numbered("paused-", 3, 1));
    assert!(go_read(&go_dir, "paused_topic:c").is_empty());

    // nsqd's defaults, as a drop-in replacement would run: messages Go left on
    // disk must come out although new ones would be queued in memory.
    let mut nsqd = Nsqd::start_in(copy_fixture("basic"), &[]);
    let topic = stats_of(&nsqd, "orders", None);
    assert_eq!(topic["paused"], false, "{topic}");
    for (t, c, paused, depth) in [
        ("orders", "billing", false, 50),
        ("orders", "audit", true, 50),
        ("paused_topic", "c", false, 0),
    ] {
        let s = stats_of(&nsqd, t, Some(c));
        assert_eq!(
            (&s["paused"], &s["depth"]),
            (&paused.into(), &depth.into()),
            "{t}/{c}: {s}"
        );
    }
    for (t, paused, depth) in [("bare", false, 5), ("paused_topic", true, 3)] {
        let s = stats_of(&nsqd, t, None);
        assert_eq!(
            (&s["paused"], &s["depth"]),
            (&paused.into(), &depth.into()),
            "{t}: {s}"
        );
    }

    let mut audit_c = consumer(&nsqd, "orders", "audit", 100);
    let mut paused_c = consumer(&nsqd, "paused_topic", "c", 100);
    let mut billing_c = consumer(&nsqd, "orders", "billing", 100);
    assert_msgs(&consume(&mut billing_c, 50), &delivered(&billing));
    billing_c.expect_silence(Duration::from_millis(300));
    // Paused channel and paused topic: nothing while billing drained.
    audit_c.expect_silence(Duration::from_millis(100));
    paused_c.expect_silence(Duration::from_millis(100));

    nsqd.http_post_ok("/channel/unpause?topic=orders&channel=audit");
    assert_msgs(&consume(&mut audit_c, 50), &delivered(&audit));
    nsqd.http_post_ok("/topic/unpause?topic=paused_topic");
    assert_msgs(&consume(&mut paused_c, 3), &delivered(&paused));

    // `bare` had no channel: its backlog goes to the first one created.
    let mut late = consumer(&nsqd, "bare", "late", 100);
    assert_msgs(&consume(&mut late, 5), &delivered(&bare));
    late.expect_silence(Duration::from_millis(200));
    // And no duplicate arrived meanwhile.
    audit_c.expect_silence(Duration::from_millis(1));
    paused_c.expect_silence(Duration::from_millis(1));
    for (t, c) in [
        ("orders", "billing"),
        ("orders", "audit"),
        ("paused_topic", "c"),
        ("bare", "late"),
    ] {
        wait_drained(&nsqd, t, c);
    }

    // Handed back: Go's formats, the new channel listed, pauses as left.
    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");
    let (topics, extras) = go_view(nsqd.data_path(), &go_dir);
    assert_eq!(
        topics,
        topology(&[
            ("bare", false, &[("late", false)]),
            ("orders", false, &[("audit", false), ("billing", false)]),
            ("paused_topic", false, &[("c", false)]),
        ])
    );
    assert_eq!(extras, Vec::<String>::new());
    for q in [
        "orders",
        "orders:billing",
        "orders:audit",
        "bare",
        "bare:late",
        "paused_topic",
        "paused_topic:c",
    ] {
        assert_eq!(
            bodies(&go_read(nsqd.data_path(), q)),
            Vec::<String>::new(),
            "{q}"
        );
    }
}

#[test]
fn rolled_go_diskqueue_delivers_every_message_once_in_file_order_beside_bad_files() {
    let go_dir = fixture("rolled");
    go_view(&go_dir, &go_dir);
    let disk = go_read(&go_dir, "rolled:c");
    let want: BTreeSet<String> = (31..=200)
        .map(|i| format!("rolled-message-{i:03}"))
        .collect();
    assert_eq!(bodies(&disk).into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(disk.len(), 170);
    assert!(
        !bodies(&disk).is_sorted(),
        "the fixture's file order is not numeric"
    );

    let mut nsqd = Nsqd::start_in(copy_fixture("rolled"), &ROLLED_FLAGS);
    let s = stats_of(&nsqd, "rolled", Some("c"));
    assert_eq!(s["depth"], 170, "{s}");
    let mut c = consumer(&nsqd, "rolled", "c", 200);
    assert_msgs(&consume(&mut c, 170), &delivered(&disk));
    c.expect_silence(Duration::from_millis(300));
    wait_drained(&nsqd, "rolled", "c");
    // Go's .bad files are left as they were (go_view compares them).
    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");
    let (topics, extras) = go_view(nsqd.data_path(), &go_dir);
    assert_eq!(topics, topology(&[("rolled", false, &[("c", false)])]));
    assert_eq!(extras, Vec::<String>::new());
    assert!(go_read(nsqd.data_path(), "rolled:c").is_empty());
}

#[test]
fn go_data_path_after_our_broker_ran_stays_in_go_formats_and_reopens_in_order() {
    let go_dir = fixture("rolled");
    let disk = go_read(&go_dir, "rolled:c");
    let mut nsqd = Nsqd::start_in(copy_fixture("rolled"), &ROLLED_FLAGS);

    // 60 finished, 4 left in flight, 1 deferred, 3 published: every kind of
    // message our broker writes back at SIGTERM.
    let mut c = consumer(&nsqd, "rolled", "c", 60);
    let done = receive(&mut c, 60);
    // RDY 0 before the FINs, so that they free no room for more.
    c.rdy(0);
    fin_all(&mut c, &done);
    assert_msgs(&done, &delivered(&disk[..60]));
    c.rdy(5);
    let held = receive(&mut c, 5);
    c.rdy(0);
    assert_msgs(&held, &delivered(&disk[60..65]));
    c.req(&held[4].id, 2000);
    let deferred_at = std::time::Instant::now();
    let mut p = nsqd.connect();
    for b in ["new-1", "new-2", "new-3"] {
        p.publish("rolled", b.as_bytes());
    }
    wait_until(Duration::from_secs(5), "4 in flight, 1 deferred", || {
        let s = stats_of(&nsqd, "rolled", Some("c"));
        nsq_tests::same(
            (&s["in_flight_count"], &s["deferred_count"], &s["depth"]),
            (&4.into(), &1.into(), &108.into()),
        )
    });
    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");

    let (topics, extras) = go_view(nsqd.data_path(), &go_dir);
    assert_eq!(topics, topology(&[("rolled", false, &[("c", false)])]));
    // Our one addition: the deferred message's remaining delay.
    assert_eq!(extras, ["rolled:c.deferred.dat"]);
    assert!(go_read(nsqd.data_path(), "rolled").is_empty());

    // What Go nsqd would deliver: the queue, the new messages, then the
    // in-flight ones (any order, as Go) and the deferred one (at once, in Go).
    let go_sees = go_read(nsqd.data_path(), "rolled:c");
    let names = bodies(&go_sees);
    assert_eq!(go_sees.len(), 105 + 3 + 5, "{names:?}");
    assert_eq!(&go_sees[..105], &disk[65..]);
    assert_eq!(&names[105..108], ["new-1", "new-2", "new-3"]);
    assert!(go_sees[105..108].iter().all(|m| m.attempts == 0));
    let in_flight: BTreeSet<_> = go_sees[108..112].iter().map(|m| m.id).collect();
    assert_eq!(in_flight, held[..4].iter().map(|m| m.id).collect());
    // Each written as nsqd writes it: as delivered (one attempt so far).
    let as_held: BTreeMap<_, _> = held.iter().map(|m| (m.id, m.clone())).collect();
    for m in &go_sees[108..112] {
        assert_eq!(m, &as_held[&m.id]);
    }
    assert_eq!(go_sees[112], held[4]);

    // Our broker reopens it in that same order; the deferred one keeps what
    // is left of its 2 s.
    let mut nsqd = Nsqd::start_in(nsqd.data_dir(), &ROLLED_FLAGS);
    let mut c = consumer(&nsqd, "rolled", "c", 200);
    let got = consume(&mut c, 112);
    assert_msgs(&got, &delivered(&go_sees[..112]));
    assert_msgs(&consume(&mut c, 1), &delivered(&go_sees[112..]));
    let waited = deferred_at.elapsed();
    assert!(waited >= Duration::from_millis(1800), "deferred {waited:?}");
    c.expect_silence(Duration::from_millis(200));
    wait_drained(&nsqd, "rolled", "c");
    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");
    let (_, extras) = go_view(nsqd.data_path(), &go_dir);
    assert_eq!(extras, Vec::<String>::new());
    assert!(go_read(nsqd.data_path(), "rolled:c").is_empty());
}
