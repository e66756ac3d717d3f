//! `update commit`: commit a directory, tarball or git tree to a branch.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::commit::{commit, CommitOptions, Source};
use store::RefName;

use super::RepoArg;
use crate::format::parse_key_value;

const EXAMPLE: &str = "\
Examples:
  update commit --repo repo --branch os/stable --subject 'nightly' --version 1.2 rootfs/
  update commit --repo repo --branch os/stable --owner-uid 0 --owner-gid 0 rootfs.tar.zst
  update commit --repo repo --branch app git:../app:v1.0

SOURCE is a directory, a tar archive (plain, gzip or zstd), or git:PATH[:REV].
The new commit's id is printed on stdout; a summary goes to stderr.";

/// Commit a tree to a branch.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The branch to move to the new commit (its current commit becomes the parent).
    #[arg(long, short)]
    branch: String,
    /// One-line subject.
    #[arg(long, short)]
    subject: Option<String>,
    /// Longer description.
    #[arg(long)]
    body: Option<String>,
    /// Version string, stored as the metadata key `version`.
    #[arg(long)]
    version: Option<String>,
    /// Extra metadata; repeatable.
    #[arg(long = "add-metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    metadata: Vec<(String, String)>,
    /// Record this owner for every entry instead of the source's.
    #[arg(long, value_name = "UID")]
    owner_uid: Option<u32>,
    /// Record this group for every entry instead of the source's.
    #[arg(long, value_name = "GID")]
    owner_gid: Option<u32>,
    /// Sign the new commit with this secret key file.
    #[arg(long, value_name = "KEYFILE")]
    sign_with: Option<PathBuf>,
    /// Commit time in seconds since the epoch (for reproducible tests).
    #[arg(long, hide = true)]
    timestamp: Option<u64>,
    /// Directory, tar archive, or `git:PATH[:REV]`.
    source: String,
}

/// Run `update commit`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let branch = RefName::new(args.branch)?;
    let source = Source::parse(&args.source)?;
    // Load the key first: a bad key should fail before anything is written.
    let key = args
        .sign_with
        .as_deref()
        .map(store::sign::load_secret_key)
        .transpose()?;
    let opts = CommitOptions {
        branch: Some(branch),
        subject: args.subject,
        body: args.body,
        version: args.version,
        metadata: args.metadata,
        owner_uid: args.owner_uid,
        owner_gid: args.owner_gid,
        timestamp: args.timestamp,
        sign_with: key,
        ..Default::default()
    };
    let outcome = commit(&repo, &source, &opts)?;
    writeln!(out, "{}", outcome.commit)?;
    let s = outcome.stats;
    eprintln!(
        "{} files, {} dirs, {} symlinks, {} bytes; {} new objects{}",
        s.files,
        s.dirs,
        s.symlinks,
        s.bytes,
        s.objects_written,
        if opts.sign_with.is_some() {
            "; signed"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
