//! `update remote`: the repositories a device pulls from, and whom it trusts for each.

use std::io::Write;
use std::process::ExitCode;

use store::remote::Remote;

use super::{print_json, KeysArg, RepoArg, TlsArgs};

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
absolute path.")]
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

The refs last pulled from it (origin:REF) stay, so the commits they name are kept.")]
    Remove {
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
        } => {
            let repo = repo.open()?;
            let remote = Remote::add(&repo, &name, &url, keys.source(), &tls.to_remote())?;
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
    }
    Ok(ExitCode::SUCCESS)
}
