//! `update log`: the history of a branch or commit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;
use store::id::CommitId;
use store::object::{Commit, ObjectKind};
use store::{Error, Repo};

use super::{print_json, RepoArg};
use crate::format::rfc3339;

const EXAMPLE: &str = "\
Examples:
  update log --repo repo os/stable
  update log --repo repo --json 3fa9c2 | jq -r '.commits[].id'

Without REV, the repository's only branch is shown. History ends at the first commit
without a parent, or at a parent that was pruned (\"(history truncated)\").";

/// Show a commit and its ancestors.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch (default: the only branch).
    rev: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The revision to start from: the one given, or the repository's only branch.
fn start(repo: &Repo, rev: Option<&str>) -> anyhow::Result<CommitId> {
    if let Some(rev) = rev {
        return Ok(repo.resolve_rev(rev)?);
    }
    let refs = repo.list_refs()?;
    match refs.as_slice() {
        [(_, id)] => Ok(*id),
        [] => bail!("the repository has no branches; commit something first"),
        many => {
            let names: Vec<String> = many.iter().map(|(n, _)| n.to_string()).collect();
            bail!(
                "the repository has several branches; name one: {}",
                names.join(", ")
            )
        }
    }
}

/// Run `update log`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let mut next = Some(start(&repo, args.rev.as_deref())?);
    let mut first = true;
    let mut truncated = false;
    let mut commits = Vec::new();
    while let Some(id) = next {
        let c = match repo.read_commit(&id) {
            Ok(c) => c,
            // Only a missing *parent* is a truncated history; the start must be there.
            Err(Error::MissingObject {
                kind: ObjectKind::Commit,
                ..
            }) if !first => {
                truncated = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        first = false;
        next = c.parent;
        if args.json {
            commits.push(commit_json(&id, &c));
        } else {
            print_commit(out, &id, &c)?;
        }
    }
    if args.json {
        print_json(out, &json!({ "commits": commits, "truncated": truncated }))?;
    } else if truncated {
        writeln!(out, "(history truncated)")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_commit(out: &mut dyn Write, id: &CommitId, c: &Commit) -> anyhow::Result<()> {
    writeln!(out, "commit {id}")?;
    writeln!(out, "Date:    {}", rfc3339(c.timestamp))?;
    if let Some(v) = c.version() {
        writeln!(out, "Version: {v}")?;
    }
    writeln!(out)?;
    writeln!(out, "    {}", c.subject)?;
    writeln!(out)?;
    Ok(())
}

fn commit_json(id: &CommitId, c: &Commit) -> serde_json::Value {
    json!({
        "id": id.to_string(),
        "parent": c.parent.map(|p| p.to_string()),
        "timestamp": c.timestamp,
        "date": rfc3339(c.timestamp),
        "version": c.version(),
        "subject": c.subject,
    })
}
