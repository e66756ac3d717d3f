//! One module per subcommand. Each has an `Args` struct (clap) and a `run` that calls the
//! store and prints.

pub mod checkout;
pub mod commit;
pub mod diff;
pub mod fsck;
pub mod init;
pub mod key;
pub mod log;
pub mod ls;
pub mod prune;
pub mod publish;
pub mod refs;
pub mod serve;
pub mod show;
pub mod sign;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;

use store::Repo;

/// The `--repo` option every repository command takes.
#[derive(clap::Args, Debug)]
pub struct RepoArg {
    /// The repository directory.
    #[arg(long, env = "UPDATE_REPO", value_name = "DIR")]
    pub repo: PathBuf,
}

impl RepoArg {
    /// Open the repository.
    pub fn open(&self) -> anyhow::Result<Repo> {
        Ok(Repo::open(&self.repo)?)
    }
}

/// Print a value as pretty JSON and a newline.
pub fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    // Through io::Error, so that a closed pipe is recognised as one.
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}
