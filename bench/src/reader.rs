//! `bench reader`: the equivalent of NSQ's `bench_reader`. Before the start each
//! connection sends the magic, `IDENTIFY` (with `feature_negotiation`) and `SUB`, and waits
//! for both answers. At the start it sends `RDY --rdy`, then FINs every message it
//! receives (all FINs for one socket read go out in one write) and answers heartbeats with
//! NOP, until `--runfor` is up, when it just closes the connection like the Go tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

use crate::conn::{dial, negotiate, Features, Link};
use crate::protocol::{identify_command, put_fin, rdy_command, sub_command, Frame, ReadBuf, NOP};
use crate::recorder::{Counters, Run};

/// Receive buffer per connection: room for thousands of messages per read.
const READ_BUF: usize = 1 << 20;
/// Error frames logged per connection before only counting them.
const LOGGED_ERRORS: u64 = 10;

/// What every reader connection shares.
pub struct Plan {
    pub topic: String,
    pub channel: String,
    pub rdy: u64,
    /// Extra IDENTIFY fields (`output_buffer_size`, ...), already JSON values.
    pub identify_extra: serde_json::Map<String, serde_json::Value>,
    pub features: Features,
}

/// A subscribed connection waiting for its `RDY`.
pub struct Subscribed {
    stream: Link,
    rb: ReadBuf,
    /// The broker's `max_rdy_count` when it negotiated features.
    pub max_rdy_count: Option<u64>,
}

/// The IDENTIFY body: who we are, plus `feature_negotiation` so the broker answers in JSON.
pub fn identify_body(
    client_id: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "nsq-bench".to_string());
    let mut body = serde_json::Map::new();
    body.insert("client_id".into(), client_id.into());
    body.insert("hostname".into(), hostname.into());
    body.insert(
        "user_agent".into(),
        format!("nsq-bench/{}", env!("CARGO_PKG_VERSION")).into(),
    );
    body.insert("feature_negotiation".into(), true.into());
    body.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    serde_json::to_vec(&body).expect("a JSON map serializes")
}

/// What the IDENTIFY answer tells us: `Ok(max_rdy_count)`, or an error when the broker
/// requires AUTH, which this tool does not send.
pub fn check_identify_response(v: &serde_json::Value) -> Result<Option<u64>> {
    if v.get("auth_required").and_then(|f| f.as_bool()) == Some(true) {
        bail!("broker requires AUTH, which nsq-bench does not send");
    }
    Ok(v.get("max_rdy_count").and_then(|m| m.as_u64()))
}

pub async fn subscribe(
    addr: &str,
    timeout: Duration,
    conn: usize,
    plan: &Plan,
) -> Result<Subscribed> {
    let mut rb = ReadBuf::new(READ_BUF);
    let mut identify = plan.identify_extra.clone();
    plan.features.ask(&mut identify);
    let identify = identify_body(&format!("bench_reader-{conn}"), &identify);
    let (mut stream, mut max_rdy_count, mut answers) = if plan.features.any() {
        // The upgrades come before anything else, so SUB waits for them.
        let (mut link, v) = negotiate(addr, timeout, &identify, &plan.features, &mut rb).await?;
        let max = check_identify_response(&v)?;
        link.write_all(&sub_command(&plan.topic, &plan.channel))
            .await?;
        (link, max, 1)
    } else {
        let mut prologue = identify_command(&identify);
        prologue.extend_from_slice(&sub_command(&plan.topic, &plan.channel));
        (dial(addr, timeout, &prologue).await?, None, 0)
    };
    while answers < 2 {
        stream.fill(&mut rb).await?;
        while let Some(frame) = rb.next_frame()? {
            let step = if answers == 0 { "IDENTIFY" } else { "SUB" };
            match frame {
                Frame::Ok => answers += 1,
                Frame::Response(r) if answers == 0 => {
                    let v: serde_json::Value = serde_json::from_slice(r)
                        .context("IDENTIFY response is neither OK nor JSON")?;
                    max_rdy_count = check_identify_response(&v)?;
                    answers += 1;
                }
                Frame::Heartbeat => stream.write_all(NOP).await?,
                Frame::Error(e) => bail!("{step} failed: {}", String::from_utf8_lossy(e)),
                Frame::Response(r) => {
                    bail!(
                        "unexpected {step} response {:?}",
                        String::from_utf8_lossy(r)
                    )
                }
                Frame::Message(_) => bail!("message before RDY"),
            }
        }
    }
    Ok(Subscribed {
        stream,
        rb,
        max_rdy_count,
    })
}

/// Tallies of one read batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub msgs: u64,
    pub bytes: u64,
    pub heartbeats: u64,
}

/// Consumes every complete frame: appends a FIN per message and a NOP per heartbeat to
/// `out`, and hands error frames and other responses to `on_other`.
pub fn take_frames(
    rb: &mut ReadBuf,
    out: &mut Vec<u8>,
    mut on_other: impl FnMut(Frame<'_>),
) -> Result<Batch> {
    let mut batch = Batch::default();
    while let Some(frame) = rb.next_frame()? {
        match frame {
            Frame::Message(m) => {
                put_fin(out, &m.id);
                batch.msgs += 1;
                batch.bytes += m.body.len() as u64;
            }
            Frame::Heartbeat => {
                out.extend_from_slice(NOP);
                batch.heartbeats += 1;
            }
            other => on_other(other),
        }
    }
    Ok(batch)
}

/// Consumes until `end` or until `stop` turns true.
pub async fn consume(
    sub: Subscribed,
    conn: usize,
    plan: Arc<Plan>,
    end: Instant,
    counters: Arc<Counters>,
    run: Arc<Run>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let Subscribed {
        mut stream, mut rb, ..
    } = sub;
    stream.write_all(&rdy_command(plan.rdy)).await?;
    let mut out = Vec::with_capacity(64 << 10);
    let deadline = tokio::time::sleep_until(end.into());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = stream.fill(&mut rb) => r?,
            _ = &mut deadline => return Ok(()),
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let batch = take_frames(&mut rb, &mut out, |frame| {
            note_other(conn, frame, &counters, &run)
        })?;
        if batch.msgs > 0 {
            counters.add(batch.msgs, batch.bytes);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Error frames (e.g. `E_FIN_FAILED`) are counted and the first few logged; a fatal one
/// is followed by the broker closing the connection, which ends the task. Other
/// responses (`CLOSE_WAIT`, ...) only go to the flight recorder.
fn note_other(conn: usize, frame: Frame<'_>, counters: &Counters, run: &Run) {
    match frame {
        Frame::Error(e) => {
            let n = counters.error_frame();
            if n <= LOGGED_ERRORS {
                run.warn(format!("conn {conn}: {}", String::from_utf8_lossy(e)));
            }
        }
        Frame::Response(r) => run.event(format!(
            "conn {conn}: response {:?}",
            String::from_utf8_lossy(r)
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use nsq_common::wire::{put_frame, put_message_frame, FRAME_TYPE_ERROR, FRAME_TYPE_RESPONSE};

    #[test]
    fn each_read_batch_becomes_one_buffer_of_fins_and_nops() {
        let mut b = BytesMut::new();
        put_message_frame(&mut b, 1, 1, b"000000000000000a", &[0; 200]);
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"_heartbeat_");
        put_frame(&mut b, FRAME_TYPE_ERROR, b"E_FIN_FAILED nope");
        put_message_frame(&mut b, 1, 1, b"000000000000000b", &[0; 100]);
        // A partial third message stays buffered for the next read.
        let mut partial = BytesMut::new();
        put_message_frame(&mut partial, 1, 1, b"000000000000000c", &[0; 50]);
        b.extend_from_slice(&partial[..30]);

        let mut rb = ReadBuf::new(4096);
        rb.spare()[..b.len()].copy_from_slice(&b);
        rb.filled(b.len());
        let mut out = Vec::new();
        let mut others = Vec::new();
        let batch = take_frames(&mut rb, &mut out, |f| others.push(format!("{f:?}"))).unwrap();
        assert_eq!(
            batch,
            Batch {
                msgs: 2,
                bytes: 300,
                heartbeats: 1
            }
        );
        assert_eq!(out, b"FIN 000000000000000a\nNOP\nFIN 000000000000000b\n");
        assert_eq!(others.len(), 1);
        assert!(others[0].starts_with("Error("));

        let rest = &partial[30..];
        rb.spare()[..rest.len()].copy_from_slice(rest);
        rb.filled(rest.len());
        out.clear();
        let batch = take_frames(&mut rb, &mut out, |_| {}).unwrap();
        assert_eq!((batch.msgs, batch.bytes), (1, 50));
        assert_eq!(out, b"FIN 000000000000000c\n");
    }

    #[test]
    fn identify_answers_are_checked() {
        let ok = serde_json::json!({"max_rdy_count":2500,"tls_v1":true,"snappy":true});
        assert_eq!(check_identify_response(&ok).unwrap(), Some(2500));
        let auth = serde_json::json!({"auth_required":true});
        assert!(check_identify_response(&auth).is_err());
    }

    #[test]
    fn identify_body_negotiates_features_and_carries_extras() {
        let mut extra = serde_json::Map::new();
        extra.insert("output_buffer_size".into(), 65536.into());
        let v: serde_json::Value =
            serde_json::from_slice(&identify_body("bench_reader-3", &extra)).unwrap();
        assert_eq!(v["feature_negotiation"], true);
        assert_eq!(v["client_id"], "bench_reader-3");
        assert_eq!(v["output_buffer_size"], 65536);
    }
}
