//! The one remote, `update`, that the adapter keeps in `ROOT/ostree/repo`, and the config
//! that shapes it (source URL, signature verification, TLS).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::command::Ostree;
use crate::sysroot::Sysroot;
use backend_protocol::Config;

/// The remote's name in the sysroot repo.
pub const REMOTE: &str = "update";

/// File (in the sysroot repo) holding the trusted keys when there is more than one.
const KEYS_FILE: &str = "update-backend-ostree.ed25519";

/// `config.source` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The repository URL.
    pub url: String,
    /// The ref after `#`, if given.
    pub git_ref: Option<String>,
}

impl Source {
    /// Parses `URL` or `URL#REF`; only http://, https:// and file:// URLs, and only
    /// https:// or file:// when `secure`.
    pub fn parse(source: Option<&str>, secure: bool) -> Result<Self> {
        let Some(source) = source.map(str::trim).filter(|s| !s.is_empty()) else {
            bail!("config.source is not set; set it to the OSTree repository URL (URL or URL#REF)");
        };
        let (url, git_ref) = match source.split_once('#') {
            Some((_, "")) => {
                bail!("config.source {source:?} has an empty ref after #")
            }
            Some((url, r)) => (url, Some(r.to_owned())),
            None => (source, None),
        };
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("https") | Some("file") => {}
            Some("http") if secure => {
                bail!("config.source {url:?} is plain http but config.secure is true; use https://")
            }
            Some("http") => {}
            _ => bail!(
                "config.source {url:?} is not an OSTree repository URL \
                 (http://, https:// or file://)"
            ),
        }
        if let Some(r) = &git_ref {
            if r.starts_with('/')
                || r.ends_with('/')
                || r.contains("..")
                || r.contains(char::is_whitespace)
            {
                bail!("config.source ref {r:?} is not a valid OSTree ref");
            }
        }
        Ok(Source {
            url: url.to_owned(),
            git_ref,
        })
    }
}

/// Whether this `ostree` can verify ed25519 signatures: builds with libsodium (or, from
/// 2023.x, OpenSSL ed25519) list `sign-ed25519` among `ostree --version`'s features.
/// Debian 12's 2022.7 does not (it says "Requested signature type is not implemented").
pub fn ed25519_supported() -> Result<bool> {
    let out = Ostree::new(["--version"]).run()?;
    Ok(out
        .stdout
        .lines()
        .any(|l| l.trim().trim_start_matches("- ").trim() == "sign-ed25519"))
}

/// The remote's options as they should be (`url` included).
fn wanted_options(
    config: &Config,
    source: &Source,
    sysroot: &Sysroot,
) -> Result<BTreeMap<String, String>> {
    let mut want = BTreeMap::new();
    want.insert("url".to_owned(), source.url.clone());
    // The protocol's keys are ed25519; GPG is never what the config asks for.
    want.insert("gpg-verify".to_owned(), "false".to_owned());
    if config.verify {
        if config.keys.is_empty() {
            bail!("config.verify is true but config.keys is empty: add the publisher's ed25519 public key");
        }
        if !ed25519_supported()? {
            bail!(
                "this ostree cannot verify ed25519 signatures; set verify false to use it \
                 unverified (`ostree --version` lists no sign-ed25519 feature: it was built \
                 without libsodium)"
            );
        }
        want.insert("sign-verify".to_owned(), "true".to_owned());
        if config.keys.len() == 1 {
            let key = config.keys.values().next().map(|k| k.trim().to_owned());
            want.insert(
                "verification-ed25519-key".to_owned(),
                key.unwrap_or_default(),
            );
        } else {
            let path = sysroot.repo().join(KEYS_FILE);
            write_keys(&path, config)?;
            want.insert(
                "verification-ed25519-file".to_owned(),
                path.display().to_string(),
            );
        }
    } else {
        want.insert("sign-verify".to_owned(), "false".to_owned());
    }
    for (key, value) in [
        ("tls-client-cert-path", &config.tls_client_cert),
        ("tls-client-key-path", &config.tls_client_key),
        ("tls-ca-path", &config.tls_ca),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            want.insert(key.to_owned(), v.to_owned());
        }
    }
    Ok(want)
}

/// Writes the keys file (one base64 key a line) atomically, only if it changed.
fn write_keys(path: &Path, config: &Config) -> Result<()> {
    let text: String = config
        .keys
        .values()
        .map(|k| format!("{}\n", k.trim()))
        .collect();
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}

/// Makes the `update` remote match the config: kept as is when it already does, else
/// deleted and added again.
pub fn ensure(sysroot: &Sysroot, config: &Config, source: &Source) -> Result<()> {
    let want = wanted_options(config, source, sysroot)?;
    if current_options(sysroot)?.as_ref() == Some(&want) {
        return Ok(());
    }
    let repo = sysroot.repo_arg();
    Ostree::new(["remote", "delete", "--if-exists", &repo, REMOTE]).run()?;
    let mut args = vec![
        "remote".to_owned(),
        "add".to_owned(),
        repo,
        REMOTE.to_owned(),
        source.url.clone(),
    ];
    args.extend(
        want.iter()
            .filter(|(k, _)| k.as_str() != "url")
            .map(|(k, v)| format!("--set={k}={v}")),
    );
    Ostree::new(args).run()?;
    Ok(())
}

/// The remote's options as configured now: from the repo config, else from
/// `ROOT/etc/ostree/remotes.d/*.conf` (where ostree puts remotes of a booted system's repo).
fn current_options(sysroot: &Sysroot) -> Result<Option<BTreeMap<String, String>>> {
    let mut files: Vec<PathBuf> = vec![sysroot.repo().join("config")];
    let dir = sysroot.root().join("etc/ostree/remotes.d");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut confs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        confs.sort();
        files.extend(confs);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(section) = keyfile_section(&text, &format!("remote \"{REMOTE}\"")) {
            return Ok(Some(section));
        }
    }
    Ok(None)
}

/// The `key=value` pairs of `[name]` in a GKeyFile-style text, if the section exists.
fn keyfile_section(text: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let mut found = None;
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = header == name;
            if in_section {
                found.get_or_insert_with(BTreeMap::new);
            }
            continue;
        }
        if in_section {
            if let (Some(map), Some((k, v))) = (found.as_mut(), line.split_once('=')) {
                map.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{keyfile_section, Source};

    #[test]
    fn source_forms() {
        let s = Source::parse(Some("file:///srv/repo#os/x86_64/stable"), false).unwrap();
        assert_eq!(s.url, "file:///srv/repo");
        assert_eq!(s.git_ref.as_deref(), Some("os/x86_64/stable"));
        let s = Source::parse(Some("https://example.com/os"), true).unwrap();
        assert_eq!(s.git_ref, None);
        assert!(Source::parse(None, false).is_err());
        assert!(Source::parse(Some("http://x/os"), true).is_err());
        assert!(Source::parse(Some("http://x/os"), false).is_ok());
        assert!(Source::parse(Some("/srv/repo"), false).is_err());
        assert!(Source::parse(Some("ftp://x/os"), false).is_err());
        assert!(Source::parse(Some("file:///r#"), false).is_err());
    }

    #[test]
    fn reads_a_remote_section() {
        let text = "[core]\nmode=bare\n\n[remote \"update\"]\nurl=file:///r\nsign-verify=false\n[remote \"x\"]\nurl=y\n";
        let s = keyfile_section(text, "remote \"update\"").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["url"], "file:///r");
        assert!(keyfile_section(text, "remote \"other\"").is_none());
    }
}
