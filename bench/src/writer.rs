//! `bench writer`: the equivalent of NSQ's `bench_writer`. Each connection sends the
//! magic, then the same prebuilt `MPUB` batch over and over, counting a batch's messages
//! when its `OK` arrives. With `--outstanding 1` (the default, as in the Go tool) it waits
//! for each `OK` before the next MPUB; with more it keeps that many MPUBs in flight. After
//! `--runfor` it sends nothing new and waits for the outstanding `OK`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::sync::watch;

use crate::conn::{dial, negotiate, Features, Link};
use crate::protocol::{Frame, ReadBuf, NOP};
use crate::recorder::Counters;

/// Receive buffer per connection; responses are 10-byte `OK` frames.
const READ_BUF: usize = 64 << 10;

/// What every writer connection shares.
pub struct Plan {
    /// The whole `MPUB` command, built once.
    pub command: Vec<u8>,
    pub batch_size: u64,
    pub size: u64,
    pub outstanding: usize,
}

/// Like the Go tool, just the magic; with features, an IDENTIFY asking for them first.
pub async fn connect(
    addr: &str,
    timeout: Duration,
    conn: usize,
    features: &Features,
) -> Result<(Link, ReadBuf)> {
    let mut rb = ReadBuf::new(READ_BUF);
    if !features.any() {
        return Ok((dial(addr, timeout, &[]).await?, rb));
    }
    let mut identify = serde_json::Map::new();
    identify.insert("client_id".into(), format!("bench_writer-{conn}").into());
    identify.insert("feature_negotiation".into(), true.into());
    features.ask(&mut identify);
    let body = serde_json::to_vec(&identify)?;
    let (link, _) = negotiate(addr, timeout, &body, features, &mut rb).await?;
    Ok((link, rb))
}

/// Publishes until `end` (or until `stop` turns true, when outstanding `OK`s are abandoned).
pub async fn publish(
    (mut stream, mut rb): (Link, ReadBuf),
    plan: Arc<Plan>,
    end: Instant,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut in_flight = 0usize;
    loop {
        if Instant::now() < end && !*stop.borrow() {
            while in_flight < plan.outstanding {
                stream.write_all(&plan.command).await?;
                in_flight += 1;
            }
        }
        if in_flight == 0 {
            return Ok(());
        }
        tokio::select! {
            r = stream.fill(&mut rb) => r?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let (acked, nop) = take_responses(&mut rb, &mut in_flight)?;
        if acked > 0 {
            let msgs = acked * plan.batch_size;
            counters.add(msgs, msgs * plan.size);
        }
        if nop {
            stream.write_all(NOP).await?;
        }
    }
}

/// Consumes every complete frame: returns the number of `OK`s (each retiring one in-flight
/// MPUB) and whether a heartbeat needs a NOP. Anything else ends the connection, as a
/// panic does in the Go tool.
pub fn take_responses(rb: &mut ReadBuf, in_flight: &mut usize) -> Result<(u64, bool)> {
    let (mut acked, mut nop) = (0u64, false);
    while let Some(frame) = rb.next_frame()? {
        match frame {
            Frame::Ok if *in_flight > 0 => {
                *in_flight -= 1;
                acked += 1;
            }
            Frame::Ok => bail!("OK with no MPUB outstanding"),
            Frame::Heartbeat => nop = true,
            Frame::Error(e) => bail!("broker error: {}", String::from_utf8_lossy(e)),
            Frame::Response(r) => bail!("unexpected response {:?}", String::from_utf8_lossy(r)),
            Frame::Message(_) => bail!("unexpected message on a publishing connection"),
        }
    }
    Ok((acked, nop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use nsq_common::wire::{put_frame, FRAME_TYPE_ERROR, FRAME_TYPE_RESPONSE};

    fn load(rb: &mut ReadBuf, bytes: &[u8]) {
        rb.spare()[..bytes.len()].copy_from_slice(bytes);
        rb.filled(bytes.len());
    }

    #[test]
    fn oks_retire_outstanding_batches_and_heartbeats_ask_for_nop() {
        let mut b = BytesMut::new();
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"OK");
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"_heartbeat_");
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"OK");
        let mut rb = ReadBuf::new(1024);
        // Half of the last OK arrives later.
        load(&mut rb, &b[..b.len() - 3]);
        let mut in_flight = 3;
        assert_eq!(take_responses(&mut rb, &mut in_flight).unwrap(), (1, true));
        assert_eq!(in_flight, 2);
        load(&mut rb, &b[b.len() - 3..]);
        assert_eq!(take_responses(&mut rb, &mut in_flight).unwrap(), (1, false));
        assert_eq!(in_flight, 1);
    }

    #[test]
    fn error_frames_and_stray_oks_end_the_connection() {
        let mut b = BytesMut::new();
        put_frame(
            &mut b,
            FRAME_TYPE_ERROR,
            b"E_BAD_TOPIC MPUB topic name is not valid",
        );
        let mut rb = ReadBuf::new(1024);
        load(&mut rb, &b);
        let err = take_responses(&mut rb, &mut 1).unwrap_err();
        assert!(err.to_string().contains("E_BAD_TOPIC"), "{err}");

        let mut b = BytesMut::new();
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"OK");
        let mut rb = ReadBuf::new(1024);
        load(&mut rb, &b);
        assert!(take_responses(&mut rb, &mut 0).is_err());
    }
}
