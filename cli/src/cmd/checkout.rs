//! `update checkout`: write a commit's tree into a directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::checkout::{checkout, CheckoutOptions, LinkMode};

use super::RepoArg;

const EXAMPLE: &str = "\
Examples:
  update checkout --repo repo os/stable /tmp/rootfs
  update checkout --repo repo os/stable /tmp/etc --subpath etc --copy

DEST must not exist or be an empty directory. From a bare repository on the same
filesystem files are hardlinked to their objects; otherwise (or with --copy) copied.";

/// Check out a commit into a directory.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Commit id, unique id prefix, or branch.
    commit: String,
    /// Where to write the tree.
    dest: PathBuf,
    /// Only this directory or file of the tree.
    #[arg(long, value_name = "PATH")]
    subpath: Option<String>,
    /// Copy every file instead of hardlinking.
    #[arg(long)]
    copy: bool,
}

/// Run `update checkout`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let id = repo.resolve_rev(&args.commit)?;
    let opts = CheckoutOptions {
        subpath: args.subpath,
        mode: if args.copy {
            LinkMode::Copy
        } else {
            LinkMode::Auto
        },
    };
    let s = checkout(&repo, &id, &args.dest, &opts)?;
    writeln!(
        out,
        "checked out {id} to {}: {} files, {} dirs ({} hardlinked, {} copied, {} bytes written)",
        args.dest.display(),
        s.files,
        s.dirs,
        s.hardlinked,
        s.copied,
        s.bytes
    )?;
    Ok(ExitCode::SUCCESS)
}
