//! Identity and mutual TLS: a private cluster CA, one certificate per node
//! naming its id, and the quinn configurations that demand them both ways.
//!
//! Only `ring` is compiled in: every rustls config is built with the ring
//! provider explicitly, so no process-wide default is needed.

use crate::config::{Cluster, TransportFile};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use ring::digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Application protocol name both sides must offer.
pub const ALPN: &[u8] = b"faultline/1";

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes `text` to `path` with permissions `mode` (0600 for private keys,
/// 0644 for certificates), also when the file already existed.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// Makes a private CA and one certificate per node of the cluster in `out`.
/// An existing CA in `out` is reused so certificates can be added later.
pub fn generate(cluster: &Cluster, out: &Path) -> Result<Vec<PathBuf>, TlsError> {
    generate_for(&cluster.ids(), out)
}

/// Like [`generate`], for an explicit list of ids.
pub fn generate_for(ids: &[String], out: &Path) -> Result<Vec<PathBuf>, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use std::os::unix::fs::PermissionsExt;
    let dir_err = |source| TlsError::Write {
        path: out.to_path_buf(),
        source,
    };
    // The directory holds private keys: only the owner may list or enter it.
    std::fs::create_dir_all(out).map_err(dir_err)?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    let ca_key_path = out.join("ca.key");
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyPair::generate()?,
        Err(source) => {
            return Err(TlsError::Read {
                path: ca_key_path,
                source,
            })
        }
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "faultline cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut written = vec![out.join("ca.pem"), ca_key_path.clone()];
    write(&out.join("ca.pem"), &ca_cert.pem(), CERT_MODE)?;
    write(&ca_key_path, &ca_key.serialize_pem(), KEY_MODE)?;
    let issuer = Issuer::new(ca, ca_key);
    for id in ids {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![id.clone()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, id.as_str());
        let cert = params.signed_by(&key, &issuer)?;
        let (c, k) = (out.join(format!("{id}.pem")), out.join(format!("{id}.key")));
        write(&c, &cert.pem(), CERT_MODE)?;
        write(&k, &key.serialize_pem(), KEY_MODE)?;
        written.push(c);
        written.push(k);
    }
    Ok(written)
}

/// A node's certificate chain, key and the cluster CA it trusts.
#[derive(Debug)]
pub struct Identity {
    pub id: String,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

impl Identity {
    pub fn load(cluster: &Cluster, id: &str) -> Result<Self, TlsError> {
        Self::from_files(
            id,
            &cluster.cert_path(id),
            &cluster.key_path(id),
            &cluster.ca_path(),
        )
    }

    pub fn from_files(id: &str, cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: cert.to_path_buf(),
                what: "certificate",
            });
        }
        let key = PrivatePkcs8KeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::Pem {
            path: key.to_path_buf(),
            what: "PKCS#8 private key",
        })?;
        let ca = CertificateDer::from_pem_slice(&read(ca)?).map_err(|_| TlsError::Pem {
            path: ca.to_path_buf(),
            what: "CA certificate",
        })?;
        Ok(Identity {
            id: id.to_string(),
            certs,
            key,
            ca,
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// A stable stateless-reset key derived from the node's private key, so
    /// peers of a restarted node learn at once that its old connection is gone.
    pub fn reset_key(&self) -> ring::hmac::Key {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"faultline stateless reset v1");
        ctx.update(self.key.secret_pkcs8_der());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ctx.finish().as_ref())
    }

    /// A stable key for the connection-id generator, derived like
    /// [`Self::reset_key`]. quinn validates an incoming connection id with a
    /// keyed hash before it answers a packet of an unknown connection with a
    /// stateless reset; with a fresh random key per process, a restarted node
    /// found its old ids invalid and dropped their packets silently, so peers
    /// held the dead connection until their idle timeout.
    pub fn cid_key(&self) -> u64 {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"faultline connection ids v1");
        ctx.update(self.key.secret_pkcs8_der());
        let d = ctx.finish();
        let mut k = [0u8; 8];
        k.copy_from_slice(&d.as_ref()[..8]);
        u64::from_le_bytes(k)
    }

    pub fn server_config(&self, t: &TransportFile) -> Result<quinn::ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.certs.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.max_early_data_size = 0;
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        cfg.transport_config(Arc::new(transport_config(t)));
        Ok(cfg)
    }

    pub fn client_config(&self, t: &TransportFile) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                self.certs.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(Arc::new(transport_config(t)));
        Ok(cfg)
    }
}

pub fn transport_config(t: &TransportFile) -> quinn::TransportConfig {
    transport_config_with_streams(t, FIFO_STREAMS)
}

/// Incoming unidirectional streams a peer may have open at once on a FIFO
/// system's connection: one long-lived stream per direction, a few spare
/// for restarts. Every allowed stream costs memory on the receiver.
pub const FIFO_STREAMS: u32 = 16;

/// ... on a non-FIFO system's connection, where every batch takes a stream
/// of its own: this bounds the batches in flight to one peer.
pub const NON_FIFO_STREAMS: u32 = 1024;

/// The QUIC transport settings of the cluster file, allowing `streams`
/// incoming unidirectional streams at once.
pub fn transport_config_with_streams(t: &TransportFile, streams: u32) -> quinn::TransportConfig {
    let mut c = quinn::TransportConfig::default();
    c.max_idle_timeout(quinn::IdleTimeout::try_from(t.idle_timeout()).ok());
    c.keep_alive_interval(Some(t.keep_alive()));
    c.initial_rtt(t.initial_rtt());
    c.max_concurrent_uni_streams(streams.into());
    c.max_concurrent_bidi_streams(0u32.into());
    c.stream_receive_window((8u32 << 20).into());
    c.receive_window((16u32 << 20).into());
    c.send_window(16 << 20);
    c
}

/// The node id a verified peer certificate names, among the cluster's ids.
/// The TLS handshake already checked the chain against the cluster CA; this
/// maps the certificate's subject name to a node.
pub fn peer_id(conn: &quinn::Connection, ids: &[String]) -> Option<String> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = certs.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    ids.iter()
        .find(|id| {
            ServerName::try_from(id.as_str())
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_keys_are_readable_by_their_owner_only() {
        let dir = std::env::temp_dir().join(format!("faultline-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = generate_for(&["s1".to_string(), "c1".to_string()], &dir).expect("certs");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&dir), Some(0o700));
        for p in &written {
            let want = if p.extension().is_some_and(|e| e == "key") {
                0o600
            } else {
                0o644
            };
            assert_eq!(mode(p), Some(want), "{}", p.display());
        }
        // Run again over the files: the CA is reused and the modes stay.
        generate_for(&["s1".to_string()], &dir).expect("again");
        assert_eq!(mode(&dir.join("ca.key")), Some(0o600));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
