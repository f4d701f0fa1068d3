//! What `check`, `produce` and `consume` share to reach real clusters: the TLS, client
//! certificate and AUTH flags, and [`Setup`], which opens one ready connection with
//! them (dial, IDENTIFY, TLS upgrade, AUTH), all within `--connect-timeout`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::conn::{negotiate, Features, Link};
use crate::gotime::{format_duration, parse_duration};
use crate::protocol::{auth_command, ReadBuf};
use crate::reader::identify_body;
use crate::tls::{self, Identity, Trust};

const READ_BUF: usize = 64 << 10;

/// Connection flags: set-up timeout, TLS, client certificate, AUTH.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Timeout for setting up each connection: TCP connect, IDENTIFY, TLS and AUTH
    /// (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Upgrade every connection to TLS (IDENTIFY tls_v1).
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA that signed the brokers' certificates.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_root_ca_file: Option<PathBuf>,
    /// Accept any broker certificate (this checks the brokers, not their PKI).
    #[arg(long, requires = "tls", conflicts_with = "tls_root_ca_file")]
    pub tls_insecure_skip_verify: bool,
    /// Client certificate (PEM) for brokers with a client auth policy.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// Key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Secret to AUTH with when a broker asks for it.
    #[arg(long, env = "NSQ_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
}

/// A connection set up and ready for SUB or PUB.
pub struct Opened {
    pub link: Link,
    pub rb: ReadBuf,
    /// The broker's IDENTIFY answer.
    pub answer: serde_json::Value,
}

/// How every connection is set up: TLS, AUTH, the set-up timeout.
pub struct Setup {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    auth_secret: Option<String>,
    connect_timeout: Duration,
}

impl Setup {
    pub fn new(args: &ClientArgs) -> Result<Setup> {
        if args.connect_timeout.is_zero() {
            bail!("--connect-timeout must be positive");
        }
        let tls = if args.tls {
            let trust = match (&args.tls_root_ca_file, args.tls_insecure_skip_verify) {
                (Some(ca), _) => Trust::CaFile(ca),
                (None, true) => Trust::Anyone,
                (None, false) => {
                    bail!("--tls needs --tls-root-ca-file or --tls-insecure-skip-verify")
                }
            };
            let identity = match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(Identity { cert, key }),
                _ => None,
            };
            Some(tls::client_config(trust, identity)?)
        } else {
            None
        };
        Ok(Setup {
            tls,
            auth_secret: args.auth_secret.clone(),
            connect_timeout: args.connect_timeout,
        })
    }

    /// Dials `addr` (resolving its name again), IDENTIFYs as `client_id` with `extra`
    /// fields (upgrading to TLS when asked), and AUTHs when the broker says
    /// `auth_required`; all of it within `--connect-timeout`.
    pub async fn open(
        &self,
        addr: &str,
        client_id: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Opened> {
        match tokio::time::timeout(self.connect_timeout, self.set_up(addr, client_id, extra)).await
        {
            Ok(opened) => opened,
            Err(_) => bail!(
                "setting up the connection to {addr}: not done within {}",
                format_duration(self.connect_timeout)
            ),
        }
    }

    async fn set_up(
        &self,
        addr: &str,
        client_id: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Opened> {
        let mut rb = ReadBuf::new(READ_BUF);
        let features = Features {
            tls: match &self.tls {
                Some(config) => Some((config.clone(), tls::server_name(addr, None)?)),
                None => None,
            },
            ..Features::default()
        };
        let mut identify = extra.clone();
        features.ask(&mut identify);
        let identify = identify_body(client_id, &identify);
        let (mut link, answer) =
            negotiate(addr, self.connect_timeout, &identify, &features, &mut rb).await?;
        if answer.get("auth_required").and_then(|a| a.as_bool()) == Some(true) {
            let Some(secret) = &self.auth_secret else {
                bail!("{addr} requires AUTH: give --auth-secret (or NSQ_AUTH_SECRET)");
            };
            link.write_all(&auth_command(secret.as_bytes())).await?;
            link.response(&mut rb, "AUTH").await?;
        }
        Ok(Opened { link, rb, answer })
    }
}
