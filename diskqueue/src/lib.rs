//! A Rust port of [go-diskqueue] v1.1.0, the on-disk overflow queue of nsqd 1.3,
//! reading and writing the very same files: a data directory left by a stopped
//! Go nsqd opens here, and the other way round.
//!
//! # Map
//!
//! - [`record`]: the data file framing (4-byte big-endian length, then bytes),
//!   as pure functions over byte slices; no I/O, fuzzable.
//! - [`metadata`]: the metadata text (`depth\nreadFile,readPos\nwriteFile,writePos\n`),
//!   its parser, and the atomic temp-file + fsync + rename replacement.
//! - [`files`]: file names (`<name>.diskqueue.%06d.dat`, `<name>.diskqueue.meta.dat`,
//!   `<file>.bad`).
//! - `read_cache`: the reader's 64 KiB window over the read file, which also
//!   serves bytes still in the writer's buffer.
//! - [`queue`]: [`DiskQueue`], the state machine: put, read, roll files, sync,
//!   recover from corruption.
//!
//! # Behaviour in brief
//!
//! - **Writing** buffers records ([`queue::WRITE_BUFFER_SIZE`]) and rolls to the
//!   next file *before* a record that would take the file past
//!   `max_bytes_per_file` (a file holding data already; a record larger than the
//!   limit gets a file to itself). The old file is fsynced and the metadata
//!   persisted at every roll.
//! - **Reading** a file that is no longer written stops at its end: its size, or
//!   the writer's position when it rolled away while the reader was on it
//!   (go-diskqueue's `maxBytesPerFileRead`); the fully read file is deleted.
//! - **Corruption** (length outside `[min_msg_size, max_msg_size]`, a truncated
//!   record, an unreadable file): the file is renamed to `<file>.bad`, reading
//!   goes on with the next file, the depth is fixed once the reader reaches the
//!   end; logged with `tracing::error!`, never a panic.
//! - **Sync** (flush, fsync, metadata) every `sync_every` puts + reads, at file
//!   changes, on [`DiskQueue::sync`] (the owner's ticker), `close` and drop.
//!
//! The API is synchronous: one owner (the broker, behind its own lock) calls it.
//! With [`DiskQueue::set_background_sync`], count-based syncs run on shared
//! fsync threads (`bg_sync`) instead of blocking the owner, and publishers that
//! must not be acknowledged before their records are synced wait for a group
//! commit: [`DiskQueue::request_sync`], [`DiskQueue::synced`], [`Synced`].
//!
//! [go-diskqueue]: https://github.com/nsqio/go-diskqueue

mod bg_sync;
pub mod files;
pub mod metadata;
pub mod queue;
mod read_cache;
pub mod record;
pub mod stats;

pub use bg_sync::Synced;
pub use queue::{DiskQueue, DiskQueueError};
