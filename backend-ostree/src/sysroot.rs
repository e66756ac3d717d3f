//! The OSTree sysroot at `root`: its deployments (`ostree admin status`) and which
//! stateroot (OS) the adapter works on.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::command::Ostree;
use backend_protocol::{Deployment as DeploymentInfo, Version};

/// Environment variable naming the stateroot, overriding the guess.
pub const OS_ENV: &str = "UPDATE_OSTREE_OS";

/// An OSTree sysroot directory.
#[derive(Debug, Clone)]
pub struct Sysroot {
    root: PathBuf,
}

/// One deployment as `ostree admin status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Its stateroot (OS name).
    pub stateroot: String,
    /// Full hex commit checksum.
    pub commit: String,
    /// `version` metadata, if the commit has it.
    pub version: Option<String>,
    /// The origin's refspec (`remote:ref` or `ref`), if it has one.
    pub refspec: Option<String>,
    /// Marked `*`: the running system.
    pub booted: bool,
}

impl Deployment {
    /// The protocol's `V` for it.
    pub fn version(&self) -> Version {
        Version {
            commit: self.commit.clone(),
            version: self.version.clone(),
        }
    }

    /// The ref part of the origin refspec (without `remote:`).
    pub fn origin_ref(&self) -> Option<&str> {
        let spec = self.refspec.as_deref()?;
        Some(spec.split_once(':').map_or(spec, |(_, r)| r))
    }
}

impl Sysroot {
    /// The sysroot at `root`; an error unless it has been set up (`ROOT/ostree/repo`).
    pub fn open(root: &str) -> Result<Self> {
        if root.is_empty() {
            bail!("request has an empty root");
        }
        let root = PathBuf::from(root);
        if !root.join("ostree/repo").is_dir() {
            bail!(
                "{} is not an OSTree sysroot (no ostree/repo in it); set one up with \
                 `ostree admin init-fs {0}` and `ostree admin os-init OS --sysroot {0}`",
                root.display()
            );
        }
        Ok(Sysroot { root })
    }

    /// The sysroot directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/ostree/repo`.
    pub fn repo(&self) -> PathBuf {
        self.root.join("ostree/repo")
    }

    /// `--repo=ROOT/ostree/repo`, for the non-admin commands.
    pub fn repo_arg(&self) -> String {
        format!("--repo={}", self.repo().display())
    }

    /// `--sysroot=ROOT`, for the admin commands.
    pub fn sysroot_arg(&self) -> String {
        format!("--sysroot={}", self.root.display())
    }

    /// All deployments, in boot order (the first is the default).
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        let out =
            Ostree::new(["admin".to_owned(), "status".to_owned(), self.sysroot_arg()]).run()?;
        parse_status(&out.stdout)
            .with_context(|| format!("reading `ostree admin status` of {}", self.root.display()))
    }

    /// The stateroot to work on: `$UPDATE_OSTREE_OS`, else the booted deployment's, else
    /// the default deployment's, else the only one under `ROOT/ostree/deploy`.
    pub fn stateroot(&self, deployments: &[Deployment]) -> Result<String> {
        if let Some(os) = std::env::var_os(OS_ENV) {
            let os = os.to_string_lossy().into_owned();
            if !self.root.join("ostree/deploy").join(&os).is_dir() {
                bail!(
                    "{OS_ENV}={os}, but {} has no such stateroot (choices: {})",
                    self.root.display(),
                    self.stateroot_dirs()?.join(", ")
                );
            }
            return Ok(os);
        }
        if let Some(d) = deployments
            .iter()
            .find(|d| d.booted)
            .or(deployments.first())
        {
            return Ok(d.stateroot.clone());
        }
        let dirs = self.stateroot_dirs()?;
        match dirs.as_slice() {
            [only] => Ok(only.clone()),
            [] => bail!(
                "{} has no stateroot; create one with `ostree admin os-init OS --sysroot {0}`",
                self.root.display()
            ),
            many => bail!(
                "{} has several stateroots ({}); choose one with {OS_ENV}=NAME",
                self.root.display(),
                many.join(", ")
            ),
        }
    }

    fn stateroot_dirs(&self) -> Result<Vec<String>> {
        let deploy = self.root.join("ostree/deploy");
        let mut names = Vec::new();
        let entries =
            std::fs::read_dir(&deploy).with_context(|| format!("reading {}", deploy.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", deploy.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Parses `ostree admin status` text (2022.7 has no `--json`):
///
/// ```text
/// * debian 52890f…8843.0 (pending)
///     Version: 2
///     origin refspec: update:os/x86_64/stable
/// ```
pub fn parse_status(text: &str) -> Result<Vec<Deployment>> {
    let mut out: Vec<Deployment> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim() == "No deployments." {
            continue;
        }
        let (booted, rest) = match (line.strip_prefix("* "), line.strip_prefix("  ")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) if !rest.starts_with(' ') => (false, rest),
            _ => {
                // A detail line of the deployment above.
                let detail = line.trim();
                if let Some(last) = out.last_mut() {
                    if let Some(v) = detail.strip_prefix("Version: ") {
                        last.version = Some(v.to_owned());
                    } else if let Some(r) = detail.strip_prefix("origin refspec: ") {
                        last.refspec = Some(r.to_owned());
                    }
                }
                continue;
            }
        };
        let mut words = rest.split_whitespace();
        let (Some(stateroot), Some(id)) = (words.next(), words.next()) else {
            bail!("unexpected line {line:?}");
        };
        let commit = id.split_once('.').map_or(id, |(c, _serial)| c);
        if commit.len() != 64 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("unexpected line {line:?}: no commit checksum");
        }
        out.push(Deployment {
            stateroot: stateroot.to_owned(),
            commit: commit.to_owned(),
            version: None,
            refspec: None,
            booted,
        });
    }
    Ok(out)
}

/// The protocol's list. ostree marks pending/rollback only relative to a booted
/// deployment; offline (nothing booted, e.g. an image being prepared) the default one is
/// `pending` (it boots next) and the rest are `rollback`.
pub fn deployment_infos(deployments: &[Deployment]) -> Vec<DeploymentInfo> {
    let pivot = deployments.iter().position(|d| d.booted);
    deployments
        .iter()
        .enumerate()
        .map(|(i, d)| DeploymentInfo {
            commit: d.commit.clone(),
            version: d.version.clone(),
            booted: d.booted,
            pending: match pivot {
                Some(b) => i < b,
                None => i == 0,
            },
            rollback: match pivot {
                Some(b) => i > b,
                None => i > 0,
            },
            failed: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{deployment_infos, parse_status};

    const A: &str = "9d14f14762cfbe6ec1685398e599f78750c12af7ffca2df9a5528bced9bf151d";
    const B: &str = "52890f304bcd2a1826679d86cbea61f3fe1d20db82d2cca3020d6978fe1b8843";

    #[test]
    fn parses_two_deployments_offline() {
        let text = format!(
            "  debian {A}.0\n    Version: 3\n    origin refspec: update:os/stable\n  \
             debian {B}.0\n    Version: 2\n    origin refspec: update:os/stable\n"
        );
        let d = parse_status(&text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].commit, A);
        assert_eq!(d[0].version.as_deref(), Some("3"));
        assert_eq!(d[0].origin_ref(), Some("os/stable"));
        assert!(!d[0].booted && !d[1].booted);
        let infos = deployment_infos(&d);
        assert!(infos[0].pending && !infos[0].rollback);
        assert!(!infos[1].pending && infos[1].rollback);
    }

    #[test]
    fn booted_marks_pivot() {
        let text = format!(
            "  debian {A}.0 (pending)\n    origin refspec: os/stable\n* debian {B}.1\n    \
             Version: 2\n    Unlocked: development\n"
        );
        let d = parse_status(&text).unwrap();
        assert!(d[1].booted);
        assert_eq!(d[0].version, None);
        assert_eq!(d[0].origin_ref(), Some("os/stable"));
        let infos = deployment_infos(&d);
        assert!(infos[0].pending && !infos[0].booted);
        assert!(infos[1].booted && !infos[1].pending && !infos[1].rollback);
    }

    #[test]
    fn no_deployments() {
        assert!(parse_status("No deployments.\n").unwrap().is_empty());
        assert!(parse_status("  garbage\n").is_err());
    }
}
