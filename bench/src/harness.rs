//! The lifecycle of one run, shared by both roles: connect every connection (in
//! parallel, not timed), wait for `--deadline`, start the clock, run every connection
//! until `--runfor` is up or Ctrl-C, and collect the outcome. Shutdown is one explicit
//! `watch` signal handed to every task.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::gotime::{format_duration, log_timestamp, parse_deadline};
use crate::recorder::{sample, Run, Sample};
use crate::report::log_line;

pub struct Settings {
    pub connections: usize,
    pub runfor: Duration,
    pub deadline: Option<String>,
    pub sample_interval: Duration,
    /// Samples the flight recorder keeps (0 when it is off).
    pub window: usize,
    pub progress: bool,
}

pub struct Outcome {
    /// From the start signal until the last connection finished.
    pub duration: Duration,
    pub failures: Vec<(usize, anyhow::Error)>,
    pub interrupted: bool,
    pub samples: VecDeque<Sample>,
}

/// Runs `setup(i)` for every connection, then `work(i, state, end, stop)` for each.
pub async fn drive<T, S, SF, W, WF>(
    run: &Arc<Run>,
    settings: &Settings,
    setup: S,
    work: W,
) -> Result<Outcome>
where
    T: Send + 'static,
    S: Fn(usize) -> SF,
    SF: Future<Output = Result<T>> + Send + 'static,
    W: Fn(usize, T, Instant, watch::Receiver<bool>) -> WF,
    WF: Future<Output = Result<()>> + Send + 'static,
{
    let mut pending = JoinSet::new();
    for i in 0..settings.connections {
        let fut = setup(i);
        pending.spawn(async move { (i, fut.await) });
    }
    let mut ready: Vec<Option<T>> = (0..settings.connections).map(|_| None).collect();
    while let Some(joined) = pending.join_next().await {
        let (i, state) = joined.context("connection setup task failed")?;
        ready[i] = Some(state.with_context(|| format!("conn {i}"))?);
        run.event(format!("conn {i} ready"));
    }

    if let Some(deadline) = &settings.deadline {
        let at = parse_deadline(deadline).map_err(anyhow::Error::msg)?;
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        eprintln!(
            "{}",
            log_line(
                run.kind,
                &format!(
                    "sleeping until {} UTC ({})",
                    log_timestamp(at),
                    format_duration(wait)
                )
            )
        );
        tokio::time::sleep(wait).await;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let interrupted = Arc::new(AtomicBool::new(false));
    let ctrl_c = tokio::spawn({
        let (stop_tx, interrupted) = (stop_tx.clone(), interrupted.clone());
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                stop_tx.send_replace(true);
            }
        }
    });
    let sampler = (settings.window > 0 || settings.progress).then(|| {
        tokio::spawn(sample(
            run.clone(),
            settings.sample_interval,
            settings.window,
            settings.progress,
            stop_rx.clone(),
        ))
    });

    let start = Instant::now();
    let end = start + settings.runfor;
    run.event("start");
    let mut running = JoinSet::new();
    for (i, state) in ready.into_iter().enumerate() {
        let fut = work(
            i,
            state.expect("every setup finished"),
            end,
            stop_rx.clone(),
        );
        running.spawn(async move { (i, fut.await) });
    }
    let mut failures = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (i, result) = joined.context("connection task failed")?;
        if let Err(e) = result {
            run.warn(format!("conn {i} failed: {e:#}"));
            failures.push((i, e));
        }
    }
    let duration = start.elapsed();
    run.event("end");

    stop_tx.send_replace(true);
    ctrl_c.abort();
    let samples = match sampler {
        Some(handle) => handle.await.unwrap_or_default(),
        None => VecDeque::new(),
    };
    failures.sort_by_key(|(i, _)| *i);
    Ok(Outcome {
        duration,
        failures,
        interrupted: interrupted.load(Ordering::Relaxed),
        samples,
    })
}
