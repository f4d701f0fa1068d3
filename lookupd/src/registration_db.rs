//! The registration DB: which producers (identified nsqd connections) registered
//! which topics and channels. A pure data structure; callers pass the time as
//! Unix nanoseconds, so expiry is testable without waiting.
//!
//! It keeps nsqlookupd's model exactly:
//!
//! - a registration is `(category, key, subkey)`: `client::` (every identified
//!   peer), `topic:<t>:`, `channel:<t>:<c>`; each holds producers keyed by the
//!   peer's ID (its remote address);
//! - `*` as key or subkey in a query matches anything (reachable through HTTP
//!   query arguments, which nsqlookupd does not validate);
//! - removing the last producer leaves the registration in place (topics stay
//!   listed until deleted over HTTP);
//! - adding a producer already present keeps the existing entry, so a
//!   tombstoned producer stays tombstoned when it registers the topic again;
//! - a tombstone hides one producer of one topic for the tombstone lifetime;
//!   a producer silent for longer than the inactivity timeout is hidden too.
//!
//! Results are in a stable order (registrations sorted, producers in the order
//! they registered) where Go's map iteration order is random.

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The kind of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Client,
    Topic,
    Channel,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Client => "client",
            Category::Topic => "topic",
            Category::Channel => "channel",
        }
    }
}

/// A registration key; `*` in queries is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registration {
    pub category: Category,
    pub key: String,
    pub subkey: String,
}

impl Registration {
    /// Every identified peer is a producer of this one.
    pub fn client() -> Registration {
        Registration {
            category: Category::Client,
            key: String::new(),
            subkey: String::new(),
        }
    }

    pub fn topic(topic: &str) -> Registration {
        Registration {
            category: Category::Topic,
            key: topic.to_owned(),
            subkey: String::new(),
        }
    }

    pub fn channel(topic: &str, channel: &str) -> Registration {
        Registration {
            category: Category::Channel,
            key: topic.to_owned(),
            subkey: channel.to_owned(),
        }
    }

    /// Whether this registration answers a query where `*` matches anything.
    pub fn is_match(&self, category: Category, key: &str, subkey: &str) -> bool {
        self.category == category
            && (key == "*" || self.key == key)
            && (subkey == "*" || self.subkey == subkey)
    }
}

/// What a producer (nsqd) sent in IDENTIFY, plus where it connected from; the
/// JSON of `/lookup`'s producers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    pub remote_address: String,
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: i64,
    pub http_port: i64,
    pub version: String,
    pub topology_zone: String,
    pub topology_region: String,
}

/// One identified connection, shared by all of its registrations.
#[derive(Debug)]
pub struct Peer {
    /// The connection's remote address; unique among live connections.
    pub id: String,
    pub info: PeerInfo,
    last_update: AtomicI64,
}

impl Peer {
    pub fn new(id: impl Into<String>, info: PeerInfo, now: i64) -> Arc<Peer> {
        Arc::new(Peer {
            id: id.into(),
            info,
            last_update: AtomicI64::new(now),
        })
    }

    /// When the peer last identified or pinged (Unix nanoseconds).
    pub fn last_update(&self) -> i64 {
        self.last_update.load(Ordering::Relaxed)
    }

    /// Records a PING; returns the previous update time.
    pub fn touch(&self, now: i64) -> i64 {
        self.last_update.swap(now, Ordering::Relaxed)
    }

    /// `<broadcast_address>:<http_port>`, how `/topic/tombstone` names a node.
    pub fn node(&self) -> String {
        format!("{}:{}", self.info.broadcast_address, self.info.http_port)
    }
}

/// A peer's entry in one registration.
#[derive(Debug, Clone)]
pub struct Producer {
    pub peer: Arc<Peer>,
    tombstoned_at: Option<i64>,
}

impl Producer {
    fn new(peer: &Arc<Peer>) -> Producer {
        Producer {
            peer: Arc::clone(peer),
            tombstoned_at: None,
        }
    }

    /// When `/topic/tombstone` last hit this entry (Unix nanoseconds).
    pub fn tombstoned_at(&self) -> Option<i64> {
        self.tombstoned_at
    }

    /// Tombstoned less than `lifetime` ago.
    pub fn is_tombstoned(&self, now: i64, lifetime: Duration) -> bool {
        self.tombstoned_at
            .is_some_and(|at| now.saturating_sub(at) < nanos(lifetime))
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The producers neither silent for longer than `inactive_timeout` nor
/// tombstoned within `tombstone_lifetime` (a zero lifetime ignores tombstones).
pub fn filter_by_active(
    producers: Vec<Producer>,
    now: i64,
    inactive_timeout: Duration,
    tombstone_lifetime: Duration,
) -> Vec<Producer> {
    producers
        .into_iter()
        .filter(|p| {
            now.saturating_sub(p.peer.last_update()) <= nanos(inactive_timeout)
                && !p.is_tombstoned(now, tombstone_lifetime)
        })
        .collect()
}

/// The keys of registrations, in order.
pub fn keys(registrations: &[Registration]) -> Vec<String> {
    registrations.iter().map(|r| r.key.clone()).collect()
}

/// The subkeys of registrations, in order.
pub fn subkeys(registrations: &[Registration]) -> Vec<String> {
    registrations.iter().map(|r| r.subkey.clone()).collect()
}

/// Registrations grouped with their producers.
#[derive(Debug, Default)]
pub struct RegistrationDb {
    registrations: BTreeMap<Registration, Vec<Producer>>,
}

impl RegistrationDb {
    pub fn new() -> RegistrationDb {
        RegistrationDb::default()
    }

    /// Adds a registration with no producers, if missing.
    pub fn add_registration(&mut self, key: Registration) {
        self.registrations.entry(key).or_default();
    }

    /// Adds `peer` as a producer of `key` (creating the registration); false
    /// when it already was one, in which case its entry is left as it was.
    pub fn add_producer(&mut self, key: Registration, peer: &Arc<Peer>) -> bool {
        let producers = self.registrations.entry(key).or_default();
        if producers.iter().any(|p| p.peer.id == peer.id) {
            return false;
        }
        producers.push(Producer::new(peer));
        true
    }

    /// Removes the peer `id` from `key`: (whether it was there, producers left).
    /// The registration stays, even when empty.
    pub fn remove_producer(&mut self, key: &Registration, id: &str) -> (bool, usize) {
        let Some(producers) = self.registrations.get_mut(key) else {
            return (false, 0);
        };
        let before = producers.len();
        producers.retain(|p| p.peer.id != id);
        (producers.len() != before, producers.len())
    }

    /// Removes a registration and all of its producers.
    pub fn remove_registration(&mut self, key: &Registration) {
        self.registrations.remove(key);
    }

    /// The registrations matching a query (`*` matches any key or subkey).
    pub fn find_registrations(
        &self,
        category: Category,
        key: &str,
        subkey: &str,
    ) -> Vec<Registration> {
        if key != "*" && subkey != "*" {
            let k = Registration {
                category,
                key: key.to_owned(),
                subkey: subkey.to_owned(),
            };
            return match self.registrations.contains_key(&k) {
                true => vec![k],
                false => Vec::new(),
            };
        }
        self.registrations
            .keys()
            .filter(|r| r.is_match(category, key, subkey))
            .cloned()
            .collect()
    }

    /// The producers of the matching registrations, each peer once (its entry
    /// in the first matching registration).
    pub fn find_producers(&self, category: Category, key: &str, subkey: &str) -> Vec<Producer> {
        let mut seen = HashSet::new();
        self.registrations
            .iter()
            .filter(|(r, _)| r.is_match(category, key, subkey))
            .flat_map(|(_, producers)| producers)
            .filter(|p| seen.insert(p.peer.id.as_str()))
            .cloned()
            .collect()
    }

    /// Every registration the peer `id` is a producer of.
    pub fn lookup_registrations(&self, id: &str) -> Vec<Registration> {
        self.registrations
            .iter()
            .filter(|(_, producers)| producers.iter().any(|p| p.peer.id == id))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// nsqlookupd's `/topic/tombstone`: tombstones, at `now`, the producers of
    /// `topic` whose node (`<broadcast_address>:<http_port>`) is `node`. With a
    /// `*` topic each peer's first topic entry is the one considered. Returns
    /// how many entries were tombstoned.
    pub fn tombstone(&mut self, topic: &str, node: &str, now: i64) -> usize {
        let mut seen = HashSet::new();
        let mut count = 0;
        for (r, producers) in self.registrations.iter_mut() {
            if !r.is_match(Category::Topic, topic, "") {
                continue;
            }
            for p in producers.iter_mut() {
                if seen.insert(p.peer.id.clone()) && p.peer.node() == node {
                    p.tombstoned_at = Some(now);
                    count += 1;
                }
            }
        }
        count
    }

    /// Every registration with its producers, in order (for `/debug`).
    pub fn iter(&self) -> impl Iterator<Item = (&Registration, &[Producer])> {
        self.registrations.iter().map(|(r, p)| (r, p.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn peer(id: &str, http_port: i64, now: i64) -> Arc<Peer> {
        Peer::new(
            id,
            PeerInfo {
                remote_address: id.into(),
                hostname: "h".into(),
                broadcast_address: "b".into(),
                tcp_port: 4150,
                http_port,
                version: "1.3.0".into(),
                ..PeerInfo::default()
            },
            now,
        )
    }

    fn ids(producers: &[Producer]) -> Vec<&str> {
        producers.iter().map(|p| p.peer.id.as_str()).collect()
    }

    #[test]
    fn producers_register_once_and_unregister_leaving_the_key() {
        let mut db = RegistrationDb::new();
        let a = peer("a:1", 4151, 0);
        let b = peer("b:1", 4152, 0);
        assert!(db.add_producer(Registration::topic("t"), &a));
        assert!(!db.add_producer(Registration::topic("t"), &a));
        assert!(db.add_producer(Registration::topic("t"), &b));
        assert!(db.add_producer(Registration::channel("t", "c"), &a));
        assert_eq!(
            ids(&db.find_producers(Category::Topic, "t", "")),
            ["a:1", "b:1"]
        );
        assert_eq!(
            db.lookup_registrations("a:1"),
            [Registration::topic("t"), Registration::channel("t", "c")]
        );

        assert_eq!(
            db.remove_producer(&Registration::topic("t"), "a:1"),
            (true, 1)
        );
        assert_eq!(
            db.remove_producer(&Registration::topic("t"), "a:1"),
            (false, 1)
        );
        assert_eq!(
            db.remove_producer(&Registration::topic("t"), "b:1"),
            (true, 0)
        );
        assert_eq!(
            db.remove_producer(&Registration::topic("x"), "b:1"),
            (false, 0)
        );
        // The topic is still known, with nobody producing it.
        assert_eq!(
            db.find_registrations(Category::Topic, "t", ""),
            [Registration::topic("t")]
        );
        assert!(db.find_producers(Category::Topic, "t", "").is_empty());
        db.remove_registration(&Registration::topic("t"));
        assert!(db.find_registrations(Category::Topic, "t", "").is_empty());
    }

    #[test]
    fn wildcards_match_any_key_and_dedupe_producers() {
        let mut db = RegistrationDb::new();
        let a = peer("a:1", 4151, 0);
        let b = peer("b:1", 4152, 0);
        db.add_producer(Registration::channel("t1", "c1"), &a);
        db.add_producer(Registration::channel("t1", "c2"), &b);
        db.add_producer(Registration::channel("t2", "c1"), &a);
        db.add_producer(Registration::topic("t1"), &a);
        db.add_producer(Registration::topic("t2"), &a);
        db.add_registration(Registration::topic("t3"));
        let t1_channels = db.find_registrations(Category::Channel, "t1", "*");
        assert_eq!(subkeys(&t1_channels), ["c1", "c2"]);
        assert_eq!(
            keys(&db.find_registrations(Category::Topic, "*", "")),
            ["t1", "t2", "t3"]
        );
        assert_eq!(
            subkeys(&db.find_registrations(Category::Channel, "*", "*")),
            ["c1", "c2", "c1"]
        );
        assert_eq!(
            ids(&db.find_producers(Category::Channel, "*", "*")),
            ["a:1", "b:1"]
        );
        // `*` also matches a topic's empty subkey, as in nsqlookupd.
        assert_eq!(
            db.find_registrations(Category::Topic, "t1", "*"),
            [Registration::topic("t1")]
        );
        assert!(Registration::topic("x").is_match(Category::Topic, "*", ""));
        assert!(!Registration::topic("x").is_match(Category::Channel, "*", "*"));
    }

    #[test]
    fn tombstones_hide_one_topic_producer_until_they_expire() {
        let mut db = RegistrationDb::new();
        let a = peer("a:1", 4151, 0);
        let b = peer("b:1", 4152, 0);
        for p in [&a, &b] {
            db.add_producer(Registration::topic("t"), p);
            db.add_producer(Registration::topic("u"), p);
        }
        assert_eq!(db.tombstone("t", "b:4151", 10 * SEC), 1);
        assert_eq!(db.tombstone("t", "nobody:1", 10 * SEC), 0);
        let life = Duration::from_secs(45);
        let inactive = Duration::from_secs(300);
        let active = |db: &RegistrationDb, topic: &str, now: i64| {
            let producers = db.find_producers(Category::Topic, topic, "");
            ids(&filter_by_active(producers, now, inactive, life))
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(active(&db, "t", 10 * SEC), ["b:1"]);
        assert_eq!(active(&db, "t", 54 * SEC), ["b:1"]);
        // Only topic `t` is affected.
        assert_eq!(active(&db, "u", 10 * SEC), ["a:1", "b:1"]);

        // Registering again while tombstoned changes nothing.
        assert!(!db.add_producer(Registration::topic("t"), &a));
        assert_eq!(active(&db, "t", 20 * SEC), ["b:1"]);
        // A zero lifetime (as /nodes uses) ignores tombstones.
        let all = db.find_producers(Category::Topic, "t", "");
        assert_eq!(
            filter_by_active(all, 20 * SEC, inactive, Duration::ZERO).len(),
            2
        );

        // After the lifetime the producer is back.
        assert_eq!(active(&db, "t", 55 * SEC), ["a:1", "b:1"]);
        let entry = &db.find_producers(Category::Topic, "t", "")[0];
        assert_eq!(entry.tombstoned_at(), Some(10 * SEC));
        assert!(!entry.is_tombstoned(55 * SEC, life));

        // Unregistering drops the tombstone with the entry.
        db.remove_producer(&Registration::topic("t"), "a:1");
        db.add_producer(Registration::topic("t"), &a);
        assert_eq!(
            db.find_producers(Category::Topic, "t", "")[1].tombstoned_at(),
            None
        );
    }

    #[test]
    fn producers_silent_past_the_inactivity_timeout_are_filtered_out() {
        let mut db = RegistrationDb::new();
        let a = peer("a:1", 4151, 0);
        let b = peer("b:1", 4152, 0);
        db.add_producer(Registration::client(), &a);
        db.add_producer(Registration::client(), &b);
        let timeout = Duration::from_secs(300);
        let active = |now: i64| {
            let all = db.find_producers(Category::Client, "", "");
            filter_by_active(all, now, timeout, Duration::ZERO)
                .iter()
                .map(|p| p.peer.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(active(300 * SEC), ["a:1", "b:1"]);
        assert_eq!(b.touch(100 * SEC), 0);
        assert_eq!(active(300 * SEC + 1), ["b:1"]);
        assert_eq!(active(400 * SEC + 1), Vec::<String>::new());
        // Still registered: a later PING brings it back.
        a.touch(500 * SEC);
        assert_eq!(active(500 * SEC), ["a:1"]);
    }
}
