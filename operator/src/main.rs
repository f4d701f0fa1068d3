//! `nsq-operator`: reconciles NsqTopic and NsqChannel resources into every
//! NSQ broker. Exits 0 after SIGTERM/SIGINT (lease released), non-zero when
//! leadership is lost or start-up fails, so Kubernetes restarts it.

use anyhow::anyhow;
use nsq_common::http::client::Timeouts;
use nsq_common::logging;
use nsq_operator::controller::{self, Context};
use nsq_operator::metrics::Metrics;
use nsq_operator::nsq::Nsq;
use nsq_operator::options::{version_line, Options};
use nsq_operator::{http, leader};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

fn main() -> ExitCode {
    let opts = match Options::parse_from(std::env::args()) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    if opts.version {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    logging::init(&opts.log_prefix, opts.log_level);
    if let Err(e) = opts.validate() {
        nsq_common::fatal!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nsq-operator")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failed to start runtime - {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(opts));
    // Whatever is left (a reconcile stuck in a blocking call) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            nsq_common::fatal!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> anyhow::Result<()> {
    tracing::info!("{}", version_line());
    let stop = stop_on_signal().map_err(|e| anyhow!("failed to install signal handlers - {e}"))?;

    let listener = nsq_common::listen::bind(&opts.http_address)
        .await
        .map_err(|e| anyhow!("listen ({}) failed - {e}", opts.http_address))?;
    tracing::info!("HTTP: listening on {}", listener.local_addr()?);

    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow!("failed to create the Kubernetes client - {e}"))?;
    if opts.lookupd_http_addresses.is_empty() {
        tracing::warn!(
            "no --lookupd-http-address given: no broker can be found, every reconcile will fail"
        );
    }
    let nsq = Nsq {
        lookupds: opts.lookupd_http_addresses.clone(),
        timeouts: Timeouts {
            connect: opts.http_client_connect_timeout,
            request: opts.http_client_request_timeout,
        },
        tls: Some(opts.http_client_tls().map_err(|e| anyhow!("{e}"))?),
    };
    let namespace = opts.watch_namespace();
    tracing::info!(
        "watching NsqTopics and NsqChannels in {}, lookupds {:?}, resync every {:?}",
        namespace.as_deref().map_or_else(
            || "all namespaces".to_owned(),
            |ns| format!("namespace {ns}")
        ),
        nsq.lookupds,
        opts.resync_period
    );

    let metrics = Arc::new(Metrics::new());
    let cfg = leader::Config::from_options(&opts);
    let state = Arc::new(leader::State::new(cfg.lease_duration));
    let (http_stop, http_stopped) = watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&metrics),
        Arc::clone(&state),
        http_stopped,
    ));

    let ctx = Arc::new(Context::new(
        client.clone(),
        nsq,
        Arc::clone(&metrics),
        opts.resync_period,
    ));
    let result = leader::run_as_leader(client, cfg, metrics, state, stop, move || {
        controller::run(ctx, namespace)
    })
    .await;

    let _ = http_stop.send(true);
    let _ = server.await;
    result
}

/// A flag that turns true on the first SIGTERM or SIGINT. The handlers are
/// installed before this returns, so from here on those signals stop us gracefully.
fn stop_on_signal() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name}: shutting down");
        let _ = tx.send(true);
        // Keep the flag alive (a dropped sender also reads as "stop").
        std::future::pending::<()>().await;
    });
    Ok(rx)
}
