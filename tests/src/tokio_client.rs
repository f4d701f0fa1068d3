//! What the tests that drive crates.io's `tokio-nsq` share.

use std::time::Duration;
use tokio_nsq::{NSQEvent, NSQProducer};

/// Waits (10 s at most) for `n` publish acknowledgements; a failed or closed
/// producer fails the test.
pub async fn await_acks(p: &mut NSQProducer, n: usize) {
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while acked < n {
            match p.consume().await {
                Some(NSQEvent::Ok()) => acked += 1,
                Some(NSQEvent::Unhealthy()) => panic!("producer connection failed"),
                Some(_) => {}
                None => panic!("producer closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {acked} of {n} publishes acknowledged"));
}
