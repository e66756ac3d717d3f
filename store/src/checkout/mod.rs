//! Checking a commit's tree out into a directory: [`checkout`].
//!
//! The whole tree is read and checked first: every dirtree and dirmeta is
//! verified, and the depth, the entry count (a shared subtree counted at every place it
//! appears) and the longest path are bounded, so a hostile or corrupt tree is refused
//! before anything is written. The tree is then written into a temporary directory beside
//! the destination, relative to directory handles only, and renamed into place at the end:
//! a failed checkout leaves nothing at the destination.
//!
//! From a bare repository on the same filesystem each file is one `linkat` to its object
//! (objects already carry their final owner, mode and xattrs); otherwise files are copied
//! with their exact metadata, and copies of one object are hardlinked to each other.
//!
//! The checkout is not synced: a caller that needs it durable (a deployment) runs
//! `syncfs` on it before relying on it.
//!
//! ```no_run
//! # fn main() -> store::Result<()> {
//! use store::checkout::{checkout, CheckoutOptions};
//! let repo = store::Repo::open("repo")?;
//! let commit = repo.resolve_rev("os/stable")?;
//! let stats = checkout(&repo, &commit, "deploy/new".as_ref(), &CheckoutOptions::default())?;
//! println!("{} files, {} hardlinked", stats.files, stats.hardlinked);
//! # Ok(()) }
//! ```

mod plan;
mod write;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

pub use plan::MAX_PATH;
use plan::{Plan, Root};
use write::Writer;

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId};
use crate::object::DirTree;
use crate::repo::{Repo, RepoMode};
use crate::walk::{resolve_path, Node};

/// How files get into the checkout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkMode {
    /// Hardlink from a bare repository on the same filesystem, copy otherwise.
    #[default]
    Auto,
    /// Hardlink every file to its object; fail if that is impossible (an archive
    /// repository, another filesystem). A file whose object has reached the filesystem's
    /// link limit is still copied.
    Hardlink,
    /// Copy every file.
    Copy,
}

/// What to check out, and how.
#[derive(Clone, Debug, Default)]
pub struct CheckoutOptions {
    /// Only this path of the tree (`usr/share`); a file is checked out as the destination
    /// itself.
    pub subpath: Option<String>,
    /// Hardlink or copy.
    pub mode: LinkMode,
}

/// What a checkout wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Non-directory entries: regular files and symlinks. A hardlink checkout never looks
    /// at its objects, so it does not tell the two apart.
    pub files: u64,
    /// Directories, the top one included.
    pub dirs: u64,
    /// Symlinks created as new symlinks (copied ones; hardlinked ones count in `files`).
    pub symlinks: u64,
    /// Entries made by a hardlink, to an object or to an earlier copy of the same object.
    pub hardlinked: u64,
    /// Entries written as new copies.
    pub copied: u64,
    /// Content bytes written by copies.
    pub bytes: u64,
}

impl CheckoutStats {
    fn add(&mut self, o: &CheckoutStats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinked += o.hardlinked;
        self.copied += o.copied;
        self.bytes += o.bytes;
    }
}

/// Check out `commit` (or its `opts.subpath`) at `dest`, which must not exist or be an
/// empty directory, and whose parent must exist. Nothing is left at `dest` on failure.
pub fn checkout(
    repo: &Repo,
    commit: &CommitId,
    dest: &Path,
    opts: &CheckoutOptions,
) -> Result<CheckoutStats> {
    let (parent, name) = split_dest(dest)?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(parent)?;
    let dest_was_dir = dest_state(parent_fd.as_fd(), name, dest)?;

    let root = match opts.subpath.as_deref() {
        None => {
            let c = repo.read_commit(commit)?;
            Root::Dir(c.root_tree, c.root_meta)
        }
        Some(p) => match resolve_path(repo, commit, p)?.node {
            Node::Dir { tree, meta_id, .. } => Root::Dir(tree, meta_id),
            Node::File { id, .. } => Root::File(id),
        },
    };
    if dest_was_dir && matches!(root, Root::File(_)) {
        return Err(Error::Checkout {
            path: dest.to_path_buf(),
            reason: "is a directory, and the subpath names a file".into(),
        });
    }
    let plan = plan::check(repo, root)?;

    let hardlink = match (opts.mode, repo.mode()) {
        (LinkMode::Copy, _) | (LinkMode::Auto, RepoMode::Archive) => false,
        (LinkMode::Hardlink, RepoMode::Archive) => {
            return Err(Error::Repo {
                path: repo.path().to_path_buf(),
                reason: "a hardlink checkout needs a bare repository (this one is archive)".into(),
            })
        }
        (LinkMode::Hardlink, RepoMode::Bare) => true,
        (LinkMode::Auto, RepoMode::Bare) => {
            let a = rustix::fs::fstat(repo.objects_dir()).at_path(repo.path().join("objects"))?;
            let b = rustix::fs::fstat(&parent_fd).at_path(parent)?;
            a.st_dev == b.st_dev
        }
    };

    let tmp = durable::temp_name(&format!(".{}.tmp-", truncate(name, 128)));
    let mut guard = TempGuard {
        dir: parent_fd.as_fd(),
        name: &tmp,
        armed: true,
    };
    let stats = match plan.root {
        Root::Dir(tree, meta) => {
            rustix::fs::mkdirat(&parent_fd, tmp.as_str(), Mode::from_raw_mode(0o700))
                .at_path(dest)?;
            let root_fd = durable::open_dir_at(parent_fd.as_fd(), &tmp).at_path(dest)?;
            let w = writer(
                repo,
                &plan,
                dest,
                root_fd.as_fd(),
                hardlink,
                opts.mode == LinkMode::Auto,
            );
            write_root(&w, root_fd.as_fd(), tree, meta)?
        }
        Root::File(id) => {
            let w = writer(
                repo,
                &plan,
                dest,
                parent_fd.as_fd(),
                hardlink,
                opts.mode == LinkMode::Auto,
            );
            let mut stats = CheckoutStats::default();
            w.place_file(parent_fd.as_fd(), &tmp, &id, "", &mut stats)?;
            stats
        }
    };
    let renamed = if dest_was_dir {
        // Over the empty directory; fails (ENOTEMPTY) if something was put into it since.
        rustix::fs::renameat(&parent_fd, tmp.as_str(), &parent_fd, name)
    } else {
        rustix::fs::renameat_with(
            &parent_fd,
            tmp.as_str(),
            &parent_fd,
            name,
            RenameFlags::NOREPLACE,
        )
    };
    match renamed {
        Ok(()) => {}
        Err(Errno::EXIST | Errno::NOTEMPTY) => {
            return Err(Error::Checkout {
                path: dest.to_path_buf(),
                reason: "was created or filled by something else during the checkout".into(),
            })
        }
        Err(e) => return Err(e).at_path(dest),
    }
    guard.armed = false;
    Ok(stats)
}

fn writer<'a>(
    repo: &'a Repo,
    plan: &'a Plan,
    shown: &'a Path,
    root: BorrowedFd<'a>,
    hardlink: bool,
    fallback: bool,
) -> Writer<'a> {
    Writer {
        repo,
        plan,
        shown,
        root,
        hardlink: AtomicBool::new(hardlink),
        fallback,
        // Copies are hashed as they are written: reading the content anyway, the check
        // is cheap, and a bit flip in the store never reaches a checkout.
        verify: true,
        copies: Mutex::new(HashMap::new()),
    }
}

/// Fill the temporary root: its files, its subtrees, then its own metadata. A hardlink
/// checkout of a large tree splits the subtrees over two threads.
fn write_root(
    w: &Writer<'_>,
    root_fd: BorrowedFd<'_>,
    tree: DirTreeId,
    meta: DirMetaId,
) -> Result<CheckoutStats> {
    let mut stats = CheckoutStats::default();
    let (t, summary) = &w.plan.trees[&tree];
    w.write_files(root_fd, t, "", &mut stats)?;
    let threads = if w.hardlink.load(Ordering::Relaxed) && summary.entries >= PARALLEL_MIN_ENTRIES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    } else {
        1
    };
    let mut opened: Vec<(OwnedFd, DirMetaId, String)> = Vec::new();
    let items = work_items(w, root_fd, t, threads, &mut opened, &mut stats)?;
    let bins = balance(items, threads);
    let results: Vec<Result<CheckoutStats>> = std::thread::scope(|scope| {
        let opened = &opened;
        let handles: Vec<_> = bins
            .into_iter()
            .map(|bin| {
                scope.spawn(move || {
                    let mut stats = CheckoutStats::default();
                    for it in bin {
                        let (parent, rel) = match it.parent {
                            None => (root_fd, ""),
                            Some(i) => (opened[i].0.as_fd(), opened[i].2.as_str()),
                        };
                        w.write_subtree(parent, rel, (it.name, it.tree, it.meta), &mut stats)?;
                    }
                    Ok(stats)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("checkout thread panicked"))
            .collect()
    });
    for r in results {
        stats.add(&r?);
    }
    for (fd, m, rel) in opened.iter().rev() {
        w.apply_dir_meta(fd.as_fd(), &w.plan.metas[m])
            .at_path(w.shown.join(rel))?;
        stats.dirs += 1;
    }
    w.apply_dir_meta(root_fd, &w.plan.metas[&meta])
        .at_path(w.shown)?;
    stats.dirs += 1;
    Ok(stats)
}

/// Below this many entries one thread is as fast as two.
const PARALLEL_MIN_ENTRIES: u64 = 4096;
/// Linking contends on the filesystem journal: more threads than this do not help.
const MAX_THREADS: usize = 2;

/// A subtree to write: below the root (`parent` None) or below `opened[parent]`.
struct Item<'t> {
    parent: Option<usize>,
    name: &'t str,
    tree: DirTreeId,
    meta: DirMetaId,
    entries: u64,
}

/// The root's subtrees as units of work. With several threads, the largest unit is split
/// (its directory made and its files written here; its metadata set after the threads
/// finish) until none holds more than a quarter of a thread's share.
fn work_items<'t>(
    w: &'t Writer<'_>,
    root_fd: BorrowedFd<'_>,
    root: &'t DirTree,
    threads: usize,
    opened: &mut Vec<(OwnedFd, DirMetaId, String)>,
    stats: &mut CheckoutStats,
) -> Result<Vec<Item<'t>>> {
    let item =
        |parent, (name, tree, meta): &'t (crate::object::EntryName, DirTreeId, DirMetaId)| Item {
            parent,
            name: name.as_str(),
            tree: *tree,
            meta: *meta,
            entries: w.plan.trees[tree].1.entries + 1,
        };
    let mut items: Vec<Item<'t>> = root.dirs.iter().map(|d| item(None, d)).collect();
    if threads <= 1 {
        return Ok(items);
    }
    let total: u64 = items.iter().map(|i| i.entries).sum();
    for _ in 0..64 {
        let Some((at, big)) = items.iter().enumerate().max_by_key(|(_, i)| i.entries) else {
            break;
        };
        let tree = w.plan.tree(&big.tree);
        if big.entries * 4 * threads as u64 <= total || tree.dirs.is_empty() {
            break;
        }
        let big = items.swap_remove(at);
        let (parent, rel) = match big.parent {
            None => (root_fd, String::new()),
            Some(i) => (opened[i].0.as_fd(), opened[i].2.clone()),
        };
        let fd = w.make_dir(parent, &rel, big.name)?;
        let rel = if rel.is_empty() {
            big.name.to_owned()
        } else {
            format!("{rel}/{}", big.name)
        };
        w.write_files(fd.as_fd(), tree, &rel, stats)?;
        opened.push((fd, big.meta, rel));
        let idx = opened.len() - 1;
        items.extend(tree.dirs.iter().map(|d| item(Some(idx), d)));
    }
    Ok(items)
}

/// Largest first, each to the least loaded thread.
fn balance(mut items: Vec<Item<'_>>, threads: usize) -> Vec<Vec<Item<'_>>> {
    items.sort_by_key(|i| std::cmp::Reverse(i.entries));
    let mut bins: Vec<(u64, Vec<Item<'_>>)> =
        (0..threads.max(1)).map(|_| (0, Vec::new())).collect();
    for it in items {
        let bin = bins.iter_mut().min_by_key(|b| b.0).expect("at least one");
        bin.0 += it.entries;
        bin.1.push(it);
    }
    bins.into_iter()
        .map(|b| b.1)
        .filter(|b| !b.is_empty())
        .collect()
}

/// Removes the temporary directory unless the checkout got to its rename.
struct TempGuard<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = durable::remove_tree_at(self.dir, self.name);
        }
    }
}

/// The parent directory and final name of the destination.
fn split_dest(dest: &Path) -> Result<(&Path, &str)> {
    let bad = |reason: &str| Error::Checkout {
        path: dest.to_path_buf(),
        reason: reason.into(),
    };
    let name = match dest.components().next_back() {
        Some(std::path::Component::Normal(n)) => n
            .to_str()
            .ok_or_else(|| bad("destination name is not UTF-8"))?,
        _ => {
            return Err(bad(
                "destination must end in a file name (not '/', '.' or '..')",
            ))
        }
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// Whether the destination is an empty directory (true) or absent (false); anything else
/// is refused. A symlink is not followed.
fn dest_state(parent: BorrowedFd<'_>, name: &str, dest: &Path) -> Result<bool> {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e).at_path(dest),
    };
    let refuse = |reason: &str| Error::Checkout {
        path: dest.to_path_buf(),
        reason: reason.into(),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(refuse("already exists (and is not an empty directory)"));
    }
    let fd = durable::open_dir_at(parent, name).at_path(dest)?;
    for entry in rustix::fs::Dir::read_from(&fd).at_path(dest)? {
        let entry = entry.at_path(dest)?;
        if !matches!(entry.file_name().to_bytes(), b"." | b"..") {
            return Err(refuse("already exists and is not empty"));
        }
    }
    Ok(true)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(super::truncate("aé", 2), "a");
        assert_eq!(super::truncate("abc", 10), "abc");
    }
}
