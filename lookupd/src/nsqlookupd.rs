//! The daemon: shared state (options, the registration DB, bound addresses, the
//! shutdown signal) and start-up/shutdown in nsqlookupd's order.

use crate::options::{hostname, Options};
use crate::protocol_v1::IdentifyResponse;
use crate::registration_db::RegistrationDb;
use nsq_common::version::{version_line, NSQ_VERSION};
use parking_lot::RwLock;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// State shared by the TCP and HTTP sides.
pub struct Nsqlookupd {
    pub opts: Options,
    pub db: RwLock<RegistrationDb>,
    /// The addresses actually listened on (known once bound).
    pub tcp_addr: OnceLock<SocketAddr>,
    pub http_addr: OnceLock<SocketAddr>,
    hostname: String,
    shutdown: watch::Sender<bool>,
}

impl Nsqlookupd {
    pub fn new(opts: Options) -> Arc<Nsqlookupd> {
        Arc::new(Nsqlookupd {
            opts,
            db: RwLock::new(RegistrationDb::new()),
            tcp_addr: OnceLock::new(),
            http_addr: OnceLock::new(),
            hostname: hostname(),
            shutdown: watch::Sender::new(false),
        })
    }

    /// What IDENTIFY is answered with: the real ports, the version, the
    /// broadcast address and the hostname.
    pub fn identify_response(&self) -> IdentifyResponse {
        let port = |a: &OnceLock<SocketAddr>| a.get().map_or(0, SocketAddr::port);
        IdentifyResponse {
            broadcast_address: self.opts.broadcast_address.clone(),
            hostname: self.hostname.clone(),
            http_port: port(&self.http_addr),
            tcp_port: port(&self.tcp_addr),
            version: NSQ_VERSION.to_owned(),
        }
    }

    /// Turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Resolves once shutdown has begun.
pub async fn exiting(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|&exiting| exiting).await;
}

/// Now, in Unix nanoseconds (the registration DB's clock).
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Binds both listeners (logging `TCP: listening on` / `HTTP: listening on`
/// with the real addresses), or fails like nsqlookupd: `listen (<addr>) failed - <err>`.
pub async fn bind(opts: Options) -> Result<(Arc<Nsqlookupd>, TcpListener, TcpListener), String> {
    let tcp = nsq_common::listen::bind(&opts.tcp_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.tcp_address))?;
    let http = nsq_common::listen::bind(&opts.http_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.http_address))?;
    let lookupd = Nsqlookupd::new(opts);
    let tcp_addr = tcp.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let _ = lookupd.tcp_addr.set(tcp_addr);
    let _ = lookupd.http_addr.set(http_addr);
    tracing::info!("TCP: listening on {tcp_addr}");
    tracing::info!("HTTP: listening on {http_addr}");
    Ok((lookupd, tcp, http))
}

/// Serves both listeners until [`Nsqlookupd::begin_shutdown`], then closes
/// the listeners and every connection (dropping their registrations).
pub async fn serve(lookupd: Arc<Nsqlookupd>, tcp: TcpListener, http: TcpListener) {
    let tcp_task = tokio::spawn(crate::tcp::serve(Arc::clone(&lookupd), tcp));
    let app = crate::http::router(Arc::clone(&lookupd));
    let http_task = tokio::spawn(nsq_common::http::serve(
        http,
        app,
        lookupd.shutdown_signal(),
        "HTTP",
    ));
    let _ = tcp_task.await;
    let _ = http_task.await;
}

/// The whole daemon: start, run until SIGTERM or SIGINT, stop.
pub async fn run(opts: Options) -> Result<(), String> {
    tracing::info!("{}", version_line("nsqlookupd"));
    // Handlers first, so a signal right after "listening" is never lost.
    let stop = stop_signal();
    let (lookupd, tcp, http) = bind(opts).await?;
    let server = tokio::spawn(serve(Arc::clone(&lookupd), tcp, http));
    stop.await;
    lookupd.begin_shutdown();
    server.await.map_err(|e| e.to_string())
}

/// Installs SIGTERM and SIGINT handlers now; resolves on the first signal.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("failed to install signal handlers");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
