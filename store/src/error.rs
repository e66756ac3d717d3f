//! The one error type of the `store` crate.

use std::io;
use std::path::PathBuf;

use crate::id::ObjectId;
use crate::object::ObjectKind;

/// Everything that can go wrong in the store. Fields are structured so that callers can
/// match on them; the `Display` text names what was wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed. The message is the path; the kernel's word is the
    /// `source`.
    #[error("{}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Bytes that should hold an encoded value do not.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// The kind of value being decoded ("dirtree", "commit", ...).
        what: &'static str,
        /// What was wrong with the bytes.
        reason: String,
    },
    /// An object was written by a newer version of the format than this build reads.
    #[error("{what} uses format version {found}, newer than this build reads ({supported}): upgrade `update`")]
    NewerFormat {
        /// What was being read.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A value given by the user or found in a tree breaks a rule of the format.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (a name, a path, a mode, ...), including the value where useful.
        what: String,
        /// Which rule it broke.
        reason: String,
    },
    /// An object the store needs is not there.
    #[error("{kind} object {id} is missing from the repository")]
    MissingObject {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
    },
    /// An object's bytes do not hash to its id, or do not decode.
    #[error("{kind} object {id} is corrupt: {reason}")]
    Corrupt {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// A branch name does not exist.
    #[error("ref '{0}' not found")]
    RefNotFound(String),
    /// A revision argument names nothing.
    #[error(
        "'{0}' is neither a branch nor the id or unique id prefix of a commit in this repository"
    )]
    UnknownRev(String),
    /// A revision prefix names more than one commit.
    #[error("'{rev}' is ambiguous: it is a prefix of {count} commit ids")]
    AmbiguousRev {
        /// The prefix given.
        rev: String,
        /// How many commits it matches.
        count: usize,
    },
    /// A file in a source tree is of a type the store does not hold.
    #[error("{}: {kind} cannot be committed (only regular files, symlinks and directories are kept)", path.display())]
    UnsupportedFileType {
        /// Where it is, inside the source.
        path: PathBuf,
        /// "device node", "FIFO", "socket", ...
        kind: &'static str,
    },
    /// A repository is not what the operation needs.
    #[error("repository {}: {reason}", path.display())]
    Repo {
        /// Where the repository is.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A commit's signature file is larger than any set of signatures may be.
    #[error("{}: signature file exceeds the limit of {limit} bytes", path.display())]
    SignaturesTooLarge {
        /// The signature file.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// The system's random source failed, so no key could be generated.
    #[error("cannot read the system random source")]
    RandomSource(#[source] getrandom::Error),
    /// A signature just made with a key does not verify: the key is unusable (weak).
    #[error("a fresh signature over commit {commit} does not verify (weak signing key?)")]
    WeakSigningKey {
        /// The commit that was being signed.
        commit: crate::id::CommitId,
    },
    /// A key file or key text is unusable (bad base64, wrong length, a secret key where a
    /// public one belongs, a weak key).
    #[error("bad key {what}: {reason}")]
    BadKey {
        /// Which key (a path, "line 3 of PATH", ...).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Verification was required and the commit carries no signature at all.
    #[error("commit {commit} is unsigned")]
    Unsigned {
        /// The commit.
        commit: crate::id::CommitId,
    },
    /// The commit has signatures, but none is a valid one by a trusted key.
    #[error("commit {commit} has no trusted signature ({untrusted} valid by untrusted keys, {invalid} invalid)")]
    NoTrustedSignature {
        /// The commit.
        commit: crate::id::CommitId,
        /// Valid signatures by keys not in the trusted set.
        untrusted: usize,
        /// Signatures that do not verify over this commit.
        invalid: usize,
    },
    /// Checking out a tree would write outside its destination or over something.
    #[error("checkout refused at {}: {reason}", path.display())]
    Checkout {
        /// The path in the tree.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tree is deeper or larger than a walk allows: a broken or hostile tree (such as a
    /// dirtree that names the same subtree over and over).
    #[error("tree {tree} exceeds the {what} limit of {limit}")]
    TreeLimit {
        /// The dirtree the walk started from.
        tree: ObjectId,
        /// Which bound: "depth" or "entry count".
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// A path does not name an entry in a commit's tree.
    #[error("'{path}' not found in commit {commit}: {reason}")]
    PathNotFound {
        /// The commit searched.
        commit: ObjectId,
        /// The path as given.
        path: String,
        /// Which component was missing or was not a directory.
        reason: String,
    },
    /// A bootable commit: the tree has no kernel.
    #[error("no kernel in the tree: a bootable commit needs /boot/vmlinuz-KVER or /usr/lib/modules/KVER/vmlinuz")]
    NoKernel,
    /// A bootable commit: the tree has several kernels and none was chosen.
    #[error("several kernels in the tree ({}): choose the one to boot with --kernel KVER", found.join(", "))]
    SeveralKernels {
        /// The kernel versions found.
        found: Vec<String>,
    },
    /// A bootable commit: the kernel chosen is not in the tree.
    #[error("kernel {kver} is not in the tree (it has: {})", if found.is_empty() { "none".to_owned() } else { found.join(", ") })]
    KernelNotFound {
        /// The version asked for.
        kver: String,
        /// The kernel versions found.
        found: Vec<String>,
    },
    /// A bootable commit: the kernel has no modules directory.
    #[error("{kernel}: kernel {kver} has no modules directory /usr/lib/modules/{kver}")]
    KernelWithoutModules {
        /// The kernel version.
        kver: String,
        /// Where the kernel is in the tree.
        kernel: String,
    },
    /// A bootable commit: the kernel has no initramfs.
    #[error("{kernel}: kernel {kver} has no initramfs (/boot/initrd.img-{kver}, /boot/initramfs-{kver}.img or /usr/lib/modules/{kver}/initramfs.img): build it in the tree first (update-initramfs -c -k {kver}, or dracut --kver {kver})")]
    NoInitramfs {
        /// The kernel version.
        kver: String,
        /// Where the kernel is in the tree.
        kernel: String,
    },
    /// A bootable commit: `/etc` is a symlink.
    #[error("/etc is a symlink (to {target}): a bootable commit moves /etc to /usr/etc, so /etc must be a directory")]
    EtcSymlink {
        /// Its target.
        target: String,
    },
    /// A bootable commit: `/etc` and `/usr/etc` both exist and differ.
    #[error("/etc and /usr/etc both exist and differ: a bootable commit moves /etc to /usr/etc; keep only one of them")]
    UsrEtcDiffers,
    /// A bootable commit: a path the conversion moves or creates is of the wrong kind.
    #[error("{path} must be {expected} for a bootable commit, but is {found}")]
    BootableShape {
        /// The path in the tree.
        path: String,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A bootable commit: seed data cannot be put in its place.
    #[error("{path} {reason}")]
    SeedConflict {
        /// The path in the tree.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A bootable commit: a name under `/var` cannot be written in a tmpfiles.d line.
    #[error("{path}: the name holds a control character, which a tmpfiles.d line cannot carry")]
    UnseedableName {
        /// The path (escaped).
        path: String,
    },
    /// A remote does not exist, exists already, or its configuration is unusable.
    #[error("remote '{name}': {reason}")]
    Remote {
        /// The remote's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl error_ext::FromIoError for Error {
    fn from_io(path: PathBuf, source: io::Error) -> Self {
        Error::Io { path, source }
    }
}

error_ext::io_result_ext!(pub Error);

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Decode`].
    pub fn decode(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Decode {
            what,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a path into nowhere is the point
mod tests {
    use super::IoResultExt;

    #[test]
    fn io_error_text_is_the_path_and_the_cause_only_its_source() {
        let path = "/nonexistent/update-test";
        let e = std::fs::read(path).at_path(path).unwrap_err();
        assert_eq!(e.to_string(), path);
        assert_eq!(
            error_ext::Chain(&e).to_string(),
            format!("{path}: No such file or directory (os error 2)")
        );
    }
}
