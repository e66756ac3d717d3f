//! `update status`: the deployments, the way `rpm-ostree status` users expect.

use std::io::Write;
use std::process::ExitCode;

use deploy::state::State;

use super::sysroot::SysrootArg;

const EXAMPLE: &str = "\
Examples:
  update status
  update status --sysroot /mnt/root --json

Deployments are listed in boot order: the first boots next. ● marks the booted one.
pending: boots next, not yet booted. rollback: what the firmware falls back to, and what
`update rollback` selects. failed: its boot tries ran out before `update mark-good`.";

/// Show the deployments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    sysroot: SysrootArg,
    /// Only this OS.
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `update status`.
pub fn run(a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sysroot = a.sysroot.open()?;
    let oses = match &a.os {
        Some(o) => vec![sysroot.pick_os(Some(o))?],
        None => sysroot.os_names()?,
    };
    let mut all = Vec::new();
    for os in &oses {
        let state = State::load(&sysroot, os, &a.sysroot.proc_cmdline)?;
        all.push((os.clone(), state));
    }
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|(os, s)| {
                serde_json::json!({
                    "os": os,
                    "booted": s.booted.map(|b| b.to_string()),
                    "deployments": s.report(),
                    "orphans": s.orphans.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "foreign_entry_first": s.foreign_first,
                })
            })
            .collect();
        // Absolute, as every other path in JSON output: a script reading it may run
        // elsewhere than in the directory `--sysroot` was relative to.
        let path = std::fs::canonicalize(sysroot.path())
            .or_else(|_| std::path::absolute(sysroot.path()))?;
        super::print_json(out, &serde_json::json!({ "sysroot": path, "oses": v }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for (os, s) in &all {
        writeln!(out, "OS {os}")?;
        if s.deployments.is_empty() {
            writeln!(out, "  no deployments")?;
        }
        for d in s.report() {
            let mut flags = Vec::new();
            for (on, name) in [
                (d.pending, "pending"),
                (d.rollback, "rollback"),
                (d.pinned, "pinned"),
                (d.failed, "failed"),
                (d.missing, "MISSING"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            writeln!(
                out,
                "{} {} {}{}",
                if d.booted { "●" } else { " " },
                d.deployment,
                d.version.as_deref().unwrap_or("(no version)"),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                }
            )?;
            writeln!(
                out,
                "    origin: {}",
                d.origin.as_deref().unwrap_or("(unknown)")
            )?;
            writeln!(
                out,
                "    signed by: {}",
                if d.signers.is_empty() {
                    "(not verified)".to_owned()
                } else {
                    d.signers.join(", ")
                }
            )?;
            let tries = match d.tries_left {
                None => "marked good".to_owned(),
                Some(0) => "no tries left".to_owned(),
                Some(n) => format!("{n} boot tries left"),
            };
            writeln!(out, "    entry: {} ({tries})", d.entry)?;
        }
        if s.foreign_first {
            writeln!(
                out,
                "  warning: another boot entry sorts before these; the firmware boots it first"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
