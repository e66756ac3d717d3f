//! rustls client configuration (ring provider) and classification of handshake failures.

use std::path::Path;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::error::{Error, TlsFailure};

fn tls_file(what: &'static str, path: &Path, reason: impl ToString) -> Error {
    Error::TlsFile {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_file(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_file(what, path, "no certificate in file"));
    }
    Ok(certs)
}

/// Builds the client configuration. There is no switch to disable verification: failures are
/// always fatal.
pub(crate) fn client_config(tls: Option<&TlsConfig>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_deref()) {
        Some(path) => {
            for cert in load_certs("CA", path)? {
                roots.add(cert).map_err(|e| tls_file("CA", path, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::TlsConfig)?
        .with_root_certificates(roots);
    let cert = tls.and_then(|t| t.client_cert.as_deref());
    let key = tls.and_then(|t| t.client_key.as_deref());
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = load_certs("client certificate", cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| tls_file("client key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(Error::TlsConfig)
        }
        (Some(path), None) | (None, Some(path)) => Err(tls_file(
            "client certificate",
            path,
            "client_cert and client_key must be given together",
        )),
    }
}

/// Finds a rustls error in `err`'s source chain (also inside `io::Error`s, whose `source()`
/// skips the wrapped error) and names the cause.
pub(crate) fn classify(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(kind(tls));
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn kind(err: &rustls::Error) -> TlsFailure {
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::WrongHostname
            }
            _ => TlsFailure::Other,
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied,
        ) => TlsFailure::ClientAuthRejected,
        _ => TlsFailure::Other,
    }
}
