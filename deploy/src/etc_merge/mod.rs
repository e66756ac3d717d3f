//! The `/etc` 3-way merge: the new deployment's `/etc` is its defaults (`/usr/etc`) with
//! every change the user made to the running `/etc` carried over.
//!
//! # Policy
//!
//! Three trees go in: the old deployment's defaults (its `/usr/etc`), the running `/etc`
//! (the old deployment's `/etc`) and the new defaults (the new deployment's `/usr/etc`).
//!
//! 1. **Local changes** are the per-path differences between the old defaults and the
//!    running `/etc`: *added* (only in `/etc`), *deleted* (only in the old defaults),
//!    *modified* (on both, but type, content, permissions, owner, group, symlink target or
//!    extended attributes differ). Directories on both sides are compared by their own
//!    metadata and then entry by entry; a directory only in `/etc` is one added change
//!    (carried whole), a directory removed from `/etc` is one deleted change. Modification
//!    times do not count.
//! 2. The merged tree starts as a **real copy** of the new defaults (never hardlinks: those
//!    files are hardlinks into the content store, and `/etc` must be writable without
//!    corrupting it), keeping permissions, owner, group and extended attributes (ones the
//!    filesystem does not support are dropped silently).
//! 3. **Local always wins**: an added or modified path replaces whatever the new defaults
//!    have there (a whole subtree for a directory, type changes included); a deleted path
//!    is removed; a directory whose metadata changed gets the local metadata (and comes
//!    back whole if the new defaults removed it or changed its type).
//! 4. A **conflict** is reported when the new defaults also changed that path relative to
//!    the old defaults (added, deleted, modified or changed its type) and did not make the
//!    very same change. The user's version is kept and the new default stays readable in
//!    `/usr/etc` of the new deployment.
//! 5. If a local change lies below a directory the new defaults removed or turned into a
//!    file or symlink, that directory is re-created with the local metadata, holding only
//!    the local changes (a conflict on the directory). A symlink in the new defaults is
//!    never written through.
//! 6. **First deployment** (no old defaults) or no running `/etc`: there is no baseline to
//!    tell changes from defaults, so the result is the new defaults and nothing is
//!    reported.
//! 7. Device nodes, FIFOs and sockets are never copied; each one met in the new defaults,
//!    or as a local change, is listed in [`MergeReport::skipped`].
//!
//! # Safety
//!
//! Nothing is ever resolved through a symlink below the three input roots and the
//! destination (THREATS D9/D10): every directory is entered relative to its parent's
//! handle with `O_DIRECTORY | O_NOFOLLOW`, entries are examined with `lstat`, files are
//! read with `O_NOFOLLOW` and created with `O_CREAT | O_EXCL | O_NOFOLLOW`. A local
//! symlink `x -> /` replaces a new default directory `x/` as a symlink; a new default
//! symlink `x -> ../..` with local files below `x/` is replaced by a real directory.
//! Trees nested deeper than 256 directories are refused.
//!
//! The deploy engine calls [`merge_at`] with the three roots and the destination's parent
//! opened by itself without following symlinks, and with the object ids of the new
//! defaults ([`Expected`]): each of those files is hashed while it is copied, and a copy
//! that does not match its id fails the merge with [`Error::CorruptObject`].

mod copy;
mod diff;
#[cfg(test)]
mod escape_tests;
mod node;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use store::object::FileHeader;
use store::FileId;

use self::copy::{Dest, Source};
use self::diff::{Action, Change, Side};
use self::node::{Kind, Loc, Meta};
use crate::error::{Error, IoResultExt, Result};

/// What the merge did, for the report printed by `update deploy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// Every local change carried into the new `/etc`, conflicting or not, parents first.
    pub carried: Vec<LocalChange>,
    /// Local changes to paths the new defaults changed too (all of them are in `carried`,
    /// or name a directory re-created for them).
    pub conflicts: Vec<Conflict>,
    /// Entries left out: (path in the new `/etc`, why).
    pub skipped: Vec<(String, String)>,
}

/// One change the user made to `/etc`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalChange {
    /// The path as the booted system sees it, e.g. `/etc/ssh/sshd_config`.
    pub path: String,
    /// What was done to it.
    pub kind: ChangeKind,
}

/// What the user did to a path of `/etc`, relative to the old defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Not in the old defaults.
    Added,
    /// Different type, content, permissions, owner, group, symlink target or extended
    /// attributes.
    Modified,
    /// In the old defaults, gone from `/etc`.
    Deleted,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        })
    }
}

/// A path both the user and the new defaults changed. The user's version won.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// The path as the booted system sees it.
    pub path: String,
    /// What the user did to it.
    pub local: ChangeKind,
    /// What the merge did, for a human, e.g. "kept your version; the new default is in
    /// /usr/etc/foo.conf".
    pub resolution: String,
}

/// Merge `/etc`: `old_defaults` is the old deployment's `/usr/etc` (`None` on a first
/// deployment), `local` the running `/etc` (the old deployment's `/etc`; `None` if absent),
/// `new_defaults` the new deployment's `/usr/etc`.
///
/// Creates `dest` (it must not exist; its parent must) holding `new_defaults` with every
/// local change applied, following the policy of the [module documentation](self). On an
/// error, whatever was created at `dest` is removed again. Nothing is fsynced: the caller
/// syncs the filesystem before it publishes the deployment.
///
/// ```no_run
/// use std::path::Path;
///
/// let d = Path::new("/sysroot/update/deploy/os/deploy");
/// let report = deploy::etc_merge::merge(
///     Some(&d.join("OLD.0/usr/etc")),
///     Some(&d.join("OLD.0/etc")),
///     &d.join("NEW.0/usr/etc"),
///     &d.join("NEW.0/etc"),
/// )?;
/// for c in &report.conflicts {
///     println!("{}: {}", c.path, c.resolution);
/// }
/// # Ok::<(), deploy::Error>(())
/// ```
pub fn merge(
    old_defaults: Option<&Path>,
    local: Option<&Path>,
    new_defaults: &Path,
    dest: &Path,
) -> Result<MergeReport> {
    let Some(dest_name) = dest.file_name() else {
        return Err(Error::invalid(
            format!("merge destination {}", dest.display()),
            "has no file name",
        ));
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent_fd = node::open_root(parent)?;
    let new = node::open_root(new_defaults)?;
    let old = old_defaults.map(node::open_root).transpose()?;
    let loc = local.map(node::open_root).transpose()?;
    fn root<'a>(fd: &'a OwnedFd, path: &'a Path) -> Root<'a> {
        Root {
            fd: fd.as_fd(),
            path,
        }
    }
    merge_at(&MergeAt {
        old_defaults: old.as_ref().zip(old_defaults).map(|(f, p)| root(f, p)),
        local: loc.as_ref().zip(local).map(|(f, p)| root(f, p)),
        new_defaults: root(&new, new_defaults),
        dest_parent: root(&parent_fd, parent),
        dest_name,
        expected: None,
    })
}

/// A directory the caller opened (the deploy engine: without following symlinks), and
/// its path for messages.
#[derive(Clone, Copy, Debug)]
pub struct Root<'a> {
    /// The open directory.
    pub fd: BorrowedFd<'a>,
    /// Its path, for messages.
    pub path: &'a Path,
}

/// The inputs of [`merge_at`]: [`merge`]'s, as open directories.
#[derive(Clone, Copy, Debug)]
pub struct MergeAt<'a> {
    /// The old deployment's `/usr/etc` (`None` on a first deployment).
    pub old_defaults: Option<Root<'a>>,
    /// The running `/etc` (`None` if absent).
    pub local: Option<Root<'a>>,
    /// The new deployment's `/usr/etc`.
    pub new_defaults: Root<'a>,
    /// The directory to create the merged `/etc` in.
    pub dest_parent: Root<'a>,
    /// The merged `/etc`'s name in `dest_parent` (it must not exist).
    pub dest_name: &'a OsStr,
    /// What the files of `new_defaults` must hash to; `None`: copied unchecked.
    pub expected: Option<&'a Expected>,
}

/// [`merge`] on directories the caller opened. With [`MergeAt::expected`], every file
/// copied from the new defaults is hashed while copied and a mismatch fails the merge
/// with [`Error::CorruptObject`].
pub fn merge_at(m: &MergeAt<'_>) -> Result<MergeReport> {
    let new = Tree::dup(m.new_defaults)?;
    // Without a baseline there is no telling local changes from old defaults.
    let base = match (m.old_defaults, m.local) {
        (Some(o), Some(l)) => Some((Tree::dup(o)?, Tree::dup(l)?)),
        _ => None,
    };
    let dest = m.dest_parent.path.join(m.dest_name);
    let parent_fd = m.dest_parent.fd;
    let dest_fd = copy::make_dir(parent_fd, m.dest_name, &dest)?;
    let dest_tree = Tree {
        fd: dest_fd,
        path: dest.clone(),
    };
    let result = fill(&new, base.as_ref(), &dest_tree, m.expected);
    if result.is_err() {
        // Best effort: the caller may retry with the same `dest`.
        let _ = copy::remove_entry(parent_fd, m.dest_name, &dest, 0);
    }
    result
}

/// The object ids of the new defaults' regular files, keyed by the path the booted system
/// names them by (`/etc/REL`), with their headers: the merge hashes each such file while
/// copying it and compares.
#[derive(Debug, Default)]
pub struct Expected {
    files: HashMap<String, (FileId, FileHeader)>,
}

impl Expected {
    /// Expect the file `/etc/REL` (`path`) to be the object `id` with `header`.
    pub fn insert(&mut self, path: String, id: FileId, header: FileHeader) {
        self.files.insert(path, (id, header));
    }

    fn get(&self, path: &str) -> Option<&(FileId, FileHeader)> {
        self.files.get(path)
    }
}

/// An input or output tree: its root handle and its path for messages.
struct Tree {
    fd: OwnedFd,
    path: PathBuf,
}

impl Tree {
    /// A handle of its own on the caller's directory.
    fn dup(root: Root<'_>) -> Result<Tree> {
        Ok(Tree {
            fd: rustix::io::fcntl_dupfd_cloexec(root.fd, 0).at_path(root.path)?,
            path: root.path.to_path_buf(),
        })
    }

    fn side(&self) -> Side<'_> {
        Side {
            fd: self.fd.as_fd(),
            shown: &self.path,
        }
    }

    /// The directory at `rel`, if it is a real directory all the way down.
    fn dir(&self, rel: &Path) -> Result<Option<OwnedFd>> {
        node::lookup_dir(self.fd.as_fd(), &self.path, rel)
    }
}

/// Fill the freshly created destination.
fn fill(
    new: &Tree,
    base: Option<&(Tree, Tree)>,
    dest: &Tree,
    expected: Option<&Expected>,
) -> Result<MergeReport> {
    let mut report = MergeReport::default();
    let to = Dest {
        dir: dest.fd.as_fd(),
        shown: &dest.path,
    };
    copy::copy_children(
        new.fd.as_fd(),
        &new.path,
        to,
        "/etc",
        Source {
            side: "/usr/etc",
            expected,
        },
        &mut report.skipped,
        1,
    )?;
    let meta = node::fstat(new.fd.as_fd(), &new.path)?;
    let attrs = node::xattrs_fd(new.fd.as_fd(), &new.path)?;
    copy::set_meta(dest.fd.as_fd(), &meta, &attrs, &dest.path)?;
    let Some((old, local)) = base else {
        return Ok(report);
    };
    let changes = diff::local_changes(old.side(), local.side(), &mut report.skipped)?;
    let mut merge = Apply {
        old,
        local,
        new,
        dest,
        report,
    };
    for change in &changes {
        merge.apply(change)?;
    }
    let mut report = merge.report;
    // A special file inside a directory carried whole is met by the walk and by the copy.
    let mut seen = HashSet::new();
    report.skipped.retain(|(path, _)| seen.insert(path.clone()));
    Ok(report)
}

/// `/etc/REL` (or `/etc`), as the booted system names a path.
fn etc_path(rel: &Path) -> String {
    prefixed("/etc", rel)
}

/// `/usr/etc/REL`, where the new default of a path stays readable.
fn usr_etc_path(rel: &Path) -> String {
    prefixed("/usr/etc", rel)
}

fn prefixed(prefix: &str, rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}/{}", rel.to_string_lossy())
    }
}

/// Parent and name of a change's path; `.` names the root itself.
fn split(rel: &Path) -> (&Path, &OsStr) {
    match rel.file_name() {
        Some(name) => (rel.parent().unwrap_or(Path::new("")), name),
        None => (Path::new(""), OsStr::new(".")),
    }
}

/// The state of carrying the local changes into the destination.
struct Apply<'a> {
    old: &'a Tree,
    local: &'a Tree,
    new: &'a Tree,
    dest: &'a Tree,
    report: MergeReport,
}

/// An entry looked up in one tree: its parent's handle, path for messages, and `lstat`.
struct Found {
    parent: OwnedFd,
    shown: PathBuf,
    meta: Meta,
}

impl Found {
    fn loc<'a>(&'a self, name: &'a OsStr) -> Loc<'a> {
        Loc {
            dir: self.parent.as_fd(),
            name,
            shown: &self.shown,
            meta: self.meta,
        }
    }
}

impl Apply<'_> {
    fn apply(&mut self, change: &Change) -> Result<()> {
        let conflict = self.conflict(change)?;
        let (parent_rel, name) = split(&change.rel);
        let shown = self.dest.path.join(&change.rel);
        match change.action {
            Action::Delete => {
                if let Some(parent) = self.dest.dir(parent_rel)? {
                    copy::remove_entry(parent.as_fd(), name, &shown, 0)?;
                }
            }
            Action::Replace => {
                let parent = self.dest_parent(parent_rel)?;
                self.replace(&change.rel, parent.as_fd(), &shown)?;
            }
            Action::DirMeta => {
                // `.` names the root itself: `dest_parent` of an empty path is the root.
                let parent = self.dest_parent(parent_rel)?;
                match node::lstat(parent.as_fd(), name, &shown)? {
                    Some(m) if m.kind == Kind::Dir => {
                        let src = self.local_entry(&change.rel)?;
                        let from = node::open_dir(src.parent.as_fd(), name, &src.shown)?;
                        let attrs = node::xattrs_fd(from.as_fd(), &src.shown)?;
                        let target = node::open_dir(parent.as_fd(), name, &shown)?;
                        copy::reset_meta(target.as_fd(), &src.meta, &attrs, &shown)?;
                    }
                    // The new defaults removed the directory or changed its type: the
                    // user's directory comes back whole, not as an empty shell.
                    _ => self.replace(&change.rel, parent.as_fd(), &shown)?,
                }
            }
        }
        let path = etc_path(&change.rel);
        if let Some(resolution) = conflict {
            self.report.conflicts.push(Conflict {
                path: path.clone(),
                local: change.kind,
                resolution,
            });
        }
        self.report.carried.push(LocalChange {
            path,
            kind: change.kind,
        });
        Ok(())
    }

    /// Replace the entry at `rel` of the destination (in `parent`) by the local one, with
    /// everything below it.
    fn replace(&mut self, rel: &Path, parent: BorrowedFd<'_>, shown: &Path) -> Result<()> {
        let (_, name) = split(rel);
        copy::remove_entry(parent, name, shown, 0)?;
        let src = self.local_entry(rel)?;
        let to = Dest {
            dir: parent,
            shown: shown.parent().unwrap_or(shown),
        };
        let path = etc_path(rel);
        copy::copy_entry(
            src.loc(name),
            to,
            &path,
            Source {
                side: "/etc",
                expected: None,
            },
            &mut self.report.skipped,
            1,
        )
    }

    /// The entry at `rel` in `tree`, if its parent is a real directory and it exists.
    fn find(tree: &Tree, rel: &Path) -> Result<Option<Found>> {
        let (parent_rel, name) = split(rel);
        let Some(parent) = tree.dir(parent_rel)? else {
            return Ok(None);
        };
        let shown = tree.path.join(rel);
        let found = node::lstat(parent.as_fd(), name, &shown)?;
        Ok(found.map(|meta| Found {
            parent,
            shown,
            meta,
        }))
    }

    /// The local entry a change carries; the walk has just seen it.
    fn local_entry(&self, rel: &Path) -> Result<Found> {
        Self::find(self.local, rel)?.ok_or_else(|| vanished(&self.local.path.join(rel)))
    }

    /// Whether two optional entries are the same (see [`node::same_entry`]).
    fn same(a: &Option<Found>, b: &Option<Found>, name: &OsStr, deep: bool) -> Result<bool> {
        match (a, b) {
            (None, None) => Ok(true),
            (Some(a), Some(b)) => node::same_entry(a.loc(name), b.loc(name), deep, 1),
            _ => Ok(false),
        }
    }

    /// The resolution text if the new defaults changed the path of `change` too, and
    /// differently from the user.
    fn conflict(&self, change: &Change) -> Result<Option<String>> {
        let (_, name) = split(&change.rel);
        let old = Self::find(self.old, &change.rel)?;
        let new = Self::find(self.new, &change.rel)?;
        let local = Self::find(self.local, &change.rel)?;
        let deep = change.action != Action::DirMeta;
        if Self::same(&old, &new, name, deep)? || Self::same(&new, &local, name, deep)? {
            return Ok(None);
        }
        let usr = usr_etc_path(&change.rel);
        Ok(Some(match (change.kind, new) {
            (ChangeKind::Deleted, _) => format!("kept it deleted; the new default is in {usr}"),
            (_, Some(_)) => format!("kept your version; the new default is in {usr}"),
            (_, None) => "kept your version; the new defaults removed it".to_string(),
        }))
    }

    /// Open the directory `rel` of the destination for a change below it. A component that
    /// is missing there, or is a file or symlink, is replaced by a directory with the
    /// metadata of the running `/etc` (and reported as a conflict): never written through.
    fn dest_parent(&mut self, rel: &Path) -> Result<OwnedFd> {
        let mut cur = self
            .dest
            .dir(Path::new(""))?
            .ok_or_else(|| vanished(&self.dest.path))?;
        let mut sub = PathBuf::new();
        for name in node::components(rel, &self.dest.path)? {
            sub.push(name);
            let shown = self.dest.path.join(&sub);
            let there = node::lstat(cur.as_fd(), name, &shown)?;
            if there.is_some_and(|m| m.kind == Kind::Dir) {
                cur = node::open_dir(cur.as_fd(), name, &shown)?;
                continue;
            }
            let src = self.local_entry(&sub)?;
            if src.meta.kind != Kind::Dir {
                return Err(Error::ChangedDuringMerge {
                    path: src.shown.to_path_buf(),
                    what: "changed while the merge read it",
                });
            }
            let from = node::open_dir(src.parent.as_fd(), name, &src.shown)?;
            let attrs = node::xattrs_fd(from.as_fd(), &src.shown)?;
            let what = match there {
                None => "the new defaults removed it".to_string(),
                Some(m) => {
                    copy::remove_entry(cur.as_fd(), name, &shown, 0)?;
                    format!(
                        "the new default ({}) is in {}",
                        m.kind.article(),
                        usr_etc_path(&sub)
                    )
                }
            };
            let dir = copy::make_dir(cur.as_fd(), name, &shown)?;
            copy::set_meta(dir.as_fd(), &src.meta, &attrs, &shown)?;
            self.report.conflicts.push(Conflict {
                path: etc_path(&sub),
                local: ChangeKind::Modified,
                resolution: format!("kept your directory, which holds changes of yours; {what}"),
            });
            cur = dir;
        }
        Ok(cur)
    }
}

fn vanished(path: &Path) -> Error {
    Error::ChangedDuringMerge {
        path: path.to_path_buf(),
        what: "vanished while the merge read it",
    }
}
