//! The reader's buffer: a window of one data file's bytes, filled with large
//! positioned reads so a ~230-byte record rarely costs a system call.
//!
//! While the reader is on the file being written, the bytes it wants may still
//! sit in the writer's buffer. They are copied from there (`WriterTail`) rather
//! than forcing a flush, so a reader that keeps pace with the writer costs no
//! system calls at all.

use crate::files::Paths;
use std::fs::File;
use std::io;

/// Bytes asked of the file per refill.
pub(crate) const READ_BUFFER_SIZE: usize = 64 * 1024;

/// A window that grew for one huge record is given back past this size.
const MAX_KEPT_BUFFER: usize = 4 * READ_BUFFER_SIZE;

/// The part of the file being written that is still in the writer's buffer:
/// the stream continues at file offset `flushed` with `bytes`.
#[derive(Clone, Copy)]
pub(crate) struct WriterTail<'a> {
    pub(crate) flushed: i64,
    pub(crate) bytes: &'a [u8],
}

#[derive(Default)]
pub(crate) struct ReadCache {
    /// Allocated lazily; every byte is initialised, only `..valid` is meaningful.
    buf: Vec<u8>,
    valid: usize,
    /// File offset of `buf[0]`.
    offset: i64,
    /// Data file the window (and `file`) belong to.
    file_num: Option<i64>,
    file: Option<File>,
}

impl ReadCache {
    /// Forgets the window and closes the file (a new read file, or the old one
    /// was renamed or deleted).
    pub(crate) fn reset(&mut self) {
        self.valid = 0;
        self.file_num = None;
        self.file = None;
        if self.buf.len() > MAX_KEPT_BUFFER {
            self.buf = Vec::new();
        }
    }

    /// Makes file `num`'s bytes `[pos, pos + need)` available and returns where
    /// they start in [`bytes`](Self::bytes); following bytes up to `limit` (the
    /// end of the readable data) are read too when they fit.
    ///
    /// The caller guarantees `pos + need <= limit`. Hitting the end of the file
    /// before `pos + need` is `UnexpectedEof`.
    pub(crate) fn fill(
        &mut self,
        paths: &Paths,
        num: i64,
        pos: i64,
        need: usize,
        limit: i64,
        tail: Option<WriterTail<'_>>,
    ) -> io::Result<usize> {
        if self.file_num != Some(num) {
            self.reset();
            self.file_num = Some(num);
            self.offset = pos;
        }
        let start = usize::try_from(pos - self.offset).ok();
        if let Some(start) = start {
            if start <= self.valid && self.valid - start >= need {
                return Ok(start);
            }
        }
        // Keep what is still ahead of `pos`, at the front, and refill after it.
        match start {
            Some(start) if start <= self.valid => {
                self.buf.copy_within(start..self.valid, 0);
                self.valid -= start;
            }
            _ => self.valid = 0,
        }
        self.offset = pos;
        let want = need.max(READ_BUFFER_SIZE);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let readable = usize::try_from(limit - pos).unwrap_or(0);
        let target = readable.min(self.buf.len());

        while self.valid < target {
            let cur = self.offset + self.valid as i64;
            match tail {
                Some(t) if cur >= t.flushed => {
                    let from = usize::try_from(cur - t.flushed).unwrap_or(usize::MAX);
                    let avail = t.bytes.get(from..).unwrap_or(&[]);
                    let n = avail.len().min(target - self.valid);
                    if n == 0 {
                        break;
                    }
                    self.buf[self.valid..self.valid + n].copy_from_slice(&avail[..n]);
                    self.valid += n;
                }
                _ => {
                    // From the file, but never past what the writer has flushed.
                    let stop = match tail {
                        Some(t) => {
                            target.min(usize::try_from(t.flushed - self.offset).unwrap_or(0))
                        }
                        None => target,
                    };
                    if self.file.is_none() {
                        self.file = Some(File::open(paths.data_file(num))?);
                    }
                    let Some(file) = self.file.as_ref() else {
                        break;
                    };
                    let n = match read_at(file, &mut self.buf[self.valid..stop], cur as u64) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        break;
                    }
                    self.valid += n;
                }
            }
        }
        if self.valid < need {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "file ends at {} before the record's end at {}",
                    self.offset + self.valid as i64,
                    pos + need as i64
                ),
            ));
        }
        Ok(0)
    }

    /// The window's bytes, as positioned by the last [`fill`](Self::fill).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.valid]
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}
