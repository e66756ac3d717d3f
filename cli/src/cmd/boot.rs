//! `update mark-good`, `update rollback`, `update pin`, `update unpin`.

use std::io::Write;
use std::process::ExitCode;

use deploy::actions::{self, MarkGood};

use super::sysroot::SysrootArg;

const MARK_GOOD: &str = "\
Examples:
  update mark-good                  (run by update-mark-good.service once the system is up)
  update mark-good --sysroot /sysroot

Removes the boot counter from the booted deployment's entry, so the firmware stops
counting tries and never falls back from it.";

const ROLLBACK: &str = "\
Examples:
  update rollback && systemctl reboot

Makes the rollback deployment (see `update status`) boot next. With a new deployment
pending, it makes the booted one boot next instead.";

const PIN: &str = "\
Examples:
  update pin 1                      (index in `update status`)
  update unpin 3f2a9c

A pinned deployment is never removed by cleanup.";

/// Mark the booted deployment good.
#[derive(clap::Args, Debug)]
#[command(after_help = MARK_GOOD)]
pub struct MarkGoodArgs {
    #[command(flatten)]
    sysroot: SysrootArg,
}

/// Make the previous deployment boot next.
#[derive(clap::Args, Debug)]
#[command(after_help = ROLLBACK)]
pub struct RollbackArgs {
    #[command(flatten)]
    sysroot: SysrootArg,
    /// The OS (default: the only one).
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
}

/// Pin or unpin a deployment.
#[derive(clap::Args, Debug)]
#[command(after_help = PIN)]
pub struct PinArgs {
    #[command(flatten)]
    sysroot: SysrootArg,
    /// The OS (default: the only one).
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
    /// COMMIT.SERIAL, a unique prefix of it, or its index in `update status`.
    deployment: String,
}

/// Run `update mark-good`.
pub fn mark_good(a: MarkGoodArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let s = a.sysroot.open()?;
    match actions::mark_good(&s, None, &a.sysroot.proc_cmdline)? {
        (id, MarkGood::Blessed(from, to)) => writeln!(out, "marked {id} good: {from} -> {to}")?,
        (id, MarkGood::AlreadyGood(name)) => {
            writeln!(out, "{id} was already marked good ({name})")?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `update rollback`.
pub fn rollback(a: RollbackArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let s = a.sysroot.open()?;
    let id = actions::rollback(&s, a.os.as_deref(), &a.sysroot.proc_cmdline)?;
    writeln!(out, "{id} boots next; reboot to run it")?;
    Ok(ExitCode::SUCCESS)
}

/// Run `update pin` (`pinned`) or `update unpin`.
pub fn pin(a: PinArgs, pinned: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let s = a.sysroot.open()?;
    let id = actions::set_pinned(
        &s,
        a.os.as_deref(),
        &a.deployment,
        pinned,
        &a.sysroot.proc_cmdline,
    )?;
    writeln!(out, "{} {id}", if pinned { "pinned" } else { "unpinned" })?;
    Ok(ExitCode::SUCCESS)
}
