//! Free-space checks, so a deploy fails before writing rather than half way.

use std::os::fd::BorrowedFd;
use std::path::Path;

use store::walk::{Node, WalkOptions, Walker};
use store::{CommitId, Repo};

use crate::error::{Error, IoResultExt, Result};

/// Bytes a deployment of a commit needs on the sysroot.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// Directory blocks of the hardlink checkout plus the copied `/etc`, with a margin.
    pub sysroot: u64,
}

/// Estimate what deploying `commit` writes on the sysroot: a block per directory (the
/// files themselves are hardlinks), the `/etc` copy, and 1 MiB for origin and metadata.
pub fn estimate(repo: &Repo, commit: &CommitId) -> Result<Need> {
    let mut dirs = 0u64;
    for e in Walker::commit(repo, commit, WalkOptions::default())? {
        if e?.is_dir() {
            dirs += 1;
        }
    }
    let etc = subtree_bytes(repo, commit, "usr/etc")? + subtree_bytes(repo, commit, "etc")?;
    Ok(Need {
        sysroot: dirs * 4096 + etc + (1 << 20),
    })
}

/// Fail with [`Error::NoSpace`] unless the filesystem holding the open directory `dir`
/// (shown as `shown`) has `needed` bytes free for an unprivileged writer.
pub fn check(dir: BorrowedFd<'_>, shown: &Path, needed: u64) -> Result<()> {
    let st = rustix::fs::fstatvfs(dir).at_path(shown)?;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if available < needed {
        return Err(Error::NoSpace {
            path: shown.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Sizes of the files below `prefix` in the commit (0 when it has no such path).
fn subtree_bytes(repo: &Repo, commit: &CommitId, prefix: &str) -> Result<u64> {
    let entry = match store::walk::resolve_path(repo, commit, prefix) {
        Ok(e) => e,
        Err(store::Error::PathNotFound { .. }) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    if !matches!(entry.node, Node::Dir { .. }) {
        return Ok(entry.header(repo)?.map_or(0, |h| h.size));
    }
    let mut total = 0;
    for e in Walker::from_entry(
        repo,
        entry,
        WalkOptions {
            metadata: true,
            ..WalkOptions::default()
        },
    ) {
        if let Some(h) = e?.header(repo)? {
            total += h.size;
        }
    }
    Ok(total)
}
