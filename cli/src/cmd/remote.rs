//! `update remote`: the repositories a device pulls from, and whom it trusts for each.

use std::io::Write;
use std::process::ExitCode;

use std::time::{SystemTime, UNIX_EPOCH};

use store::remote::{Remote, RemotePolicy};
use transport::summary::{load_trust_state, save_trust_state};

use super::{print_json, KeysArg, RepoArg, TlsArgs};
use crate::format::parse_duration;

/// Manage remotes: where `update pull` fetches from and which keys it trusts.
#[derive(clap::Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a remote: a published repository URL and the keys that must sign it.
    #[command(after_help = "\
Examples:
  update remote add --repo /sysroot/repo origin https://updates.example.com/os --key release.pub
  update remote add --repo repo lab file:///srv/os --trusted-keys /etc/update/keys
  update remote add --repo repo fleet https://mirror.lan/os --key release.pub \\
      --tls-ca ca.pem --tls-client-cert device.pem --tls-client-key device.key

The keys are copied into the repository: the summary and every commit pulled from this
remote must carry a valid signature by one of them. TLS files are remembered by their
absolute path.

With --channel, a summary for another channel (a beta or staging repository signed by
the same key) is refused; without it, the first summary that names a channel pins it.")]
    Add {
        #[command(flatten)]
        repo: RepoArg,
        /// The remote's name (letters, digits, . _ - + @).
        name: String,
        /// The published repository: http://, https:// or file://.
        url: String,
        #[command(flatten)]
        keys: KeysArg,
        #[command(flatten)]
        tls: TlsArgs,
        /// The channel the remote's summaries must name (as given to `update publish
        /// --channel`).
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// How far a summary's timestamp may be ahead of this device's clock and still
        /// count as evidence of the time (like 1d, 12h) [default: 1d].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_clock_skew: Option<u64>,
    },
    /// List the remotes.
    #[command(after_help = "Example:\n  update remote list --repo repo --json")]
    List {
        #[command(flatten)]
        repo: RepoArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a remote: its configuration, keys, trust state and cache.
    #[command(after_help = "\
Example:
  update remote remove --repo repo origin

The refs last pulled from it (origin:REF) are deleted too; `update prune` then deletes
the commits nothing else names.")]
    Remove {
        #[command(flatten)]
        repo: RepoArg,
        /// The remote's name.
        name: String,
    },
    /// Lower the latest time known from a remote's summaries to this device's clock,
    /// keeping its serial: the recovery after a summary from a clock far ahead made every
    /// later summary look expired.
    #[command(after_help = "\
Example:
  update remote reset-time --repo repo origin

A publisher can do the same for every device with `update publish --reset-clock`.")]
    ResetTime {
        #[command(flatten)]
        repo: RepoArg,
        /// The remote's name.
        name: String,
    },
}

/// Run `update remote ...`.
pub fn run(cmd: RemoteCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        RemoteCommand::Add {
            repo,
            name,
            url,
            keys,
            tls,
            channel,
            max_clock_skew,
        } => {
            let repo = repo.open()?;
            let policy = RemotePolicy {
                channel,
                max_clock_skew,
            };
            let remote = Remote::add_with_policy(
                &repo,
                &name,
                &url,
                keys.source(),
                &tls.to_remote(),
                &policy,
            )?;
            let n = remote.trusted_keys()?.len();
            writeln!(
                out,
                "added remote {} {} ({n} trusted key{})",
                remote.name,
                remote.url,
                if n == 1 { "" } else { "s" }
            )?;
        }
        RemoteCommand::List { repo, json } => {
            let repo = repo.open()?;
            let remotes = Remote::list(&repo)?;
            if json {
                let mut list = Vec::new();
                for r in &remotes {
                    let keys: Vec<_> = r
                        .trusted_keys()?
                        .iter()
                        .map(|(n, k)| serde_json::json!({"name": n, "key": k.to_base64()}))
                        .collect();
                    list.push(serde_json::json!({
                        "name": r.name,
                        "url": r.url,
                        "trusted_keys": keys,
                        "tls_ca": r.tls.ca,
                        "tls_client_cert": r.tls.client_cert,
                        "tls_client_key": r.tls.client_key,
                        "channel": r.policy.channel,
                        "max_clock_skew": r.policy.max_clock_skew,
                    }));
                }
                print_json(out, &serde_json::Value::Array(list))?;
            } else {
                for r in &remotes {
                    writeln!(out, "{}\t{}", r.name, r.url)?;
                }
            }
        }
        RemoteCommand::Remove { repo, name } => {
            let repo = repo.open()?;
            Remote::remove(&repo, &name)?;
            writeln!(out, "removed remote {name}")?;
        }
        RemoteCommand::ResetTime { repo, name } => {
            let repo = repo.open()?;
            let remote = Remote::open(&repo, &name)?;
            let _lock = remote.lock()?;
            let path = remote.trust_state_path();
            let Some(mut state) = load_trust_state(&path)? else {
                writeln!(
                    out,
                    "remote {name}: no summary accepted yet, nothing to reset"
                )?;
                return Ok(ExitCode::SUCCESS);
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let old = state.latest_known_time;
            state.latest_known_time = now;
            save_trust_state(&path, &state)?;
            writeln!(
                out,
                "remote {name}: latest known time {old} -> {now} (this device's clock); \
                 serial {} kept",
                state
                    .last_serial
                    .map_or_else(|| "none".to_owned(), |s| s.to_string())
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
