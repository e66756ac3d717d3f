//! Finding the local changes: a walk over the old defaults and the running `/etc` side by
//! side, one directory level at a time, never following a symlink.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use super::copy::Skipped;
use super::node::{self, Kind, Loc};
use super::{etc_path, ChangeKind};
use crate::error::Result;

/// How a local change is carried into the merged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// The local entry (with everything below it) replaces what is there.
    Replace,
    /// A directory present on both sides whose permissions, owner or extended attributes
    /// changed: only those are carried; its entries are changes of their own.
    DirMeta,
    /// The entry is removed.
    Delete,
}

/// One local change, found by [`local_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    /// Path relative to `/etc` (empty for `/etc` itself).
    pub rel: PathBuf,
    /// What the user did.
    pub kind: ChangeKind,
    /// How it is carried.
    pub action: Action,
}

/// A tree read by the walk: its root handle and its path for messages.
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    /// The root directory.
    pub fd: BorrowedFd<'a>,
    /// Its path, for messages.
    pub shown: &'a Path,
}

/// Every difference between the old defaults and the running `/etc`, parents before
/// children. Special files of the running `/etc` that differ from the old defaults are not
/// changes that can be carried: they go to `skipped`.
pub(super) fn local_changes(
    old: Side<'_>,
    local: Side<'_>,
    skipped: &mut Skipped,
) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let dot = OsStr::new(".");
    let om = node::fstat(old.fd, old.shown)?;
    let lm = node::fstat(local.fd, local.shown)?;
    let o = Loc {
        dir: old.fd,
        name: dot,
        shown: old.shown,
        meta: om,
    };
    let l = Loc {
        dir: local.fd,
        name: dot,
        shown: local.shown,
        meta: lm,
    };
    if !node::same_entry(o, l, false, 0)? {
        out.push(Change {
            rel: PathBuf::new(),
            kind: ChangeKind::Modified,
            action: Action::DirMeta,
        });
    }
    walk(old, local, Path::new(""), 1, &mut out, skipped)?;
    Ok(out)
}

/// Compare the entries of one directory present on both sides.
fn walk(
    old: Side<'_>,
    local: Side<'_>,
    rel: &Path,
    depth: usize,
    out: &mut Vec<Change>,
    skipped: &mut Skipped,
) -> Result<()> {
    node::check_depth(depth, local.shown)?;
    let mut names = node::list(old.fd, old.shown)?;
    names.extend(node::list(local.fd, local.shown)?);
    names.sort();
    names.dedup();
    for name in &names {
        let child = rel.join(name);
        let (os, ls) = (old.shown.join(name), local.shown.join(name));
        let o = node::lstat(old.fd, name, &os)?;
        let l = node::lstat(local.fd, name, &ls)?;
        let change = |kind, action| Change {
            rel: child.clone(),
            kind,
            action,
        };
        match (o, l) {
            (None, None) => {}
            (Some(_), None) => out.push(change(ChangeKind::Deleted, Action::Delete)),
            (None, Some(lm)) => match lm.kind {
                Kind::Special(what) => skipped.push(not_carried(&child, what)),
                _ => out.push(change(ChangeKind::Added, Action::Replace)),
            },
            (Some(om), Some(lm)) => {
                let ol = Loc {
                    dir: old.fd,
                    name,
                    shown: &os,
                    meta: om,
                };
                let ll = Loc {
                    dir: local.fd,
                    name,
                    shown: &ls,
                    meta: lm,
                };
                let same = node::same_entry(ol, ll, false, depth)?;
                match lm.kind {
                    Kind::Special(what) if !same => skipped.push(not_carried(&child, what)),
                    Kind::Dir if om.kind == Kind::Dir => {
                        if !same {
                            out.push(change(ChangeKind::Modified, Action::DirMeta));
                        }
                        let od = node::open_dir(old.fd, name, &os)?;
                        let ld = node::open_dir(local.fd, name, &ls)?;
                        let old = Side {
                            fd: od.as_fd(),
                            shown: &os,
                        };
                        let local = Side {
                            fd: ld.as_fd(),
                            shown: &ls,
                        };
                        walk(old, local, &child, depth + 1, out, skipped)?;
                    }
                    _ if !same => out.push(change(ChangeKind::Modified, Action::Replace)),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn not_carried(rel: &Path, what: &str) -> (String, String) {
    (
        etc_path(rel),
        format!("{what} in /etc: special files are not carried into a deployment"),
    )
}
