//! The built-in backend: this project's tree store. The sysroot is `ROOT/sysroot` (on a
//! booted device, `/sysroot`: the physical root). The config's source, keys and TLS files
//! become the remote `update` of the sysroot's repository, kept in step with the config
//! (reconfigured in place, so its rollback-protection state survives); `check` pulls the
//! tracked ref from it, `apply` deploys it.

use std::path::{Path, PathBuf};

use deploy::deploy::{deploy, DeployOptions};
use deploy::state::{Deployment, State};
use deploy::sysroot::{Sysroot, CONFIG_FILE, UPDATE_DIR};
use store::remote::{KeySource, Remote, RemoteTls};
use store::{RefName, Repo};
use transport::pull::{pull, PullOptions};

use super::{Applied, Backend, Check, FailedBoot, Settings};
use crate::audit::Version;
use crate::config::{split_source, Config};
use crate::error::{Error, Result};

/// The remote the front end manages in the sysroot's repository.
pub const REMOTE: &str = "update";

/// The tree store.
pub struct Builtin {
    sysroot_path: PathBuf,
    /// Filled by `check` for `apply`.
    pulled: Option<(RefName, u64, Vec<String>)>,
}

impl Builtin {
    /// Whether `root` has a sysroot laid out by `update sysroot init`.
    pub fn is_set_up(root: &Path) -> bool {
        root.join("sysroot")
            .join(UPDATE_DIR)
            .join(CONFIG_FILE)
            .is_file()
    }

    /// The backend for `root`.
    pub fn new(root: &Path) -> Builtin {
        Builtin {
            sysroot_path: root.join("sysroot"),
            pulled: None,
        }
    }

    fn sysroot(&self) -> Result<Sysroot> {
        Ok(Sysroot::open(&self.sysroot_path, None)?)
    }

    /// Make the remote match the config: add it, or reconfigure it when its URL, TLS files
    /// or keys differ.
    fn sync_remote(&self, repo: &Repo, config: &Config) -> Result<Remote> {
        let source = config.source.as_deref().ok_or_else(|| {
            Error::invalid(
                "source",
                "no source is configured: set one with `update config source URL`",
            )
        })?;
        let (url, _) = split_source(source);
        if config.keys.is_empty() {
            return Err(Error::invalid(
                "keys",
                "no trusted key is configured: add one with `update config key add NAME KEY` (the source is set up with its keys even when verify is false)",
            ));
        }
        config.check_secure()?;
        let tls = RemoteTls {
            ca: config.tls_ca.clone(),
            client_cert: if config.secure {
                config.tls_client_cert.clone()
            } else {
                None
            },
            client_key: if config.secure {
                config.tls_client_key.clone()
            } else {
                None
            },
        };
        let keys_dir = tempfile_dir(repo.path().parent().unwrap_or(repo.path()))?;
        for (name, key) in &config.keys {
            let p = keys_dir.path().join(format!("{name}.pub"));
            std::fs::write(&p, format!("{key}\n")).map_err(|e| Error::Io { path: p, source: e })?;
        }
        let keys = KeySource::Set(keys_dir.path());
        let existing = Remote::list(repo)?.into_iter().find(|r| r.name == REMOTE);
        let remote = match existing {
            None => Remote::add(repo, REMOTE, url, keys, &tls)?,
            Some(r) => {
                let want = keys.load()?;
                let have = r.trusted_keys().ok();
                let same_keys = have.is_some_and(|h| {
                    h.len() == want.len()
                        && want.iter().all(|(n, k)| {
                            h.iter()
                                .any(|(n2, k2)| n == n2 && k.to_bytes() == k2.to_bytes())
                        })
                });
                let same_tls = abs(&r.tls.ca) == abs(&tls.ca)
                    && abs(&r.tls.client_cert) == abs(&tls.client_cert)
                    && abs(&r.tls.client_key) == abs(&tls.client_key);
                if r.url == url && same_keys && same_tls {
                    r
                } else {
                    Remote::reconfigure(repo, REMOTE, url, keys, &tls)?
                }
            }
        };
        Ok(remote)
    }

    /// The ref to track: the source's `#REF`, else what the current deployment tracks,
    /// else the only ref the remote publishes.
    fn tracked_ref(&self, repo: &Repo, s: &Settings, state: &State) -> Result<Option<RefName>> {
        if let (_, Some(r)) = split_source(s.config.source.as_deref().unwrap_or_default()) {
            return Ok(Some(RefName::new(r)?));
        }
        let from_origin = running(state)
            .and_then(|d| d.origin.as_ref())
            .and_then(|o| {
                o.refspec
                    .strip_prefix(&format!("{REMOTE}:"))
                    .map(str::to_owned)
            });
        if let Some(r) = from_origin {
            return Ok(Some(RefName::new(r)?));
        }
        let refs = repo.list_remote_refs(REMOTE)?;
        Ok(match refs.as_slice() {
            [(one, _)] => Some(one.clone()),
            _ => None,
        })
    }

    fn state(&self, s: &Settings) -> Result<State> {
        let sysroot = self.sysroot()?;
        let os = sysroot.pick_os(None)?;
        Ok(State::load(&sysroot, &os, &s.proc_cmdline)?)
    }
}

/// What runs now: the booted deployment, or offline the one that boots next.
fn running(state: &State) -> Option<&Deployment> {
    state.booted_deployment().or(state.default())
}

fn abs(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
}

fn tempfile_dir(near: &Path) -> Result<TempDir> {
    let p = near.join(store::durable::temp_name(".keys-"));
    std::fs::create_dir(&p).map_err(|e| Error::Io {
        path: p.clone(),
        source: e,
    })?;
    Ok(TempDir(p))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn version_of(repo: &Repo, commit: &store::CommitId) -> Version {
    let version = repo.read_commit(commit).ok().and_then(|c| {
        c.metadata
            .iter()
            .find(|(k, _)| k == "version")
            .map(|(_, v)| v.clone())
    });
    Version {
        commit: commit.to_string(),
        version,
    }
}

impl Backend for Builtin {
    fn name(&self) -> String {
        "builtin".into()
    }

    fn check(&mut self, s: &Settings) -> Result<Check> {
        let sysroot = self.sysroot()?;
        let repo = sysroot.repo()?;
        let remote = self.sync_remote(&repo, &s.config)?;
        let state = self.state(s)?;
        let wanted = self.tracked_ref(&repo, s, &state)?;
        let opts = PullOptions {
            verify: s.config.verify,
            ..PullOptions::default()
        };
        let report =
            pull(&repo, &remote, wanted.as_ref(), &opts, &mut |_| {}).map_err(|source| {
                Error::Pull {
                    url: remote.url.clone(),
                    source: Box::new(source),
                }
            })?;
        let name = match wanted {
            Some(n) => n,
            None => match report.refs.as_slice() {
                [one] => one.name.clone(),
                refs => {
                    return Err(Error::invalid(
                        format!("source {}", remote.url),
                        format!(
                        "it publishes {} refs ({}): choose one with `update config source URL#REF`",
                        refs.len(),
                        refs.iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    ))
                }
            },
        };
        let outcome = report.refs.iter().find(|r| r.name == name);
        let signers = outcome.map(|o| o.signed_by.clone()).unwrap_or_default();
        let commit = repo
            .read_remote_ref(REMOTE, &name)?
            .ok_or_else(|| Error::NotPublished {
                name: name.as_str().to_owned(),
            })?;
        self.pulled = Some((name, report.bytes, signers));
        let available = Some(version_of(&repo, &commit));
        let current_dep = running(&state);
        let current = current_dep.map(|d| version_of(&repo, &d.id.commit));
        // Already deployed and waiting for a reboot counts as done.
        let next = state.default().map(|d| d.id.commit);
        let update_available =
            current_dep.map(|d| d.id.commit) != Some(commit) && next != Some(commit);
        Ok(Check {
            current,
            available,
            update_available,
        })
    }

    fn apply(&mut self, s: &Settings) -> Result<Applied> {
        if self.pulled.is_none() {
            self.check(s)?;
        }
        let (name, bytes, signers) = self.pulled.clone().expect("check fills it");
        let from = self.current(s)?;
        let sysroot = self.sysroot()?;
        let repo = sysroot.repo()?;
        let opts = DeployOptions {
            rev: Some(format!("{REMOTE}:{}", name.as_str())),
            retries: Some(s.config.boot_retry_limit),
            verify: s.config.verify,
            proc_cmdline: s.proc_cmdline.clone(),
            ..DeployOptions::default()
        };
        let r = deploy(&sysroot, &opts)?;
        let signer = r
            .signers
            .first()
            .cloned()
            .or_else(|| signers.first().cloned());
        Ok(Applied {
            from,
            to: version_of(&repo, &r.deployment.id.commit),
            bytes_fetched: bytes,
            signer,
        })
    }

    fn status(&mut self, s: &Settings) -> Result<serde_json::Value> {
        let sysroot = self.sysroot()?;
        let mut oses = Vec::new();
        for os in sysroot.os_names()? {
            let st = State::load(&sysroot, &os, &s.proc_cmdline)?;
            oses.push(serde_json::json!({ "os": os, "deployments": st.report() }));
        }
        Ok(serde_json::json!({ "backend": "builtin", "oses": oses }))
    }

    fn current(&mut self, s: &Settings) -> Result<Option<Version>> {
        let state = self.state(s)?;
        let repo = self.sysroot()?.repo()?;
        Ok(running(&state).map(|d| version_of(&repo, &d.id.commit)))
    }

    fn failed_boots(&mut self, s: &Settings) -> Result<Vec<FailedBoot>> {
        let state = self.state(s)?;
        let repo = self.sysroot()?.repo()?;
        let running = state
            .booted_deployment()
            .map(|d| version_of(&repo, &d.id.commit));
        Ok(state
            .deployments
            .iter()
            .filter(|d| d.failed())
            .map(|d| FailedBoot {
                id: d.id.to_string(),
                failed: version_of(&repo, &d.id.commit),
                running: running.clone(),
                reason: format!(
                    "deployment {} used all its boot tries ({}) without `update mark-good`; the firmware fell back",
                    d.id,
                    d.entry_name.tries_done().map_or_else(|| "?".to_owned(), |n| n.to_string())
                ),
            })
            .collect())
    }
}
