//! Query strings parsed the way nsqd and nsqlookupd parse them (Go's
//! `url.ParseQuery` behind `http_api.NewReqParams`): `&` separates pairs, `;` is
//! an error, `+` is a space, a bad `%` escape is an error, and the first value of
//! a repeated key wins.

use super::response::ApiError;
use crate::names::{is_valid_channel_name, is_valid_topic_name};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// `None` when Go would refuse the query (NSQ then answers INVALID_REQUEST).
    pub fn parse(raw: &str) -> Option<Params> {
        let mut pairs = Vec::new();
        let mut ok = true;
        for seg in raw.split('&') {
            if seg.contains(';') {
                ok = false;
                continue;
            }
            if seg.is_empty() {
                continue;
            }
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            match (unescape(k), unescape(v)) {
                (Some(k), Some(v)) => pairs.push((k, v)),
                _ => ok = false,
            }
        }
        ok.then_some(Params(pairs))
    }

    /// The request's query, or NSQ's `400 INVALID_REQUEST`.
    pub fn from_query(query: Option<&str>) -> Result<Params, ApiError> {
        Params::parse(query.unwrap_or("")).ok_or_else(|| ApiError::bad_request("INVALID_REQUEST"))
    }

    /// The first value of `key`, if the key is present at all.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, or `""` when absent (nsqd's `Get` with the error ignored).
    pub fn get_or_empty(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// NSQ's `GetTopicChannelArgs`: a valid topic and channel, or
    /// `MISSING_ARG_TOPIC`, `INVALID_ARG_TOPIC`, `MISSING_ARG_CHANNEL`,
    /// `INVALID_ARG_CHANNEL` (400), checked in that order.
    pub fn topic_channel_args(&self) -> Result<(&str, &str), ApiError> {
        let topic = self
            .get("topic")
            .ok_or(ApiError::bad_request("MISSING_ARG_TOPIC"))?;
        if !is_valid_topic_name(topic) {
            return Err(ApiError::bad_request("INVALID_ARG_TOPIC"));
        }
        let channel = self
            .get("channel")
            .ok_or(ApiError::bad_request("MISSING_ARG_CHANNEL"))?;
        if !is_valid_channel_name(channel) {
            return Err(ApiError::bad_request("INVALID_ARG_CHANNEL"));
        }
        Ok((topic, channel))
    }

    /// nsqd's `boolParams`: `true`/`1` and `false`/`0`; anything else (or nothing)
    /// is `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> bool {
        parse_bool(self.get(key)).unwrap_or(default)
    }
}

/// nsqd's `boolParams` table.
pub fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v? {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Go's `url.QueryUnescape`; bytes that are not UTF-8 become U+FFFD.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parses_like_go() {
        let p = Params::parse("topic=a%2Eb&topic=second&flag&x=1+2&=v&&").unwrap();
        assert_eq!(p.get("topic"), Some("a.b"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("x"), Some("1 2"));
        assert_eq!(p.get(""), Some("v"));
        assert_eq!(p.get("missing"), None);
        assert_eq!(p.get_or_empty("missing"), "");
        assert_eq!(Params::parse(""), Some(Params::default()));
    }

    #[test]
    fn bad_escapes_and_semicolons_are_refused() {
        for bad in ["topic=%zz", "topic=%", "topic=%4", "a=1;b=2", "%g=1"] {
            assert_eq!(Params::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Params::from_query(Some("a;b")),
            Err(ApiError::bad_request("INVALID_REQUEST"))
        );
    }

    #[test]
    fn topic_channel_args_are_checked_in_nsq_order() {
        let args = |q: &str| {
            Params::parse(q)
                .unwrap()
                .topic_channel_args()
                .map(|(t, c)| (t.to_owned(), c.to_owned()))
                .map_err(|e| e.message.into_owned())
        };
        assert_eq!(args("topic=t&channel=c"), Ok(("t".into(), "c".into())));
        assert_eq!(args("channel=b@d"), Err("MISSING_ARG_TOPIC".into()));
        assert_eq!(args("topic=b@d"), Err("INVALID_ARG_TOPIC".into()));
        assert_eq!(args("topic=t"), Err("MISSING_ARG_CHANNEL".into()));
        assert_eq!(args("topic=t&channel="), Err("INVALID_ARG_CHANNEL".into()));
    }

    #[test]
    fn bool_params_follow_nsqd_table() {
        let p = Params::parse("a=1&b=false&c=True&d=0&e=true").unwrap();
        assert!(p.get_bool("a", false));
        assert!(!p.get_bool("b", true));
        assert!(p.get_bool("c", true));
        assert!(!p.get_bool("d", true));
        assert!(p.get_bool("e", false));
        assert!(p.get_bool("missing", true));
    }
}
