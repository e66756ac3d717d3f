//! Committing a directory on disk.
//!
//! The walk works on directory handles: each directory is opened once, relative to its
//! parent's handle and without following symlinks, and everything in it is reached
//! relative to that handle (one `openat` + `fstat` per regular file). The entries of a
//! directory are processed in parallel on the commit's thread pool, subdirectories
//! recursively, so a directory's dirtree is always written after its children.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{at_entry, entry_name, Counters, Ctx, SourceRead, MAX_DEPTH};
use crate::error::{Error, IoResultExt, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{DirMeta, DirTree, EntryName, FileHeader, PERM_MASK, S_IFMT, S_IFREG};
use crate::xattrs;

/// One processed entry of a directory.
enum Child {
    File(EntryName, FileId),
    Dir(EntryName, DirTreeId, DirMetaId),
}

/// The file id of an inode with several links, once the first of them is written.
type Inode = Arc<Mutex<Option<FileId>>>;

struct Walker<'a> {
    ctx: &'a Ctx<'a>,
    root: &'a Path,
    /// (dev, ino) of regular files with more than one link.
    hardlinks: Mutex<HashMap<(u64, u64), Inode>>,
    /// Whether `/proc/self/fd` can name a symlink relative to a directory handle.
    proc_fd: bool,
}

/// Commit the directory at `root`: write its objects and return its root dirtree and
/// dirmeta. Runs on the current rayon pool.
pub(crate) fn commit_dir(ctx: &Ctx<'_>, root: &Path) -> Result<(DirTreeId, DirMetaId)> {
    let fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(root)?;
    let walker = Walker {
        ctx,
        root,
        hardlinks: Mutex::new(HashMap::new()),
        #[allow(clippy::disallowed_methods)] // path meant: the system's procfs
        proc_fd: Path::new("/proc/self/fd").is_dir(),
    };
    walker.dir(fd, Path::new(""), 0)
}

impl Walker<'_> {
    fn shown(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn dir(&self, fd: OwnedFd, rel: &Path, depth: usize) -> Result<(DirTreeId, DirMetaId)> {
        let shown = self.shown(rel);
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                format!("{}", shown.display()),
                format!("deeper than {MAX_DEPTH} directories"),
            ));
        }
        let st = rustix::fs::fstat(&fd).at_path(&shown)?;
        let attrs = xattrs::of_fd(fd.as_fd()).at_path(&shown)?;
        let (uid, gid) = self.ctx.opts.owner(st.st_uid, st.st_gid);
        let meta = DirMeta::new(st.st_mode & PERM_MASK, uid, gid, attrs)
            .map_err(|e| at_entry(e, &shown.display()))?;

        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).at_path(&shown)? {
            let entry = entry.at_path(&shown)?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            names.push((name.to_owned(), entry.file_type()));
        }
        let children = names
            .into_par_iter()
            .map(|(name, ft)| self.entry(fd.as_fd(), rel, depth, &name, ft))
            .collect::<Result<Vec<Child>>>()?;
        drop(fd);

        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for c in children {
            match c {
                Child::File(n, id) => files.push((n, id)),
                Child::Dir(n, t, m) => dirs.push((n, t, m)),
            }
        }
        let tree = DirTree::new(files, dirs).map_err(|e| at_entry(e, &shown.display()))?;
        self.ctx.write_dir(&tree, &meta)
    }

    fn entry(
        &self,
        dirfd: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
        name: &CStr,
        ft: FileType,
    ) -> Result<Child> {
        let child_rel = rel.join(OsStr::from_bytes(name.to_bytes()));
        let ename = entry_name(name.to_bytes(), &self.shown(&child_rel).display())?;
        let ft = match ft {
            FileType::Unknown => {
                let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .at_path(self.shown(&child_rel))?;
                FileType::from_raw_mode(st.st_mode)
            }
            ft => ft,
        };
        match ft {
            FileType::RegularFile => Ok(Child::File(ename, self.file(dirfd, name, &child_rel)?)),
            FileType::Symlink => Ok(Child::File(ename, self.symlink(dirfd, name, &child_rel)?)),
            FileType::Directory
                if rel.as_os_str().is_empty() && self.ctx.drops_content_of(name.to_bytes()) =>
            {
                let (t, m) = self.api_dir(dirfd, name, &child_rel)?;
                Ok(Child::Dir(ename, t, m))
            }
            FileType::Directory => {
                let fd = rustix::fs::openat(
                    dirfd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .at_path(self.shown(&child_rel))?;
                let (t, m) = self.dir(fd, &child_rel, depth + 1)?;
                Ok(Child::Dir(ename, t, m))
            }
            other => Err(Error::UnsupportedFileType {
                path: self.shown(&child_rel),
                kind: type_name(other),
            }),
        }
    }

    /// A bootable commit's API directory (`/dev`, `/run`, ...): kept, with its metadata,
    /// as an empty directory; what is in it is counted, never read. Only `/dev` is
    /// counted to the bottom (device nodes sit in subdirectories too); a `/proc` or
    /// `/sys` left mounted in a chroot is not walked.
    fn api_dir(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> Result<(DirTreeId, DirMetaId)> {
        let shown = self.shown(rel);
        let fd = open_dir_at(dirfd, name).at_path(&shown)?;
        let st = rustix::fs::fstat(&fd).at_path(&shown)?;
        let attrs = xattrs::of_fd(fd.as_fd()).at_path(&shown)?;
        let (uid, gid) = self.ctx.opts.owner(st.st_uid, st.st_gid);
        let meta = DirMeta::new(st.st_mode & PERM_MASK, uid, gid, attrs)
            .map_err(|e| at_entry(e, &shown.display()))?;
        let all = name.to_bytes() == b"dev";
        self.count_dropped(fd, &shown, 1, all)?;
        self.ctx.write_dir(&DirTree::default(), &meta)
    }

    /// Count what is below a dropped directory: device nodes, and everything else.
    fn count_dropped(&self, fd: OwnedFd, shown: &Path, depth: usize, all: bool) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                format!("{}", shown.display()),
                format!("deeper than {MAX_DEPTH} directories"),
            ));
        }
        let mut subdirs = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).at_path(shown)? {
            let entry = entry.at_path(shown)?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let ft = match entry.file_type() {
                FileType::Unknown => {
                    let st = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                        .at_path(shown.join(OsStr::from_bytes(name.to_bytes())))?;
                    FileType::from_raw_mode(st.st_mode)
                }
                ft => ft,
            };
            let counter = match ft {
                FileType::CharacterDevice | FileType::BlockDevice => &self.ctx.counters.dev_nodes,
                _ => &self.ctx.counters.api_dropped,
            };
            Counters::add(counter, 1);
            if all && ft == FileType::Directory {
                subdirs.push(name.to_owned());
            }
        }
        for name in subdirs {
            let sub = shown.join(OsStr::from_bytes(name.to_bytes()));
            let sub_fd = open_dir_at(fd.as_fd(), &name).at_path(&sub)?;
            self.count_dropped(sub_fd, &sub, depth + 1, all)?;
        }
        Ok(())
    }

    fn file(&self, dirfd: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<FileId> {
        // NONBLOCK: should the entry have been swapped for a FIFO, opening must not hang.
        let fd = rustix::fs::openat(
            dirfd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .at_path(self.shown(rel))?;
        let st = rustix::fs::fstat(&fd).at_path(self.shown(rel))?;
        if st.st_mode & S_IFMT != S_IFREG {
            return Err(Error::invalid(
                format!("{}", self.shown(rel).display()),
                "changed type while being committed",
            ));
        }
        Counters::add(&self.ctx.counters.files, 1);
        if st.st_nlink > 1 {
            let inode = {
                let mut map = self.hardlinks.lock().expect("poisoned");
                map.entry((st.st_dev, st.st_ino)).or_default().clone()
            };
            // Held while the first link is written: the other links wait and reuse its id.
            let mut slot = inode.lock().expect("poisoned");
            if let Some(id) = *slot {
                return Ok(id);
            }
            let id = self.write_regular(fd, &st, rel)?;
            *slot = Some(id);
            return Ok(id);
        }
        self.write_regular(fd, &st, rel)
    }

    fn write_regular(&self, fd: OwnedFd, st: &rustix::fs::Stat, rel: &Path) -> Result<FileId> {
        let shown = self.shown(rel);
        let attrs = xattrs::of_fd(fd.as_fd()).at_path(&shown)?;
        let (uid, gid) = self.ctx.opts.owner(st.st_uid, st.st_gid);
        let size = st.st_size as u64;
        let header = FileHeader::regular(st.st_mode & PERM_MASK, uid, gid, size, attrs)
            .map_err(|e| at_entry(e, &shown.display()))?;
        let id =
            SourceRead::new(File::from(fd), size).write(self.ctx, &header, &shown.display())?;
        Counters::add(&self.ctx.counters.bytes, size);
        Ok(id)
    }

    fn symlink(&self, dirfd: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<FileId> {
        let shown = self.shown(rel);
        let target = rustix::fs::readlinkat(dirfd, name, Vec::new()).at_path(&shown)?;
        let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).at_path(&shown)?;
        // Symlinks cannot be opened for xattr calls; name the link through the directory
        // handle instead of re-resolving its path from the root.
        let xattr_path = if self.proc_fd {
            let mut p = format!("/proc/self/fd/{}/", dirfd.as_raw_fd()).into_bytes();
            p.extend_from_slice(name.to_bytes());
            PathBuf::from(OsStr::from_bytes(&p))
        } else {
            shown.clone()
        };
        let attrs = xattrs::of_link(&xattr_path).at_path(&shown)?;
        let (uid, gid) = self.ctx.opts.owner(st.st_uid, st.st_gid);
        let header = FileHeader::symlink(target.into_bytes(), uid, gid, attrs)
            .map_err(|e| at_entry(e, &shown.display()))?;
        let id = SourceRead::new(std::io::empty(), 0).write(self.ctx, &header, &shown.display())?;
        Counters::add(&self.ctx.counters.symlinks, 1);
        Ok(id)
    }
}

/// Open the directory `name` of `dirfd` without following a symlink.
fn open_dir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// How an unsupported file type is named in errors.
pub(crate) fn type_name(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}
