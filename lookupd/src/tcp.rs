//! The TCP listener: reads each connection's protocol magic and hands `"  V1"`
//! connections to [`crate::protocol_v1`]; anything else is answered
//! `E_BAD_PROTOCOL` and closed.

use crate::nsqlookupd::Nsqlookupd;
use crate::protocol_v1;
use bytes::BytesMut;
use nsq_common::wire::{put_v1_response, MAGIC_V1};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Accepts until shutdown, then waits (bounded) for connections to close.
pub async fn serve(lookupd: Arc<Nsqlookupd>, listener: TcpListener) {
    let mut shutdown = lookupd.shutdown_signal();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = crate::nsqlookupd::exiting(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tracing::info!("TCP: new client({addr})");
                    conns.spawn(handle(Arc::clone(&lookupd), stream));
                }
                Err(e) => {
                    tracing::warn!("temporary Accept() failure - {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
    tracing::info!("TCP: closing {addr}");
}

async fn handle(lookupd: Arc<Nsqlookupd>, mut stream: TcpStream) {
    let remote = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut input = BytesMut::with_capacity(4096);
    let mut shutdown = lookupd.shutdown_signal();
    // nsqlookupd puts no deadline on the magic; only shutdown interrupts it.
    let magic = tokio::select! {
        r = async {
            while input.len() < 4 {
                if stream.read_buf(&mut input).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        } => r,
        _ = crate::nsqlookupd::exiting(&mut shutdown) => return,
    };
    if let Err(e) = magic {
        tracing::error!("failed to read protocol version - {e}");
        return;
    }
    let rest = input.split_off(4);
    let magic = String::from_utf8_lossy(&input).into_owned();
    tracing::info!("CLIENT({remote}): desired protocol magic '{magic}'");
    if &input[..] != MAGIC_V1 {
        let mut out = BytesMut::new();
        put_v1_response(&mut out, b"E_BAD_PROTOCOL");
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
        tracing::error!("client({remote}) bad protocol magic '{magic}'");
        return;
    }
    protocol_v1::io_loop(lookupd, stream, rest).await;
}

#[cfg(test)]
mod tests {
    use crate::nsqlookupd::{bind, serve};
    use crate::options::Options;
    use crate::registration_db::Category;
    use nsq_common::wire::split_v1_response;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A client connection that reads V1 responses one at a time.
    struct Client {
        conn: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        async fn connect(addr: std::net::SocketAddr) -> Client {
            let conn = TcpStream::connect(addr).await.unwrap();
            Client {
                conn,
                buf: Vec::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.conn.write_all(bytes).await.unwrap();
        }

        /// The next response, or `None` once the server closed the connection.
        async fn response(&mut self) -> Option<Vec<u8>> {
            loop {
                if let Some((data, used)) = split_v1_response(&self.buf) {
                    let data = data.to_vec();
                    self.buf.drain(..used);
                    return Some(data);
                }
                let mut chunk = [0u8; 512];
                let n = self.conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    #[tokio::test]
    async fn v1_connections_register_answer_errors_and_clean_up_over_real_sockets() {
        let opts = Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            ..Options::default()
        };
        let (lookupd, tcp, http) = bind(opts).await.unwrap();
        let addr = *lookupd.tcp_addr.get().unwrap();
        let server = tokio::spawn(serve(lookupd.clone(), tcp, http));

        let mut nsqd = Client::connect(addr).await;
        let body =
            br#"{"broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#;
        let mut hello = b"  V1PING\nIDENTIFY\n".to_vec();
        hello.extend_from_slice(&(body.len() as u32).to_be_bytes());
        hello.extend_from_slice(body);
        hello.extend_from_slice(b"REGISTER t c\n");
        // Byte by byte: framing must not depend on how reads split.
        for b in hello {
            nsqd.send(&[b]).await;
        }
        assert_eq!(nsqd.response().await.unwrap(), b"OK");
        let identify: serde_json::Value =
            serde_json::from_slice(&nsqd.response().await.unwrap()).unwrap();
        assert_eq!(identify["tcp_port"], addr.port());
        assert_eq!(nsqd.response().await.unwrap(), b"OK");
        let producers = || {
            lookupd
                .db
                .read()
                .find_producers(Category::Topic, "t", "")
                .len()
        };
        assert_eq!(producers(), 1);

        // A bad client gets its error and is closed; the nsqd is untouched.
        let mut bad = Client::connect(addr).await;
        bad.send(b"  V1REGISTER t\n").await;
        assert_eq!(
            bad.response().await.unwrap(),
            b"E_INVALID client must IDENTIFY"
        );
        assert_eq!(bad.response().await, None);
        let mut wrong = Client::connect(addr).await;
        wrong.send(b"  V2").await;
        assert_eq!(wrong.response().await.unwrap(), b"E_BAD_PROTOCOL");
        assert_eq!(producers(), 1);

        // Closing the nsqd connection removes its registrations.
        drop(nsqd);
        for _ in 0..100 {
            if producers() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(producers(), 0);
        assert!(lookupd
            .db
            .read()
            .find_producers(Category::Client, "", "")
            .is_empty());

        // Shutdown closes idle connections too.
        let mut idle = Client::connect(addr).await;
        idle.send(b"  V1").await;
        lookupd.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(idle.response().await, None);
    }
}
