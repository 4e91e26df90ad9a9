//! Optional mutual TLS under the handshake (rustls, ring crypto).
//!
//! Both directions use the same material, read from PEM files: the cluster's CA certificate(s)
//! and this node's certificate chain and private key. A node's certificate must be valid for
//! server *and* client authentication and name the address peers dial (an IP address or DNS
//! name in its subject alternative names): every node is a server to the nodes that dial it and
//! a client to the nodes it dials, and each side verifies the other against the cluster CA. The
//! HMAC challenge–response still runs inside the TLS session, so a node needs both a
//! certificate from the CA and the cluster secret.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, ClientConfig, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS file could not be read or its contents cannot be used.
#[derive(Debug)]
pub struct TlsConfigError {
    what: String,
}

impl TlsConfigError {
    fn file(path: &Path, what: impl fmt::Display) -> Self {
        Self {
            what: format!("{}: {what}", path.display()),
        }
    }
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS configuration: {}", self.what)
    }
}

impl std::error::Error for TlsConfigError {}

/// Mutual TLS for every connection of a node, built from PEM files.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    files: [PathBuf; 3],
}

impl TlsConfig {
    /// Reads the cluster CA certificate(s) from `ca`, this node's certificate chain from
    /// `cert` and its private key (PKCS#8, PKCS#1 or SEC1) from `key`, and builds both sides.
    /// Fails with the file and the reason when a file is missing, holds no usable PEM item,
    /// or the key does not match the certificate.
    pub fn from_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let (ca, cert, key) = (ca.as_ref(), cert.as_ref(), key.as_ref());
        let mut roots = RootCertStore::empty();
        for ca_cert in certificates(ca)? {
            roots.add(ca_cert).map_err(|e| {
                TlsConfigError::file(ca, format!("not a usable CA certificate: {e}"))
            })?;
        }
        let chain = certificates(cert)?;
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsConfigError::file(key, format!("no private key: {e}")))?;
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsConfigError::file(ca, e))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::file(cert, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), private_key.clone_key())
            .map_err(|e| TlsConfigError::file(key, format!("does not fit the certificate: {e}")))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::file(cert, e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private_key)
            .map_err(|e| TlsConfigError::file(key, format!("does not fit the certificate: {e}")))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            files: [ca.to_owned(), cert.to_owned(), key.to_owned()],
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [ca, cert, key] = &self.files;
        f.debug_struct("TlsConfig")
            .field("ca", ca)
            .field("cert", cert)
            .field("key", key)
            .finish()
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsConfigError::file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::file(path, e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::file(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The name a dialed peer's certificate must carry: the host part of `host:port`.
pub(crate) fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn fixtures_load() {
        TlsConfig::from_files(
            fixture("ca.pem"),
            fixture("node.pem"),
            fixture("node-key.pem"),
        )
        .unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = TlsConfig::from_files(
            fixture("ca.pem"),
            fixture("absent.pem"),
            fixture("node-key.pem"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("absent.pem"), "{error}");
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        let error = TlsConfig::from_files(
            fixture("ca.pem"),
            fixture("node.pem"),
            fixture("rogue-node-key.pem"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("does not fit the certificate"), "{error}");
    }

    #[test]
    fn a_certificate_file_is_not_a_key() {
        let error =
            TlsConfig::from_files(fixture("ca.pem"), fixture("node.pem"), fixture("node.pem"))
                .unwrap_err()
                .to_string();
        assert!(error.contains("no private key"), "{error}");
    }

    #[test]
    fn server_names_come_from_the_host_part() {
        assert!(matches!(
            server_name("127.0.0.1:4000"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:4000"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node-0.postbox:4000"),
            Some(ServerName::DnsName(_))
        ));
        assert!(server_name("bad host:1").is_none());
    }
}
