//! kill -9 at a bad moment, then a start on the same `--data-path`: every
//! acknowledged message is delivered, and duplicates stay within one
//! `--sync-every` batch per queue.
//!
//! kill -9 keeps the page cache, so these tests check what the files say
//! (data against metadata), not fsync; `sync_order.rs` checks fsync.

use nsq_tests::inspect::{stats_channel, stats_topic};
use nsq_tests::v2::{mpub_body, Frame, NoFrame};
use nsq_tests::{wait_for, Nsqd};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FRAME_RESPONSE: u32 = 0;

/// Pipelines PUBs (and every fifth command an MPUB of 3) in windows of
/// `window` commands until the connection breaks; returns the bodies of
/// the commands answered `OK`, and counts them in `acked` as they come.
fn publish_until_killed(
    addr: SocketAddr,
    conn: usize,
    window: usize,
    acked: &AtomicUsize,
) -> Vec<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    if s.write_all(b"  V2").is_err() {
        return Vec::new();
    }
    let mut ok = Vec::new();
    for round in 0.. {
        let mut out = Vec::new();
        let mut sent: Vec<Vec<String>> = Vec::new();
        for i in 0..window {
            let n = round * window + i;
            if n % 5 == 4 {
                let bodies: Vec<String> = (0..3).map(|k| format!("c{conn}-{n}-{k}")).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
                let payload = mpub_body(&refs);
                out.extend(b"MPUB t\n");
                out.extend((payload.len() as u32).to_be_bytes());
                out.extend(payload);
                sent.push(bodies);
            } else {
                let b = format!("c{conn}-{n}");
                out.extend(b"PUB t\n");
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(b.as_bytes());
                sent.push(vec![b]);
            }
        }
        if s.write_all(&out).is_err() {
            return ok;
        }
        for bodies in sent {
            match read_frame(&mut r) {
                Some((FRAME_RESPONSE, data)) if data == b"OK" => {
                    acked.fetch_add(bodies.len(), Ordering::Relaxed);
                    ok.extend(bodies);
                }
                Some((t, data)) => panic!(
                    "publisher {conn}: unexpected frame {t}: {:?}",
                    String::from_utf8_lossy(&data)
                ),
                None => return ok,
            }
        }
    }
    unreachable!()
}

/// One frame, or `None` once the connection is gone.
fn read_frame(r: &mut impl Read) -> Option<(u32, Vec<u8>)> {
    let mut head = [0; 8];
    r.read_exact(&mut head).ok()?;
    let size = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let kind = u32::from_be_bytes(head[4..].try_into().unwrap());
    let mut data = vec![0; size.checked_sub(4)?];
    r.read_exact(&mut data).ok()?;
    Some((kind, data))
}

/// Consumes `topic`/`channel` until a second passes with nothing new, FINing
/// everything; returns how often each body came.
fn consume_all(nsqd: &Nsqd, topic: &str, channel: &str) -> BTreeMap<String, usize> {
    let mut c = nsqd.connect();
    c.subscribe(topic, channel);
    c.rdy(1000);
    let mut seen = BTreeMap::new();
    loop {
        match c.next_frame_within(Duration::from_secs(1)) {
            Err(NoFrame::Timeout) => return seen,
            Err(NoFrame::Closed) => panic!("consumer connection closed"),
            Ok(f) if f.is_heartbeat() => c.command("NOP"),
            Ok(Frame::Message(m)) => {
                *seen.entry(m.body_str().to_owned()).or_insert(0) += 1;
                c.fin(&m.id);
            }
            // A record read twice comes with the same ID; FIN of the second
            // copy finds none in flight, as in nsqd.
            Ok(Frame::Error(e)) if e.starts_with(b"E_FIN_FAILED") => {}
            Ok(f) => panic!("unexpected frame {f:?}"),
        }
    }
}

fn duplicates(seen: &BTreeMap<String, usize>) -> usize {
    seen.values().map(|n| n - 1).sum()
}

#[test]
fn kill_9_while_publishers_pipeline_loses_no_acknowledged_message() {
    let mut nsqd = Nsqd::start(&["--mem-queue-size=0", "--sync-every=1"]);
    nsqd.connect().subscribe("t", "c");
    let acked = Arc::new(AtomicUsize::new(0));
    let addr = nsqd.tcp_addr();
    let publishers: Vec<_> = (0..3)
        .map(|conn| {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || publish_until_killed(addr, conn, 64, &acked))
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "2,000 acknowledged messages",
        || (acked.load(Ordering::Relaxed) >= 2_000).then_some(()),
    );
    nsqd.kill();
    let ok: BTreeSet<String> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(ok.len() >= 2_000, "only {} acknowledged", ok.len());

    nsqd.start_again();
    let seen = consume_all(&nsqd, "t", "c");
    let lost: Vec<&String> = ok.iter().filter(|b| !seen.contains_key(*b)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        ok.len(),
        &lost[..lost.len().min(5)]
    );
    // Nothing was consumed before the crash: nothing may come twice.
    assert_eq!(duplicates(&seen), 0, "duplicates after restart");
    // Whatever else came was sent (published, not yet answered).
    assert!(seen.keys().all(|b| b.starts_with('c')), "{seen:?}");
}

/// Publishes `n` numbered bodies to a topic without channels (all on its
/// diskqueue), lets a new channel start draining it, kills the broker
/// mid-drain, and returns what a consumer gets after the restart.
fn kill_mid_drain(n: usize, sync_every: usize) -> (BTreeMap<String, usize>, i64) {
    let mut nsqd = Nsqd::start(&["--mem-queue-size=0", &format!("--sync-every={sync_every}")]);
    let mut p = nsqd.connect();
    let bodies: Vec<String> = (0..n).map(|i| format!("m{i:06}")).collect();
    for chunk in bodies.chunks(500) {
        let refs: Vec<&[u8]> = chunk.iter().map(|b| b.as_bytes()).collect();
        p.mpublish("t", &refs);
    }
    drop(p);

    // SUB creates the channel (RDY 0: everything stays on its disk queue).
    let mut sub = nsqd.connect();
    sub.subscribe("t", "c");
    let topic_left = wait_for(Duration::from_secs(60), "the drain to be under way", || {
        let stats = nsqd.stats();
        let moved = stats_channel(&stats, "t", "c")?["depth"].as_i64()?;
        let left = stats_topic(&stats, "t")?["depth"].as_i64()?;
        (moved >= 1_000).then_some(left)
    });
    nsqd.kill();
    drop(sub);
    nsqd.start_again();
    (consume_all(&nsqd, "t", "c"), topic_left)
}

fn assert_all_delivered(seen: &BTreeMap<String, usize>, n: usize) {
    let missing: Vec<String> = (0..n)
        .map(|i| format!("m{i:06}"))
        .filter(|b| !seen.contains_key(b))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {n} lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), n, "unexpected bodies");
}

#[test]
fn kill_9_while_a_backlog_moves_into_a_new_channel_sync_every_1() {
    let n = 20_000;
    let (seen, topic_left) = kill_mid_drain(n, 1);
    eprintln!(
        "killed with {topic_left} left; {} duplicates",
        duplicates(&seen)
    );
    assert!(topic_left > 0, "the drain had finished before the kill");
    assert_all_delivered(&seen, n);
    // One queue read from (the topic's): at most one record read twice.
    assert!(duplicates(&seen) <= 1, "{} duplicates", duplicates(&seen));
}

#[test]
fn kill_9_while_a_backlog_moves_into_a_new_channel_sync_every_64() {
    let n = 60_000;
    let (seen, topic_left) = kill_mid_drain(n, 64);
    eprintln!(
        "killed with {topic_left} left; {} duplicates",
        duplicates(&seen)
    );
    assert!(topic_left > 0, "the drain had finished before the kill");
    assert_all_delivered(&seen, n);
    assert!(duplicates(&seen) <= 64, "{} duplicates", duplicates(&seen));
}
