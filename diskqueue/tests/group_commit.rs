//! Group commit: publishers wait on `synced()` for the sync covering their
//! records, started by `request_sync`; count-based syncs keep the metadata
//! within a batch of the data.

mod common;

use common::*;
use nsq_diskqueue::stats::sync_counts;
use nsq_diskqueue::DiskQueue;
use std::time::{Duration, Instant};

fn wait_synced(dq: &DiskQueue, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while dq.synced_to() < seq {
        assert!(Instant::now() < deadline, "never synced to {seq}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_requested_sync_covers_every_record_put_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    dq.set_background_sync(true);
    assert_eq!(dq.last_put(), 0);
    dq.request_sync(); // nothing put: nothing to do
    assert_eq!(dq.synced_to(), 0);
    for i in 0..10 {
        dq.put(&msg(i)).unwrap();
    }
    dq.flush().unwrap();
    assert_eq!(dq.last_put(), 10);
    assert_eq!(dq.synced_to(), 0);
    let rx = dq.synced();
    dq.request_sync();
    wait_synced(&dq, 10);
    assert!(rx.has_changed().unwrap());
    let s = rx.borrow().clone();
    assert_eq!((s.ok, s.failed), (10, 0));
    assert_eq!(s.outcome(1, 10).map(|r| r.is_ok()), Some(true));
    assert_eq!(s.outcome(11, 11), None);
    // The metadata written with it names all ten records.
    let expected: usize = (0..10).map(|i| 4 + msg(i).len()).sum();
    assert_eq!(meta_text(dir.path()), format!("10\n0,0\n0,{expected}\n"));
}

#[test]
fn an_inline_sync_also_moves_the_synced_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    dq.put(b"one").unwrap();
    dq.put(b"two").unwrap();
    dq.request_sync(); // no background: syncs here
    assert_eq!(dq.synced_to(), 2);
    dq.put(b"three").unwrap();
    dq.sync().unwrap();
    assert_eq!(dq.synced_to(), 3);
}

#[test]
fn sync_every_one_syncs_each_put_before_it_returns_without_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 0, 1024, 1).unwrap();
    let before = sync_counts().data_syncs;
    for i in 1..=5u64 {
        dq.put(b"x").unwrap();
        assert_eq!(dq.synced_to(), i);
    }
    assert!(sync_counts().data_syncs >= before + 5);
}

#[test]
fn background_count_syncs_keep_the_metadata_within_a_batch() {
    // Reads pile up fastest; whatever the fsync thread's pace, the persisted
    // read position never lags the real one by more than two batches.
    let dir = tempfile::tempdir().unwrap();
    let sync_every = 10;
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 0, 1024, sync_every).unwrap();
    for i in 0..2000 {
        dq.put(&msg(i)).unwrap();
    }
    dq.sync().unwrap();
    dq.set_background_sync(true);
    let mut read_pos = 0i64;
    for i in 0..2000 {
        let m = dq.read_next().unwrap();
        assert_eq!(m, msg(i));
        read_pos += 4 + m.len() as i64;
        let text = meta_text(dir.path());
        let persisted: i64 = text
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let lag = read_pos - persisted;
        let max_record = 4 + 23 + 15;
        assert!(
            lag <= (2 * sync_every) * max_record,
            "persisted read position {persisted} lags {read_pos} after {i} reads"
        );
    }
}

#[test]
fn records_taken_back_give_their_sequence_numbers_back() {
    // A put that fails (here: too big) is not counted; the next is seq 2.
    let dir = tempfile::tempdir().unwrap();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 0, 8, 1_000).unwrap();
    dq.put(b"ok").unwrap();
    assert!(dq.put(&[0; 9]).is_err());
    dq.put(b"ok2").unwrap();
    assert_eq!(dq.last_put(), 2);
}
