//! Background loops: in-flight and deferred deadlines, and diskqueue syncs on
//! `--sync-timeout` (nsqd's queueScanLoop and diskqueue sync ticker).

use crate::nsqd::Nsqd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// nsqd scans every 100 ms too; deadlines are honoured to that precision.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);

pub async fn deadlines(nsqd: Arc<Nsqd>) {
    let mut shutdown = nsqd.shutdown_signal();
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let now = Instant::now();
                for t in nsqd.topics() {
                    t.process_deadlines(now);
                }
            }
        }
    }
}

/// fsync is blocking, so syncs run on a thread of their own.
pub fn spawn_syncer(nsqd: Arc<Nsqd>) -> std::thread::JoinHandle<()> {
    let every = nsqd.opts().sync_timeout.max(Duration::from_millis(10));
    std::thread::Builder::new()
        .name("diskqueue-sync".into())
        .spawn(move || {
            // Parked rather than asleep, so shutdown's unpark ends it at once.
            let mut next = Instant::now() + every;
            while !nsqd.is_exiting() {
                let now = Instant::now();
                if now < next {
                    std::thread::park_timeout(next - now);
                    continue;
                }
                next = now + every;
                for t in nsqd.topics() {
                    t.sync_backends();
                }
            }
        })
        .expect("spawning a thread at start-up")
}
