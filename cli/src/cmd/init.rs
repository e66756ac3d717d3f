//! `update init`: create an empty repository.

use std::io::Write;
use std::process::ExitCode;

use store::{Repo, RepoMode};

use super::RepoArg;

/// Create a new, empty repository.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  update init --repo /srv/repo --mode archive")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// bare: files stored ready to hardlink (devices); archive: compressed (publishing).
    #[arg(long, value_enum)]
    mode: Mode,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Mode {
    Bare,
    Archive,
}

/// Run `update init`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mode = match args.mode {
        Mode::Bare => RepoMode::Bare,
        Mode::Archive => RepoMode::Archive,
    };
    let repo = Repo::init(&args.repo.repo, mode)?;
    writeln!(
        out,
        "initialized {} repository at {}",
        repo.mode(),
        repo.path().display()
    )?;
    Ok(ExitCode::SUCCESS)
}
