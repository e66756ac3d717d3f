//! `transport`: the published form of an update repository and both ends of it.
//!
//! A builder's [`publish`] turns a repository's refs into plain static files: a signed
//! [`summary`] (refs → commits, a serial that only grows, an expiry), [`pack`] files with
//! their indexes, per-commit chunk indexes ([`chunk`], [`compress`]) and [`static_delta`]s
//! for the common hops. Any web server or CDN serves them. On the device, [`pull`] verifies
//! the summary and every byte before anything enters the store, and fetches only what the
//! store lacks; [`mirror`] copies a published repository as it is.
//!
//! ```no_run
//! use store::Repo;
//! use transport::publish::{publish, PublishOptions};
//!
//! let repo = Repo::open("/srv/build/repo")?;
//! let opts = PublishOptions {
//!     key: "/srv/build/release.key".into(),
//!     ..PublishOptions::default()
//! };
//! let report = publish(&repo, &opts)?;
//! # let _ = report;
//! # Ok::<(), transport::Error>(())
//! ```
//!
//! The format is specified in `docs/transport.md`; the object model under it in
//! `docs/format.md`.

pub mod chunk;
pub mod compress;
pub mod error;
pub mod mirror;
pub mod pack;
pub mod publish;
pub mod pull;
pub mod static_delta;
pub mod summary;

pub use error::{Error, Result};
