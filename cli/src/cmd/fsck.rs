//! `update fsck`: check a repository's integrity.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use store::fsck::{fsck, FsckOptions};

use super::{print_json, RepoArg};

const EXAMPLE: &str = "\
Examples:
  update fsck --repo repo
  update fsck --repo repo --json | jq '.errors'

Exits 0 when the repository is healthy, 1 when any error was found.";

/// Re-verify every object, ref and signature.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Check that file objects are present without re-reading their contents.
    #[arg(long)]
    quick: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Run `update fsck`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let opts = FsckOptions {
        skip_file_contents: args.quick,
    };
    let r = fsck(&repo, &opts)?;
    if args.json {
        let refs: Vec<_> = r
            .refs
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "commit": s.commit.to_string(),
                    "valid_signatures": s.valid_signatures(),
                })
            })
            .collect();
        let unreachable: serde_json::Map<String, serde_json::Value> = r
            .unreachable
            .iter()
            .map(|(k, n)| (k.name().to_owned(), (*n).into()))
            .collect();
        let v = json!({
            "ok": r.is_ok(),
            "objects_checked": r.objects_checked,
            "errors": r.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "notes": r.notes,
            "refs": refs,
            "unreachable": unreachable,
            "staging_dirs": r.staging_dirs,
        });
        print_json(out, &v)?;
    } else {
        for e in &r.errors {
            writeln!(out, "error: {e}")?;
        }
        for n in &r.notes {
            writeln!(out, "note: {n}")?;
        }
        for s in &r.refs {
            writeln!(
                out,
                "ref {} -> {} ({} valid signature(s))",
                s.name,
                s.commit,
                s.valid_signatures()
            )?;
        }
        let unreachable: usize = r.unreachable.values().sum();
        if unreachable > 0 {
            writeln!(
                out,
                "{unreachable} unreachable object(s) (`update prune` removes them)"
            )?;
        }
        writeln!(
            out,
            "checked {} objects: {}",
            r.objects_checked,
            if r.is_ok() {
                "no errors".to_owned()
            } else {
                format!("{} error(s)", r.errors.len())
            }
        )?;
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
