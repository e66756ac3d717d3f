//! Reading all extended attributes of a file, directory or symlink, sorted: as
//! [`Xattrs`] for source trees (commit) and bare objects (read back, fsck), and as plain
//! pairs for callers that copy them as they are (the deploy engine's `/etc` merge).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::Errno;

use crate::object::Xattrs;

/// All extended attributes of an open file or directory, sorted.
pub(crate) fn of_fd(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
    validated(pairs_fd(fd)?)
}

/// All extended attributes of the entry at `path`, not following a symlink there.
pub(crate) fn of_link(path: &Path) -> io::Result<Xattrs> {
    validated(pairs_link(path)?)
}

fn validated(attrs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<Xattrs> {
    Xattrs::new(attrs).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// The (name, value) pairs of an open file or directory, sorted by name, unvalidated.
/// A filesystem without xattrs has none.
pub fn pairs_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    collect(
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
    )
}

/// The (name, value) pairs of the entry at `path`, not following a symlink there, sorted
/// by name, unvalidated.
pub fn pairs_link(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    collect(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

fn collect(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&CStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match grow_read(&list) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut attrs = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).expect("split on NUL");
        match grow_read(&|buf: &mut [u8]| get(&cname, buf)) {
            Ok(v) => attrs.push((name.to_vec(), v)),
            // Removed between list and get.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    attrs.sort();
    Ok(attrs)
}

fn grow_read(f: &dyn Fn(&mut [u8]) -> rustix::io::Result<usize>) -> rustix::io::Result<Vec<u8>> {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if size < 1 << 20 => size *= 4,
            Err(e) => return Err(e),
        }
    }
}
