//! `update prepare-root`: from an initramfs, make the deployment named on the kernel
//! command line the root to switch to.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLE: &str = "\
Examples (in an initramfs /init, with the physical root mounted at /sysroot):
  update prepare-root --sysroot /sysroot && exec switch_root /sysroot /sbin/init
  update prepare-root --dry-run --proc-cmdline cmdline.txt --sysroot /mnt/root

Reads update.deployment=OS/COMMIT.SERIAL from the kernel command line, makes that
deployment appear at SYSROOT with the physical root at SYSROOT/sysroot, the OS's shared
/var on /var, and /usr read-only. See docs/deploy.md for building an initramfs with it.";

/// Mount the booted deployment as the new root (initramfs only).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// Where the physical root is mounted.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    sysroot: PathBuf,
    /// The kernel command line to read.
    #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
    proc_cmdline: PathBuf,
    /// Only check and print what would be mounted.
    #[arg(long)]
    dry_run: bool,
}

/// Run `update prepare-root`: the same code as the initramfs's `update-prepare-root`.
pub fn run(a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = update_prepare_root::Options {
        sysroot: a.sysroot,
        proc_cmdline: a.proc_cmdline,
        dry_run: a.dry_run,
    };
    update_prepare_root::prepare(&opts, out)?;
    Ok(ExitCode::SUCCESS)
}
