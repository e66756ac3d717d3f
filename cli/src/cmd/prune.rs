//! `update prune`: delete old history and unreachable objects.

use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use store::prune::{prune, PruneOptions};

use super::RepoArg;
use crate::format::parse_duration;

const EXAMPLE: &str = "\
Examples:
  update prune --repo repo --dry-run
  update prune --repo repo --depth 5
  update prune --repo repo --older-than 30d

Without --depth or --older-than only unreachable objects are deleted. A branch's head
commit is always kept.";

/// Delete what no branch needs.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Keep this many commits of history per branch beyond its head (0: heads only).
    #[arg(long, value_name = "N")]
    depth: Option<usize>,
    /// Drop commits older than this (like 30d, 12h, 2w).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<u64>,
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Run `update prune`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let opts = PruneOptions {
        depth: args.depth,
        older_than: args.older_than.map(|age| now.saturating_sub(age)),
        dry_run: args.dry_run,
    };
    let r = prune(&repo, &opts)?;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let per_kind: Vec<String> = r
        .removed
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    writeln!(
        out,
        "{verb} {} objects ({}), {} signature files, {} bytes; kept {} commits",
        r.objects_removed(),
        if per_kind.is_empty() {
            "none".to_owned()
        } else {
            per_kind.join(", ")
        },
        r.signatures_removed,
        r.bytes_freed,
        r.commits_kept
    )?;
    if r.staging_dirs_removed > 0 {
        writeln!(
            out,
            "{verb} {} leftover staging directories",
            r.staging_dirs_removed
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
