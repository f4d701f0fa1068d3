//! Damaged files and metadata: the bad file is set aside as `.bad`, reading
//! goes on, the depth is repaired, and nothing panics.

mod common;

use common::*;
use nsq_diskqueue::DiskQueue;

#[test]
fn truncated_last_record_beyond_the_saved_write_position_is_set_aside() {
    // A crash tore the last record, which the metadata never counted.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = records(&[b"alpha".to_vec(), b"bravo".to_vec()]);
    let whole = bytes.len();
    bytes.extend(&record(b"charlie")[..6]);
    std::fs::write(data_file(dir.path(), 0), &bytes).unwrap();
    std::fs::write(meta_file(dir.path()), format!("2\n0,0\n0,{whole}\n")).unwrap();

    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(dq.depth(), 2);
    assert_eq!(drain(&mut dq), vec![b"alpha".to_vec(), b"bravo".to_vec()]);
    assert_eq!(dq.depth(), 0);
    assert_eq!(
        bad_files(dir.path()),
        vec![format!("{NAME}.diskqueue.000000.dat.bad")]
    );
    assert_eq!(
        std::fs::read(dir.path().join(&bad_files(dir.path())[0])).unwrap(),
        bytes
    );

    dq.put(b"delta").unwrap();
    assert_eq!(drain(&mut dq), vec![b"delta".to_vec()]);
}

#[test]
fn truncated_record_the_metadata_counted_is_set_aside_and_depth_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let full = records(&[b"alpha".to_vec(), b"bravo".to_vec(), b"charlie".to_vec()]);
    std::fs::write(data_file(dir.path(), 0), &full[..full.len() - 3]).unwrap();
    std::fs::write(meta_file(dir.path()), format!("3\n0,0\n0,{}\n", full.len())).unwrap();

    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(drain(&mut dq), vec![b"alpha".to_vec(), b"bravo".to_vec()]);
    assert_eq!(
        dq.depth(),
        0,
        "depth repaired once the reader reached the end"
    );
    assert_eq!(bad_files(dir.path()).len(), 1);
    dq.close().unwrap();
    let meta = meta_text(dir.path());
    assert!(meta.starts_with("0\n"), "{meta}");
}

#[test]
fn garbage_length_sets_the_file_aside_and_reading_continues_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = record(b"before");
    first.extend(0x7fff_ffffi32.to_be_bytes());
    first.extend(b"whatever follows");
    let second = records(&[b"next-1".to_vec(), b"next-2".to_vec()]);
    std::fs::write(data_file(dir.path(), 0), &first).unwrap();
    std::fs::write(data_file(dir.path(), 1), &second).unwrap();
    std::fs::write(
        meta_file(dir.path()),
        format!("4\n0,0\n1,{}\n", second.len()),
    )
    .unwrap();

    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(
        drain(&mut dq),
        vec![b"before".to_vec(), b"next-1".to_vec(), b"next-2".to_vec()]
    );
    assert_eq!(dq.depth(), 0);
    assert_eq!(
        bad_files(dir.path()),
        vec![format!("{NAME}.diskqueue.000000.dat.bad")]
    );
}

#[test]
fn negative_and_too_small_lengths_are_corruption() {
    for header in [-1i32, -0x7fff_ffff, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(b"good");
        bytes.extend(header.to_be_bytes());
        bytes.extend([0u8; 8]);
        std::fs::write(data_file(dir.path(), 0), &bytes).unwrap();
        std::fs::write(
            meta_file(dir.path()),
            format!("2\n0,0\n0,{}\n", bytes.len()),
        )
        .unwrap();
        let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 3, 100, 100).unwrap();
        assert_eq!(drain(&mut dq), vec![b"good".to_vec()], "header {header}");
        assert_eq!(dq.depth(), 0);
        assert_eq!(bad_files(dir.path()).len(), 1);
    }
}

#[test]
fn huge_length_within_limits_but_beyond_the_file_is_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 0x7fff_fff0i32.to_be_bytes().to_vec();
    bytes.extend(b"tiny");
    std::fs::write(data_file(dir.path(), 0), &bytes).unwrap();
    std::fs::write(meta_file(dir.path()), "1\n0,0\n1,0\n").unwrap();
    let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 0, i32::MAX, 100).unwrap();
    assert_eq!(dq.read_next(), None);
    assert_eq!(dq.depth(), 0);
    assert_eq!(bad_files(dir.path()).len(), 1);
}

#[test]
fn garbage_metadata_recovers_records_from_the_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let msgs: Vec<_> = (0..6).map(msg).collect();
    std::fs::write(data_file(dir.path(), 5), records(&msgs[..4])).unwrap();
    std::fs::write(data_file(dir.path(), 6), records(&msgs[4..])).unwrap();
    std::fs::write(meta_file(dir.path()), b"\xffnot metadata at all").unwrap();

    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(dq.depth(), 6);
    assert!(dq.needs_sync());
    dq.put(b"after").unwrap();
    let mut expected = msgs;
    expected.push(b"after".to_vec());
    assert_eq!(drain(&mut dq), expected);
    dq.close().unwrap();
    assert_eq!(meta_text(dir.path()), "0\n7,9\n7,9\n");
}

#[test]
fn impossible_metadata_positions_are_treated_as_garbage() {
    for meta in [
        "1\n3,0\n1,0\n",
        "1\n0,50\n0,10\n",
        "1\n-1,0\n0,0\n",
        "1\n0,0\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(data_file(dir.path(), 0), record(b"only")).unwrap();
        std::fs::write(meta_file(dir.path()), meta).unwrap();
        let mut dq = open(dir.path(), 1 << 20);
        assert_eq!(drain(&mut dq), vec![b"only".to_vec()], "{meta:?}");
        assert_eq!(dq.depth(), 0);
    }
}

#[test]
fn garbage_metadata_without_data_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(meta_file(dir.path()), "garbage").unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(dq.depth(), 0);
    assert_eq!(dq.read_next(), None);
    dq.put(b"x").unwrap();
    assert_eq!(dq.read_next(), Some(b"x".to_vec()));
}

#[test]
fn missing_data_files_are_skipped_without_a_rename_per_number() {
    let dir = tempfile::tempdir().unwrap();
    let last = records(&[b"survivor".to_vec()]);
    std::fs::write(data_file(dir.path(), 1_000_000), &last).unwrap();
    // Files 2..1_000_000 are gone (deleted by hand, say).
    std::fs::write(
        meta_file(dir.path()),
        format!("40\n2,0\n1000000,{}\n", last.len()),
    )
    .unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(drain(&mut dq), vec![b"survivor".to_vec()]);
    assert_eq!(dq.depth(), 0);
    assert!(bad_files(dir.path()).is_empty());
}

#[test]
fn write_file_shorter_than_its_metadata_moves_writing_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(data_file(dir.path(), 0), record(b"kept")).unwrap();
    std::fs::write(meta_file(dir.path()), "5\n0,0\n0,500\n").unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    dq.put(b"new").unwrap();
    assert_eq!(drain(&mut dq), vec![b"kept".to_vec(), b"new".to_vec()]);
    assert_eq!(dq.depth(), 0);
    // The writer never wrote into the hole past the real end of file 0.
    assert!(!data_file(dir.path(), 0).exists());
    assert_eq!(
        std::fs::read(data_file(dir.path(), 1)).unwrap(),
        record(b"new")
    );
}

#[test]
fn write_file_corruption_moves_the_writer_on_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut dq = open(dir.path(), 1 << 20);
    dq.put(b"one").unwrap();
    dq.put(b"two").unwrap();
    dq.sync().unwrap();
    // Scribble over the second record's length in the file being written.
    let path = data_file(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7..11].copy_from_slice(&(-5i32).to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    drop(dq);

    let mut dq = open(dir.path(), 1 << 20);
    assert_eq!(drain(&mut dq), vec![b"one".to_vec()]);
    assert_eq!(dq.depth(), 0);
    dq.put(b"three").unwrap();
    assert_eq!(drain(&mut dq), vec![b"three".to_vec()]);
    assert_eq!(bad_files(dir.path()).len(), 1);
}

#[test]
fn random_damage_never_panics() {
    let mut rng = Rng(42);
    for round in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for num in 0..3 {
            let mut bytes = records(
                &(0..5)
                    .map(|i| msg(round * 10 + num * 5 + i))
                    .collect::<Vec<_>>(),
            );
            for _ in 0..rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            if rng.below(3) == 0 {
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
            }
            std::fs::write(data_file(dir.path(), num as i64), &bytes).unwrap();
            files.push(bytes.len());
        }
        let meta = match rng.below(4) {
            0 => format!("15\n0,0\n2,{}\n", files[2]),
            1 => format!(
                "{}\n{},{}\n{},{}\n",
                rng.next() as i64,
                rng.below(4),
                rng.below(200),
                rng.below(4),
                rng.below(200)
            ),
            2 => String::from_utf8_lossy(&rng.next().to_le_bytes()).into_owned(),
            _ => format!("3\n1,{}\n2,{}\n", rng.below(100), files[2]),
        };
        std::fs::write(meta_file(dir.path()), meta).unwrap();

        let mut dq = DiskQueue::open(NAME, dir.path(), 1 << 20, 1, 1 << 16, 100).unwrap();
        let got = drain(&mut dq);
        assert!(got.len() <= 15, "round {round}");
        assert_eq!(dq.depth(), 0, "round {round}");
        dq.put(b"still works").unwrap();
        assert_eq!(
            dq.read_next(),
            Some(b"still works".to_vec()),
            "round {round}"
        );
        dq.close().unwrap();
    }
}
