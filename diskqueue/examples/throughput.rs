//! Rough throughput with nsqd's defaults (100 MiB files, sync every 2500
//! operations) and ~230-byte records:
//! `cargo run --release -p nsq-diskqueue --example throughput [records] [sync_every]`.
//! With the default sync_every the numbers mostly measure the disk's fsync.

use nsq_diskqueue::DiskQueue;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let record = vec![0xabu8; 230];
    let open = || {
        DiskQueue::open(
            "bench",
            dir.path(),
            100 * 1024 * 1024,
            26,
            1024 * 1024,
            std::env::args().nth(2).map_or(2500, |s| s.parse().unwrap()),
        )
    };

    let mut dq = open()?;
    let t = Instant::now();
    for _ in 0..n {
        dq.put(&record)?;
    }
    report("put (backlog)", n, t);
    let t = Instant::now();
    let mut got = 0;
    while dq.read_next().is_some() {
        got += 1;
    }
    report("read_next (backlog)", got, t);

    let t = Instant::now();
    for _ in 0..n {
        dq.put(&record)?;
        dq.read_next().ok_or("queue lost a record")?;
    }
    report("put + read_next (reader keeping pace)", n, t);
    dq.delete()?;
    Ok(())
}

fn report(what: &str, n: usize, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    println!("{what:40} {n:>9} records  {:>10.0}/s", n as f64 / secs);
}
