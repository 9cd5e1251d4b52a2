//! TLS termination with rustls (ring): an acceptor from PEM files that
//! offers h2 and HTTP/1.1 by ALPN, with optional mTLS. Shared by whoami and
//! the lb.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
    /// PEM CA bundle: when set, client certificates are required (mTLS).
    pub cacert: Option<std::path::PathBuf>,
}

/// Why TLS files could not be made into an acceptor.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read.
    #[error("reading certificates from {}: {source}", path.display())]
    ReadCerts {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// A certificate file held something that is not a certificate.
    #[error("parsing certificates in {}: {source}", path.display())]
    ParseCerts {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// A certificate file held no certificate.
    #[error("no PEM certificate in {}", path.display())]
    NoCerts {
        /// The file.
        path: PathBuf,
    },
    /// The private key could not be read.
    #[error("reading the private key from {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// The crypto provider offers no safe protocol version.
    #[error("TLS versions: {0}")]
    Versions(#[source] rustls::Error),
    /// A CA certificate was refused.
    #[error("CA certificate in {}: {source}", path.display())]
    CaCert {
        /// The CA bundle.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// The private key is not the certificate's.
    #[error("certificate and key do not fit together: {0}")]
    KeyMismatch(#[source] rustls::Error),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::ReadCerts {
            path: path.into(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::ParseCerts {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts { path: path.into() });
    }
    Ok(certs)
}

/// A TLS acceptor from PEM files. With a CA bundle, clients must present a
/// certificate it signed.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::ReadKey {
        path: files.key.clone(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Versions)?;
    let builder = match &files.cacert {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|source| TlsError::CaCert {
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(TlsError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::KeyMismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
