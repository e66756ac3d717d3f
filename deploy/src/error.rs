//! The one error type of the `deploy` crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while deploying. The `Display` text names what was wrong
/// and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}", path.display())]
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
    /// `prepare-root` found no deployment named on the kernel command line.
    #[error("{} has no {}: nothing to boot", cmdline.display(), crate::cmdline::DEPLOYMENT_KARG)]
    NothingToBoot {
        /// The command line file read (`/proc/cmdline`).
        cmdline: PathBuf,
    },
    /// A command that acts on the booted deployment runs on a system not booted from one.
    #[error("no deployment is booted: {} has no {}", cmdline.display(), crate::cmdline::DEPLOYMENT_KARG)]
    NotBooted {
        /// The command line file read (`/proc/cmdline`).
        cmdline: PathBuf,
    },
    /// The booted deployment belongs to another OS than the one named.
    #[error("the booted deployment {booted} is not of OS '{os}'")]
    BootedOtherOs {
        /// The booted deployment.
        booted: String,
        /// The OS named.
        os: String,
    },
    /// The booted deployment has no boot entry left.
    #[error("the booted deployment {booted} has no boot entry in {}", boot_dir.display())]
    NoBootEntry {
        /// The booted deployment.
        booted: String,
        /// The boot entry directory.
        boot_dir: PathBuf,
    },
    /// A directory the deployment named on the command line needs is missing or is not a
    /// directory: the deployment cannot be booted.
    #[error("deployment {deployment}: {what} {} {problem}", path.display())]
    DeploymentDir {
        /// The deployment named on the command line.
        deployment: String,
        /// Which directory ("deployment", "shared /var", "/usr", ...).
        what: String,
        /// Where it should be.
        path: PathBuf,
        /// "does not exist" or "is not a directory".
        problem: &'static str,
    },
    /// A path that must lie inside the sysroot does not.
    #[error("{} is outside the sysroot {}", path.display(), sysroot.display())]
    OutsideSysroot {
        /// The path.
        path: PathBuf,
        /// The sysroot.
        sysroot: PathBuf,
    },
    /// `sysroot init` of a directory that is a sysroot already, with settings.
    #[error("{} is already a sysroot; its boot location, kernel arguments and retries are set (adding OS '{os}' takes only --os)", path.display())]
    AlreadySysroot {
        /// The sysroot.
        path: PathBuf,
        /// The OS being added.
        os: String,
    },
    /// The sysroot's configuration could not be encoded.
    #[error("cannot encode the sysroot configuration")]
    ConfigEncode(#[source] toml::ser::Error),
    /// A directory that is not a sysroot was given as one.
    #[error("{} is not a sysroot (no {}): run `update sysroot init --sysroot {} --os NAME` first", path.display(), config.display(), path.display())]
    NotASysroot {
        /// The directory.
        path: PathBuf,
        /// The configuration file it lacks.
        config: PathBuf,
    },
    /// No OS of that name is set up in the sysroot.
    #[error("no OS '{os}' in {} (has: {}); add it with `update sysroot init --os {os}`", sysroot.display(), if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    NoSuchOs {
        /// The OS named.
        os: String,
        /// The sysroot.
        sysroot: PathBuf,
        /// The OSes it has.
        available: Vec<String>,
    },
    /// The sysroot has no OS set up at all.
    #[error("no OS is set up in {}", sysroot.display())]
    NoOs {
        /// The sysroot.
        sysroot: PathBuf,
    },
    /// The sysroot has several OSes and none was named.
    #[error("{} holds several OSes ({}): say which with --os", sysroot.display(), names.join(", "))]
    SeveralOses {
        /// The sysroot.
        sysroot: PathBuf,
        /// Its OSes.
        names: Vec<String>,
    },
    /// Another `update` command holds the sysroot's lock.
    #[error("another `update` command is changing {} (lock {} is held)", sysroot.display(), lock.display())]
    Locked {
        /// The sysroot.
        sysroot: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// No deployment at that index in boot order.
    #[error("there is no deployment {index} (there are {count})")]
    NoDeploymentAt {
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// No deployment matches the id or prefix given.
    #[error("no deployment of {os} matches '{what}'")]
    NoDeploymentMatch {
        /// The OS.
        os: String,
        /// What was given.
        what: String,
    },
    /// A deployment id prefix matches several deployments.
    #[error("'{what}' matches {count} deployments: give more digits")]
    AmbiguousDeployment {
        /// What was given.
        what: String,
        /// How many it matches.
        count: usize,
    },
    /// `rollback` with no other deployment to go to.
    #[error("{os} has no deployment to roll back to")]
    NoRollbackTarget {
        /// The OS.
        os: String,
    },
    /// A deployment listed by its boot entry has lost its directory.
    #[error("deployment {deployment} is missing its directory")]
    DeploymentMissing {
        /// The deployment.
        deployment: String,
    },
    /// A deployment's origin file is missing or unreadable.
    #[error("deployment {deployment} has no readable origin file")]
    NoOrigin {
        /// The deployment.
        deployment: String,
    },
    /// The commit has no `/usr/lib/modules`.
    #[error("the tree has no /{modules}: a bootable tree needs /{modules}/KVER/{kernel}")]
    NoModulesDir {
        /// `usr/lib/modules`.
        modules: &'static str,
        /// `vmlinuz`.
        kernel: &'static str,
    },
    /// The commit has no kernel.
    #[error("the tree has no kernel: expected /{modules}/KVER/{kernel}")]
    NoKernel {
        /// `usr/lib/modules`.
        modules: &'static str,
        /// `vmlinuz`.
        kernel: &'static str,
    },
    /// The commit has more than one kernel.
    #[error("the tree has {} kernels under /{modules} ({}): exactly one is supported", found.len(), found.join(", "))]
    SeveralKernels {
        /// `usr/lib/modules`.
        modules: &'static str,
        /// The kernel versions found.
        found: Vec<String>,
    },
    /// `deploy` without a ref or commit, where no deployment tracks one.
    #[error("nothing to deploy: name a ref or commit (no deployment of {os} tracks one yet)")]
    NothingToDeploy {
        /// The OS.
        os: String,
    },
    /// The commit is older than the booted one and downgrades were not allowed.
    #[error("refusing to deploy {commit}: it is older than the booted commit {booted} ({commit_time} < {booted_time}); pass --allow-downgrade to do it anyway")]
    Downgrade {
        /// The commit offered.
        commit: store::CommitId,
        /// The booted commit.
        booted: store::CommitId,
        /// The offered commit's timestamp.
        commit_time: u64,
        /// The booted commit's timestamp.
        booted_time: u64,
    },
    /// Verification is on and no trusted key is configured.
    #[error("cannot verify {commit}: no trusted keys are configured (add a remote with --key, or deploy with verification off)")]
    NoTrustedKeys {
        /// The commit.
        commit: store::CommitId,
    },
    /// The commit carries its `/etc` defaults twice.
    #[error("the tree has both /etc and /usr/etc: commit the defaults in one of them")]
    EtcTwice,
    /// A file of `/etc` or `/usr/etc` changed while the merge read it.
    #[error("{}: {what}", path.display())]
    ChangedDuringMerge {
        /// The file.
        path: PathBuf,
        /// What changed ("vanished while the merge read it", ...).
        what: &'static str,
    },
    /// `finalize` needs a directory of the booted or the pending deployment that is missing
    /// or is not a real directory.
    #[error("cannot finalize {deployment}: the {what} {} is missing or not a directory", path.display())]
    FinalizeInput {
        /// The pending deployment.
        deployment: String,
        /// Which directory ("booted /etc", "pending /usr/etc", ...).
        what: &'static str,
        /// Where it should be.
        path: PathBuf,
    },
    /// The filesystem cannot swap two directories in one step (`renameat2` with
    /// `RENAME_EXCHANGE`), which `finalize` needs to replace an `/etc` atomically.
    #[error("cannot swap the finalized /etc in at {}: the filesystem does not support renameat2(RENAME_EXCHANGE); the deploy-time /etc stays", path.display())]
    NoExchange {
        /// The `/etc` to be replaced.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
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
