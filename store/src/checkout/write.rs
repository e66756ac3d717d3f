//! Writing a checked tree below an open directory. Every call is relative to the handle of
//! the directory being filled (`mkdirat`, `openat` with `O_NOFOLLOW`, `linkat`,
//! `symlinkat`), so nothing the tree holds (a symlink to `/`, say) is ever traversed.
//!
//! Hardlink mode costs one `linkat` per file and `mkdirat`, `openat`, `fchown`, `fchmod`
//! per directory: objects are never stat'ed, each dirtree was read once by the plan.
//! A directory gets its mode last, after its contents, so a read-only directory can
//! still be filled.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::plan::Plan;
use super::CheckoutStats;
use crate::error::{Error, IoResultExt, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{
    DirMeta, DirTree, FileHasher, ObjectKind, Xattrs, PERM_MASK, S_IFLNK, S_IFMT, S_IFREG,
};
use crate::repo::{object_rel, FileContent, Repo, RepoMode};

const COPY_BUF: usize = 128 * 1024;

/// Shared state of one checkout's writers.
pub(super) struct Writer<'a> {
    pub repo: &'a Repo,
    pub plan: &'a Plan,
    /// The destination as the user named it, for messages.
    pub shown: &'a Path,
    /// The temporary root being filled (source of links between copies).
    pub root: BorrowedFd<'a>,
    /// Link from the repository's objects; cleared when the filesystems differ.
    pub hardlink: AtomicBool,
    /// May fall back from hardlinks to copies on `EXDEV`.
    pub fallback: bool,
    /// Hash copied content and compare with the id (archive repositories).
    pub verify: bool,
    /// First copy of each file id, relative to `root`, so later occurrences link to it.
    pub copies: Mutex<HashMap<FileId, String>>,
}

/// One directory being filled.
struct Frame {
    fd: OwnedFd,
    tree: Arc<DirTree>,
    meta: DirMetaId,
    next: usize,
    /// Length of the relative path before this directory's name was appended.
    parent_len: usize,
}

impl Writer<'_> {
    fn io_err(&self, rel: &str, name: &str, e: Errno) -> Error {
        let mut p = self.shown.to_path_buf();
        if !rel.is_empty() {
            p.push(rel);
        }
        if !name.is_empty() {
            p.push(name);
        }
        Error::Io {
            path: p,
            source: e.into(),
        }
    }

    /// Write the files of `tree` into `fd`, whose path relative to the root is `rel`.
    pub fn write_files(
        &self,
        fd: BorrowedFd<'_>,
        tree: &DirTree,
        rel: &str,
        stats: &mut CheckoutStats,
    ) -> Result<()> {
        for (name, id) in &tree.files {
            self.place_file(fd, name.as_str(), id, rel, stats)?;
        }
        Ok(())
    }

    /// Create the subdirectory `name` of `parent` (at `rel`) and everything below it, then
    /// give it its metadata. Iterative: the depth was bounded by the plan, but the stack
    /// of this thread is not asked to hold it.
    pub fn write_subtree(
        &self,
        parent: BorrowedFd<'_>,
        rel: &str,
        (name, tree, meta): (&str, DirTreeId, DirMetaId),
        stats: &mut CheckoutStats,
    ) -> Result<()> {
        let mut rel = rel.to_owned();
        let mut stack: Vec<Frame> = Vec::new();
        let mut next = Some((name.to_owned(), tree, meta));
        loop {
            if let Some((name, tree_id, meta)) = next.take() {
                let fd =
                    self.make_dir(stack.last().map_or(parent, |f| f.fd.as_fd()), &rel, &name)?;
                let parent_len = rel.len();
                if !rel.is_empty() {
                    rel.push('/');
                }
                rel.push_str(&name);
                let tree = self.plan.tree(&tree_id).clone();
                self.write_files(fd.as_fd(), &tree, &rel, stats)?;
                stack.push(Frame {
                    fd,
                    tree,
                    meta,
                    next: 0,
                    parent_len,
                });
            }
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            if let Some((name, tree, meta)) = top.tree.dirs.get(top.next) {
                top.next += 1;
                next = Some((name.as_str().to_owned(), *tree, *meta));
                continue;
            }
            let done = stack.pop().expect("non-empty");
            self.apply_dir_meta(done.fd.as_fd(), &self.plan.metas[&done.meta])
                .map_err(|e| self.io_err(&rel, "", e))?;
            stats.dirs += 1;
            rel.truncate(done.parent_len);
        }
    }

    /// Create the directory `name` below `parent` (at `rel`), private until its metadata
    /// is set, and open it.
    pub fn make_dir(&self, parent: BorrowedFd<'_>, rel: &str, name: &str) -> Result<OwnedFd> {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.io_err(rel, name, e))?;
        crate::durable::open_dir_at(parent, name).map_err(|e| self.io_err(rel, name, e))
    }

    /// Owner, then xattrs, then mode: chown clears setuid/setgid, and a read-only mode
    /// must come after the contents.
    pub fn apply_dir_meta(&self, fd: BorrowedFd<'_>, meta: &DirMeta) -> rustix::io::Result<()> {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )?;
        set_xattrs_fd(fd, &meta.xattrs)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & PERM_MASK))
    }

    /// Put file object `id` at `dir/name`: a hardlink to the object, a hardlink to an
    /// earlier copy of it, or a new copy.
    pub fn place_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        id: &FileId,
        rel: &str,
        stats: &mut CheckoutStats,
    ) -> Result<()> {
        stats.files += 1;
        if self.hardlink.load(Ordering::Relaxed) {
            let obj = object_rel(ObjectKind::File, RepoMode::Bare, &id.0);
            // A damaged store could hold a FIFO or device node at an object's path; a
            // cached lstat keeps it out of the tree for little cost.
            match rustix::fs::statat(
                self.repo.objects_dir(),
                obj.as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) if matches!(st.st_mode & S_IFMT, S_IFREG | S_IFLNK) => {}
                Ok(_) => {
                    return Err(Error::Corrupt {
                        kind: ObjectKind::File,
                        id: id.0,
                        reason: "not a regular file or symlink in the repository".into(),
                    })
                }
                Err(Errno::NOENT) => {
                    return Err(Error::MissingObject {
                        kind: ObjectKind::File,
                        id: id.0,
                    })
                }
                Err(e) => return Err(self.io_err(rel, name, e)),
            }
            match rustix::fs::linkat(
                self.repo.objects_dir(),
                obj.as_str(),
                dir,
                name,
                AtFlags::empty(),
            ) {
                Ok(()) => {
                    stats.hardlinked += 1;
                    return Ok(());
                }
                // The object has as many links as its filesystem allows: copy this one.
                Err(Errno::MLINK) => {}
                Err(Errno::XDEV) if self.fallback => self.hardlink.store(false, Ordering::Relaxed),
                Err(Errno::NOENT) => {
                    return Err(Error::MissingObject {
                        kind: ObjectKind::File,
                        id: id.0,
                    })
                }
                Err(e) => return Err(self.io_err(rel, name, e)),
            }
        }
        // Copies of the same object are hardlinked to each other, as in the tree's own
        // checkout from a bare repository. The map is locked across the copy so two
        // threads never make two copies of one id.
        let mut copies = self.copies.lock().expect("poisoned");
        if let Some(first) = copies.get(id) {
            match rustix::fs::linkat(self.root, first.as_str(), dir, name, AtFlags::empty()) {
                Ok(()) => {
                    stats.hardlinked += 1;
                    return Ok(());
                }
                Err(Errno::MLINK) => {}
                Err(e) => return Err(self.io_err(rel, name, e)),
            }
        }
        self.copy_file(dir, name, id, rel, stats)?;
        let mut path = String::with_capacity(rel.len() + name.len() + 1);
        path.push_str(rel);
        if !rel.is_empty() {
            path.push('/');
        }
        path.push_str(name);
        copies.insert(*id, path);
        Ok(())
    }

    /// Write a new copy of file object `id` at `dir/name` with its exact metadata.
    fn copy_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        id: &FileId,
        rel: &str,
        stats: &mut CheckoutStats,
    ) -> Result<()> {
        let (header, content) = self.repo.read_file(id)?;
        let corrupt = |reason: String| Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason,
        };
        let owner = (
            Some(Uid::from_raw(header.uid)),
            Some(Gid::from_raw(header.gid)),
        );
        match content {
            FileContent::Symlink => {
                if self.verify && FileHasher::new(&header).finish() != *id {
                    return Err(corrupt("content does not hash to its id".into()));
                }
                let err = |e| self.io_err(rel, name, e);
                rustix::fs::symlinkat(header.symlink_target.as_slice(), dir, name).map_err(err)?;
                rustix::fs::chownat(dir, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(err)?;
                if !header.xattrs.is_empty() {
                    // There is no fd-relative lsetxattr: name the link through the handle of
                    // its directory, which is ours; the last component is not followed.
                    let via = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
                    for (n, v) in header.xattrs.iter() {
                        rustix::fs::lsetxattr(via.as_str(), n, v, XattrFlags::empty())
                            .map_err(err)?;
                    }
                }
                stats.symlinks += 1;
            }
            FileContent::Regular(mut src) => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io_err(rel, name, e))?;
                let mut out = File::from(fd);
                let mut hasher = self.verify.then(|| FileHasher::new(&header));
                let mut buf = vec![0u8; COPY_BUF.min(header.size as usize).max(1)];
                let mut total = 0u64;
                loop {
                    let n = src
                        .read(&mut buf)
                        .map_err(|e| corrupt(format!("reading: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf[..n]);
                    }
                    out.write_all(&buf[..n])
                        .at_path(self.shown.join(rel).join(name))?;
                    total += n as u64;
                }
                if total != header.size {
                    return Err(corrupt(format!(
                        "content is {total} bytes, header says {}",
                        header.size
                    )));
                }
                if hasher.is_some_and(|h| h.finish() != *id) {
                    return Err(corrupt("content does not hash to its id".into()));
                }
                let err = |e| self.io_err(rel, name, e);
                rustix::fs::fchown(&out, owner.0, owner.1).map_err(err)?;
                set_xattrs_fd(out.as_fd(), &header.xattrs).map_err(err)?;
                rustix::fs::fchmod(&out, Mode::from_raw_mode(header.mode & PERM_MASK))
                    .map_err(err)?;
                stats.bytes += total;
            }
        }
        stats.copied += 1;
        Ok(())
    }
}

fn set_xattrs_fd(fd: BorrowedFd<'_>, xattrs: &Xattrs) -> rustix::io::Result<()> {
    for (n, v) in xattrs.iter() {
        rustix::fs::fsetxattr(fd, n, v, XattrFlags::empty())?;
    }
    Ok(())
}
