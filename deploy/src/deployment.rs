//! Deployment names and origin files.
//!
//! A deployment of OS is the directory `update/deploy/OS/deploy/COMMIT.SERIAL`: a hardlink
//! checkout of COMMIT, SERIAL telling apart several deployments of the same commit. Beside
//! it, `COMMIT.SERIAL.origin` records what it tracks and how it boots.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use store::CommitId;

use crate::error::{Error, IoResultExt, Result};
use crate::sysroot::validate_os_name;

/// `COMMIT.SERIAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentId {
    /// The commit checked out.
    pub commit: CommitId,
    /// Which deployment of that commit.
    pub serial: u32,
}

impl DeploymentId {
    /// Parse `COMMIT.SERIAL` (a full 64-digit commit id).
    pub fn parse(s: &str) -> Result<DeploymentId> {
        let bad = || {
            Error::invalid(
                format!("deployment '{}'", s.escape_debug()),
                "expected COMMIT.SERIAL: a full commit id, a dot, a number",
            )
        };
        let (c, n) = s.split_once('.').ok_or_else(bad)?;
        if n.is_empty()
            || n.len() > 9
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return Err(bad());
        }
        let commit: CommitId = c.parse().map_err(|_| bad())?;
        Ok(DeploymentId {
            commit,
            serial: n.parse().map_err(|_| bad())?,
        })
    }

    /// The origin file's name.
    pub fn origin_name(&self) -> String {
        format!("{self}.origin")
    }
}

impl Serialize for DeploymentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeploymentId {
    fn deserialize<D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<DeploymentId, D::Error> {
        let s = String::deserialize(d)?;
        DeploymentId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.commit, self.serial)
    }
}

/// `OS/COMMIT.SERIAL`, as written in the `update.deployment=` kernel argument.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeploymentRef {
    /// The OS.
    pub os: String,
    /// The deployment.
    pub id: DeploymentId,
}

impl DeploymentRef {
    /// Parse `OS/COMMIT.SERIAL`.
    pub fn parse(s: &str) -> Result<DeploymentRef> {
        let (os, id) = s.split_once('/').ok_or_else(|| {
            Error::invalid(
                format!("deployment '{}'", s.escape_debug()),
                "expected OS/COMMIT.SERIAL",
            )
        })?;
        validate_os_name(os)?;
        Ok(DeploymentRef {
            os: os.to_owned(),
            id: DeploymentId::parse(id)?,
        })
    }
}

impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.id)
    }
}

/// `COMMIT.SERIAL.origin`: what a deployment tracks and how it boots.
///
/// Keys this version does not know are ignored, not refused: a device that rolls back to a
/// deployment carrying an older `update` must still read the origins a newer one wrote
/// (`etc-merged-from` was the first key added after release).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Origin {
    /// What was deployed: `REMOTE:REF`, a local ref, or a commit id.
    pub refspec: String,
    /// Kernel arguments of its boot entry, `update.deployment=` excepted.
    #[serde(default)]
    pub kargs: Vec<String>,
    /// Names of the trusted keys whose signatures verified at deploy time (empty when
    /// deployed with verification off).
    #[serde(default)]
    pub signers: Vec<String>,
    /// Kept by cleanup whatever else happens.
    #[serde(default)]
    pub pinned: bool,
    /// The commit's `version` metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kernel version and boot files directory, relative to the boot partition.
    pub boot_dir: String,
    /// Seconds since the epoch when it was deployed.
    #[serde(default)]
    pub deployed_at: u64,
    /// The deployment whose running `/etc` was merged into this one's at deploy time (the
    /// booted one; offline, the previous default). `update finalize` merges again from it
    /// at shutdown when it is still the booted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etc_merged_from: Option<DeploymentId>,
}

impl Origin {
    /// Read the origin file `name` below `dir`, never following a symlink at it; `path`
    /// names it in errors.
    pub fn read(dir: std::os::fd::BorrowedFd<'_>, name: &str, path: &Path) -> Result<Origin> {
        let bytes = store::durable::read_at(dir, name).at_path(path)?;
        let text = String::from_utf8(bytes)
            .map_err(std::io::Error::other)
            .at_path(path)?;
        toml::from_str(&text).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: e.message().to_owned(),
        })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        toml::to_string(self).expect("origin serializes")
    }
}

#[allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine
#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        let c = "a".repeat(64);
        let id = DeploymentId::parse(&format!("{c}.3")).unwrap();
        assert_eq!(id.to_string(), format!("{c}.3"));
        for bad in [
            c.clone(),
            format!("{c}."),
            format!("{c}.01"),
            format!("{c}.x"),
            format!("{}.1", &c[..10]),
            "../x.1".into(),
        ] {
            assert!(DeploymentId::parse(&bad).is_err(), "{bad}");
        }
        let r = DeploymentRef::parse(&format!("os/{c}.0")).unwrap();
        assert_eq!(r.os, "os");
        assert!(DeploymentRef::parse(&format!("../{c}.0")).is_err());
    }

    #[test]
    fn origin_round_trips() {
        let o = Origin {
            refspec: "r:os/stable".into(),
            kargs: vec!["quiet".into()],
            signers: vec!["k".into()],
            pinned: true,
            version: Some("2".into()),
            boot_dir: "update/os/6.1-abc".into(),
            deployed_at: 5,
            etc_merged_from: Some(DeploymentId::parse(&format!("{}.2", "b".repeat(64))).unwrap()),
        };
        assert!(o
            .to_text()
            .contains(&format!("etc-merged-from = \"{}.2\"", "b".repeat(64))));
        let p = tempfile::tempdir().unwrap();
        let f = p.path().join("x.origin");
        std::fs::write(&f, o.to_text()).unwrap();
        let d = store::durable::open_dir(p.path()).unwrap();
        assert_eq!(Origin::read(d.as_fd(), "x.origin", &f).unwrap(), o);
    }
}
