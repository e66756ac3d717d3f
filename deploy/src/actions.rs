//! The small state changes: `mark-good`, `rollback`, `pin` and `unpin`.

use std::os::fd::AsFd;
use std::path::Path;

use store::durable;

use crate::bls::EntriesDir;
use crate::deployment::DeploymentId;
use crate::error::{Error, IoResultExt, Result};
use crate::state::State;
use crate::sysroot::Sysroot;

/// What `mark-good` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkGood {
    /// The booted entry was renamed from the first name to the second.
    Blessed(String, String),
    /// The booted entry had no counter left to remove.
    AlreadyGood(String),
}

/// Bless the booted deployment: rename its entry to the name without a boot counter, so the
/// firmware stops counting and never falls back from it. What systemd-bless-boot does, but
/// found through the `update.deployment=` kernel argument rather than the entry's name.
pub fn mark_good(
    sysroot: &Sysroot,
    os: Option<&str>,
    proc_cmdline: &Path,
) -> Result<(DeploymentId, MarkGood)> {
    let booted = crate::cmdline::booted(proc_cmdline)?.ok_or_else(|| Error::NotBooted {
        cmdline: proc_cmdline.to_path_buf(),
    })?;
    if let Some(o) = os {
        if o != booted.os {
            return Err(Error::BootedOtherOs {
                booted: booted.to_string(),
                os: o.to_owned(),
            });
        }
    }
    let _lock = sysroot.lock()?;
    let state = State::load(sysroot, &booted.os, proc_cmdline)?;
    let d = state
        .booted_deployment()
        .ok_or_else(|| Error::NoBootEntry {
            booted: booted.to_string(),
            boot_dir: sysroot.boot_dir().to_path_buf(),
        })?;
    let from = d.entry_name.file_name();
    if !d.entry_name.is_counting() {
        return Ok((d.id, MarkGood::AlreadyGood(from)));
    }
    let to = d.entry_name.blessed();
    EntriesDir::open(&sysroot.boot_dir(), false)?.rename(&d.entry_name, &to)?;
    Ok((d.id, MarkGood::Blessed(from, to.file_name())))
}

/// Make the rollback deployment (see [`State::rollback`]) the default: its entry is
/// rewritten with a generation above every other, written before the old one is removed,
/// so a crash leaves one of the two names and both boot the same deployment.
pub fn rollback(sysroot: &Sysroot, os: Option<&str>, proc_cmdline: &Path) -> Result<DeploymentId> {
    let os = sysroot.pick_os(os)?;
    let _lock = sysroot.lock()?;
    let state = State::load(sysroot, &os, proc_cmdline)?;
    // With a pending deployment not yet booted, rolling back means staying on the booted one.
    let target = match (state.booted_deployment(), state.deployments.first()) {
        (Some(b), Some(first)) if b.id != first.id && !b.failed() => b,
        _ => state
            .rollback()
            .ok_or_else(|| Error::NoRollbackTarget { os: os.to_string() })?,
    };
    if !target.present {
        return Err(Error::DeploymentMissing {
            deployment: target.id.to_string(),
        });
    }
    let entries = EntriesDir::open(&sysroot.boot_dir(), false)?;
    let generation = state.max_generation() + 1;
    let mut entry = target.entry.clone();
    entry.version = Some(generation.to_string());
    let name = crate::bls::EntryName::new(&format!("update-{os}-{generation}"))?;
    // It was good before; it keeps no counter.
    entries.write(&name, &entry)?;
    entries.remove(&target.entry_name)?;
    for dup in &state.duplicates {
        entries.remove(dup)?;
    }
    Ok(target.id)
}

/// Pin or unpin a deployment: a pinned one is never removed by cleanup.
pub fn set_pinned(
    sysroot: &Sysroot,
    os: Option<&str>,
    which: &str,
    pinned: bool,
    proc_cmdline: &Path,
) -> Result<DeploymentId> {
    let os = sysroot.pick_os(os)?;
    let _lock = sysroot.lock()?;
    let state = State::load(sysroot, &os, proc_cmdline)?;
    let d = state.find(which)?;
    let mut origin = d.origin.clone().ok_or_else(|| Error::NoOrigin {
        deployment: d.id.to_string(),
    })?;
    origin.pinned = pinned;
    let dir = sysroot.deployments_dir(&os);
    let fd = store::durable::open_dir(&dir).at_path(&dir)?;
    durable::write_atomic(
        fd.as_fd(),
        &d.id.origin_name(),
        origin.to_text().as_bytes(),
        0o644,
        &dir.join(d.id.origin_name()),
    )?;
    Ok(d.id)
}
