//! Test-only stand-in broker speaking just enough V2 for the bench roles: MPUB → OK, and
//! IDENTIFY/SUB/RDY/FIN/NOP for readers. In `Blast` mode it ignores RDY and streams
//! messages as fast as it can, to measure how fast the reader itself can go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use nsq_common::wire::{put_frame, put_message_frame, FRAME_TYPE_RESPONSE, MAGIC_V2};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Honour RDY: one new message per FIN.
    Polite,
    /// Stream messages regardless of RDY.
    Blast,
}

#[derive(Default)]
pub struct Seen {
    pub published: AtomicU64,
    pub fins: AtomicU64,
    pub nops: AtomicU64,
}

/// Listens on an ephemeral port; returns its address and what it has seen.
pub async fn start(mode: Mode, heartbeat_first: bool) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(serve(stream, mode, heartbeat_first, s.clone()));
        }
    });
    (addr, seen)
}

fn frame(data: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    put_frame(&mut b, FRAME_TYPE_RESPONSE, data);
    b
}

fn messages(n: usize, body: usize) -> BytesMut {
    let mut b = BytesMut::new();
    for i in 0..n {
        let id = format!("{i:016x}");
        put_message_frame(
            &mut b,
            0,
            1,
            id.as_bytes().try_into().unwrap(),
            &vec![b'x'; body],
        );
    }
    b
}

async fn serve(stream: TcpStream, mode: Mode, heartbeat_first: bool, seen: Arc<Seen>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(1 << 20, r);
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).await.is_err() || &magic != MAGIC_V2 {
        return;
    }
    if heartbeat_first {
        let _ = w.write_all(&frame(b"_heartbeat_")).await;
    }
    let mut line = Vec::new();
    let mut body = Vec::new();
    let mut blaster: Option<tokio::task::JoinHandle<()>> = None;
    let mut w = Some(w);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            break;
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let word = cmd.split(' ').next().unwrap_or("");
        let reply: Option<BytesMut> = match word {
            "MPUB" | "IDENTIFY" => {
                let size = r.read_u32().await.unwrap() as usize;
                body.resize(size, 0);
                r.read_exact(&mut body).await.unwrap();
                if word == "MPUB" {
                    let n = u32::from_be_bytes(body[..4].try_into().unwrap());
                    seen.published.fetch_add(u64::from(n), Ordering::Relaxed);
                    Some(frame(b"OK"))
                } else {
                    Some(frame(br#"{"max_rdy_count":2500,"tls_v2":false}"#))
                }
            }
            "SUB" => Some(frame(b"OK")),
            "RDY" => {
                let n: usize = cmd[4..].parse().unwrap();
                match mode {
                    Mode::Polite => Some(messages(n, 200)),
                    Mode::Blast => {
                        let mut w = w.take().unwrap();
                        let chunk = messages(2000, 200).freeze();
                        blaster = Some(tokio::spawn(async move {
                            while w.write_all(&chunk).await.is_ok() {}
                        }));
                        None
                    }
                }
            }
            "FIN" => {
                seen.fins.fetch_add(1, Ordering::Relaxed);
                (mode == Mode::Polite).then(|| messages(1, 200))
            }
            "NOP" => {
                seen.nops.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => break,
        };
        if let (Some(reply), Some(w)) = (reply, w.as_mut()) {
            if w.write_all(&reply).await.is_err() {
                break;
            }
        }
    }
    if let Some(b) = blaster {
        b.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::harness::{drive, Outcome, Settings};
    use crate::protocol::mpub_command;
    use crate::recorder::Run;
    use crate::{reader, writer};

    fn settings(connections: usize, runfor: Duration) -> Settings {
        Settings {
            connections,
            runfor,
            deadline: None,
            sample_interval: Duration::from_millis(50),
            window: 100,
            progress: false,
        }
    }

    async fn write(addr: &str, run: &Arc<Run>, s: &Settings, outstanding: usize) -> Outcome {
        let plan = Arc::new(writer::Plan {
            command: mpub_command("sub_bench", 200, 200, false),
            batch_size: 200,
            size: 200,
            outstanding,
        });
        drive(
            run,
            s,
            |_| {
                let addr = addr.to_string();
                async move {
                    writer::connect(&addr, Duration::from_secs(1), 0, &Default::default()).await
                }
            },
            |i, stream, end, stop| {
                writer::publish(stream, plan.clone(), end, run.counters[i].clone(), stop)
            },
        )
        .await
        .unwrap()
    }

    async fn read(addr: &str, run: &Arc<Run>, s: &Settings) -> Outcome {
        let plan = Arc::new(reader::Plan {
            topic: "sub_bench".into(),
            channel: "ch".into(),
            rdy: 2500,
            identify_extra: Default::default(),
            features: Default::default(),
        });
        let p = plan.clone();
        drive(
            run,
            s,
            |i| {
                let (addr, plan) = (addr.to_string(), p.clone());
                async move { reader::subscribe(&addr, Duration::from_secs(1), i, &plan).await }
            },
            |i, sub, end, stop| {
                let c = run.counters[i].clone();
                reader::consume(sub, i, plan.clone(), end, c, run.clone(), stop)
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writer_counts_exactly_the_acknowledged_messages_and_answers_heartbeats() {
        let (addr, seen) = start(Mode::Polite, true).await;
        let run = Run::new("bench_writer", 2);
        let outcome = write(&addr, &run, &settings(2, Duration::from_millis(300)), 3).await;
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        assert!(run.total_msgs() > 0);
        assert_eq!(run.total_msgs() % 200, 0);
        assert_eq!(run.total_msgs(), seen.published.load(Ordering::Relaxed));
        assert_eq!(seen.nops.load(Ordering::Relaxed), 2);
        assert!(!outcome.samples.is_empty());
        assert!(outcome.duration >= Duration::from_millis(300));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reader_fins_what_it_counts_and_stops_at_runfor() {
        let (addr, seen) = start(Mode::Polite, true).await;
        let run = Run::new("bench_reader", 2);
        let started = Instant::now();
        let outcome = read(&addr, &run, &settings(2, Duration::from_millis(300))).await;
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        assert!(started.elapsed() < Duration::from_secs(2));
        let counted = run.total_msgs();
        assert!(counted > 2 * 2500, "only {counted} messages");
        assert_eq!(run.total_bytes(), counted * 200);
        // FINs still on the wire when the connection closed are not seen by the mock.
        let fins = seen.fins.load(Ordering::Relaxed);
        assert!(
            fins <= counted && fins > counted / 2,
            "fins {fins} counted {counted}"
        );
        assert_eq!(seen.nops.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn setup_failure_is_an_error_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let run = Run::new("bench_writer", 1);
        let s = settings(1, Duration::from_millis(100));
        let plan = Arc::new(writer::Plan {
            command: mpub_command("t", 1, 1, false),
            batch_size: 1,
            size: 1,
            outstanding: 1,
        });
        let result = drive(
            &run,
            &s,
            |_| {
                let addr = addr.clone();
                async move {
                    writer::connect(&addr, Duration::from_secs(1), 0, &Default::default()).await
                }
            },
            |i, stream, end, stop| {
                writer::publish(stream, plan.clone(), end, run.counters[i].clone(), stop)
            },
        )
        .await;
        assert!(result.is_err());
    }

    /// How fast the tool itself goes against brokers that cost almost nothing:
    /// `cargo test -p nsq-bench --release -- --ignored --nocapture tool_speed`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn tool_speed_against_a_free_broker() {
        let secs = Duration::from_secs(3);
        let (addr, _) = start(Mode::Blast, false).await;
        let run = Run::new("bench_reader", 2);
        let o = read(&addr, &run, &settings(2, secs)).await;
        println!(
            "reader: {:.0} msgs/s",
            run.total_msgs() as f64 / o.duration.as_secs_f64()
        );
        let (addr, _) = start(Mode::Polite, false).await;
        for outstanding in [1, 4] {
            let run = Run::new("bench_writer", 2);
            let o = write(&addr, &run, &settings(2, secs), outstanding).await;
            println!(
                "writer (outstanding {outstanding}): {:.0} msgs/s",
                run.total_msgs() as f64 / o.duration.as_secs_f64()
            );
        }
    }
}
