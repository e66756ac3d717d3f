//! A bounded HTTP(S)/file client: resumable downloads from an update repository over
//! `http://`, `https://` (rustls, ring) and `file://`.
//!
//! A [`Fetcher`] is built from a [`FetchConfig`] (optionally with a [`TlsConfig`]) and offers
//! four blocking calls, each with a caller-given size cap:
//!
//! - [`Fetcher::get`]: a whole small file (summary, index);
//! - [`Fetcher::get_ranges`]: byte ranges of a pack, coalesced and fetched in parallel;
//! - [`Fetcher::stream_ranges`]: sorted byte ranges of a pack handed over one by one as
//!   they arrive, in constant memory, resuming a cut transfer from its first missing byte;
//! - [`Fetcher::download_to`]: a large file into a `.part` file, resuming where it stopped.
//!
//! Every failure is a typed [`Error`]: statuses (404, 403, 410, others), slow retrieval,
//! deadlines, refused redirects, TLS failures, wrong `Content-Range`, caps.
//!
//! ```no_run
//! use fetch::{FetchConfig, Fetcher};
//!
//! let fetcher = Fetcher::new(FetchConfig::new("https://updates.example.com/repo"))?;
//! let summary = fetcher.get("summary", 4 << 20)?;
//! let chunks = fetcher.get_ranges("packs/0001.pack", &[(0, 4096), (8192, 100)], 1 << 20)?;
//! # let _ = (summary, chunks);
//! # Ok::<(), fetch::Error>(())
//! ```

#![deny(missing_docs)]

mod body;
mod config;
mod connect;
mod error;
mod fetcher;
mod file;
mod http;
mod ranges;
mod stream;
mod tls;

pub use config::{FetchConfig, TlsConfig};
pub use error::{BoxError, Error, TlsFailure};
pub use fetcher::Fetcher;
