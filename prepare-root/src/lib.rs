//! `update-prepare-root`: `update prepare-root` alone, small enough for an initramfs.
//!
//! The initramfs runs `/usr/lib/update/update-prepare-root --sysroot "$rootmnt"` after it
//! has mounted the physical root, then `switch_root`s into it. What it mounts, and in what
//! order, is [`deploy::prepare_root`] (docs/deploy.md, section 5); this crate holds the part
//! both front ends share (the [`Options`], what is printed) so that `update prepare-root`
//! and `update-prepare-root` behave the same, and the hand-written argument parser of the
//! small binary (no clap: it is most of the size of a binary this small).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = update_prepare_root::Options {
//!     sysroot: "/root".into(), // where initramfs-tools mounts the root
//!     dry_run: true,
//!     ..Default::default()
//! };
//! update_prepare_root::prepare(&opts, &mut std::io::stdout())?;
//! # Ok(())
//! # }
//! ```

pub mod args;

use std::io::Write;
use std::path::PathBuf;

use deploy::prepare_root;

/// Where the initramfs mounted the physical root unless told otherwise (dracut's choice;
/// initramfs-tools mounts it at `/root` and passes `--sysroot "$rootmnt"`).
pub const DEFAULT_SYSROOT: &str = "/sysroot";

/// What to prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Where the physical root is mounted; the deployment appears there.
    pub sysroot: PathBuf,
    /// The kernel command line to read `update.deployment=` from.
    pub proc_cmdline: PathBuf,
    /// Only check and print what would be mounted.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sysroot: PathBuf::from(DEFAULT_SYSROOT),
            proc_cmdline: PathBuf::from(deploy::cmdline::PROC_CMDLINE),
            dry_run: false,
        }
    }
}

/// Why prepare-root failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Working out or carrying out the mounts failed.
    #[error(transparent)]
    Deploy(#[from] deploy::Error),
    /// Printing what was done failed.
    #[error("cannot write the report")]
    Output(#[source] std::io::Error),
}

/// Work out the plan, print it, and (unless `dry_run`) mount it: the whole of
/// `update prepare-root`.
pub fn prepare(opts: &Options, out: &mut dyn Write) -> Result<(), Error> {
    let plan = prepare_root::plan(&opts.sysroot, &opts.proc_cmdline)?;
    writeln!(
        out,
        "prepare-root: deployment {} from {}",
        plan.deployment,
        plan.deploy_path.display()
    )
    .map_err(Error::Output)?;
    if opts.dry_run {
        writeln!(out, "  /var from {}", plan.var_path.display()).map_err(Error::Output)?;
        writeln!(
            out,
            "  physical root at {}/sysroot, /usr read-only",
            opts.sysroot.display()
        )
        .map_err(Error::Output)?;
        return out.flush().map_err(Error::Output);
    }
    // Said before mounting, so a hang or a failure shows where it was.
    out.flush().map_err(Error::Output)?;
    prepare_root::run(&opts.sysroot, &plan)?;
    writeln!(
        out,
        "prepare-root: {} is ready at {}",
        plan.deployment,
        opts.sysroot.display()
    )
    .map_err(Error::Output)?;
    out.flush().map_err(Error::Output)
}
