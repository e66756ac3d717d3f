//! `update deploy`: make a pulled commit the system that boots next.

use std::io::Write;
use std::process::ExitCode;

use deploy::deploy::{deploy, DeployOptions};

use super::sysroot::SysrootArg;

const EXAMPLE: &str = "\
Examples:
  update pull --repo /sysroot/update/repo origin:os/stable && update deploy origin:os/stable
  update deploy --sysroot /mnt/root --os debian origin:os/stable --karg quiet
  update deploy              (the ref the current deployment tracks)

The commit is checked out by hardlinks, /etc is merged (your changes carry over), kernel and
initramfs go to the boot partition, and a new boot entry with boot counting sorts first. The
booted and the previous deployments are kept, older ones removed. Nothing changes for the
running system until reboot; if the new one never runs `update mark-good`, the firmware
boots the previous one again after --retries tries.";

/// Deploy a commit: it boots next.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    sysroot: SysrootArg,
    /// The OS (default: the only one).
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
    /// REMOTE:REF, a local ref, or a commit (default: what the current deployment tracks).
    rev: Option<String>,
    /// Add a kernel argument (key=value replaces an earlier key=).
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// Boot tries before the firmware falls back (default: the sysroot's boot-retry-limit).
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Deploy a commit older than the booted one.
    #[arg(long)]
    allow_downgrade: bool,
    /// Deploy even without a signature by a trusted key. Dangerous.
    #[arg(long)]
    no_verify: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `update deploy`.
pub fn run(a: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sysroot = a.sysroot.open()?;
    if a.no_verify {
        eprintln!(
            "WARNING: signature verification is OFF: deploying a commit no trusted key vouches for"
        );
    }
    let opts = DeployOptions {
        os: a.os,
        rev: a.rev,
        kargs: a.kargs,
        retries: a.retries,
        verify: !a.no_verify,
        allow_downgrade: a.allow_downgrade,
        proc_cmdline: a.sysroot.proc_cmdline.clone(),
    };
    let r = deploy(&sysroot, &opts)?;
    let (carried, conflicts) = r.merge.as_ref().map_or((0, Vec::new()), |m| {
        (
            m.carried.len(),
            m.conflicts
                .iter()
                .map(|c| format!("{}: {}", c.path, c.resolution))
                .collect(),
        )
    });
    // Device nodes, FIFOs and sockets the merge left out of the new /etc.
    let skipped: &[(String, String)] = r.merge.as_ref().map_or(&[], |m| &m.skipped);
    if a.json {
        let v = serde_json::json!({
            "deployment": r.deployment.to_string(),
            "commit": r.deployment.id.commit.to_string(),
            "entry": r.entry,
            "version": r.version,
            "signers": r.signers,
            "etc_changes_carried": carried,
            "etc_conflicts": conflicts,
            "etc_skipped": skipped
                .iter()
                .map(|(path, reason)| serde_json::json!({ "path": path, "reason": reason }))
                .collect::<Vec<_>>(),
            "files": r.checkout.files,
            "boot_files_copied": r.boot_files_copied,
            "removed": r.removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "removed_boot_files": r.removed_boot,
            "warnings": r.warnings,
        });
        super::print_json(out, &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "deployed {} as {}", r.deployment, r.entry)?;
    if let Some(v) = &r.version {
        writeln!(out, "  version {v}")?;
    }
    if r.signers.is_empty() {
        writeln!(out, "  signature: NOT VERIFIED")?;
    } else {
        writeln!(out, "  signed by {}", r.signers.join(", "))?;
    }
    writeln!(
        out,
        "  {} files hardlinked; kernel {}",
        r.checkout.files,
        if r.boot_files_copied {
            "copied to the boot partition"
        } else {
            "shared with another deployment"
        }
    )?;
    print_etc_merge(out, carried, &conflicts, skipped)?;
    for d in &r.removed {
        writeln!(out, "  removed old deployment {d}")?;
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    writeln!(
        out,
        "reboot to run it; it is tried before falling back to the current one"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The `/etc` merge's lines, as `update deploy` and `update finalize` print them.
pub(super) fn print_etc_merge(
    out: &mut dyn Write,
    carried: usize,
    conflicts: &[String],
    skipped: &[(String, String)],
) -> std::io::Result<()> {
    writeln!(
        out,
        "  /etc: {carried} local changes carried over, {} conflicts",
        conflicts.len()
    )?;
    for c in conflicts {
        writeln!(out, "    conflict {c}")?;
    }
    for (path, reason) in skipped {
        writeln!(out, "    skipped {path}: {reason}")?;
    }
    Ok(())
}
