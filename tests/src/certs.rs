//! Certificates made at test time (never committed): a CA, a server
//! certificate for `localhost`/`127.0.0.1` with its key in any of the PEM
//! forms nsqd reads (PKCS#8, PKCS#1 RSA, SEC1 EC), and client certificates
//! signed by the CA or by nobody. Written to a temporary directory so the
//! broker can be pointed at them with `--tls-*`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;

/// How the server's private key is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `BEGIN PRIVATE KEY`, ECDSA P-256.
    Pkcs8Ec,
    /// `BEGIN EC PRIVATE KEY`.
    Sec1Ec,
    /// `BEGIN RSA PRIVATE KEY`, 2048 bits.
    Pkcs1Rsa,
}

/// A CA and certificates it signed, as files.
pub struct Pki {
    dir: TempDir,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    pub ca_pem: String,
    /// `--tls-root-ca-file`.
    pub ca: PathBuf,
    /// `--tls-cert` / `--tls-key`.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client certificate and its key, as PEM text and files.
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A CA and a server certificate with a PKCS#8 EC key.
    pub fn new() -> Pki {
        Pki::with_key(KeyForm::Pkcs8Ec)
    }

    pub fn with_key(form: KeyForm) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("nsq-pki")
            .tempdir()
            .expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "nsq test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA cert").pem();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &ca_pem).expect("write CA");

        let (server_key, key_pem) = server_key(form);
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let cert_pem = params
            .signed_by(&server_key, &issuer)
            .expect("server cert")
            .pem();
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        Pki {
            dir,
            ca_key,
            ca_params,
            ca_pem,
            ca,
            cert,
            key,
        }
    }

    /// A client certificate with common name `cn`, signed by this CA.
    pub fn client(&self, cn: &str) -> ClientIdentity {
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        self.client_signed_by(cn, Some(&issuer))
    }

    /// A self-signed client certificate no CA vouches for.
    pub fn untrusted_client(&self, cn: &str) -> ClientIdentity {
        self.client_signed_by(cn, None)
    }

    fn client_signed_by(&self, cn: &str, issuer: Option<&Issuer<'_, &KeyPair>>) -> ClientIdentity {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "nsq tests");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer),
            None => params.self_signed(&key),
        }
        .expect("client cert");
        let id = ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: self.dir.path().join(format!("{cn}.pem")),
            key: self.dir.path().join(format!("{cn}.key")),
        };
        std::fs::write(&id.cert, &id.cert_pem).expect("write client cert");
        std::fs::write(&id.key, &id.key_pem).expect("write client key");
        id
    }

    /// A path in the PKI's directory (for broken files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The broker flags for TLS with these files.
    pub fn nsqd_args(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.cert.display()),
            format!("--tls-key={}", self.key.display()),
            format!("--tls-root-ca-file={}", self.ca.display()),
        ]
    }

    /// A rustls client trusting this CA, optionally showing `identity`.
    pub fn rustls_client(&self, identity: Option<&ClientIdentity>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.expect("CA PEM")).expect("CA cert");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("client cert PEM"),
                    PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).expect("client key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// The name the server certificate answers to.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid name")
}

/// The server's key pair (to sign with) and its PEM in the requested form.
fn server_key(form: KeyForm) -> (KeyPair, String) {
    match form {
        KeyForm::Pkcs8Ec => {
            let k = KeyPair::generate().expect("key");
            let pem = k.serialize_pem();
            (k, pem)
        }
        KeyForm::Sec1Ec => {
            let k = KeyPair::generate().expect("key");
            let sec1 = pkcs8_inner_key(&k.serialize_der());
            (k, pem("EC PRIVATE KEY", &sec1))
        }
        KeyForm::Pkcs1Rsa => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let mut rng = rsa::rand_core::OsRng;
            let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
            let pkcs8 = rsa.to_pkcs8_pem(Default::default()).expect("PKCS#8");
            let pkcs1 = rsa.to_pkcs1_pem(Default::default()).expect("PKCS#1");
            (
                KeyPair::from_pem(&pkcs8).expect("RSA key for signing"),
                pkcs1.to_string(),
            )
        }
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo`: for an EC key,
/// its SEC1 `ECPrivateKey`.
fn pkcs8_inner_key(der: &[u8]) -> Vec<u8> {
    // (tag, header length, content length) of the DER element at `at`.
    fn element(der: &[u8], at: usize) -> (u8, usize, usize) {
        let tag = der[at];
        let first = der[at + 1] as usize;
        if first < 0x80 {
            return (tag, 2, first);
        }
        let n = first & 0x7f;
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | b as usize);
        (tag, 2 + n, len)
    }
    let (_, seq_header, _) = element(der, 0);
    let mut at = seq_header;
    for _ in 0..2 {
        // version INTEGER, then the algorithm SEQUENCE
        let (_, h, l) = element(der, at);
        at += h + l;
    }
    let (tag, h, l) = element(der, at);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    der[at + h..at + h + l].to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}
