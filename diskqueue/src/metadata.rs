//! The `<name>.diskqueue.meta.dat` file: five numbers as text,
//! `"{depth}\n{readFileNum},{readPos}\n{writeFileNum},{writePos}\n"`, exactly as
//! go-diskqueue prints them, replaced atomically (temp file, fsync, rename).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A queue's persisted position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    pub depth: i64,
    pub read_file_num: i64,
    pub read_pos: i64,
    pub write_file_num: i64,
    pub write_pos: i64,
}

/// Why a metadata file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is not valid text: {0}")]
    Malformed(String),
    #[error("metadata is inconsistent: {0}")]
    Inconsistent(String),
}

impl Metadata {
    /// The file's text, byte-for-byte what go-diskqueue writes.
    pub fn encode(&self) -> String {
        format!(
            "{}\n{},{}\n{},{}\n",
            self.depth, self.read_file_num, self.read_pos, self.write_file_num, self.write_pos
        )
    }

    /// Parses what [`encode`](Self::encode) (or go-diskqueue) wrote. Like Go's
    /// `Fscanf`, spaces around numbers and anything after the third line are
    /// tolerated; a missing final newline is too.
    pub fn parse(text: &[u8]) -> Result<Metadata, MetadataError> {
        let text = std::str::from_utf8(text)
            .map_err(|_| MetadataError::Malformed("not UTF-8".to_string()))?;
        let mut lines = text.split('\n');
        let mut line = |what: &str| {
            lines
                .next()
                .ok_or_else(|| MetadataError::Malformed(format!("missing {what} line")))
        };
        let depth = number(line("depth")?, "depth")?;
        let (read_file_num, read_pos) = pair(line("read position")?, "read position")?;
        let (write_file_num, write_pos) = pair(line("write position")?, "write position")?;
        Ok(Metadata {
            depth,
            read_file_num,
            read_pos,
            write_file_num,
            write_pos,
        })
    }

    /// Rejects positions no queue could be at: negative numbers, or a reader
    /// ahead of the writer. (A wrong depth is repaired elsewhere, not rejected.)
    pub fn check(&self) -> Result<(), MetadataError> {
        let fields = [
            ("readFileNum", self.read_file_num),
            ("readPos", self.read_pos),
            ("writeFileNum", self.write_file_num),
            ("writePos", self.write_pos),
        ];
        if let Some((name, v)) = fields.iter().find(|(_, v)| *v < 0) {
            return Err(MetadataError::Inconsistent(format!(
                "{name} is negative ({v})"
            )));
        }
        let behind = self.read_file_num < self.write_file_num
            || (self.read_file_num == self.write_file_num && self.read_pos <= self.write_pos);
        if !behind {
            return Err(MetadataError::Inconsistent(format!(
                "read position {},{} is past write position {},{}",
                self.read_file_num, self.read_pos, self.write_file_num, self.write_pos
            )));
        }
        Ok(())
    }
}

fn number(s: &str, what: &str) -> Result<i64, MetadataError> {
    s.trim_matches(|c| c == ' ' || c == '\t' || c == '\r')
        .parse()
        .map_err(|_| MetadataError::Malformed(format!("bad {what}: {s:?}")))
}

fn pair(s: &str, what: &str) -> Result<(i64, i64), MetadataError> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| MetadataError::Malformed(format!("bad {what}: {s:?}")))?;
    Ok((number(a, what)?, number(b, what)?))
}

/// Reads `path`: `Ok(None)` when it does not exist, `Ok(Some(Err))` when its
/// contents are unusable, `Err` when it could not be read at all.
pub(crate) fn read(path: &Path) -> io::Result<Option<Result<Metadata, MetadataError>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(Metadata::parse(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `meta` the way go-diskqueue does: write
/// `<path>.<random>.tmp`, fsync it, rename it over `path`. A crash leaves either
/// the old or the new text, never a mix.
pub(crate) fn persist(path: &Path, meta: &Metadata) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", random_u63()));
    let tmp = std::path::PathBuf::from(tmp);

    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    if let Err(e) = f.write_all(meta.encode().as_bytes()) {
        drop(f);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // go-diskqueue ignores a failed fsync here and still renames; so do we,
    // but say so.
    if let Err(e) = f.sync_all() {
        tracing::error!("failed to fsync {} - {e}", tmp.display());
    }
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// A non-negative random number for temp file names, like Go's `rand.Int()`.
fn random_u63() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go_fprintf() {
        let m = Metadata {
            depth: 12,
            read_file_num: 3,
            read_pos: 456,
            write_file_num: 7,
            write_pos: 89,
        };
        assert_eq!(m.encode(), "12\n3,456\n7,89\n");
        assert_eq!(Metadata::parse(m.encode().as_bytes()), Ok(m));
    }

    #[test]
    fn parse_tolerates_what_go_fscanf_tolerates() {
        let m = Metadata::parse(b" -3\n1, 2\n4,5").unwrap();
        assert_eq!(
            m,
            Metadata {
                depth: -3,
                read_file_num: 1,
                read_pos: 2,
                write_file_num: 4,
                write_pos: 5
            }
        );
        assert!(Metadata::parse(b"1\r\n0,0\r\n0,0\r\ntrailing junk").is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\n",
            b"abc\n0,0\n0,0\n",
            b"1\n0;0\n0,0\n",
            b"1\n0,0\n",
            b"\xff\xfe",
            b"99999999999999999999\n0,0\n0,0\n",
        ] {
            assert!(Metadata::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_rejects_impossible_positions() {
        let ok = Metadata {
            depth: 0,
            read_file_num: 1,
            read_pos: 10,
            write_file_num: 1,
            write_pos: 10,
        };
        assert!(ok.check().is_ok());
        assert!(Metadata { read_pos: 11, ..ok }.check().is_err());
        assert!(Metadata {
            read_file_num: 2,
            ..ok
        }
        .check()
        .is_err());
        assert!(Metadata {
            write_pos: -1,
            ..ok
        }
        .check()
        .is_err());
        assert!(Metadata { depth: -5, ..ok }.check().is_ok());
    }
}
