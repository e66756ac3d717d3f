//! Opening files beneath the root directory handle, and their validators (ETag, Last-Modified).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The served directory, opened once at startup; every lookup is relative to this handle.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

/// A regular file opened for serving, with the metadata the response needs.
#[derive(Debug)]
pub struct OpenFile {
    /// The open file, read with positioned reads.
    pub file: File,
    /// Size in bytes at open time.
    pub size: u64,
    /// Strong validator from inode, size and modification time.
    pub etag: String,
    /// Modification time, for `Last-Modified` (whole seconds on the wire).
    pub modified: SystemTime,
}

const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    // A FIFO planted in the root must not block the open.
    .union(OFlags::NONBLOCK);

impl Root {
    /// Opens `path` as the served root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { dir })
    }

    /// Opens the regular file at `rel` (already validated by [`crate::path::relative_path`]).
    ///
    /// Returns `Ok(None)` for anything that is not a regular file inside the root: missing,
    /// a directory, a device, or reached through a symlink that leaves the root.
    pub fn open_file(&self, rel: &Path) -> io::Result<Option<OpenFile>> {
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        let fd = match self.open_beneath(rel) {
            Ok(fd) => fd,
            Err(e) if is_not_found(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Ok(None);
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime_ns = modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let etag = format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.size(), mtime_ns);
        Ok(Some(OpenFile {
            file,
            size: meta.size(),
            etag,
            modified,
        }))
    }

    /// `openat2(RESOLVE_BENEATH)`: symlinks inside the root work, any escape fails with EXDEV.
    /// Kernels without openat2 fall back to a walk that follows no symlink at all.
    fn open_beneath(&self, rel: &Path) -> rustix::io::Result<OwnedFd> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match openat2(&self.dir, rel, FILE_FLAGS, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => self.open_nofollow(rel),
            other => other,
        }
    }

    fn open_nofollow(&self, rel: &Path) -> rustix::io::Result<OwnedFd> {
        let mut names = rel.components().peekable();
        let mut dir: Option<OwnedFd> = None;
        while let Some(component) = names.next() {
            let Component::Normal(name) = component else {
                return Err(Errno::NOENT);
            };
            let base = match &dir {
                Some(fd) => fd.as_fd(),
                None => self.dir.as_fd(),
            };
            let last = names.peek().is_none();
            let flags = if last {
                FILE_FLAGS | OFlags::NOFOLLOW
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let fd = openat(base, name, flags, Mode::empty())?;
            if last {
                return Ok(fd);
            }
            dir = Some(fd);
        }
        Err(Errno::NOENT)
    }
}

/// Errors that mean "nothing servable here" rather than a server fault.
fn is_not_found(e: Errno) -> bool {
    matches!(
        e,
        Errno::NOENT
            | Errno::NOTDIR
            | Errno::LOOP
            | Errno::XDEV
            | Errno::ACCESS
            | Errno::NAMETOOLONG
            | Errno::ISDIR
    )
}

#[cfg(test)]
mod tests {
    use super::Root;
    use std::path::Path;

    #[test]
    fn nofollow_fallback_refuses_every_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"f").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
        let root = Root::open(&root).unwrap();
        assert!(root.open_nofollow(Path::new("sub/f")).is_ok());
        assert!(root.open_nofollow(Path::new("escape")).is_err());
        assert!(root.open_nofollow(Path::new("link/f")).is_err());
        assert!(root.open_file(Path::new("escape")).unwrap().is_none());
        assert!(root.open_file(Path::new("sub")).unwrap().is_none());
        assert!(root.open_file(Path::new("sub/f")).unwrap().is_some());
    }
}
