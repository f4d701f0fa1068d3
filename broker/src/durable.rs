//! Acknowledging only what is synced (`--sync-every`): each publish that
//! wrote to a diskqueue owes a wait for the sync covering its records, and
//! every publisher waiting at that moment shares one (group commit).
//!
//! With `--sync-every=1` a publisher waits until its own records are synced;
//! with `--sync-every=N` until at most N−1 records of the queue, its own
//! included, are not (nsqd's bound, so the default rarely waits). Publishes
//! that stayed in memory owe nothing, as in nsqd.

use crate::backend::Backend;
use crate::channel::Channel;
use crate::topic::Topic;
use nsq_diskqueue::Synced;
use std::sync::Arc;
use tokio::sync::watch;

/// The queue holding the records: a waiter asks it for the next sync.
#[derive(Clone)]
pub enum Owner {
    Topic(Arc<Topic>),
    Channel(Arc<Channel>),
}

impl Owner {
    fn request_sync(&self) {
        match self {
            Owner::Topic(t) => t.request_sync(),
            Owner::Channel(c) => c.request_sync(),
        }
    }

    fn sync_failed(&self, e: &str) {
        match self {
            Owner::Topic(t) => t.sync_failed(e),
            Owner::Channel(c) => c.sync_failed(e),
        }
    }

    fn same(&self, other: &Owner) -> bool {
        match (self, other) {
            (Owner::Topic(a), Owner::Topic(b)) => Arc::ptr_eq(a, b),
            (Owner::Channel(a), Owner::Channel(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One queue's debt: records from `first` on, acknowledged once `target`
/// is synced.
struct Owed {
    owner: Owner,
    rx: watch::Receiver<Synced>,
    first: u64,
    target: u64,
}

/// What a publish (or a run of pipelined publishes) waits for before its OK.
#[derive(Default)]
#[must_use = "an OK may only be sent once this is waited for"]
pub struct Durable {
    owed: Vec<Owed>,
}

impl Durable {
    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// Records `first..=backend.last_put()` were just flushed to `backend`,
    /// owned by `owner`: owes their sync unless `sync_every` allows the OK
    /// now, and starts that sync. Call with the owner's lock held.
    pub(crate) fn owe(&mut self, owner: Owner, backend: &mut Backend, first: u64, sync_every: i64) {
        let Backend::Disk(dq) = backend else {
            return;
        };
        let last = dq.last_put();
        if last < first {
            return;
        }
        let target = if sync_every <= 1 {
            last
        } else {
            last.saturating_sub(sync_every as u64 - 1)
        };
        if target <= dq.synced_to() {
            return;
        }
        dq.request_sync();
        let owed = Owed {
            rx: dq.synced(),
            owner,
            first,
            target,
        };
        self.add(owed);
    }

    /// Merges with an earlier debt to the same queue: one wait covers both.
    fn add(&mut self, o: Owed) {
        match self.owed.iter_mut().find(|d| d.owner.same(&o.owner)) {
            Some(d) => {
                d.first = d.first.min(o.first);
                d.target = d.target.max(o.target);
            }
            None => self.owed.push(o),
        }
    }

    pub fn append(&mut self, other: Durable) {
        for o in other.owed {
            self.add(o);
        }
    }

    /// Waits until every debt is synced; the first failed sync's error
    /// otherwise. Leaves nothing owed either way.
    pub async fn wait(&mut self) -> Result<(), String> {
        let mut res = Ok(());
        for o in self.owed.drain(..) {
            let r = wait_one(o).await;
            if res.is_ok() {
                res = r;
            }
        }
        res
    }
}

async fn wait_one(mut o: Owed) -> Result<(), String> {
    loop {
        // The guard must go before `request_sync`, which may publish.
        let outcome = o.rx.borrow_and_update().outcome(o.first, o.target);
        match outcome {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => {
                o.owner.sync_failed(&e);
                return Err(e.to_string());
            }
            None => {}
        }
        // A sync under way wakes us when it ends; then we ask for the next.
        o.owner.request_sync();
        if o.rx.changed().await.is_err() {
            // The queue was dropped without a last sync.
            let outcome = o.rx.borrow().outcome(o.first, o.target);
            return match outcome {
                Some(Ok(())) => Ok(()),
                _ => Err("exiting".into()),
            };
        }
    }
}
