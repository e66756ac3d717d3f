//! Reading one entry of a tree without ever following a symlink: `lstat`, opening
//! directories and regular files with `O_NOFOLLOW`, listing, extended attributes, and
//! comparing two entries (optionally with everything below them).
//!
//! Every function takes a directory handle and a single validated name; the path given
//! alongside is only for error messages.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, IoResultExt, Result};

/// How deep a tree may nest directories before the merge refuses it.
pub(super) const MAX_DEPTH: usize = 256;

/// Block size of content comparison.
const BLOCK: usize = 64 * 1024;

/// Extended attributes of one entry, sorted by name.
pub(super) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device node, FIFO or socket, named for messages.
    Special(&'static str),
}

impl Kind {
    /// The type as named in messages ("a file", "a directory", ...).
    pub(super) fn article(self) -> &'static str {
        match self {
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Special(_) => "a special file",
        }
    }
}

/// What `lstat` says about an entry, reduced to what the merge compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// Entry type.
    pub kind: Kind,
    /// Permission bits including set-id and sticky bits (`st_mode & 0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files; symlinks: target length).
    pub size: u64,
    /// Device number of a device node, else 0.
    pub rdev: u64,
}

impl Meta {
    fn of(st: &Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Special("FIFO"),
            FileType::Socket => Kind::Special("socket"),
            FileType::CharacterDevice => Kind::Special("character device"),
            FileType::BlockDevice => Kind::Special("block device"),
            _ => Kind::Special("file of unknown type"),
        };
        Meta {
            kind,
            perm: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            rdev: st.st_rdev,
        }
    }

    /// Same type, permissions, owner and device number: everything `lstat` shows that the
    /// merge cares about, except size and content.
    fn same_header(&self, other: &Meta) -> bool {
        self.kind == other.kind
            && self.perm == other.perm
            && self.uid == other.uid
            && self.gid == other.gid
            && self.rdev == other.rdev
    }
}

/// Refuse anything that is not a single, normal path component.
pub(super) fn check_name(name: &OsStr, shown: &Path) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::invalid(
            format!("entry name {:?} in {}", name, shown.display()),
            "not a single path component",
        ));
    }
    Ok(())
}

/// Refuse trees nested deeper than [`MAX_DEPTH`].
pub(super) fn check_depth(depth: usize, shown: &Path) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(
            shown.display().to_string(),
            format!("nested deeper than {MAX_DEPTH} directories"),
        ));
    }
    Ok(())
}

/// The names of a relative path, each checked with [`check_name`].
pub(super) fn components<'p>(rel: &'p Path, shown: &Path) -> Result<Vec<&'p OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => check_name(n, shown).map(|()| n),
            _ => Err(Error::invalid(
                format!("path {}", rel.display()),
                "not a plain relative path",
            )),
        })
        .collect()
}

/// Open the directory at an absolute or caller-given path: the edge of the merge, the only
/// place a symlink may be followed.
pub(super) fn open_root(path: &Path) -> Result<OwnedFd> {
    store::durable::open_dir(path).at_path(path)
}

/// `lstat` of `name` in `dir`; `None` if there is nothing.
pub(super) fn lstat(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Option<Meta>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Meta::of(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e).at_path(shown),
    }
}

/// `fstat` of an open handle.
pub(super) fn fstat(fd: BorrowedFd<'_>, shown: &Path) -> Result<Meta> {
    rustix::fs::fstat(fd).map(|st| Meta::of(&st)).at_path(shown)
}

/// Open the directory `name` in `dir`, failing on a symlink or anything but a directory.
pub(super) fn open_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<OwnedFd> {
    store::durable::open_dir_at(dir, name).at_path(shown)
}

/// Open the regular file `name` in `dir` for reading, failing on a symlink; a FIFO swapped
/// in since the `lstat` neither blocks the open nor passes the type check.
pub(super) fn open_file(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(shown)?;
    if fstat(fd.as_fd(), shown)?.kind != Kind::File {
        return Err(Error::ChangedDuringMerge {
            path: shown.to_path_buf(),
            what: "changed from a regular file while the merge read it",
        });
    }
    Ok(File::from(fd))
}

/// Walk `rel` down from `root` without following symlinks: the directory there, or `None`
/// if some component is missing or is not a real directory.
pub(super) fn lookup_dir(
    root: BorrowedFd<'_>,
    shown: &Path,
    rel: &Path,
) -> Result<Option<OwnedFd>> {
    let mut cur = rustix::fs::openat(
        root,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(shown)?;
    let mut shown = shown.to_path_buf();
    for name in components(rel, &shown)? {
        shown.push(name);
        match lstat(cur.as_fd(), name, &shown)? {
            Some(m) if m.kind == Kind::Dir => cur = open_dir(cur.as_fd(), name, &shown)?,
            _ => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// The names in a directory, sorted, without `.` and `..`, each checked.
pub(super) fn list(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<OsString>> {
    let mut d = Dir::read_from(dir).at_path(shown)?;
    let mut names = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.at_path(shown)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        check_name(&name, shown)?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Whether `/proc/self/fd` can name an entry relative to a directory handle (the only way
/// to reach a symlink's own extended attributes without resolving a path from the root).
fn proc_fd() -> bool {
    static PROC: OnceLock<bool> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // path meant: the system's procfs
    *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// `/proc/self/fd/DIR/NAME`, for the `l*xattr` calls on a symlink.
pub(super) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> Option<PathBuf> {
    if !proc_fd() {
        return None;
    }
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    Some(PathBuf::from(OsString::from_vec(p)))
}

/// All extended attributes of an open file or directory.
pub(super) fn xattrs_fd(fd: BorrowedFd<'_>, shown: &Path) -> Result<Xattrs> {
    store::xattrs::pairs_fd(fd).at_path(shown)
}

/// All extended attributes of the symlink `name` in `dir` (none when `/proc` is missing).
pub(super) fn xattrs_link(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Xattrs> {
    let Some(p) = proc_path(dir, name) else {
        return Ok(Vec::new());
    };
    store::xattrs::pairs_link(&p).at_path(shown)
}

/// Fill `buf` as far as the file goes.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Byte-for-byte equality of two open files of `size` bytes (as `lstat` said), in reads
/// of at most [`BLOCK`] bytes.
fn same_content(
    a: &mut File,
    a_shown: &Path,
    b: &mut File,
    b_shown: &Path,
    size: u64,
) -> Result<bool> {
    // Most of /etc is far smaller than a block; one more byte sees a file that grew.
    let block = usize::try_from(size).map_or(BLOCK, |s| s.saturating_add(1).min(BLOCK));
    let mut ba = vec![0u8; block];
    let mut bb = vec![0u8; block];
    loop {
        let na = read_full(a, &mut ba).at_path(a_shown)?;
        let nb = read_full(b, &mut bb).at_path(b_shown)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < block {
            return Ok(true);
        }
    }
}

/// One entry to compare or copy: its directory, its name, where it is for messages, and
/// its `lstat`.
#[derive(Clone, Copy)]
pub(super) struct Loc<'a> {
    /// The directory holding it.
    pub dir: BorrowedFd<'a>,
    /// Its name there.
    pub name: &'a OsStr,
    /// Its full path, for messages.
    pub shown: &'a Path,
    /// What `lstat` said.
    pub meta: Meta,
}

/// Whether two entries are the same: type, permissions, owner, extended attributes, and
/// content (regular files), target (symlinks) or device number (special files). With
/// `deep`, two directories must also hold the same entries, compared the same way;
/// without it only the directories themselves are compared.
pub(super) fn same_entry(a: Loc<'_>, b: Loc<'_>, deep: bool, depth: usize) -> Result<bool> {
    if !a.meta.same_header(&b.meta) {
        return Ok(false);
    }
    match a.meta.kind {
        Kind::Special(_) => Ok(true),
        Kind::Symlink => {
            let ta = rustix::fs::readlinkat(a.dir, a.name, Vec::new()).at_path(a.shown)?;
            let tb = rustix::fs::readlinkat(b.dir, b.name, Vec::new()).at_path(b.shown)?;
            Ok(ta == tb
                && xattrs_link(a.dir, a.name, a.shown)? == xattrs_link(b.dir, b.name, b.shown)?)
        }
        Kind::File => {
            if a.meta.size != b.meta.size {
                return Ok(false);
            }
            let mut fa = open_file(a.dir, a.name, a.shown)?;
            let mut fb = open_file(b.dir, b.name, b.shown)?;
            if xattrs_fd(fa.as_fd(), a.shown)? != xattrs_fd(fb.as_fd(), b.shown)? {
                return Ok(false);
            }
            same_content(&mut fa, a.shown, &mut fb, b.shown, a.meta.size)
        }
        Kind::Dir => {
            let da = open_dir(a.dir, a.name, a.shown)?;
            let db = open_dir(b.dir, b.name, b.shown)?;
            if xattrs_fd(da.as_fd(), a.shown)? != xattrs_fd(db.as_fd(), b.shown)? {
                return Ok(false);
            }
            if !deep {
                return Ok(true);
            }
            same_children(da.as_fd(), a.shown, db.as_fd(), b.shown, depth + 1)
        }
    }
}

/// Whether two directories hold the same entries, compared deeply.
fn same_children(
    da: BorrowedFd<'_>,
    a_shown: &Path,
    db: BorrowedFd<'_>,
    b_shown: &Path,
    depth: usize,
) -> Result<bool> {
    check_depth(depth, a_shown)?;
    let names = list(da, a_shown)?;
    if names != list(db, b_shown)? {
        return Ok(false);
    }
    for name in &names {
        let (sa, sb) = (a_shown.join(name), b_shown.join(name));
        let (Some(ma), Some(mb)) = (lstat(da, name, &sa)?, lstat(db, name, &sb)?) else {
            return Ok(false);
        };
        let la = Loc {
            dir: da,
            name,
            shown: &sa,
            meta: ma,
        };
        let lb = Loc {
            dir: db,
            name,
            shown: &sb,
            meta: mb,
        };
        if !same_entry(la, lb, true, depth)? {
            return Ok(false);
        }
    }
    Ok(true)
}
