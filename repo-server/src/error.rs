//! The crate's error type.

use std::path::PathBuf;

/// Errors from configuring or starting the server.
///
/// Per-request failures never surface here: they become HTTP status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The served root could not be opened as a directory.
    #[error("cannot open root directory {path}")]
    Root {
        /// The configured root.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate, key or CA file could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    TlsFile {
        /// Which input: "certificate", "private key", "client CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// rustls rejected the assembled TLS configuration.
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("invalid client CA")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    /// The access log could not be opened.
    #[error("cannot open access log {path}")]
    AccessLog {
        /// The log file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The requested address.
        addr: std::net::SocketAddr,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
