//! Behaviour of a healthy queue: order, file rolls, persistence, sync, size
//! limits, empty and delete.

mod common;

use common::*;
use nsq_diskqueue::{DiskQueue, DiskQueueError};
use std::collections::VecDeque;

#[test]
fn records_round_trip_in_order_across_many_file_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 100);
    let msgs: Vec<_> = (0..300).map(msg).collect();
    for m in &msgs {
        dq.put(m).unwrap();
    }
    assert_eq!(dq.depth(), 300);
    dq.sync().unwrap();
    let data_files = listing(dir.path())
        .iter()
        .filter(|n| n.ends_with(".dat") && !n.contains("meta"))
        .count();
    assert!(
        data_files > 50,
        "only {data_files} files for 300 records at 100 bytes each"
    );

    assert_eq!(drain(&mut dq), msgs);
    assert_eq!(dq.depth(), 0);
    assert!(bad_files(dir.path()).is_empty());
    // Fully read files are deleted; only the file being written remains.
    let left: Vec<_> = listing(dir.path())
        .iter()
        .filter_map(|n| nsq_diskqueue::files::parse_data_file_name(NAME, n))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn written_files_follow_go_diskqueue_roll_rule_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let max = 120;
    let mut dq = open(dir.path(), max);
    let msgs: Vec<_> = (0..60).map(msg).collect();
    // What go-diskqueue v1.1.0 writes: roll before a record that would take a
    // non-empty file past maxBytesPerFile.
    let mut expected: Vec<Vec<u8>> = vec![Vec::new()];
    for m in &msgs {
        let total = 4 + m.len();
        let cur = expected.last().unwrap().len();
        if cur > 0 && cur + total > max as usize {
            expected.push(Vec::new());
        }
        expected.last_mut().unwrap().extend(record(m));
        dq.put(m).unwrap();
    }
    dq.sync().unwrap();
    for (num, bytes) in expected.iter().enumerate() {
        assert_eq!(
            &std::fs::read(data_file(dir.path(), num as i64)).unwrap(),
            bytes,
            "file {num}"
        );
    }
    let last = expected.len() - 1;
    assert_eq!(
        meta_text(dir.path()),
        format!("60\n0,0\n{last},{}\n", expected[last].len())
    );
}

#[test]
fn a_record_larger_than_a_file_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 100 * 1024);
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    dq.put(b"small").unwrap();
    dq.put(&big).unwrap();
    dq.put(b"after").unwrap();
    dq.sync().unwrap();
    assert_eq!(
        std::fs::read(data_file(dir.path(), 0)).unwrap(),
        record(b"small")
    );
    assert_eq!(
        std::fs::read(data_file(dir.path(), 1)).unwrap(),
        record(&big)
    );
    assert_eq!(
        std::fs::read(data_file(dir.path(), 2)).unwrap(),
        record(b"after")
    );
    assert_eq!(
        drain(&mut dq),
        vec![b"small".to_vec(), big, b"after".to_vec()]
    );
}

#[test]
fn reader_keeping_pace_with_writer_across_rolls_never_marks_files_bad() {
    // go-diskqueue issue #42: a caught-up reader used to hit EOF after a roll.
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 64);
    for i in 0..500 {
        dq.put(&msg(i)).unwrap();
        assert_eq!(dq.read_next(), Some(msg(i)));
        assert_eq!(dq.read_next(), None);
        assert_eq!(dq.depth(), 0);
    }
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn reader_sees_records_still_in_the_write_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    for i in 0..100 {
        dq.put(&msg(i)).unwrap();
    }
    // Nothing was flushed yet, and reading must not need it to be.
    assert_eq!(
        std::fs::metadata(data_file(dir.path(), 0)).unwrap().len(),
        0
    );
    for i in 0..50 {
        assert_eq!(dq.read_next(), Some(msg(i)));
    }
    assert_eq!(
        std::fs::metadata(data_file(dir.path(), 0)).unwrap().len(),
        0
    );
    dq.sync().unwrap();
    for i in 100..150 {
        dq.put(&msg(i)).unwrap();
    }
    assert_eq!(drain(&mut dq), (50..150).map(msg).collect::<Vec<_>>());
}

#[test]
fn random_interleaving_matches_a_fifo_model_through_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model = VecDeque::new();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1500, 0, 4096, 50).unwrap();
    let mut next = 0;
    for step in 0..6_000 {
        match rng.below(100) {
            0..=49 => {
                let mut m = msg(next);
                m.resize(rng.below(150) as usize, b'y');
                next += 1;
                dq.put(&m).unwrap();
                model.push_back(m);
            }
            50..=97 => assert_eq!(dq.read_next(), model.pop_front(), "step {step}"),
            98 => dq.sync().unwrap(),
            _ => {
                dq.close().unwrap();
                dq = DiskQueue::open(NAME, dir.path(), 1500, 0, 4096, 50).unwrap();
            }
        }
        assert_eq!(dq.depth(), model.len() as i64, "step {step}");
    }
    assert_eq!(drain(&mut dq), Vec::from(model));
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn reopen_after_close_keeps_depth_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 256);
    for i in 0..50 {
        dq.put(&msg(i)).unwrap();
    }
    for i in 0..10 {
        assert_eq!(dq.read_next(), Some(msg(i)));
    }
    dq.close().unwrap();

    let mut dq = open(dir.path(), 256);
    assert_eq!(dq.depth(), 40);
    assert_eq!(drain(&mut dq), (10..50).map(msg).collect::<Vec<_>>());
    assert_eq!(dq.depth(), 0);
}

#[test]
fn dropping_without_close_still_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut dq = open(dir.path(), 256);
        for i in 0..20 {
            dq.put(&msg(i)).unwrap();
        }
    }
    let mut dq = open(dir.path(), 256);
    assert_eq!(dq.depth(), 20);
    assert_eq!(drain(&mut dq), (0..20).map(msg).collect::<Vec<_>>());
}

#[test]
fn metadata_text_is_exactly_what_go_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 1000);
    for _ in 0..3 {
        dq.put(b"0123456789").unwrap();
    }
    assert_eq!(dq.read_next().as_deref(), Some(&b"0123456789"[..]));
    dq.close().unwrap();
    assert_eq!(
        std::fs::read(meta_file(dir.path())).unwrap(),
        b"2\n0,14\n0,42\n"
    );
    // No temp files left behind.
    assert!(listing(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn sync_happens_every_sync_every_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 0, 1024, 3).unwrap();
    assert!(!dq.needs_sync());
    dq.put(b"a").unwrap();
    dq.put(b"b").unwrap();
    assert!(dq.needs_sync());
    assert!(!meta_file(dir.path()).exists());
    dq.put(b"c").unwrap();
    assert!(!dq.needs_sync());
    assert_eq!(meta_text(dir.path()), "3\n0,0\n0,15\n");
    assert_eq!(
        std::fs::metadata(data_file(dir.path(), 0)).unwrap().len(),
        15
    );
    // Reads count too.
    dq.read_next().unwrap();
    assert!(dq.needs_sync());
    dq.sync().unwrap();
    assert!(!dq.needs_sync());
    assert_eq!(meta_text(dir.path()), "2\n0,5\n0,15\n");
}

#[test]
fn every_roll_persists_metadata_naming_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 20);
    dq.put(&[1; 10]).unwrap();
    assert!(!meta_file(dir.path()).exists());
    dq.put(&[2; 10]).unwrap(); // 14 + 14 > 20: rolls first
    assert_eq!(meta_text(dir.path()), "1\n0,0\n1,0\n");
    assert_eq!(
        std::fs::read(data_file(dir.path(), 0)).unwrap(),
        record(&[1; 10])
    );
}

#[test]
fn records_outside_the_size_limits_are_rejected_on_put() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 5, 10, 100).unwrap();
    for bad in [&[0u8; 4][..], &[0; 11], &[]] {
        match dq.put(bad) {
            Err(DiskQueueError::InvalidMessageSize {
                size,
                min: 5,
                max: 10,
            }) => assert_eq!(size, bad.len()),
            other => panic!("{other:?}"),
        }
    }
    dq.put(&[1; 5]).unwrap();
    dq.put(&[2; 10]).unwrap();
    assert_eq!(dq.depth(), 2);
    assert_eq!(drain(&mut dq), vec![vec![1; 5], vec![2; 10]]);
}

#[test]
fn empty_drops_everything_and_the_queue_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 100);
    for i in 0..100 {
        dq.put(&msg(i)).unwrap();
    }
    for _ in 0..5 {
        dq.read_next().unwrap();
    }
    dq.sync().unwrap();
    let last_file = listing(dir.path())
        .iter()
        .filter_map(|n| nsq_diskqueue::files::parse_data_file_name(NAME, n))
        .max()
        .unwrap();

    dq.empty().unwrap();
    assert_eq!(dq.depth(), 0);
    assert_eq!(dq.read_next(), None);
    assert!(!dq.needs_sync());
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    dq.put(b"fresh").unwrap();
    dq.close().unwrap();
    // Numbering continues after the removed files, as go-diskqueue does.
    let next = last_file + 1;
    assert_eq!(meta_text(dir.path()), format!("1\n{next},0\n{next},9\n"));
    let mut dq = open(dir.path(), 100);
    assert_eq!(drain(&mut dq), vec![b"fresh".to_vec()]);
}

#[test]
fn delete_removes_only_this_queues_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = DiskQueue::open("orders", dir.path(), 100, 0, 1024, 100).unwrap();
    other.put(b"keep me").unwrap();
    other.close().unwrap();
    let others = listing(dir.path());

    let mut dq = open(dir.path(), 100);
    for i in 0..50 {
        dq.put(&msg(i)).unwrap();
    }
    dq.sync().unwrap();
    dq.read_next().unwrap();
    dq.delete().unwrap();
    assert_eq!(listing(dir.path()), others);

    let mut other = DiskQueue::open("orders", dir.path(), 100, 0, 1024, 100).unwrap();
    assert_eq!(drain(&mut other), vec![b"keep me".to_vec()]);
}

#[test]
fn bad_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(DiskQueue::open(NAME, dir.path(), 0, 0, 10, 1).is_err());
    assert!(DiskQueue::open(NAME, dir.path(), 100, 11, 10, 1).is_err());
    assert!(DiskQueue::open("", dir.path(), 100, 0, 10, 1).is_err());
    assert!(listing(dir.path()).is_empty());
}
