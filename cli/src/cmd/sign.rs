//! `update sign`: add a signature to a commit.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::sign::{load_secret_key, sign_commit, PublicKey};

use super::RepoArg;

/// Sign a commit with a secret key.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  update sign --repo repo os/stable --key keys/release")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch.
    commit: String,
    /// Secret key file (from `update key generate`).
    #[arg(long)]
    key: PathBuf,
}

/// Run `update sign`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let id = repo.resolve_rev(&args.commit)?;
    let key = load_secret_key(&args.key)?;
    sign_commit(&repo, &id, &key)?;
    writeln!(out, "signed {id} with {}", PublicKey::from(&key))?;
    Ok(ExitCode::SUCCESS)
}
