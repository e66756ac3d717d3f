//! `update-repo-server`: serves a published update repository as static files.
//!
//! [`Server::bind`] opens a [`ServerConfig::root`] directory and serves it read-only over
//! HTTP/1.1, or HTTPS with rustls ([`TlsFiles`], optionally requiring client certificates).
//! It answers GET and HEAD only, with single and multiple byte ranges, strong ETags and
//! `Last-Modified` for conditional requests. Every file is opened beneath the root's directory
//! handle (`openat2` with `RESOLVE_BENEATH`), so no request, encoded or through a symlink, can
//! reach outside it. Connections are bounded in number and in time (header and idle timeouts),
//! so slow clients cannot starve the others: a connection counts against
//! [`ServerConfig::max_connections`] only while a request whose headers are in is served;
//! those still sending headers have a budget of their own and make room for newer ones.
//!
//! ```no_run
//! # async fn run() -> Result<(), repo_server::Error> {
//! use repo_server::{Server, ServerConfig};
//!
//! let config = ServerConfig {
//!     root: "/srv/repo".into(),
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..ServerConfig::default()
//! };
//! let server = Server::bind(config).await?;
//! println!("serving on http://{}", server.local_addr());
//! server.run().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod args;
mod body;
mod config;
mod conn;
mod error;
mod files;
mod idle;
mod log;
mod path;
mod range;
mod respond;
mod slots;
mod tls;

pub use args::{serve_blocking, ServeArgs};
pub use config::{AccessLogTarget, ServerConfig, TlsFiles};
pub use conn::{serve, Server};
pub use error::{Error, Result};
