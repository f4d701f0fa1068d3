//! IDENTIFY: the client's JSON, the per-client settings it negotiates within the
//! broker's limits, and nsqd's feature-negotiation response.

use super::error::ClientError;
use crate::options::Options;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a client may send; unknown fields are ignored, wrong types are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdentifyData {
    pub client_id: String,
    pub hostname: String,
    pub heartbeat_interval: i64,
    pub output_buffer_size: i64,
    pub output_buffer_timeout: i64,
    pub feature_negotiation: bool,
    pub tls_v1: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub snappy: bool,
    pub sample_rate: i32,
    pub user_agent: String,
    pub msg_timeout: i64,
    pub topology_zone: String,
    pub topology_region: String,
    // Pre-1.0 clients sent these instead of client_id and hostname.
    pub short_id: String,
    pub long_id: String,
}

impl IdentifyData {
    /// Go's `%+v` of nsqd's `identifyDataV2` (its fields, in its order), as
    /// nsqd logs every IDENTIFY.
    pub fn go_fields(&self) -> String {
        format!(
            "{{ClientID:{} Hostname:{} HeartbeatInterval:{} OutputBufferSize:{} \
             OutputBufferTimeout:{} FeatureNegotiation:{} TLSv1:{} Deflate:{} DeflateLevel:{} \
             Snappy:{} SampleRate:{} UserAgent:{} MsgTimeout:{} TopologyRegion:{} TopologyZone:{}}}",
            self.client_id,
            self.hostname,
            self.heartbeat_interval,
            self.output_buffer_size,
            self.output_buffer_timeout,
            self.feature_negotiation,
            self.tls_v1,
            self.deflate,
            self.deflate_level,
            self.snappy,
            self.sample_rate,
            self.user_agent,
            self.msg_timeout,
            self.topology_region,
            self.topology_zone,
        )
    }
}

/// A connection's negotiated settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Zero disables heartbeats.
    pub heartbeat_interval: Duration,
    pub output_buffer_size: usize,
    /// Zero flushes every write.
    pub output_buffer_timeout: Duration,
    pub msg_timeout: Duration,
    pub sample_rate: i32,
}

const DEFAULT_OUTPUT_BUFFER_SIZE: usize = 16 * 1024;

impl ClientSettings {
    pub fn defaults(opts: &Options) -> Self {
        ClientSettings {
            // nsqd's default heartbeat is half its (flagless) client timeout.
            heartbeat_interval: opts.client_timeout / 2,
            output_buffer_size: DEFAULT_OUTPUT_BUFFER_SIZE,
            output_buffer_timeout: opts.output_buffer_timeout,
            msg_timeout: opts.msg_timeout,
            sample_rate: 0,
        }
    }

    /// Applies IDENTIFY's requests as nsqd does: 0 keeps the default, -1 disables,
    /// anything outside the broker's bounds is an error.
    pub fn apply(&mut self, d: &IdentifyData, opts: &Options) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis() as i64;
        match d.heartbeat_interval {
            -1 => self.heartbeat_interval = Duration::ZERO,
            0 => {}
            v if (1000..=ms(opts.max_heartbeat_interval)).contains(&v) => {
                self.heartbeat_interval = Duration::from_millis(v as u64)
            }
            v => return Err(format!("heartbeat interval ({v}) is invalid")),
        }
        match d.output_buffer_timeout {
            -1 => self.output_buffer_timeout = Duration::ZERO,
            0 => {}
            v if (ms(opts.min_output_buffer_timeout)..=ms(opts.max_output_buffer_timeout))
                .contains(&v) =>
            {
                self.output_buffer_timeout = Duration::from_millis(v as u64)
            }
            v => return Err(format!("output buffer timeout ({v}) is invalid")),
        }
        match d.output_buffer_size {
            -1 => {
                self.output_buffer_size = 1;
                self.output_buffer_timeout = Duration::ZERO;
            }
            0 => {}
            v if (64..=opts.max_output_buffer_size).contains(&v) => {
                self.output_buffer_size = v as usize
            }
            v => return Err(format!("output buffer size ({v}) is invalid")),
        }
        if !(0..=99).contains(&d.sample_rate) {
            return Err(format!("sample rate ({}) is invalid", d.sample_rate));
        }
        self.sample_rate = d.sample_rate;
        match d.msg_timeout {
            0 => {}
            v if (1000..=ms(opts.max_msg_timeout)).contains(&v) => {
                self.msg_timeout = Duration::from_millis(v as u64)
            }
            v => return Err(format!("msg timeout ({v}) is invalid")),
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Negotiated<'a> {
    max_rdy_count: i64,
    version: &'a str,
    max_msg_timeout: i64,
    msg_timeout: i64,
    tls_v1: bool,
    deflate: bool,
    deflate_level: i64,
    max_deflate_level: i64,
    snappy: bool,
    sample_rate: i32,
    auth_required: bool,
    output_buffer_size: usize,
    output_buffer_timeout: i64,
    topology_zone: &'a str,
    topology_region: &'a str,
}

/// Go's decoder leaves a field alone when the JSON says `null`; some clients
/// (tokio-nsq) send nulls, so they are dropped before decoding.
pub fn parse(body: &[u8]) -> Result<IdentifyData, ClientError> {
    let bad = || ClientError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body");
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(v).map_err(|_| bad())
}

/// The connection features IDENTIFY turns on, in nsqd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub tls: bool,
    pub snappy: bool,
    pub deflate: bool,
    /// Reported even when deflate is off, as nsqd does.
    pub deflate_level: i64,
}

/// nsqd's negotiation: a feature is on when the client asks and the broker
/// offers it; the deflate level defaults to 6 and is capped by
/// `--max-deflate-level`; snappy and deflate together are refused.
pub fn negotiate(
    d: &IdentifyData,
    opts: &Options,
    tls_offered: bool,
) -> Result<Features, ClientError> {
    let deflate = opts.deflate_enabled && d.deflate;
    let mut deflate_level = 6;
    if deflate && d.deflate_level > 0 {
        deflate_level = d.deflate_level;
    }
    deflate_level = deflate_level.min(opts.max_deflate_level);
    let snappy = opts.snappy_enabled && d.snappy;
    if deflate && snappy {
        return Err(ClientError::fatal(
            "E_IDENTIFY_FAILED",
            "cannot enable both deflate and snappy compression",
        ));
    }
    Ok(Features {
        tls: tls_offered && d.tls_v1,
        snappy,
        deflate,
        deflate_level,
    })
}

/// The feature-negotiation JSON.
pub fn response(opts: &Options, s: &ClientSettings, f: &Features, auth_required: bool) -> Vec<u8> {
    let r = Negotiated {
        max_rdy_count: opts.max_rdy_count,
        version: nsq_common::version::NSQ_VERSION,
        max_msg_timeout: opts.max_msg_timeout.as_millis() as i64,
        msg_timeout: s.msg_timeout.as_millis() as i64,
        tls_v1: f.tls,
        deflate: f.deflate,
        deflate_level: f.deflate_level,
        max_deflate_level: opts.max_deflate_level,
        snappy: f.snappy,
        sample_rate: s.sample_rate,
        auth_required,
        output_buffer_size: s.output_buffer_size,
        output_buffer_timeout: s.output_buffer_timeout.as_millis() as i64,
        topology_zone: &opts.topology_zone,
        topology_region: &opts.topology_region,
    };
    serde_json::to_vec(&r).expect("plain struct serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_absent_and_wrong_types_refused() {
        let d =
            parse(br#"{"client_id":null,"sample_rate":null,"heartbeat_interval":5000}"#).unwrap();
        assert_eq!(
            (d.client_id.as_str(), d.sample_rate, d.heartbeat_interval),
            ("", 0, 5000)
        );
        assert_eq!(
            parse(br#"{"heartbeat_interval":"x"}"#)
                .unwrap_err()
                .to_string(),
            "E_BAD_BODY IDENTIFY failed to decode JSON body"
        );
        assert!(parse(b"[1]").is_err());
    }

    #[test]
    fn identify_is_logged_as_gos_struct_dump() {
        let d = parse(
            br#"{"client_id":"c1","hostname":"h.local","heartbeat_interval":-1,
                "feature_negotiation":true,"deflate_level":3,"snappy":true,"sample_rate":7,
                "user_agent":"go-nsq/1.1.0","msg_timeout":5000,"topology_zone":"z"}"#,
        )
        .unwrap();
        assert_eq!(
            d.go_fields(),
            "{ClientID:c1 Hostname:h.local HeartbeatInterval:-1 OutputBufferSize:0 \
             OutputBufferTimeout:0 FeatureNegotiation:true TLSv1:false Deflate:false \
             DeflateLevel:3 Snappy:true SampleRate:7 UserAgent:go-nsq/1.1.0 MsgTimeout:5000 \
             TopologyRegion: TopologyZone:z}"
        );
    }

    fn ask(json: &str, opts: &Options, tls: bool) -> Result<Features, ClientError> {
        negotiate(&parse(json.as_bytes()).unwrap(), opts, tls)
    }

    #[test]
    fn deflate_level_defaults_to_6_and_is_capped() {
        let opts = Options::default();
        let level = |json: &str| ask(json, &opts, false).unwrap().deflate_level;
        assert_eq!(level(r#"{"deflate":true,"deflate_level":0}"#), 6);
        assert_eq!(level(r#"{"deflate":true,"deflate_level":10}"#), 6);
        assert_eq!(level(r#"{"deflate":true,"deflate_level":3}"#), 3);
        assert_eq!(level(r#"{"deflate":false,"deflate_level":3}"#), 6);
        let opts =
            Options::parse_from(["nsqd", "--max-deflate-level=9"].map(String::from)).unwrap();
        assert_eq!(
            ask(r#"{"deflate":true,"deflate_level":10}"#, &opts, false)
                .unwrap()
                .deflate_level,
            9
        );
    }

    #[test]
    fn features_need_both_sides() {
        let opts = Options::default();
        let f = ask(r#"{"tls_v1":true,"snappy":true}"#, &opts, false).unwrap();
        assert!(!f.tls && f.snappy && !f.deflate);
        assert!(ask(r#"{"tls_v1":true}"#, &opts, true).unwrap().tls);
        let off =
            Options::parse_from(["nsqd", "--snappy=false", "--deflate=false"].map(String::from))
                .unwrap();
        let f = ask(r#"{"snappy":true,"deflate":true}"#, &off, true).unwrap();
        assert!(!f.snappy && !f.deflate);
        let e = ask(r#"{"snappy":true,"deflate":true}"#, &opts, true).unwrap_err();
        assert_eq!(
            (e.to_string().as_str(), e.fatal),
            (
                "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression",
                true
            )
        );
    }
}
