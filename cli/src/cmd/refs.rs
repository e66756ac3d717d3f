//! `update refs`: list branches.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;

use super::{print_json, RepoArg};

/// List branches and the commits they point at.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  update refs --repo repo\n  update refs --repo repo --json")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Run `update refs`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let refs = repo.list_refs()?;
    if args.json {
        let v: Vec<_> = refs
            .iter()
            .map(|(n, id)| json!({ "name": n.as_str(), "commit": id.to_string() }))
            .collect();
        print_json(out, &serde_json::Value::Array(v))?;
    } else {
        for (name, id) in &refs {
            writeln!(out, "{id} {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
