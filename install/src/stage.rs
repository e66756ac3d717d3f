//! Lay out a device's sysroot and ESP in two directories: the `update sysroot init` logic,
//! the commit placed in the sysroot's repository, the deploy `update deploy` runs, the
//! bootloader, and everything the device needs to update itself from its first boot.
//!
//! On the device the built-in backend opens `/sysroot`, keeps the remote `update` of its
//! repository in step with `/etc/update/update.toml`, and deploys `update:REF`. So the
//! install adds that remote (URL as the device sees it, the trusted keys), deploys
//! `update:REF` (the origin the backend reads the tracked ref from), writes the same
//! source and keys into the deployment's `/etc/update/update.toml`, and points the
//! sysroot's `boot` at the ESP's mount point on the device (`/efi`, mounted by an
//! `/etc/fstab` line), while the deploy itself writes to the staged ESP.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use deploy::deploy::{deploy, DeployOptions};
use deploy::sysroot::{BootLocation, Sysroot, SysrootConfig, CONFIG_FILE, UPDATE_DIR};
use frontend::backend::builtin::REMOTE;
use frontend::config::{split_source, validate_source, Config};
use frontend::schedule::{self, Schedule};
use store::remote::{KeySource, Remote, RemoteTls};
use store::walk::{resolve_path, Node, WalkOptions, Walker};
use store::{CommitId, RefName, Repo, RepoMode};
use transport::pull::{pull, PullOptions};

use crate::copy::{copy_commit, CopyStats};
use crate::error::{Error, IoResultExt, Result};

/// Where the commit comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A local repository (bare or archive) and a ref or commit of it.
    Repo {
        /// The repository.
        path: PathBuf,
        /// The ref (or commit) to install.
        rev: String,
    },
    /// A published repository, pulled and verified as a device pulls it.
    Url {
        /// Its URL.
        url: String,
        /// The ref to pull.
        rev: String,
    },
}

/// What to install, and how the device is set up. Shared by both install commands.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the commit comes from.
    pub source: Source,
    /// The OS name (default: `ID` of the commit's os-release, else `linux`).
    pub os: Option<String>,
    /// Trusted keys: name and public key file. They verify the install and the device's
    /// updates.
    pub keys: Vec<(String, PathBuf)>,
    /// `URL[#REF]` the device updates from (default: the `--from` URL).
    pub device_source: Option<String>,
    /// The device's update schedule (`update config schedule UNIT N`).
    pub schedule: Option<Schedule>,
    /// Kernel arguments besides `root=` and `rw`.
    pub kargs: Vec<String>,
    /// Boot tries of a new deployment.
    pub retries: Option<u32>,
    /// systemd-boot to use when the commit has none.
    pub bootloader: Option<PathBuf>,
    /// Require a signature by a trusted key.
    pub verify: bool,
    /// Where the ESP is mounted on the device.
    pub esp_mount: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source: Source::Repo {
                path: PathBuf::new(),
                rev: String::new(),
            },
            os: None,
            keys: Vec::new(),
            device_source: None,
            schedule: None,
            kargs: Vec::new(),
            retries: None,
            bootloader: None,
            verify: true,
            esp_mount: PathBuf::from("/efi"),
        }
    }
}

/// Where the systemd-boot binary came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootloaderFrom {
    /// The commit's own tree.
    Commit(String),
    /// `--bootloader`.
    Given(PathBuf),
    /// This machine.
    Host(PathBuf),
}

impl std::fmt::Display for BootloaderFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootloaderFrom::Commit(p) => write!(f, "the commit's /{p}"),
            BootloaderFrom::Given(p) => write!(f, "{} (--bootloader)", p.display()),
            BootloaderFrom::Host(p) => write!(f, "this machine's {}", p.display()),
        }
    }
}

/// What staging did.
#[derive(Debug)]
pub struct Staged {
    /// The commit installed.
    pub commit: CommitId,
    /// The OS name.
    pub os: String,
    /// The deployment, `COMMIT.SERIAL`.
    pub deployment: String,
    /// Its boot entry's file name.
    pub entry: String,
    /// Trusted keys whose signatures verified.
    pub signers: Vec<String>,
    /// How the file objects arrived (`None`: pulled).
    pub copied: Option<CopyStats>,
    /// Where systemd-boot came from.
    pub bootloader: BootloaderFrom,
    /// The kernel arguments of the entry.
    pub kargs: Vec<String>,
    /// Things the builder should know.
    pub warnings: Vec<String>,
}

/// The commit's path of systemd-boot for this architecture.
fn bootloader_in_commit(efi: &str) -> String {
    format!("usr/lib/systemd/boot/efi/{efi}")
}

/// The checked options: the device's source URL and ref, and the keys as base64.
pub(crate) struct Checked {
    url: Option<String>,
    rev: String,
    keys: BTreeMap<String, String>,
}

/// Check the options before anything is written.
pub(crate) fn check(opts: &Options) -> Result<Checked> {
    if let Some(os) = &opts.os {
        deploy::sysroot::validate_os_name(os)?;
    }
    for k in &opts.kargs {
        deploy::sysroot::validate_karg(k)?;
    }
    let mut keys = BTreeMap::new();
    for (name, path) in &opts.keys {
        frontend::keys::validate_name(name)?;
        let text = frontend::keys::parse(&path.to_string_lossy())?;
        if keys.insert(name.clone(), text).is_some() {
            return Err(Error::invalid(format!("key name '{name}'"), "given twice"));
        }
    }
    if opts.verify && keys.is_empty() {
        return Err(Error::invalid(
            "trusted keys",
            "give --key NAME=PUBFILE (the key the commits are signed with), or --no-verify",
        ));
    }
    let (from, rev) = match &opts.source {
        Source::Repo { rev, .. } => (None, rev.clone()),
        Source::Url { url, rev } => (Some(url.clone()), rev.clone()),
    };
    let url = match (&opts.device_source, from) {
        (Some(s), _) => {
            validate_source(s)?;
            Some(split_source(s).0.to_owned())
        }
        (None, Some(u)) => Some(u),
        (None, None) => None,
    };
    Ok(Checked { url, rev, keys })
}

/// Bytes the root filesystem needs for `commit` of `repo`: the file contents in 4 KiB
/// blocks, a block per directory in the deployment and two in the repository (listing
/// and metadata), the deployment's `/etc` copy, and a tenth plus 64 MiB for the journal,
/// inode tables and reserved blocks; at least 16 KiB per inode (mke2fs's default ratio).
pub fn root_need(repo: &Repo, commit: &CommitId) -> Result<u64> {
    let mut data = 0u64;
    let mut inodes = 0u64;
    let mut seen = std::collections::HashSet::new();
    for e in Walker::commit(
        repo,
        commit,
        WalkOptions {
            metadata: true,
            ..WalkOptions::default()
        },
    )? {
        let e = e?;
        match &e.node {
            Node::Dir { .. } => {
                data += 3 * 4096;
                inodes += 3;
            }
            Node::File { id, .. } => {
                if seen.insert(*id) {
                    let size = e.header(repo)?.map_or(0, |h| h.size);
                    data += size.div_ceil(4096) * 4096;
                    inodes += 1;
                }
            }
        }
    }
    let deploy_need = deploy::space::estimate(repo, commit)?.sysroot;
    let need = data + deploy_need + data / 10 + (64 << 20);
    Ok(need.max(inodes.saturating_mul(16384) + (64 << 20)))
}

/// Where [`populate`] lays things out.
pub(crate) struct Place<'a> {
    /// The sysroot (an existing directory).
    pub root: &'a Path,
    /// The ESP (an existing directory).
    pub esp: &'a Path,
    /// `root=...` for the kernel command line.
    pub root_karg: &'a str,
    /// The ESP's filesystem UUID for `/etc/fstab` (none: no line, a warning).
    pub esp_uuid: Option<&'a str>,
}

/// Lay out the sysroot and the ESP and deploy. `need_check` is called with the
/// repository and commit before the deploy, to refuse a too small target.
pub(crate) fn populate(
    place: &Place<'_>,
    opts: &Options,
    checked: &Checked,
    need_check: &mut dyn FnMut(&Repo, &CommitId) -> Result<()>,
    progress: &mut dyn FnMut(&str),
) -> Result<Staged> {
    let Place {
        root,
        esp,
        root_karg,
        esp_uuid,
    } = *place;
    let mut warnings = Vec::new();
    // Key files for the remote and an empty kernel command line for deploy: small, so in
    // the system's temp directory, not on the target.
    let work = tempfile::Builder::new()
        .prefix("update-install-")
        .tempdir()
        .at_path(std::env::temp_dir())?;
    // The repository first: the OS name may come from the commit.
    let upd = root.join(UPDATE_DIR);
    std::fs::create_dir_all(&upd).at_path(&upd)?;
    let repo = Repo::init(upd.join("repo"), RepoMode::Bare)?;
    let key_dir = work.path().join("keys");
    std::fs::create_dir(&key_dir).at_path(&key_dir)?;
    for (name, key) in &checked.keys {
        let p = key_dir.join(format!("{name}.pub"));
        std::fs::write(&p, format!("{key}\n")).at_path(&p)?;
    }
    let have_remote = !checked.keys.is_empty() && checked.url.is_some();
    let rev = checked.rev.as_str();
    let (commit, copied, deploy_rev) = match &opts.source {
        Source::Repo { path, .. } => {
            let src = Repo::open(path)?;
            let commit = src.resolve_rev(rev)?;
            need_check(&src, &commit)?;
            progress(&format!("copying commit {commit} from {}", path.display()));
            let stats = copy_commit(&src, &repo, &commit)?;
            let name = RefName::new(short_ref(rev, &commit))?;
            let deploy_rev = if have_remote {
                add_remote(&repo, checked.url.as_deref().unwrap_or_default(), &key_dir)?;
                repo.write_remote_ref(REMOTE, &name, &commit)?;
                format!("{REMOTE}:{name}")
            } else {
                repo.write_ref(&name, &commit)?;
                name.to_string()
            };
            (commit, Some(stats), deploy_rev)
        }
        Source::Url { url, .. } => {
            if checked.keys.is_empty() {
                return Err(Error::invalid(
                    "--from",
                    "pulling needs a trusted key: give --key NAME=PUBFILE",
                ));
            }
            let name = RefName::new(rev)?;
            let remote = add_remote(&repo, url, &key_dir)?;
            progress(&format!("pulling {name} from {url}"));
            let popts = PullOptions {
                verify: opts.verify,
                ..PullOptions::default()
            };
            pull(&repo, &remote, Some(&name), &popts, &mut |_| {}).map_err(Box::new)?;
            let commit = repo.read_remote_ref(REMOTE, &name)?.ok_or_else(|| {
                Error::invalid(format!("ref '{name}'"), format!("{url} did not give it"))
            })?;
            if let Some(device_url) = checked.url.as_deref().filter(|u| *u != url) {
                // Keep the trust state the pull recorded: the device will not take an
                // older summary than the one it was installed from.
                Remote::reconfigure(
                    &repo,
                    REMOTE,
                    device_url,
                    KeySource::Set(&key_dir),
                    &RemoteTls::default(),
                )?;
            }
            need_check(&repo, &commit)?;
            (commit, None, format!("{REMOTE}:{name}"))
        }
    };
    let os = match &opts.os {
        Some(o) => o.clone(),
        None => os_id(&repo, &commit).unwrap_or_else(|| "linux".to_owned()),
    };
    let mut kargs = vec![root_karg.to_owned(), "rw".to_owned()];
    kargs.extend(opts.kargs.iter().cloned());
    Sysroot::init(
        root,
        &os,
        Some(BootLocation::Esp(esp.to_path_buf())),
        &kargs,
        opts.retries,
    )?;
    set_boot(root, &opts.esp_mount)?;
    let sysroot = Sysroot::open(root, Some(esp))?;
    let cmdline = work.path().join("cmdline");
    std::fs::write(&cmdline, "").at_path(&cmdline)?;
    progress(&format!("deploying {deploy_rev} as OS {os}"));
    let report = deploy(
        &sysroot,
        &DeployOptions {
            os: Some(os.clone()),
            rev: Some(deploy_rev),
            verify: opts.verify,
            proc_cmdline: cmdline,
            ..DeployOptions::default()
        },
    )?;
    warnings.extend(report.warnings.iter().cloned());
    let dep = sysroot
        .deployments_dir(&os)
        .join(report.deployment.id.to_string());

    let bootloader = install_bootloader(&repo, &commit, esp, opts.bootloader.as_deref())?;
    progress(&format!("systemd-boot from {bootloader}"));

    // The device's front end: source, keys, schedule.
    let config = Config {
        source: opts.device_source.clone().or_else(|| match &opts.source {
            Source::Url { url, rev } => Some(format!("{url}#{rev}")),
            Source::Repo { .. } => None,
        }),
        keys: checked.keys.clone(),
        schedule: opts.schedule,
        verify: opts.verify,
        boot_retry_limit: sysroot.config().boot_retry_limit,
        ..Config::default()
    };
    if config.source.is_none() {
        warnings.push("no --source: the device has no source to update from (set one there with `update config source URL`)".to_owned());
    }
    config.save(&dep)?;
    if let Some(s) = &opts.schedule {
        schedule::write_units(&dep, s, "/usr/bin/update")?;
    }
    // The ESP's mount point and its fstab line.
    let rel_mount = opts.esp_mount.strip_prefix("/").unwrap_or(&opts.esp_mount);
    let mount_dir = dep.join(rel_mount);
    if std::fs::symlink_metadata(&mount_dir).is_err() {
        std::fs::create_dir_all(&mount_dir).at_path(&mount_dir)?;
        warnings.push(format!(
            "the commit has no /{}: created it in the deployment",
            rel_mount.display()
        ));
    }
    match esp_uuid {
        Some(uuid) => {
            let fstab = dep.join("etc/fstab");
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&fstab)
                .at_path(&fstab)?;
            writeln!(
                f,
                "# The EFI system partition: boot entries and kernels (written by `update install`).\nUUID={uuid} {} vfat umask=0077,shortname=winnt 0 2",
                opts.esp_mount.display()
            )
            .at_path(&fstab)?;
            f.sync_all().at_path(&fstab)?;
        }
        None => warnings.push(format!(
            "no /etc/fstab line for the ESP: its UUID is unknown; mount it at {} on the device",
            opts.esp_mount.display()
        )),
    }
    Ok(Staged {
        commit,
        os,
        deployment: report.deployment.id.to_string(),
        entry: report.entry,
        signers: report.signers,
        copied,
        bootloader,
        kargs,
        warnings,
    })
}

/// The ref name to record: `rev` itself, or `install` when a commit id was given.
fn short_ref<'a>(rev: &'a str, commit: &CommitId) -> &'a str {
    if rev == commit.to_string() {
        "install"
    } else {
        rev
    }
}

fn add_remote(repo: &Repo, url: &str, keys: &Path) -> Result<Remote> {
    Ok(Remote::add(
        repo,
        REMOTE,
        url,
        KeySource::Set(keys),
        &RemoteTls::default(),
    )?)
}

/// Point sysroot.toml's `boot` at `mount`, where the ESP is on the device.
fn set_boot(root: &Path, mount: &Path) -> Result<()> {
    if !mount.is_absolute() {
        return Err(Error::invalid(
            format!("ESP mount point {}", mount.display()),
            "must be an absolute path on the device (e.g. /efi)",
        ));
    }
    let upd = root.join(UPDATE_DIR);
    let path = upd.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).at_path(&path)?;
    let mut config: SysrootConfig = toml::from_str(&text)
        .map_err(|e| Error::invalid(path.display().to_string(), e.message().to_owned()))?;
    config.boot = mount.to_path_buf();
    let text =
        toml::to_string(&config).map_err(|e| Error::invalid("sysroot.toml", e.to_string()))?;
    let dir = store::durable::open_dir(&upd).at_path(&upd)?;
    store::durable::write_atomic(dir.as_fd(), CONFIG_FILE, text.as_bytes(), 0o644, &path)?;
    Ok(())
}

/// `ID=` of the commit's os-release.
fn os_id(repo: &Repo, commit: &CommitId) -> Option<String> {
    for p in ["usr/lib/os-release", "usr/etc/os-release", "etc/os-release"] {
        let Ok(e) = resolve_path(repo, commit, p) else {
            continue;
        };
        let Node::File { id, .. } = e.node else {
            continue;
        };
        let mut buf = Vec::new();
        if repo
            .copy_file_verified(&id, &mut buf, Path::new(p))
            .is_err()
        {
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("ID=") {
                let v = v.trim().trim_matches('"');
                if deploy::sysroot::validate_os_name(v).is_ok() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// Put systemd-boot at `EFI/systemd/systemd-bootARCH.efi` and the removable-media path
/// `EFI/BOOT/BOOTARCH.EFI`: the commit's own, else `given`, else this machine's.
fn install_bootloader(
    repo: &Repo,
    commit: &CommitId,
    esp: &Path,
    given: Option<&Path>,
) -> Result<BootloaderFrom> {
    let (_, efi, removable) = crate::layout::arch()?;
    let in_commit = bootloader_in_commit(efi);
    let mut bytes = Vec::new();
    let from = match resolve_path(repo, commit, &in_commit).map(|e| e.node) {
        Ok(Node::File { id, .. }) if !repo.read_file(&id)?.0.is_symlink() => {
            repo.copy_file_verified(&id, &mut bytes, Path::new(&in_commit))?;
            BootloaderFrom::Commit(in_commit.clone())
        }
        _ => {
            let (p, from) = match given {
                Some(p) => (p.to_path_buf(), BootloaderFrom::Given(p.to_path_buf())),
                None => {
                    let host = Path::new("/").join(&in_commit);
                    (host.clone(), BootloaderFrom::Host(host))
                }
            };
            bytes = match std::fs::read(&p) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && given.is_none() => {
                    return Err(Error::NoBootloader { in_commit, host: p })
                }
                Err(e) => return Err(e).at_path(&p),
            };
            from
        }
    };
    for (dir, name) in [("EFI/systemd", efi), ("EFI/BOOT", removable)] {
        let d = esp.join(dir);
        std::fs::create_dir_all(&d).at_path(&d)?;
        let p = d.join(name);
        std::fs::write(&p, &bytes).at_path(&p)?;
    }
    Ok(from)
}
