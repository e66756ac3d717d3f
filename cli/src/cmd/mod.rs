//! One module per subcommand. Each has an `Args` struct (clap) and a `run` that calls the
//! store and prints. The commands only a build machine needs (`init`, `commit`, `key`,
//! `sign`, `checkout`, `publish`, `serve`, `mirror`) are built with the `builder` feature
//! alone; everything else is the `device` feature (cli/Cargo.toml).

pub mod boot;
#[cfg(feature = "builder")]
pub mod checkout;
#[cfg(feature = "builder")]
pub mod commit;
pub mod config;
pub mod deploy;
pub mod diff;
pub mod finalize;
pub mod front;
pub mod fsck;
pub mod generate;
#[cfg(feature = "builder")]
pub mod init;
#[cfg(feature = "builder")]
pub mod install;
#[cfg(feature = "builder")]
pub mod key;
pub mod log;
pub mod ls;
#[cfg(feature = "builder")]
pub mod mirror;
pub mod prepare_root;
pub mod prune;
#[cfg(feature = "builder")]
pub mod publish;
pub mod pull;
pub mod refs;
pub mod remote;
#[cfg(feature = "builder")]
pub mod serve;
pub mod show;
#[cfg(feature = "builder")]
pub mod sign;
pub mod status;
pub mod sysroot;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;

use store::Repo;

/// The `--repo` option every repository command takes.
#[derive(clap::Args, Debug)]
pub struct RepoArg {
    /// The repository directory.
    #[arg(long, env = "UPDATE_REPO", value_name = "DIR")]
    pub repo: PathBuf,
}

impl RepoArg {
    /// Open the repository.
    pub fn open(&self) -> anyhow::Result<Repo> {
        Ok(Repo::open(&self.repo)?)
    }
}

/// Which keys to trust: `--key FILE` or `--trusted-keys PATH` (remote add, mirror).
#[derive(clap::Args, Debug)]
pub struct KeysArg {
    /// A trusted public key file (from `update key generate`: FILE.pub).
    #[arg(long, value_name = "FILE", required_unless_present = "trusted_keys")]
    pub key: Option<PathBuf>,
    /// A directory of trusted *.pub files, or a file of keys one per line.
    #[arg(long, value_name = "PATH", conflicts_with = "key")]
    pub trusted_keys: Option<PathBuf>,
}

impl KeysArg {
    /// Where the keys come from; clap makes sure one of the two options is given.
    pub fn source(&self) -> store::remote::KeySource<'_> {
        match (&self.key, &self.trusted_keys) {
            (Some(k), _) => store::remote::KeySource::File(k),
            (None, Some(p)) => store::remote::KeySource::Set(p),
            (None, None) => unreachable!("clap requires --key or --trusted-keys"),
        }
    }
}

/// TLS files for an https:// repository (remote add, mirror).
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// PEM CA certificates to trust instead of the public roots (https only).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for servers that require mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// As a remote's TLS settings.
    pub fn to_remote(&self) -> store::remote::RemoteTls {
        store::remote::RemoteTls {
            ca: self.tls_ca.clone(),
            client_cert: self.tls_client_cert.clone(),
            client_key: self.tls_client_key.clone(),
        }
    }
}

/// Print a value as pretty JSON and a newline.
pub fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    // Through io::Error, so that a closed pipe is recognised as one.
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}
