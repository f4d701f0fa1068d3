//! Syncs handed to a shared worker thread, so a queue's owner keeps writing
//! while the disk flushes: count-based syncs (every `sync_every` operations)
//! and the group commits publishers ask for ([`crate::DiskQueue::request_sync`]).
//!
//! The owner first writes its buffer to the OS, then passes a duplicate of the
//! file handle and a metadata snapshot. At most one job per queue is under way;
//! every inline sync, `empty`, `delete` and `close` waits for it first, so an
//! older snapshot never lands after a newer one.
//!
//! Each queue publishes how far its records are synced ([`Synced`]) on a
//! `tokio::sync::watch` channel, so any number of publishers can wait for the
//! one sync that covers them.

use crate::metadata::{self, Metadata};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use tokio::sync::watch;

/// Queued jobs before owners fall back to syncing inline.
const QUEUE_LEN: usize = 1024;
/// Worker threads: syncs of different queues (a topic's channels) overlap.
const WORKERS: usize = 4;

/// How far a queue's records are on stable storage, in put sequence numbers
/// ([`crate::DiskQueue::last_put`]).
#[derive(Debug, Clone, Default)]
pub struct Synced {
    /// The highest record covered by a successful sync.
    pub ok: u64,
    /// The highest record covered by a failed sync (0: none).
    pub failed: u64,
    /// Why that sync failed.
    pub error: Option<Arc<str>>,
}

impl Synced {
    /// For a publisher whose records are `first..=last` and which may return
    /// once `target` is synced: `Some(Ok)` when it may, `Some(Err)` when a sync
    /// covering its records failed, `None` while it must wait.
    pub fn outcome(&self, first: u64, target: u64) -> Option<Result<(), Arc<str>>> {
        if self.failed >= first {
            let e = self
                .error
                .clone()
                .unwrap_or_else(|| Arc::from("sync failed"));
            return Some(Err(e));
        }
        (self.ok >= target).then_some(Ok(()))
    }
}

/// Whether a queue has a job under way, and how far it is synced.
#[derive(Debug)]
pub(crate) struct Pending {
    busy: Mutex<bool>,
    idle: Condvar,
    /// The last job's failure, until the owner takes it.
    failed: Mutex<Option<String>>,
    /// A job failed: the owner must give up its write file.
    abandon: AtomicBool,
    synced: watch::Sender<Synced>,
    /// Copy of `synced.ok` readable without the watch's lock.
    ok: AtomicU64,
    /// Reads (the queue's read sequence) covered by the last successful sync:
    /// the persisted read position.
    reads_ok: AtomicU64,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            busy: Mutex::new(false),
            idle: Condvar::new(),
            failed: Mutex::new(None),
            abandon: AtomicBool::new(false),
            synced: watch::Sender::new(Synced::default()),
            ok: AtomicU64::new(0),
            reads_ok: AtomicU64::new(0),
        }
    }
}

impl Pending {
    pub(crate) fn is_busy(&self) -> bool {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, busy: bool) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = busy;
        if !busy {
            self.idle.notify_all();
        }
    }

    pub(crate) fn take_failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn take_abandon(&self) -> bool {
        self.abandon.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn wait_idle(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = self.idle.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Synced> {
        self.synced.subscribe()
    }

    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Acquire)
    }

    pub(crate) fn reads_ok(&self) -> u64 {
        self.reads_ok.load(Ordering::Acquire)
    }

    /// The persisted read position covers `reads` reads.
    pub(crate) fn reads_synced(&self, reads: u64) {
        self.reads_ok.fetch_max(reads, Ordering::AcqRel);
    }

    /// Records up to `seq` are synced.
    pub(crate) fn synced_to(&self, seq: u64) {
        self.synced.send_if_modified(|s| {
            if seq <= s.ok {
                return false;
            }
            s.ok = seq;
            self.ok.store(seq, Ordering::Release);
            true
        });
    }

    /// A sync covering records up to `seq` failed.
    pub(crate) fn sync_failed(&self, seq: u64, e: &str) {
        self.synced.send_modify(|s| {
            s.failed = s.failed.max(seq);
            s.error = Some(Arc::from(e));
        });
    }

    /// Ends a job: waiters see the queue idle before they see the outcome,
    /// so a woken publisher can start the next sync.
    fn finish(&self, covers: u64, reads: u64, res: Result<(), String>) {
        if res.is_ok() {
            self.reads_synced(reads);
        }
        if let Err(e) = &res {
            *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
            self.abandon.store(true, Ordering::Release);
        }
        self.set(false);
        match res {
            Ok(()) => self.synced_to(covers),
            Err(e) => self.sync_failed(covers, &e),
        }
    }
}

pub(crate) struct Job {
    pub name: String,
    /// The write file, when records were written since the last sync.
    pub file: Option<File>,
    /// The data directory, when a data file was created since its last sync.
    pub dir: Option<PathBuf>,
    pub meta: Metadata,
    pub meta_path: PathBuf,
    /// The last record this sync covers.
    pub covers: u64,
    /// The reads its metadata covers.
    pub reads: u64,
    pub pending: Arc<Pending>,
}

fn worker() -> Option<&'static SyncSender<Job>> {
    static TX: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE_LEN);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("diskqueue-fsync-{i}"))
                .spawn(move || work(&rx));
            started += spawned.is_ok() as usize;
        }
        (started > 0).then_some(tx)
    })
    .as_ref()
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        run(job);
    }
}

fn run(job: Job) {
    // Data and metadata are synced side by side, so the file system can
    // commit both at once (the default's throughput on a busy disk is set by
    // this); the waiters need both either way. Metadata landing first is
    // harmless: a restart reads what the data file really holds.
    let (data, meta) = std::thread::scope(|s| {
        let data = (job.file.is_some() || job.dir.is_some()).then(|| {
            s.spawn(|| {
                if let Some(f) = &job.file {
                    f.sync_data()?;
                }
                match &job.dir {
                    Some(dir) => crate::files::sync_dir(dir),
                    None => Ok(()),
                }
            })
        });
        let meta = metadata::persist(&job.meta_path, &job.meta);
        let data = match data.map(|h| h.join()) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("sync thread panicked")),
        };
        (data, meta)
    });
    let mut res = Ok(());
    if let Err(e) = data {
        tracing::error!("DISKQUEUE({}) failed to sync - {e}", job.name);
        res = Err(format!("failed to sync - {e}"));
    }
    if let Err(e) = meta {
        tracing::error!("DISKQUEUE({}) failed to persist metadata - {e}", job.name);
        res = res.and(Err(format!("failed to persist metadata - {e}")));
    }
    crate::stats::count_sync(job.file.is_some());
    job.pending.finish(job.covers, job.reads, res);
}

/// Queues `job`; hands it back when the worker is unavailable or saturated, so
/// the caller syncs inline instead.
pub(crate) fn submit(job: Job) -> Result<(), Box<Job>> {
    let Some(tx) = worker() else {
        return Err(Box::new(job));
    };
    job.pending.set(true);
    match tx.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
            job.pending.set(false);
            Err(Box::new(job))
        }
    }
}
