//! Refs: named pointers to commits, one small file each under `refs/`.

use std::fmt;
use std::os::fd::AsFd;
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

impl Repo {
    fn ref_path(&self, name: &RefName) -> PathBuf {
        self.path().join(HEADS).join(name.as_str())
    }

    /// The commit a branch points at, or `None` if the branch does not exist.
    pub fn read_ref(&self, name: &RefName) -> Result<Option<CommitId>> {
        let path = self.ref_path(name);
        let rel = format!("{HEADS}/{name}");
        let fd = match rustix::fs::openat(
            self.dir(),
            rel.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::ISDIR) => return Ok(None),
            Err(e) => return Err(e).at_path(&path),
        };
        let mut buf = [0u8; 66];
        let n = rustix::io::read(&fd, &mut buf).at_path(&path)?;
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
        let id = text
            .strip_suffix('\n')
            .and_then(|t| t.parse::<ObjectId>().ok())
            .ok_or_else(|| Error::Repo {
                path: self.path().to_path_buf(),
                reason: format!("ref file {} does not hold a commit id", path.display()),
            })?;
        Ok(Some(CommitId(id)))
    }

    /// Point a branch at a commit (which must be present), atomically and durably.
    pub fn write_ref(&self, name: &RefName, commit: &CommitId) -> Result<()> {
        if !self.has_object(ObjectKind::Commit, &commit.0)? {
            return Err(Error::MissingObject {
                kind: ObjectKind::Commit,
                id: commit.0,
            });
        }
        let rel = Path::new(HEADS).join(name.as_str());
        let parent = rel.parent().expect("has parent");
        let leaf = rel.file_name().and_then(|n| n.to_str()).expect("validated");
        let shown = self.ref_path(name);
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
        let rel = format!("{HEADS}/{name}");
        match rustix::fs::unlinkat(self.dir(), rel.as_str(), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(Error::RefNotFound(name.to_string())),
            Err(e) => return Err(e).at_path(self.ref_path(name)),
        }
        let heads = durable::open_dir_at(self.dir(), HEADS).at_path(self.path().join(HEADS))?;
        rustix::fs::fsync(&heads).at_path(self.path().join(HEADS))
    }

    /// Every branch and the commit it points at, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(RefName, CommitId)>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let rel = if prefix.is_empty() {
                HEADS.to_owned()
            } else {
                format!("{HEADS}/{prefix}")
            };
            let shown = self.path().join(&rel);
            let fd = match durable::open_dir_at(self.dir(), &rel) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e).at_path(&shown),
            };
            for entry in rustix::fs::Dir::read_from(&fd).at_path(&shown)? {
                let entry = entry.at_path(&shown)?;
                let n = entry.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                let full = if prefix.is_empty() {
                    n
                } else {
                    format!("{prefix}/{n}")
                };
                if entry.file_type() == rustix::fs::FileType::Directory {
                    stack.push(full);
                } else if let Ok(name) = RefName::new(full) {
                    if let Some(id) = self.read_ref(&name)? {
                        out.push((name, id));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Resolve what a user typed: a branch name, a full commit id, or a unique prefix
    /// (at least 4 hex digits) of a commit id present here.
    pub fn resolve_rev(&self, rev: &str) -> Result<CommitId> {
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
