//! One V2 connection: a single task that owns the socket, parses commands,
//! executes them, and pumps messages from its channel into a buffered writer.
//!
//! Owning everything in one task means no write lock and no per-message hand-off:
//! responses and message frames share one output buffer, flushed at nsqd's
//! moments (after a response, when the buffer is full, when RDY is exhausted,
//! or when the output-buffer timeout passes). The bytes go through the
//! connection's [`Transport`] (TLS and compression once IDENTIFY negotiates
//! them); AUTH and the authorization checks before SUB and the publishes are
//! the only commands that wait on the network.

use super::command::{self, Command, ParseContext};
use super::error::{go_quote, ClientError};
use super::identify::{self, ClientSettings, Features};
use super::transport::Transport;
use crate::auth::{self, AuthState};
use crate::channel::Channel;
use crate::client::{ClientShared, STATE_CLOSING, STATE_SUBSCRIBED};
use crate::durable::Durable;
use crate::nsqd::Nsqd;
use crate::tcp::go_net_error;
use crate::topic::Topic;
use bytes::{Bytes, BytesMut};
use nsq_common::wire::{put_frame, MessageId, FRAME_TYPE_ERROR, FRAME_TYPE_RESPONSE};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

/// nsqd's deadline for the TLS handshake after IDENTIFY.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads grow to this while they keep filling the buffer (a busy publisher)...
const READ_CHUNK: usize = 64 * 1024;
/// ...and start from, and shrink back to, this: an idle connection costs little.
const MIN_READ: usize = 1024;
/// The output buffer's first allocation; it grows with what is written.
const MIN_OUTPUT: usize = 256;
/// Upper bound on messages moved per channel lock, to keep other consumers fed.
const TAKE_BATCH: i64 = 256;

struct Conn {
    nsqd: Arc<Nsqd>,
    client: Arc<ClientShared>,
    io: Transport,
    input: BytesMut,
    /// How much the next read asks for (see `READ_CHUNK`, `MIN_READ`).
    read_size: usize,
    output: BytesMut,
    settings: ClientSettings,
    sub: Option<(Arc<Topic>, Arc<Channel>)>,
    /// When buffered messages must be flushed at the latest.
    flush_at: Option<Instant>,
    last_read: Instant,
    rng: u64,
    /// FINs parsed but not yet applied.
    fins: Vec<MessageId>,
    /// Limits from the options, fixed for the connection's life.
    limits: ParseContext,
    /// Upgrades IDENTIFY negotiated, made right after its response is sent.
    upgrade: Option<Features>,
    /// `--auth-http-address` was given when the client connected.
    auth_enabled: bool,
    /// What AUTH sent, kept to re-authorize when the grant expires.
    auth_secret: Vec<u8>,
    /// The topic of an MPUB whose body is still arriving, already authorized
    /// (nsqd checks MPUB before reading its body).
    mpub_authorized: Option<String>,
    auth: Option<AuthState>,
    /// The client certificate's common name, for the auth server.
    common_name: String,
    /// This end's address, for Go's network error text.
    local: String,
    /// Why the loop ended, as nsqd's IOLoop returns it (logged `client(...) - ...`).
    exit_error: Option<String>,
    /// Syncs the publishes answered in `output` wait for (`--sync-every`).
    owed: Durable,
    /// Where the first of those answers starts in `output`, and the failure
    /// its command reports (`E_PUB_FAILED`, `PUB`).
    owed_from: Option<(usize, &'static str, &'static str)>,
}

/// The connection ends after an error frame for a failed sync.
#[derive(Debug)]
struct SyncFailed;

impl std::fmt::Display for SyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sync failed")
    }
}

impl std::error::Error for SyncFailed {}

fn is_sync_failure(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<SyncFailed>())
}

/// Serves a connection whose `  V2` magic has been read; `input` holds any bytes
/// read past it.
pub async fn serve(nsqd: Arc<Nsqd>, stream: TcpStream, input: BytesMut) {
    let remote = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let client = nsqd.add_client(remote.clone());
    let opts = nsqd.opts();
    let settings = ClientSettings::defaults(&opts);
    let mut conn = Conn {
        rng: client.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        nsqd: Arc::clone(&nsqd),
        client: Arc::clone(&client),
        io: Transport::new(stream),
        input,
        read_size: MIN_READ,
        output: BytesMut::with_capacity(MIN_OUTPUT),
        settings,
        sub: None,
        flush_at: None,
        last_read: Instant::now(),
        fins: Vec::new(),
        limits: ParseContext {
            state: 0,
            heartbeats_enabled: true,
            max_body_size: opts.max_body_size,
            max_msg_size: opts.max_msg_size,
            max_req_timeout_ms: opts.max_req_timeout.as_millis() as i64,
            max_rdy_count: opts.max_rdy_count,
            tls_missing: opts.tls_required,
            auth_first: false,
        },
        upgrade: None,
        auth_enabled: !opts.auth_http_addresses.is_empty(),
        auth_secret: Vec::new(),
        mpub_authorized: None,
        auth: None,
        common_name: String::new(),
        local,
        exit_error: None,
        owed: Durable::default(),
        owed_from: None,
    };
    let res = conn.run().await;
    // After a failed sync the error frame is sent and logged already.
    if let Some(e) = res.err().filter(|e| !is_sync_failure(e)) {
        // Reads are reported where they fail; what is left failed writing.
        let e = go_net_error("write", &conn.local, &remote, &e);
        match conn.exit_error {
            // An error frame that could not be sent: nsqd keeps the first error.
            Some(_) => tracing::error!("[{remote}] - {e}"),
            None => conn.exit_error = Some(format!("failed to send response - {e}")),
        }
    }
    // nsqd's two goroutines each log their end; then tcp.go logs the error.
    tracing::info!("PROTOCOL(V2): [{remote}] exiting ioloop");
    conn.io.shutdown().await;
    if let Some((topic, channel)) = conn.sub.take() {
        nsqd.client_left(&topic, &channel, client.id);
    }
    nsqd.remove_client(client.id);
    tracing::info!("PROTOCOL(V2): [{remote}] exiting messagePump");
    if let Some(e) = conn.exit_error {
        tracing::error!("client({remote}) - {e}");
    }
}

impl Conn {
    async fn run(&mut self) -> std::io::Result<()> {
        let mut shutdown = self.nsqd.shutdown_signal();
        let mut heartbeat_at = self.next_heartbeat();
        loop {
            // Execute everything already buffered.
            let mut responded = false;
            loop {
                let ctx = self.parse_ctx();
                let parsed = command::parse(&mut self.input, &ctx);
                // Consecutive FINs are applied under one channel lock.
                if let Ok(Some(Command::Fin(id))) = parsed {
                    self.fins.push(id);
                    continue;
                }
                if !self.fins.is_empty() && self.apply_fins().await? {
                    return Ok(());
                }
                match parsed {
                    Ok(None) => {
                        if self.auth_enabled && self.authorize_pending_mpub().await? {
                            return Ok(());
                        }
                        break;
                    }
                    Ok(Some(cmd)) => match self.exec_checked(cmd).await {
                        Ok(Some(resp)) => {
                            put_frame(&mut self.output, FRAME_TYPE_RESPONSE, &resp);
                            responded = true;
                            if let Some(features) = self.upgrade.take() {
                                self.flush().await?;
                                responded = false;
                                // Boxed: the handshake's state is large and
                                // runs once, so idle connections don't carry it.
                                if Box::pin(self.upgrade(features)).await? {
                                    return Ok(());
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            if self.send_error(&e).await? {
                                return Ok(());
                            }
                        }
                    },
                    Err(e) => {
                        if e.is_silent() {
                            // nsqd's ReadSlice fails on an over-long line: no frame.
                            self.exit_error =
                                Some("failed to read command - bufio: buffer full".into());
                        } else {
                            self.send_error(&e).await?;
                        }
                        return Ok(());
                    }
                }
                if self.output.len() >= self.settings.output_buffer_size {
                    self.flush().await?;
                }
            }
            if responded {
                self.flush().await?;
                heartbeat_at = self.next_heartbeat();
            }

            // Pump messages while the client has room. The wake-up future is armed
            // before taking so a publish in between is not missed.
            let channel = self.sub.as_ref().map(|(_, c)| Arc::clone(c));
            let mut notified = pin!(channel.as_ref().map(|c| c.ready().notified()));
            if let Some(f) = notified.as_mut().as_pin_mut() {
                f.enable();
            }
            let mut wait_ready = false;
            if channel.is_some() {
                let sent = self.pump();
                if sent > 0 {
                    if !self.is_ready()
                        || self.output.len() >= self.settings.output_buffer_size
                        || self.settings.output_buffer_timeout.is_zero()
                    {
                        self.flush().await?;
                    } else if self.flush_at.is_none() {
                        self.flush_at = Some(Instant::now() + self.settings.output_buffer_timeout);
                    }
                    continue;
                }
                if !self.is_ready() && !self.output.is_empty() {
                    self.flush().await?;
                }
                // Paused channels wake their consumers on unpause through the
                // same signal, so wait on it whenever RDY leaves room.
                wait_ready = self.has_room();
            }

            let read_deadline = if self.settings.heartbeat_interval.is_zero() {
                None
            } else {
                Some(self.last_read + self.settings.heartbeat_interval * 2)
            };
            self.size_input();
            let spare = self.input.capacity() - self.input.len();
            let client = Arc::clone(&self.client);
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    self.flush().await?;
                    return Ok(());
                }
                n = self.io.read(&mut self.input) => {
                    match n {
                        Ok(0) => return self.end_of_input().await,
                        Ok(n) => {
                            self.last_read = Instant::now();
                            self.adapt_read_size(n, spare);
                        }
                        Err(e) => {
                            self.exit_error = Some(self.read_failed(&e));
                            return Ok(());
                        }
                    }
                }
                _ = async { notified.as_mut().as_pin_mut().expect("guarded").await }, if wait_ready => {}
                _ = client.wake.notified() => {}
                _ = sleep_until(self.flush_at.unwrap_or_else(Instant::now)), if self.flush_at.is_some() => {
                    self.flush().await?;
                }
                _ = sleep_until(heartbeat_at.unwrap_or_else(Instant::now)), if heartbeat_at.is_some() => {
                    put_frame(&mut self.output, FRAME_TYPE_RESPONSE, b"_heartbeat_");
                    self.flush().await?;
                    heartbeat_at = self.next_heartbeat();
                }
                _ = sleep_until(read_deadline.unwrap_or_else(Instant::now)), if read_deadline.is_some() => {
                    // nsqd's read deadline (two heartbeats) expiring.
                    let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
                    self.exit_error = Some(self.read_failed(&timeout));
                    return Ok(());
                }
            }
        }
    }

    /// The client closed its side. A command cut off inside its size or body
    /// still gets nsqd's error frame: only the client's writing half may be
    /// closed, and it may be waiting for the answer.
    async fn end_of_input(&mut self) -> std::io::Result<()> {
        if let Some(cut) = command::at_eof(&self.input, &self.parse_ctx()) {
            self.send_error_caused(&cut.error, cut.cause).await?;
        }
        Ok(())
    }

    /// nsqd's IOLoop error for a failed read.
    fn read_failed(&self, e: &std::io::Error) -> String {
        let remote = &self.client.remote_address;
        format!(
            "failed to read command - {}",
            go_net_error("read", &self.local, remote, e)
        )
    }

    fn next_heartbeat(&self) -> Option<Instant> {
        let hb = self.settings.heartbeat_interval;
        (!hb.is_zero()).then(|| Instant::now() + hb)
    }

    fn parse_ctx(&self) -> ParseContext {
        ParseContext {
            state: self.client.state.load(Ordering::Acquire),
            heartbeats_enabled: !self.settings.heartbeat_interval.is_zero(),
            tls_missing: self.limits.tls_missing && !self.io.is_tls(),
            auth_first: self.auth_enabled && !self.has_authorizations(),
            ..self.limits
        }
    }

    /// Applies the batched FINs; error frames keep their order. Returns true
    /// when the connection must close.
    async fn apply_fins(&mut self) -> std::io::Result<bool> {
        let fins = std::mem::take(&mut self.fins);
        let (_, ch) = self.sub.as_ref().expect("FIN parses only when subscribed");
        let mut errors = Vec::new();
        let done = ch.finish_many(self.client.id, &fins, |id, e| {
            errors.push(ClientError::soft(
                "E_FIN_FAILED",
                format!("FIN {} failed {e}", String::from_utf8_lossy(id)),
            ))
        });
        self.client
            .in_flight
            .fetch_sub(done as i64, Ordering::AcqRel);
        self.client
            .finish_count
            .fetch_add(done as u64, Ordering::Relaxed);
        self.fins = fins;
        self.fins.clear();
        for e in errors {
            if self.send_error(&e).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn has_room(&self) -> bool {
        let rdy = self.client.ready_count.load(Ordering::Acquire);
        rdy > 0 && self.client.in_flight.load(Ordering::Acquire) < rdy
    }

    fn is_ready(&self) -> bool {
        self.has_room() && self.sub.as_ref().is_some_and(|(_, c)| !c.is_paused())
    }

    /// Moves a batch of messages into the output buffer.
    fn pump(&mut self) -> usize {
        let Some((_, channel)) = &self.sub else {
            return 0;
        };
        if self.client.state.load(Ordering::Acquire) != STATE_SUBSCRIBED {
            return 0;
        }
        let rdy = self.client.ready_count.load(Ordering::Acquire);
        let room = rdy - self.client.in_flight.load(Ordering::Acquire);
        if room <= 0 {
            return 0;
        }
        channel.take(
            &self.client,
            room.min(TAKE_BATCH) as usize,
            self.settings.msg_timeout,
            self.settings.sample_rate,
            &mut self.rng,
            &mut self.output,
        )
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.flush_at = None;
        if !self.owed.is_empty() {
            self.settle_owed().await?;
        }
        self.write_output().await
    }

    /// Waits for the syncs the answered publishes need. If one fails, their
    /// OKs (and what followed) are replaced by the failed command's error,
    /// and the connection closes, as nsqd closes it after `E_PUB_FAILED`.
    async fn settle_owed(&mut self) -> std::io::Result<()> {
        let res = self.owed.wait().await;
        let Some((mark, code, cmd)) = self.owed_from.take() else {
            return Ok(());
        };
        let Err(e) = res else {
            return Ok(());
        };
        let e = ClientError::fatal(code, format!("{cmd} failed {e}"));
        tracing::error!("[{}] - {e}", self.client.remote_address);
        self.exit_error = Some(e.to_string());
        self.output.truncate(mark);
        put_frame(&mut self.output, FRAME_TYPE_ERROR, e.to_string().as_bytes());
        self.write_output().await?;
        Err(std::io::Error::other(SyncFailed))
    }

    /// Makes room for the next read. An empty buffer much larger than reads
    /// need now is dropped (bodies split from it keep their own part).
    fn size_input(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 2 * self.read_size {
            self.input = BytesMut::new();
        }
        if self.input.capacity() - self.input.len() < self.read_size / 2 {
            self.input.reserve(self.read_size);
        }
    }

    /// Doubles the read size while reads fill the space given, halves it
    /// while they use little of it.
    fn adapt_read_size(&mut self, n: usize, spare: usize) {
        if n >= spare {
            self.read_size = (self.read_size * 2).min(READ_CHUNK);
        } else if n < self.read_size / 8 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
    }

    async fn write_output(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        // Like nsqd's write deadline: a client that stops reading for a whole
        // heartbeat interval is dropped rather than stalling this task forever.
        let write = self.io.write_all(&self.output);
        let hb = self.settings.heartbeat_interval;
        if hb.is_zero() {
            write.await?;
        } else {
            tokio::time::timeout(hb, write).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
            })??;
        }
        self.output.clear();
        // A burst's buffer is not kept by a connection gone quiet.
        if self.output.capacity() > 4 * self.settings.output_buffer_size.max(MIN_OUTPUT) {
            self.output = BytesMut::with_capacity(MIN_OUTPUT);
        }
        Ok(())
    }

    /// Sends an error frame; returns true when the error closes the connection.
    async fn send_error(&mut self, e: &ClientError) -> std::io::Result<bool> {
        self.send_error_caused(e, None).await
    }

    /// [`Self::send_error`] for an error with an underlying cause, which nsqd
    /// appends to its log line (` - EOF`).
    async fn send_error_caused(
        &mut self,
        e: &ClientError,
        cause: Option<&str>,
    ) -> std::io::Result<bool> {
        let cause = cause.map(|c| format!(" - {c}")).unwrap_or_default();
        tracing::error!("[{}] - {e}{cause}", self.client.remote_address);
        if e.fatal {
            self.exit_error = Some(e.to_string());
        }
        put_frame(&mut self.output, FRAME_TYPE_ERROR, e.to_string().as_bytes());
        self.flush().await?;
        Ok(e.fatal)
    }

    fn exec(&mut self, cmd: Command) -> Result<Option<Bytes>, ClientError> {
        const OK: &[u8] = b"OK";
        match cmd {
            Command::Nop => Ok(None),
            Command::Identify(body) => self.identify(&body),
            // With auth on, AUTH runs in `exec_checked`.
            Command::Auth(_) => Err(ClientError::fatal("E_AUTH_DISABLED", "AUTH disabled")),
            Command::Pub { topic, body } => {
                self.publish(&topic, std::iter::once(body), 1, 0, "E_PUB_FAILED", "PUB")?;
                Ok(Some(Bytes::from_static(OK)))
            }
            Command::Mpub { topic, bodies } => {
                let n = bodies.len() as u64;
                self.publish(&topic, bodies, n, 0, "E_MPUB_FAILED", "MPUB")?;
                Ok(Some(Bytes::from_static(OK)))
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                self.publish(
                    &topic,
                    std::iter::once(body),
                    1,
                    defer_ms,
                    "E_DPUB_FAILED",
                    "DPUB",
                )?;
                Ok(Some(Bytes::from_static(OK)))
            }
            Command::Sub { topic, channel } => {
                self.subscribe(&topic, &channel)?;
                Ok(Some(Bytes::from_static(OK)))
            }
            Command::Rdy(count) => {
                if let Some(n) = count {
                    self.client.ready_count.store(n, Ordering::Release);
                }
                Ok(None)
            }
            Command::Fin(id) => {
                self.fins.push(id);
                Ok(None)
            }
            Command::Req { id, delay_ms } => {
                let (_, ch) = self.sub.as_ref().expect("state check ensures a channel");
                ch.requeue(self.client.id, &id, Duration::from_millis(delay_ms as u64))
                    .map_err(|e| {
                        ClientError::soft(
                            "E_REQ_FAILED",
                            format!("REQ {} failed {e}", String::from_utf8_lossy(&id)),
                        )
                    })?;
                self.client.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.client.requeue_count.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Command::Touch(id) => {
                let (_, ch) = self.sub.as_ref().expect("state check ensures a channel");
                let max = self.nsqd.opts().max_msg_timeout;
                ch.touch(self.client.id, &id, self.settings.msg_timeout, max)
                    .map_err(|e| {
                        ClientError::soft(
                            "E_TOUCH_FAILED",
                            format!("TOUCH {} failed {e}", String::from_utf8_lossy(&id)),
                        )
                    })?;
                Ok(None)
            }
            Command::Cls => {
                self.client.ready_count.store(0, Ordering::Release);
                self.client.state.store(STATE_CLOSING, Ordering::Release);
                Ok(Some(Bytes::from_static(b"CLOSE_WAIT")))
            }
        }
    }

    fn identify(&mut self, body: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let data = identify::parse(body)?;
        let remote = &self.client.remote_address;
        tracing::debug!("PROTOCOL(V2): [{remote}] {}", data.go_fields());
        tracing::info!("[{remote}] IDENTIFY: {}", data.go_fields());
        let opts = self.nsqd.opts();
        {
            let mut ident = self.client.identity.lock();
            ident.client_id = if data.client_id.is_empty() {
                data.short_id.clone()
            } else {
                data.client_id.clone()
            };
            ident.hostname = if data.hostname.is_empty() {
                data.long_id.clone()
            } else {
                data.hostname.clone()
            };
            ident.user_agent = data.user_agent.clone();
            ident.topology_zone = data.topology_zone.clone();
            ident.topology_region = data.topology_region.clone();
        }
        let mut settings = self.settings;
        settings
            .apply(&data, &opts)
            .map_err(|e| ClientError::fatal("E_BAD_BODY", format!("IDENTIFY {e}")))?;
        self.settings = settings;
        self.client.identity.lock().sample_rate = settings.sample_rate;
        // IDENTIFY moves the client out of the init state only for SUB purposes in
        // nsqd; it stays in init so SUB is still allowed.
        if !data.feature_negotiation {
            return Ok(Some(Bytes::from_static(b"OK")));
        }
        let features = identify::negotiate(&data, &opts, self.nsqd.tls.is_some())?;
        let resp = identify::response(&opts, &settings, &features, self.auth_enabled);
        if features.tls || features.snappy || features.deflate {
            self.upgrade = Some(features);
        }
        Ok(Some(Bytes::from(resp)))
    }

    /// Runs a command, first asking the auth server when AUTH is on: AUTH
    /// itself, and the authorization SUB and the publishes need.
    async fn exec_checked(&mut self, cmd: Command) -> Result<Option<Bytes>, ClientError> {
        if !self.auth_enabled {
            return self.exec(cmd);
        }
        match &cmd {
            Command::Auth(secret) => return self.authenticate(secret).await,
            Command::Pub { topic, .. } => self.authorize("PUB", topic, "").await?,
            // Checked already if it was authorized before its body arrived.
            Command::Mpub { topic, .. } if self.mpub_authorized.take().as_ref() != Some(topic) => {
                self.authorize("MPUB", topic, "").await?
            }
            Command::Dpub { topic, .. } => self.authorize("DPUB", topic, "").await?,
            Command::Sub { topic, channel } => self.authorize("SUB", topic, channel).await?,
            _ => {}
        }
        self.exec(cmd)
    }

    /// An MPUB whose body has not all arrived is authorized now, as nsqd
    /// does before reading it. Returns true when the connection must close.
    async fn authorize_pending_mpub(&mut self) -> std::io::Result<bool> {
        let Some(topic) = command::pending_mpub_topic(&self.input) else {
            return Ok(false);
        };
        if self.mpub_authorized.as_deref() == Some(topic.as_str()) {
            return Ok(false);
        }
        match self.authorize("MPUB", &topic, "").await {
            Ok(()) => {
                self.mpub_authorized = Some(topic);
                Ok(false)
            }
            Err(e) => self.send_error(&e).await,
        }
    }

    fn has_authorizations(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| !a.authorizations.is_empty())
    }

    /// nsqd's AUTH: one grant per connection, refreshed when it expires.
    async fn authenticate(&mut self, secret: &[u8]) -> Result<Option<Bytes>, ClientError> {
        if self.has_authorizations() {
            return Err(ClientError::invalid("AUTH already set"));
        }
        self.auth_secret = secret.to_vec();
        Box::pin(self.query_auth()).await?;
        if !self.has_authorizations() {
            return Err(ClientError::fatal(
                "E_UNAUTHORIZED",
                "AUTH no authorizations found",
            ));
        }
        let state = self.auth.as_ref().expect("just set");
        let resp = serde_json::json!({
            "identity": state.identity,
            "identity_url": state.identity_url,
            "permission_count": state.authorizations.len(),
        });
        Ok(Some(Bytes::from(resp.to_string())))
    }

    /// nsqd's `CheckAuth`.
    async fn authorize(
        &mut self,
        cmd: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ClientError> {
        if !self.has_authorizations() {
            return Err(ClientError::fatal(
                "E_AUTH_FIRST",
                format!("AUTH required before {cmd}"),
            ));
        }
        if self.auth.as_ref().is_some_and(AuthState::is_expired) {
            Box::pin(self.query_auth()).await?;
        }
        if self
            .auth
            .as_ref()
            .is_some_and(|a| a.is_allowed(topic, channel))
        {
            return Ok(());
        }
        Err(ClientError::fatal(
            "E_UNAUTHORIZED",
            format!(
                "AUTH failed for {cmd} on {} {}",
                go_quote(topic.as_bytes()),
                go_quote(channel.as_bytes())
            ),
        ))
    }

    /// Asks the auth servers; their errors are logged, never shown to the client.
    async fn query_auth(&mut self) -> Result<(), ClientError> {
        let remote = &self.client.remote_address;
        let remote_ip = remote
            .rsplit_once(':')
            .map_or(remote.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let asker = auth::Asker {
            remote_ip,
            tls: self.io.is_tls(),
            common_name: &self.common_name,
            secret: &self.auth_secret,
        };
        let servers = self.nsqd.auth_servers(&self.nsqd.opts());
        match auth::query_any(&servers, &asker).await {
            Ok(state) => {
                let mut ident = self.client.identity.lock();
                ident.authed = !state.authorizations.is_empty();
                ident.auth_identity = state.identity.clone();
                ident.auth_identity_url = state.identity_url.clone();
                drop(ident);
                self.auth = Some(state);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("PROTOCOL(V2): [{remote}] AUTH failed {e}");
                Err(ClientError::fatal("E_AUTH_FAILED", "AUTH failed"))
            }
        }
    }

    /// The upgrades IDENTIFY negotiated, in nsqd's order: TLS, then snappy or
    /// deflate, each confirmed by an `OK` frame over the new stream. Bytes the
    /// client sent past IDENTIFY belong to the new stream. Returns true when
    /// the connection must close.
    async fn upgrade(&mut self, f: Features) -> std::io::Result<bool> {
        let remote = self.client.remote_address.clone();
        let mut leftover = self.input.split();
        if f.tls {
            tracing::info!("PROTOCOL(V2): [{remote}] upgrading connection to TLS");
            let acceptor = self
                .nsqd
                .tls
                .clone()
                .expect("TLS negotiated only when configured");
            let handshake = self
                .io
                .start_tls(
                    &acceptor,
                    std::mem::take(&mut leftover),
                    TLS_HANDSHAKE_TIMEOUT,
                )
                .await;
            match handshake {
                Ok(info) => {
                    self.common_name = info.common_name().to_owned();
                    self.client.identity.lock().tls = Some(info);
                }
                Err(e) => {
                    let e = ClientError::fatal("E_IDENTIFY_FAILED", format!("IDENTIFY failed {e}"));
                    return self.send_error(&e).await;
                }
            }
            self.send_ok().await?;
        }
        if (f.snappy || f.deflate) && self.io.is_compressed() {
            let e = ClientError::fatal(
                "E_IDENTIFY_FAILED",
                "IDENTIFY failed compression already negotiated",
            );
            return self.send_error(&e).await;
        }
        if f.snappy {
            tracing::info!("PROTOCOL(V2): [{remote}] upgrading connection to snappy");
            self.io.start_snappy(std::mem::take(&mut leftover));
            self.client.identity.lock().snappy = true;
            self.send_ok().await?;
        }
        if f.deflate {
            tracing::info!(
                "PROTOCOL(V2): [{remote}] upgrading connection to deflate (level {})",
                f.deflate_level
            );
            self.io
                .start_deflate(f.deflate_level as u32, std::mem::take(&mut leftover));
            self.client.identity.lock().deflate = true;
            self.send_ok().await?;
        }
        Ok(false)
    }

    async fn send_ok(&mut self) -> std::io::Result<()> {
        put_frame(&mut self.output, FRAME_TYPE_RESPONSE, b"OK");
        self.flush().await
    }

    fn publish<I: IntoIterator<Item = Bytes>>(
        &mut self,
        topic_name: &str,
        bodies: I,
        n: u64,
        defer_ms: u32,
        code: &'static str,
        cmd: &'static str,
    ) -> Result<(), ClientError> {
        let topic = self.nsqd.get_topic(topic_name);
        let owed = topic
            .put_messages(bodies, defer_ms)
            .map_err(|e| ClientError::fatal(code, format!("{cmd} failed {e}")))?;
        if !owed.is_empty() {
            // The OK goes into `output` next; `flush` holds it until synced.
            self.owed_from.get_or_insert((self.output.len(), code, cmd));
            self.owed.append(owed);
        }
        self.client.published(topic_name, n);
        Ok(())
    }

    fn subscribe(&mut self, topic_name: &str, channel_name: &str) -> Result<(), ClientError> {
        let max = self.nsqd.opts().max_channel_consumers.max(0) as usize;
        // An ephemeral channel may be deleted between lookup and join: retry.
        for _ in 0..100 {
            let topic = self.nsqd.get_topic(topic_name);
            let channel = self.nsqd.get_channel(&topic, channel_name);
            channel
                .add_client(Arc::clone(&self.client), max)
                .map_err(|limit| {
                    ClientError::fatal(
                        "E_TOO_MANY_CHANNEL_CONSUMERS",
                        format!(
                        "channel consumers for {topic_name}:{channel_name} exceeds limit of {limit}"
                    ),
                    )
                })?;
            if channel.is_closed() {
                channel.remove_client(self.client.id);
                std::thread::yield_now();
                continue;
            }
            self.client.state.store(STATE_SUBSCRIBED, Ordering::Release);
            self.sub = Some((topic, channel));
            return Ok(());
        }
        Err(ClientError::fatal("E_SUB_FAILED", "SUB failed exiting"))
    }
}
