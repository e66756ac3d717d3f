//! Command-line options of the server, shared by the `update-repo-server` binary and
//! `update serve`, and a blocking entry point for synchronous callers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{AccessLogTarget, Result, ServerConfig, TlsFiles};

/// The command-line options of the server, shared by `update-repo-server` and
/// `update serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory to serve.
    #[arg(long)]
    pub root: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: require client certificates signed by it (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Access log file, or - for standard output.
    #[arg(long)]
    pub access_log: Option<PathBuf>,
    /// Requests served at once (counted once their headers are in); as many connections
    /// again may wait for a request, the longest-waiting closed first.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client has for the TLS handshake and each request's headers.
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds without any traffic before a connection is closed.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn into_config(self) -> ServerConfig {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: self.client_ca,
            }),
            _ => None,
        };
        let access_log = self.access_log.map(|path| {
            if path.as_os_str() == "-" {
                AccessLogTarget::Stdout
            } else {
                AccessLogTarget::File(path)
            }
        });
        ServerConfig {
            root: self.root,
            listen: self.listen,
            tls,
            access_log,
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
        }
    }
}

/// Serve `config` until the process is stopped, on a runtime of its own.
pub fn serve_blocking(config: ServerConfig) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().map_err(crate::Error::Runtime)?;
    runtime.block_on(crate::serve(config))
}
