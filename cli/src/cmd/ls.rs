//! `update ls`: list a directory (or a whole tree) of a commit.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use store::walk::{resolve_path, Entry, Node, WalkOptions, Walker};

use super::{print_json, RepoArg};
use crate::format::{mode_string, shown_path};

const EXAMPLE: &str = "\
Examples:
  update ls --repo repo os/stable /usr/bin
  update ls --repo repo -R os/stable /etc
  update ls --repo repo --json os/stable | jq -r '.[].path'

Columns: mode, uid, gid, size in bytes, path (symlinks: -> target).";

/// List the entries of a commit's tree.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch.
    commit: String,
    /// Directory or file inside the commit (default: the root).
    path: Option<String>,
    /// List subdirectories' contents too.
    #[arg(long, short = 'R')]
    recursive: bool,
    /// Show object ids.
    #[arg(long)]
    ids: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Run `update ls`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let id = repo.resolve_rev(&args.commit)?;
    let start = resolve_path(&repo, &id, args.path.as_deref().unwrap_or(""))?;
    let opts = WalkOptions {
        metadata: true,
        recursive: args.recursive,
        ..Default::default()
    };
    let mut items = Vec::new();
    for entry in Walker::from_entry(&repo, start, opts) {
        let e = entry?;
        if args.json {
            items.push(entry_json(&e));
        } else {
            print_entry(out, &e, args.ids)?;
        }
    }
    if args.json {
        print_json(out, &serde_json::Value::Array(items))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// (mode, uid, gid, size, symlink target, object id) of an entry whose metadata is loaded.
fn fields(e: &Entry) -> (u32, u32, u32, u64, Option<String>, String) {
    match &e.node {
        Node::Dir { meta, tree, .. } => {
            let (mode, uid, gid) = meta.as_ref().map_or((0, 0, 0), |m| (m.mode, m.uid, m.gid));
            (mode, uid, gid, 0, None, tree.to_string())
        }
        Node::File { id, header } => match header {
            Some(h) => {
                let target = h
                    .is_symlink()
                    .then(|| String::from_utf8_lossy(&h.symlink_target).into_owned());
                (h.mode, h.uid, h.gid, h.size, target, id.to_string())
            }
            None => (0, 0, 0, 0, None, id.to_string()),
        },
    }
}

fn print_entry(out: &mut dyn Write, e: &Entry, ids: bool) -> anyhow::Result<()> {
    let (mode, uid, gid, size, target, id) = fields(e);
    if ids {
        write!(out, "{id} ")?;
    }
    write!(
        out,
        "{} {uid:>5} {gid:>5} {size:>10} {}",
        mode_string(mode),
        shown_path(&e.path)
    )?;
    match target {
        Some(t) => writeln!(out, " -> {t}")?,
        None => writeln!(out)?,
    }
    Ok(())
}

fn entry_json(e: &Entry) -> serde_json::Value {
    let (mode, uid, gid, size, target, id) = fields(e);
    let kind = match (&e.node, &target) {
        (Node::Dir { .. }, _) => "dir",
        (_, Some(_)) => "symlink",
        _ => "file",
    };
    json!({
        "path": shown_path(&e.path),
        "type": kind,
        "mode": mode,
        "mode_string": mode_string(mode),
        "uid": uid,
        "gid": gid,
        "size": size,
        "target": target,
        "id": id,
    })
}
