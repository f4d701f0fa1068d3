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
    // read position never lags the real one by more than one batch.
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
            lag <= sync_every * max_record,
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

/// The persisted read position, from the metadata file.
fn persisted_read(dir: &std::path::Path) -> (i64, i64) {
    let text = meta_text(dir);
    let mut it = text.lines().nth(1).unwrap().split(',');
    let file = it.next().unwrap().parse().unwrap();
    let pos = it.next().unwrap().parse().unwrap();
    (file, pos)
}

#[test]
fn with_hand_off_the_read_position_waits_for_the_owner() {
    // A topic's reads go on to its channels: until the owner says they are
    // there, no sync (count-based or file change) may cover them, and the
    // finished file stays on disk.
    let dir = tempfile::tempdir().unwrap();
    let sync_every = 4;
    let body = |i: usize| format!("record-{i:03}").into_bytes();
    let record = 4 + body(0).len() as i64;
    let file0 = dir.path().join(format!("{NAME}.diskqueue.000000.dat"));
    // Three records per file.
    let mut dq = DiskQueue::open(NAME, dir.path(), 3 * record, 0, 1024, sync_every).unwrap();
    for i in 0..12 {
        dq.put(&body(i)).unwrap();
    }
    dq.sync().unwrap();
    dq.set_background_sync(true);
    dq.set_hand_off(true);
    assert_eq!(persisted_read(dir.path()), (0, 0));

    // The owner may read at most sync_every before handing off.
    assert_eq!(dq.handed_off(100), 4);
    for i in 0..4 {
        assert_eq!(dq.read_next().unwrap(), body(i));
    }
    // Past a file boundary and a count-based sync point: nothing persisted.
    assert_eq!(persisted_read(dir.path()), (0, 0));
    assert!(file0.exists());

    // Handed off: the file change syncs at once, and the spent file goes.
    assert_eq!(dq.handed_off(100), 4);
    assert_eq!(persisted_read(dir.path()), (1, record));
    assert!(!file0.exists());

    // Three more reads; handing them off leaves room for one more only
    // until a sync covers them, and the one it starts does.
    for i in 4..7 {
        assert_eq!(dq.read_next().unwrap(), body(i));
    }
    assert_eq!(persisted_read(dir.path()), (1, record));
    assert_eq!(dq.handed_off(1), 1);
    // Asking for more room than is left waits for the sync.
    assert_eq!(dq.handed_off(4), 4);
    assert_eq!(persisted_read(dir.path()), (2, record));
}
