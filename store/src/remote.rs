//! Remotes of a repository: where `update pull` fetches from and whom it trusts.
//!
//! Each remote is a directory `remotes/NAME/` of the repository:
//!
//! ```text
//! remotes/NAME/remote.toml    url = "https://...", optional channel = "stable" and
//!                             max-clock-skew = SECONDS, and an optional [tls] table
//! remotes/NAME/trusted/*.pub  the public keys whose signatures pull accepts (copied in)
//! remotes/NAME/trust-state    the last accepted summary (docs/transport.md 2.5)
//! remotes/NAME/cache/         verified pack and chunk indexes, partial downloads
//! remotes/NAME/lock           held by a running pull
//! ```
//!
//! A remote is added by building that directory under a temporary name and renaming it
//! into place, so a crash never leaves a half-configured remote, and two adds of one name
//! cannot both succeed. Keys are copied, not referenced, so the trust of a device does not
//! change when a file elsewhere does.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::repo::{validate_remote_name, Repo};
use crate::sign::{load_public_key, load_trusted_keys, public_key_path, TrustedKeys};

/// Directory of the remotes inside a repository.
pub const REMOTES_DIR: &str = "remotes";
const CONFIG_FILE: &str = "remote.toml";
const TRUSTED_DIR: &str = "trusted";
const STATE_FILE: &str = "trust-state";
const CACHE_DIR: &str = "cache";
const LOCK_FILE: &str = "lock";
/// Largest `remote.toml` read.
const MAX_CONFIG: u64 = 64 * 1024;

/// TLS files of an `https://` remote. Paths are stored absolute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoteTls {
    /// PEM CA certificates: the only roots trusted for this remote (default: Mozilla's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for servers that require mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl RemoteTls {
    /// True when no TLS option is set.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// How a remote's summaries are judged beyond their signatures (docs/transport.md 2.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotePolicy {
    /// The channel the remote's summaries must name (like `stable`). `None`: the first
    /// accepted summary naming one pins it.
    pub channel: Option<String>,
    /// How far (seconds) a summary's timestamp may be ahead of the device clock and still
    /// teach the device that time has passed. `None`: the default of one day.
    pub max_clock_skew: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_clock_skew: Option<u64>,
    #[serde(default, skip_serializing_if = "RemoteTls::is_empty")]
    tls: RemoteTls,
}

/// A remote's pull lock; released when dropped.
#[derive(Debug)]
pub struct RemoteLock {
    _fd: std::os::fd::OwnedFd,
}

/// Where the keys of a new remote come from.
#[derive(Clone, Copy, Debug)]
pub enum KeySource<'a> {
    /// One public key file (base64, as written by `update key generate`).
    File(&'a Path),
    /// A directory of `*.pub` files, or a file of keys one per line.
    Set(&'a Path),
}

impl KeySource<'_> {
    /// Load the keys. A single key file with a `.pub` file beside it is refused: it is
    /// the secret half of a pair, and looks just like a public key (base64 of 32 bytes).
    pub fn load(&self) -> Result<TrustedKeys> {
        match *self {
            KeySource::File(p) => {
                #[allow(clippy::disallowed_methods)] // path meant: by the user's key file
                if public_key_path(p).exists() {
                    return Err(Error::invalid(
                        "trusted key",
                        format!(
                            "{} looks like a secret key ({} is beside it): give the .pub file",
                            p.display(),
                            public_key_path(p).display()
                        ),
                    ));
                }
                let key = load_public_key(p)?;
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "key".into());
                let mut set = TrustedKeys::new();
                set.insert(stem, key);
                Ok(set)
            }
            KeySource::Set(p) => load_trusted_keys(p),
        }
    }
}

/// A configured remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its name.
    pub name: String,
    /// The published repository's URL (`http://`, `https://` or `file://`).
    pub url: String,
    /// TLS files.
    pub tls: RemoteTls,
    /// The channel and clock skew its summaries are checked against.
    pub policy: RemotePolicy,
    dir: PathBuf,
}

fn remote_err(name: &str, reason: impl Into<String>) -> Error {
    Error::Remote {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Check a remote URL: a scheme `update pull` speaks, no query or fragment, and TLS
/// options only with `https://`.
fn check_url(name: &str, url: &str, tls: &RemoteTls) -> Result<()> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https" | "file") => {}
        _ => {
            return Err(remote_err(
                name,
                format!("URL '{url}' must start with http://, https:// or file://"),
            ))
        }
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(remote_err(
            name,
            format!("URL '{url}' may not contain a query, fragment or whitespace"),
        ));
    }
    if !tls.is_empty() && scheme.as_deref() != Some("https") {
        return Err(remote_err(name, "TLS options need an https:// URL"));
    }
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(remote_err(
            name,
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    Ok(())
}

/// Check a remote's policy: a channel is named like a remote (one ref-name component, at
/// most 64 bytes).
fn check_policy(name: &str, policy: &RemotePolicy) -> Result<()> {
    if let Some(c) = &policy.channel {
        if validate_remote_name(c).is_err() {
            return Err(remote_err(
                name,
                format!(
                    "channel '{}' must be 1..=64 ASCII letters, digits or . _ - + @, not \
                     starting with '.'",
                    c.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

/// Make a TLS file path absolute and check that it is a readable file.
fn absolute_file(name: &str, what: &str, path: &Path) -> Result<PathBuf> {
    #[allow(clippy::disallowed_methods)] // path meant: a TLS file the user named, made absolute
    let abs = std::fs::canonicalize(path)
        .map_err(|e| remote_err(name, format!("{what} {}: {e}", path.display())))?;
    #[allow(clippy::disallowed_methods)] // path meant: the same TLS file
    if !abs.is_file() {
        return Err(remote_err(
            name,
            format!("{what} {} is not a file", path.display()),
        ));
    }
    Ok(abs)
}

impl Remote {
    /// Add a remote: validate the name, URL, TLS files and keys, then create
    /// `remotes/NAME/` atomically. Fails if the remote exists.
    pub fn add(
        repo: &Repo,
        name: &str,
        url: &str,
        keys: KeySource<'_>,
        tls: &RemoteTls,
    ) -> Result<Remote> {
        Remote::add_with_policy(repo, name, url, keys, tls, &RemotePolicy::default())
    }

    /// [`Remote::add`] with a channel or clock skew set.
    pub fn add_with_policy(
        repo: &Repo,
        name: &str,
        url: &str,
        keys: KeySource<'_>,
        tls: &RemoteTls,
        policy: &RemotePolicy,
    ) -> Result<Remote> {
        validate_remote_name(name)?;
        let remotes_path = repo.path().join(REMOTES_DIR);
        let remotes = durable::mkdir_all_at(repo.dir(), Path::new(REMOTES_DIR), &remotes_path)?;
        if rustix::fs::statat(&remotes, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(remote_err(name, "exists already (remove it first)"));
        }
        let tmp = Remote::build(repo, &remotes, name, url, keys, tls, policy)?;
        let placed = match rustix::fs::renameat_with(
            &remotes,
            tmp.as_str(),
            &remotes,
            name,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => rustix::fs::fsync(&remotes).at_path(&remotes_path),
            Err(Errno::EXIST) => Err(remote_err(name, "exists already (remove it first)")),
            Err(e) => Err(e).at_path(remotes_path.join(name)),
        };
        if placed.is_err() {
            let _ = durable::remove_tree_at(remotes.as_fd(), &tmp);
        }
        placed?;
        Remote::open(repo, name)
    }

    /// Replace an existing remote's URL, keys and TLS files in one step, keeping its trust
    /// state (the last serial and time seen) and its policy (channel, clock skew), so a
    /// reconfiguration cannot be used to roll a device back. Takes the remote's pull lock.
    pub fn reconfigure(
        repo: &Repo,
        name: &str,
        url: &str,
        keys: KeySource<'_>,
        tls: &RemoteTls,
    ) -> Result<Remote> {
        let old = Remote::open(repo, name)?;
        let _lock = old.lock()?;
        let remotes_path = repo.path().join(REMOTES_DIR);
        let remotes = durable::open_dir_at(repo.dir(), REMOTES_DIR).at_path(&remotes_path)?;
        let tmp = Remote::build(repo, &remotes, name, url, keys, tls, &old.policy)?;
        let swapped = (|| {
            match durable::open_dir_at(remotes.as_fd(), name)
                .map_err(std::io::Error::from)
                .and_then(|d| durable::read_at(d.as_fd(), STATE_FILE))
            {
                Ok(state) => {
                    let dir = durable::open_dir_at(remotes.as_fd(), &tmp)
                        .at_path(remotes_path.join(&tmp))?;
                    durable::write_atomic(
                        dir.as_fd(),
                        STATE_FILE,
                        &state,
                        0o644,
                        &remotes_path.join(&tmp).join(STATE_FILE),
                    )?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at_path(old.trust_state_path()),
            }
            rustix::fs::renameat_with(
                &remotes,
                tmp.as_str(),
                &remotes,
                name,
                RenameFlags::EXCHANGE,
            )
            .at_path(remotes_path.join(name))?;
            rustix::fs::fsync(&remotes).at_path(&remotes_path)
        })();
        // After the exchange `tmp` holds the old configuration; before it, the unused new one.
        let _ = durable::remove_tree_at(remotes.as_fd(), &tmp);
        swapped?;
        Remote::open(repo, name)
    }

    /// Validate and write a remote's directory under a temp name in `remotes/`; returns the
    /// temp name. Nothing is left behind on error.
    fn build(
        repo: &Repo,
        remotes: &std::os::fd::OwnedFd,
        name: &str,
        url: &str,
        keys: KeySource<'_>,
        tls: &RemoteTls,
        policy: &RemotePolicy,
    ) -> Result<String> {
        validate_remote_name(name)?;
        check_url(name, url, tls)?;
        check_policy(name, policy)?;
        let tls = RemoteTls {
            ca: tls
                .ca
                .as_deref()
                .map(|p| absolute_file(name, "CA file", p))
                .transpose()?,
            client_cert: tls
                .client_cert
                .as_deref()
                .map(|p| absolute_file(name, "client certificate", p))
                .transpose()?,
            client_key: tls
                .client_key
                .as_deref()
                .map(|p| absolute_file(name, "client key", p))
                .transpose()?,
        };
        let trusted = keys.load().map_err(|e| match e {
            Error::Invalid { reason, .. } => remote_err(name, reason),
            e => e,
        })?;
        if trusted.is_empty() {
            return Err(remote_err(
                name,
                "no trusted key given: pull needs at least one",
            ));
        }
        let config = toml::to_string(&ConfigFile {
            url: url.to_owned(),
            channel: policy.channel.clone(),
            max_clock_skew: policy.max_clock_skew,
            tls: tls.clone(),
        })
        .map_err(|e| remote_err(name, format!("cannot encode config: {e}")))?;

        let remotes_path = repo.path().join(REMOTES_DIR);
        let tmp = durable::temp_name(".new-");
        let tmp_path = remotes_path.join(&tmp);
        let built = (|| {
            rustix::fs::mkdirat(remotes, tmp.as_str(), Mode::from_raw_mode(0o755))
                .at_path(&tmp_path)?;
            let dir = durable::open_dir_at(remotes.as_fd(), &tmp).at_path(&tmp_path)?;
            durable::write_atomic(
                dir.as_fd(),
                CONFIG_FILE,
                config.as_bytes(),
                0o644,
                &tmp_path.join(CONFIG_FILE),
            )?;
            let keys_path = tmp_path.join(TRUSTED_DIR);
            let keys_dir = durable::mkdir_all_at(dir.as_fd(), Path::new(TRUSTED_DIR), &keys_path)?;
            let mut used = std::collections::BTreeSet::new();
            for (key_name, key) in trusted.iter() {
                // Key names become file stems: keep them to safe characters, unique.
                let safe: String = key_name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let safe = safe.trim_start_matches('.');
                let safe = if safe.is_empty() { "key" } else { safe };
                let mut stem = safe.to_owned();
                let mut n = 1;
                while !used.insert(stem.clone()) {
                    n += 1;
                    stem = format!("{safe}-{n}");
                }
                let file = format!("{stem}.pub");
                durable::write_atomic(
                    keys_dir.as_fd(),
                    &file,
                    format!("{key}\n").as_bytes(),
                    0o644,
                    &keys_path.join(&file),
                )?;
            }
            rustix::fs::fsync(&keys_dir).at_path(&keys_path)?;
            rustix::fs::fsync(&dir).at_path(&tmp_path)?;
            Ok(())
        })();
        if built.is_err() {
            let _ = durable::remove_tree_at(remotes.as_fd(), &tmp);
        }
        built?;
        Ok(tmp)
    }

    /// Open a configured remote.
    pub fn open(repo: &Repo, name: &str) -> Result<Remote> {
        validate_remote_name(name)?;
        let dir = repo.path().join(REMOTES_DIR).join(name);
        let path = dir.join(CONFIG_FILE);
        let file = durable::open_dir_at(repo.dir(), REMOTES_DIR)
            .and_then(|d| durable::open_dir_at(d.as_fd(), name))
            .and_then(|d| durable::open_read_at(d.as_fd(), CONFIG_FILE))
            .map_err(std::io::Error::from);
        let text = match file.and_then(|f| Ok((f.metadata()?, f))) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(remote_err(
                    name,
                    "no such remote (see `update remote list`)",
                ))
            }
            Err(e) => return Err(e).at_path(&path),
            Ok((m, _)) if m.len() > MAX_CONFIG => {
                return Err(remote_err(name, format!("{} is too large", path.display())))
            }
            Ok((_, mut f)) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text).at_path(&path)?;
                text
            }
        };
        let config: ConfigFile = toml::from_str(&text)
            .map_err(|e| remote_err(name, format!("{}: {e}", path.display())))?;
        check_url(name, &config.url, &config.tls)?;
        let policy = RemotePolicy {
            channel: config.channel,
            max_clock_skew: config.max_clock_skew,
        };
        check_policy(name, &policy)?;
        Ok(Remote {
            name: name.to_owned(),
            url: config.url,
            tls: config.tls,
            policy,
            dir,
        })
    }

    /// Every configured remote, sorted by name.
    pub fn list(repo: &Repo) -> Result<Vec<Remote>> {
        let path = repo.path().join(REMOTES_DIR);
        let dir = match durable::open_dir_at(repo.dir(), REMOTES_DIR) {
            Err(Errno::NOENT) => return Ok(Vec::new()),
            r => r.at_path(&path)?,
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir).at_path(&path)? {
            let name = entry
                .at_path(&path)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        names.iter().map(|n| Remote::open(repo, n)).collect()
    }

    /// Remove a remote's configuration, keys, trust state and cache, then its refs as last
    /// pulled (`NAME:REF`): a later remote of the same name starts clean, and a prune may
    /// then delete what only those refs kept.
    pub fn remove(repo: &Repo, name: &str) -> Result<()> {
        // Not while a pull from it runs: the pull would write into the removed directory.
        let _lock = Remote::open(repo, name)?.lock()?;
        let remotes_path = repo.path().join(REMOTES_DIR);
        let remotes = durable::open_dir_at(repo.dir(), REMOTES_DIR).at_path(&remotes_path)?;
        // Rename away first, so the remote disappears in one step.
        let tmp = durable::temp_name(".old-");
        rustix::fs::renameat(&remotes, name, &remotes, tmp.as_str())
            .at_path(remotes_path.join(name))?;
        rustix::fs::fsync(&remotes).at_path(&remotes_path)?;
        durable::remove_tree_at(remotes.as_fd(), &tmp).at_path(remotes_path.join(&tmp))?;
        repo.delete_remote_refs(name)?;
        Ok(())
    }

    /// The keys whose signatures this remote's summaries and commits must carry.
    pub fn trusted_keys(&self) -> Result<TrustedKeys> {
        let keys = load_trusted_keys(&self.dir.join(TRUSTED_DIR))?;
        if keys.is_empty() {
            return Err(remote_err(&self.name, "has no trusted key"));
        }
        Ok(keys)
    }

    /// Take the remote's lock for a pull, or fail at once if another process holds it: two
    /// pulls from one remote at a time could save their trust states in the wrong order
    /// and lower the serial a rollback is checked against. Held until dropped.
    pub fn lock(&self) -> Result<RemoteLock> {
        let path = self.dir.join(LOCK_FILE);
        let fd = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .at_path(&path)?;
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RemoteLock { _fd: fd }),
            Err(Errno::WOULDBLOCK) => Err(remote_err(
                &self.name,
                format!(
                    "another pull from this remote is running (it holds {})",
                    path.display()
                ),
            )),
            Err(e) => Err(e).at_path(&path),
        }
    }

    /// The remote's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the last accepted summary's trust state is kept.
    pub fn trust_state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Where verified indexes and partial downloads are cached (created on demand).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join(CACHE_DIR)
    }
}
