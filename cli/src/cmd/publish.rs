//! `update publish`: write the static layout devices pull from.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::publish::{publish, PublishOptions};

use super::RepoArg;
use crate::format::parse_duration;

const EXAMPLE: &str = "\
Examples:
  update publish --repo repo --key keys/summary
  update publish --repo repo --key keys/summary --expires 30d --output /srv/www/os

Packs every branch's new objects, writes a chunk index and signature set per branch
head, then replaces the signed summary last. The serial is the previous summary's + 1.
Packs no branch needs any more are left in place.";

/// Publish an archive repository for devices to pull.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Secret key file that signs the summary (from `update key generate`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// How long the summary stays valid (like 7d, 12h, 2w).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "7d")]
    expires: u64,
    /// Directory to publish into (default: the repository itself).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// Run `update publish`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let opts = PublishOptions {
        key: args.key,
        expires_in: args.expires,
        output: args.output,
        ..PublishOptions::default()
    };
    let r = publish(&repo, &opts)?;
    let s = &r.summary;
    writeln!(
        out,
        "published {} refs to {}: serial {}, expires {} (unix), summary {} bytes",
        s.refs.len(),
        r.output.display(),
        s.serial,
        s.expires,
        r.summary_size
    )?;
    writeln!(
        out,
        "{} new packs ({} blobs, {} bytes); {} packs listed; {} unused packs left in place",
        r.packs_written.len(),
        r.blobs_written,
        r.packs_written.iter().map(|p| p.size).sum::<u64>(),
        s.packs.len(),
        r.packs_unused
    )?;
    for e in &s.refs {
        writeln!(out, "  {} {} {} bytes", e.name, e.commit, e.download_size)?;
    }
    Ok(ExitCode::SUCCESS)
}
