//! nsqd's client errors: a code, a description, and whether the connection closes.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub desc: String,
    /// Fatal errors close the connection after the error frame, as in nsqd.
    pub fatal: bool,
}

impl ClientError {
    pub fn fatal(code: &'static str, desc: impl Into<String>) -> Self {
        ClientError {
            code,
            desc: desc.into(),
            fatal: true,
        }
    }

    pub fn soft(code: &'static str, desc: impl Into<String>) -> Self {
        ClientError {
            code,
            desc: desc.into(),
            fatal: false,
        }
    }

    pub fn invalid(desc: impl Into<String>) -> Self {
        Self::fatal("E_INVALID", desc)
    }

    /// A read failure in nsqd's terms (e.g. a line longer than its buffer): the
    /// connection closes without an error frame.
    pub fn silent_close() -> Self {
        Self::fatal("", "")
    }

    pub fn is_silent(&self) -> bool {
        self.code.is_empty()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.desc)
    }
}

/// Go's `%q` for bytes, used in nsqd's name errors.
pub fn go_quote(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
    out
}

/// Raw bytes as Go's `%s` prints them.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(b"a b"), "\"a b\"");
        assert_eq!(go_quote(b"a\"\\\n\x01\xff"), "\"a\\\"\\\\\\n\\x01\\xff\"");
        assert_eq!(
            ClientError::invalid("x").to_string(),
            "E_INVALID x".to_string()
        );
    }
}
