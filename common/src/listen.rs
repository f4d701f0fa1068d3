//! TCP listeners with the system's full accept backlog.
//!
//! tokio's `TcpListener::bind` listens with a backlog of 128 (mio's, copied
//! from std), so a reconnect storm of thousands of clients overflows the
//! accept queue and waits out one-second SYN retries. Go listens with
//! `net.core.somaxconn`; so do we.

use std::io;
use std::net::SocketAddr;
use tokio::net::{lookup_host, TcpListener, TcpSocket};

/// The backlog used when `/proc/sys/net/core/somaxconn` cannot be read.
const DEFAULT_BACKLOG: u32 = 4096;
/// The kernel keeps the backlog in 16 bits before Linux 4.1; larger values
/// are clamped there anyway.
const MAX_BACKLOG: u32 = 65535;

/// The accept backlog: the system's `somaxconn`, as Go uses.
pub fn backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .map_or(DEFAULT_BACKLOG, |n| n.min(MAX_BACKLOG))
}

/// Binds `addr` (`host:port`, host names resolved) with [`backlog`]; the
/// first address that binds wins, as `TcpListener::bind` does.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and Go do on Unix: a restarted daemon can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog())
}

/// Raises the open-files soft limit to the hard limit, as Go's runtime does
/// for nsqd: every connection costs a descriptor, and distributions default
/// the soft limit to 1024. Returns the new soft limit.
pub fn raise_open_files_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_the_systems() {
        let want = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .map(|s| s.trim().parse::<u32>().unwrap().min(MAX_BACKLOG))
            .unwrap_or(DEFAULT_BACKLOG);
        assert_eq!(backlog(), want);
        assert!(backlog() > 128);
    }

    #[test]
    fn open_files_limit_is_raised_to_the_hard_limit() {
        let soft = raise_open_files_limit().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads into the struct passed.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!((soft, lim.rlim_cur), (lim.rlim_max, lim.rlim_max));
    }

    #[tokio::test]
    async fn binds_names_and_reports_errors() {
        let l = bind("localhost:0").await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
        let taken = l.local_addr().unwrap().to_string();
        let e = bind(&taken).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(bind("no.such.host.invalid:1").await.is_err());
    }
}
