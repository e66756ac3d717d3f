//! Writing into the merged `/etc`: real copies (never hardlinks) of files, symlinks and
//! whole directories with their permissions, owner and extended attributes, and removing
//! entries. Every write is relative to a directory handle: files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, directories are entered with `O_NOFOLLOW`, owners of
//! symlinks are set with `AT_SYMLINK_NOFOLLOW`, so nothing is ever written through a
//! symlink.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid, XattrFlags};
use rustix::io::Errno;

use store::object::FileHasher;

use super::node::{self, Kind, Loc, Meta, Xattrs};
use super::Expected;
use crate::error::{Error, IoResultExt, Result};

/// Entries that were not copied: (path as the booted system sees it, why).
pub(super) type Skipped = Vec<(String, String)>;

/// Where a copy goes: a directory handle of the merged tree and its path for messages.
#[derive(Clone, Copy)]
pub(super) struct Dest<'a> {
    /// The directory to create the entry in.
    pub dir: BorrowedFd<'a>,
    /// Its path, for messages.
    pub shown: &'a Path,
}

/// Which tree a copy reads: its name for messages, and for the new defaults the object
/// ids their files must hash to.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    /// `/usr/etc` or `/etc`, named in the reason a special file is skipped.
    pub side: &'a str,
    /// Files of this tree are hashed while copied and must match.
    pub expected: Option<&'a Expected>,
}

/// Copy `src` into `dst` under the same name: a file's bytes, a symlink's target, a
/// directory with everything below it. Special files are left out and listed in
/// `skipped` under `report_path`, named by `from.side` in the reason.
pub(super) fn copy_entry(
    src: Loc<'_>,
    dst: Dest<'_>,
    report_path: &str,
    from: Source<'_>,
    skipped: &mut Skipped,
    depth: usize,
) -> Result<()> {
    let dst_shown = dst.shown.join(src.name);
    match src.meta.kind {
        Kind::File => copy_file(src, dst.dir, &dst_shown, report_path, from.expected),
        Kind::Symlink => copy_symlink(src, dst.dir, &dst_shown),
        Kind::Dir => {
            node::check_depth(depth, src.shown)?;
            let dir = node::open_dir(src.dir, src.name, src.shown)?;
            let attrs = node::xattrs_fd(dir.as_fd(), src.shown)?;
            let to = make_dir(dst.dir, src.name, &dst_shown)?;
            copy_children(
                dir.as_fd(),
                src.shown,
                Dest {
                    dir: to.as_fd(),
                    shown: &dst_shown,
                },
                report_path,
                from,
                skipped,
                depth + 1,
            )?;
            set_meta(to.as_fd(), &src.meta, &attrs, &dst_shown)
        }
        Kind::Special(what) => {
            skipped.push((
                report_path.to_string(),
                format!(
                    "{what} in {}: special files are not copied into a deployment",
                    from.side
                ),
            ));
            Ok(())
        }
    }
}

/// Copy every entry of the directory `dir` into `to`.
pub(super) fn copy_children(
    dir: BorrowedFd<'_>,
    from_shown: &Path,
    to: Dest<'_>,
    report_path: &str,
    from: Source<'_>,
    skipped: &mut Skipped,
    depth: usize,
) -> Result<()> {
    node::check_depth(depth, from_shown)?;
    for name in node::list(dir, from_shown)? {
        let shown = from_shown.join(&name);
        // Vanished since the listing: nothing to copy.
        let Some(meta) = node::lstat(dir, &name, &shown)? else {
            continue;
        };
        let src = Loc {
            dir,
            name: &name,
            shown: &shown,
            meta,
        };
        let path = format!("{report_path}/{}", name.to_string_lossy());
        copy_entry(src, to, &path, from, skipped, depth)?;
    }
    Ok(())
}

/// Create the directory `name` in `dir` (private until its metadata is set) and open it.
pub(super) fn make_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).at_path(shown)?;
    node::open_dir(dir, name, shown)
}

fn copy_file(
    src: Loc<'_>,
    dir: BorrowedFd<'_>,
    shown: &Path,
    report_path: &str,
    expected: Option<&Expected>,
) -> Result<()> {
    let mut from = node::open_file(src.dir, src.name, src.shown)?;
    let attrs = node::xattrs_fd(from.as_fd(), src.shown)?;
    let to = rustix::fs::openat(
        dir,
        src.name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .at_path(shown)?;
    let mut to = File::from(to);
    match expected {
        // A file of the new defaults shares its inode with a store object: hash the very
        // bytes copied and compare them with the object id the commit names.
        Some(expected) => {
            copy_verified(&mut from, &mut to, src.shown, shown, report_path, expected)?
        }
        // `io::copy` between two files uses copy_file_range: a real copy (at most a
        // copy-on-write reflink), never a hardlink into the store.
        None => {
            std::io::copy(&mut from, &mut to).at_path(shown)?;
        }
    }
    set_meta(to.as_fd(), &src.meta, &attrs, shown)
}

/// Copy `from` to `to`, hashing the bytes as a file object with the header the commit
/// gives `report_path`; a mismatch is an [`Error::CorruptObject`].
fn copy_verified(
    from: &mut File,
    to: &mut File,
    from_shown: &Path,
    shown: &Path,
    report_path: &str,
    expected: &Expected,
) -> Result<()> {
    let tree_path = format!("/usr{report_path}");
    let Some((id, header)) = expected.get(report_path) else {
        return Err(Error::ChangedDuringMerge {
            path: from_shown.to_path_buf(),
            what: "not a file of the commit's /usr/etc; it changed after the checkout",
        });
    };
    let mut hasher = FileHasher::new(header);
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).at_path(from_shown)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        to.write_all(&buf[..n]).at_path(shown)?;
    }
    let reason = if total != header.size {
        format!("{total} bytes, the object's header says {}", header.size)
    } else if hasher.finish() != *id {
        "content does not hash to its id".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::CorruptObject {
        id: *id,
        path: tree_path,
        reason,
    })
}

fn copy_symlink(src: Loc<'_>, dir: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    let target = rustix::fs::readlinkat(src.dir, src.name, Vec::new()).at_path(src.shown)?;
    let attrs = node::xattrs_link(src.dir, src.name, src.shown)?;
    rustix::fs::symlinkat(target.as_c_str(), dir, src.name).at_path(shown)?;
    rustix::fs::chownat(
        dir,
        src.name,
        Some(Uid::from_raw(src.meta.uid)),
        Some(Gid::from_raw(src.meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .at_path(shown)?;
    if attrs.is_empty() {
        return Ok(());
    }
    if let Some(p) = node::proc_path(dir, src.name) {
        for (name, value) in &attrs {
            let r = rustix::fs::lsetxattr(&p, OsStr::from_bytes(name), value, XattrFlags::empty());
            skip_unsupported(r).at_path(shown)?;
        }
    }
    Ok(())
}

/// Give a freshly created file or directory the owner, permissions and extended
/// attributes of `meta`/`attrs`. The owner goes first: `chown` clears set-id bits and file
/// capabilities. Attributes the kernel gave the new entry (a security label) stay.
pub(super) fn set_meta(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    attrs: &Xattrs,
    shown: &Path,
) -> Result<()> {
    rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .at_path(shown)?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.perm)).at_path(shown)?;
    for (name, value) in attrs {
        let r = rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty());
        skip_unsupported(r).at_path(shown)?;
    }
    Ok(())
}

/// [`set_meta`] on an existing entry: extended attributes `attrs` lacks are removed first.
pub(super) fn reset_meta(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    attrs: &Xattrs,
    shown: &Path,
) -> Result<()> {
    for (name, _) in node::xattrs_fd(fd, shown)? {
        if !attrs.iter().any(|(n, _)| *n == name) {
            match rustix::fs::fremovexattr(fd, OsStr::from_bytes(&name)) {
                Err(Errno::NODATA) => {}
                r => skip_unsupported(r).at_path(shown)?,
            }
        }
    }
    set_meta(fd, meta, attrs, shown)
}

/// An extended attribute the destination filesystem cannot hold is dropped silently.
fn skip_unsupported(r: rustix::io::Result<()>) -> rustix::io::Result<()> {
    match r {
        Err(Errno::NOTSUP) => Ok(()),
        r => r,
    }
}

/// Remove `name` from `dir` with everything below it, if it exists.
pub(super) fn remove_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    depth: usize,
) -> Result<()> {
    let Some(meta) = node::lstat(dir, name, shown)? else {
        return Ok(());
    };
    if meta.kind == Kind::Dir {
        node::check_depth(depth, shown)?;
        let sub = node::open_dir(dir, name, shown)?;
        for child in node::list(sub.as_fd(), shown)? {
            remove_entry(sub.as_fd(), &child, &shown.join(&child), depth + 1)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).at_path(shown)
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).at_path(shown)
    }
}
