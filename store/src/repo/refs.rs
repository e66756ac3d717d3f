//! Refs: named pointers to commits, one small file each under `refs/`.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::Repo;
use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::id::{CommitId, ObjectId};
use crate::object::ObjectKind;

/// Longest ref name.
pub const MAX_REF_NAME: usize = 1024;

/// A validated ref name: `/`-separated components of ASCII letters, digits and `._-+@`,
/// none empty, none starting with `.`. Examples: `stable`, `os/x86_64/stable`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RefName(String);

impl RefName {
    /// Validate a ref name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |reason: &str| {
            Err(Error::invalid(
                format!("ref name '{}'", name.escape_debug()),
                reason,
            ))
        };
        if name.is_empty() || name.len() > MAX_REF_NAME {
            return bad("must be 1..=1024 bytes");
        }
        for comp in name.split('/') {
            if comp.is_empty() {
                return bad("empty path component");
            }
            if comp.starts_with('.') {
                return bad("a component may not start with '.'");
            }
            if !comp
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
            {
                return bad("only ASCII letters, digits and . _ - + @ are allowed, with / between components");
            }
        }
        Ok(RefName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RefName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RefName::new(s)
    }
}

const HEADS: &str = "refs/heads";
const REMOTES: &str = "refs/remotes";

/// Where a ref lives: a local branch (`refs/heads/NAME`) or a remote's ref as last pulled
/// (`refs/remotes/REMOTE/NAME`). Both namespaces are roots for fsck and prune.
fn space_dir(remote: Option<&str>) -> String {
    match remote {
        None => HEADS.to_owned(),
        Some(r) => format!("{REMOTES}/{r}"),
    }
}

/// Check a remote's name: one ref-name component (letters, digits, `._-+@`, not starting
/// with `.`), at most 64 bytes.
pub fn validate_remote_name(name: &str) -> Result<()> {
    if name.len() > 64 || name.contains('/') || RefName::new(name).is_err() {
        return Err(Error::invalid(
            format!("remote name '{}'", name.escape_debug()),
            "must be 1..=64 ASCII letters, digits or . _ - + @, not starting with '.'",
        ));
    }
    Ok(())
}

impl Repo {
    fn ref_path(&self, space: &str, name: &RefName) -> PathBuf {
        self.path().join(space).join(name.as_str())
    }

    /// The commit a branch points at, or `None` if the branch does not exist.
    pub fn read_ref(&self, name: &RefName) -> Result<Option<CommitId>> {
        self.read_ref_in(HEADS, name)
    }

    /// The commit `name` of `remote` pointed at when it was last pulled, or `None`.
    pub fn read_remote_ref(&self, remote: &str, name: &RefName) -> Result<Option<CommitId>> {
        validate_remote_name(remote)?;
        self.read_ref_in(&space_dir(Some(remote)), name)
    }

    fn read_ref_in(&self, space: &str, name: &RefName) -> Result<Option<CommitId>> {
        let path = self.ref_path(space, name);
        let parent = Path::new(space).join(name.as_str());
        let (dir, leaf) = (
            parent.parent().expect("has parent"),
            parent.file_name().expect("has name"),
        );
        let dir = match durable::open_dir_at(self.dir(), dir.to_string_lossy().as_ref()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e).at_path(&path),
        };
        match read_ref_at(dir.as_fd(), &leaf.to_string_lossy()) {
            Ok(id) => Ok(Some(id)),
            Err(RefFileError::Missing) => Ok(None),
            Err(RefFileError::Bad(reason)) => Err(Error::Repo {
                path: self.path().to_path_buf(),
                reason: format!("ref file {}: {reason}", path.display()),
            }),
        }
    }

    /// Point a branch at a commit (which must be present), atomically and durably.
    pub fn write_ref(&self, name: &RefName, commit: &CommitId) -> Result<()> {
        self.write_ref_in(HEADS, name, commit)
    }

    /// Record that `remote`'s `name` points at `commit` (which must be present), atomically
    /// and durably. `update pull` does this once the commit is complete and verified.
    pub fn write_remote_ref(&self, remote: &str, name: &RefName, commit: &CommitId) -> Result<()> {
        validate_remote_name(remote)?;
        self.write_ref_in(&space_dir(Some(remote)), name, commit)
    }

    fn write_ref_in(&self, space: &str, name: &RefName, commit: &CommitId) -> Result<()> {
        if !self.has_object(ObjectKind::Commit, &commit.0)? {
            return Err(Error::MissingObject {
                kind: ObjectKind::Commit,
                id: commit.0,
            });
        }
        let rel = Path::new(space).join(name.as_str());
        let parent = rel.parent().expect("has parent");
        let leaf = rel.file_name().and_then(|n| n.to_str()).expect("validated");
        let shown = self.ref_path(space, name);
        let dir = durable::mkdir_all_at(self.dir(), parent, &shown)?;
        durable::write_atomic(
            dir.as_fd(),
            leaf,
            format!("{commit}\n").as_bytes(),
            0o644,
            &shown,
        )
    }

    /// Delete a branch. Deleting a missing branch is an error.
    pub fn delete_ref(&self, name: &RefName) -> Result<()> {
        if !self.delete_ref_in(HEADS, name.as_str())? {
            return Err(Error::RefNotFound(name.to_string()));
        }
        Ok(())
    }

    /// Delete `remote`'s ref `name` (`REMOTE:NAME`). Deleting a missing ref is an error.
    pub fn delete_remote_ref(&self, remote: &str, name: &RefName) -> Result<()> {
        validate_remote_name(remote)?;
        if !self.delete_ref_in(&space_dir(Some(remote)), name.as_str())? {
            return Err(Error::RefNotFound(format!("{remote}:{name}")));
        }
        Ok(())
    }

    /// Delete every ref of `remote` (`update remote remove`); returns how many there were.
    pub fn delete_remote_refs(&self, remote: &str) -> Result<usize> {
        validate_remote_name(remote)?;
        let space = space_dir(Some(remote));
        let names = self.ref_files(&space)?;
        for (name, _) in &names {
            self.delete_ref_in(&space, name)?;
        }
        let remotes = self.path().join(REMOTES);
        match rustix::fs::unlinkat(self.dir(), space.as_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e).at_path(self.path().join(&space)),
        }
        let dir = durable::open_dir_at(self.dir(), REMOTES).at_path(&remotes)?;
        rustix::fs::fsync(&dir).at_path(&remotes)?;
        Ok(names.len())
    }

    /// Make `remote`'s refs mirror a summary's ref set: delete every ref of `remote` not in
    /// `listed`, then point each of `write` at its commit (each present). Deletions come
    /// first, so a ref `a` replaced upstream by `a/b` (or the reverse) makes room for the
    /// new one. Each file changes atomically and durably; a crash part way leaves a subset
    /// that the next pull completes. Returns the names deleted.
    pub fn mirror_remote_refs(
        &self,
        remote: &str,
        listed: &[RefName],
        write: &[(RefName, CommitId)],
    ) -> Result<Vec<String>> {
        validate_remote_name(remote)?;
        let space = space_dir(Some(remote));
        let listed: std::collections::BTreeSet<&str> = listed.iter().map(|n| n.as_str()).collect();
        let mut removed = Vec::new();
        for (name, _) in self.ref_files(&space)? {
            if !listed.contains(name.as_str()) && self.delete_ref_in(&space, &name)? {
                removed.push(name);
            }
        }
        for (name, commit) in write {
            self.write_ref_in(&space, name, commit)?;
        }
        Ok(removed)
    }

    /// Remove the ref file `space/name` (false if there is none), then the directories it
    /// leaves empty below `space` (so that a ref of their name can be written later), and
    /// fsync the directory that changed last.
    fn delete_ref_in(&self, space: &str, name: &str) -> Result<bool> {
        let rel = format!("{space}/{name}");
        match rustix::fs::unlinkat(self.dir(), rel.as_str(), AtFlags::empty()) {
            Ok(()) => {}
            // A directory of refs is not a ref.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::ISDIR) => return Ok(false),
            Err(e) => return Err(e).at_path(self.path().join(&rel)),
        }
        let mut parent = Path::new(&rel).parent();
        while let Some(dir) = parent.filter(|d| *d != Path::new(space)) {
            match rustix::fs::unlinkat(self.dir(), dir, AtFlags::REMOVEDIR) {
                Ok(()) => parent = dir.parent(),
                Err(Errno::NOTEMPTY | Errno::EXIST) => break,
                Err(e) => return Err(e).at_path(self.path().join(dir)),
            }
        }
        let changed = parent.unwrap_or(Path::new(space));
        let shown = self.path().join(changed);
        let fd = durable::open_dir_at(self.dir(), changed).at_path(&shown)?;
        rustix::fs::fsync(&fd).at_path(&shown)?;
        Ok(true)
    }

    /// Every remote's refs as last pulled, as `(remote, ref, commit)`, sorted.
    pub fn list_all_remote_refs(&self) -> Result<Vec<(String, RefName, CommitId)>> {
        let mut out = Vec::new();
        for (path, head) in self.ref_files(REMOTES)? {
            let Some((remote, name)) = path.split_once('/') else {
                continue;
            };
            let Ok(ref_name) = RefName::new(name) else {
                continue;
            };
            let id = head.map_err(|reason| Error::Repo {
                path: self.path().to_path_buf(),
                reason: format!("ref file {REMOTES}/{path}: {reason}"),
            })?;
            out.push((remote.to_owned(), ref_name, id));
        }
        Ok(out)
    }

    /// Every branch and the commit it points at, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(RefName, CommitId)>> {
        self.list_refs_in(HEADS)
    }

    /// Every ref of `remote` as last pulled, sorted by name.
    pub fn list_remote_refs(&self, remote: &str) -> Result<Vec<(RefName, CommitId)>> {
        validate_remote_name(remote)?;
        self.list_refs_in(&space_dir(Some(remote)))
    }

    fn list_refs_in(&self, space: &str) -> Result<Vec<(RefName, CommitId)>> {
        let mut out = Vec::new();
        for (name, head) in self.ref_files(space)? {
            let Ok(ref_name) = RefName::new(name.as_str()) else {
                continue;
            };
            let id = head.map_err(|reason| Error::Repo {
                path: self.path().to_path_buf(),
                reason: format!("ref file {space}/{name}: {reason}"),
            })?;
            out.push((ref_name, id));
        }
        Ok(out)
    }

    /// Every ref file below `under` (such as `refs` or `refs/heads`), named by its path
    /// below `under`, with the commit it names or why it cannot be read; sorted by name.
    /// Names starting with `.` (temp files of an atomic write) are skipped. fsck and
    /// prune use this to see every namespace, broken files included.
    pub(crate) fn ref_files(
        &self,
        under: &str,
    ) -> Result<Vec<(String, std::result::Result<CommitId, String>)>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let rel = if prefix.is_empty() {
                under.to_owned()
            } else {
                format!("{under}/{prefix}")
            };
            let shown = self.path().join(&rel);
            let fd = match durable::open_dir_at(self.dir(), &rel) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if prefix.is_empty() => continue,
                Err(e) => return Err(e).at_path(&shown),
            };
            for entry in rustix::fs::Dir::read_from(&fd).at_path(&shown)? {
                let entry = entry.at_path(&shown)?;
                let n = entry.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                let name = if prefix.is_empty() {
                    n.clone()
                } else {
                    format!("{prefix}/{n}")
                };
                if entry.file_type() == rustix::fs::FileType::Directory {
                    stack.push(name);
                } else {
                    let head = read_ref_at(fd.as_fd(), &n).map_err(|e| match e {
                        RefFileError::Missing => "vanished while being read".to_owned(),
                        RefFileError::Bad(reason) => reason,
                    });
                    out.push((name, head));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Resolve what a user typed: a branch name, `REMOTE:REF` (a remote's ref as last
    /// pulled), a full commit id, or a unique prefix (at least 4 hex digits) of a commit id
    /// present here.
    pub fn resolve_rev(&self, rev: &str) -> Result<CommitId> {
        if let Some((remote, name)) = rev.split_once(':') {
            let name = RefName::new(name)?;
            return self
                .read_remote_ref(remote, &name)?
                .ok_or_else(|| Error::UnknownRev(rev.to_owned()));
        }
        if let Ok(name) = RefName::new(rev) {
            if let Some(id) = self.read_ref(&name)? {
                return Ok(id);
            }
        }
        let is_hex = rev.len() >= 4 && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_hex {
            return Err(Error::UnknownRev(rev.to_owned()));
        }
        if let Ok(id) = rev.parse::<ObjectId>() {
            return if self.has_object(ObjectKind::Commit, &id)? {
                Ok(CommitId(id))
            } else {
                Err(Error::UnknownRev(rev.to_owned()))
            };
        }
        let Some(fd) = self.fanout_dir(&rev[..2])? else {
            return Err(Error::UnknownRev(rev.to_owned()));
        };
        let shown = self.path().join("objects").join(&rev[..2]);
        let mut found = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).at_path(&shown)? {
            let entry = entry.at_path(&shown)?;
            let n = entry.file_name().to_string_lossy();
            if let Some(rest) = n.strip_suffix(".commit") {
                if rest.starts_with(&rev[2..]) {
                    if let Ok(id) = format!("{}{rest}", &rev[..2]).parse::<ObjectId>() {
                        found.push(id);
                    }
                }
            }
        }
        match found.len() {
            0 => Err(Error::UnknownRev(rev.to_owned())),
            1 => Ok(CommitId(found[0])),
            count => Err(Error::AmbiguousRev {
                rev: rev.to_owned(),
                count,
            }),
        }
    }
}

enum RefFileError {
    Missing,
    Bad(String),
}

/// Read one ref file: a regular file holding 64 lowercase hex digits and a newline.
/// Opened without following a symlink and without blocking, so a FIFO cannot hang us.
fn read_ref_at(dir: BorrowedFd<'_>, name: &str) -> std::result::Result<CommitId, RefFileError> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(RefFileError::Missing),
        Err(e) => return Err(RefFileError::Bad(format!("cannot open: {e}"))),
    };
    let bad = |s: String| RefFileError::Bad(s);
    let st = rustix::fs::fstat(&fd).map_err(|e| bad(format!("cannot stat: {e}")))?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    // A directory of refs (`a/` of `a/b`) is not the ref `a`.
    if kind == rustix::fs::FileType::Directory {
        return Err(RefFileError::Missing);
    }
    if kind != rustix::fs::FileType::RegularFile {
        return Err(bad("not a regular file".into()));
    }
    let mut buf = [0u8; 66];
    let n = rustix::io::read(&fd, &mut buf).map_err(|e| bad(format!("cannot read: {e}")))?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| t.parse::<ObjectId>().ok())
        .map(CommitId)
        .ok_or_else(|| bad("does not hold a commit id".into()))
}
