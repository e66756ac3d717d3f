//! The one error type of the `install` crate.

use std::io;
use std::path::PathBuf;

/// What can go wrong while installing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}", path.display())]
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
    /// The target image file exists already.
    #[error("{}: exists already; give --force to replace it", target.display())]
    TargetExists {
        /// The target.
        target: PathBuf,
    },
    /// The target is neither a block device nor a (new) regular file.
    #[error("{}: is {found}, not a block device or an image file", target.display())]
    BadTarget {
        /// The target.
        target: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// The target is a partition, not a whole disk.
    #[error("{}: is a partition of {disk}; give the whole disk (/dev/{disk})", target.display())]
    Partition {
        /// The target.
        target: PathBuf,
        /// The disk it is a partition of.
        disk: String,
    },
    /// The target, or a partition of it, is mounted.
    #[error("{}: {what} is mounted at {mountpoint}; unmount it first", target.display())]
    Mounted {
        /// The target.
        target: PathBuf,
        /// The device or partition that is mounted (`MAJ:MIN`).
        what: String,
        /// Where.
        mountpoint: String,
    },
    /// The target is in use: held by another device (RAID, LVM, dm-crypt) or opened
    /// exclusively by another program.
    #[error("{}: is in use ({by}); stop what uses it first", target.display())]
    InUse {
        /// The target.
        target: PathBuf,
        /// Who holds it.
        by: String,
    },
    /// The target cannot hold the install.
    #[error("{}: too small: {size} bytes leave a root partition of {root} bytes, and the commit needs at least {needed} (give a bigger --size or disk)", target.display())]
    TooSmall {
        /// The target.
        target: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The root partition that size leaves.
        root: u64,
        /// What the commit needs there.
        needed: u64,
    },
    /// No systemd-boot binary was found.
    #[error("no systemd-boot found: the commit has no /{in_commit}, and {} does not exist; give --bootloader PATH", host.display())]
    NoBootloader {
        /// The path looked for in the commit.
        in_commit: String,
        /// The path looked for on this machine.
        host: PathBuf,
    },
    /// An external tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The command line.
        tool: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// An external tool could not be started.
    #[error("cannot run {tool} (install it: scripts/install-deps.sh)")]
    ToolMissing {
        /// The program.
        tool: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// The root filesystem's UUID for `root=` could not be found.
    #[error("{}: cannot tell the filesystem UUID for root= ({reason}); give --root-karg", mountpoint.display())]
    NoRootUuid {
        /// The mount point given.
        mountpoint: PathBuf,
        /// Why.
        reason: String,
    },
    /// The target filesystem already holds something.
    #[error("{}: not empty (holds {entry}); install onto an empty filesystem", path.display())]
    NotEmpty {
        /// The mount point.
        path: PathBuf,
        /// An entry found there.
        entry: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The deploy engine failed.
    #[error(transparent)]
    Deploy(#[from] deploy::Error),
    /// The front end's config refused a value.
    #[error(transparent)]
    Frontend(#[from] frontend::Error),
    /// Pulling from the remote failed.
    #[error(transparent)]
    Pull(#[from] Box<transport::pull::PullError>),
}

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

error_ext::io_result_ext!(pub(crate) Error);

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
