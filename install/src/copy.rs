//! Put a commit of a local repository into the new sysroot's (bare) repository.
//!
//! A bare source on the same filesystem gives its file objects by hardlink: a bare object
//! is already the file a checkout links to (content, mode, owner, xattrs), and objects are
//! never changed in place, so the new repository can share the inode. An archive source
//! (or another filesystem, or a kernel that refuses the link) gives them by unpacking each
//! object through a transaction, which hashes it on the way. Directory listings, directory
//! metadata, the commit and its signatures are small and always rewritten.

use std::collections::HashSet;
use std::path::Path;

use rustix::fs::AtFlags;
use rustix::io::Errno;
use store::object::ObjectKind;
use store::repo::FileContent;
use store::walk::{Node, WalkOptions, Walker};
use store::{CommitId, FileId, Repo, RepoMode};

use crate::error::{Error, IoResultExt, Result};

/// How the file objects of a commit arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Hardlinked from the source repository.
    pub linked: u64,
    /// Unpacked (archive source) or copied (other filesystem).
    pub written: u64,
    /// Bytes of file content in the commit.
    pub bytes: u64,
}

/// Copy `commit` of `src` with everything it names into `dst` (a bare repository).
pub fn copy_commit(src: &Repo, dst: &Repo, commit: &CommitId) -> Result<CopyStats> {
    let mut stats = CopyStats::default();
    let mut try_link = src.mode() == RepoMode::Bare && dst.mode() == RepoMode::Bare;
    let mut seen: HashSet<FileId> = HashSet::new();
    let txn = dst.begin()?;
    for e in Walker::commit(src, commit, WalkOptions::default())? {
        let e = e?;
        match e.node {
            Node::Dir { tree, meta_id, .. } => {
                let t = src.read_dirtree(&tree)?;
                let m = src.read_dirmeta(&meta_id)?;
                if txn.write_dirtree(&t)? != tree || txn.write_dirmeta(&m)? != meta_id {
                    return Err(Error::invalid(
                        format!("directory /{}", e.path),
                        "its listing does not re-encode to its id",
                    ));
                }
            }
            Node::File { id, .. } => {
                if !seen.insert(id) {
                    continue;
                }
                if try_link {
                    match link_object(src, dst, &id) {
                        Ok(true) => {
                            stats.linked += 1;
                            stats.bytes += src.read_file(&id)?.0.size;
                            continue;
                        }
                        Ok(false) => {
                            continue;
                        }
                        // Another filesystem, or protected_hardlinks for a file the
                        // caller does not own: copy this one and every later one.
                        Err(Errno::XDEV) | Err(Errno::PERM) | Err(Errno::ACCESS) => {
                            try_link = false;
                        }
                        Err(e) => {
                            return Err(e)
                                .at_path(dst.path().join(dst.object_path(ObjectKind::File, &id.0)))
                        }
                    }
                }
                let (header, content) = src.read_file(&id)?;
                stats.bytes += header.size;
                let written = match content {
                    FileContent::Regular(mut r) => txn.write_file(&header, &mut r)?,
                    FileContent::Symlink => txn.write_file(&header, &mut std::io::empty())?,
                };
                if written != id {
                    return Err(Error::invalid(
                        format!("file /{}", e.path),
                        "its object does not hash to its id",
                    ));
                }
                stats.written += 1;
            }
        }
    }
    let c = src.read_commit(commit)?;
    if txn.write_commit(&c)? != *commit {
        return Err(Error::invalid(
            format!("commit {commit}"),
            "it does not re-encode to its id",
        ));
    }
    let sigs = src.read_signatures(commit)?;
    if !sigs.0.is_empty() {
        txn.write_signatures(commit, sigs)?;
    }
    txn.commit()?;
    Ok(stats)
}

/// Hardlink a bare file object of `src` into `dst`. `Ok(false)`: `dst` had it already.
fn link_object(src: &Repo, dst: &Repo, id: &FileId) -> std::result::Result<bool, Errno> {
    // objects/XX/NAME, the same in both bare repositories.
    let path = dst.object_path(ObjectKind::File, &id.0);
    let mut parts = path.iter().skip(1).filter_map(|c| c.to_str());
    let (Some(dir), Some(name)) = (parts.next(), parts.next()) else {
        return Err(Errno::INVAL);
    };
    let rel = format!("{dir}/{name}");
    let fanout = match store::durable::open_dir_at(dst.objects_dir(), dir) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(dst.objects_dir(), dir, 0o755.into()) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            store::durable::open_dir_at(dst.objects_dir(), dir)?
        }
        Err(e) => return Err(e),
    };
    match rustix::fs::linkat(
        src.objects_dir(),
        rel.as_str(),
        &fanout,
        name,
        AtFlags::empty(),
    ) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `path` and `other` are on the same filesystem (for the report).
pub fn same_filesystem(path: &Path, other: &Path) -> bool {
    match (rustix::fs::stat(path), rustix::fs::stat(other)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev,
        _ => false,
    }
}
