//! TLS client configurations for the IDENTIFY `tls_v1` upgrade: trusting a CA file, or
//! (for `check`, which tests brokers rather than their PKI) any certificate, and
//! optionally showing a client certificate to brokers with a client auth policy.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Whose certificates the client accepts.
pub enum Trust<'a> {
    /// Those signed by a CA in this PEM file.
    CaFile(&'a Path),
    /// Any, unchecked (`--tls-insecure-skip-verify`).
    Anyone,
}

/// A client certificate chain and its key, as PEM files.
pub struct Identity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A rustls client config (ring, TLS 1.2 and 1.3).
pub fn client_config(
    trust: Trust<'_>,
    identity: Option<Identity<'_>>,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match trust {
        Trust::CaFile(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::Anyone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider))),
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(id.cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading {}", id.cert.display()))?;
            if chain.is_empty() {
                bail!("{} holds no certificate", id.cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(id.key)
                .with_context(|| format!("reading {}", id.key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .with_context(|| format!("{} and {}", id.cert.display(), id.key.display()))?
        }
    };
    Ok(Arc::new(config))
}

/// The name to check a broker's certificate against: `name` when given, else the host
/// of `addr` (`host:port` or `[v6]:port`).
pub fn server_name(addr: &str, name: Option<&str>) -> Result<ServerName<'static>> {
    let host = match name {
        Some(n) => n,
        None => addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']'),
    };
    ServerName::try_from(host.to_string()).with_context(|| format!("bad TLS server name {host:?}"))
}

/// Accepts any certificate, but still checks the handshake's signatures against it:
/// the connection is encrypted to whoever holds that certificate's key.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address_host() {
        let name = |a: &str, n: Option<&str>| server_name(a, n).unwrap();
        let want = |n: &str| ServerName::try_from(n.to_string()).unwrap();
        assert_eq!(
            name("nsq-nsqd.nsq.svc:4150", None),
            want("nsq-nsqd.nsq.svc")
        );
        assert_eq!(name("[::1]:4150", None), want("::1"));
        assert_eq!(name("10.0.0.1:4150", None), want("10.0.0.1"));
        assert_eq!(name("10.0.0.1:4150", Some("b.example")), want("b.example"));
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let err = client_config(Trust::CaFile(Path::new("/nonexistent/ca.pem")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let id = Identity {
            cert: Path::new("/nonexistent/tls.crt"),
            key: Path::new("/nonexistent/tls.key"),
        };
        let err = client_config(Trust::Anyone, Some(id))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/tls.crt"), "{err}");
    }
}
