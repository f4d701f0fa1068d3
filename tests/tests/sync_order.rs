//! "OK after fsync", proven from a syscall trace: with `--sync-every=1` no
//! OK (TCP PUB, MPUB, DPUB, or HTTP `/pub`) leaves the broker before an
//! fsync/fdatasync covering its record has completed on every queue that
//! holds it, and publishers share those syncs (group commit).
//!
//! The broker runs under `strace -f -yy -xx` (installed by scripts/test):
//! record bytes are found in the writes to each diskqueue file, the OKs in
//! the writes to each client's socket, and the order of events is the
//! trace's.

use nsq_tests::strace::{self, Call, Kind};
use nsq_tests::Nsqd;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONNS: usize = 4;
const COMMANDS: usize = 120;
const HTTP_PUBS: usize = 8;
const BODY_LEN: usize = 32;
const MARK: &[u8] = b"sync-order-";

/// A unique, fixed-length body: found again in the data file writes.
fn body(conn: usize, i: usize, k: usize) -> Vec<u8> {
    let mut b = format!("sync-order-c{conn:02}-i{i:04}-k{k}").into_bytes();
    b.resize(BODY_LEN, b'.');
    b
}

/// What one client sent, in order: the bodies of each command.
struct Sent {
    port: u16,
    commands: Vec<Vec<Vec<u8>>>,
}

/// Pipelines every command at once, then reads the answers: all OK.
fn publish_pipelined(addr: SocketAddr, conn: usize) -> Sent {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let port = s.local_addr().unwrap().port();
    let mut out = b"  V2".to_vec();
    let mut commands = Vec::new();
    for i in 0..COMMANDS {
        // Even: "solo" (no channel: the topic's own queue); odd: "fan" (two
        // channels: both queues must be synced).
        let topic = if i % 2 == 0 { "solo" } else { "fan" };
        match i % 10 {
            3 | 8 => {
                let bodies: Vec<Vec<u8>> = (0..3).map(|k| body(conn, i, k)).collect();
                let mut payload = (bodies.len() as u32).to_be_bytes().to_vec();
                for b in &bodies {
                    payload.extend((b.len() as u32).to_be_bytes());
                    payload.extend(b);
                }
                out.extend(format!("MPUB {topic}\n").as_bytes());
                out.extend((payload.len() as u32).to_be_bytes());
                out.extend(payload);
                commands.push(bodies);
            }
            // Deferred on a channel-less topic: stored in the topic's queue.
            6 => {
                let b = body(conn, i, 0);
                out.extend(b"DPUB solo 60000\n");
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(&b);
                commands.push(vec![b]);
            }
            _ => {
                let b = body(conn, i, 0);
                out.extend(format!("PUB {topic}\n").as_bytes());
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(&b);
                commands.push(vec![b]);
            }
        }
    }
    s.write_all(&out).expect("write");
    let mut buf = Vec::new();
    let mut answers = 0;
    let mut chunk = [0u8; 65536];
    while answers < COMMANDS {
        let n = s.read(&mut chunk).expect("read answers");
        assert!(n > 0, "connection {conn} closed after {answers} answers");
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 8 {
            let size = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + size {
                break;
            }
            let frame: Vec<u8> = buf.drain(..4 + size).collect();
            assert_eq!(
                &frame[4..],
                b"\0\0\0\0OK",
                "connection {conn} answer {answers}"
            );
            answers += 1;
        }
    }
    Sent { port, commands }
}

fn http_pub(addr: SocketAddr, b: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let port = s.local_addr().unwrap().port();
    let head = format!(
        "POST /pub?topic=fan HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        b.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    port
}

/// The client's port in `TCP:[local->remote]`.
fn client_port(target: &str) -> Option<u16> {
    let inner = target.strip_prefix("TCP:[")?.strip_suffix(']')?;
    let (_, remote) = inner.split_once("->")?;
    remote.rsplit_once(':')?.1.parse().ok()
}

fn is_data_file(target: &str) -> bool {
    target.contains(".diskqueue.") && target.ends_with(".dat") && !target.contains(".meta.")
}

/// When each body's record was written, per data file: (file, completed).
fn record_writes(calls: &[Call]) -> HashMap<Vec<u8>, Vec<(String, usize)>> {
    let mut out: HashMap<Vec<u8>, Vec<(String, usize)>> = HashMap::new();
    for c in calls.iter().filter(|c| is_data_file(&c.target)) {
        let Kind::Write(bytes) = &c.kind else {
            continue;
        };
        let mut from = 0;
        while let Some(at) = find(&bytes[from..], MARK) {
            let start = from + at;
            let b = bytes[start..(start + BODY_LEN).min(bytes.len())].to_vec();
            out.entry(b)
                .or_default()
                .push((c.target.clone(), c.completed));
            from = start + MARK.len();
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The event at which the first successful sync of `file` begun after
/// `written` completed, if any.
fn synced_at(calls: &[Call], file: &str, written: usize) -> Option<usize> {
    calls
        .iter()
        .filter(|c| c.kind == Kind::Sync && c.target == file && c.ret == Some(0))
        .filter(|c| c.entered > written)
        .map(|c| c.completed)
        .min()
}

/// Per client port: the event of the write holding the first byte of each
/// answer (V2 frames, or an HTTP response).
fn answers(calls: &[Call]) -> HashMap<u16, Vec<usize>> {
    let mut streams: HashMap<u16, Vec<(usize, Vec<u8>)>> = HashMap::new();
    for c in calls {
        if let (Some(port), Kind::Write(bytes)) = (client_port(&c.target), &c.kind) {
            streams
                .entry(port)
                .or_default()
                .push((c.entered, bytes.clone()));
        }
    }
    let mut out = HashMap::new();
    for (port, writes) in streams {
        let mut events = Vec::new();
        if writes[0].1.starts_with(b"HTTP/") {
            events.push(writes[0].0);
            out.insert(port, events);
            continue;
        }
        // Frame boundaries over the concatenated writes.
        let mut owner = Vec::new();
        let mut all = Vec::new();
        for (event, bytes) in &writes {
            owner.extend(std::iter::repeat_n(*event, bytes.len()));
            all.extend_from_slice(bytes);
        }
        let mut at = 0;
        while at + 8 <= all.len() {
            let size = u32::from_be_bytes(all[at..at + 4].try_into().unwrap()) as usize;
            events.push(owner[at]);
            at += 4 + size;
        }
        out.insert(port, events);
    }
    out
}

#[test]
fn no_ok_leaves_before_a_sync_covering_its_record_completes() {
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace");
    let strace_bin = strace::binary();
    let mut wrapper = vec![strace_bin.to_str().unwrap()];
    wrapper.extend(strace::ARGS);
    wrapper.extend(["-o", trace.to_str().unwrap(), "--"]);
    let mut nsqd = Nsqd::start_under(&wrapper, &["--mem-queue-size=0", "--sync-every=1"]);
    nsqd.http_post_ok("/topic/create?topic=solo");
    nsqd.http_post_ok("/topic/create?topic=fan");
    nsqd.http_post_ok("/channel/create?topic=fan&channel=c1");
    nsqd.http_post_ok("/channel/create?topic=fan&channel=c2");

    let tcp = nsqd.tcp_addr();
    let publishers: Vec<_> = (0..CONNS)
        .map(|c| std::thread::spawn(move || publish_pipelined(tcp, c)))
        .collect();
    let http = nsqd.http_addr();
    let mut sent: Vec<Sent> = (0..HTTP_PUBS)
        .map(|i| {
            let b = body(99, i, 0);
            Sent {
                port: http_pub(http, &b),
                commands: vec![vec![b]],
            }
        })
        .collect();
    sent.extend(publishers.into_iter().map(|h| h.join().expect("publisher")));

    // Stop the broker (strace's child) and let strace finish the trace.
    let pid = nsqd.pid().expect("strace runs");
    for child in strace::children(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(child as i32, libc::SIGTERM) };
    }
    nsqd.wait_exit(Duration::from_secs(60));
    let text = std::fs::read_to_string(&trace).expect("read trace");
    let calls = strace::parse(&text);

    let writes = record_writes(&calls);
    let answered = answers(&calls);
    // A new data file's name is durable once its directory is synced: one
    // such sync must complete after the file's first write and before an OK
    // for anything in it.
    let data_dir = std::fs::canonicalize(nsqd.data_path()).unwrap();
    let data_dir = data_dir.to_str().unwrap();
    let mut first_write: HashMap<&str, usize> = HashMap::new();
    for (file, at) in writes.values().flatten() {
        let e = first_write.entry(file.as_str()).or_insert(*at);
        *e = (*e).min(*at);
    }
    let dir_synced: HashMap<&str, usize> = first_write
        .iter()
        .filter_map(|(&file, &at)| {
            calls
                .iter()
                .filter(|c| c.kind == Kind::Sync && c.target == data_dir && c.ret == Some(0))
                .filter(|c| c.entered > at)
                .map(|c| c.completed)
                .min()
                .map(|done| (file, done))
        })
        .collect();
    let mut checked = 0;
    for s in &sent {
        let events = answered
            .get(&s.port)
            .unwrap_or_else(|| panic!("no answers to port {} in the trace", s.port));
        assert_eq!(events.len(), s.commands.len(), "answers to port {}", s.port);
        for (bodies, &ok_at) in s.commands.iter().zip(events) {
            for b in bodies {
                let name = String::from_utf8_lossy(b);
                let files = writes
                    .get(b)
                    .unwrap_or_else(|| panic!("{name}: acknowledged, never written"));
                let want = if is_solo(b) { 1 } else { 2 };
                assert_eq!(files.len(), want, "{name}: written to {files:?}");
                for (file, written) in files {
                    let synced = synced_at(&calls, file, *written).unwrap_or_else(|| {
                        let syncs: Vec<_> = calls
                            .iter()
                            .filter(|c| c.kind == Kind::Sync && &c.target == file)
                            .map(|c| (c.entered, c.completed, c.ret))
                            .collect();
                        panic!(
                            "{name}: written at event {written}, OK at event {ok_at}, \
                             {file} never synced after it; its syncs: {syncs:?}"
                        )
                    });
                    assert!(
                        synced < ok_at,
                        "{name}: OK left at event {ok_at}, before the sync of {file} \
                         covering it completed (event {synced})"
                    );
                    let dir_done = dir_synced.get(file.as_str()).unwrap_or_else(|| {
                        panic!("{data_dir} never synced after {file} was created")
                    });
                    assert!(
                        *dir_done < ok_at,
                        "{name}: OK left at event {ok_at}, before {data_dir} was synced \
                         (event {dir_done}) after {file} was created"
                    );
                    checked += 1;
                }
            }
        }
    }
    let syncs = calls
        .iter()
        .filter(|c| c.kind == Kind::Sync && is_data_file(&c.target))
        .count();
    let records: usize = writes.values().map(Vec::len).sum();
    eprintln!("{checked} record copies checked; {records} written, {syncs} data syncs");
    assert_eq!(checked, records, "every record written was acknowledged");
    // Group commit: far fewer syncs than records.
    assert!(
        syncs * 3 <= records,
        "{syncs} data syncs for {records} records: publishers do not share syncs"
    );
}

/// Bodies of even-numbered V2 commands went to "solo" (HTTP ones to "fan").
fn is_solo(b: &[u8]) -> bool {
    let s = String::from_utf8_lossy(b);
    if s.starts_with("sync-order-c99") {
        return false;
    }
    let at = "sync-order-cNN-i".len();
    let i: usize = s[at..at + 4].parse().unwrap();
    i.is_multiple_of(2)
}
