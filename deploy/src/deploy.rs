//! `update deploy`: make a commit the system that boots next.
//!
//! The steps, and why a power cut at any instant leaves a bootable system
//! (`docs/deploy.md` says the same for readers):
//!
//! 1. Hardlink checkout into `deploy/.staging-*` (invisible: not a `COMMIT.SERIAL` name).
//! 2. `/etc` 3-way merge into the staging tree; boot files copied to the boot partition under
//!    a temp name, then renamed to their checksum directory (never replaced once there).
//! 3. `syncfs`, origin file written atomically, staging renamed to `COMMIT.SERIAL`, the
//!    directory fsynced. Until now no entry names the new deployment, so the bootloader
//!    still boots what it booted before.
//! 4. The new entry is written to a temp name that does not end in `.conf` (systemd-boot
//!    ignores it), fsynced, renamed to `update-OS-GEN+N.conf`, the entries directory fsynced.
//!    The new entry sorts first (highest version), so this rename is the switch; every
//!    older entry is still there for the firmware to fall back to.
//! 5. Cleanup: entries of deployments no longer kept are removed first, then their
//!    directories, then boot files no entry names. A crash here leaves extra files only.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use store::checkout::{checkout, CheckoutOptions, CheckoutStats, LinkMode};
use store::durable;
use store::remote::Remote;
use store::sign::{verify_commit, TrustedKeys};
use store::walk::{Node, WalkOptions, Walker};
use store::{CommitId, Repo};

use crate::bls::{EntriesDir, Entry, EntryName};
use crate::bootfiles::{self, BootFiles, INITRAMFS, KERNEL};
use crate::cmdline::DEPLOYMENT_KARG;
use crate::deployment::{DeploymentId, DeploymentRef, Origin};
use crate::error::{Error, IoResultExt, Result};
use crate::etc_merge::{self, Expected, MergeAt, MergeReport, Root};
use crate::shape;
use crate::space;
use crate::state::{Deployment, State};
use crate::sysroot::{validate_karg, Sysroot};

/// What to deploy, and how.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// The OS (default: the only one in the sysroot).
    pub os: Option<String>,
    /// `REMOTE:REF`, a local ref, or a commit; `None`: what the current default deployment
    /// tracks.
    pub rev: Option<String>,
    /// Kernel arguments to add (a `key=value` replaces an earlier `key=`).
    pub kargs: Vec<String>,
    /// Boot tries of the new entry (default: the sysroot's boot-retry-limit).
    pub retries: Option<u32>,
    /// Require a signature by a trusted key (on by default; off only with a loud warning).
    pub verify: bool,
    /// Allow a commit older than the booted one.
    pub allow_downgrade: bool,
    /// Where the booted kernel's command line is.
    pub proc_cmdline: PathBuf,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            os: None,
            rev: None,
            kargs: Vec::new(),
            retries: None,
            verify: true,
            allow_downgrade: false,
            proc_cmdline: PathBuf::from(crate::cmdline::PROC_CMDLINE),
        }
    }
}

/// What a deploy did.
#[derive(Debug)]
pub struct DeployReport {
    /// The new deployment.
    pub deployment: DeploymentRef,
    /// Its entry's file name.
    pub entry: String,
    /// The commit's `version`.
    pub version: Option<String>,
    /// Trusted keys whose signatures verified.
    pub signers: Vec<String>,
    /// The `/etc` merge (`None` on a first deployment).
    pub merge: Option<MergeReport>,
    /// What the checkout wrote.
    pub checkout: CheckoutStats,
    /// Whether kernel and initramfs were copied (false: shared with another deployment).
    pub boot_files_copied: bool,
    /// Deployments removed by cleanup.
    pub removed: Vec<DeploymentId>,
    /// Boot file directories removed by cleanup.
    pub removed_boot: Vec<String>,
    /// Cleanup steps that failed (the deployment itself succeeded).
    pub warnings: Vec<String>,
}

/// Deploy. See the module documentation for the steps.
pub fn deploy(sysroot: &Sysroot, opts: &DeployOptions) -> Result<DeployReport> {
    let os = sysroot.pick_os(opts.os.as_deref())?;
    for k in &opts.kargs {
        validate_karg(k)?;
    }
    let retries = opts.retries.unwrap_or(sysroot.config().boot_retry_limit);
    if !(1..=crate::sysroot::MAX_RETRIES).contains(&retries) {
        return Err(Error::invalid(
            format!("boot tries {retries}"),
            format!("must be 1 to {}", crate::sysroot::MAX_RETRIES),
        ));
    }
    let _lock = sysroot.lock()?;
    let repo = sysroot.repo()?;
    let boot = sysroot.boot_dir();
    let state = State::load(sysroot, &os, &opts.proc_cmdline)?;
    // The deployment whose /etc and kernel arguments carry over: the booted one if this OS
    // is booted, else the one that boots next.
    let merge_from: Option<&Deployment> = state
        .booted_deployment()
        .or(state.default())
        .filter(|d| d.present);

    let refspec = match &opts.rev {
        Some(r) => r.clone(),
        None => merge_from
            .and_then(|d| d.origin.as_ref())
            .map(|o| o.refspec.clone())
            .ok_or_else(|| Error::NothingToDeploy { os: os.clone() })?,
    };
    let commit_id = repo.resolve_rev(&refspec)?;
    let commit = repo.read_commit(&commit_id)?;
    let signers = if opts.verify {
        verify(&repo, &refspec, &commit_id)?
    } else {
        Vec::new()
    };
    tracing::info!(%os, %refspec, commit = %commit_id, verified = opts.verify, signed_by = ?signers, "deploy: commit resolved");
    if let Some(b) = state.booted_deployment() {
        if !opts.allow_downgrade && b.id.commit != commit_id {
            let booted = repo.read_commit(&b.id.commit)?;
            if commit.timestamp < booted.timestamp {
                return Err(Error::Downgrade {
                    commit: commit_id,
                    booted: b.id.commit,
                    commit_time: commit.timestamp,
                    booted_time: booted.timestamp,
                });
            }
        }
    }

    // The tree's shape, the boot files and the /etc defaults are checked in the store
    // first: a commit that would have deploy reach outside the sysroot, or whose copied
    // files are damaged, is refused before anything is written.
    shape::check(&repo, &commit_id)?;
    let files = BootFiles::find(&repo, &commit_id)?;
    let expected = etc_defaults(&repo, &commit_id)?;

    let deploy_dir = sysroot.deployments_dir(&os);
    let dir_fd = store::durable::open_dir(&deploy_dir).at_path(&deploy_dir)?;
    clean_leftovers(&deploy_dir, dir_fd.as_fd(), &state)?;
    for d in state.deployments.iter().filter(|d| d.present) {
        crate::finalize::remove_leftover(dir_fd.as_fd(), &deploy_dir, &d.id)?;
    }
    let entries = EntriesDir::open(&boot, true)?;
    entries.clean_temp()?;
    for dup in &state.duplicates {
        entries.remove(dup)?;
    }

    // Free space, before anything is written.
    let need = space::estimate(&repo, &commit_id)?;
    space::check(dir_fd.as_fd(), &deploy_dir, need.sysroot)?;
    tracing::info!(
        needed = need.sysroot,
        "deploy: leftovers cleaned, free space checked"
    );

    let serial = (0u32..).find(|n| {
        let id = DeploymentId {
            commit: commit_id,
            serial: *n,
        };
        matches!(
            rustix::fs::statat(&dir_fd, id.to_string().as_str(), AtFlags::SYMLINK_NOFOLLOW),
            Err(Errno::NOENT)
        ) && !state.deployments.iter().any(|d| d.id == id)
    });
    let id = DeploymentId {
        commit: commit_id,
        serial: serial.expect("a free serial"),
    };
    let staging_name = durable::temp_name(".staging-");
    let staging = deploy_dir.join(&staging_name);
    let result = (|| {
        let stats = checkout(
            &repo,
            &commit_id,
            &staging,
            &CheckoutOptions {
                subpath: None,
                mode: LinkMode::Hardlink,
            },
        )?;
        tracing::info!(staging = %staging.display(), "deploy: checked out");
        let root = durable::open_dir_at(dir_fd.as_fd(), staging_name.as_str()).at_path(&staging)?;
        prepare_tree(root.as_fd(), &staging)?;
        let copied = !files.installed(&boot, &os)?;
        if copied {
            let boot_fd = durable::open_dir(&boot).at_path(&boot)?;
            space::check(boot_fd.as_fd(), &boot, files.size + 64 * 1024)?;
        }
        let usr = staging.join("usr");
        let usr_fd = durable::open_dir_at(root.as_fd(), "usr").at_path(&usr)?;
        let new_defaults = usr.join("etc");
        let new_fd = durable::open_dir_at(usr_fd.as_fd(), "etc").at_path(&new_defaults)?;
        // The old deployment's trees, each opened without following a symlink; one that
        // is not a real directory counts as absent.
        let old = merge_from.map(|d| deploy_dir.join(d.id.to_string()));
        let old_fd = match (&old, merge_from) {
            (Some(p), Some(d)) => sub_dir(dir_fd.as_fd(), &d.id.to_string(), p)?,
            _ => None,
        };
        let old_usr = match (&old_fd, &old) {
            (Some(fd), Some(p)) => sub_dir(fd.as_fd(), "usr", &p.join("usr"))?,
            _ => None,
        };
        let (old_defaults_path, local_path) = match &old {
            Some(p) => (p.join("usr/etc"), p.join("etc")),
            None => (PathBuf::new(), PathBuf::new()),
        };
        let old_defaults = match &old_usr {
            Some(fd) => sub_dir(fd.as_fd(), "etc", &old_defaults_path)?,
            None => None,
        };
        let local = match &old_fd {
            Some(fd) => sub_dir(fd.as_fd(), "etc", &local_path)?,
            None => None,
        };
        let report = etc_merge::merge_at(&MergeAt {
            old_defaults: old_defaults.as_ref().map(|fd| Root {
                fd: fd.as_fd(),
                path: &old_defaults_path,
            }),
            local: local.as_ref().map(|fd| Root {
                fd: fd.as_fd(),
                path: &local_path,
            }),
            new_defaults: Root {
                fd: new_fd.as_fd(),
                path: &new_defaults,
            },
            dest_parent: Root {
                fd: root.as_fd(),
                path: &staging,
            },
            dest_name: OsStr::new("etc"),
            expected: Some(&expected),
        })?;
        let merge = merge_from.map(|_| report);
        tracing::info!(merged_from = ?merge_from.map(|d| d.id.to_string()), "deploy: /etc merged");
        files.install(&repo, &boot, &os)?;
        tracing::info!(copied, "deploy: boot files installed");
        Ok::<_, Error>((stats, copied, merge))
    })();
    let (stats, copied, merge) = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "deploy: failed; removing the staging tree");
            let _ = durable::remove_tree_at(dir_fd.as_fd(), &staging_name);
            return Err(e);
        }
    };

    let mut kargs: Vec<String> = match merge_from.and_then(|d| d.origin.as_ref()) {
        Some(o) => o.kargs.clone(),
        None => sysroot.config().kargs.clone(),
    };
    for k in &opts.kargs {
        add_karg(&mut kargs, k);
    }
    let version = commit
        .metadata
        .iter()
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.clone());
    let origin = Origin {
        refspec,
        kargs: kargs.clone(),
        signers: signers.clone(),
        pinned: false,
        version: version.clone(),
        boot_dir: files.rel_dir(&os),
        deployed_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        etc_merged_from: merge_from.map(|d| d.id),
    };
    let publish = (|| {
        tracing::debug!(dir = %deploy_dir.display(), "deploy: syncfs");
        rustix::fs::syncfs(&dir_fd).at_path(&deploy_dir)?;
        durable::write_atomic(
            dir_fd.as_fd(),
            &id.origin_name(),
            origin.to_text().as_bytes(),
            0o644,
            &deploy_dir.join(id.origin_name()),
        )?;
        rustix::fs::renameat(
            &dir_fd,
            staging_name.as_str(),
            &dir_fd,
            id.to_string().as_str(),
        )
        .at_path(deploy_dir.join(id.to_string()))?;
        rustix::fs::fsync(&dir_fd).at_path(&deploy_dir)
    })();
    if let Err(e) = publish {
        let _ = durable::remove_tree_at(dir_fd.as_fd(), &staging_name);
        let _ = rustix::fs::unlinkat(
            &dir_fd,
            id.origin_name().as_str(),
            rustix::fs::AtFlags::empty(),
        );
        return Err(e);
    }

    tracing::info!(deployment = %id, "deploy: deployment published");
    let dref = DeploymentRef { os: os.clone(), id };
    let generation = state.max_generation() + 1;
    let entry = make_entry(&os, &dref, generation, version.as_deref(), &files, &kargs);
    let name = EntryName::new(&format!("update-{os}-{generation}"))?.with_tries(retries)?;
    entries.write(&name, &entry)?;
    tracing::info!(entry = %name.file_name(), generation, "deploy: boot entry written");

    // Cleanup: keep the new one, the booted one, the one merged from, and pinned ones.
    // The new deployment is live already, so a failure here is reported, not fatal: the
    // next deploy retries it.
    let keep = |d: &Deployment| {
        Some(d.id) == state.booted || merge_from.is_some_and(|m| m.id == d.id) || d.pinned()
    };
    let mut removed = Vec::new();
    let mut warnings = Vec::new();
    for d in state.deployments.iter().filter(|d| !keep(d)) {
        let r = entries
            .remove(&d.entry_name)
            .and_then(|_| remove_deployment(&deploy_dir, dir_fd.as_fd(), &d.id));
        match r {
            Ok(()) => removed.push(d.id),
            Err(e) => warnings.push(format!(
                "could not remove old deployment {}: {}",
                d.id,
                error_ext::Chain(&e)
            )),
        }
    }
    let mut used: Vec<String> = state
        .deployments
        .iter()
        .filter(|d| !removed.contains(&d.id))
        .flat_map(|d| std::iter::once(&d.entry.linux).chain(&d.entry.initrd))
        .filter_map(|p| {
            Path::new(p.trim_start_matches('/'))
                .parent()
                .and_then(Path::to_str)
                .map(str::to_owned)
        })
        .collect();
    tracing::info!(
        removed = removed.len(),
        warnings = warnings.len(),
        "deploy: old deployments cleaned up"
    );
    used.push(files.rel_dir(&os));
    let removed_boot = bootfiles::remove_unused(&boot, &os, &used).unwrap_or_else(|e| {
        warnings.push(format!(
            "could not remove unused boot files: {}",
            error_ext::Chain(&e)
        ));
        Vec::new()
    });
    Ok(DeployReport {
        deployment: dref,
        entry: name.file_name(),
        version,
        signers,
        merge,
        checkout: stats,
        boot_files_copied: copied,
        removed,
        removed_boot,
        warnings,
    })
}

/// Check the commit's signatures: against the keys of the remote it came from when the
/// refspec names one, else against every remote's keys.
fn verify(repo: &Repo, refspec: &str, commit: &CommitId) -> Result<Vec<String>> {
    let keys = match refspec.split_once(':') {
        Some((remote, _)) => Remote::open(repo, remote)?.trusted_keys()?,
        None => {
            let mut all = TrustedKeys::new();
            for r in Remote::list(repo)? {
                for (name, key) in r.trusted_keys()?.iter() {
                    all.insert(format!("{}/{name}", r.name), *key);
                }
            }
            all
        }
    };
    if keys.is_empty() {
        return Err(Error::NoTrustedKeys { commit: *commit });
    }
    Ok(verify_commit(repo, commit, &keys)?.trusted)
}

/// Shape a fresh checkout into a deployment: `/usr/etc` holds the defaults (a tree with only
/// `/etc` gets it moved there), and the mount points `prepare-root` needs exist. Everything
/// is relative to the handle `root` of the checkout (shown as `shown`), and nothing is
/// followed through a symlink.
fn prepare_tree(root: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    let etc = kind_at(root, "etc", &shown.join("etc"))?;
    let usr = durable::mkdir_all_at(root, Path::new("usr"), &shown.join("usr"))?;
    let usr_etc = kind_at(usr.as_fd(), "etc", &shown.join("usr/etc"))?;
    let is_dir = |k: Option<FileType>| k.map(|k| k == FileType::Directory);
    match (is_dir(etc), is_dir(usr_etc)) {
        (Some(true), Some(true)) => return Err(Error::EtcTwice),
        (Some(true), None) => {
            rustix::fs::renameat(root, "etc", &usr, "etc").at_path(shown.join("usr/etc"))?;
        }
        (Some(false), _) => return Err(not_a_dir("/etc")),
        (_, Some(false)) => return Err(not_a_dir("/usr/etc")),
        (None, None) => {
            rustix::fs::mkdirat(&usr, "etc", Mode::from_raw_mode(0o755))
                .at_path(shown.join("usr/etc"))?;
        }
        (None, Some(true)) => {}
    }
    for d in ["var", "sysroot"] {
        let p = shown.join(d);
        match kind_at(root, d, &p)? {
            Some(FileType::Directory) => {}
            Some(_) => return Err(not_a_dir(&format!("/{d}"))),
            None => rustix::fs::mkdirat(root, d, Mode::from_raw_mode(0o755)).at_path(&p)?,
        }
    }
    Ok(())
}

/// The tree has something else than a directory at `path`: refused as [`Error::TreeShape`]
/// (the commit's listings are checked before the checkout, so this is a last line).
fn not_a_dir(path: &str) -> Error {
    Error::TreeShape {
        path: path.to_owned(),
        expected: "a directory",
        found: "something else".to_owned(),
    }
}

/// The type of `name` in `dir` (not following a symlink), `None` if there is nothing.
fn kind_at(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e).at_path(shown),
    }
}

/// The directory `name` in `dir`, opened without following a symlink; `None` if it is
/// missing or not a real directory.
pub(crate) fn sub_dir(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<Option<OwnedFd>> {
    match durable::open_dir_at(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(e) => Err(e).at_path(shown),
    }
}

/// The commit's `/etc` defaults (its `/usr/etc`, or its `/etc` which becomes `/usr/etc`):
/// every regular file's object id and header, for the merge to check the copies against.
pub(crate) fn etc_defaults(repo: &Repo, commit: &CommitId) -> Result<Expected> {
    let mut expected = Expected::default();
    for prefix in ["usr/etc", "etc"] {
        if shape::dir_at(repo, commit, prefix)?.is_none() {
            continue;
        }
        let entry = store::walk::resolve_path(repo, commit, prefix)?;
        let walk = Walker::from_entry(
            repo,
            entry,
            WalkOptions {
                metadata: true,
                ..WalkOptions::default()
            },
        );
        for e in walk {
            let e = e?;
            let Node::File { id, .. } = &e.node else {
                continue;
            };
            let Some(header) = e.header(repo)? else {
                continue;
            };
            if header.is_symlink() {
                continue;
            }
            let rel = e.path.strip_prefix(prefix).unwrap_or(&e.path);
            expected.insert(format!("/etc{rel}"), *id, header);
        }
    }
    Ok(expected)
}

fn make_entry(
    os: &str,
    dref: &DeploymentRef,
    generation: u64,
    version: Option<&str>,
    files: &BootFiles,
    kargs: &[String],
) -> Entry {
    let short = &dref.id.commit.to_string()[..12];
    let mut options: Vec<String> = kargs.to_vec();
    options.push(format!("{DEPLOYMENT_KARG}{dref}"));
    let dir = files.rel_dir(os);
    Entry {
        title: Some(match version {
            Some(v) => format!("{os} {v} ({short})"),
            None => format!("{os} ({short})"),
        }),
        version: Some(generation.to_string()),
        sort_key: Some(format!("update-{os}")),
        linux: format!("/{dir}/{KERNEL}"),
        initrd: files
            .initramfs
            .as_ref()
            .map(|_| format!("/{dir}/{INITRAMFS}"))
            .into_iter()
            .collect(),
        options: vec![options.join(" ")],
        ..Entry::default()
    }
}

/// Add `arg` to `kargs`: a `key=value` replaces every earlier `key=...`, a plain word is
/// added once.
fn add_karg(kargs: &mut Vec<String>, arg: &str) {
    match arg.split_once('=') {
        Some((key, _)) => kargs.retain(|k| k.split_once('=').map(|(k2, _)| k2) != Some(key)),
        None => kargs.retain(|k| k != arg),
    }
    kargs.push(arg.to_owned());
}

/// Remove a deployment's directory, then its origin file.
pub(crate) fn remove_deployment(
    deploy_dir: &Path,
    dir: std::os::fd::BorrowedFd<'_>,
    id: &DeploymentId,
) -> Result<()> {
    let name = id.to_string();
    durable::remove_tree_at(dir, &name).at_path(deploy_dir.join(&name))?;
    match rustix::fs::unlinkat(dir, id.origin_name().as_str(), rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e).at_path(deploy_dir.join(id.origin_name())),
    }
    rustix::fs::fsync(dir).at_path(deploy_dir)
}

/// Remove what an interrupted deploy or cleanup left: hidden temp names, deployments no entry
/// names (they never became bootable, or their entry was already removed), and origin
/// files without a deployment.
fn clean_leftovers(
    deploy_dir: &Path,
    dir: std::os::fd::BorrowedFd<'_>,
    state: &State,
) -> Result<()> {
    for id in &state.orphans {
        if Some(*id) != state.booted {
            remove_deployment(deploy_dir, dir, id)?;
        }
    }
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir).at_path(deploy_dir)? {
        let name = e
            .at_path(deploy_dir)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    for name in names {
        // Every hidden name here is a temp: staging trees, the checkout's own temp beside
        // one (`..staging-*.tmp-*`), atomic-write temps.
        if name.starts_with('.') {
            durable::remove_tree_at(dir, &name).at_path(deploy_dir.join(&name))?;
        } else if let Some(stem) = name.strip_suffix(".origin") {
            if DeploymentId::parse(stem).is_ok()
                && kind_at(dir, stem, &deploy_dir.join(stem))?.is_none()
            {
                let _ = rustix::fs::unlinkat(dir, name.as_str(), rustix::fs::AtFlags::empty());
            }
        }
    }
    Ok(())
}
