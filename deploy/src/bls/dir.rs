//! `loader/entries` on a boot partition (the ESP or an XBOOTLDR/`/boot`), changed only in
//! ways a power cut cannot tear.
//!
//! The partition is usually vfat: no symlinks, no `RENAME_NOREPLACE` on older kernels, no
//! atomic directory swap. An entry is published by writing a temp file whose name does not
//! end in `.conf` (systemd-boot ignores it), fsyncing it, renaming it to its final name and
//! fsyncing the directory. All work is relative to directory handles opened without
//! following symlinks below the boot partition's root.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use super::entry::{Entry, MAX_ENTRY_SIZE};
use super::name::EntryName;
use crate::error::{Error, IoResultExt, Result};

/// The stem prefix of the entries `update deploy` writes.
pub const OURS: &str = "update-";

/// Marker between the final name and the random part of a temp file name.
const TEMP_MARK: &str = ".tmp-";

/// The `loader/entries` directory of a boot partition.
#[derive(Debug)]
pub struct EntriesDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl EntriesDir {
    /// Open `BOOT/loader/entries`; with `create`, create `loader` and `entries` first when
    /// missing. `boot` itself may be reached through symlinks; `loader` and `entries` may not.
    pub fn open(boot: &Path, create: bool) -> Result<EntriesDir> {
        let boot_fd = open_boot(boot)?;
        let loader = boot.join("loader");
        let loader_fd = open_subdir(boot_fd.as_fd(), "loader", create, &loader)?;
        let path = loader.join("entries");
        let fd = open_subdir(loader_fd.as_fd(), "entries", create, &path)?;
        Ok(EntriesDir { fd, path })
    }

    /// The directory's path, as used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry: regular files whose name [`EntryName::parse`] accepts, sorted by file
    /// name. Temp files, hidden files and names that are not entries are skipped. An entry of
    /// ours (`update-*`) that does not parse fails the whole listing with
    /// [`Error::Malformed`] naming it; another loader's entry we cannot read (a UKI or EFI
    /// program entry has no `linux` line) is skipped.
    pub fn list(&self) -> Result<Vec<(EntryName, Entry)>> {
        let mut out = Vec::new();
        for dirent in rustix::fs::Dir::read_from(&self.fd).at_path(&self.path)? {
            let dirent = dirent.at_path(&self.path)?;
            let Ok(file_name) = dirent.file_name().to_str() else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let Some(name) = EntryName::parse(file_name) else {
                continue;
            };
            let st = match rustix::fs::statat(&self.fd, file_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Renamed away (by a concurrent bless) since the directory was read.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e).at_path(self.path.join(file_name)),
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                continue;
            }
            let entry = match self.read(&name) {
                Ok(e) => e,
                // Another loader's entry we do not read (an `efi` or `uki` line instead of
                // `linux`): not ours to judge, and not a reason to stop.
                Err(Error::Malformed { .. }) if !name.stem().starts_with(OURS) => continue,
                Err(e) => return Err(e),
            };
            out.push((name, entry));
        }
        out.sort_by_cached_key(|(name, _)| name.file_name());
        Ok(out)
    }

    /// Read and parse the entry `name`.
    pub fn read(&self, name: &EntryName) -> Result<Entry> {
        let file_name = name.file_name();
        let shown = self.path.join(&file_name);
        let fd = rustix::fs::openat(
            &self.fd,
            file_name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at_path(&shown)?;
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_ENTRY_SIZE as u64 + 1)
            .read_to_end(&mut data)
            .at_path(&shown)?;
        Entry::parse(&data, &shown)
    }

    /// Publish `entry` as `name`: temp file, fsync, rename, fsync the directory. Refuses to
    /// replace an existing file (an [`Error::Io`] with kind `AlreadyExists`) and entries
    /// [`Entry::check`] refuses.
    pub fn write(&self, name: &EntryName, entry: &Entry) -> Result<()> {
        entry.check()?;
        let file_name = name.file_name();
        write_new(
            self.fd.as_fd(),
            &file_name,
            entry.to_text().as_bytes(),
            &self.path,
        )
    }

    /// Remove the entry `name` and fsync the directory. `Ok(false)` when it did not exist.
    pub fn remove(&self, name: &EntryName) -> Result<bool> {
        let file_name = name.file_name();
        match rustix::fs::unlinkat(&self.fd, file_name.as_str(), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e).at_path(self.path.join(&file_name)),
        }
        rustix::fs::fsync(&self.fd).at_path(&self.path)?;
        Ok(true)
    }

    /// Rename entry `from` to `to` (blessing, re-arming a counter) and fsync the directory.
    /// Refuses to replace an existing `to`.
    pub fn rename(&self, from: &EntryName, to: &EntryName) -> Result<()> {
        if from == to {
            return Ok(());
        }
        let (f, t) = (from.file_name(), to.file_name());
        rename_noreplace(self.fd.as_fd(), &f, &t).map_err(|e| {
            let shown = if e == Errno::EXIST { &t } else { &f };
            Error::Io {
                path: self.path.join(shown),
                source: e.into(),
            }
        })?;
        rustix::fs::fsync(&self.fd).at_path(&self.path)
    }

    /// Remove temp files left by an interrupted [`EntriesDir::write`]; returns how many.
    pub fn clean_temp(&self) -> Result<usize> {
        let mut removed = 0;
        for dirent in rustix::fs::Dir::read_from(&self.fd).at_path(&self.path)? {
            let dirent = dirent.at_path(&self.path)?;
            let Ok(file_name) = dirent.file_name().to_str() else {
                continue;
            };
            if !is_temp_name(file_name) {
                continue;
            }
            match rustix::fs::unlinkat(&self.fd, file_name, AtFlags::empty()) {
                Ok(()) => removed += 1,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e).at_path(self.path.join(file_name)),
            }
        }
        if removed > 0 {
            rustix::fs::fsync(&self.fd).at_path(&self.path)?;
        }
        Ok(removed)
    }
}

/// Open the root of the boot partition (symlinks allowed: it is the edge).
pub(super) fn open_boot(boot: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        boot,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(boot)
}

/// Open directory `name` below `dir` without following a symlink; with `create`, create
/// it first when missing (and fsync `dir` so the new directory survives a power cut).
pub(super) fn open_subdir(
    dir: BorrowedFd<'_>,
    name: &str,
    create: bool,
    shown: &Path,
) -> Result<OwnedFd> {
    if create {
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => rustix::fs::fsync(dir).at_path(shown)?,
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e).at_path(shown),
        }
    }
    store::durable::open_dir_at(dir, name).at_path(shown)
}

/// Durably create `dir/name` holding `data`, never replacing an existing file. `dir_path`
/// names `dir` in errors. A crash leaves either no `name` or the complete file, plus
/// perhaps a temp file that [`EntriesDir::clean_temp`] removes.
pub(super) fn write_new(
    dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
    dir_path: &Path,
) -> Result<()> {
    let shown = dir_path.join(name);
    let tmp = temp_name(name);
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .at_path(dir_path.join(&tmp))?;
    let written = (|| {
        let mut f = std::fs::File::from(fd);
        f.write_all(data)?;
        f.sync_all()?;
        rename_noreplace(dir, &tmp, name)?;
        Ok::<(), std::io::Error>(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    written.at_path(&shown)?;
    rustix::fs::fsync(dir).at_path(dir_path)
}

/// `renameat2(RENAME_NOREPLACE)`, falling back to check-then-rename where the filesystem
/// does not support the flag (`EINVAL`: vfat on older kernels). The fallback is not atomic
/// against a concurrent writer; callers hold the sysroot lock.
fn rename_noreplace(dir: BorrowedFd<'_>, from: &str, to: &str) -> rustix::io::Result<()> {
    match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) | Err(Errno::NOSYS) => {
            match rustix::fs::statat(dir, to, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EXIST),
                Err(Errno::NOENT) => rustix::fs::renameat(dir, from, dir, to),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// `.NAME.tmp-RANDOM`: hidden, and never ending in `.conf`, so no boot loader reads it.
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut r = [0u8; 8];
    if getrandom::fill(&mut r).is_err() {
        // Uniqueness then rests on pid and counter, which is enough under the sysroot lock.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        r = (u64::from(std::process::id()) << 32 ^ n).to_le_bytes();
    }
    format!(".{name}{TEMP_MARK}{}", hex::encode(r))
}

/// Whether `file_name` is one of the temp names [`temp_name`] makes.
fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with('.')
        && file_name
            .rsplit_once(TEMP_MARK)
            .is_some_and(|(_, r)| r.len() == 16 && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine
#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::{is_temp_name, temp_name, EntriesDir};
    use crate::bls::entry::Entry;
    use crate::bls::name::EntryName;
    use crate::error::Error;

    fn entry(gen: u32) -> Entry {
        Entry {
            title: Some(format!("os {gen}")),
            version: Some(gen.to_string()),
            sort_key: Some("update-os".into()),
            linux: "/update/os/k/vmlinuz".into(),
            initrd: vec!["/update/os/k/initramfs.img".into()],
            options: vec![format!("rw update.deployment=os/c{gen}.0")],
            ..Entry::default()
        }
    }

    fn name(s: &str) -> EntryName {
        EntryName::parse(s).expect("valid")
    }

    fn names(d: &EntriesDir) -> Vec<String> {
        d.list()
            .expect("list")
            .into_iter()
            .map(|(n, _)| n.file_name())
            .collect()
    }

    #[test]
    fn open_without_create_fails_naming_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let e = EntriesDir::open(tmp.path(), false).expect_err("missing");
        assert!(e.to_string().contains("loader"), "{e}");
        let d = EntriesDir::open(tmp.path(), true).expect("create");
        assert_eq!(d.path(), tmp.path().join("loader/entries"));
        EntriesDir::open(tmp.path(), false).expect("exists now");
    }

    #[test]
    fn write_list_rename_remove() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = EntriesDir::open(tmp.path(), true).expect("open");
        assert!(d.list().expect("list").is_empty());

        d.write(&name("update-os-1.conf"), &entry(1))
            .expect("write 1");
        let new = EntryName::new("update-os-2")
            .expect("ok")
            .with_tries(3)
            .expect("ok");
        d.write(&new, &entry(2)).expect("write 2");
        let listed = d.list().expect("list");
        assert_eq!(names(&d), ["update-os-1.conf", "update-os-2+3.conf"]);
        assert_eq!(listed[1].1, entry(2));
        let on_disk = std::fs::read_to_string(tmp.path().join("loader/entries/update-os-2+3.conf"))
            .expect("read");
        assert_eq!(on_disk, entry(2).to_text());

        // Never replaces.
        let e = d.write(&new, &entry(9)).expect_err("exists");
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == ErrorKind::AlreadyExists),
            "{e}"
        );
        assert_eq!(d.read(&new).expect("read"), entry(2));

        // Simulate the boot loader's decrement, then bless.
        d.rename(&new, &name("update-os-2+2-1.conf"))
            .expect("count");
        d.rename(&name("update-os-2+2-1.conf"), &new.blessed())
            .expect("bless");
        assert_eq!(names(&d), ["update-os-1.conf", "update-os-2.conf"]);
        let e = d
            .rename(&name("update-os-1.conf"), &name("update-os-2.conf"))
            .expect_err("exists");
        assert!(e.to_string().contains("update-os-2.conf"), "{e}");
        assert!(d
            .rename(&name("update-os-9.conf"), &name("update-os-8.conf"))
            .is_err());

        assert!(d.remove(&name("update-os-1.conf")).expect("remove"));
        assert!(!d.remove(&name("update-os-1.conf")).expect("again"));
        assert_eq!(names(&d), ["update-os-2.conf"]);
        assert!(d
            .write(
                &name("bad.conf"),
                &Entry {
                    linux: String::new(),
                    ..Entry::default()
                }
            )
            .is_err());
    }

    #[test]
    fn temp_and_foreign_files_are_ignored_and_cleaned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = EntriesDir::open(tmp.path(), true).expect("open");
        let dir = tmp.path().join("loader/entries");
        let t = temp_name("update-os-3+3.conf");
        assert!(is_temp_name(&t) && !t.ends_with(".conf"), "{t}");
        std::fs::write(dir.join(&t), "half").expect("write");
        std::fs::write(dir.join("notes.txt"), "x").expect("write");
        std::fs::write(dir.join(".hidden.conf"), "x").expect("write");
        std::fs::create_dir(dir.join("subdir.conf")).expect("mkdir");
        std::os::unix::fs::symlink("update-os-1.conf", dir.join("link.conf")).expect("symlink");
        d.write(&name("update-os-1.conf"), &entry(1))
            .expect("write");
        assert_eq!(names(&d), ["update-os-1.conf"]);

        assert_eq!(d.clean_temp().expect("clean"), 1);
        assert!(!dir.join(&t).exists());
        assert!(dir.join("notes.txt").exists() && dir.join(".hidden.conf").exists());
        assert_eq!(d.clean_temp().expect("clean"), 0);
    }

    #[test]
    fn malformed_entry_names_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = EntriesDir::open(tmp.path(), true).expect("open");
        // Another loader's entry we cannot read is skipped (a UKI entry has no `linux`).
        std::fs::write(d.path().join("uki.conf"), "title other\nuki /x.efi\n").expect("write");
        assert!(d.list().expect("foreign skipped").is_empty());
        // One of ours that does not parse stops the listing, naming the file.
        std::fs::write(d.path().join("update-os-3.conf"), "title no kernel\n").expect("write");
        let e = d.list().expect_err("malformed");
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(
            e.to_string().contains("loader/entries/update-os-3.conf"),
            "{e}"
        );
    }

    #[test]
    fn symlinked_loader_dir_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("elsewhere")).expect("mkdir");
        std::os::unix::fs::symlink("elsewhere", tmp.path().join("loader")).expect("symlink");
        assert!(EntriesDir::open(tmp.path(), true).is_err());
    }
}
