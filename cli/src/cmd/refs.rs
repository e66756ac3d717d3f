//! `update refs`: list branches and the remotes' refs as last pulled; delete a ref.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use store::RefName;

use super::{print_json, RepoArg};

/// List branches and remote refs and the commits they point at, or delete a ref.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  update refs --repo repo
  update refs --repo repo --json
  update refs --repo repo --delete old-branch
  update refs --repo repo --delete origin:os

Branches are listed by name, the refs of a remote as last pulled as REMOTE:NAME.
Deleting a ref does not delete its commit: `update prune` does, once nothing names it.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Delete this ref: a branch NAME, or REMOTE:NAME (a remote's ref as last pulled).
    #[arg(long, value_name = "REF", conflicts_with = "json")]
    delete: Option<String>,
}

/// Run `update refs`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    if let Some(target) = &args.delete {
        match target.split_once(':') {
            Some((remote, name)) => repo.delete_remote_ref(remote, &RefName::new(name)?)?,
            None => repo.delete_ref(&RefName::new(target.as_str())?)?,
        }
        writeln!(out, "deleted {target}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut refs: Vec<(String, String)> = repo
        .list_refs()?
        .into_iter()
        .map(|(n, id)| (n.to_string(), id.to_string()))
        .collect();
    refs.extend(
        repo.list_all_remote_refs()?
            .into_iter()
            .map(|(remote, n, id)| (format!("{remote}:{n}"), id.to_string())),
    );
    if args.json {
        let v: Vec<_> = refs
            .iter()
            .map(|(n, id)| json!({ "name": n, "commit": id }))
            .collect();
        print_json(out, &serde_json::Value::Array(v))?;
    } else {
        for (name, id) in &refs {
            writeln!(out, "{id} {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
