//! The one error type of the `deploy` crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while deploying. The `Display` text names what was wrong
/// and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// The store under the sysroot failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A value given by the user, or found in the sysroot, breaks a rule.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid, including the value where useful.
        what: String,
        /// Which rule it broke.
        reason: String,
    },
    /// A file of the sysroot or the boot partition does not parse.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Not enough free space for what is about to be written.
    #[error("not enough free space on {}: {needed} bytes needed, {available} bytes free", path.display())]
    NoSpace {
        /// The filesystem (a directory on it).
        path: PathBuf,
        /// Bytes the operation needs.
        needed: u64,
        /// Bytes free for it.
        available: u64,
    },
    /// The operation cannot be done in the sysroot's present state.
    #[error("{0}")]
    State(String),
}

/// Shorthand for results of this crate.
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

impl error_ext::FromIoError for Error {
    fn from_io(path: PathBuf, source: io::Error) -> Self {
        Error::Io { path, source }
    }
}

error_ext::io_result_ext!(pub Error);
