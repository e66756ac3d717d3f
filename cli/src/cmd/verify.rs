//! `update verify`: check a commit's signatures against trusted keys.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::sign::{load_trusted_keys, verify_commit};

use super::RepoArg;

const EXAMPLE: &str = "\
Examples:
  update verify --repo repo os/stable --trusted-keys /etc/update/keys.d
  update verify --repo repo 3fa9c2 --trusted-keys keys/release.pub

Exits 0 when at least one signature by a trusted key verifies, 1 otherwise.";

/// Verify a commit's signatures.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch.
    commit: String,
    /// A directory of *.pub files, or a file with one base64 public key per line.
    #[arg(long, value_name = "DIR|FILE")]
    trusted_keys: PathBuf,
}

/// Run `update verify`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let id = repo.resolve_rev(&args.commit)?;
    let trusted = load_trusted_keys(&args.trusted_keys)?;
    let v = verify_commit(&repo, &id, &trusted)?;
    for name in &v.trusted {
        writeln!(out, "commit {id}: good signature by trusted key '{name}'")?;
    }
    if v.untrusted > 0 {
        writeln!(
            out,
            "({} more valid signature(s) by keys not trusted here)",
            v.untrusted
        )?;
    }
    if v.invalid > 0 {
        writeln!(
            out,
            "({} signature(s) that do not verify were ignored)",
            v.invalid
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
