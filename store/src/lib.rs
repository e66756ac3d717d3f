//! `store`: the content-addressed store of signed OS trees behind `update`.
//!
//! A [`Repo`] holds four kinds of objects (see [`object`]), each named by the BLAKE3 of its
//! canonical encoding: *file* (header + content), *dirtree*, *dirmeta* and *commit*, plus
//! the detached [`object::Signatures`] of each commit. Refs name commits. Objects are added
//! through a [`Transaction`], which makes them durable before any ref can name them.
//!
//! ```
//! use store::{Repo, RepoMode};
//! let dir = tempfile::tempdir().unwrap();
//! let repo = Repo::init(dir.path().join("repo"), RepoMode::Archive).unwrap();
//! assert!(repo.list_refs().unwrap().is_empty());
//! ```
//!
//! The on-disk format is specified in `docs/format.md`. The published form of a repository
//! (summary, packs, static deltas) and publish, pull and mirror are the `transport` crate's.

pub mod checkout;
pub mod commit;
pub mod diff;
pub mod durable;
pub mod error;
pub mod fsck;
pub mod id;
pub mod object;
pub mod prune;
pub mod remote;
pub mod repo;
pub mod sign;
pub mod walk;
pub mod xattrs;

pub use error::{Error, IoResultExt, Result};
pub use id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
pub use repo::{RefName, Repo, RepoMode, Transaction};
