//! Kernel and initramfs: found in the tree at `/usr/lib/modules/KVER/{vmlinuz,initramfs.img}`
//! (where OSTree looks), copied to the boot partition under
//! `update/OS/KVER-CHECKSUM/`, one directory shared by every deployment with the same files.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use store::durable;

use crate::error::{Error, IoResultExt, Result};

/// The kernel's name in a tree and on the boot partition.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs's name in a tree and on the boot partition.
pub const INITRAMFS: &str = "initramfs.img";
const MODULES: &str = "usr/lib/modules";

/// The boot files of one tree.
#[derive(Clone, Debug)]
pub struct BootFiles {
    /// The kernel version (the directory name under `/usr/lib/modules`).
    pub kver: String,
    /// The kernel in the checked-out tree.
    pub kernel: PathBuf,
    /// The initramfs in the checked-out tree, if the tree has one.
    pub initramfs: Option<PathBuf>,
    /// `KVER-CHECKSUM`: the directory name on the boot partition.
    pub dir_name: String,
    /// Bytes the two files take.
    pub size: u64,
}

impl BootFiles {
    /// Find the kernel in the tree checked out at `root`. Exactly one
    /// `/usr/lib/modules/*/vmlinuz` must exist.
    pub fn find(root: &Path) -> Result<BootFiles> {
        let modules = root.join(MODULES);
        let mut found = Vec::new();
        let rd = match std::fs::read_dir(&modules) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::State(format!(
                    "the tree has no /{MODULES}: a bootable tree needs /{MODULES}/KVER/{KERNEL}"
                )))
            }
            Err(e) => return Err(e).at_path(&modules),
        };
        for e in rd {
            let e = e.at_path(&modules)?;
            let k = e.path().join(KERNEL);
            if std::fs::symlink_metadata(&k).is_ok_and(|m| m.is_file()) {
                found.push((e.file_name().to_string_lossy().into_owned(), k));
            }
        }
        found.sort();
        let (kver, kernel) = match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(Error::State(format!(
                    "the tree has no kernel: expected /{MODULES}/KVER/{KERNEL}"
                )))
            }
            _ => {
                return Err(Error::State(format!(
                    "the tree has {} kernels under /{MODULES} ({}): exactly one is supported",
                    found.len(),
                    found
                        .iter()
                        .map(|f| f.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        if kver.is_empty()
            || kver.len() > 100
            || !kver
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        {
            return Err(Error::invalid(
                format!("kernel version '{}'", kver.escape_debug()),
                "use A-Z a-z 0-9 . _ - +",
            ));
        }
        let initramfs = kernel.with_file_name(INITRAMFS);
        let initramfs = std::fs::symlink_metadata(&initramfs)
            .is_ok_and(|m| m.is_file())
            .then_some(initramfs);
        let mut hasher = blake3::Hasher::new();
        let mut size = hash_file(&kernel, &mut hasher)?;
        hasher.update(b"\0initramfs\0");
        if let Some(i) = &initramfs {
            size += hash_file(i, &mut hasher)?;
        }
        let sum = hasher.finalize().to_hex();
        let dir_name = format!("{kver}-{}", &sum[..32]);
        Ok(BootFiles {
            kver,
            kernel,
            initramfs,
            dir_name,
            size,
        })
    }

    /// `update/OS/KVER-CHECKSUM`, relative to the boot partition.
    pub fn rel_dir(&self, os: &str) -> String {
        format!("update/{os}/{}", self.dir_name)
    }

    /// Whether the boot partition already holds these files.
    pub fn installed(&self, boot: &Path, os: &str) -> bool {
        boot.join(self.rel_dir(os)).join(KERNEL).is_file()
    }

    /// Copy the files to the boot partition unless they are there: into a temp directory,
    /// each file fsynced, then one rename and an fsync of the parent. A crash leaves only a
    /// temp directory that the next deploy removes.
    pub fn install(&self, boot: &Path, os: &str) -> Result<()> {
        if self.installed(boot, os) {
            return Ok(());
        }
        let parent_rel = PathBuf::from("update").join(os);
        let parent_path = boot.join(&parent_rel);
        let boot_fd = store::durable::open_dir(boot).at_path(boot)?;
        let parent = durable::mkdir_all_at(boot_fd.as_fd(), &parent_rel, &parent_path)?;
        let tmp = durable::temp_name(".tmp-boot-");
        let tmp_path = parent_path.join(&tmp);
        rustix::fs::mkdirat(
            &parent,
            tmp.as_str(),
            rustix::fs::Mode::from_raw_mode(0o755),
        )
        .at_path(&tmp_path)?;
        let result = (|| {
            copy_synced(&self.kernel, &tmp_path.join(KERNEL))?;
            if let Some(i) = &self.initramfs {
                copy_synced(i, &tmp_path.join(INITRAMFS))?;
            }
            let d = std::fs::File::open(&tmp_path).at_path(&tmp_path)?;
            d.sync_all().at_path(&tmp_path)?;
            rustix::fs::renameat(&parent, tmp.as_str(), &parent, self.dir_name.as_str())
                .at_path(parent_path.join(&self.dir_name))?;
            rustix::fs::fsync(&parent).at_path(&parent_path)
        })();
        if result.is_err() {
            let _ = durable::remove_tree_at(parent.as_fd(), &tmp);
        }
        result
    }
}

fn hash_file(path: &Path, hasher: &mut blake3::Hasher) -> Result<u64> {
    let mut f = std::fs::File::open(path).at_path(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).at_path(path)?;
        if r == 0 {
            return Ok(n);
        }
        hasher.update(&buf[..r]);
        n += r as u64;
    }
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).at_path(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .at_path(to)?;
    std::io::copy(&mut src, &mut dst).at_path(to)?;
    dst.flush().at_path(to)?;
    dst.sync_all().at_path(to)
}

/// Remove boot file directories of `os` that no entry names any more, and temp
/// directories left by an interrupted install.
pub fn remove_unused(boot: &Path, os: &str, used: &[String]) -> Result<Vec<String>> {
    let parent = boot.join("update").join(os);
    let rd = match std::fs::read_dir(&parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at_path(&parent),
    };
    let fd = store::durable::open_dir(&parent).at_path(&parent)?;
    let mut removed = Vec::new();
    for e in rd {
        let e = e.at_path(&parent)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("update/{os}/{name}");
        if used.contains(&rel) {
            continue;
        }
        durable::remove_tree_at(fd.as_fd(), &name).at_path(parent.join(&name))?;
        removed.push(rel);
    }
    if !removed.is_empty() {
        rustix::fs::fsync(&fd).at_path(&parent)?;
    }
    Ok(removed)
}
