//! `update sysroot init` and the `--sysroot` option every deploy command takes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use deploy::sysroot::{BootLocation, Sysroot};

const EXAMPLE: &str = "\
Examples:
  update sysroot init --sysroot /mnt/root --os debian --esp /mnt/root/efi \\
      --karg root=/dev/vda2 --karg console=ttyS0
  update sysroot init --sysroot /mnt/root --os debian --boot /mnt/root/boot

Lays out SYSROOT/update/{sysroot.toml,repo,deploy/OS/{deploy,var}}. With --esp, boot entries
and kernels go on the EFI system partition for systemd-boot; with --boot, on an ext4/xfs
/boot (default: SYSROOT/boot). Run it again with another --os to add an OS.";

/// The `--sysroot` option of every deploy command.
#[derive(clap::Args, Debug)]
pub struct SysrootArg {
    /// The physical root: /sysroot on a booted device, a staging directory for an image.
    #[arg(
        long,
        env = "UPDATE_SYSROOT",
        value_name = "DIR",
        default_value = "/sysroot"
    )]
    pub sysroot: PathBuf,
    /// Where the boot partition is mounted now, if not where sysroot.toml says.
    #[arg(long, value_name = "DIR")]
    pub boot_dir: Option<PathBuf>,
    /// The booted kernel's command line (for tests and image builders).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/proc/cmdline",
        hide = true
    )]
    pub proc_cmdline: PathBuf,
}

impl SysrootArg {
    /// Open the sysroot.
    pub fn open(&self) -> anyhow::Result<Sysroot> {
        Ok(Sysroot::open(&self.sysroot, self.boot_dir.as_deref())?)
    }
}

/// Set up a sysroot.
#[derive(clap::Subcommand, Debug)]
pub enum SysrootCommand {
    /// Lay out a sysroot, or add an OS to one.
    #[command(after_help = EXAMPLE)]
    Init(InitArgs),
}

/// `update sysroot init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The physical root directory (must exist).
    #[arg(long, value_name = "DIR")]
    sysroot: PathBuf,
    /// The OS name: a directory name and part of boot entry names.
    #[arg(long, value_name = "NAME")]
    os: String,
    /// The EFI system partition (vfat), read by systemd-boot.
    #[arg(long, value_name = "PATH", conflicts_with = "boot")]
    esp: Option<PathBuf>,
    /// A /boot on ext4 or xfs, for other BLS readers.
    #[arg(long, value_name = "PATH")]
    boot: Option<PathBuf>,
    /// Kernel arguments of the first deployment (later ones inherit their predecessor's).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// Boot tries a new deployment gets before the firmware falls back (default 3).
    #[arg(long, value_name = "N")]
    boot_retry_limit: Option<u32>,
}

/// Run `update sysroot ...`.
pub fn run(cmd: SysrootCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        SysrootCommand::Init(a) => {
            let boot = match (a.esp, a.boot) {
                (Some(p), _) => Some(BootLocation::Esp(p)),
                (None, Some(p)) => Some(BootLocation::Boot(p)),
                (None, None) => None,
            };
            let s = Sysroot::init(&a.sysroot, &a.os, boot, &a.kargs, a.boot_retry_limit)?;
            writeln!(
                out,
                "sysroot {} ready for OS {} (boot entries in {})",
                s.path().display(),
                a.os,
                s.boot_dir().display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
