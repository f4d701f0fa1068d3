//! `nsqd.dat`: the topics and channels (with paused state) that survive restarts,
//! in nsqd's JSON layout so either broker can read the other's data path.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const METADATA_FILE: &str = "nsqd.dat";

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub topics: Vec<TopicMeta>,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    #[serde(default)]
    pub channels: Vec<ChannelMeta>,
    pub name: String,
    #[serde(default)]
    pub paused: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelMeta {
    pub name: String,
    #[serde(default)]
    pub paused: bool,
}

/// Reads `nsqd.dat`; a missing file is an empty broker.
pub fn load(data_path: &Path) -> Result<Metadata, String> {
    let path = data_path.join(METADATA_FILE);
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map_err(|e| format!("failed to parse metadata in {} - {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
        Err(e) => Err(format!(
            "failed to read metadata from {} - {e}",
            path.display()
        )),
    }
}

pub fn save(data_path: &Path, meta: &Metadata) -> std::io::Result<()> {
    let data = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    write_atomically(&data_path.join(METADATA_FILE), &data)
}

/// Temp file, fsync, rename, fsync of the directory: a crash leaves old or new, never half.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_nsqd_metadata_and_writes_the_same_shape() {
        let go = r#"{"topics":[{"channels":[{"name":"c","paused":true}],"name":"t","paused":false}],"version":"1.3.0"}"#;
        let meta: Metadata = serde_json::from_str(go).unwrap();
        assert_eq!(meta.topics[0].channels[0].name, "c");
        assert_eq!(serde_json::to_string(&meta).unwrap(), go);
    }
}
