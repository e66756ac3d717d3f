//! What deploy needs of a commit's tree, checked in the store before anything is written.
//!
//! The checkout is a plain copy of the commit, so a `usr` that is a symlink to `/` in the
//! commit is a symlink to `/` in the staging tree. Deploy works on the staging tree through
//! handles opened without following symlinks, and on top of that refuses such a commit
//! here, from the commit's own listings, so the error is clear and nothing has been
//! written when it comes.

use store::object::FileHeader;
use store::walk::{resolve_path, Node};
use store::{CommitId, DirTreeId, FileId, Repo};

use crate::error::{Error, Result};

/// Directories deploy creates, moves or enters in a tree: each must be a real directory
/// if the commit has it. Parents come before their children.
const DIRS: [&str; 7] = [
    "usr",
    "usr/etc",
    "usr/lib",
    "usr/lib/modules",
    "etc",
    "var",
    "sysroot",
];

/// What a path of the commit's tree is.
pub(crate) enum Found {
    /// Nothing there.
    Missing,
    /// A directory, with its listing.
    Dir(DirTreeId),
    /// A regular file or a symlink, with its header.
    File(FileHeader),
}

/// Look `path` (relative to the commit's root) up in the commit's tree.
pub(crate) fn lookup(repo: &Repo, commit: &CommitId, path: &str) -> Result<Found> {
    match resolve_path(repo, commit, path) {
        Ok(e) => match e.node {
            Node::Dir { tree, .. } => Ok(Found::Dir(tree)),
            Node::File { id, header } => {
                let header = match header {
                    Some(h) => h,
                    None => repo.read_file(&id)?.0,
                };
                Ok(Found::File(header))
            }
        },
        Err(store::Error::PathNotFound { .. }) => Ok(Found::Missing),
        Err(e) => Err(e.into()),
    }
}

/// The directory at `path`, `None` if the commit has nothing there, an
/// [`Error::TreeShape`] if it has something else.
pub(crate) fn dir_at(repo: &Repo, commit: &CommitId, path: &str) -> Result<Option<DirTreeId>> {
    match lookup(repo, commit, path)? {
        Found::Missing => Ok(None),
        Found::Dir(t) => Ok(Some(t)),
        Found::File(h) => Err(not_a("a directory", &format!("/{path}"), &h)),
    }
}

/// Refuse a commit whose `usr`, `usr/etc`, `usr/lib/modules`, `etc`, `var` or `sysroot`
/// is there but is not a real directory. Kernel directories are checked by
/// [`crate::bootfiles::BootFiles::find`].
pub fn check(repo: &Repo, commit: &CommitId) -> Result<()> {
    for d in DIRS {
        dir_at(repo, commit, d)?;
    }
    Ok(())
}

/// An [`Error::TreeShape`]: `path` must be `expected` but is what `header` says.
pub(crate) fn not_a(expected: &'static str, path: &str, header: &FileHeader) -> Error {
    Error::TreeShape {
        path: path.to_owned(),
        expected,
        found: describe(header),
    }
}

/// "a symlink to TARGET" or "a regular file".
pub(crate) fn describe(header: &FileHeader) -> String {
    if header.is_symlink() {
        format!(
            "a symlink to {}",
            String::from_utf8_lossy(&header.symlink_target)
        )
    } else {
        "a regular file".to_owned()
    }
}

/// A store error met while reading the object `id` at `path` of the tree: a corrupt object
/// becomes an [`Error::CorruptObject`] naming both.
pub(crate) fn at_object(e: store::Error, id: &FileId, path: &str) -> Error {
    match e {
        store::Error::Corrupt { reason, .. } => Error::CorruptObject {
            id: *id,
            path: path.to_owned(),
            reason,
        },
        e => e.into(),
    }
}
