//! The lookup loop (nsqd's lookupLoop): one task per `--lookupd-tcp-address`
//! keeps that nsqlookupd told which topics and channels this broker holds.
//!
//! Registration is level-triggered: each peer remembers what it registered and,
//! whenever the broker's topics or channels change, sends REGISTER/UNREGISTER for
//! the difference. A reconnect starts from nothing, so it re-registers
//! everything. The set of peers follows `--lookupd-tcp-address` at run time
//! (`PUT /config/nsqlookupd_tcp_addresses`).

use crate::lookup_peer::{LookupdInfo, Peer};
use crate::nsqd::Nsqd;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const PING_INTERVAL: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// A topic registration (`channel` empty) or a channel registration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Registration {
    pub topic: String,
    pub channel: String,
}

/// Everything the broker should have registered right now.
pub fn desired(nsqd: &Nsqd) -> BTreeSet<Registration> {
    let mut set = BTreeSet::new();
    for t in nsqd.topics() {
        set.insert(Registration {
            topic: t.name.clone(),
            channel: String::new(),
        });
        for c in t.channels() {
            set.insert(Registration {
                topic: t.name.clone(),
                channel: c.name.clone(),
            });
        }
    }
    set
}

/// Commands turning `have` into `want`: channel unregistrations before their
/// topic's, and a topic registered before its channels.
pub fn diff(
    have: &BTreeSet<Registration>,
    want: &BTreeSet<Registration>,
) -> Vec<(bool, Registration)> {
    let mut out: Vec<(bool, Registration)> = Vec::new();
    let mut gone: Vec<&Registration> = have.difference(want).collect();
    // Channels sort after their topic; unregister in reverse so channels go first.
    gone.reverse();
    out.extend(gone.into_iter().map(|r| (false, r.clone())));
    out.extend(want.difference(have).map(|r| (true, r.clone())));
    out
}

/// Runs until shutdown, starting and stopping one task per configured lookupd.
pub async fn run(nsqd: Arc<Nsqd>) {
    let mut shutdown = nsqd.shutdown_signal();
    let mut opts_changed = nsqd.opts_changed();
    let mut peers: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let want = nsqd.opts().lookupd_tcp_addresses.clone();
        peers.retain(|addr, task| {
            let keep = want.contains(addr);
            if !keep {
                tracing::info!("LOOKUP({addr}): removing peer");
                task.abort();
                nsqd.set_lookupd_info(addr, None);
            }
            keep
        });
        for addr in want {
            if let std::collections::hash_map::Entry::Vacant(slot) = peers.entry(addr) {
                let addr = slot.key().clone();
                tracing::info!("LOOKUP({addr}): adding peer");
                slot.insert(tokio::spawn(peer_loop(Arc::clone(&nsqd), addr)));
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            r = opts_changed.changed() => if r.is_err() { break },
        }
    }
    // Peers unregister and close on the shutdown signal themselves.
    for (_, task) in peers {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    tracing::info!("LOOKUP: closing");
}

async fn peer_loop(nsqd: Arc<Nsqd>, addr: String) {
    let mut shutdown = nsqd.shutdown_signal();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut connected = false;
        let result = tokio::select! {
            r = session(&nsqd, &addr, &mut connected) => r,
            _ = shutdown.changed() => return,
        };
        if connected {
            backoff = Duration::from_millis(100);
        }
        nsqd.set_lookupd_info(&addr, None);
        match result {
            Ok(()) => return,
            Err(e) => tracing::error!("LOOKUPD({addr}): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: IDENTIFY, register everything, then follow changes
/// and ping. Returns Ok only at shutdown.
async fn session(nsqd: &Arc<Nsqd>, addr: &str, connected: &mut bool) -> Result<(), String> {
    let opts = nsqd.opts();
    let mut peer = Peer::connect(addr, opts.max_body_size as usize).await?;
    let info: LookupdInfo = peer.identify(&identify_body(nsqd)).await?;
    tracing::info!(
        "LOOKUPD({addr}): peer info {{TCPPort:{} HTTPPort:{} Version:{} BroadcastAddress:{}}}",
        info.tcp_port,
        info.http_port,
        info.version,
        info.broadcast_address
    );
    nsqd.set_lookupd_info(addr, Some(info));
    *connected = true;
    let mut changes = nsqd.registry_changes();
    let mut shutdown = nsqd.shutdown_signal();
    let mut registered = BTreeSet::new();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        changes.borrow_and_update();
        let want = desired(nsqd);
        for (register, r) in diff(&registered, &want) {
            let verb = if register { "REGISTER" } else { "UNREGISTER" };
            tracing::info!("LOOKUPD({addr}): {verb} {} {}", r.topic, r.channel);
            peer.register(register, &r.topic, &r.channel).await?;
            if register {
                registered.insert(r);
            } else {
                registered.remove(&r);
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return Ok(()) },
            _ = peer.closed() => return Err("connection closed by lookupd".into()),
            _ = ping.tick() => {
                tracing::debug!("LOOKUPD({addr}): sending heartbeat");
                peer.ping().await?;
            }
            _ = shutdown.changed() => {
                // Say goodbye explicitly; lookupd would also drop us on close.
                let goodbye = async {
                    for (_, r) in diff(&registered, &BTreeSet::new()) {
                        peer.register(false, &r.topic, &r.channel).await?;
                    }
                    Ok::<_, String>(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
                return Ok(());
            }
        }
    }
}

/// nsqd's IDENTIFY to lookupd: its broadcast address and ports.
fn identify_body(nsqd: &Nsqd) -> Vec<u8> {
    let opts = nsqd.opts();
    let tcp_port = match opts.broadcast_tcp_port {
        0 => nsqd.tcp_addr.get().map_or(0, |a| a.port()),
        p => p,
    };
    let http_port = match opts.broadcast_http_port {
        0 => nsqd.http_addr.get().map_or(0, |a| a.port()),
        p => p,
    };
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({
        "version": nsq_common::version::NSQ_VERSION,
        "tcp_port": tcp_port,
        "http_port": http_port,
        "hostname": hostname,
        "broadcast_address": opts.broadcast_address,
        "topology_zone": opts.topology_zone,
        "topology_region": opts.topology_region,
    }))
    .expect("json! values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(t: &str, c: &str) -> Registration {
        Registration {
            topic: t.into(),
            channel: c.into(),
        }
    }

    #[test]
    fn diff_orders_channels_around_their_topics() {
        let have: BTreeSet<_> = [reg("a", ""), reg("a", "x"), reg("b", "")].into();
        let want: BTreeSet<_> = [reg("b", ""), reg("b", "y"), reg("c", "")].into();
        let cmds = diff(&have, &want);
        assert_eq!(
            cmds,
            vec![
                (false, reg("a", "x")),
                (false, reg("a", "")),
                (true, reg("b", "y")),
                (true, reg("c", "")),
            ]
        );
        assert!(diff(&want, &want).is_empty());
    }
}
