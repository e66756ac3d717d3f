//! The target of `install to-disk`: an image file or a whole-disk block device, checked
//! before anything is written to it.
//!
//! Refused: a directory or other non-disk; an existing image file without `--force`; a
//! partition; a disk that is mounted (itself or a partition of it), held by another
//! device (RAID, LVM, dm-crypt: `/sys/dev/block/M:m/holders`), or opened exclusively
//! elsewhere (`O_EXCL` on a block device fails with `EBUSY`).
//!
//! An install that was cut off is recognised: for an image file by its temp file
//! `.NAME.update-install` beside it, for a block device by [`MARKER`] in the MBR's boot
//! code area, written before anything else and cleared after the partition table, which
//! is written last (a disk without a GPT does not boot).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

/// The first bytes of a disk while an install onto it runs.
pub const MARKER: &[u8] = b"update-install: unfinished\n";
/// Bytes at the start of the disk a new install zeroes (protective MBR, primary GPT, and
/// the gap before the first partition), with [`MARKER`] at offset 0.
pub const HEAD: u64 = 1 << 20;

/// What the target is.
#[derive(Debug)]
pub enum Kind {
    /// An image file, built under `temp` and renamed to the target at the end.
    Image {
        /// The temp file beside the target.
        temp: PathBuf,
        /// Whether a target file exists (and `--force` was given).
        replaces: bool,
    },
    /// A whole-disk block device (checked not to be open exclusively elsewhere).
    Block {
        /// The open device.
        file: File,
        /// `MAJ:MIN`.
        dev: String,
    },
}

/// A checked target.
#[derive(Debug)]
pub struct Target {
    /// The path given.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Its size in bytes (for a new image: the `--size` given).
    pub size: u64,
    /// A previous install did not finish.
    pub unfinished: bool,
}

/// Check `path`. `size` is the image size to create (needed for a new image file).
pub fn inspect(path: &Path, size: Option<u64>, force: bool) -> Result<Target> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).at_path(path),
    };
    match meta {
        Some(m) if m.file_type().is_block_device() => block(path, &m),
        Some(m) if m.is_dir() => Err(bad(path, "a directory")),
        Some(m) if !m.is_file() => Err(bad(path, "neither a file nor a block device")),
        Some(m) if !force => {
            let _ = m;
            Err(Error::TargetExists {
                target: path.to_path_buf(),
            })
        }
        existing => {
            let size = match (size, &existing) {
                (Some(s), _) => s,
                (None, Some(m)) => m.len(),
                (None, None) => {
                    return Err(Error::invalid(
                        format!("target {}", path.display()),
                        "a new image file needs --size (e.g. --size 4G)",
                    ))
                }
            };
            let temp = temp_path(path)?;
            #[allow(clippy::disallowed_methods)]
            // path meant: the temp file of the target the user named
            let unfinished = temp.symlink_metadata().is_ok();
            Ok(Target {
                path: path.to_path_buf(),
                kind: Kind::Image {
                    temp,
                    replaces: existing.is_some(),
                },
                size,
                unfinished,
            })
        }
    }
}

fn bad(path: &Path, found: &'static str) -> Error {
    Error::BadTarget {
        target: path.to_path_buf(),
        found,
    }
}

/// `.NAME.update-install` beside `path`.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("target {}", path.display()), "needs a file name"))?;
    Ok(path.with_file_name(format!(".{name}.update-install")))
}

fn block(path: &Path, m: &std::fs::Metadata) -> Result<Target> {
    use std::os::unix::fs::MetadataExt;
    let rdev = m.rdev();
    let dev = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let sys = PathBuf::from("/sys/dev/block").join(&dev);
    #[allow(clippy::disallowed_methods)] // path meant: sysfs
    if sys.join("partition").exists() {
        let disk = std::fs::canonicalize(&sys)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "its disk".to_owned());
        return Err(Error::Partition {
            target: path.to_path_buf(),
            disk,
        });
    }
    // The disk and its partitions, by MAJ:MIN, with their sysfs directories.
    let mut devs = vec![(dev.clone(), sys.clone())];
    if let Ok(rd) = std::fs::read_dir(&sys) {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("partition").exists() {
                if let Ok(d) = std::fs::read_to_string(p.join("dev")) {
                    devs.push((d.trim().to_owned(), p));
                }
            }
        }
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").at_path("/proc/self/mountinfo")?;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if let (Some(d), Some(mp)) = (f.get(2), f.get(4)) {
            if let Some((what, _)) = devs.iter().find(|(x, _)| x == d) {
                return Err(Error::Mounted {
                    target: path.to_path_buf(),
                    what: what.clone(),
                    mountpoint: mp.to_string(),
                });
            }
        }
    }
    for (d, p) in &devs {
        let holders: Vec<String> = std::fs::read_dir(p.join("holders"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !holders.is_empty() {
            return Err(Error::InUse {
                target: path.to_path_buf(),
                by: format!("{d} is held by {}", holders.join(", ")),
            });
        }
    }
    // Exclusive only for this check: mkfs opens the disk exclusively itself and refuses
    // one held by us. Its own O_EXCL guards the disk while it writes.
    let excl = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_excl())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            return Err(Error::InUse {
                target: path.to_path_buf(),
                by: "another program has it open exclusively".to_owned(),
            })
        }
        Err(e) => return Err(e).at_path(path),
    };
    drop(excl);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at_path(path)?;
    let size = file.seek(SeekFrom::End(0)).at_path(path)?;
    let mut head = vec![0u8; MARKER.len()];
    file.seek(SeekFrom::Start(0)).at_path(path)?;
    let unfinished = file.read_exact(&mut head).is_ok() && head == MARKER;
    Ok(Target {
        path: path.to_path_buf(),
        kind: Kind::Block { file, dev },
        size,
        unfinished,
    })
}

fn libc_o_excl() -> i32 {
    rustix::fs::OFlags::EXCL.bits() as i32
}

/// Zero the head and the last MiB of `f` (no partition table is left, so the disk does
/// not boot) and put [`MARKER`] at its start; synced.
pub fn begin(f: &mut File, size: u64, shown: &Path) -> Result<()> {
    let zeros = vec![0u8; HEAD as usize];
    f.seek(SeekFrom::Start(0)).at_path(shown)?;
    f.write_all(&zeros).at_path(shown)?;
    let tail = size.saturating_sub(HEAD).max(HEAD);
    if tail + HEAD <= size {
        f.seek(SeekFrom::Start(tail)).at_path(shown)?;
        f.write_all(&zeros).at_path(shown)?;
    }
    f.seek(SeekFrom::Start(0)).at_path(shown)?;
    f.write_all(MARKER).at_path(shown)?;
    f.sync_all().at_path(shown)
}

/// Clear [`MARKER`] (the partition table is in place); synced.
pub fn finish(f: &mut File, shown: &Path) -> Result<()> {
    f.seek(SeekFrom::Start(0)).at_path(shown)?;
    f.write_all(&[0u8; 440][..MARKER.len()]).at_path(shown)?;
    f.sync_all().at_path(shown)
}
