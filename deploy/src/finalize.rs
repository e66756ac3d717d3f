//! `update finalize`: at shutdown, carry `/etc` changes made since `update deploy` into the
//! deployment that boots next.
//!
//! `update deploy` merges `/etc` at deploy time, so the new deployment is complete and
//! bootable the moment its entry is written: a power cut or a crash before the shutdown
//! still boots it, with the `/etc` of the deploy. What the running system does to `/etc`
//! between the deploy and the reboot would be lost; `update-finalize.service` runs this at
//! shutdown to catch it (what OSTree's `ostree-finalize-staged.service` does for staged
//! deployments).
//!
//! When the deployment that boots next (the *pending* one) is not the booted one, and its
//! origin says its `/etc` was merged from the booted one (`etc-merged-from`), the merge is
//! done again from the booted deployment's current `/etc`:
//!
//! 1. Leftovers of an interrupted run ([`TEMP_ETC`] in any deployment) are removed.
//! 2. The new `/etc` is merged into `PENDING/.update-finalize-etc`, beside the pending
//!    `/etc`, with the same inputs and checks as the deploy (the booted deployment's
//!    `/usr/etc` and `/etc`, the pending `/usr/etc` hashed against the commit's objects),
//!    and the filesystem is synced.
//! 3. `renameat2(RENAME_EXCHANGE)` swaps the two directories in one step, and the
//!    deployment directory is fsynced: this is the switch.
//! 4. The old `/etc`, now under the temp name, is removed.
//!
//! A cut before step 3 leaves the deploy-time `/etc` in place, a cut after it the finalized
//! one; each is complete, and the temp is a leftover the next `finalize` or `deploy`
//! removes. The pending deployment's own `/etc` is replaced whole: edits made directly in
//! it after the deploy are not kept (the booted system's `/etc` wins; edit that instead).
//! Running it again redoes the merge from the same inputs, so it is idempotent.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, RenameFlags};
use rustix::io::Errno;
use store::durable;

use crate::cmdline;
use crate::deploy::{etc_defaults, sub_dir};
use crate::deployment::{DeploymentId, DeploymentRef};
use crate::error::{Error, IoResultExt, Result};
use crate::etc_merge::{self, MergeAt, MergeReport, Root};
use crate::state::State;
use crate::sysroot::Sysroot;

/// The name the new `/etc` is built under, in the pending deployment's directory; after
/// the swap it holds the old one until it is removed.
pub const TEMP_ETC: &str = ".update-finalize-etc";

/// How to finalize.
#[derive(Clone, Debug)]
pub struct FinalizeOptions {
    /// Where the booted kernel's command line is.
    pub proc_cmdline: PathBuf,
}

impl Default for FinalizeOptions {
    fn default() -> Self {
        FinalizeOptions {
            proc_cmdline: PathBuf::from(cmdline::PROC_CMDLINE),
        }
    }
}

/// What `finalize` found and did.
#[derive(Debug)]
pub enum Outcome {
    /// The kernel command line names no deployment: nothing to do.
    NotBooted,
    /// The booted deployment boots next (or nothing boots next): nothing to do.
    NothingPending {
        /// The booted deployment.
        booted: DeploymentRef,
    },
    /// The pending deployment's `/etc` was not merged from the booted one (a rollback made
    /// an older deployment the default, or it was deployed offline): it is left as it is.
    NotMergedFromBooted {
        /// The booted deployment.
        booted: DeploymentRef,
        /// The deployment that boots next.
        pending: DeploymentRef,
        /// What its `/etc` was merged from, if its origin says.
        merged_from: Option<DeploymentId>,
    },
    /// The pending deployment's `/etc` was merged again from the booted one's.
    Finalized {
        /// The booted deployment.
        booted: DeploymentRef,
        /// The deployment that boots next.
        pending: DeploymentRef,
        /// The merge, as `deploy` reports it.
        merge: MergeReport,
    },
}

/// What a `finalize` run did.
#[derive(Debug)]
pub struct FinalizeReport {
    /// The outcome.
    pub outcome: Outcome,
    /// Leftovers of interrupted runs that were removed.
    pub leftovers_removed: Vec<PathBuf>,
}

/// Finalize the pending deployment of the booted OS. See the module documentation.
pub fn finalize(sysroot: &Sysroot, opts: &FinalizeOptions) -> Result<FinalizeReport> {
    let Some(booted) = cmdline::booted(&opts.proc_cmdline)? else {
        return Ok(FinalizeReport {
            outcome: Outcome::NotBooted,
            leftovers_removed: Vec::new(),
        });
    };
    let os = booted.os.clone();
    let _lock = sysroot.lock()?;
    let state = State::load(sysroot, &os, &opts.proc_cmdline)?;
    let deploy_dir = sysroot.deployments_dir(&os);
    let dir_fd = durable::open_dir(&deploy_dir).at_path(&deploy_dir)?;
    let mut leftovers_removed = Vec::new();
    for d in state.deployments.iter().filter(|d| d.present) {
        if remove_leftover(dir_fd.as_fd(), &deploy_dir, &d.id)? {
            leftovers_removed.push(deploy_dir.join(d.id.to_string()).join(TEMP_ETC));
        }
    }
    let report = |outcome| FinalizeReport {
        outcome,
        leftovers_removed: leftovers_removed.clone(),
    };
    let pending = match state.default() {
        Some(p) if p.id != booted.id => p,
        _ => return Ok(report(Outcome::NothingPending { booted })),
    };
    let pending_ref = DeploymentRef {
        os: os.clone(),
        id: pending.id,
    };
    if !pending.present {
        return Err(Error::DeploymentMissing {
            deployment: pending_ref.to_string(),
        });
    }
    let merged_from = pending
        .origin
        .as_ref()
        .ok_or_else(|| Error::NoOrigin {
            deployment: pending_ref.to_string(),
        })?
        .etc_merged_from;
    if merged_from != Some(booted.id) {
        return Ok(report(Outcome::NotMergedFromBooted {
            booted,
            pending: pending_ref,
            merged_from,
        }));
    }

    let repo = sysroot.repo()?;
    let expected = etc_defaults(&repo, &pending.id.commit)?;
    let dir = |fd: BorrowedFd<'_>, name: &str, path: &Path, what: &'static str| {
        sub_dir(fd, name, path)?.ok_or_else(|| Error::FinalizeInput {
            deployment: pending_ref.to_string(),
            what,
            path: path.to_path_buf(),
        })
    };
    let old_path = deploy_dir.join(booted.id.to_string());
    let old = dir(
        dir_fd.as_fd(),
        &booted.id.to_string(),
        &old_path,
        "booted deployment",
    )?;
    let old_usr = dir(old.as_fd(), "usr", &old_path.join("usr"), "booted /usr")?;
    let (old_defaults_path, local_path) = (old_path.join("usr/etc"), old_path.join("etc"));
    let old_defaults = dir(
        old_usr.as_fd(),
        "etc",
        &old_defaults_path,
        "booted /usr/etc",
    )?;
    let local = dir(old.as_fd(), "etc", &local_path, "booted /etc")?;
    let new_path = deploy_dir.join(pending.id.to_string());
    let new = dir(
        dir_fd.as_fd(),
        &pending.id.to_string(),
        &new_path,
        "pending deployment",
    )?;
    let new_usr = dir(new.as_fd(), "usr", &new_path.join("usr"), "pending /usr")?;
    let new_defaults_path = new_path.join("usr/etc");
    let new_defaults = dir(
        new_usr.as_fd(),
        "etc",
        &new_defaults_path,
        "pending /usr/etc",
    )?;

    let merge = etc_merge::merge_at(&MergeAt {
        old_defaults: Some(Root {
            fd: old_defaults.as_fd(),
            path: &old_defaults_path,
        }),
        local: Some(Root {
            fd: local.as_fd(),
            path: &local_path,
        }),
        new_defaults: Root {
            fd: new_defaults.as_fd(),
            path: &new_defaults_path,
        },
        dest_parent: Root {
            fd: new.as_fd(),
            path: &new_path,
        },
        dest_name: OsStr::new(TEMP_ETC),
        expected: Some(&expected),
    })?;
    tracing::info!(pending = %pending_ref, booted = %booted, "finalize: /etc merged again");
    let temp_path = new_path.join(TEMP_ETC);
    let etc_path = new_path.join("etc");
    let swap = (|| {
        rustix::fs::syncfs(&new).at_path(&new_path)?;
        exchange(new.as_fd(), &etc_path)?;
        rustix::fs::fsync(&new).at_path(&new_path)
    })();
    if let Err(e) = swap {
        let _ = durable::remove_tree_at(new.as_fd(), TEMP_ETC);
        return Err(e);
    }
    tracing::info!(pending = %pending_ref, "finalize: /etc swapped in");
    durable::remove_tree_at(new.as_fd(), TEMP_ETC).at_path(&temp_path)?;
    rustix::fs::fsync(&new).at_path(&new_path)?;
    Ok(report(Outcome::Finalized {
        booted,
        pending: pending_ref,
        merge,
    }))
}

/// Swap [`TEMP_ETC`] and `etc` in the deployment `dir` in one step. A deployment without
/// an `etc` (nothing to swap with) gets the new one by a plain rename.
fn exchange(dir: BorrowedFd<'_>, etc_path: &Path) -> Result<()> {
    match rustix::fs::renameat_with(dir, TEMP_ETC, dir, "etc", RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => {
            rustix::fs::renameat_with(dir, TEMP_ETC, dir, "etc", RenameFlags::NOREPLACE)
                .at_path(etc_path)
        }
        Err(e @ (Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)) => Err(Error::NoExchange {
            path: etc_path.to_path_buf(),
            source: e.into(),
        }),
        Err(e) => Err(e).at_path(etc_path),
    }
}

/// Remove what an interrupted `finalize` left in deployment `id` ([`TEMP_ETC`]: a partial
/// new `/etc`, a complete one not yet swapped in, or the old one after the swap); returns
/// whether there was anything.
pub(crate) fn remove_leftover(
    deploy_fd: BorrowedFd<'_>,
    deploy_dir: &Path,
    id: &DeploymentId,
) -> Result<bool> {
    let root_path = deploy_dir.join(id.to_string());
    let Some(root) = sub_dir(deploy_fd, &id.to_string(), &root_path)? else {
        return Ok(false);
    };
    match rustix::fs::statat(&root, TEMP_ETC, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => {}
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e).at_path(root_path.join(TEMP_ETC)),
    }
    durable::remove_tree_at(root.as_fd(), TEMP_ETC).at_path(root_path.join(TEMP_ETC))?;
    rustix::fs::fsync(&root).at_path(&root_path)?;
    Ok(true)
}
