//! `update show`: everything about one commit.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use store::sign::signatures_report;

use super::{print_json, RepoArg};
use crate::format::rfc3339;

/// Show a commit: parent, date, subject, body, metadata, root, signatures.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  update show --repo repo os/stable\n  update show --repo repo --json 3fa9c2"
)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch.
    commit: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Run `update show`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let id = repo.resolve_rev(&args.commit)?;
    let c = repo.read_commit(&id)?;
    let sigs = signatures_report(&repo, &id)?;
    if args.json {
        let metadata: serde_json::Map<String, serde_json::Value> = c
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        let signatures: Vec<_> = sigs
            .iter()
            .map(|s| json!({ "public_key": s.public_key_base64, "valid": s.valid }))
            .collect();
        let v = json!({
            "id": id.to_string(),
            "parent": c.parent.map(|p| p.to_string()),
            "timestamp": c.timestamp,
            "date": rfc3339(c.timestamp),
            "subject": c.subject,
            "body": c.body,
            "metadata": metadata,
            "root_tree": c.root_tree.to_string(),
            "root_meta": c.root_meta.to_string(),
            "signatures": signatures,
        });
        print_json(out, &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "commit    {id}")?;
    match c.parent {
        Some(p) => writeln!(out, "parent    {p}")?,
        None => writeln!(out, "parent    (none)")?,
    }
    writeln!(out, "date      {}", rfc3339(c.timestamp))?;
    writeln!(out, "subject   {}", c.subject)?;
    writeln!(out, "root tree {}", c.root_tree)?;
    writeln!(out, "root meta {}", c.root_meta)?;
    if c.metadata.is_empty() {
        writeln!(out, "metadata  (none)")?;
    } else {
        writeln!(out, "metadata")?;
        for (k, v) in &c.metadata {
            writeln!(out, "  {k} = {v}")?;
        }
    }
    if sigs.is_empty() {
        writeln!(out, "signatures (none)")?;
    } else {
        writeln!(out, "signatures")?;
        for s in &sigs {
            let state = if s.valid { "valid" } else { "INVALID" };
            writeln!(out, "  {} {state}", s.public_key_base64)?;
        }
    }
    if !c.body.is_empty() {
        writeln!(out)?;
        for line in c.body.lines() {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
