//! `update mirror`: copy a published repository into a directory, verified.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use fetch::{FetchConfig, Fetcher};
use transport::mirror::mirror;

use super::{print_json, KeysArg, TlsArgs};

const EXAMPLE: &str = "\
Examples:
  update mirror https://updates.example.com/os /srv/www/os --key release.pub
  update mirror file:///srv/build/os /mnt/usb/os --trusted-keys /etc/update/keys

Verifies the summary (trusted signature, serial not older than the last one mirrored, not
expired), fetches every file it pins that DIR lacks, checks each against its BLAKE3, and
replaces DIR/summary last. Run it again to update the mirror: only new files are fetched.";

/// Copy a published repository into a directory, incrementally and verified.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// The published repository: http://, https:// or file://.
    url: String,
    /// The directory to mirror into (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    keys: KeysArg,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `update mirror`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let trusted = args.keys.source().load()?;
    if trusted.is_empty() {
        anyhow::bail!("no trusted key given");
    }
    let mut cfg = FetchConfig::new(args.url.clone());
    cfg.tls = transport::pull::tls_config(&args.tls.to_remote());
    let fetcher = Fetcher::new(cfg)?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.dir.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let r = mirror(&fetcher, &args.dir, &trusted, now)?;
    if args.json {
        print_json(
            out,
            &serde_json::json!({"serial": r.serial, "files": r.files,
                "fetched_files": r.fetched_files, "bytes": r.bytes, "requests": r.requests}),
        )?;
    } else {
        writeln!(
            out,
            "mirrored serial {} into {}: {} files, {} fetched ({} bytes, {} requests)",
            r.serial,
            args.dir.display(),
            r.files,
            r.fetched_files,
            r.bytes,
            r.requests
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
