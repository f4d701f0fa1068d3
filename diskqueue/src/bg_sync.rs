//! Count-based syncs (every `sync_every` operations) handed to a shared worker
//! thread, so a queue's owner keeps writing while the disk flushes.
//!
//! The owner first writes its buffer to the OS, then passes a duplicate of the
//! file handle and a metadata snapshot. At most one job per queue is under way;
//! every inline sync, `empty`, `delete` and `close` waits for it first, so an
//! older snapshot never lands after a newer one.

use crate::metadata::{self, Metadata};
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Queued jobs before owners fall back to syncing inline.
const QUEUE_LEN: usize = 1024;

/// Whether a queue has a job under way.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    busy: Mutex<bool>,
    idle: Condvar,
    /// The last job's failure, until the owner takes it.
    failed: Mutex<Option<String>>,
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

    fn fail(&self, e: String) {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    pub(crate) fn wait_idle(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = self.idle.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) struct Job {
    pub name: String,
    /// The write file, when records were written since the last sync.
    pub file: Option<File>,
    pub meta: Metadata,
    pub meta_path: PathBuf,
    pub pending: Arc<Pending>,
}

fn worker() -> Option<&'static SyncSender<Job>> {
    static TX: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE_LEN);
        std::thread::Builder::new()
            .name("diskqueue-fsync".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    run(job);
                }
            })
            .ok()
            .map(|_| tx)
    })
    .as_ref()
}

fn run(job: Job) {
    if let Some(f) = &job.file {
        if let Err(e) = f.sync_data() {
            tracing::error!("DISKQUEUE({}) failed to sync - {e}", job.name);
            job.pending.fail(format!("failed to sync - {e}"));
        }
    }
    if let Err(e) = metadata::persist(&job.meta_path, &job.meta) {
        tracing::error!("DISKQUEUE({}) failed to persist metadata - {e}", job.name);
        job.pending
            .fail(format!("failed to persist metadata - {e}"));
    }
    job.pending.set(false);
}

/// Queues `job`; hands it back when the worker is unavailable or saturated, so
/// the caller syncs inline instead.
pub(crate) fn submit(job: Job) -> Result<(), Job> {
    let Some(tx) = worker() else {
        return Err(job);
    };
    job.pending.set(true);
    match tx.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
            job.pending.set(false);
            Err(job)
        }
    }
}
