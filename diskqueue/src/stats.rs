//! Process-wide counts of the syncs every queue made, for the owner's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

static DATA_SYNCS: AtomicU64 = AtomicU64::new(0);
static METADATA_WRITES: AtomicU64 = AtomicU64::new(0);

/// Totals since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCounts {
    /// fsync/fdatasync calls on data files.
    pub data_syncs: u64,
    /// Metadata files written (each one fsynced before its rename).
    pub metadata_writes: u64,
}

pub fn sync_counts() -> SyncCounts {
    SyncCounts {
        data_syncs: DATA_SYNCS.load(Ordering::Relaxed),
        metadata_writes: METADATA_WRITES.load(Ordering::Relaxed),
    }
}

/// One sync: the data file's when `data`, and the metadata's.
pub(crate) fn count_sync(data: bool) {
    if data {
        DATA_SYNCS.fetch_add(1, Ordering::Relaxed);
    }
    METADATA_WRITES.fetch_add(1, Ordering::Relaxed);
}
