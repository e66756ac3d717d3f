//! Kernel and initramfs: found in the commit at `/usr/lib/modules/KVER/{vmlinuz,initramfs.img}`
//! (where OSTree looks), copied to the boot partition under
//! `update/OS/KVER-CHECKSUM/`, one directory shared by every deployment with the same files.
//!
//! Both are found in the commit's listings and read from their store objects, hashed while
//! read: never through the checked-out tree, so a symlinked kernel directory cannot point
//! the copy at a host file, and a damaged object is refused by name instead of booted.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use store::durable;
use store::object::DirTree;
use store::{CommitId, FileId, Repo};

use crate::error::{Error, IoResultExt, Result};
use crate::shape;

/// The kernel's name in a tree and on the boot partition.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs's name in a tree and on the boot partition.
pub const INITRAMFS: &str = "initramfs.img";
const MODULES: &str = "usr/lib/modules";

/// The boot files of one commit.
#[derive(Clone, Debug)]
pub struct BootFiles {
    /// The kernel version (the directory name under `/usr/lib/modules`).
    pub kver: String,
    /// The kernel's file object.
    pub kernel: FileId,
    /// The initramfs's file object, if the tree has one.
    pub initramfs: Option<FileId>,
    /// `KVER-CHECKSUM`: the directory name on the boot partition.
    pub dir_name: String,
    /// Bytes the two files take.
    pub size: u64,
}

impl BootFiles {
    /// Find the kernel in the commit's tree. Exactly one `/usr/lib/modules/*/vmlinuz` must
    /// exist; every entry of `/usr/lib/modules` that is a symlink, and a kernel or
    /// initramfs that is not a regular file, is refused with [`Error::TreeShape`]. Both
    /// files are read in full and checked against their ids ([`Error::CorruptObject`]).
    pub fn find(repo: &Repo, commit: &CommitId) -> Result<BootFiles> {
        let Some(modules) = shape::dir_at(repo, commit, MODULES)? else {
            return Err(Error::NoModulesDir {
                modules: MODULES,
                kernel: KERNEL,
            });
        };
        let listing = repo.read_dirtree(&modules)?;
        for (name, id) in &listing.files {
            let (header, _) = repo.read_file(id)?;
            if header.is_symlink() {
                return Err(shape::not_a(
                    "a directory",
                    &format!("/{MODULES}/{name}"),
                    &header,
                ));
            }
        }
        let mut found = Vec::new();
        for (name, tree, _) in &listing.dirs {
            let dir = format!("/{MODULES}/{name}");
            let kdir = repo.read_dirtree(tree)?;
            if let Some(k) = regular_file(repo, &kdir, KERNEL, &dir)? {
                found.push((name.as_str().to_owned(), dir, kdir, k));
            }
        }
        let (kver, dir, kdir, kernel) = match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(Error::NoKernel {
                    modules: MODULES,
                    kernel: KERNEL,
                })
            }
            _ => {
                return Err(Error::SeveralKernels {
                    modules: MODULES,
                    found: found.iter().map(|f| f.0.clone()).collect(),
                })
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
        let initramfs = regular_file(repo, &kdir, INITRAMFS, &dir)?;
        let mut sink = HashSink::default();
        let mut size = copy_object(repo, &kernel, &format!("{dir}/{KERNEL}"), &mut sink, &dir)?;
        sink.hasher.update(b"\0initramfs\0");
        if let Some(i) = &initramfs {
            size += copy_object(repo, i, &format!("{dir}/{INITRAMFS}"), &mut sink, &dir)?;
        }
        let sum = sink.hasher.finalize().to_hex();
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

    /// Whether the boot partition already holds these files (looked up without following
    /// symlinks).
    pub fn installed(&self, boot: &Path, os: &str) -> Result<bool> {
        let Some(parent) = open_os_dir(boot, os)? else {
            return Ok(false);
        };
        let dir = match durable::open_dir_at(parent.as_fd(), self.dir_name.as_str()) {
            Ok(d) => d,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(false),
            Err(e) => return Err(e).at_path(boot.join(self.rel_dir(os))),
        };
        match rustix::fs::statat(&dir, KERNEL, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(FileType::from_raw_mode(st.st_mode) == FileType::RegularFile),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e).at_path(boot.join(self.rel_dir(os)).join(KERNEL)),
        }
    }

    /// Copy the files from the store to the boot partition unless they are there: into a
    /// temp directory, each file hashed while copied and fsynced, then one rename and an
    /// fsync of the parent. A crash or a corrupt object leaves only a temp directory that
    /// the next deploy removes.
    pub fn install(&self, repo: &Repo, boot: &Path, os: &str) -> Result<()> {
        if self.installed(boot, os)? {
            return Ok(());
        }
        let parent_rel = PathBuf::from("update").join(os);
        let parent_path = boot.join(&parent_rel);
        let boot_fd = durable::open_dir(boot).at_path(boot)?;
        let parent = durable::mkdir_all_at(boot_fd.as_fd(), &parent_rel, &parent_path)?;
        let tmp = durable::temp_name(".tmp-boot-");
        let tmp_path = parent_path.join(&tmp);
        rustix::fs::mkdirat(&parent, tmp.as_str(), Mode::from_raw_mode(0o755))
            .at_path(&tmp_path)?;
        let result = (|| {
            let tmp_fd = durable::open_dir_at(parent.as_fd(), tmp.as_str()).at_path(&tmp_path)?;
            let tree_dir = format!("/{MODULES}/{}", self.kver);
            let mut files = vec![(self.kernel, KERNEL)];
            files.extend(self.initramfs.map(|i| (i, INITRAMFS)));
            for (id, name) in files {
                let shown = tmp_path.join(name);
                let fd = rustix::fs::openat(
                    &tmp_fd,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .at_path(&shown)?;
                let mut file = std::fs::File::from(fd);
                let tree_path = format!("{tree_dir}/{name}");
                copy_object(repo, &id, &tree_path, &mut file, &tree_dir)?;
                file.flush().at_path(&shown)?;
                file.sync_all().at_path(&shown)?;
            }
            rustix::fs::fsync(&tmp_fd).at_path(&tmp_path)?;
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

/// The regular file `name` of the kernel directory `dir` (a listing), `None` if it has
/// none; anything else under that name is refused.
fn regular_file(repo: &Repo, kdir: &DirTree, name: &str, dir: &str) -> Result<Option<FileId>> {
    let path = format!("{dir}/{name}");
    if kdir.dirs.iter().any(|d| d.0.as_str() == name) {
        return Err(Error::TreeShape {
            path,
            expected: "a regular file",
            found: "a directory".to_owned(),
        });
    }
    let Some((_, id)) = kdir.files.iter().find(|f| f.0.as_str() == name) else {
        return Ok(None);
    };
    let (header, _) = repo.read_file(id)?;
    if header.is_symlink() {
        return Err(shape::not_a("a regular file", &path, &header));
    }
    Ok(Some(*id))
}

/// Stream the object `id` (at `path` in the tree) into `to`, verified; its size.
fn copy_object(
    repo: &Repo,
    id: &FileId,
    path: &str,
    to: &mut dyn Write,
    shown: &str,
) -> Result<u64> {
    let header = repo
        .copy_file_verified(id, to, Path::new(shown))
        .map_err(|e| shape::at_object(e, id, path))?;
    Ok(header.size)
}

/// Hashes what is written to it: the boot directory's checksum is over the contents.
#[derive(Default)]
struct HashSink {
    hasher: blake3::Hasher,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `update/OS` on the boot partition, opened without following symlinks below `boot`;
/// `None` if it does not exist.
fn open_os_dir(boot: &Path, os: &str) -> Result<Option<OwnedFd>> {
    let boot_fd = durable::open_dir(boot).at_path(boot)?;
    let mut cur = boot_fd;
    let mut shown = boot.to_path_buf();
    for name in ["update", os] {
        shown.push(name);
        cur = match durable::open_dir_at(cur.as_fd(), name) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e).at_path(&shown),
        };
    }
    Ok(Some(cur))
}

/// Remove boot file directories of `os` that no entry names any more, and temp
/// directories left by an interrupted install.
pub fn remove_unused(boot: &Path, os: &str, used: &[String]) -> Result<Vec<String>> {
    let parent = boot.join("update").join(os);
    let Some(fd) = open_os_dir(boot, os)? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd).at_path(&parent)? {
        let e = e.at_path(&parent)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    let mut removed = Vec::new();
    for name in names {
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
