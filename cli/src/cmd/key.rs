//! `update key`: manage signing keys.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::sign::{generate_key, public_key_path};

/// Manage ed25519 signing keys.
#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key pair: FILE (secret, mode 0600) and FILE.pub.
    #[command(
        after_help = "Example:\n  update key generate --output keys/release\n\n\
        Prints the public key (base64). Install FILE.pub on devices as a trusted key; \
        keep FILE secret."
    )]
    Generate {
        /// Where to write the secret key; refused if it exists.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Run `update key ...`.
pub fn run(cmd: KeyCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { output } => {
            let public = generate_key(&output)?;
            writeln!(out, "{public}")?;
            eprintln!(
                "secret key written to {}, public key to {}",
                output.display(),
                public_key_path(&output).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
