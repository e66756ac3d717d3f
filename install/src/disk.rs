//! `install to-disk` and `install to-filesystem`.
//!
//! To a disk or image file, in this order, so that a cut-off install never boots and the
//! next run knows it:
//!
//! 1. Check the target (see [`crate::target`]) and the layout; refuse a too small one.
//! 2. Stage the sysroot and the ESP in a temp directory beside the target (or in
//!    `--workdir`): store objects hardlinked from the source repository when they can be.
//! 3. Image file: create `.NAME.update-install`; block device: zero its head and tail (no
//!    partition table is left) and write the unfinished-install marker.
//! 4. `mkfs.ext4 -d STAGE` and `mkfs.vfat` straight into the target at the partitions'
//!    offsets, the ESP filled with `mcopy`.
//! 5. The GPT, last; then the marker is cleared, and an image file renamed into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};
use crate::layout::{self, Layout};
use crate::stage::{self, Options, Staged};
use crate::target::{self, Kind};
use crate::tools;

/// `install to-disk` options beyond the shared ones.
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// Size of a new image file.
    pub size: Option<u64>,
    /// Size of the ESP.
    pub esp_size: u64,
    /// Replace an existing image file.
    pub force: bool,
    /// Where to stage (default: beside the target).
    pub workdir: Option<PathBuf>,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            size: None,
            esp_size: layout::MIN_ESP,
            force: false,
            workdir: None,
        }
    }
}

/// What `install to-disk` did.
#[derive(Debug)]
pub struct DiskReport {
    /// The staging result.
    pub staged: Staged,
    /// The partition layout.
    pub layout: Layout,
    /// The root filesystem's UUID.
    pub root_uuid: String,
    /// The ESP's volume id, as `XXXX-XXXX`.
    pub esp_uuid: String,
    /// A previous install had not finished.
    pub restarted: bool,
}

/// Install onto the disk or image file `path`.
pub fn to_disk(
    path: &Path,
    opts: &Options,
    dopts: &DiskOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<DiskReport> {
    let checked = stage::check(opts)?;
    let (root_type, _, _) = layout::arch()?;
    let mut t = target::inspect(path, dopts.size, dopts.force)?;
    if t.unfinished {
        progress(&format!(
            "{} holds an install that did not finish; starting over",
            path.display()
        ));
        if let Kind::Image { temp, .. } = &t.kind {
            std::fs::remove_file(temp).at_path(temp)?;
        }
    }
    let too_small = |root: u64, needed: u64| Error::TooSmall {
        target: path.to_path_buf(),
        size: t.size,
        root,
        needed,
    };
    let lay = Layout::new(t.size, dopts.esp_size)?
        .ok_or_else(|| too_small(0, dopts.esp_size + 2 * layout::ALIGN))?;
    let workdir = match (&dopts.workdir, &t.kind) {
        (Some(w), _) => w.clone(),
        (None, Kind::Image { .. }) => workdir_of(path),
        // Not /dev: a block device's staging goes where large temp files go.
        (None, Kind::Block { .. }) => PathBuf::from("/var/tmp"),
    };
    // One staging directory per target name: a run that was cut off left it, and this
    // run removes it before starting over.
    let name = path
        .file_name()
        .map_or_else(|| "disk".into(), |n| n.to_string_lossy().into_owned());
    let work = Stage(workdir.join(format!(".{name}.update-install-stage")));
    if std::fs::symlink_metadata(&work.0).is_ok() {
        std::fs::remove_dir_all(&work.0).at_path(&work.0)?;
    }
    std::fs::create_dir(&work.0).at_path(&work.0)?;
    let root = work.0.join("root");
    let esp = work.0.join("esp");
    for d in [&root, &esp] {
        std::fs::create_dir(d).at_path(d)?;
    }
    // The root directory of the new filesystem takes this directory's mode.
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .at_path(&root)?;
    let root_uuid = uuid_v4()?;
    let volid = hex::encode(random::<4>()?).to_uppercase();
    let esp_uuid = format!("{}-{}", &volid[..4], &volid[4..]);
    let root_karg = format!("root=UUID={root_uuid}");
    let place = stage::Place {
        root: &root,
        esp: &esp,
        root_karg: &root_karg,
        esp_uuid: Some(&esp_uuid),
    };
    let staged = stage::populate(
        &place,
        opts,
        &checked,
        &mut |repo, commit| {
            let needed = stage::root_need(repo, commit)?;
            if needed > lay.root_size {
                return Err(too_small(lay.root_size, needed));
            }
            Ok(())
        },
        progress,
    )?;
    let (disk_path, mut file): (PathBuf, File) = match &mut t.kind {
        Kind::Image { temp, .. } => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&*temp)
                .at_path(&*temp)?;
            f.set_len(t.size).at_path(&*temp)?;
            (temp.clone(), f)
        }
        Kind::Block { file, .. } => (path.to_path_buf(), file.try_clone().at_path(path)?),
    };
    target::begin(&mut file, t.size, &disk_path)?;
    progress(&format!(
        "writing the root filesystem (ext4, UUID {root_uuid}) at {} MiB, {} MiB",
        lay.root_start >> 20,
        lay.root_size >> 20
    ));
    tools::mkfs_ext4(&disk_path, lay.root_start, lay.root_size, &root_uuid, &root)?;
    progress(&format!(
        "writing the ESP (vfat, UUID {esp_uuid}) at {} MiB, {} MiB",
        lay.esp_start >> 20,
        lay.esp_size >> 20
    ));
    tools::mkfs_vfat(&disk_path, lay.esp_start, lay.esp_size, &volid)?;
    tools::mcopy(&disk_path, lay.esp_start, &esp)?;
    file.sync_all().at_path(&disk_path)?;
    progress("writing the partition table");
    tools::sfdisk(&disk_path, &lay.sfdisk_script(root_type))?;
    target::finish(&mut file, &disk_path)?;
    if let Kind::Image { temp, .. } = &t.kind {
        std::fs::rename(temp, path).at_path(path)?;
        let dir = store::durable::open_dir(&workdir_of(path)).at_path(path)?;
        rustix::fs::fsync(&dir).at_path(path)?;
    }
    Ok(DiskReport {
        staged,
        layout: lay,
        root_uuid,
        esp_uuid,
        restarted: t.unfinished,
    })
}

/// The staging directory, removed when the install ends (not when it is killed: the next
/// run removes it then).
struct Stage(PathBuf);

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workdir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `install to-filesystem` options beyond the shared ones.
#[derive(Clone, Debug, Default)]
pub struct FilesystemOptions {
    /// The `root=` kernel argument (default: `root=UUID=` of the filesystem mounted there).
    pub root_karg: Option<String>,
}

/// What `install to-filesystem` did.
#[derive(Debug)]
pub struct FilesystemReport {
    /// The staging result.
    pub staged: Staged,
    /// The `root=` argument used, and whether it was found from the mount.
    pub root_karg: String,
    /// Whether `root_karg` was found from the mount (not given).
    pub root_found: bool,
}

/// Install into the filesystem mounted at `mountpoint`, with the ESP mounted at `esp`.
pub fn to_filesystem(
    mountpoint: &Path,
    esp: &Path,
    opts: &Options,
    fopts: &FilesystemOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<FilesystemReport> {
    let checked = stage::check(opts)?;
    for d in [mountpoint, esp] {
        let m = std::fs::metadata(d).at_path(d)?;
        if !m.is_dir() {
            return Err(Error::BadTarget {
                target: d.to_path_buf(),
                found: "not a directory",
            });
        }
    }
    for e in std::fs::read_dir(mountpoint).at_path(mountpoint)? {
        let e = e.at_path(mountpoint)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "lost+found" {
            return Err(Error::NotEmpty {
                path: mountpoint.to_path_buf(),
                entry: name,
            });
        }
    }
    let (root_karg, root_found) = match &fopts.root_karg {
        Some(k) => (k.clone(), false),
        None => match tools::mount_uuid(mountpoint) {
            Ok(u) => (format!("root=UUID={u}"), true),
            Err(reason) => {
                return Err(Error::NoRootUuid {
                    mountpoint: mountpoint.to_path_buf(),
                    reason,
                })
            }
        },
    };
    if !root_karg.starts_with("root=") {
        return Err(Error::invalid(
            format!("--root-karg '{root_karg}'"),
            "must start with root=",
        ));
    }
    let esp_uuid = tools::mount_uuid(esp).ok();
    let place = stage::Place {
        root: mountpoint,
        esp,
        root_karg: &root_karg,
        esp_uuid: esp_uuid.as_deref(),
    };
    let staged = stage::populate(&place, opts, &checked, &mut |_, _| Ok(()), progress)?;
    for d in [mountpoint, esp] {
        let fd = store::durable::open_dir(d).at_path(d)?;
        rustix::fs::syncfs(&fd).at_path(d)?;
    }
    Ok(FilesystemReport {
        staged,
        root_karg,
        root_found,
    })
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::invalid("random bytes", e.to_string()))?;
    Ok(b)
}

/// A random (version 4) UUID.
fn uuid_v4() -> Result<String> {
    let mut b = random::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}
