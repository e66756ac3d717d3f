//! `loader/loader.conf`: written once, never with `default`.
//!
//! systemd-boot picks its default entry from, in order: the `LoaderEntryOneShot` variable,
//! the `LoaderEntryDefault` variable (`bootctl set-default`), the `default` pattern of
//! `loader.conf`, and only then the first entry of its sort order. None of the first three
//! skips an entry whose tries are used up, so any of them defeats the fallback of boot
//! counting (FINDINGS pitfall 2); rollback relies on the sort order alone.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::dir::{open_boot, open_subdir, write_new};
use crate::error::{IoResultExt, Result};

/// What [`write_loader_conf`] writes.
pub const LOADER_CONF: &str = "\
# Written by update. Do not add a `default` line: systemd-boot would boot that entry even
# when its boot counter is used up, and a failed update would never roll back.
timeout 0
";

/// Largest `loader.conf` [`check_loader_conf`] reads.
const MAX_LOADER_CONF: u64 = 64 * 1024;

/// Write `BOOT/loader/loader.conf` ([`LOADER_CONF`]: `timeout 0`, no `default`) when it is
/// missing; an existing file is left alone (see [`check_loader_conf`]). Creates `loader`.
pub fn write_loader_conf(boot: &Path) -> Result<()> {
    let boot_fd = open_boot(boot)?;
    let loader = boot.join("loader");
    let dir = open_subdir(boot_fd.as_fd(), "loader", true, &loader)?;
    match write_new(dir.as_fd(), "loader.conf", LOADER_CONF.as_bytes(), &loader) {
        Err(crate::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Check an existing `BOOT/loader/loader.conf` for a `default` line. Returns the warning to
/// show, naming the file and the line, or `None` when there is no such line (or no file).
pub fn check_loader_conf(boot: &Path) -> Result<Option<String>> {
    let path = boot.join("loader/loader.conf");
    let boot_fd = open_boot(boot)?;
    let dir = match rustix::fs::openat(
        &boot_fd,
        "loader",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).at_path(boot.join("loader")),
    };
    let fd = match rustix::fs::openat(
        &dir,
        "loader.conf",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).at_path(&path),
    };
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_LOADER_CONF)
        .read_to_end(&mut data)
        .at_path(&path)?;
    let text = String::from_utf8_lossy(&data);
    for line in text.lines() {
        let line = line.trim_matches([' ', '\t', '\r']);
        let Some((key, value)) = line.split_once([' ', '\t']) else {
            continue;
        };
        if key != "default" {
            continue;
        }
        let value = value.trim_start_matches([' ', '\t']);
        let shown = path.display();
        let could_match_trial = value.starts_with('@') || value.contains(['*', '?', '[', '+']);
        return Ok(Some(if could_match_trial {
            format!(
                "{shown}: `default {value}` can select an entry on trial; systemd-boot boots \
                 a default even after its tries are used up, so a failed update would never \
                 roll back. Remove the line."
            )
        } else {
            format!(
                "{shown}: `default {value}` makes systemd-boot boot that entry instead of the \
                 newest deployment, so new deployments would never be tried. Remove the line."
            )
        }));
    }
    Ok(None)
}

#[allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine
#[cfg(test)]
mod tests {
    use super::{check_loader_conf, write_loader_conf, LOADER_CONF};

    #[test]
    fn writes_once_without_default() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(check_loader_conf(tmp.path()).expect("check"), None);
        write_loader_conf(tmp.path()).expect("write");
        let conf = tmp.path().join("loader/loader.conf");
        assert_eq!(std::fs::read_to_string(&conf).expect("read"), LOADER_CONF);
        assert_eq!(check_loader_conf(tmp.path()).expect("check"), None);

        // An existing file is kept.
        std::fs::write(&conf, "timeout 5\n").expect("write");
        write_loader_conf(tmp.path()).expect("again");
        assert_eq!(std::fs::read_to_string(&conf).expect("read"), "timeout 5\n");
        // No temp file left behind.
        let n = std::fs::read_dir(tmp.path().join("loader"))
            .expect("dir")
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn default_lines_are_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_loader_conf(tmp.path()).expect("write");
        let conf = tmp.path().join("loader/loader.conf");
        for (text, want) in [
            ("timeout 0\ndefault update-os-*\n", Some("roll back")),
            ("  default\t@saved\n", Some("roll back")),
            ("default update-os-7.conf\n", Some("never be tried")),
            ("# default a*\ntimeout 0\n", None),
            ("defaults x\n", None),
        ] {
            std::fs::write(&conf, text).expect("write");
            let got = check_loader_conf(tmp.path()).expect("check");
            match (got, want) {
                (None, None) => {}
                (Some(w), Some(want)) => {
                    assert!(
                        w.contains(want) && w.contains("loader.conf"),
                        "{text:?}: {w}"
                    )
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
