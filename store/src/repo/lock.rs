//! The repository lock: writers (commit, pull, sign) hold it shared, prune holds it
//! exclusive, so a prune never deletes an object a running writer is adding or relying on.

use std::os::fd::OwnedFd;

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::{Repo, LOCK_FILE};
use crate::error::{IoResultExt, Result};

/// A held lock on a repository, released on drop.
#[must_use = "the lock is released when this is dropped"]
pub struct RepoLock {
    _fd: OwnedFd,
}

impl Repo {
    fn lock(&self, op: FlockOperation) -> Result<RepoLock> {
        let path = self.path().join(LOCK_FILE);
        let fd = rustix::fs::openat(
            self.dir(),
            LOCK_FILE,
            OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .at_path(&path)?;
        rustix::fs::flock(&fd, op).at_path(&path)?;
        Ok(RepoLock { _fd: fd })
    }

    /// Take the lock shared (blocks while a prune runs).
    pub fn lock_shared(&self) -> Result<RepoLock> {
        self.lock(FlockOperation::LockShared)
    }

    /// Take the lock exclusive (blocks while any writer runs).
    pub fn lock_exclusive(&self) -> Result<RepoLock> {
        self.lock(FlockOperation::LockExclusive)
    }
}
