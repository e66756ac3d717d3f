//! Directory-handle-relative file primitives: the one atomic-publish primitive (write a
//! temp file, fsync, rename, fsync the directory), directory creation that never follows
//! a symlink, and recursive removal. Everything here works relative to an open directory.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{IoResultExt, Result};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file that no other process or thread will pick.
pub fn temp_name(prefix: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut r = [0u8; 4];
    // A failure of the system RNG only weakens uniqueness; pid and counter remain.
    let _ = getrandom::fill(&mut r);
    format!("{prefix}{}-{n}-{}", std::process::id(), hex::encode(r))
}

/// Open the directory at `path` (for `*at` calls and fsyncs relative to it).
pub fn open_dir(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Open a directory below `dir` without following a symlink at the last component.
pub fn open_dir_at<P: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: P,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Create (if needed) and open each component of `rel` below `dir`, never following a
/// symlink. `shown` is the path used in error messages.
pub fn mkdir_all_at(dir: BorrowedFd<'_>, rel: &Path, shown: &Path) -> Result<OwnedFd> {
    let mut cur = rustix::io::fcntl_dupfd_cloexec(dir, 0).at_path(shown)?;
    for comp in rel.components() {
        let name = comp.as_os_str().to_str().unwrap_or_default();
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).at_path(shown),
        }
        cur = open_dir_at(cur.as_fd(), name).at_path(shown)?;
    }
    Ok(cur)
}

/// Publish `data` as `dir/name` atomically and durably: temp file, fsync, rename, fsync dir.
/// A crash leaves either the old file or the new one, never a partial one.
pub fn write_atomic(
    dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
    mode: u32,
    shown: &Path,
) -> Result<()> {
    let tmp = temp_name(".tmp-");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
    )
    .at_path(shown)?;
    let started = std::time::Instant::now();
    let result = (|| {
        let mut f = std::fs::File::from(fd);
        f.write_all(data)?;
        tracing::trace!(path = %shown.display(), bytes = data.len(), "fsync file");
        f.sync_all()?;
        tracing::trace!(path = %shown.display(), from = %tmp, "rename");
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        tracing::trace!(path = %shown.display(), "fsync directory");
        rustix::fs::fsync(dir)?;
        Ok::<(), std::io::Error>(())
    })();
    tracing::debug!(
        path = %shown.display(),
        bytes = data.len(),
        ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "atomic write: fsync, rename, fsync directory"
    );
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result.at_path(shown)
}

/// Remove `name` below `dir` and everything in it, never following symlinks.
/// A missing `name` is not an error.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &str) -> rustix::io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    // Iterative, so a deep hostile tree cannot overflow the stack.
    let mut stack: Vec<(OwnedFd, CString)> = vec![(
        open_dir_at(dir, name)?,
        CString::new(name).unwrap_or_default(),
    )];
    while let Some((fd, _)) = stack.last() {
        let mut subdir = None;
        for entry in rustix::fs::Dir::read_from(fd)? {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let n = entry.file_name().to_owned();
            if entry.file_type() == rustix::fs::FileType::Directory {
                subdir = Some(n);
                break;
            }
            match rustix::fs::unlinkat(fd, n.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    subdir = Some(n);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(n) = subdir {
            let child = rustix::fs::openat(
                fd,
                n.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            stack.push((child, n));
        } else {
            let (_, own) = stack.pop().expect("non-empty");
            let parent = stack.last().map_or(dir, |(f, _)| f.as_fd());
            rustix::fs::unlinkat(parent, own.as_c_str(), AtFlags::REMOVEDIR)?;
        }
    }
    Ok(())
}

/// Open the file `name` below `dir` for reading, never following a symlink at it.
pub fn open_read_at<P: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: P,
) -> rustix::io::Result<std::fs::File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// Read the whole file `name` below `dir`, never following a symlink at it.
pub fn read_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut open_read_at(dir, name)?, &mut buf)?;
    Ok(buf)
}
