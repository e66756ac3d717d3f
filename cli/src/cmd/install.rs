//! `update install to-disk` and `update install to-filesystem`: a new device from a commit.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use install::disk::{to_disk, to_filesystem, DiskOptions, FilesystemOptions};
use install::layout::parse_size;
use install::stage::{Options, Source, Staged};

const DISK_EXAMPLE: &str = "\
Examples:
  update install to-disk disk.img --size 4G --repo /srv/repo --ref os/stable \\
      --key release=/srv/release.key.pub --source https://updates.example.com/repo#os/stable \\
      --karg console=ttyS0
  update install to-disk /dev/sdb --from https://updates.example.com/repo#os/stable \\
      --key release=release.pub

Writes a GPT disk (Discoverable Partitions: an ESP with systemd-boot, an ext4 root) holding a
sysroot with the commit deployed and the device set up to update itself from --source. An
image file needs neither root nor loop devices; a block device needs root and must be a whole
disk that is not mounted or in use. An install that was cut off is detected and redone.";

const FS_EXAMPLE: &str = "\
Examples:
  update install to-filesystem /mnt/root --esp /mnt/root-esp --repo /srv/repo --ref os/stable \\
      --key release=/srv/release.key.pub --source https://updates.example.com/repo

For your own partitioning (RAID, LUKS, LVM): MOUNTPOINT must be an empty mounted filesystem;
root= is its UUID (findmnt) unless --root-karg is given.";

/// Install a commit onto a new device.
#[derive(clap::Subcommand, Debug)]
pub enum InstallCommand {
    /// Partition and fill a disk or image file.
    #[command(after_help = DISK_EXAMPLE)]
    ToDisk(DiskArgs),
    /// Fill filesystems you partitioned and mounted yourself.
    #[command(after_help = FS_EXAMPLE)]
    ToFilesystem(FsArgs),
}

/// What both commands share.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// A local repository holding the commit.
    #[arg(long, value_name = "DIR", requires = "rev", conflicts_with = "from")]
    repo: Option<PathBuf>,
    /// The ref (or commit) of --repo to install.
    #[arg(long = "ref", value_name = "REF")]
    rev: Option<String>,
    /// A published repository to pull from, as a device does: URL#REF.
    #[arg(long, value_name = "URL#REF", required_unless_present = "repo")]
    from: Option<String>,
    /// A trusted key: NAME=PUBFILE (repeatable). It verifies the install and the device's
    /// updates.
    #[arg(long = "key", value_name = "NAME=PUBFILE")]
    keys: Vec<String>,
    /// Where the device updates from: URL[#REF] as the device sees it (default: --from).
    #[arg(long, value_name = "URL[#REF]")]
    source: Option<String>,
    /// The device's update schedule, as `update config schedule` takes it: 'minute 5'.
    #[arg(long, value_name = "'UNIT N'")]
    schedule: Option<String>,
    /// The OS name (default: ID of the commit's os-release).
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
    /// A kernel argument besides root= and rw (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// Boot tries a new deployment gets before the firmware falls back.
    #[arg(long, value_name = "N")]
    boot_retry_limit: Option<u32>,
    /// systemd-boot to install when the commit has none (default: this machine's).
    #[arg(long, value_name = "PATH")]
    bootloader: Option<PathBuf>,
    /// Where the ESP is mounted on the device.
    #[arg(long, value_name = "DIR", default_value = "/efi")]
    esp_mount: PathBuf,
    /// Install a commit no trusted key signed. Dangerous.
    #[arg(long)]
    no_verify: bool,
}

impl Common {
    fn options(&self) -> anyhow::Result<Options> {
        let source = match (&self.repo, &self.from) {
            (Some(path), _) => Source::Repo {
                path: path.clone(),
                rev: self.rev.clone().unwrap_or_default(),
            },
            (None, Some(from)) => {
                let (url, rev) = frontend::config::split_source(from);
                let rev = rev
                    .map(str::to_owned)
                    .or_else(|| self.rev.clone())
                    .ok_or_else(|| anyhow::anyhow!("--from {from}: name the ref: URL#REF"))?;
                Source::Url {
                    url: url.to_owned(),
                    rev,
                }
            }
            (None, None) => anyhow::bail!("give --repo DIR --ref REF or --from URL#REF"),
        };
        let mut keys = Vec::new();
        for k in &self.keys {
            let (name, path) = k
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--key {k}: give NAME=PUBFILE"))?;
            keys.push((name.to_owned(), PathBuf::from(path)));
        }
        let schedule = match &self.schedule {
            Some(s) => {
                let mut w = s.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some(u), Some(n), None) => Some(frontend::schedule::Schedule::parse(u, n)?),
                    _ => anyhow::bail!("--schedule '{s}': give UNIT N, e.g. 'hourly 6'"),
                }
            }
            None => None,
        };
        if self.no_verify {
            eprintln!("WARNING: signature verification is OFF: installing a commit no trusted key vouches for");
        }
        Ok(Options {
            source,
            os: self.os.clone(),
            keys,
            device_source: self.source.clone(),
            schedule,
            kargs: self.kargs.clone(),
            retries: self.boot_retry_limit,
            bootloader: self.bootloader.clone(),
            verify: !self.no_verify,
            esp_mount: self.esp_mount.clone(),
        })
    }
}

/// `update install to-disk`.
#[derive(clap::Args, Debug)]
pub struct DiskArgs {
    /// A whole-disk block device, or an image file to create.
    #[arg(value_name = "TARGET")]
    target: PathBuf,
    /// Size of a new image file: bytes or with K, M, G, T (e.g. 4G).
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// Size of the EFI system partition (at least 512M).
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    esp_size: String,
    /// Replace an existing image file.
    #[arg(long)]
    force: bool,
    /// Where to stage the sysroot (default: beside TARGET; same filesystem as --repo lets
    /// store objects be hardlinked instead of copied).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `update install to-filesystem`.
#[derive(clap::Args, Debug)]
pub struct FsArgs {
    /// The root filesystem, mounted and empty.
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    /// The ESP, mounted.
    #[arg(long, value_name = "DIR")]
    esp: PathBuf,
    /// The root= kernel argument (default: root=UUID= of MOUNTPOINT's filesystem).
    #[arg(long, value_name = "root=...")]
    root_karg: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Run `update install ...`.
pub fn run(cmd: InstallCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut progress = |line: &str| eprintln!("{line}");
    match cmd {
        InstallCommand::ToDisk(a) => {
            let opts = a.common.options()?;
            let dopts = DiskOptions {
                size: a.size.as_deref().map(parse_size).transpose()?,
                esp_size: parse_size(&a.esp_size)?,
                force: a.force,
                workdir: a.workdir,
            };
            let r = to_disk(&a.target, &opts, &dopts, &mut progress)?;
            print_staged(out, &r.staged)?;
            writeln!(
                out,
                "  ESP: {} MiB at {} MiB (vfat UUID {}); root: {} MiB at {} MiB (ext4 UUID {})",
                r.layout.esp_size >> 20,
                r.layout.esp_start >> 20,
                r.esp_uuid,
                r.layout.root_size >> 20,
                r.layout.root_start >> 20,
                r.root_uuid
            )?;
            writeln!(out, "installed onto {}", a.target.display())?;
        }
        InstallCommand::ToFilesystem(a) => {
            let opts = a.common.options()?;
            let r = to_filesystem(
                &a.mountpoint,
                &a.esp,
                &opts,
                &FilesystemOptions {
                    root_karg: a.root_karg,
                },
                &mut progress,
            )?;
            print_staged(out, &r.staged)?;
            writeln!(
                out,
                "  {} ({})",
                r.root_karg,
                if r.root_found {
                    "found from the mount"
                } else {
                    "as given"
                }
            )?;
            writeln!(out, "installed into {}", a.mountpoint.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_staged(out: &mut dyn Write, s: &Staged) -> anyhow::Result<()> {
    writeln!(out, "deployed {}/{} as {}", s.os, s.deployment, s.entry)?;
    if s.signers.is_empty() {
        writeln!(out, "  signature: NOT VERIFIED")?;
    } else {
        writeln!(out, "  signed by {}", s.signers.join(", "))?;
    }
    if let Some(c) = &s.copied {
        writeln!(
            out,
            "  store objects: {} hardlinked, {} unpacked or copied ({} bytes of files)",
            c.linked, c.written, c.bytes
        )?;
    }
    writeln!(out, "  systemd-boot from {}", s.bootloader)?;
    writeln!(out, "  kernel arguments: {}", s.kargs.join(" "))?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
