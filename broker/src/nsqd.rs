//! The broker's shared state: options, the topic map, connected clients,
//! metadata persistence, the data-path lock and the shutdown signal.

use crate::backend::QueueConfig;
use crate::channel::Channel;
use crate::client::ClientShared;
use crate::lookup_peer::LookupdInfo;
use crate::metadata::{self, ChannelMeta, Metadata, TopicMeta};
use crate::options::Options;
use crate::topic::Topic;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

pub struct Nsqd {
    opts: RwLock<Arc<Options>>,
    pub cfg: Arc<QueueConfig>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    clients: Mutex<HashMap<u64, Arc<ClientShared>>>,
    next_client_id: AtomicU64,
    /// Unix seconds.
    pub start_time: i64,
    /// Suppresses metadata writes while `nsqd.dat` itself is being loaded.
    loading: AtomicBool,
    /// Group commit of `nsqd.dat`: requests are numbered, and the lock holds
    /// the number the last write covered.
    metadata_lock: Mutex<u64>,
    metadata_requests: AtomicU64,
    shutdown: watch::Sender<bool>,
    pub tcp_addr: OnceLock<SocketAddr>,
    pub http_addr: OnceLock<SocketAddr>,
    pub https_addr: OnceLock<SocketAddr>,
    /// From `--tls-cert`/`--tls-key`: the V2 upgrade and the HTTPS listener.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// For https auth servers (with `--auth-http-address` or `--tls-root-ca-file`).
    auth_tls: Option<Arc<rustls::ClientConfig>>,
    /// Bumped whenever a topic or channel comes or goes (the lookup loop diffs).
    registry: watch::Sender<u64>,
    /// Bumped by `swap_opts`.
    opts_version: watch::Sender<u64>,
    /// What each connected lookupd said in reply to IDENTIFY, by TCP address.
    lookupd_info: Mutex<BTreeMap<String, LookupdInfo>>,
    _dir_lock: std::fs::File,
}

impl Nsqd {
    /// Locks the data path, reads the TLS files and loads `nsqd.dat`.
    pub fn new(opts: Options) -> Result<Arc<Nsqd>, String> {
        let tls = crate::tls::server_config(&opts)?.map(tokio_rustls::TlsAcceptor::from);
        // Auth servers may be (or redirect to) https.
        let auth_tls = if !opts.tls_root_ca_file.is_empty() || !opts.auth_http_addresses.is_empty()
        {
            Some(crate::tls::client_config(&opts)?)
        } else {
            None
        };
        let data_path = if opts.data_path.as_os_str().is_empty() {
            std::env::current_dir().map_err(|e| e.to_string())?
        } else {
            opts.data_path.clone()
        };
        std::fs::create_dir_all(&data_path)
            .map_err(|e| format!("failed to create --data-path={} - {e}", data_path.display()))?;
        let dir_lock = lock_dir(&data_path)?;
        let cfg = Arc::new(QueueConfig {
            data_path,
            mem_queue_size: opts.mem_queue_size.max(0) as usize,
            max_mem_queue_bytes: opts.max_mem_queue_bytes.max(0) as u64,
            max_bytes_per_file: opts.max_bytes_per_file,
            sync_every: opts.sync_every,
            max_msg_size: opts.max_msg_size,
            node_id: opts.node_id,
            health: Arc::default(),
        });
        let (shutdown, _) = watch::channel(false);
        let nsqd = Arc::new(Nsqd {
            opts: RwLock::new(Arc::new(opts)),
            cfg,
            topics: RwLock::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(0),
            start_time: crate::message::unix_nanos() / 1_000_000_000,
            loading: AtomicBool::new(true),
            metadata_lock: Mutex::new(0),
            metadata_requests: AtomicU64::new(0),
            shutdown,
            tcp_addr: OnceLock::new(),
            http_addr: OnceLock::new(),
            https_addr: OnceLock::new(),
            tls,
            auth_tls,
            registry: watch::channel(0).0,
            opts_version: watch::channel(0).0,
            lookupd_info: Mutex::new(BTreeMap::new()),
            _dir_lock: dir_lock,
        });
        nsqd.load_metadata()?;
        nsqd.loading.store(false, Ordering::Release);
        Ok(nsqd)
    }

    pub fn opts(&self) -> Arc<Options> {
        Arc::clone(&self.opts.read())
    }

    pub fn swap_opts(&self, opts: Options) {
        *self.opts.write() = Arc::new(opts);
        self.opts_version.send_modify(|v| *v += 1);
    }

    pub fn opts_changed(&self) -> watch::Receiver<u64> {
        self.opts_version.subscribe()
    }

    pub fn registry_changes(&self) -> watch::Receiver<u64> {
        self.registry.subscribe()
    }

    fn registry_changed(&self) {
        self.registry.send_modify(|v| *v += 1);
    }

    pub fn set_lookupd_info(&self, tcp_addr: &str, info: Option<LookupdInfo>) {
        let mut map = self.lookupd_info.lock();
        match info {
            Some(i) => map.insert(tcp_addr.to_owned(), i),
            None => map.remove(tcp_addr),
        };
    }

    /// HTTP addresses of the lookupds currently connected.
    pub fn lookupd_http_addrs(&self) -> Vec<String> {
        self.lookupd_info
            .lock()
            .values()
            .map(LookupdInfo::http_address)
            .collect()
    }

    fn load_metadata(self: &Arc<Self>) -> Result<(), String> {
        let meta = metadata::load(&self.cfg.data_path)?;
        for t in meta.topics {
            if !nsq_common::names::is_valid_topic_name(&t.name) {
                tracing::warn!("skipping creation of invalid topic {}", t.name);
                continue;
            }
            let topic = self.get_topic(&t.name);
            if t.paused {
                topic.pause();
            }
            for c in t.channels {
                if !nsq_common::names::is_valid_channel_name(&c.name) {
                    tracing::warn!("skipping creation of invalid channel {}", c.name);
                    continue;
                }
                let ch = self.get_channel(&topic, &c.name);
                if c.paused {
                    ch.pause();
                }
            }
        }
        Ok(())
    }

    /// Writes `nsqd.dat` from the live topics (ephemeral ones excluded) and
    /// returns once a write made after the caller's change is on disk. Callers
    /// arriving during a write share the next one (group commit): a storm of
    /// creates costs a few fsyncs, not one each.
    pub fn persist_metadata(&self) {
        if self.loading.load(Ordering::Acquire) {
            return;
        }
        let mine = self.metadata_requests.fetch_add(1, Ordering::AcqRel) + 1;
        let mut written = self.metadata_lock.lock();
        if *written >= mine {
            return;
        }
        // Every request numbered up to here changed the state before asking,
        // so the snapshot below covers them all.
        let covers = self.metadata_requests.load(Ordering::Acquire);
        let mut topics: Vec<TopicMeta> = self
            .topics()
            .into_iter()
            .filter(|t| !t.ephemeral)
            .map(|t| TopicMeta {
                name: t.name.clone(),
                paused: t.is_paused(),
                channels: t
                    .channels()
                    .into_iter()
                    .filter(|c| !c.ephemeral)
                    .map(|c| ChannelMeta {
                        name: c.name.clone(),
                        paused: c.is_paused(),
                    })
                    .collect(),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let meta = Metadata {
            topics,
            version: nsq_common::version::NSQ_VERSION.to_owned(),
        };
        match metadata::save(&self.cfg.data_path, &meta) {
            Ok(()) => *written = covers,
            Err(e) => tracing::error!("failed to persist metadata - {e}"),
        }
    }

    /// The topic, created (and persisted) when missing.
    pub fn get_topic(self: &Arc<Self>, name: &str) -> Arc<Topic> {
        if let Some(t) = self.topics.read().get(name) {
            return Arc::clone(t);
        }
        let created = {
            let mut topics = self.topics.write();
            if let Some(t) = topics.get(name) {
                return Arc::clone(t);
            }
            let t = Topic::new(name, Arc::clone(&self.cfg));
            topics.insert(name.to_owned(), Arc::clone(&t));
            t
        };
        tracing::info!("TOPIC({name}): created");
        if !created.ephemeral {
            self.persist_metadata();
        }
        self.registry_changed();
        self.start_topic(&created);
        created
    }

    /// Starts delivery once the channels other brokers' consumers registered
    /// in lookupd exist here too, so none of them misses a message (nsqd does
    /// the same blocking query before starting a new topic's pump).
    fn start_topic(self: &Arc<Self>, topic: &Arc<Topic>) {
        let addrs = self.lookupd_http_addrs();
        let runtime = tokio::runtime::Handle::try_current();
        let loading = self.loading.load(Ordering::Acquire);
        let (Ok(runtime), false, false) = (runtime, addrs.is_empty(), loading) else {
            // While nsqd.dat loads no lookupd is connected yet; nsqd does not
            // ask (or complain) then either.
            if !loading && addrs.is_empty() && !self.opts().lookupd_tcp_addresses.is_empty() {
                tracing::error!(
                    "no available nsqlookupd to query for channels to pre-create for topic {}",
                    topic.name
                );
            }
            topic.start();
            return;
        };
        let nsqd = Arc::clone(self);
        let topic = Arc::clone(topic);
        runtime.spawn(async move {
            let opts = nsqd.opts();
            let mut names = std::collections::BTreeSet::new();
            for addr in addrs {
                let timeouts = nsq_common::http::client::Timeouts {
                    connect: opts.http_client_connect_timeout,
                    request: opts.http_client_request_timeout,
                };
                match crate::lookup_peer::topic_channels(&addr, &topic.name, timeouts).await {
                    Ok(list) => names.extend(list),
                    Err(e) => tracing::warn!(
                        "failed to query nsqlookupd for channels to pre-create for topic {} - {e}",
                        topic.name
                    ),
                }
            }
            for name in names {
                // An ephemeral channel exists only while its consumer does.
                if nsq_common::names::is_ephemeral(&name)
                    || !nsq_common::names::is_valid_channel_name(&name)
                {
                    continue;
                }
                nsqd.get_channel(&topic, &name);
            }
            topic.start();
        });
    }

    pub fn existing_topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The channel, created (and persisted) when missing.
    pub fn get_channel(&self, topic: &Arc<Topic>, name: &str) -> Arc<Channel> {
        let (ch, created) = topic.get_channel(name);
        if created {
            tracing::info!("TOPIC({}): new channel({name})", topic.name);
            if !ch.ephemeral {
                self.persist_metadata();
            }
            self.registry_changed();
        }
        ch
    }

    pub fn delete_topic(&self, name: &str) -> bool {
        let Some(topic) = self.topics.write().remove(name) else {
            return false;
        };
        tracing::info!("TOPIC({name}): deleting");
        topic.delete();
        self.persist_metadata();
        self.registry_changed();
        true
    }

    pub fn delete_channel(&self, topic: &Topic, name: &str) -> bool {
        if !topic.delete_channel(name) {
            return false;
        }
        tracing::info!("CHANNEL({}:{name}): deleting", topic.name);
        if !self.delete_unused_ephemeral_topic(topic) {
            self.persist_metadata();
            self.registry_changed();
        }
        true
    }

    /// nsqd deletes an ephemeral topic once its last channel is gone.
    fn delete_unused_ephemeral_topic(&self, topic: &Topic) -> bool {
        topic.ephemeral && topic.channel_count() == 0 && self.delete_topic(&topic.name)
    }

    /// A consumer left; ephemeral channels and topics go with their last user.
    pub fn client_left(&self, topic: &Topic, channel: &Channel, client_id: u64) {
        if !channel.remove_client(client_id) {
            return;
        }
        if topic.delete_channel_if_unused(&channel.name) {
            tracing::info!(
                "CHANNEL({}:{}): ephemeral, deleted",
                topic.name,
                channel.name
            );
            if topic.ephemeral && topic.channel_count() == 0 {
                self.delete_topic(&topic.name);
            } else {
                // nsqlookupd hears of it now, as from nsqd, not at the next ping.
                self.registry_changed();
            }
        }
    }

    pub fn add_client(&self, remote: String) -> Arc<ClientShared> {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
        let c = Arc::new(ClientShared::new(
            id,
            remote,
            crate::message::unix_nanos() / 1_000_000_000,
        ));
        {
            // nsqd names a client by its peer host until IDENTIFY says otherwise.
            let host = c.remote_address.rsplit_once(':').map_or("", |(h, _)| h);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let mut ident = c.identity.lock();
            ident.client_id = host.clone();
            ident.hostname = host;
        }
        self.clients.lock().insert(id, Arc::clone(&c));
        c
    }

    pub fn remove_client(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    pub fn clients(&self) -> Vec<Arc<ClientShared>> {
        let mut v: Vec<_> = self.clients.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn auth_enabled(&self) -> bool {
        !self.opts().auth_http_addresses.is_empty()
    }

    /// Where and how AUTH asks (nsqd's `--auth-http-*` and HTTP client flags).
    pub fn auth_servers(&self, opts: &Options) -> crate::auth::Servers {
        crate::auth::Servers {
            addresses: opts.auth_http_addresses.clone(),
            post: opts.auth_http_request_method == "post",
            timeouts: nsq_common::http::client::Timeouts {
                connect: opts.http_client_connect_timeout,
                request: opts.http_client_request_timeout,
            },
            tls: self.auth_tls.clone(),
        }
    }

    /// `None` when healthy, else the error nsqd's `/ping` reports.
    pub fn health(&self) -> Option<String> {
        self.cfg.health.error()
    }

    pub fn set_health(&self, err: Option<String>) {
        self.cfg.health.set(err);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_exiting(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every task to stop (listeners, connections, loops).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Persists metadata and flushes every topic and channel to disk.
    pub fn close(&self) {
        self.persist_metadata();
        for t in self.topics() {
            t.close();
        }
        tracing::info!("NSQ: closed topics and channels");
    }
}

/// An exclusive, non-blocking flock on the data directory, held for the process lifetime.
fn lock_dir(path: &std::path::Path) -> Result<std::fs::File, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("failed to open --data-path={} - {e}", path.display()))?;
    // SAFETY: flock on a valid, owned descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "--data-path={} in use (possibly by another instance of nsqd)",
            path.display()
        ));
    }
    Ok(f)
}
