//! The one config file, `ROOT/etc/update/update.toml`, and the checks of `update config`'s
//! values (the trusted keys' are in `keys`).
//!
//! Every value is validated on the way in, with a message saying what is wrong and what is
//! accepted. The file is rewritten atomically (temp file, fsync, rename, fsync the
//! directory), so a crash leaves the old or the new file, never an empty one.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use store::durable;

use crate::error::{Error, Result};
use crate::schedule::Schedule;

/// The config file, relative to the root.
pub const CONFIG_PATH: &str = "etc/update/update.toml";
/// The reboot command used unless configured.
pub const DEFAULT_REBOOT: &str = "systemctl reboot";
/// Where logs go unless configured.
pub const SYSLOG: &str = "syslog";

/// The settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The published repository: `URL` or `URL#REF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Trusted public keys by name (base64 ed25519).
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// When automatic updates run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// `syslog`, or the path of a file of JSON lines.
    #[serde(default = "default_log")]
    pub log: String,
    /// Require signatures by a trusted key.
    #[serde(default = "yes")]
    pub verify: bool,
    /// Boot tries a new deployment gets before the firmware falls back.
    #[serde(default = "default_retries")]
    pub boot_retry_limit: u32,
    /// Use mutual TLS (needs the three files below and an https:// source).
    #[serde(default)]
    pub secure: bool,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the source instead of the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// The command that reboots the machine.
    #[serde(default = "default_reboot")]
    pub reboot_command: String,
    /// `builtin`, or NAME for the executable `update-backend-NAME`; unset: pick one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

fn default_log() -> String {
    SYSLOG.to_owned()
}
fn yes() -> bool {
    true
}
fn default_retries() -> u32 {
    deploy::sysroot::DEFAULT_RETRIES
}
fn default_reboot() -> String {
    DEFAULT_REBOOT.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            keys: BTreeMap::new(),
            schedule: None,
            log: default_log(),
            verify: true,
            boot_retry_limit: default_retries(),
            secure: false,
            tls_client_cert: None,
            tls_client_key: None,
            tls_ca: None,
            reboot_command: default_reboot(),
            backend: None,
        }
    }
}

/// Parse `true` or `false` (what `update config verify|secure` accept).
pub fn parse_bool(what: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid(
            format!("{what} '{v}'"),
            "accepted: true or false",
        )),
    }
}

/// Check a source URL: `http://`, `https://` or `file://`, optionally `#REF`.
pub fn validate_source(url: &str) -> Result<()> {
    let (base, r) = split_source(url);
    let scheme = base.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https" | "file"))
        || base
            .split_once("://")
            .is_some_and(|(_, rest)| rest.is_empty())
    {
        return Err(Error::invalid(
            format!("source '{url}'"),
            "accepted: an http://, https:// or file:// URL, optionally ending in #REF",
        ));
    }
    if base.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            format!("source '{}'", url.escape_debug()),
            "may not contain a query, whitespace or control characters",
        ));
    }
    if let Some(r) = r {
        store::RefName::new(r)
            .map_err(|e| Error::invalid(format!("source ref '{r}'"), e.to_string()))?;
    }
    Ok(())
}

/// `URL#REF` → (`URL`, `Some(REF)`).
pub fn split_source(url: &str) -> (&str, Option<&str>) {
    match url.split_once('#') {
        Some((u, r)) => (u, Some(r)),
        None => (url, None),
    }
}

/// Check a log setting: `syslog` or an absolute path (no control characters: the value is
/// one line of the config file and of every warning naming it).
pub fn validate_log(v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(
            format!("log '{}'", v.escape_debug()),
            "may not contain control characters (accepted: syslog, or an absolute file path)",
        ));
    }
    if v == SYSLOG || (v.starts_with('/') && !v.ends_with('/')) {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("log '{v}'"),
            "accepted: syslog, or an absolute file path",
        ))
    }
}

/// Check a reboot command: any non-empty shell command.
pub fn validate_reboot_command(command: &str) -> Result<()> {
    if command.trim().is_empty() {
        return Err(Error::invalid(
            "reboot-command",
            "may not be empty (accepted: a shell command, such as 'systemctl reboot')",
        ));
    }
    Ok(())
}

/// Check a TLS file setting (`what`: `tls-client-cert`, `tls-client-key`, `tls-ca`): an
/// existing file; returns its absolute path, which is what the config stores.
pub fn tls_file(what: &str, p: &Path) -> Result<PathBuf> {
    let invalid = |reason: String| {
        Error::invalid(
            format!("{what} '{}'", p.display()),
            format!("{reason} (accepted: the path of a readable PEM file)"),
        )
    };
    let abs = std::fs::canonicalize(p).map_err(|e| invalid(e.to_string()))?;
    if !abs.is_file() {
        return Err(invalid("not a file".to_owned()));
    }
    Ok(abs)
}

/// Check a boot retry limit.
pub fn validate_retries(n: &str) -> Result<u32> {
    let max = deploy::sysroot::MAX_RETRIES;
    match n.parse::<u32>() {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err(Error::invalid(
            format!("boot-retry-limit '{n}'"),
            format!("accepted: an integer from 1 to {max} (systemd-boot counts one digit)"),
        )),
    }
}

/// The flags of one `update` run that override the config: `--secure`, `--verify`,
/// `--source`, as typed.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--secure true|false`.
    pub secure: Option<String>,
    /// `--verify true|false`.
    pub verify: Option<String>,
    /// `--source URL[#REF]`.
    pub source: Option<String>,
}

impl Config {
    /// The config with a run's flags applied, each checked as `update config` checks it.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Config> {
        if let Some(v) = &o.secure {
            self.secure = parse_bool("--secure", v)?;
        }
        if let Some(v) = &o.verify {
            self.verify = parse_bool("--verify", v)?;
        }
        if let Some(s) = &o.source {
            validate_source(s)?;
            self.source = Some(s.clone());
        }
        Ok(self)
    }

    /// The config file under `root`.
    pub fn path(root: &Path) -> PathBuf {
        root.join(CONFIG_PATH)
    }

    /// Read the config under `root`; a missing file is the defaults.
    pub fn load(root: &Path) -> Result<Config> {
        let path = Config::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let c: Config = toml::from_str(&text).map_err(|e| Error::Malformed {
            path: path.clone(),
            reason: e.message().to_owned(),
        })?;
        c.validate().map_err(|e| Error::Malformed {
            path,
            reason: e.to_string(),
        })?;
        Ok(c)
    }

    /// Check every value (also the ones read from a hand-edited file).
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = &self.source {
            validate_source(s)?;
        }
        for (name, key) in &self.keys {
            crate::keys::validate_name(name)?;
            crate::keys::parse_text(key)?;
        }
        validate_log(&self.log)?;
        validate_retries(&self.boot_retry_limit.to_string())?;
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        validate_reboot_command(&self.reboot_command)?;
        if let Some(b) = &self.backend {
            crate::backend::validate_backend_name(b)?;
        }
        Ok(())
    }

    /// Check that `secure` has what it needs, before a run uses it.
    pub fn check_secure(&self) -> Result<()> {
        if !self.secure {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("tls-client-cert", self.tls_client_cert.is_none()),
            ("tls-client-key", self.tls_client_key.is_none()),
        ]
        .into_iter()
        .filter_map(|(n, m)| m.then_some(n))
        .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(
                "secure true",
                format!(
                    "mutual TLS needs {} (set with `update config {} PATH`)",
                    missing.join(" and "),
                    missing[0]
                ),
            ));
        }
        if let Some(s) = &self.source {
            if !s.starts_with("https://") {
                return Err(Error::invalid(
                    "secure true",
                    format!("mutual TLS needs an https:// source, not '{s}'"),
                ));
            }
        }
        Ok(())
    }

    /// Write the config under `root` atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        self.validate()?;
        self.check_secure()?;
        let path = Config::path(root);
        let dir_path = path.parent().expect("config path has a parent");
        let root_fd = store::durable::open_dir(root).map_err(|e| Error::Io {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        let dir = durable::mkdir_all_at(root_fd.as_fd(), Path::new("etc/update"), dir_path)?;
        let text = format!(
            "# update's settings: change them with `update config ...` (see `update config --help`).\n{}",
            toml::to_string(self).expect("config serializes")
        );
        durable::write_atomic(dir.as_fd(), "update.toml", text.as_bytes(), 0o644, &path)?;
        Ok(())
    }
}
