//! `update-repo-server`: serve a published update repository.
//!
//! Exit codes: 0 never in practice (the server runs until killed), 1 on a startup error
//! (bad root, TLS files, log file or listen address).

use std::process::ExitCode;

use clap::Parser;
use repo_server::ServeArgs;

/// Serve a published update repository read-only over HTTP or HTTPS.
#[derive(Debug, Parser)]
#[command(name = "update-repo-server", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let config = Args::parse().serve.into_config();
    match repo_server::serve_blocking(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = anyhow::Error::from(e)
                .chain()
                .map(|c| c.to_string())
                .collect();
            eprintln!("update-repo-server: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
