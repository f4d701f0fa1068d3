//! [`DiskQueue`]: a FIFO of byte records in numbered data files plus a
//! metadata file, compatible with go-diskqueue v1.1.0 in both directions.
//!
//! The state is go-diskqueue's five numbers: `depth`, the read position
//! (`read_file_num`, `read_pos`) and the write position (`write_file_num`,
//! `write_pos`). Data between the two positions is unread. go-diskqueue drives
//! them from a goroutine; here the single owner calls the methods directly, and
//! what Go does "on the next loop iteration" (a sync after a file change, the
//! `syncEvery` count) happens before the method returns.

use crate::bg_sync::{self, Pending, Synced};
use crate::files::{self, Paths};
use crate::metadata::{self, Metadata};
use crate::read_cache::{ReadCache, WriterTail, READ_BUFFER_SIZE};
use crate::record::{self, Decoded, RecordError, SizeLimits, HEADER_LEN};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// Bytes of records collected in memory before a `write(2)`.
pub const WRITE_BUFFER_SIZE: usize = 256 * 1024;

/// Written bytes that start writeback early (see `start_writeback`).
const WRITEBACK_CHUNK: i64 = 256 << 10;

/// Above this many file numbers, removing a range scans the directory instead
/// of trying every name (garbage metadata could name billions).
const MAX_REMOVE_BY_NAME: i64 = 4096;

/// Errors from [`DiskQueue::put`].
#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    /// The record is shorter than `min_msg_size` or longer than `max_msg_size`.
    #[error("invalid message write size ({size}) minMsgSize={min} maxMsgSize={max}")]
    InvalidMessageSize { size: usize, min: i32, max: i32 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why the next record could not be read; either way the file is given up.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Corrupt(RecordError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::Corrupt(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// What is at the read position.
enum Next {
    /// A record: its payload starts at `start` in the read cache, and the read
    /// file's readable data ends at `end`.
    Record { start: usize, len: usize, end: i64 },
    /// The read file is finished (it is not the write file).
    EndOfFile,
}

/// A go-diskqueue-compatible on-disk FIFO. See the [crate docs](crate).
pub struct DiskQueue {
    paths: Paths,
    max_bytes_per_file: i64,
    limits: SizeLimits,
    sync_every: i64,

    depth: i64,
    read_file_num: i64,
    read_pos: i64,
    write_file_num: i64,
    write_pos: i64,

    /// The open write file and its number (which may lag `write_file_num`
    /// only inside a roll).
    writer: Option<(i64, BufWriter<File>)>,
    cache: ReadCache,
    /// `(file, end)`: where readable data ends in a file that is no longer
    /// written (go-diskqueue's `maxBytesPerFileRead`). Set when the writer
    /// rolls away from the file being read; otherwise the file's size.
    read_file_end: Option<(i64, i64)>,

    /// Where the data handed to the OS ends (`write_file_num`, `write_pos` at
    /// the last successful flush), and the records put since: what a failed
    /// write takes back.
    flushed: (i64, i64),
    unflushed: i64,
    /// Records put so far (less those taken back): the sequence number of the
    /// last one, which publishers wait on (see [`Self::synced`]).
    put_seq: u64,
    /// Puts and reads since the last sync (go-diskqueue's `count`).
    ops_since_sync: i64,
    /// Records read so far; [`Pending::reads_ok`] says how many of them the
    /// persisted read position covers (the rest a crash delivers again).
    read_seq: u64,
    /// `read_seq` when the last sync was started: reads since then are
    /// covered by no sync, finished or not.
    reads_submitted: u64,
    /// Reads whose records go on to other queues: the owner says when they
    /// are safe there ([`Self::handed_off`]) before a sync may cover them.
    hand_off: bool,
    /// Fully read files kept until what was read from them is handed off.
    spent: Vec<i64>,
    /// Records were written since the last fsync of the write file.
    unsynced_writes: bool,
    /// A data file was created since the directory was last fsynced.
    unsynced_dir: bool,
    /// Where in the write file writeback was last started.
    writeback: i64,
    /// A file change or repair happened; sync now (go-diskqueue's `needSync`).
    need_sync: bool,
    /// `close`/`delete` ran: `Drop` has nothing left to do.
    closed: bool,
    /// Count-based syncs run on the shared fsync thread.
    background_sync: bool,
    bg: Arc<Pending>,
}

impl fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskQueue")
            .field("name", &self.paths.name())
            .field("depth", &self.depth)
            .field("read", &(self.read_file_num, self.read_pos))
            .field("write", &(self.write_file_num, self.write_pos))
            .finish_non_exhaustive()
    }
}

impl DiskQueue {
    /// Opens queue `name` in `data_path`, resuming from its metadata if present.
    ///
    /// Unusable metadata (garbage text, impossible positions) or data files
    /// without metadata are logged and recovered from the data files on disk:
    /// reading restarts at the oldest one, so records may be delivered twice but
    /// are not lost. Fails only on bad arguments or when the metadata file
    /// exists but cannot be read (e.g. permissions); the directory must exist
    /// before the first `put`.
    pub fn open(
        name: &str,
        data_path: &Path,
        max_bytes_per_file: i64,
        min_msg_size: i32,
        max_msg_size: i32,
        sync_every: i64,
    ) -> io::Result<Self> {
        if name.is_empty()
            || max_bytes_per_file <= 0
            || min_msg_size < 0
            || min_msg_size > max_msg_size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid diskqueue parameters: name={name:?} maxBytesPerFile={max_bytes_per_file} \
                     minMsgSize={min_msg_size} maxMsgSize={max_msg_size}"
                ),
            ));
        }
        let mut dq = DiskQueue {
            paths: Paths::new(data_path, name),
            max_bytes_per_file,
            limits: SizeLimits::new(min_msg_size, max_msg_size),
            sync_every,
            depth: 0,
            read_file_num: 0,
            read_pos: 0,
            write_file_num: 0,
            write_pos: 0,
            writer: None,
            cache: ReadCache::default(),
            read_file_end: None,
            flushed: (0, 0),
            unflushed: 0,
            put_seq: 0,
            ops_since_sync: 0,
            read_seq: 0,
            reads_submitted: 0,
            hand_off: false,
            spent: Vec::new(),
            unsynced_writes: false,
            unsynced_dir: false,
            writeback: 0,
            need_sync: false,
            closed: false,
            background_sync: false,
            bg: Arc::new(Pending::default()),
        };
        if let Err(e) = dq.restore() {
            // Never let Drop persist a half-restored state over the metadata.
            dq.closed = true;
            return Err(e);
        }
        dq.mark_flushed();
        Ok(dq)
    }

    /// Appends one record. Records go through a [`WRITE_BUFFER_SIZE`] buffer;
    /// every `sync_every` puts and reads (and at every file roll) the buffer is
    /// flushed, fsynced and the metadata persisted.
    pub fn put(&mut self, data: &[u8]) -> Result<(), DiskQueueError> {
        let size = data.len();
        if !self.limits.accepts(size as i64) {
            return Err(DiskQueueError::InvalidMessageSize {
                size,
                min: self.limits.min,
                max: self.limits.max,
            });
        }
        let total = (HEADER_LEN + size) as i64;
        // go-diskqueue v1.1.0 rolls *before* a record that would not fit, so a
        // file never exceeds max_bytes_per_file unless one record alone does.
        if self.write_pos > 0 && self.write_pos + total > self.max_bytes_per_file {
            if let Err(e) = self.roll_write_file() {
                self.rollback(&e);
                return Err(e.into());
            }
        }
        if self.writer.is_none() {
            if let Err(e) = self.open_writer() {
                self.rollback(&e);
                return Err(e.into());
            }
        }
        let Some((_, w)) = self.writer.as_mut() else {
            return Err(io::Error::other("write file not open").into());
        };
        // `accepts` bounded the size by an i32.
        let res = w
            .write_all(&record::encode_header(size as i32))
            .and_then(|()| w.write_all(data));
        if let Err(e) = res {
            self.rollback(&e);
            return Err(e.into());
        }
        self.write_pos += total;
        self.depth += 1;
        self.unflushed += 1;
        self.put_seq += 1;
        self.ops_since_sync += 1;
        self.unsynced_writes = true;
        // With background syncs the count is checked at `flush`, once per
        // batch, so a sync covers the whole batch.
        if !self.background_sync || self.need_sync {
            self.sync_if_due()?;
        }
        Ok(())
    }

    /// Takes the next record, or `None` when the queue is empty.
    ///
    /// Records still in the write buffer are seen without flushing it. A
    /// corrupt or truncated record makes the whole file unreadable, as in
    /// go-diskqueue: it is renamed to `<file>.bad`, reading moves on to the next
    /// file, and the error is logged; this never panics on file contents.
    ///
    /// Returns an owned `Vec` (one allocation, one copy out of the 64 KiB read
    /// buffer): callers keep record bodies beyond the next call anyway (the
    /// broker turns it into `Bytes` without copying), so a borrowed slice would
    /// only move the copy to them.
    pub fn read_next(&mut self) -> Option<Vec<u8>> {
        loop {
            // go-diskqueue's "is there anything to read" test.
            if !(self.read_file_num < self.write_file_num || self.read_pos < self.write_pos) {
                return None;
            }
            if !self.hand_off {
                self.make_room_for_reads(1);
            }
            match self.next_record() {
                Ok(Next::Record { start, len, end }) => {
                    let data = self.cache.bytes()[start..start + len].to_vec();
                    self.consume((HEADER_LEN + len) as i64, end);
                    return Some(data);
                }
                Ok(Next::EndOfFile) => {
                    self.finish_read_file();
                    self.check_tail_corruption();
                }
                Err(e) => self.handle_read_error(e),
            }
            if !self.hand_off {
                // Only puts can be taken back, and there are none here.
                let _ = self.sync_if_due();
            }
        }
    }

    /// For a queue whose reads go on to other queues (a topic's backlog moving
    /// into its channels): the persisted read position then moves past a
    /// record only at [`Self::handed_off`], never while the record is still
    /// on its way, so a crash can deliver it twice but never lose it.
    pub fn set_hand_off(&mut self, on: bool) {
        self.hand_off = on;
    }

    /// With [`Self::set_hand_off`]: every record read so far is safe where it
    /// went. Syncs as due, and returns how many records may be read before the
    /// next call (at most `next`): after a crash at most `sync_every` (at
    /// least 1) records are read again.
    pub fn handed_off(&mut self, next: usize) -> usize {
        let _ = self.sync_if_due();
        self.make_room_for_reads(next as u64) as usize
    }

    /// Reads not covered by the persisted read position.
    fn read_lag(&self) -> u64 {
        self.read_seq.saturating_sub(self.bg.reads_ok())
    }

    /// Before `next` more reads: waits for (and if need be starts) the sync
    /// that keeps the read lag within `sync_every`, so a crash delivers at
    /// most that many records again. Returns how many reads fit.
    fn make_room_for_reads(&mut self, next: u64) -> u64 {
        let bound = self.sync_every.max(1) as u64;
        let next = next.min(bound);
        while self.read_lag() + next > bound {
            if self.bg.is_busy() {
                self.bg.wait_idle();
                continue;
            }
            if self.background_sync {
                if self.sync_in_background().is_err() {
                    break;
                }
                self.bg.wait_idle();
            } else if self.sync_inline_logged().is_err() {
                break;
            }
            if self.read_lag() + next > bound {
                // That sync failed: reading goes on, as in nsqd.
                break;
            }
        }
        // Start the next sync half-way, so reads seldom wait for it. Reads
        // not yet in any sync decide, so a sync under way costs no lock here.
        let pending = self.read_seq - self.reads_submitted;
        if self.background_sync && pending > 0 && pending + next >= bound / 2 && !self.bg.is_busy()
        {
            let _ = self.sync_in_background();
        }
        next
    }

    /// Records between the read and the write position, as counted by puts and
    /// reads (go-diskqueue's depth). Repaired when the reader reaches the end
    /// of the data, so it can be briefly off after corruption; `read_next`
    /// returning `None` is the authority on emptiness.
    pub fn depth(&self) -> i64 {
        self.depth
    }

    /// Hands count-based syncs to the fsync threads (see `bg_sync`), checked
    /// at each [`flush`](Self::flush) and read: puts never wait for the disk
    /// (publishers that must wait use [`Self::request_sync`]); reads start a
    /// sync half-way through a `sync_every` batch and wait only when the
    /// persisted read position would lag by more than `sync_every` reads.
    pub fn set_background_sync(&mut self, on: bool) {
        self.background_sync = on;
    }

    /// The sequence number of the last record put (1 for the first since
    /// `open`); compare with [`Synced::ok`](crate::Synced).
    pub fn last_put(&self) -> u64 {
        self.put_seq
    }

    /// How far records are synced, updated by every sync: a publisher waits on
    /// it for the sync that covers its records.
    pub fn synced(&self) -> watch::Receiver<Synced> {
        self.bg.subscribe()
    }

    /// The last record known to be synced (no lock, no wake-up).
    pub fn synced_to(&self) -> u64 {
        self.bg.ok()
    }

    /// Group commit: starts a sync covering every record put so far, unless
    /// one is under way (its end wakes the waiters, which ask again) or there
    /// is nothing to sync. Background syncs are used when enabled.
    pub fn request_sync(&mut self) {
        if self.put_seq <= self.bg.ok() || self.bg.is_busy() {
            return;
        }
        // Callers flushed first, so nothing can be taken back here.
        let res = if self.background_sync {
            self.sync_in_background()
        } else {
            self.sync()
        };
        if let Err(e) = res {
            error!("DISKQUEUE({}) failed to sync - {e}", self.paths.name());
        }
    }

    /// Writes buffered records to the OS (no fsync): once this returns they
    /// survive the process dying, as go-diskqueue's per-record writes do.
    ///
    /// On failure every record put since the last successful flush is taken
    /// back (depth, write position, and the bytes already in the file), so
    /// the caller can report the whole batch as failed: nothing half-written
    /// stays behind to be read later.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some((num, w)) = self.writer.as_mut() {
            if let Err(e) = w.flush() {
                self.rollback(&e);
                return Err(e);
            }
            if self.background_sync && *num == self.write_file_num {
                let (from, to) = (self.writeback.max(0), self.write_pos);
                if to - from >= WRITEBACK_CHUNK {
                    start_writeback(w.get_ref(), from, to);
                    self.writeback = to;
                }
            }
        }
        self.mark_flushed();
        if self.background_sync {
            self.sync_if_due()?;
        }
        Ok(())
    }

    /// Flushes the write buffer, fsyncs the write file and persists metadata.
    /// The owner calls this on its `sync_timeout` ticker when [`needs_sync`](Self::needs_sync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.bg.wait_idle();
        if self.bg.take_abandon() {
            self.abandon_writer(&io::Error::other("a background sync failed"));
        }
        // After reads alone only the metadata changed: skip the data fsync.
        let mut data = false;
        if let (true, Some((_, w))) = (self.unsynced_writes, self.writer.as_mut()) {
            if let Err(e) = w.flush() {
                // Nothing newly synced; what was flushed before still can be.
                self.rollback(&e);
                return Err(e);
            }
            self.mark_flushed();
            if let Some((_, w)) = self.writer.as_mut() {
                data = true;
                if let Err(e) = w.get_ref().sync_all() {
                    self.abandon_writer(&e);
                    self.bg
                        .sync_failed(self.put_seq, &format!("failed to sync - {e}"));
                    return Err(e);
                }
            }
        }
        if self.unsynced_dir {
            if let Err(e) = files::sync_dir(self.paths.dir()) {
                self.bg
                    .sync_failed(self.put_seq, &format!("failed to sync - {e}"));
                return Err(e);
            }
            self.unsynced_dir = false;
        }
        self.unsynced_writes = false;
        let res = metadata::persist(&self.paths.meta_file(), &self.metadata());
        crate::stats::count_sync(data);
        if let Err(e) = res {
            self.bg
                .sync_failed(self.put_seq, &format!("failed to persist metadata - {e}"));
            return Err(e);
        }
        self.bg.synced_to(self.put_seq);
        self.bg.reads_synced(self.read_seq);
        self.reads_submitted = self.read_seq;
        self.need_sync = false;
        self.ops_since_sync = 0;
        // The persisted read position is past them now.
        self.remove_spent_files();
        Ok(())
    }

    /// The failure of the last count-based sync on the fsync thread, once.
    pub fn take_sync_failure(&self) -> Option<String> {
        self.bg.take_failure()
    }

    /// Whether anything was written, read or repaired since the last sync.
    pub fn needs_sync(&self) -> bool {
        self.need_sync || self.ops_since_sync > 0
    }

    /// Syncs (flush, fsync, metadata) and closes the files.
    pub fn close(mut self) -> io::Result<()> {
        info!("DISKQUEUE({}): closing", self.paths.name());
        self.closed = true;
        self.sync()
    }

    /// Removes the queue's data files (unread or orphaned) and its metadata;
    /// for a deleted topic or channel. `.bad` files are left for the operator.
    pub fn delete(mut self) -> io::Result<()> {
        info!("DISKQUEUE({}): deleting", self.paths.name());
        self.closed = true;
        self.bg.wait_idle();
        // The records are gone on purpose: nobody waits for them any more.
        self.bg.synced_to(self.put_seq);
        let mut res = self.skip_to_next_rw_file();
        // Files outside the read..write range only exist after corruption or
        // recovery; they belong to this queue all the same.
        match self.paths.existing_data_files() {
            Ok(nums) => {
                for num in nums {
                    if let Err(e) = remove_if_exists(&self.paths.data_file(num)) {
                        error!(
                            "DISKQUEUE({}) failed to remove data file - {e}",
                            self.paths.name()
                        );
                        res = res.and(Err(e));
                    }
                }
            }
            Err(e) => res = res.and(Err(e)),
        }
        if let Err(e) = remove_if_exists(&self.paths.meta_file()) {
            error!(
                "DISKQUEUE({}) failed to remove metadata file - {e}",
                self.paths.name()
            );
            res = res.and(Err(e));
        }
        res
    }

    /// Drops every record, like go-diskqueue's `Empty`: removes the data files
    /// from the read to the write file and the metadata file, then continues
    /// with the next file number, depth 0. Metadata is written again at the
    /// next sync.
    pub fn empty(&mut self) -> io::Result<()> {
        info!("DISKQUEUE({}): emptying", self.paths.name());
        self.bg.wait_idle();
        self.bg.synced_to(self.put_seq);
        // Nothing is left to deliver twice.
        self.bg.reads_synced(self.read_seq);
        self.reads_submitted = self.read_seq;
        let res = self.skip_to_next_rw_file();
        self.remove_spent_files();
        self.ops_since_sync = 0;
        self.need_sync = false;
        if let Err(e) = remove_if_exists(&self.paths.meta_file()) {
            error!(
                "DISKQUEUE({}) failed to remove metadata file - {e}",
                self.paths.name()
            );
            return Err(e);
        }
        res
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            depth: self.depth,
            read_file_num: self.read_file_num,
            read_pos: self.read_pos,
            write_file_num: self.write_file_num,
            write_pos: self.write_pos,
        }
    }

    /// Syncs when `sync_every` operations or a file change call for it. An
    /// error means the records put since the last flush were taken back; a
    /// failed fsync alone reaches the waiters through [`Self::synced`].
    fn sync_if_due(&mut self) -> io::Result<()> {
        // `sync_every <= 0` syncs after every operation, as go-diskqueue's
        // `count == syncEvery` check effectively does for 0.
        let count_due = self.ops_since_sync > 0 && self.ops_since_sync >= self.sync_every;
        if !self.need_sync && count_due && self.background_sync {
            // Busy: the next operation asks again. Puts are bounded by their
            // publishers, who wait for the sync they need, and reads by
            // `make_room_for_reads`.
            return self.sync_in_background();
        }
        if self.need_sync || count_due {
            return self.sync_inline_logged();
        }
        Ok(())
    }

    /// A sync on a worker thread; falls back to an inline sync when the
    /// workers are saturated. An error: the unflushed records were taken back.
    fn sync_in_background(&mut self) -> io::Result<()> {
        if self.bg.is_busy() {
            return Ok(());
        }
        if self.bg.take_abandon() {
            self.abandon_writer(&io::Error::other("a background sync failed"));
        }
        let mut file = None;
        if self.unsynced_writes {
            if let Some((_, w)) = self.writer.as_mut() {
                let cloned = w.flush().map(|()| w.get_ref().try_clone());
                match cloned {
                    Ok(Ok(f)) => file = Some(f),
                    // Descriptors exhausted, say: sync here instead.
                    Ok(Err(_)) => return self.sync_inline_logged(),
                    Err(e) => {
                        self.rollback(&e);
                        return Err(e);
                    }
                }
                self.mark_flushed();
            }
        }
        let job = bg_sync::Job {
            name: self.paths.name().to_owned(),
            file,
            dir: std::mem::take(&mut self.unsynced_dir).then(|| self.paths.dir().to_owned()),
            meta: self.metadata(),
            meta_path: self.paths.meta_file(),
            covers: self.put_seq,
            reads: self.read_seq,
            pending: Arc::clone(&self.bg),
        };
        match bg_sync::submit(job) {
            Ok(()) => {
                self.unsynced_writes = false;
                self.reads_submitted = self.read_seq;
                self.ops_since_sync = 0;
                Ok(())
            }
            Err(job) => {
                self.unsynced_dir |= job.dir.is_some();
                self.sync_inline_logged()
            }
        }
    }

    /// [`Self::sync`], for callers that only report records taken back.
    fn sync_inline_logged(&mut self) -> io::Result<()> {
        let before = self.put_seq;
        match self.sync() {
            Err(e) if self.put_seq < before => Err(e),
            Err(e) => {
                error!("DISKQUEUE({}) failed to sync - {e}", self.paths.name());
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    // ---- writing ----

    /// Moves writing to the next file; the finished file is fsynced and the
    /// metadata persisted, as go-diskqueue does at every roll.
    fn roll_write_file(&mut self) -> io::Result<()> {
        // The finished file's records must be out before the roll is recorded.
        if let Some((_, w)) = self.writer.as_mut() {
            w.flush()?;
        }
        if self.read_file_num == self.write_file_num {
            // The reader cannot learn this file's end from its size while it is
            // being written; from now on it is exactly here.
            self.read_file_end = Some((self.write_file_num, self.write_pos));
        }
        self.write_file_num += 1;
        self.write_pos = 0;
        if let Err(e) = self.sync() {
            error!("DISKQUEUE({}) failed to sync - {e}", self.paths.name());
        }
        self.writer = None;
        Ok(())
    }

    /// Opens (creating) the write file at `write_pos`.
    fn open_writer(&mut self) -> io::Result<()> {
        loop {
            let num = self.write_file_num;
            let path = self.paths.data_file(num);
            let mut opts = OpenOptions::new();
            opts.read(true).write(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let existed = path.exists();
            let mut file = opts.open(&path)?;
            // Its name is only durable once the directory is synced.
            self.unsynced_dir |= !existed;
            let size = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
            if size < self.write_pos {
                // Writing at write_pos would leave a hole of zeros for the
                // reader; let it read what is there and write elsewhere.
                error!(
                    "DISKQUEUE({}) {} is {size} bytes, shorter than writePos {}, skipping to new file",
                    self.paths.name(),
                    path.display(),
                    self.write_pos
                );
                if self.read_file_num == num {
                    self.read_file_end = None;
                }
                self.write_file_num += 1;
                self.write_pos = 0;
                self.need_sync = true;
                continue;
            }
            if size > self.write_pos {
                // Only reachable after corruption (open() already moves past
                // files that outgrew their metadata): the bytes are not ours.
                warn!(
                    "DISKQUEUE({}) {} has {size} bytes beyond writePos {}, truncating",
                    self.paths.name(),
                    path.display(),
                    self.write_pos
                );
                file.set_len(self.write_pos as u64)?;
            }
            if self.write_pos > 0 {
                file.seek(SeekFrom::Start(self.write_pos as u64))?;
            }
            debug!(
                "DISKQUEUE({}): opened {} for writing",
                self.paths.name(),
                path.display()
            );
            self.writeback = self.write_pos;
            self.writer = Some((num, BufWriter::with_capacity(WRITE_BUFFER_SIZE, file)));
            return Ok(());
        }
    }

    /// Gives up the write file after a failed write, flush or fsync. What it
    /// holds is uncertain, so writing continues in a new file and the reader
    /// reads the old one up to its real size (a torn record there makes it
    /// `.bad`, as any corruption).
    fn abandon_writer(&mut self, err: &io::Error) {
        let Some((num, w)) = self.writer.take() else {
            return;
        };
        // Drop the buffered bytes without another write attempt.
        let (file, _unwritten) = w.into_parts();
        error!(
            "DISKQUEUE({}) write to {} failed, abandoning it - {err}",
            self.paths.name(),
            self.paths.data_file(num).display()
        );
        if num != self.write_file_num {
            return;
        }
        if self.write_pos == 0 {
            // No record of ours is in it: start it over instead of leaving an
            // empty file behind (a full disk would otherwise make one per put).
            let _ = file.set_len(0);
        } else {
            if self.read_file_num == num {
                self.read_file_end = None;
            }
            self.write_file_num += 1;
            self.write_pos = 0;
        }
        self.need_sync = true;
        self.mark_flushed();
    }

    /// The data handed to the OS ends here; nothing is pending.
    fn mark_flushed(&mut self) {
        self.flushed = (self.write_file_num, self.write_pos);
        self.unflushed = 0;
    }

    /// Takes back every record put since the last successful flush, after a
    /// write failed part-way: the buffer is dropped, files begun since are
    /// removed and the file being written is cut back to where the flushed
    /// data ends. If it cannot be cut, writing moves on to a new file.
    fn rollback(&mut self, err: &io::Error) {
        let (file_num, pos) = self.flushed;
        error!(
            "DISKQUEUE({}) write failed, taking back {} unflushed records - {err}",
            self.paths.name(),
            self.unflushed
        );
        let writer = self.writer.take().map(|(num, w)| (num, w.into_parts().0));
        for num in file_num + 1..=self.write_file_num {
            if let Err(e) = remove_if_exists(&self.paths.data_file(num)) {
                error!(
                    "DISKQUEUE({}) failed to remove data file - {e}",
                    self.paths.name()
                );
            }
        }
        self.depth -= self.unflushed;
        self.put_seq -= self.unflushed as u64;
        self.writeback = self.writeback.min(pos);
        self.write_file_num = file_num;
        self.write_pos = pos;
        if self.read_file_num == file_num {
            self.read_file_end = None;
        }
        let cut = match writer {
            Some((num, file)) if num == file_num => file.set_len(pos as u64),
            _ => match OpenOptions::new()
                .write(true)
                .open(self.paths.data_file(file_num))
            {
                Ok(file) => file.set_len(pos as u64),
                Err(e) if e.kind() == io::ErrorKind::NotFound && pos == 0 => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = cut {
            error!(
                "DISKQUEUE({}) failed to cut {} back to {pos} - {e}",
                self.paths.name(),
                self.paths.data_file(file_num).display()
            );
            self.write_file_num += 1;
            self.write_pos = 0;
        }
        self.need_sync = true;
        self.mark_flushed();
    }

    // ---- reading ----

    /// Locates the record at the read position, loading it into the cache.
    fn next_record(&mut self) -> Result<Next, ReadError> {
        let num = self.read_file_num;
        let pos = self.read_pos;
        let on_write_file = num == self.write_file_num;
        let end = if on_write_file {
            self.write_pos
        } else {
            self.completed_file_end()?
        };
        if pos >= end {
            // The reader reached the end of a finished file. go-diskqueue only
            // moves on right after a record, so when the writer rolls while the
            // reader is caught up it reads at EOF and renames a healthy file to
            // .bad (go-diskqueue issue #42); moving on here avoids that.
            return Ok(Next::EndOfFile);
        }
        let tail = match &self.writer {
            Some((wnum, w)) if on_write_file && *wnum == num => Some(WriterTail {
                flushed: self.write_pos - w.buffer().len() as i64,
                bytes: w.buffer(),
            }),
            _ => None,
        };
        let available = usize::try_from(end - pos).unwrap_or(usize::MAX);
        let mut need = HEADER_LEN;
        loop {
            if need > available {
                return Err(ReadError::Corrupt(RecordError::Truncated {
                    needed: need,
                    available,
                }));
            }
            let start = self.cache.fill(&self.paths, num, pos, need, end, tail)?;
            let window = &self.cache.bytes()[start..];
            let window = &window[..window.len().min(available)];
            match record::decode_record(window, self.limits) {
                Ok(Decoded::Record { data, .. }) => {
                    return Ok(Next::Record {
                        start: start + HEADER_LEN,
                        len: data.len(),
                        end,
                    })
                }
                Ok(Decoded::Incomplete { needed }) => need = needed,
                Err(e) => return Err(ReadError::Corrupt(e)),
            }
        }
    }

    /// Where readable data ends in the read file, which is no longer written.
    fn completed_file_end(&mut self) -> io::Result<i64> {
        let num = self.read_file_num;
        if let Some((n, end)) = self.read_file_end {
            if n == num {
                return Ok(end);
            }
        }
        let path = self.paths.data_file(num);
        let size = files::file_size(&path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            )
        })?;
        self.read_file_end = Some((num, size));
        Ok(size)
    }

    /// Advances past a record just read (go-diskqueue's `moveForward`).
    fn consume(&mut self, total: i64, end: i64) {
        self.read_pos += total;
        self.depth -= 1;
        self.ops_since_sync += 1;
        self.read_seq += 1;
        if self.read_file_num < self.write_file_num && self.read_pos >= end {
            self.finish_read_file();
        }
        self.check_tail_corruption();
        if !self.hand_off {
            // Only puts can be taken back, and this is a read.
            let _ = self.sync_if_due();
        }
    }

    /// The read file is fully read: delete it and start on the next.
    fn finish_read_file(&mut self) {
        let old = self.read_file_num;
        self.read_file_num += 1;
        self.read_pos = 0;
        self.cache.reset();
        // Sync every time reading moves to a new file, as go-diskqueue does.
        self.need_sync = true;
        if self.hand_off {
            // Its last records may still be on their way.
            self.spent.push(old);
            return;
        }
        self.remove_read_file(old);
    }

    fn remove_spent_files(&mut self) {
        for num in std::mem::take(&mut self.spent) {
            self.remove_read_file(num);
        }
    }

    fn remove_read_file(&self, old: i64) {
        let path = self.paths.data_file(old);
        if let Err(e) = fs::remove_file(&path) {
            error!(
                "DISKQUEUE({}) failed to Remove({}) - {e}",
                self.paths.name(),
                path.display()
            );
        }
    }

    /// Gives up the read file (go-diskqueue's `handleReadError`): rename it to
    /// `.bad` and go on with the next one. Unread records in it are lost; the
    /// depth is repaired when the reader reaches the end of the data.
    fn handle_read_error(&mut self, err: ReadError) {
        let num = self.read_file_num;
        let path = self.paths.data_file(num);
        error!(
            "DISKQUEUE({}) reading at {} of {} - {err}",
            self.paths.name(),
            self.read_pos,
            path.display()
        );
        self.cache.reset();
        self.need_sync = true;

        let missing = matches!(&err, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound);
        if missing && num < self.write_file_num {
            // Nothing to rename. Go would step one number at a time; jumping
            // to the next file present ends the same way without one failed
            // rename per missing number.
            let next = self
                .paths
                .existing_data_files()
                .ok()
                .and_then(|nums| {
                    nums.into_iter()
                        .find(|n| *n > num && *n <= self.write_file_num)
                })
                .unwrap_or(self.write_file_num);
            warn!(
                "DISKQUEUE({}) {} is missing, skipping to file {next}",
                self.paths.name(),
                path.display()
            );
            self.read_file_num = next;
            self.read_pos = 0;
            self.check_tail_corruption();
            return;
        }

        if num == self.write_file_num {
            // The file being written is unreadable: stop writing to it too.
            if let Some((_, mut w)) = self.writer.take() {
                // Keep its bytes for whoever inspects the .bad file.
                let _ = w.flush();
                let _ = w.into_parts();
            }
            self.write_file_num += 1;
            self.write_pos = 0;
        }
        let bad = self.paths.bad_file(num);
        warn!(
            "DISKQUEUE({}) jump to next file and saving bad file as {}",
            self.paths.name(),
            bad.display()
        );
        if let Err(e) = fs::rename(&path, &bad) {
            error!(
                "DISKQUEUE({}) failed to rename bad diskqueue file {} to {} - {e}",
                self.paths.name(),
                path.display(),
                bad.display()
            );
        }
        self.read_file_num += 1;
        self.read_pos = 0;
        self.check_tail_corruption();
    }

    /// At the end of the data the depth must be 0 and the positions equal;
    /// otherwise repair them (go-diskqueue's `checkTailCorruption`).
    fn check_tail_corruption(&mut self) {
        if self.read_file_num < self.write_file_num || self.read_pos < self.write_pos {
            return;
        }
        if self.depth != 0 {
            if self.depth < 0 {
                error!(
                    "DISKQUEUE({}) negative depth at tail ({}), metadata corruption, resetting 0...",
                    self.paths.name(),
                    self.depth
                );
            } else {
                error!(
                    "DISKQUEUE({}) positive depth at tail ({}), data loss, resetting 0...",
                    self.paths.name(),
                    self.depth
                );
            }
            self.depth = 0;
            self.need_sync = true;
        }
        if self.read_file_num != self.write_file_num || self.read_pos != self.write_pos {
            error!(
                "DISKQUEUE({}) read position {},{} past write position {},{}, corruption, \
                 skipping to next writeFileNum and resetting 0...",
                self.paths.name(),
                self.read_file_num,
                self.read_pos,
                self.write_file_num,
                self.write_pos
            );
            if let Err(e) = self.skip_to_next_rw_file() {
                error!(
                    "DISKQUEUE({}) failed to remove data files - {e}",
                    self.paths.name()
                );
            }
            self.need_sync = true;
        }
    }

    /// Discards all data: closes the files, removes data files from the read to
    /// the write file, and restarts both positions at the next file number.
    fn skip_to_next_rw_file(&mut self) -> io::Result<()> {
        self.cache.reset();
        if let Some((_, w)) = self.writer.take() {
            // The data is being thrown away; do not write the buffer out.
            let _ = w.into_parts();
        }
        let res = self.remove_data_files(self.read_file_num, self.write_file_num);
        self.write_file_num = self.write_file_num.max(self.read_file_num) + 1;
        self.write_pos = 0;
        self.read_file_num = self.write_file_num;
        self.read_pos = 0;
        self.read_file_end = None;
        self.depth = 0;
        self.mark_flushed();
        res
    }

    /// Removes data files `lo..=hi`; a missing file is fine, the first other
    /// error is returned after trying them all.
    fn remove_data_files(&self, lo: i64, hi: i64) -> io::Result<()> {
        if hi < lo {
            return Ok(());
        }
        let nums: Vec<i64> = if hi - lo <= MAX_REMOVE_BY_NAME {
            (lo..=hi).collect()
        } else {
            self.paths
                .existing_data_files()?
                .into_iter()
                .filter(|n| (lo..=hi).contains(n))
                .collect()
        };
        let mut res = Ok(());
        for num in nums {
            if let Err(e) = remove_if_exists(&self.paths.data_file(num)) {
                error!(
                    "DISKQUEUE({}) failed to remove data file - {e}",
                    self.paths.name()
                );
                res = res.and(Err(e));
            }
        }
        res
    }

    // ---- start-up ----

    /// Loads the metadata and reconciles it with the files on disk.
    fn restore(&mut self) -> io::Result<()> {
        let meta_path = self.paths.meta_file();
        let meta = match metadata::read(&meta_path)? {
            None => None,
            Some(Ok(m)) => match m.check() {
                Ok(()) => Some(m),
                Err(e) => {
                    error!(
                        "DISKQUEUE({}) failed to retrieveMetaData - {e}",
                        self.paths.name()
                    );
                    None
                }
            },
            Some(Err(e)) => {
                error!(
                    "DISKQUEUE({}) failed to retrieveMetaData - {e}",
                    self.paths.name()
                );
                None
            }
        };
        match meta {
            Some(m) => {
                self.depth = m.depth;
                self.read_file_num = m.read_file_num;
                self.read_pos = m.read_pos;
                self.write_file_num = m.write_file_num;
                self.write_pos = m.write_pos;
            }
            None => self.recover_from_files()?,
        }
        self.check_write_file()?;
        self.check_depth()
    }

    /// Without usable metadata, reads everything from the oldest data file on
    /// and writes after the newest, counting the records for the depth.
    fn recover_from_files(&mut self) -> io::Result<()> {
        let nums = self.paths.existing_data_files()?;
        let (Some(&first), Some(&last)) = (nums.first(), nums.last()) else {
            // A new queue (or nothing to recover): start at file 0.
            return Ok(());
        };
        let mut depth = 0;
        for &num in &nums {
            depth += self.count_records(num, 0, None);
        }
        warn!(
            "DISKQUEUE({}) recovering without metadata: reading files {first}..={last} \
             ({depth} records), writing from file {}",
            self.paths.name(),
            last + 1
        );
        self.depth = depth;
        self.read_file_num = first;
        self.read_pos = 0;
        self.write_file_num = last + 1;
        self.write_pos = 0;
        self.need_sync = true;
        Ok(())
    }

    /// If the write file is not exactly `write_pos` long the metadata is stale
    /// (not synced before a crash). As go-diskqueue does, writing continues in
    /// a new file and the reader reads the old one to its real end; the records
    /// beyond the old `write_pos` are counted into the depth.
    fn check_write_file(&mut self) -> io::Result<()> {
        loop {
            let path = self.paths.data_file(self.write_file_num);
            let size = files::file_size(&path)?.unwrap_or(0);
            if size == self.write_pos {
                return Ok(());
            }
            if size > self.write_pos {
                let extra = self.count_records(self.write_file_num, self.write_pos, Some(size));
                warn!(
                    "DISKQUEUE({}) {} metadata writePos {} < file size of {size}, \
                     skipping to new file ({extra} records past writePos)",
                    self.paths.name(),
                    path.display(),
                    self.write_pos
                );
                self.depth += extra;
            } else {
                error!(
                    "DISKQUEUE({}) {} metadata writePos {} > file size of {size}, data lost, \
                     skipping to new file",
                    self.paths.name(),
                    path.display(),
                    self.write_pos
                );
            }
            self.read_file_end = None;
            self.write_file_num += 1;
            self.write_pos = 0;
            self.need_sync = true;
        }
    }

    /// Repairs a depth that cannot be right: non-zero with nothing to read, or
    /// not positive with something to read (then it is recounted from disk).
    fn check_depth(&mut self) -> io::Result<()> {
        let unread = self.read_file_num < self.write_file_num || self.read_pos < self.write_pos;
        if !unread && self.depth != 0 {
            warn!(
                "DISKQUEUE({}) depth {} with nothing to read, resetting 0",
                self.paths.name(),
                self.depth
            );
            self.depth = 0;
            self.need_sync = true;
        } else if unread && self.depth <= 0 {
            let mut depth = 0;
            for num in self.paths.existing_data_files()? {
                if num < self.read_file_num || num > self.write_file_num {
                    continue;
                }
                let from = if num == self.read_file_num {
                    self.read_pos
                } else {
                    0
                };
                let to = (num == self.write_file_num).then_some(self.write_pos);
                depth += self.count_records(num, from, to);
            }
            warn!(
                "DISKQUEUE({}) depth {} with data to read, recounted {depth}",
                self.paths.name(),
                self.depth
            );
            self.depth = depth;
            self.need_sync = true;
        }
        Ok(())
    }

    /// Counts whole, valid records in data file `num` between `from` and `to`
    /// (default: its size), stopping at the first bad one. Only used at start-up.
    fn count_records(&self, num: i64, from: i64, to: Option<i64>) -> i64 {
        let path = self.paths.data_file(num);
        let open = || -> io::Result<(BufReader<File>, i64)> {
            let mut file = File::open(&path)?;
            let size = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
            file.seek(SeekFrom::Start(from.max(0) as u64))?;
            Ok((BufReader::with_capacity(READ_BUFFER_SIZE, file), size))
        };
        let (mut r, size) = match open() {
            Ok(x) => x,
            Err(e) => {
                warn!(
                    "DISKQUEUE({}) counting records in {} - {e}",
                    self.paths.name(),
                    path.display()
                );
                return 0;
            }
        };
        let to = to.map_or(size, |t| t.min(size));
        let (mut pos, mut n) = (from, 0);
        while to - pos >= HEADER_LEN as i64 {
            let mut header = [0; HEADER_LEN];
            if r.read_exact(&mut header).is_err() {
                break;
            }
            let len = i64::from(record::decode_header(header));
            if !self.limits.accepts(len)
                || pos + HEADER_LEN as i64 + len > to
                || r.seek_relative(len).is_err()
            {
                break;
            }
            pos += HEADER_LEN as i64 + len;
            n += 1;
        }
        n
    }
}

impl Drop for DiskQueue {
    /// An owner that forgot `close` still gets its buffered records written and
    /// the metadata persisted.
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.sync() {
                error!(
                    "DISKQUEUE({}) failed to sync on drop - {e}",
                    self.paths.name()
                );
            }
        }
    }
}

/// Writes handed to the OS start going to disk now, so the fsync that
/// covers them later has less left to do (as RocksDB's `bytes_per_sync`).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: i64, to: i64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
    // Its result does not matter: the fsync reports any failure.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from,
            to - from,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: i64, _: i64) {}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
