//! `nsqd.dat`: the topics and channels (with paused state) that survive restarts,
//! in nsqd's JSON layout so either broker can read the other's data path.
//!
//! Writing uses Go nsqd 1.3's field order; an empty list is `[]` where Go
//! writes `null` (Go reads both as empty, and so do older nsqd and tools).
//!
//! Reading follows Go's `encoding/json` decoding into nsqd's `Metadata` struct,
//! so every file Go nsqd starts on starts this broker too: `null` is the zero
//! value (Go nsqd writes `"channels":null` for a topic without channels and
//! `"topics":null` when it has no topics), keys match case-insensitively,
//! unknown keys are skipped, a repeated key overwrites, and a name that is not
//! UTF-8 is read lossily, so that start-up skips it as invalid, as Go does.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

pub const METADATA_FILE: &str = "nsqd.dat";

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Metadata {
    pub topics: Vec<TopicMeta>,
    pub version: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub paused: bool,
    pub channels: Vec<ChannelMeta>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ChannelMeta {
    pub name: String,
    pub paused: bool,
}

/// Reads `nsqd.dat`; a missing file is an empty broker.
pub fn load(data_path: &Path) -> Result<Metadata, String> {
    let path = data_path.join(METADATA_FILE);
    match std::fs::read(&path) {
        Ok(data) => parse(&data)
            .map_err(|e| format!("failed to parse metadata in {} - {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
        Err(e) => Err(format!(
            "failed to read metadata from {} - {e}",
            path.display()
        )),
    }
}

/// Decodes `nsqd.dat` as Go nsqd does (see the module docs).
pub fn parse(data: &[u8]) -> Result<Metadata, serde_json::Error> {
    // Go checks the syntax of the whole document first; this pass rejects
    // what it rejects (e.g. raw control characters in strings), which the
    // byte-level string reading below would let through.
    serde_json::from_slice::<IgnoredAny>(data)?;
    serde_json::from_slice::<Go<Metadata>>(data).map(|m| m.0)
}

pub fn save(data_path: &Path, meta: &Metadata) -> std::io::Result<()> {
    let data = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    write_atomically(&data_path.join(METADATA_FILE), &data)
}

/// Temp file, fsync, rename, fsync of the directory: a crash leaves old or new, never half.
/// Owner-only (0600), as nsqd writes `nsqd.dat`.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

// ---- Go's decoding rules ----

/// A struct as Go's decoder fills it: `null` leaves it zero, an object sets
/// the fields its keys name.
trait GoStruct: Default {
    const WHAT: &'static str;
    /// Decodes the value of `key` into its field; an unknown key's value is skipped.
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// A list of `T`: `null` is empty, as is a `null` field in Go (it sets a
/// slice to nil; for a string or bool it changes nothing).
fn list<'de, T: GoStruct, A: MapAccess<'de>>(map: &mut A) -> Result<Vec<T>, A::Error> {
    let items: Option<Vec<Go<T>>> = map.next_value()?;
    Ok(items.into_iter().flatten().map(|g| g.0).collect())
}

fn set<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    to: &mut T,
    map: &mut A,
) -> Result<(), A::Error> {
    if let Some(v) = map.next_value::<Option<T>>()? {
        *to = v;
    }
    Ok(())
}

fn set_str<'de, A: MapAccess<'de>>(to: &mut String, map: &mut A) -> Result<(), A::Error> {
    if let Some(v) = map.next_value::<Option<GoString>>()? {
        *to = v.0;
    }
    Ok(())
}

impl GoStruct for Metadata {
    const WHAT: &'static str = "nsqd metadata";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "topics" => self.topics = list(map)?,
            "version" => set_str(&mut self.version, map)?,
            _ => _ = map.next_value::<IgnoredAny>()?,
        }
        Ok(())
    }
}

impl GoStruct for TopicMeta {
    const WHAT: &'static str = "a topic";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => set_str(&mut self.name, map)?,
            "paused" => set(&mut self.paused, map)?,
            "channels" => self.channels = list(map)?,
            _ => _ = map.next_value::<IgnoredAny>()?,
        }
        Ok(())
    }
}

impl GoStruct for ChannelMeta {
    const WHAT: &'static str = "a channel";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => set_str(&mut self.name, map)?,
            "paused" => set(&mut self.paused, map)?,
            _ => _ = map.next_value::<IgnoredAny>()?,
        }
        Ok(())
    }
}

struct Go<T>(T);

impl<'de, T: GoStruct> Deserialize<'de> for Go<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StructVisitor(PhantomData)).map(Go)
    }
}

struct StructVisitor<T>(PhantomData<T>);

impl<'de, T: GoStruct> Visitor<'de> for StructVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} (an object or null)", T::WHAT)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut v = T::default();
        while let Some(key) = map.next_key::<GoString>()? {
            v.field(&fold_key(&key.0), &mut map)?;
        }
        Ok(v)
    }
}

/// A JSON string read as Go reads one into a `string`: bytes that are not
/// UTF-8 (or escaped lone surrogates) become U+FFFD instead of an error.
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GoString, E> {
                Ok(GoString(s.to_owned()))
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<GoString, E> {
                Ok(GoString(String::from_utf8_lossy(b).into_owned()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// `key` folded as Go's decoder folds keys to match field names regardless of
/// case (upper(lower(c))), in lower case: ASCII letters, and the four
/// non-ASCII letters that fold onto ASCII ones.
fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{130}' | '\u{131}' => 'i',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq_common::names::is_valid_topic_name;

    fn topic(name: &str, paused: bool, channels: &[(&str, bool)]) -> TopicMeta {
        TopicMeta {
            name: name.to_owned(),
            paused,
            channels: channels
                .iter()
                .map(|&(name, paused)| ChannelMeta {
                    name: name.to_owned(),
                    paused,
                })
                .collect(),
        }
    }

    #[test]
    fn reads_go_nsqd_1_3_file_with_channels_null() {
        // Byte for byte what Go nsqd 1.3.0 wrote (fixtures/go-nsqd-1.3.0/basic).
        let go = br#"{"topics":[{"name":"orders","paused":false,"channels":[{"name":"billing","paused":false},{"name":"audit","paused":true}]},{"name":"bare","paused":false,"channels":null},{"name":"paused_topic","paused":true,"channels":[{"name":"c","paused":false}]}],"version":"1.3.0"}"#;
        let meta = parse(go).unwrap();
        assert_eq!(
            meta.topics,
            [
                topic("orders", false, &[("billing", false), ("audit", true)]),
                topic("bare", false, &[]),
                topic("paused_topic", true, &[("c", false)]),
            ]
        );
        assert_eq!(meta.version, "1.3.0");
    }

    #[test]
    fn topics_null_or_missing_is_a_broker_without_topics() {
        // Go nsqd writes `"topics":null` once its last topic is deleted.
        for doc in [
            &br#"{"topics":null,"version":"1.3.0"}"#[..],
            br#"{"version":"1.3.0"}"#,
            b"{}",
            b" null ",
        ] {
            let meta = parse(doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
            assert!(meta.topics.is_empty(), "{doc:?}");
        }
    }

    #[test]
    fn null_fields_and_null_list_entries_are_zero_values() {
        let doc = br#"{"topics":[{"name":null,"paused":null,"channels":[{"name":"c","paused":null},null]},null,{"name":"t"}],"version":null}"#;
        let meta = parse(doc).unwrap();
        assert_eq!(
            meta.topics,
            [
                topic("", false, &[("c", false), ("", false)]),
                TopicMeta::default(),
                topic("t", false, &[]),
            ]
        );
        assert_eq!(meta.version, "");
    }

    #[test]
    fn keys_match_fields_regardless_of_case_as_in_go() {
        // U+017F (long s) and U+0130 (dotted capital I) fold onto ASCII in Go.
        let doc = "{\"TOPICS\":[{\"Name\":\"t\",\"pau\u{17F}ed\":true,\"Channels\":[{\"nAmE\":\"c\",\"PAUSED\":true}]}],\"VERS\u{130}ON\":\"1.2.1\"}";
        let meta = parse(doc.as_bytes()).unwrap();
        assert_eq!(meta.topics, [topic("t", true, &[("c", true)])]);
        assert_eq!(meta.version, "1.2.1");
    }

    #[test]
    fn repeated_keys_overwrite_and_unknown_keys_are_skipped() {
        let doc = br#"{"topics":[{"name":"a","name":"b","paused":true,"paused":null,"x":{"y":[1,"z"]},
            "channels":[{"name":"gone"}],"channels":[{"name":"c","ephemeral":false}]}],"extra":[null]}"#;
        let meta = parse(doc).unwrap();
        // Go: a repeated key overwrites; null leaves a bool as it was.
        assert_eq!(meta.topics, [topic("b", true, &[("c", false)])]);
        let doc = br#"{"topics":[{"name":"t","channels":[{"name":"c"}],"channels":null}]}"#;
        // Go: null sets a list to nil.
        assert_eq!(parse(doc).unwrap().topics, [topic("t", false, &[])]);
    }

    #[test]
    fn names_that_are_not_utf8_are_read_lossily_for_start_up_to_skip() {
        let doc =
            b"{\"topics\":[{\"name\":\"bad\xff\"},{\"name\":\"sur\\ud800\"},{\"name\":\"ok\"}]}";
        let names: Vec<String> = parse(doc)
            .unwrap()
            .topics
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names[0], "bad\u{FFFD}");
        assert!(names[1].starts_with("sur\u{FFFD}"), "{names:?}");
        assert_eq!(names[2], "ok");
        let valid: Vec<bool> = names.iter().map(|n| is_valid_topic_name(n)).collect();
        assert_eq!(valid, [false, false, true]);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for doc in [
            &b""[..],
            b"{",
            br#"{"topics":[]} x"#,
            br#"{"topics":{}}"#,
            br#"{"topics":[1]}"#,
            br#"{"topics":[{"name":1}]}"#,
            br#"{"topics":[{"paused":"true"}]}"#,
            br#"{"topics":[{"channels":"c"}]}"#,
            br#"{"version":["1"]}"#,
            b"{\"version\":\"raw\ttab\"}",
            b"[]",
        ] {
            assert!(parse(doc).is_err(), "{:?}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn saved_file_is_owner_only_like_nsqds() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &Metadata::default()).unwrap();
        let mode = std::fs::metadata(dir.path().join(METADATA_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn writes_go_nsqd_1_3_field_order_and_reads_it_back() {
        let meta = Metadata {
            topics: vec![
                topic("orders", false, &[("billing", false), ("audit", true)]),
                topic("bare", false, &[]),
            ],
            version: "1.3.0".into(),
        };
        let out = serde_json::to_string(&meta).unwrap();
        // Go writes `null` for the empty list; it reads `[]` the same way.
        assert_eq!(
            out,
            r#"{"topics":[{"name":"orders","paused":false,"channels":[{"name":"billing","paused":false},{"name":"audit","paused":true}]},{"name":"bare","paused":false,"channels":[]}],"version":"1.3.0"}"#
        );
        assert_eq!(parse(out.as_bytes()).unwrap(), meta);
    }
}
