//! TLS: the server configuration nsqd builds from `--tls-*` (shared by the V2
//! upgrade and the HTTPS listener), the client configuration for HTTPS auth
//! servers, and what `/stats` and the auth server learn about a connection.

use crate::options::Options;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName, ProtocolVersion,
    RootCertStore, ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use std::sync::Arc;

/// Go's `tls.VersionTLS12`: the oldest version rustls speaks.
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The versions offered for `--tls-min-version`. rustls has no TLS 1.0/1.1 or
/// SSL 3.0, so those minimums offer 1.2 and 1.3 (see [`min_version_note`]).
fn versions(min: u16) -> &'static [&'static SupportedProtocolVersion] {
    static ONLY_TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if min >= TLS13 {
        &ONLY_TLS13
    } else {
        rustls::ALL_VERSIONS
    }
}

/// What start-up says when `--tls-min-version` names a version rustls cannot
/// speak: those clients are refused, never served with weaker settings.
pub fn min_version_note(min: u16) -> Option<String> {
    (min < TLS12).then(|| {
        format!(
            "TLS: --tls-min-version={} is below TLS 1.2, the oldest version this nsqd speaks; \
             clients must use TLS 1.2 or 1.3",
            version_flag_name(min)
        )
    })
}

fn version_flag_name(v: u16) -> &'static str {
    match v {
        0x0300 => "ssl3.0",
        0x0301 => "tls1.0",
        0x0302 => "tls1.1",
        0x0303 => "tls1.2",
        _ => "tls1.3",
    }
}

/// nsqd's `buildTLSConfig`: `None` without `--tls-cert` and `--tls-key`.
pub fn server_config(opts: &Options) -> Result<Option<Arc<ServerConfig>>, String> {
    if opts.tls_cert.is_empty() && opts.tls_key.is_empty() {
        return Ok(None);
    }
    let fail = |e: String| format!("failed to build TLS config - {e}");
    let certs = load_certs(&opts.tls_cert).map_err(fail)?;
    let key = PrivateKeyDer::from_pem_file(&opts.tls_key)
        .map_err(|e| fail(format!("{}: {e}", opts.tls_key)))?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions(opts.tls_min_version))
        .expect("the ring provider speaks TLS 1.2 and 1.3");
    let builder = match opts.tls_client_auth_policy.as_str() {
        "require" => builder.with_client_cert_verifier(Arc::new(AnyClientCert(provider))),
        "require-verify" => {
            let roots = Arc::new(client_roots(opts).map_err(fail)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(Arc::new(config)))
}

/// nsqd's `buildClientTLSConfig`, for `https://` auth servers: trusts
/// `--tls-root-ca-file`, else the system's roots.
pub fn client_config(opts: &Options) -> Result<Arc<ClientConfig>, String> {
    nsq_common::http::client::tls_config(
        &opts.tls_root_ca_file,
        opts.tls_min_version >= TLS13,
        None,
    )
    .map_err(|e| format!("failed to build client TLS config - {e}"))
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate found"));
    }
    Ok(certs)
}

fn ca_file_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(load_certs(path)?);
    if added == 0 {
        return Err("failed to append certificate to pool".into());
    }
    Ok(roots)
}

/// Client certificates are checked against `--tls-root-ca-file`, or like Go's
/// `x509.Verify` without roots, the system's.
fn client_roots(opts: &Options) -> Result<RootCertStore, String> {
    if opts.tls_root_ca_file.is_empty() {
        Ok(system_roots())
    } else {
        ca_file_roots(&opts.tls_root_ca_file)
    }
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// `--tls-client-auth-policy=require`: a certificate must be shown and its key
/// proven, but its chain is not checked (Go's `RequireAnyClientCert`).
#[derive(Debug)]
struct AnyClientCert(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// A TLS connection as `/stats` and the auth server see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// Go's `tls.CipherSuiteName` spelling.
    pub cipher_suite: String,
    /// nsqd's spelling: `TLS1.2`, `TLS1.3`.
    pub version: String,
    pub negotiated_protocol: String,
    pub client_cert: Option<ClientCert>,
}

/// The client certificate's leaf, when one was shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    pub common_name: String,
    pub subject: String,
    pub issuer: String,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl TlsInfo {
    pub fn of(conn: &CommonState) -> TlsInfo {
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(|s| s.replacen("TLS13_", "TLS_", 1))
            .unwrap_or_default();
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_2) => "TLS1.2".to_owned(),
            Some(ProtocolVersion::TLSv1_3) => "TLS1.3".to_owned(),
            Some(v) => format!("Unknown {}", u16::from(v)),
            None => String::new(),
        };
        let negotiated_protocol = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let client_cert = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| ClientCert::parse(leaf));
        TlsInfo {
            cipher_suite,
            version,
            negotiated_protocol,
            client_cert,
        }
    }

    /// The `common_name` nsqd hands its auth server (empty without a certificate).
    pub fn common_name(&self) -> &str {
        self.client_cert
            .as_ref()
            .map_or("", |c| c.common_name.as_str())
    }
}

impl ClientCert {
    fn parse(der: &CertificateDer<'_>) -> Option<ClientCert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Some(ClientCert {
            common_name,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        })
    }
}
