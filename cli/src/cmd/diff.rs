//! `update diff`: what changed between two commits.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use store::diff::{diff, Side};

use super::{print_json, RepoArg};
use crate::format::shown_path;

const EXAMPLE: &str = "\
Examples:
  update diff --repo repo 3fa9c2 os/stable
  update diff --repo repo os/stable os/testing --json

One line per changed path: A (added), D (deleted) or M (modified), the path, and the
size in bytes (old -> new for a modification). A summary line ends the list.";

/// Compare two commits.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The old commit: id, unique id prefix, or branch.
    a: String,
    /// The new commit: id, unique id prefix, or branch.
    b: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn describe(side: &Side) -> String {
    match side {
        Side::Dir { .. } => "dir".to_owned(),
        Side::Symlink { .. } => "symlink".to_owned(),
        Side::File { size, .. } => format!("{size} bytes"),
    }
}

fn side_json(side: &Option<Side>) -> serde_json::Value {
    match side {
        None => serde_json::Value::Null,
        Some(s) => {
            let id = match s {
                Side::Dir { tree, .. } => tree.to_string(),
                Side::File { id, .. } | Side::Symlink { id } => id.to_string(),
            };
            json!({ "type": s.type_name(), "size": s.size(), "id": id })
        }
    }
}

/// Run `update diff`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let a = repo.resolve_rev(&args.a)?;
    let b = repo.resolve_rev(&args.b)?;
    let d = diff(&repo, &a, &b)?;
    let s = d.summary();
    if args.json {
        let changes: Vec<_> = d
            .changes
            .iter()
            .map(|c| {
                json!({
                    "status": c.kind.letter().to_string(),
                    "path": shown_path(&c.path),
                    "old": side_json(&c.old),
                    "new": side_json(&c.new),
                })
            })
            .collect();
        let v = json!({
            "from": a.to_string(),
            "to": b.to_string(),
            "changes": changes,
            "summary": {
                "added": s.added,
                "removed": s.removed,
                "modified": s.modified,
                "added_bytes": s.added_bytes,
                "removed_bytes": s.removed_bytes,
                "modified_old_bytes": s.modified_old_bytes,
                "modified_new_bytes": s.modified_new_bytes,
            },
        });
        print_json(out, &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for c in &d.changes {
        let sizes = match (&c.old, &c.new) {
            (Some(o), Some(n)) => format!("{} -> {}", describe(o), describe(n)),
            (Some(x), None) | (None, Some(x)) => describe(x),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{} {}  ({sizes})",
            c.kind.letter(),
            shown_path(&c.path)
        )?;
    }
    writeln!(
        out,
        "{} added ({} bytes), {} removed ({} bytes), {} modified ({} -> {} bytes)",
        s.added,
        s.added_bytes,
        s.removed,
        s.removed_bytes,
        s.modified,
        s.modified_old_bytes,
        s.modified_new_bytes
    )?;
    Ok(ExitCode::SUCCESS)
}
