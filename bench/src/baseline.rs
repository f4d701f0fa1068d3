//! `bench sync-baseline`: what Go nsqd pays per message at `--sync-every=1`,
//! measured on this machine's disk without a Go toolchain. go-diskqueue's
//! ioLoop is one goroutine per queue: for every message it writes the record
//! (one `write`), then, the count having reached 1, syncs: `fsync` of the
//! data file, then the metadata through a temp file (create, write, `fsync`,
//! close, rename). Nothing overlaps, whatever the number of publishers, so
//! this loop's rate is that queue's ceiling.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Runs the sequence for `runfor` in `dir`; returns (messages, elapsed).
pub fn run(dir: &Path, size: usize, runfor: Duration) -> Result<(u64, Duration)> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data_path = dir.join("baseline.diskqueue.000000.dat");
    let meta_path = dir.join("baseline.diskqueue.meta.dat");
    let tmp_path = dir.join("baseline.diskqueue.meta.dat.tmp");
    let mut data = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&data_path)
        .with_context(|| format!("opening {}", data_path.display()))?;
    let mut record = (size as u32).to_be_bytes().to_vec();
    record.resize(4 + size, 0);
    let (mut n, mut pos) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < runfor {
        data.write_all(&record)?;
        pos += record.len() as u64;
        n += 1;
        data.sync_all()?;
        let mut meta = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        write!(meta, "{n}\n0,0\n0,{pos}\n")?;
        meta.sync_all()?;
        drop(meta);
        fs::rename(&tmp_path, &meta_path)?;
    }
    let elapsed = start.elapsed();
    let _ = fs::remove_file(&data_path);
    let _ = fs::remove_file(&meta_path);
    Ok((n, elapsed))
}
