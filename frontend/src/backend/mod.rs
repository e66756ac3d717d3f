//! One interface to whatever updates the system (`docs/backends.md`): the built-in tree
//! store, or an external executable `update-backend-NAME` speaking the JSON protocol.

pub mod builtin;
pub mod external;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::Version;
use crate::config::Config;
use crate::error::{Error, Result};

/// What a run works on: the system root and the settings in force (the config file with
/// this run's flags applied).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The system root (`/` on a device).
    pub root: PathBuf,
    /// The settings.
    pub config: Config,
    /// Where the booted kernel's command line is.
    pub proc_cmdline: PathBuf,
}

/// What `check` found and what `apply` did: the backend protocol's results, whatever the
/// backend.
pub use backend_protocol::{Applied, Check};

/// A deployment that never came up: its boot tries ran out and the firmware fell back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedBoot {
    /// Which deployment failed (a second deployment of the same commit is another one).
    pub id: String,
    /// What failed.
    pub failed: Version,
    /// What runs instead.
    pub running: Option<Version>,
    /// Why, in words.
    pub reason: String,
}

/// The operations every backend provides.
pub trait Backend {
    /// Its name (`builtin`, or NAME of `update-backend-NAME`).
    fn name(&self) -> String;
    /// Find what the source offers. May fetch into the backend's own store; never
    /// changes what boots.
    fn check(&mut self, s: &Settings) -> Result<Check>;
    /// Fetch and deploy what `check` found, so it boots next. Never reboots.
    fn apply(&mut self, s: &Settings) -> Result<Applied>;
    /// What is installed, as JSON.
    fn status(&mut self, s: &Settings) -> Result<serde_json::Value>;
    /// What runs now (offline: what boots next), without touching the network; `None` if
    /// the backend cannot tell.
    fn current(&mut self, _s: &Settings) -> Result<Option<Version>> {
        Ok(None)
    }
    /// Deployments that failed to boot (for the audit log); empty if the backend cannot
    /// tell.
    fn failed_boots(&mut self, _s: &Settings) -> Result<Vec<FailedBoot>> {
        Ok(Vec::new())
    }
}

/// Check a backend name.
pub fn validate_backend_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("backend '{}'", name.escape_debug()),
            "accepted: builtin, or NAME of an update-backend-NAME executable (A-Z a-z 0-9 - _)",
        ))
    }
}

/// The `backend` setting for `update config backend NAME`: `auto` unsets it (choose at each
/// run), anything else must be a valid name.
pub fn setting(name: &str) -> Result<Option<String>> {
    if name == "auto" {
        return Ok(None);
    }
    validate_backend_name(name)?;
    Ok(Some(name.to_owned()))
}

/// The executable prefix of external backends.
pub const PREFIX: &str = "update-backend-";

/// External backends on `PATH`, by name, sorted.
pub fn external_on_path() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let Some(path) = std::env::var_os("PATH") else {
        return found;
    };
    for dir in std::env::split_paths(&path) {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix(PREFIX) {
                if validate_backend_name(n).is_ok()
                    && is_executable(&e.path())
                    && !found.iter().any(|(f, _)| f == n)
                {
                    found.push((n.to_owned(), e.path()));
                }
            }
        }
    }
    found.sort();
    found
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The backend the config and the system call for, or [`Error::NoBackend`].
pub fn select(s: &Settings) -> Result<Box<dyn Backend>> {
    let builtin_ready = builtin::Builtin::is_set_up(&s.root);
    match s.config.backend.as_deref() {
        Some("builtin") => {
            if builtin_ready {
                Ok(Box::new(builtin::Builtin::new(&s.root)))
            } else {
                Err(Error::NoBackend)
            }
        }
        Some(name) => external_on_path()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(n, p)| Box::new(external::External::new(n, p)) as Box<dyn Backend>)
            .ok_or(Error::NoBackend),
        None if builtin_ready => Ok(Box::new(builtin::Builtin::new(&s.root))),
        None => {
            let mut ext = external_on_path();
            match ext.len() {
                0 => Err(Error::NoBackend),
                1 => {
                    let (n, p) = ext.remove(0);
                    Ok(Box::new(external::External::new(n, p)))
                }
                _ => {
                    Err(Error::invalid(
                        "backend",
                        format!(
                        "several are installed ({}): choose one with `update config backend NAME`",
                        ext.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    ))
                }
            }
        }
    }
}
