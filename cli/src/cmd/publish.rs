//! `update publish`: write the static layout devices pull from.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use transport::pack::PackWriterOptions;
use transport::publish::{publish, DeltaPlan, PublishOptions};
use transport::static_delta::StaticDeltaOptions;

use super::RepoArg;
use crate::format::parse_duration;

const EXAMPLE: &str = "\
Examples:
  update publish --repo repo --key keys/summary
  update publish --repo repo --key keys/summary --expires 30d --output /srv/www/os
  update publish --repo repo --key keys/summary --delta-from 3f9a1c --delta-from os/lts

Packs every branch's new objects, writes a chunk index and signature set per branch
head and a static delta from each head's parent (the common update, one download),
then replaces the signed summary last. The serial is the previous summary's + 1.
A delta the previous summary lists for the same hop is reused. Packs no branch needs
any more are left in place, unless --prune: then the files that neither the new nor the
previous summary names are deleted (a device still on the previous summary finds all it
needs).";

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
    /// Also write a static delta from this commit (a branch, id or unique id prefix) to
    /// every branch head; repeatable.
    #[arg(long = "delta-from", value_name = "REV")]
    delta_from: Vec<String>,
    /// Do not write the default delta from each branch head's parent.
    #[arg(long)]
    no_deltas: bool,
    /// zstd level of static deltas (1..=22).
    #[arg(long, value_name = "N", default_value_t = StaticDeltaOptions::default().level,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    delta_level: i32,
    /// zstd level of the chunks in new packs (1..=22).
    #[arg(long, value_name = "N", default_value_t = PackWriterOptions::default().level,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pack_level: i32,
    /// Delete published files that neither the new nor the previous summary names.
    #[arg(long)]
    prune: bool,
    /// The channel this repository is (like stable, beta): devices following another
    /// channel refuse its summary. Default: the previous summary's channel, if any.
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// Tell devices to lower the latest time they know of to their own clock: the
    /// recovery after a summary published with a clock far ahead.
    #[arg(long)]
    reset_clock: bool,
    /// Publish as if the time were this (unix seconds): the summary's timestamp, from
    /// which its expiry counts. Default: the system clock.
    #[arg(long, value_name = "UNIX")]
    timestamp: Option<u64>,
}

/// Run `update publish`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let mut from = Vec::with_capacity(args.delta_from.len());
    for rev in &args.delta_from {
        from.push(repo.resolve_rev(rev)?);
    }
    let opts = PublishOptions {
        key: args.key,
        expires_in: args.expires,
        output: args.output,
        deltas: DeltaPlan {
            parents: !args.no_deltas,
            from,
        },
        delta: StaticDeltaOptions {
            level: args.delta_level,
            ..StaticDeltaOptions::default()
        },
        prune: args.prune,
        channel: args.channel,
        reset_clock: args.reset_clock,
        now: args.timestamp,
        pack: PackWriterOptions {
            level: args.pack_level,
            ..PackWriterOptions::default()
        },
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
    if let Some(c) = &s.channel {
        writeln!(out, "channel {c}")?;
    }
    if s.reset_clock {
        writeln!(
            out,
            "reset-clock set: devices lower the latest time they know of to their own clock"
        )?;
    }
    writeln!(
        out,
        "{} new packs ({} blobs, {} bytes); {} packs listed; {} unused packs left in place",
        r.packs_written.len(),
        r.blobs_written,
        r.packs_written.iter().map(|p| p.size).sum::<u64>(),
        s.packs.len(),
        r.packs_unused
    )?;
    writeln!(
        out,
        "{} static deltas listed: {} written ({} bytes), {} reused",
        s.deltas.len(),
        r.deltas_written.len(),
        r.deltas_written.iter().map(|d| d.size).sum::<u64>(),
        r.deltas_reused
    )?;
    if args.prune {
        writeln!(
            out,
            "pruned {} files ({} bytes) that neither this summary nor the previous one names",
            r.pruned.0, r.pruned.1
        )?;
    }
    for e in &s.refs {
        writeln!(out, "  {} {} {} bytes", e.name, e.commit, e.download_size)?;
    }
    for d in &s.deltas {
        writeln!(out, "  delta {} -> {} {} bytes", d.from, d.to, d.size)?;
    }
    Ok(ExitCode::SUCCESS)
}
