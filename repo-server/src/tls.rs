//! rustls server configuration from PEM files (ring provider).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;
use crate::error::{Error, Result};

fn tls_file_error(what: &'static str, path: &Path, reason: impl ToString) -> Error {
    Error::TlsFile {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_file_error(what, path, "no certificate found"));
    }
    Ok(certs)
}

/// Builds the rustls configuration: server certificate, and a client verifier when a client CA
/// is given (unauthenticated clients are then refused during the handshake).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs("certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_file_error("private key", &files.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs("client CA", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_file_error("client CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(Error::ClientVerifier)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
