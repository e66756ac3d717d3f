//! The kernel command line: which deployment was booted.

use std::path::Path;

use crate::deployment::DeploymentRef;
use crate::error::{Error, IoResultExt, Result};

/// The kernel argument naming the deployment to boot: `update.deployment=OS/COMMIT.SERIAL`.
pub const DEPLOYMENT_KARG: &str = "update.deployment=";

/// Where the running kernel's command line is.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// The value of the last `key=` word of `cmdline` (the kernel's own rule: the last wins).
pub fn karg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(key))
        .next_back()
}

/// The deployment named on the command line in `file`, if any. A file that does not exist
/// means no deployment is booted (an image being prepared offline).
pub fn booted(file: &Path) -> Result<Option<DeploymentRef>> {
    #[allow(clippy::disallowed_methods)] // path meant: the kernel command line file (/proc/cmdline)
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at_path(file),
    };
    match karg(&text, DEPLOYMENT_KARG) {
        None => Ok(None),
        Some(v) => DeploymentRef::parse(v).map(Some).map_err(|e| {
            Error::invalid(
                format!("{DEPLOYMENT_KARG}{v} in {}", file.display()),
                e.to_string(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_word_wins_and_prefix_must_match() {
        let c =
            "root=/dev/vda2 xupdate.deployment=bad update.deployment=a update.deployment=b quiet";
        assert_eq!(karg(c, DEPLOYMENT_KARG), Some("b"));
        assert_eq!(karg("quiet", DEPLOYMENT_KARG), None);
    }
}
