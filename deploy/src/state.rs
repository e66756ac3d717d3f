//! The deployments of an OS as the bootloader will see them: boot entries in systemd-boot's
//! order, each mapped to its deployment by the `update.deployment=` kernel argument (never by
//! file name), plus what the kernel command line says was booted.

use std::path::Path;

use serde::Serialize;

use crate::bls::{self, EntriesDir, Entry, EntryName};
use crate::cmdline::{self, DEPLOYMENT_KARG};
use crate::deployment::{DeploymentId, DeploymentRef, Origin};
use crate::error::{Error, IoResultExt, Result};
use crate::sysroot::Sysroot;

/// One deployment that has a boot entry.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Its name.
    pub id: DeploymentId,
    /// Its origin file (`None` when the file is missing or unreadable: reported, not fatal).
    pub origin: Option<Origin>,
    /// Its entry's file name.
    pub entry_name: EntryName,
    /// Its entry.
    pub entry: Entry,
    /// Whether the directory exists.
    pub present: bool,
}

impl Deployment {
    /// The entry's `version` as a number (0 when it is not one).
    pub fn generation(&self) -> u64 {
        self.entry
            .version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the firmware has given up on it (`+0-N`).
    pub fn failed(&self) -> bool {
        self.entry_name.is_bad()
    }

    /// Whether cleanup must keep it.
    pub fn pinned(&self) -> bool {
        self.origin.as_ref().is_some_and(|o| o.pinned)
    }
}

/// The state of one OS in a sysroot.
#[derive(Clone, Debug)]
pub struct State {
    /// The OS.
    pub os: String,
    /// Deployments with an entry, in boot order: index 0 boots next.
    pub deployments: Vec<Deployment>,
    /// What the kernel command line names as booted, if it is this OS.
    pub booted: Option<DeploymentId>,
    /// Deployment directories with no entry (left by an interrupted deploy or cleanup).
    pub orphans: Vec<DeploymentId>,
    /// Whether an entry of another OS or loader sorts before ours.
    pub foreign_first: bool,
    /// Entries naming a deployment an earlier entry in boot order already names.
    pub duplicates: Vec<EntryName>,
}

impl State {
    /// Read the state of `os`. `proc_cmdline` is where the booted kernel's command line is.
    pub fn load(sysroot: &Sysroot, os: &str, proc_cmdline: &Path) -> Result<State> {
        let booted = cmdline::booted(proc_cmdline)?
            .filter(|r| r.os == os)
            .map(|r| r.id);
        let dir = sysroot.deployments_dir(os);
        let dir_fd = sysroot.deployments_fd(os)?;
        let mut on_disk = Vec::new();
        for e in rustix::fs::Dir::read_from(&dir_fd).at_path(&dir)? {
            let e = e.at_path(&dir)?;
            let Ok(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(id) = DeploymentId::parse(&name) {
                on_disk.push(id);
            }
        }
        let entries_dir = EntriesDir::open(&sysroot.boot_dir(), true)?;
        let mut all = entries_dir.list()?;
        bls::boot_order(&mut all);
        let mut deployments: Vec<Deployment> = Vec::new();
        let mut foreign_first = false;
        let mut duplicates = Vec::new();
        for (i, (name, entry)) in all.into_iter().enumerate() {
            let Some(r) = entry_deployment(&entry) else {
                foreign_first |= i == 0;
                continue;
            };
            if r.os != os {
                foreign_first |= i == 0;
                continue;
            }
            if deployments.iter().any(|d| d.id == r.id) {
                // Left by a rollback cut between writing the new entry and removing the
                // old one: the first in boot order is the one that counts.
                duplicates.push(name);
                continue;
            }
            let origin_path = dir.join(r.id.origin_name());
            let origin = Origin::read(
                std::os::fd::AsFd::as_fd(&dir_fd),
                &r.id.origin_name(),
                &origin_path,
            )
            .ok();
            deployments.push(Deployment {
                present: on_disk.contains(&r.id),
                id: r.id,
                origin,
                entry_name: name,
                entry,
            });
        }
        let orphans = on_disk
            .into_iter()
            .filter(|id| !deployments.iter().any(|d| d.id == *id))
            .collect();
        Ok(State {
            os: os.to_owned(),
            deployments,
            booted,
            orphans,
            foreign_first,
            duplicates,
        })
    }

    /// The deployment that boots next, if any.
    pub fn default(&self) -> Option<&Deployment> {
        self.deployments.first().filter(|d| !d.failed())
    }

    /// The booted deployment, if it has an entry.
    pub fn booted_deployment(&self) -> Option<&Deployment> {
        let b = self.booted?;
        self.deployments.iter().find(|d| d.id == b)
    }

    /// The deployment the firmware falls back to if the default does not come up, and the
    /// one `update rollback` makes the default: the first good entry after the default.
    pub fn rollback(&self) -> Option<&Deployment> {
        let first = self.deployments.first()?;
        self.deployments
            .iter()
            .skip(1)
            .find(|d| !d.failed() && d.id != first.id)
    }

    /// The highest entry generation of this OS.
    pub fn max_generation(&self) -> u64 {
        self.deployments
            .iter()
            .map(Deployment::generation)
            .max()
            .unwrap_or(0)
    }

    /// Find a deployment by `COMMIT.SERIAL`, a unique prefix of it, or its index in boot order.
    pub fn find(&self, what: &str) -> Result<&Deployment> {
        if let Ok(i) = what.parse::<usize>() {
            if what.len() < 4 {
                return self.deployments.get(i).ok_or(Error::NoDeploymentAt {
                    index: i,
                    count: self.deployments.len(),
                });
            }
        }
        let hits: Vec<_> = self
            .deployments
            .iter()
            .filter(|d| d.id.to_string().starts_with(what))
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::NoDeploymentMatch {
                os: self.os.clone(),
                what: what.to_owned(),
            }),
            _ => Err(Error::AmbiguousDeployment {
                what: what.to_owned(),
                count: hits.len(),
            }),
        }
    }
}

/// The deployment an entry boots, from its `update.deployment=` kernel argument.
pub fn entry_deployment(entry: &Entry) -> Option<DeploymentRef> {
    let v = entry.karg(DEPLOYMENT_KARG.trim_end_matches('='))?;
    DeploymentRef::parse(v).ok()
}

/// How `update status` reports a deployment.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentStatus {
    /// Position in boot order (0 boots next).
    pub index: usize,
    /// `COMMIT.SERIAL`.
    pub deployment: String,
    /// The commit.
    pub commit: String,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// What it tracks.
    pub origin: Option<String>,
    /// Key names whose signatures verified at deploy time.
    pub signers: Vec<String>,
    /// Running now.
    pub booted: bool,
    /// Boots next but has not been booted (a new deployment, or one made default by rollback).
    pub pending: bool,
    /// What the firmware falls back to, and what `update rollback` selects.
    pub rollback: bool,
    /// Kept whatever happens.
    pub pinned: bool,
    /// Its boot tries ran out without `update mark-good`.
    pub failed: bool,
    /// Boot tries left, if still being counted (`None`: marked good).
    pub tries_left: Option<u32>,
    /// Its boot entry's file name.
    pub entry: String,
    /// When it was deployed (seconds since the epoch).
    pub deployed_at: Option<u64>,
    /// The deployment directory is missing.
    pub missing: bool,
}

impl State {
    /// The rows of `update status`.
    pub fn report(&self) -> Vec<DeploymentStatus> {
        let rollback = self.rollback().map(|d| d.id);
        let default = self.default().map(|d| d.id);
        self.deployments
            .iter()
            .enumerate()
            .map(|(index, d)| DeploymentStatus {
                index,
                deployment: d.id.to_string(),
                commit: d.id.commit.to_string(),
                version: d.origin.as_ref().and_then(|o| o.version.clone()),
                origin: d.origin.as_ref().map(|o| o.refspec.clone()),
                signers: d
                    .origin
                    .as_ref()
                    .map(|o| o.signers.clone())
                    .unwrap_or_default(),
                booted: self.booted == Some(d.id),
                pending: default == Some(d.id) && self.booted != Some(d.id),
                rollback: rollback == Some(d.id),
                pinned: d.pinned(),
                failed: d.failed(),
                tries_left: d.entry_name.tries_left(),
                entry: d.entry_name.file_name(),
                deployed_at: d.origin.as_ref().map(|o| o.deployed_at),
                missing: !d.present,
            })
            .collect()
    }
}
