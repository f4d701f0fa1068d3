//! Helpers shared by the integration tests: paths, hand-built records and
//! directory listings.
#![allow(dead_code)]

use nsq_diskqueue::files::{data_file_name, meta_file_name};
use nsq_diskqueue::DiskQueue;
use std::path::{Path, PathBuf};

pub const NAME: &str = "orders:archive";

/// A queue with roomy size limits and no count-based sync in the way.
pub fn open(dir: &Path, max_bytes_per_file: i64) -> DiskQueue {
    DiskQueue::open(NAME, dir, max_bytes_per_file, 0, 1 << 20, 1_000_000).unwrap()
}

pub fn data_file(dir: &Path, num: i64) -> PathBuf {
    dir.join(data_file_name(NAME, num))
}

pub fn meta_file(dir: &Path) -> PathBuf {
    dir.join(meta_file_name(NAME))
}

pub fn meta_text(dir: &Path) -> String {
    std::fs::read_to_string(meta_file(dir)).unwrap()
}

/// One record as go-diskqueue writes it, built by hand.
pub fn record(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// Records concatenated, as in a data file.
pub fn records(msgs: &[Vec<u8>]) -> Vec<u8> {
    msgs.iter().flat_map(|m| record(m)).collect()
}

/// Message `i`, of a length that varies with `i`.
pub fn msg(i: usize) -> Vec<u8> {
    let mut m = format!("message-{i:06}-").into_bytes();
    m.extend(std::iter::repeat_n(b'x', i * 7 % 23));
    m
}

/// Sorted file names in `dir`.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub fn bad_files(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.ends_with(".bad"))
        .collect()
}

pub fn drain(dq: &mut DiskQueue) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| dq.read_next()).collect()
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
