//! Directories laid out by go-diskqueue (bytes built here by hand) are read
//! correctly, and what we leave behind is what Go expects.

mod common;

use common::*;

/// `n` records of 100 bytes, each starting with its index.
fn hundreds(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
    range.map(|i| vec![i; 100]).collect()
}

#[test]
fn go_written_directory_is_read_from_its_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    // go-diskqueue v1.1.0 with maxBytesPerFile=1000: nine 104-byte records fill
    // file 7 (936 bytes), the tenth rolls to file 8. Two records were consumed.
    let msgs = hundreds(0..12);
    std::fs::write(data_file(dir.path(), 7), records(&msgs[..9])).unwrap();
    std::fs::write(data_file(dir.path(), 8), records(&msgs[9..])).unwrap();
    std::fs::write(meta_file(dir.path()), "10\n7,208\n8,312\n").unwrap();

    let mut dq = open(dir.path(), 1000);
    assert_eq!(dq.depth(), 10);
    for (i, m) in msgs[2..].iter().enumerate() {
        assert_eq!(dq.read_next().as_ref(), Some(m));
        assert_eq!(dq.depth(), 9 - i as i64);
    }
    assert_eq!(dq.read_next(), None);
    assert!(
        !data_file(dir.path(), 7).exists(),
        "fully read file is deleted"
    );

    // Appending continues in Go's write file at Go's write position.
    dq.put(&[12; 100]).unwrap();
    dq.close().unwrap();
    assert_eq!(meta_text(dir.path()), "1\n8,312\n8,416\n");
    let mut expected = records(&msgs[9..]);
    expected.extend(record(&[12; 100]));
    assert_eq!(std::fs::read(data_file(dir.path(), 8)).unwrap(), expected);
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn files_from_older_go_that_overshoot_max_bytes_are_read_to_their_end() {
    // go-diskqueue before v1.1.0 rolled *after* the write that crossed the
    // limit, so a finished file can be larger than maxBytesPerFile.
    let dir = tempfile::tempdir().unwrap();
    let msgs = hundreds(0..13);
    std::fs::write(data_file(dir.path(), 0), records(&msgs[..10])).unwrap(); // 1040 > 1000
    std::fs::write(data_file(dir.path(), 1), records(&msgs[10..])).unwrap();
    std::fs::write(meta_file(dir.path()), "13\n0,0\n1,312\n").unwrap();

    let mut dq = open(dir.path(), 1000);
    assert_eq!(drain(&mut dq), msgs);
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn a_smaller_max_bytes_per_file_than_go_used_still_reads_whole_files() {
    // The limit may change between runs; finished files are read by size.
    let dir = tempfile::tempdir().unwrap();
    let msgs = hundreds(0..6);
    std::fs::write(data_file(dir.path(), 0), records(&msgs[..5])).unwrap();
    std::fs::write(data_file(dir.path(), 1), records(&msgs[5..])).unwrap();
    std::fs::write(meta_file(dir.path()), "6\n0,0\n1,104\n").unwrap();

    let mut dq = open(dir.path(), 150);
    assert_eq!(drain(&mut dq), msgs);
    dq.put(&[9; 100]).unwrap();
    dq.put(&[9; 100]).unwrap(); // 104 + 104 > 150: rolls
    dq.close().unwrap();
    // Each put rolled; the reader still stands at the end of file 1.
    assert_eq!(meta_text(dir.path()), "2\n1,104\n3,104\n");
    let mut dq = open(dir.path(), 150);
    assert_eq!(drain(&mut dq), vec![vec![9; 100], vec![9; 100]]);
    assert!(!data_file(dir.path(), 1).exists());
}

#[test]
fn stale_metadata_after_a_go_crash_keeps_every_record() {
    // Go wrote two more records after its last metadata sync, then died.
    let dir = tempfile::tempdir().unwrap();
    let msgs = hundreds(0..5);
    std::fs::write(data_file(dir.path(), 0), records(&msgs)).unwrap();
    std::fs::write(meta_file(dir.path()), "3\n0,0\n0,312\n").unwrap();

    let mut dq = open(dir.path(), 1 << 20);
    // Like go-diskqueue, writing moves to a new file; unlike it, the records
    // past the stale writePos are counted.
    assert_eq!(dq.depth(), 5);
    dq.put(b"new").unwrap();
    let mut expected = msgs.clone();
    expected.push(b"new".to_vec());
    assert_eq!(drain(&mut dq), expected);
    assert_eq!(dq.depth(), 0);
    assert!(std::fs::read(data_file(dir.path(), 1)).unwrap() == record(b"new"));
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn our_directory_reads_like_a_go_directory() {
    // What we leave after close is exactly what a Go reader needs: it seeks to
    // readPos in the read file and stops at writePos in the write file.
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 300);
    let msgs = hundreds(0..7);
    for m in &msgs {
        dq.put(m).unwrap();
    }
    dq.read_next().unwrap();
    dq.close().unwrap();
    // Two 104-byte records per file (208 <= 300 < 312).
    assert_eq!(meta_text(dir.path()), "6\n0,104\n3,104\n");
    for (num, chunk) in msgs.chunks(2).enumerate() {
        assert_eq!(
            std::fs::read(data_file(dir.path(), num as i64)).unwrap(),
            records(chunk)
        );
    }
}
