//! Server options as a plain struct with defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (`--access-log -`).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// Certificate files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate signed by one of
    /// them (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Everything [`crate::Server::bind`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory served read-only; nothing outside it is ever served.
    pub root: PathBuf,
    /// Address to listen on; port 0 picks a free port (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Access log destination; `None` disables the log.
    pub access_log: Option<AccessLogTarget>,
    /// Requests served at once: a connection counts once a request's headers are in, until
    /// its response is sent; further requests wait for a slot. As many connections again may
    /// be waiting (TLS handshake, headers arriving, idle between requests, queued for a
    /// slot); one more closes the one that has waited longest.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake and then each request's headers.
    pub header_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            access_log: None,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}
