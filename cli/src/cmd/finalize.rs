//! `update finalize`: at shutdown, carry `/etc` changes made since the deploy into the
//! pending deployment.

use std::io::Write;
use std::process::ExitCode;

use deploy::finalize::{finalize, FinalizeOptions, Outcome};

use super::sysroot::SysrootArg;

const EXAMPLE: &str = "\
Examples:
  update finalize                   (run by update-finalize.service at shutdown)
  update finalize --sysroot /sysroot --json

If the deployment that boots next is not the booted one and its /etc was merged from the
booted one by `update deploy`, the merge is done again from the booted system's current
/etc, so changes made after the deploy and before the reboot reach the new deployment. The
new /etc is built beside the old one and swapped in atomically; a cut at any point leaves
one of the two, both complete. Anything written directly into the pending deployment's
/etc after the deploy is replaced: the booted /etc wins. With nothing pending, it does
nothing and says so.";

/// Carry /etc changes made since the deploy into the deployment that boots next.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    sysroot: SysrootArg,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `update finalize`.
pub fn run(a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sysroot = a.sysroot.open()?;
    let opts = FinalizeOptions {
        proc_cmdline: a.sysroot.proc_cmdline.clone(),
    };
    let r = finalize(&sysroot, &opts)?;
    let leftovers: Vec<String> = r
        .leftovers_removed
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let (finalized, booted, pending, why, merge) = match &r.outcome {
        Outcome::NotBooted => (
            false,
            None,
            None,
            format!(
                "nothing to finalize: no deployment is booted ({} names none)",
                a.sysroot.proc_cmdline.display()
            ),
            None,
        ),
        Outcome::NothingPending { booted } => (
            false,
            Some(booted),
            None,
            format!("nothing to finalize: no deployment is pending ({booted} is booted and boots next)"),
            None,
        ),
        Outcome::NotMergedFromBooted {
            booted,
            pending,
            merged_from,
        } => (
            false,
            Some(booted),
            Some(pending),
            format!(
                "nothing to finalize: the pending {pending}'s /etc was merged from {}, not from the booted {}",
                merged_from.map_or_else(|| "no deployment".to_owned(), |m| m.to_string()),
                booted.id
            ),
            None,
        ),
        Outcome::Finalized {
            booted,
            pending,
            merge,
        } => (
            true,
            Some(booted),
            Some(pending),
            format!("finalized {pending}: /etc merged again from the booted {}", booted.id),
            Some(merge),
        ),
    };
    let conflicts: Vec<String> = merge.map_or(Vec::new(), |m| {
        m.conflicts
            .iter()
            .map(|c| format!("{}: {}", c.path, c.resolution))
            .collect()
    });
    let skipped: &[(String, String)] = merge.map_or(&[], |m| &m.skipped);
    if a.json {
        let v = serde_json::json!({
            "finalized": finalized,
            "booted": booted.map(ToString::to_string),
            "pending": pending.map(ToString::to_string),
            "message": why,
            "etc_changes_carried": merge.map(|m| m.carried.len()),
            "etc_conflicts": conflicts,
            "etc_skipped": skipped
                .iter()
                .map(|(path, reason)| serde_json::json!({ "path": path, "reason": reason }))
                .collect::<Vec<_>>(),
            "leftovers_removed": leftovers,
        });
        super::print_json(out, &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for l in &leftovers {
        writeln!(out, "removed {l}, left by an interrupted finalize")?;
    }
    writeln!(out, "{why}")?;
    if let Some(m) = merge {
        super::deploy::print_etc_merge(out, m.carried.len(), &conflicts, skipped)?;
    }
    Ok(ExitCode::SUCCESS)
}
