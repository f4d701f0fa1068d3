//! Reading an `strace -f -yy -xx` trace of the broker: which bytes went to
//! which file or socket, and when each fsync/fdatasync began and ended, as
//! events in the order strace saw them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `strace` arguments the parser expects, before `-o FILE -- program`.
pub const ARGS: &[&str] = &[
    "-f",
    "-yy",
    "-xx",
    "-s",
    "4194304",
    "-e",
    "trace=write,writev,sendto,sendmsg,pwrite64,fsync,fdatasync",
];

/// The path of the `strace` binary; panics with the fix when missing.
pub fn binary() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v strace"])
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "strace is not installed: scripts/test installs it (apt-get install strace)"
    );
    PathBuf::from(path)
}

/// What a syscall did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Bytes written to the descriptor (`write`, `writev`, `sendto`, ...).
    Write(Vec<u8>),
    /// `fsync` or `fdatasync`.
    Sync,
}

/// One syscall, with where in the trace it began and ended.
#[derive(Debug, Clone)]
pub struct Call {
    /// What strace printed for the descriptor: a path, or `TCP:[a->b]`.
    pub target: String,
    pub kind: Kind,
    /// Event numbers (line order in the trace): entry and completion.
    pub entered: usize,
    pub completed: usize,
    /// The return value, or `None` when the trace ends before it.
    pub ret: Option<i64>,
}

/// Parses a whole trace (lines from every thread, `PID ` prefixed).
pub fn parse(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // Per pid: the unfinished call's name, args text and entry event.
    let mut open: HashMap<String, (String, String, usize)> = HashMap::new();
    for (event, line) in text.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            if let Some((name, args, entered)) = open.remove(pid) {
                let full = format!("{args}{tail}");
                if let Some(c) = call(&name, &full, entered, event) {
                    calls.push(c);
                }
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if let Some(args) = args.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_string(), (name.to_string(), args.to_string(), event));
            continue;
        }
        if let Some(c) = call(name, args, event, event) {
            calls.push(c);
        }
    }
    for (name, args, entered) in open.into_values() {
        if let Some(c) = call(&name, &args, entered, usize::MAX) {
            calls.push(c);
        }
    }
    calls.sort_by_key(|c| c.entered);
    calls
}

/// `args` is everything after `name(`, possibly with `) = ret`.
fn call(name: &str, args: &str, entered: usize, completed: usize) -> Option<Call> {
    let (target, after) = descriptor(args)?;
    // strace pads before `=` when it aligns columns.
    let ret = args.rsplit_once(')').and_then(|(_, r)| {
        let r = r.trim_start().strip_prefix('=')?;
        r.split_whitespace().next()?.parse().ok()
    });
    let kind = match name {
        "fsync" | "fdatasync" => Kind::Sync,
        "write" | "sendto" | "pwrite64" => Kind::Write(first_string(after)?),
        "writev" | "sendmsg" => Kind::Write(all_strings(after)),
        _ => return None,
    };
    Some(Call {
        target,
        kind,
        entered,
        completed,
        ret,
    })
}

/// `12</path>` or `12<TCP:[...]>` at the start of `args`: the text inside the
/// angle brackets, and what follows.
fn descriptor(args: &str) -> Option<(String, &str)> {
    let open = args.find('<')?;
    if !args[..open].chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Sockets print `<TCP:[...]>`, paths `</...>`; neither holds `>,`.
    let close = args[open..]
        .find(">,")
        .or_else(|| args[open..].find(">)"))?
        + open;
    let inner = &args[open + 1..close];
    // `-xx` prints paths as `\xNN` too.
    let target = if inner.starts_with("\\x") {
        String::from_utf8_lossy(&hex_string(inner).0).into_owned()
    } else {
        inner.to_string()
    };
    Some((target, &args[close + 1..]))
}

/// The first `"\xNN..."` string in `s`, decoded.
fn first_string(s: &str) -> Option<Vec<u8>> {
    let start = s.find('"')?;
    let (bytes, _) = hex_string(&s[start + 1..]);
    Some(bytes)
}

/// Every `"\xNN..."` string in `s`, decoded and joined (a writev's iovecs).
fn all_strings(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("iov_base=\"") {
        let (bytes, used) = hex_string(&rest[start + 10..]);
        out.extend(bytes);
        rest = &rest[start + 10 + used..];
    }
    out
}

/// Decodes `\xNN` pairs up to the closing quote; returns the bytes and how
/// much of `s` was used.
fn hex_string(s: &str) -> (Vec<u8>, usize) {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < b.len() && b[i] == b'\\' && b[i + 1] == b'x' {
        match std::str::from_utf8(&b[i + 2..i + 4])
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(v) => out.push(v),
            None => break,
        }
        i += 4;
    }
    (out, i + 1)
}

/// The children of `pid` (the process strace started).
pub fn children(pid: u32) -> Vec<u32> {
    let path = Path::new("/proc")
        .join(pid.to_string())
        .join("task")
        .join(pid.to_string())
        .join("children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_split_and_vectored_calls() {
        let trace = "\
100 write(2</dev/pts/0>, \"\\x68\\x69\", 2) = 2
101 fdatasync(7<\\x2f\\x74\\x2f\\x64> <unfinished ...>
100 writev(9<TCP:[127.0.0.1:4150->127.0.0.1:5000]>, [{iov_base=\"\\x4f\", iov_len=1}, {iov_base=\"\\x4b\", iov_len=1}], 2) = 2
101 <... fdatasync resumed>)     = 0
100 sendto(9<TCP:[127.0.0.1:4150->127.0.0.1:5000]>, \"\\x21\", 1, MSG_NOSIGNAL, NULL, 0) = 1
";
        let calls = parse(trace);
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].target, "/dev/pts/0");
        assert_eq!(calls[0].kind, Kind::Write(b"hi".to_vec()));
        assert_eq!(calls[1].target, "/t/d");
        assert_eq!(calls[1].kind, Kind::Sync);
        assert_eq!(
            (calls[1].entered, calls[1].completed, calls[1].ret),
            (1, 3, Some(0))
        );
        assert_eq!(calls[2].target, "TCP:[127.0.0.1:4150->127.0.0.1:5000]");
        assert_eq!(calls[2].kind, Kind::Write(b"OK".to_vec()));
        assert_eq!(calls[3].kind, Kind::Write(b"!".to_vec()));
        assert_eq!((calls[3].entered, calls[3].completed), (4, 4));
    }
}
