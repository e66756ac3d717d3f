//! `update pull`: fetch a remote's refs into the repository, verified.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use store::remote::Remote;
use store::RefName;
use transport::pull::{pull, Event, PullOptions, PullReport};

use super::RepoArg;

const EXAMPLE: &str = "\
Examples:
  update pull --repo /sysroot/repo origin
  update pull --repo repo origin:os/x86_64/stable --json

Checks the summary's signature, serial and expiry, then each commit's signature, and
every byte against its hash before it is stored. Fetches only what the repository lacks,
in few Range requests; an interrupted pull resumes where it stopped. The pulled ref is
then REMOTE:REF (for `update checkout`, `log`, `deploy`). Refuses a commit older than the
one the ref has, unless --allow-downgrade.";

/// Fetch a remote's refs (or one) into the repository, verified.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// REMOTE, or REMOTE:REF for one ref.
    #[arg(value_name = "REMOTE[:REF]")]
    target: String,
    /// Accept a commit older than the one the ref has now.
    #[arg(long)]
    allow_downgrade: bool,
    /// Fetch chunks even when the remote offers a static delta from the current commit.
    #[arg(long)]
    no_deltas: bool,
    /// Print progress events and the result as JSON lines.
    #[arg(long)]
    json: bool,
    /// Stored bytes fetched and stored per batch (tests use small batches).
    #[arg(long, hide = true, value_name = "BYTES")]
    batch_bytes: Option<u64>,
}

/// A progress bar on a terminal, JSON lines with --json, nothing otherwise.
struct Progress<'o> {
    json: Option<&'o mut dyn Write>,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress<'_> {
    fn event(&mut self, e: &Event) {
        if let Some(out) = self.json.as_mut() {
            let value = match e {
                Event::Summary {
                    serial,
                    signed_by,
                    unchanged,
                } => serde_json::json!({"event": "summary", "serial": serial,
                    "signed_by": signed_by, "unchanged": unchanged}),
                Event::ClockBehind { seconds } => {
                    serde_json::json!({"event": "clock-behind", "seconds": seconds})
                }
                Event::TimestampAhead { timestamp, now } => serde_json::json!({
                    "event": "timestamp-ahead", "timestamp": timestamp, "now": now}),
                Event::ClockReset => serde_json::json!({"event": "clock-reset"}),
                Event::Planned {
                    name,
                    commit,
                    bytes,
                    files,
                    delta,
                } => serde_json::json!({"event": "planned", "ref": name,
                    "commit": commit.to_string(), "bytes": bytes, "files": files, "delta": delta}),
                Event::Progress { name, done, total } => serde_json::json!({"event": "progress",
                    "ref": name, "done": done, "total": total}),
                Event::DeltaFailed { name, reason } => serde_json::json!({
                    "event": "delta-failed", "ref": name, "reason": reason}),
            };
            // Progress is best effort: a closed pipe shows up on the final write.
            let _ = writeln!(out, "{value}");
            return;
        }
        match e {
            Event::ClockBehind { seconds } => eprintln!(
                "warning: the device clock is {seconds} s behind the latest time seen in a \
                 summary; expiry was checked against the latter. Fix the clock."
            ),
            Event::TimestampAhead { timestamp, now } => eprintln!(
                "warning: the summary claims time {timestamp}, {} s ahead of this device's \
                 clock ({now}), more than the remote's maximum clock skew: it is used, but \
                 taken as evidence of time only up to the bound (the publisher's clock is \
                 probably wrong)",
                timestamp.saturating_sub(*now)
            ),
            Event::ClockReset => eprintln!(
                "note: the summary resets the clock: the latest time known from summaries is \
                 lowered to this device's clock"
            ),
            Event::Planned {
                name, bytes, files, ..
            } if std::io::stderr().is_terminal() => {
                let bar = indicatif::ProgressBar::new(*bytes);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(format!("{name} ({files} files)"));
                self.bar = Some(bar);
            }
            Event::DeltaFailed { name, reason } => eprintln!(
                "warning: the static delta for {name} cannot be applied here ({reason}); \
                 pulling chunks instead"
            ),
            Event::Progress { done, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*done);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Run `update pull`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let (remote_name, only) = match args.target.split_once(':') {
        Some((r, name)) => (r, Some(RefName::new(name)?)),
        None => (args.target.as_str(), None),
    };
    let remote = Remote::open(&repo, remote_name)?;
    let mut opts = PullOptions {
        allow_downgrade: args.allow_downgrade,
        use_deltas: !args.no_deltas,
        ..PullOptions::default()
    };
    if let Some(b) = args.batch_bytes {
        opts.batch_bytes = b.max(1);
    }
    let report = {
        let mut progress = Progress {
            json: if args.json { Some(&mut *out) } else { None },
            bar: None,
        };
        let result = pull(&repo, &remote, only.as_ref(), &opts, &mut |e| {
            progress.event(e)
        });
        progress.finish();
        result?
    };
    if args.json {
        writeln!(out, "{}", report_json(&report))?;
    } else {
        print_report(out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_json(r: &PullReport) -> serde_json::Value {
    let refs: Vec<_> = r
        .refs
        .iter()
        .map(|o| {
            serde_json::json!({
                "ref": o.name.to_string(),
                "commit": o.commit.to_string(),
                "previous": o.previous.map(|c| c.to_string()),
                "version": o.version,
                "updated": o.updated,
                "bytes": o.bytes,
                "files": o.files,
                "signed_by": o.signed_by,
            })
        })
        .collect();
    serde_json::json!({"event": "done", "remote": r.remote, "serial": r.serial,
        "refs": refs, "removed": r.removed, "bytes": r.bytes, "requests": r.requests})
}

fn print_report(out: &mut dyn Write, r: &PullReport) -> anyhow::Result<()> {
    for o in &r.refs {
        let version = o
            .version
            .as_deref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        if o.updated {
            writeln!(
                out,
                "{}:{} -> {}{version}: {} files, {} bytes, signed by {}",
                r.remote,
                o.name,
                o.commit,
                o.files,
                o.bytes,
                o.signed_by.join(", ")
            )?;
        } else {
            writeln!(
                out,
                "{}:{} is up to date at {}{version}",
                r.remote, o.name, o.commit
            )?;
        }
    }
    for name in &r.removed {
        writeln!(
            out,
            "{}:{name} removed: the remote no longer publishes it",
            r.remote
        )?;
    }
    writeln!(
        out,
        "fetched {} bytes in {} requests (summary serial {})",
        r.bytes, r.requests, r.serial
    )?;
    Ok(())
}
