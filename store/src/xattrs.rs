//! Reading all extended attributes of a file, directory or symlink, sorted, as
//! [`Xattrs`]: used for source trees (commit) and bare objects (read back, fsck).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::Errno;

use crate::object::Xattrs;

/// All extended attributes of an open file or directory, sorted.
pub(crate) fn of_fd(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
    collect(
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
    )
}

/// All extended attributes of the entry at `path`, not following a symlink there.
pub(crate) fn of_link(path: &Path) -> io::Result<Xattrs> {
    collect(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

fn collect(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&CStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Xattrs> {
    let names = match grow_read(&list) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Xattrs::empty()),
        Err(e) => return Err(e.into()),
    };
    if names.is_empty() {
        return Ok(Xattrs::empty());
    }
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
    Xattrs::new(attrs).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
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
