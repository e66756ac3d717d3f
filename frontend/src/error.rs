//! The one error type of the `agent` crate.

use std::io;
use std::path::PathBuf;

/// What can go wrong in the front end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A value given by the user breaks a rule; `reason` says what is accepted.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid, with the value.
        what: String,
        /// What is accepted.
        reason: String,
    },
    /// A file does not parse.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No backend is set up on this system.
    #[error("Not implemented: no update backend is installed on this system. Consider `update sysroot init` (the built-in tree store) or installing an update-backend-NAME executable on PATH (such as update-backend-ostree)")]
    NoBackend,
    /// The backend failed.
    #[error("backend {backend}: {reason}")]
    Backend {
        /// Its name.
        backend: String,
        /// What it reported.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The deploy engine failed.
    #[error(transparent)]
    Deploy(#[from] deploy::Error),
    /// Anything else, with its text.
    #[error("{0}")]
    Other(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
