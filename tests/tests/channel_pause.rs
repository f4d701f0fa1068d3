//! Pausing and unpausing over HTTP while consumers stay connected.
//!
//! nsqd's `Channel.doPause` calls `client.Pause()`/`UnPause()` on every
//! consumer, which pokes the client's `ReadyStateChan` so its message pump
//! re-checks readiness at once; a topic's pump likewise resumes on unpause.
//! Consumers do not have to send anything for delivery to resume.

use nsq_tests::{Nsqd, V2Client};
use std::time::Duration;

fn consumer(nsqd: &Nsqd, topic: &str, channel: &str) -> V2Client {
    let mut c = nsqd.connect();
    c.subscribe(topic, channel);
    c.rdy(1);
    c
}

#[test]
fn paused_channel_holds_messages_and_unpause_resumes_delivery_to_connected_consumers() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c");
    nsqd.http_post_ok("/channel/pause?topic=t&channel=c");
    nsqd.connect().publish("t", b"held");
    c.expect_silence(Duration::from_millis(500));
    nsqd.http_post_ok("/channel/unpause?topic=t&channel=c");
    let m = c
        .message_within(Duration::from_secs(2))
        .expect("delivery resumes on unpause without the consumer sending anything");
    assert_eq!(m.body, b"held");
}

#[test]
fn paused_topic_holds_messages_and_unpause_resumes_delivery_to_connected_consumers() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c");
    nsqd.http_post_ok("/topic/pause?topic=t");
    nsqd.connect().publish("t", b"held");
    c.expect_silence(Duration::from_millis(500));
    nsqd.http_post_ok("/topic/unpause?topic=t");
    let m = c
        .message_within(Duration::from_secs(2))
        .expect("delivery resumes on unpause without the consumer sending anything");
    assert_eq!(m.body, b"held");
}
