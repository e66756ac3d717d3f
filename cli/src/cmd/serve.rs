//! `update serve`: serve a published repository (the same server as `update-repo-server`).

use std::io::Write;
use std::process::ExitCode;

const EXAMPLE: &str = "\
Examples:
  update serve --root /srv/repo --listen 0.0.0.0:8080
  update serve --root /srv/repo --listen [::]:8443 --tls-cert cert.pem --tls-key key.pem \\
      --client-ca fleet-ca.pem --access-log /var/log/update-repo.log

Serves DIR read-only (GET and HEAD, Range, ETag); runs until stopped.";

/// Serve a directory read-only over HTTP or HTTPS, optionally with mutual TLS.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    serve: repo_server::ServeArgs,
}

/// Run `update serve`.
pub fn run(args: Args, _out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    repo_server::serve_blocking(args.serve.into_config())?;
    Ok(ExitCode::SUCCESS)
}
