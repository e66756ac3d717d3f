//! The small state changes: `mark-good`, `rollback`, `pin` and `unpin`.

use std::os::fd::AsFd;
use std::path::Path;

use store::durable;

use crate::bls::{EntriesDir, EntryName};
use crate::deployment::{DeploymentId, DeploymentRef};
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
    let entries = EntriesDir::open(&sysroot.boot_dir(), false)?;
    if bless(&entries, &d.entry_name, &to, &booted)? {
        Ok((d.id, MarkGood::Blessed(from, to.file_name())))
    } else {
        Ok((d.id, MarkGood::AlreadyGood(to.file_name())))
    }
}

/// Rename the counted entry `from` to its blessed name `to`; `false` if someone else did it
/// first. systemd-bless-boot (added by systemd-bless-boot-generator when the firmware sets
/// `LoaderBootCountPath`) renames the same file at about the same time, after
/// `boot-complete.target` as well: when our rename finds the counted name gone and the
/// blessed name there, naming the same deployment, the entry is good and that is success.
fn bless(
    entries: &EntriesDir,
    from: &EntryName,
    to: &EntryName,
    booted: &DeploymentRef,
) -> Result<bool> {
    let Err(e) = entries.rename(from, to) else {
        return Ok(true);
    };
    let gone =
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    if gone {
        if let Ok(entry) = entries.read(to) {
            if crate::state::entry_deployment(&entry).as_ref() == Some(booted) {
                return Ok(false);
            }
        }
    }
    Err(e)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::Entry;

    /// systemd-bless-boot renamed the entry between `mark-good` reading the entries and
    /// renaming: the counted name is gone, the blessed one names the booted deployment.
    #[test]
    fn a_rename_lost_to_systemd_bless_boot_is_already_good() {
        let t = tempfile::tempdir().unwrap();
        let entries = EntriesDir::open(t.path(), true).unwrap();
        let booted = DeploymentRef::parse(&format!("os/{}.0", "a".repeat(64))).unwrap();
        let entry = Entry {
            linux: "/vmlinuz".into(),
            options: vec![format!("root=/dev/vda2 update.deployment={booted}")],
            ..Entry::default()
        };
        let blessed = EntryName::new("update-os-2").unwrap();
        let counted = blessed.with_tries(2).unwrap();
        entries.write(&counted, &entry).unwrap();
        assert!(bless(&entries, &counted, &blessed, &booted).unwrap());
        assert!(entries.read(&counted).is_err());

        // The race: systemd-bless-boot renames first, our rename comes second.
        let blessed = EntryName::new("update-os-3").unwrap();
        let counted = blessed.with_tries(1).unwrap();
        entries.write(&counted, &entry).unwrap();
        entries.rename(&counted, &blessed).unwrap();
        assert!(!bless(&entries, &counted, &blessed, &booted).unwrap());

        // Gone, and the blessed name boots something else: an error, not success.
        let stranger = DeploymentRef::parse(&format!("os/{}.0", "b".repeat(64))).unwrap();
        let e = bless(&entries, &counted, &blessed, &stranger).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        // Neither name there: the error stays.
        let lost = EntryName::new("update-os-9").unwrap();
        assert!(bless(&entries, &lost.with_tries(1).unwrap(), &lost, &booted).is_err());
    }
}
