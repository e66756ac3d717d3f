//! The one error type of the `deploy` crate.

use std::io;
use std::path::{Path, PathBuf};

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
    /// The commit's tree has something else where deploy needs a real directory (or a
    /// regular file): refused before anything is written, so nothing is ever reached
    /// through it.
    #[error("the commit's {path} must be {expected}, but it is {found}")]
    TreeShape {
        /// The path in the tree, e.g. `/usr/lib/modules/6.1.0`.
        path: String,
        /// What deploy needs there ("a directory", "a regular file").
        expected: &'static str,
        /// What it is instead, e.g. "a symlink to /x".
        found: String,
    },
    /// A file deploy copies (kernel, initramfs, an `/etc` default) does not hash to the
    /// object id the commit names: the device's store is damaged.
    #[error("refusing to deploy: {path} (object {id}) is corrupt in the store: {reason}; run `update fsck`")]
    CorruptObject {
        /// The file object.
        id: store::FileId,
        /// Its path in the tree.
        path: String,
        /// What the check found.
        reason: String,
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

/// Attach a path to an I/O result.
pub trait IoResultExt<T> {
    /// Map the error into [`Error::Io`] naming `path`.
    fn at_path(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn at_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

impl<T> IoResultExt<T> for rustix::io::Result<T> {
    fn at_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::Io {
            path: path.as_ref().to_path_buf(),
            source: e.into(),
        })
    }
}
