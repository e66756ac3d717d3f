//! A repository on disk: `config`, `objects/`, `refs/`, `tmp/` and the lock file.
//! See `docs/format.md` for the layout.

mod lock;
mod objects;
mod refs;
mod txn;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

pub use lock::RepoLock;
pub(crate) use objects::object_rel;
pub use objects::{FileContent, MAX_SIGNATURES_FILE};
pub use refs::{validate_remote_name, RefName};
pub use txn::Transaction;

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::object::FORMAT_VERSION;

/// How file objects are stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoMode {
    /// Each file object is a ready file (or symlink) with its final mode, owner and
    /// xattrs, so a checkout can hardlink it. Used on devices. Needs root to store
    /// owners other than the caller's.
    Bare,
    /// Each file object is its encoded header followed by its zstd-compressed content.
    /// Used for publishing.
    Archive,
}

impl std::str::FromStr for RepoMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bare" => Ok(RepoMode::Bare),
            "archive" => Ok(RepoMode::Archive),
            _ => Err(Error::invalid(
                format!("repository mode '{s}'"),
                "expected 'bare' or 'archive'",
            )),
        }
    }
}

impl std::fmt::Display for RepoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoMode::Bare => "bare",
            RepoMode::Archive => "archive",
        })
    }
}

/// The repository's `config` file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// The `[core]` table.
    pub core: CoreConfig,
}

/// The `[core]` table of the repository config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CoreConfig {
    /// The repository format version.
    pub format_version: u32,
    /// bare or archive.
    pub mode: RepoMode,
    /// zstd level for archive-mode file content (default 5: at 3 the repo comes out larger than OSTree's zlib archive).
    #[serde(default = "default_level", skip_serializing_if = "is_default_level")]
    pub compression_level: i32,
}

fn default_level() -> i32 {
    5
}

fn is_default_level(l: &i32) -> bool {
    *l == default_level()
}

/// An open repository.
pub struct Repo {
    path: PathBuf,
    dir: OwnedFd,
    objects: OwnedFd,
    config: RepoConfig,
}

/// Name of the config file.
pub const CONFIG_FILE: &str = "config";
/// Name of the lock file.
pub const LOCK_FILE: &str = "lock";

impl Repo {
    /// Create a new, empty repository at `path` (the directory may exist but must be empty).
    pub fn init(path: impl AsRef<Path>, mode: RepoMode) -> Result<Repo> {
        let path = path.as_ref();
        #[allow(clippy::disallowed_methods)] // path meant: the new repository the user named
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                #[allow(clippy::disallowed_methods)] // path meant: the same, checked empty
                let mut it = std::fs::read_dir(path).at_path(path)?;
                if it.next().is_some() {
                    return Err(Error::Repo {
                        path: path.to_path_buf(),
                        reason: "directory exists and is not empty".into(),
                    });
                }
            }
            Err(e) => return Err(e).at_path(path),
        }
        let dir = open_dir(path)?;
        for sub in ["objects", "refs", "refs/heads", "refs/remotes", "tmp"] {
            durable::mkdir_all_at(dir.as_fd(), Path::new(sub), &path.join(sub))?;
        }
        let lock = rustix::fs::openat(
            &dir,
            LOCK_FILE,
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .at_path(path.join(LOCK_FILE))?;
        drop(lock);
        let config = RepoConfig {
            core: CoreConfig {
                format_version: FORMAT_VERSION.into(),
                mode,
                compression_level: default_level(),
            },
        };
        let text = toml::to_string(&config).expect("config serializes");
        // The config is written last: a directory without it is not a repository.
        durable::write_atomic(
            dir.as_fd(),
            CONFIG_FILE,
            text.as_bytes(),
            0o644,
            &path.join(CONFIG_FILE),
        )?;
        rustix::fs::fsync(&dir).at_path(path)?;
        Self::open(path)
    }

    /// Open an existing repository.
    pub fn open(path: impl AsRef<Path>) -> Result<Repo> {
        let path = path.as_ref();
        let dir = open_dir(path)?;
        let cfg_path = path.join(CONFIG_FILE);
        let text = match durable::read_at(dir.as_fd(), CONFIG_FILE)
            .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
        {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Repo {
                    path: path.to_path_buf(),
                    reason: "not a repository (no config file; create one with `update init`)"
                        .into(),
                })
            }
            Err(e) => return Err(e).at_path(&cfg_path),
        };
        let config: RepoConfig = toml::from_str(&text).map_err(|e| Error::Repo {
            path: path.to_path_buf(),
            reason: format!("config: {}", e.message()),
        })?;
        if config.core.format_version < u32::from(FORMAT_VERSION) {
            return Err(Error::Repo {
                path: path.to_path_buf(),
                reason: format!("unknown format-version {}", config.core.format_version),
            });
        }
        if config.core.format_version > u32::from(FORMAT_VERSION) {
            return Err(Error::NewerFormat {
                what: "repository",
                found: config.core.format_version,
                supported: FORMAT_VERSION.into(),
            });
        }
        let objects = durable::open_dir_at(dir.as_fd(), "objects").at_path(path.join("objects"))?;
        Ok(Repo {
            path: path.to_path_buf(),
            dir,
            objects,
            config,
        })
    }

    /// Where the repository is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// bare or archive.
    pub fn mode(&self) -> RepoMode {
        self.config.core.mode
    }

    /// The parsed config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The repository's root directory handle.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Make everything written to the repository's filesystem durable (`syncfs`): the
    /// directory entries of objects published by [`Transaction::commit_unsynced`] among
    /// them.
    pub fn sync(&self) -> Result<()> {
        let started = std::time::Instant::now();
        rustix::fs::syncfs(self.dir()).at_path(self.path())?;
        tracing::debug!(
            repo = %self.path().display(),
            ms = started.elapsed().as_millis() as u64,
            "syncfs"
        );
        Ok(())
    }

    /// The `objects/` directory handle.
    pub fn objects_dir(&self) -> BorrowedFd<'_> {
        self.objects.as_fd()
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    crate::durable::open_dir(path).at_path(path)
}
