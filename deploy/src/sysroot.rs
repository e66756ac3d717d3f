//! The sysroot: the device's physical root as `update` lays it out (see `docs/deploy.md`).
//!
//! ```text
//! SYSROOT/update/sysroot.toml                  this file's settings
//! SYSROOT/update/lock                          flock held by every command that changes state
//! SYSROOT/update/repo/                         the bare content store
//! SYSROOT/update/deploy/OS/deploy/COMMIT.SERIAL          a deployment
//! SYSROOT/update/deploy/OS/deploy/COMMIT.SERIAL.origin   where it came from
//! SYSROOT/update/deploy/OS/var/                the shared /var of OS
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use store::durable;
use store::{Repo, RepoMode};

use crate::error::{Error, IoResultExt, Result};

/// The directory under the sysroot that holds everything of ours.
pub const UPDATE_DIR: &str = "update";
/// The settings file, under [`UPDATE_DIR`].
pub const CONFIG_FILE: &str = "sysroot.toml";
/// The format version this build writes and reads.
pub const FORMAT: u32 = 1;
/// Boot tries a new deployment gets unless told otherwise.
pub const DEFAULT_RETRIES: u32 = 3;
/// The most boot tries allowed: systemd-boot 252 reads only the last digit of a counter.
pub const MAX_RETRIES: u32 = crate::bls::MAX_TRIES;

/// What kind of filesystem holds the boot entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// The EFI system partition (vfat) read by systemd-boot.
    Esp,
    /// A `/boot` on a filesystem with symlinks (ext4, xfs) read by another BLS reader.
    Boot,
}

/// `update/sysroot.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SysrootConfig {
    /// Layout version.
    pub format: u32,
    /// Where entries and boot files go: relative to the sysroot when it lies inside it
    /// (so the same sysroot works when mounted elsewhere), absolute otherwise.
    pub boot: PathBuf,
    /// What kind of filesystem `boot` is.
    pub boot_kind: BootKind,
    /// Kernel arguments of a first deployment (later ones inherit their predecessor's).
    #[serde(default)]
    pub kargs: Vec<String>,
    /// Boot tries a new deployment gets before the firmware falls back.
    #[serde(default = "default_retries")]
    pub boot_retry_limit: u32,
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// Where `sysroot init` puts boot entries.
#[derive(Clone, Debug)]
pub enum BootLocation {
    /// An EFI system partition mounted at this path.
    Esp(PathBuf),
    /// A `/boot` at this path.
    Boot(PathBuf),
}

/// An open sysroot.
pub struct Sysroot {
    path: PathBuf,
    dir: OwnedFd,
    config: SysrootConfig,
    boot_override: Option<PathBuf>,
}

/// The sysroot lock, released on drop.
#[must_use = "the lock is released when this is dropped"]
pub struct SysrootLock {
    _fd: OwnedFd,
}

/// Check an OS name: it becomes a directory name and part of entry file names.
pub fn validate_os_name(os: &str) -> Result<()> {
    let ok = !os.is_empty()
        && os.len() <= 64
        && os
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !os.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("OS name '{os}'"),
            "use 1 to 64 of A-Z a-z 0-9 - _, not starting with '-'",
        ))
    }
}

/// Check a kernel argument: one word, printable, no quotes.
pub fn validate_karg(arg: &str) -> Result<()> {
    if arg.is_empty()
        || arg.len() > 4096
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(Error::invalid(
            format!("kernel argument '{}'", arg.escape_debug()),
            "must be one non-empty word without spaces, quotes or control characters",
        ));
    }
    if arg.starts_with(crate::cmdline::DEPLOYMENT_KARG) {
        return Err(Error::invalid(
            format!("kernel argument '{arg}'"),
            "update.deployment= is set by `update deploy` itself",
        ));
    }
    Ok(())
}

impl Sysroot {
    /// Lay out a new sysroot at `path` (which must exist) for `os`, or add `os` to an
    /// existing one. The settings of an existing sysroot are kept; giving different ones
    /// is an error.
    pub fn init(
        path: &Path,
        os: &str,
        boot: Option<BootLocation>,
        kargs: &[String],
        retries: Option<u32>,
    ) -> Result<Sysroot> {
        validate_os_name(os)?;
        for k in kargs {
            validate_karg(k)?;
        }
        #[allow(clippy::disallowed_methods)] // path meant: the --sysroot the user named
        let path = std::fs::canonicalize(path).at_path(path)?;
        let config_path = path.join(UPDATE_DIR).join(CONFIG_FILE);
        let has_config = durable::open_dir(&path)
            .and_then(|d| durable::open_dir_at(d.as_fd(), UPDATE_DIR))
            .and_then(|u| {
                rustix::fs::statat(&u, CONFIG_FILE, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            })
            .is_ok();
        let sysroot = if has_config {
            let s = Sysroot::open(&path, None)?;
            if boot.is_some() || !kargs.is_empty() || retries.is_some() {
                return Err(Error::AlreadySysroot {
                    path,
                    os: os.to_owned(),
                });
            }
            s
        } else {
            let (boot_path, boot_kind) = match boot {
                Some(BootLocation::Esp(p)) => (p, BootKind::Esp),
                Some(BootLocation::Boot(p)) => (p, BootKind::Boot),
                None => (path.join("boot"), BootKind::Boot),
            };
            #[allow(clippy::disallowed_methods)] // path meant: the boot location the user named
            std::fs::create_dir_all(&boot_path).at_path(&boot_path)?;
            #[allow(clippy::disallowed_methods)] // path meant: the same, made absolute
            let boot_abs = std::fs::canonicalize(&boot_path).at_path(&boot_path)?;
            let stored = match boot_abs.strip_prefix(&path) {
                Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
                _ => boot_abs.clone(),
            };
            let retries = retries.unwrap_or(DEFAULT_RETRIES);
            check_retries(retries)?;
            let config = SysrootConfig {
                format: FORMAT,
                boot: stored,
                boot_kind,
                kargs: kargs.to_vec(),
                boot_retry_limit: retries,
            };
            let dir = open_dir(&path)?;
            let upd =
                durable::mkdir_all_at(dir.as_fd(), Path::new(UPDATE_DIR), &path.join(UPDATE_DIR))?;
            let repo_path = path.join(UPDATE_DIR).join("repo");
            if rustix::fs::statat(&upd, "repo", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_err() {
                Repo::init(&repo_path, RepoMode::Bare)?;
            }
            let text = toml::to_string(&config).map_err(Error::ConfigEncode)?;
            durable::write_atomic(
                upd.as_fd(),
                CONFIG_FILE,
                text.as_bytes(),
                0o644,
                &config_path,
            )?;
            crate::bls::write_loader_conf(&boot_abs)?;
            Sysroot::open(&path, None)?
        };
        let os_rel = Path::new(UPDATE_DIR).join("deploy").join(os);
        for sub in ["deploy", "var"] {
            let rel = os_rel.join(sub);
            durable::mkdir_all_at(sysroot.dir.as_fd(), &rel, &path.join(&rel))?;
        }
        Ok(sysroot)
    }

    /// Open the sysroot at `path`. `boot` overrides where its boot partition is mounted.
    pub fn open(path: &Path, boot: Option<&Path>) -> Result<Sysroot> {
        let config_path = path.join(UPDATE_DIR).join(CONFIG_FILE);
        let text = match durable::open_dir(path)
            .and_then(|d| durable::open_dir_at(d.as_fd(), UPDATE_DIR))
            .map_err(std::io::Error::from)
            .and_then(|u| durable::read_at(u.as_fd(), CONFIG_FILE))
            .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
        {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotASysroot {
                    path: path.to_path_buf(),
                    config: config_path,
                })
            }
            Err(e) => return Err(e).at_path(&config_path),
        };
        let config: SysrootConfig = toml::from_str(&text).map_err(|e| Error::Malformed {
            path: config_path.clone(),
            reason: e.message().to_owned(),
        })?;
        if config.format != FORMAT {
            return Err(Error::Malformed {
                path: config_path,
                reason: format!(
                    "format {} is not the one this build reads ({FORMAT})",
                    config.format
                ),
            });
        }
        check_retries(config.boot_retry_limit)?;
        Ok(Sysroot {
            dir: open_dir(path)?,
            path: path.to_path_buf(),
            config,
            boot_override: boot.map(Path::to_path_buf),
        })
    }

    /// The handle of `update/deploy/OS/deploy`, reached without following a symlink.
    pub(crate) fn deployments_fd(&self, os: &str) -> Result<OwnedFd> {
        let shown = self.deployments_dir(os);
        let mut fd = durable::open_dir_at(self.dir.as_fd(), UPDATE_DIR).at_path(&shown)?;
        for name in ["deploy", os, "deploy"] {
            fd = durable::open_dir_at(fd.as_fd(), name).at_path(&shown)?;
        }
        Ok(fd)
    }

    /// The sysroot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its settings.
    pub fn config(&self) -> &SysrootConfig {
        &self.config
    }

    /// Where the boot partition (ESP or `/boot`) is mounted now.
    pub fn boot_dir(&self) -> PathBuf {
        match &self.boot_override {
            Some(p) => p.clone(),
            None if self.config.boot.is_absolute() => self.config.boot.clone(),
            None => self.path.join(&self.config.boot),
        }
    }

    /// The content store.
    pub fn repo(&self) -> Result<Repo> {
        Ok(Repo::open(self.path.join(UPDATE_DIR).join("repo"))?)
    }

    /// `update/deploy/OS`.
    pub fn os_dir(&self, os: &str) -> PathBuf {
        self.path.join(UPDATE_DIR).join("deploy").join(os)
    }

    /// `update/deploy/OS/deploy`: where the deployments of `os` live.
    pub fn deployments_dir(&self, os: &str) -> PathBuf {
        self.os_dir(os).join("deploy")
    }

    /// The OS names laid out in this sysroot, sorted.
    pub fn os_names(&self) -> Result<Vec<String>> {
        let dir = self.path.join(UPDATE_DIR).join("deploy");
        let fd = durable::open_dir_at(self.dir.as_fd(), UPDATE_DIR)
            .and_then(|u| durable::open_dir_at(u.as_fd(), "deploy"))
            .at_path(&dir)?;
        let mut names = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).at_path(&dir)? {
            let e = e.at_path(&dir)?;
            if let Ok(n) = e.file_name().to_str() {
                let is_dir = || {
                    rustix::fs::statat(&fd, e.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode)
                                == rustix::fs::FileType::Directory
                        })
                        .at_path(dir.join(n))
                };
                if validate_os_name(n).is_ok() && is_dir()? {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The OS to work on: `os` if given (it must exist), else the only one there is.
    pub fn pick_os(&self, os: Option<&str>) -> Result<String> {
        let names = self.os_names()?;
        match os {
            Some(o) => {
                validate_os_name(o)?;
                if names.iter().any(|n| n == o) {
                    Ok(o.to_owned())
                } else {
                    Err(Error::NoSuchOs {
                        os: o.to_owned(),
                        sysroot: self.path.clone(),
                        available: names,
                    })
                }
            }
            None => match names.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(Error::NoOs {
                    sysroot: self.path.clone(),
                }),
                _ => Err(Error::SeveralOses {
                    sysroot: self.path.clone(),
                    names,
                }),
            },
        }
    }

    /// Take the sysroot lock: one state-changing command at a time.
    pub fn lock(&self) -> Result<SysrootLock> {
        let path = self.path.join(UPDATE_DIR).join("lock");
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            Path::new(UPDATE_DIR).join("lock").as_path(),
            OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .at_path(&path)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::Locked {
                    sysroot: self.path.clone(),
                    lock: path,
                })
            }
            Err(e) => return Err(e).at_path(&path),
        }
        Ok(SysrootLock { _fd: fd })
    }
}

fn check_retries(n: u32) -> Result<()> {
    if (1..=MAX_RETRIES).contains(&n) {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("boot retry limit {n}"),
            format!("must be 1 to {MAX_RETRIES}"),
        ))
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    store::durable::open_dir(path).at_path(path)
}
