//! Start-up and shutdown: binds the listeners, starts the loops, waits for a
//! signal, then stops in nsqd's order (listeners, clients, then queues to disk).

use crate::nsqd::Nsqd;
use crate::options::Options;
use nsq_common::version::version_line;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub async fn run(opts: Options) -> Result<(), String> {
    // First, so a SIGTERM during start-up is held until start-up is done,
    // then shuts down cleanly instead of killing the process.
    let signals = Signals::install();
    tracing::info!("{}", version_line("nsqd"));
    tracing::info!("ID: {}", opts.node_id);
    let tcp = nsq_common::listen::bind(&opts.tcp_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.tcp_address))?;
    let http = nsq_common::listen::bind(&opts.http_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.http_address))?;
    crate::e2e::configure(
        opts.e2e_processing_latency_window_time,
        &opts.e2e_processing_latency_percentiles,
    );
    let nsqd = Nsqd::new(opts)?;
    let opts = nsqd.opts();
    if let Some(note) = nsqd
        .tls
        .as_ref()
        .and_then(|_| crate::tls::min_version_note(opts.tls_min_version))
    {
        tracing::warn!("{note}");
    }
    // nsqd serves HTTPS only with TLS configured and an address to listen on.
    let https = match (&nsqd.tls, opts.https_address.as_str()) {
        (Some(acceptor), addr) if !addr.is_empty() => {
            let l = nsq_common::listen::bind(addr)
                .await
                .map_err(|e| format!("listen ({addr}) failed - {e}"))?;
            Some((l, acceptor.clone()))
        }
        _ => None,
    };
    let tcp_addr = tcp.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let _ = nsqd.tcp_addr.set(tcp_addr);
    let _ = nsqd.http_addr.set(http_addr);
    tracing::info!("TCP: listening on {tcp_addr}");
    tracing::info!("HTTP: listening on {http_addr}");
    if let Some((l, _)) = &https {
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let _ = nsqd.https_addr.set(addr);
        tracing::info!("HTTPS: listening on {addr}");
    }

    let tcp_task = tokio::spawn(crate::tcp::serve(Arc::clone(&nsqd), tcp));
    let http_task = tokio::spawn(crate::http::serve(Arc::clone(&nsqd), http));
    let https_task = https
        .map(|(l, acceptor)| tokio::spawn(crate::http::serve_tls(Arc::clone(&nsqd), l, acceptor)));
    let scan_task = tokio::spawn(crate::queue_scan::deadlines(Arc::clone(&nsqd)));
    let lookup_task = tokio::spawn(crate::lookup::run(Arc::clone(&nsqd)));
    let syncer = crate::queue_scan::spawn_syncer(Arc::clone(&nsqd));
    let statsd_task = (!nsqd.opts().statsd_address.is_empty())
        .then(|| tokio::spawn(crate::statsd::run(Arc::clone(&nsqd))));

    signals.wait().await;
    tracing::info!("NSQ: shutting down");
    nsqd.begin_shutdown();
    let _ = tcp_task.await;
    let _ = http_task.await;
    if let Some(t) = https_task {
        let _ = t.await;
    }
    let _ = scan_task.await;
    let _ = lookup_task.await;
    if let Some(t) = statsd_task {
        let _ = t.await;
    }
    let closer = Arc::clone(&nsqd);
    tokio::task::spawn_blocking(move || closer.close())
        .await
        .map_err(|e| e.to_string())?;
    syncer.thread().unpark();
    let _ = tokio::task::spawn_blocking(move || syncer.join()).await;
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals(Option<(Signal, Signal)>);

impl Signals {
    fn install() -> Signals {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                tracing::error!("failed to install signal handlers");
                Signals(None)
            }
        }
    }

    async fn wait(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
