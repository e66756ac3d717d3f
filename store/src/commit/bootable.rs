//! `update commit --bootable`: reshape the commit of a stock root filesystem (debootstrap,
//! mkosi, a container export) into the tree `update deploy` boots.
//!
//! The source is committed as usual, once; nothing is copied. While its objects are
//! written, a [`Recorder`] keeps every listing, directory metadata and file header, and
//! [`reshape`] then moves entries between listings: only the directories on a changed
//! path get new dirtrees, and the only new content is small generated files (the
//! tmpfiles.d configuration and a few symlinks). The rules, in `docs/device.md`:
//!
//! - `/etc` becomes `/usr/etc` (a symlink `/etc` is refused; an existing `/usr/etc` must
//!   be identical, or `/etc` absent);
//! - the kernel `/boot/vmlinuz-KVER` (or `/usr/lib/modules/KVER/vmlinuz`) and its
//!   initramfs end in `/usr/lib/modules/KVER/`, with `config` and `System.map`; `/boot`
//!   ends empty;
//! - `/var`, and the writable top-level directories (`/home` -> `var/home`, ...), move to
//!   `/usr/share/factory/`, and [`TMPFILES_CONF`] creates at boot whatever of them a
//!   device's `/var` lacks, never touching what it has;
//! - `/dev`, `/proc`, `/sys`, `/run`, `/tmp` stay as empty directories; `/efi` and
//!   `/sysroot` are added.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::Ctx;
use crate::error::{Error, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{DirMeta, DirTree, EntryName, FileHeader, ObjectKind, Xattrs, PERM_MASK};

/// Top-level directories that are mount points of API file systems at boot: kept empty.
pub(crate) const API_DIRS: [&str; 5] = ["dev", "proc", "run", "sys", "tmp"];

/// The generated systemd-tmpfiles configuration that seeds `/var` at boot.
pub const TMPFILES_CONF: &str = "usr/lib/tmpfiles.d/update-var.conf";

/// Where seed data lives: systemd-tmpfiles' default source for `C` lines.
const FACTORY: &str = "usr/share/factory";

/// Top-level directories that must be writable: (path, symlink target, seeded path).
const LINKED: [(&str, &str, &str); 7] = [
    ("home", "var/home", "var/home"),
    ("root", "var/roothome", "var/roothome"),
    ("opt", "var/opt", "var/opt"),
    ("srv", "var/srv", "var/srv"),
    ("mnt", "var/mnt", "var/mnt"),
    ("media", "run/media", "run/media"),
    ("usr/local", "../var/usrlocal", "var/usrlocal"),
];

/// Symlinks a Debian kernel package leaves at the root, into `/boot`.
const ROOT_KERNEL_LINKS: [&str; 4] = ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"];

/// Entries of `/var` that systemd's own tmpfiles.d (`var.conf`, `legacy.conf`) create as
/// symlinks into `/run`: not seeded.
const VAR_RUNTIME: [&str; 2] = ["run", "lock"];

/// How to make a bootable commit.
#[derive(Clone, Debug, Default)]
pub struct BootableOptions {
    /// The kernel version to boot when the tree has several; the others' kernel files
    /// are dropped (their modules stay).
    pub kernel: Option<String>,
}

/// What happened to `/etc`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum EtcMove {
    /// Moved to `/usr/etc`.
    #[default]
    Moved,
    /// `/etc` was absent and `/usr/etc` there already.
    AlreadyInUsr,
    /// `/etc` and `/usr/etc` were identical; `/etc` dropped.
    Identical,
    /// Neither exists.
    Absent,
}

/// What a bootable conversion did, for the summary.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BootableReport {
    /// The kernel version booted.
    pub kver: String,
    /// Where the kernel was found, e.g. `/boot/vmlinuz-6.1.0-x-amd64`.
    pub kernel_from: String,
    /// Where the initramfs was found.
    pub initramfs_from: String,
    /// Other kernel versions whose kernel files were dropped (`--kernel` chose).
    pub kernels_dropped: Vec<String>,
    /// What happened to `/etc`.
    pub etc: EtcMove,
    /// Entries of `/var` moved to `/usr/share/factory/var` and seeded.
    pub var_entries: u64,
    /// Lines of the generated tmpfiles.d file.
    pub tmpfiles_lines: u64,
    /// Device nodes left out of `/dev` (and the other API directories).
    pub dev_nodes_dropped: u64,
    /// Other entries left out of the API directories.
    pub api_entries_dropped: u64,
    /// Entries of `/boot` (and root symlinks into it) dropped, as paths.
    pub boot_dropped: Vec<String>,
    /// Symlinks made for writable directories: (path, target).
    pub symlinked: Vec<(String, String)>,
    /// Directories added (`/efi`, `/sysroot`, missing API directories).
    pub created: Vec<String>,
}

/// Everything a commit wrote, by id: filled from the workers, read by [`reshape`].
#[derive(Default)]
pub(crate) struct Recorder {
    trees: Mutex<HashMap<DirTreeId, DirTree>>,
    metas: Mutex<HashMap<DirMetaId, DirMeta>>,
    files: Mutex<HashMap<FileId, FileHeader>>,
}

impl Recorder {
    /// A directory just written.
    pub(crate) fn dir(&self, t: DirTreeId, tree: &DirTree, m: DirMetaId, meta: &DirMeta) {
        self.trees
            .lock()
            .expect("poisoned")
            .entry(t)
            .or_insert_with(|| tree.clone());
        self.metas
            .lock()
            .expect("poisoned")
            .entry(m)
            .or_insert_with(|| meta.clone());
    }

    /// A file object just written.
    pub(crate) fn file(&self, id: FileId, header: &FileHeader) {
        self.files
            .lock()
            .expect("poisoned")
            .entry(id)
            .or_insert_with(|| header.clone());
    }
}

/// The recorded objects, no longer shared.
struct Objects {
    trees: HashMap<DirTreeId, DirTree>,
    metas: HashMap<DirMetaId, DirMeta>,
    files: HashMap<FileId, FileHeader>,
}

impl Objects {
    fn tree(&self, id: &DirTreeId) -> Result<&DirTree> {
        self.trees.get(id).ok_or(Error::MissingObject {
            kind: ObjectKind::DirTree,
            id: id.0,
        })
    }

    fn meta(&self, id: &DirMetaId) -> Result<&DirMeta> {
        self.metas.get(id).ok_or(Error::MissingObject {
            kind: ObjectKind::DirMeta,
            id: id.0,
        })
    }

    fn header(&self, id: &FileId) -> Result<&FileHeader> {
        self.files.get(id).ok_or(Error::MissingObject {
            kind: ObjectKind::File,
            id: id.0,
        })
    }
}

/// One entry of the tree being reshaped.
enum Ent {
    /// A file or symlink.
    File(FileId),
    /// A directory.
    Dir(Dir),
}

/// A directory: as it was written until entered (`tree` is set and `entries` empty),
/// then editable.
struct Dir {
    meta: DirMetaId,
    tree: Option<DirTreeId>,
    entries: BTreeMap<EntryName, Ent>,
}

/// What a path is, for the checks.
enum Kind {
    Missing,
    Dir,
    File(FileHeader),
}

impl Dir {
    fn empty(meta: DirMetaId) -> Dir {
        Dir {
            meta,
            tree: None,
            entries: BTreeMap::new(),
        }
    }

    /// A directory as written: its listing is read only when it is entered.
    fn lazy(tree: DirTreeId, meta: DirMetaId) -> Dir {
        Dir {
            meta,
            tree: Some(tree),
            entries: BTreeMap::new(),
        }
    }

    /// Read the listing of a directory not entered before.
    fn materialise(&mut self, objs: &Objects) -> Result<()> {
        if let Some(t) = self.tree.take() {
            let t = objs.tree(&t)?;
            for (n, id) in &t.files {
                self.entries.insert(n.clone(), Ent::File(*id));
            }
            for (n, t, m) in &t.dirs {
                self.entries.insert(n.clone(), Ent::Dir(Dir::lazy(*t, *m)));
            }
        }
        Ok(())
    }

    /// The ids of a directory never entered.
    fn is_lazy(&self) -> Option<(DirTreeId, DirMetaId)> {
        self.tree.map(|t| (t, self.meta))
    }

    /// The directory at `path` (`a/b`), opened; `None` if missing, an error naming the
    /// path if something else is there.
    fn dir_mut(&mut self, objs: &Objects, path: &str) -> Result<Option<&mut Dir>> {
        let mut cur = self;
        cur.materialise(objs)?;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let name = EntryName::new(comp)?;
            match cur.entries.get_mut(&name) {
                None => return Ok(None),
                Some(Ent::Dir(d)) => {
                    d.materialise(objs)?;
                    cur = d;
                }
                Some(Ent::File(id)) => {
                    return Err(shape(&format!("/{path}"), "a directory", objs.header(id)?))
                }
            }
        }
        Ok(Some(cur))
    }

    fn kind(&mut self, objs: &Objects, path: &str) -> Result<Kind> {
        let (parent, name) = split(path)?;
        let Some(p) = self.dir_mut(objs, parent)? else {
            return Ok(Kind::Missing);
        };
        Ok(match p.entries.get(&name) {
            None => Kind::Missing,
            Some(Ent::File(id)) => Kind::File(objs.header(id)?.clone()),
            Some(_) => Kind::Dir,
        })
    }

    fn take(&mut self, objs: &Objects, path: &str) -> Result<Option<Ent>> {
        let (parent, name) = split(path)?;
        match self.dir_mut(objs, parent)? {
            Some(p) => Ok(p.entries.remove(&name)),
            None => Ok(None),
        }
    }

    /// Put `ent` at `path`, making missing parents with `meta`; false if taken.
    fn put(&mut self, objs: &Objects, path: &str, ent: Ent, meta: DirMetaId) -> Result<bool> {
        let (parent, name) = split(path)?;
        let mut cur = self;
        cur.materialise(objs)?;
        for comp in parent.split('/').filter(|c| !c.is_empty()) {
            let n = EntryName::new(comp)?;
            let next = cur
                .entries
                .entry(n)
                .or_insert_with(|| Ent::Dir(Dir::empty(meta)));
            match next {
                Ent::Dir(d) => {
                    d.materialise(objs)?;
                    cur = d;
                }
                Ent::File(id) => {
                    return Err(shape(
                        &format!("/{parent}"),
                        "a directory",
                        objs.header(id)?,
                    ))
                }
            }
        }
        if cur.entries.contains_key(&name) {
            return Ok(false);
        }
        cur.entries.insert(name, ent);
        Ok(true)
    }

    /// Write the changed directories, children first.
    fn write(self, ctx: &Ctx<'_>) -> Result<(DirTreeId, DirMetaId)> {
        if let Some(ids) = self.is_lazy() {
            return Ok(ids);
        }
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (name, ent) in self.entries {
            match ent {
                Ent::File(id) => files.push((name, id)),
                Ent::Dir(d) => {
                    let (t, m) = d.write(ctx)?;
                    dirs.push((name, t, m));
                }
            }
        }
        let tree = DirTree::new(files, dirs)?;
        Ok((ctx.txn.write_dirtree(&tree)?, self.meta))
    }
}

fn split(path: &str) -> Result<(&str, EntryName)> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((parent, EntryName::new(name)?))
}

fn shape(path: &str, expected: &'static str, found: &FileHeader) -> Error {
    Error::BootableShape {
        path: path.to_owned(),
        expected,
        found: describe(found),
    }
}

fn describe(h: &FileHeader) -> String {
    if h.is_symlink() {
        format!(
            "a symlink to {}",
            String::from_utf8_lossy(&h.symlink_target)
        )
    } else {
        "a regular file".to_owned()
    }
}

/// The state of one conversion.
struct Reshape<'a> {
    ctx: &'a Ctx<'a>,
    objs: Objects,
    root: Dir,
    /// 0755, owned by root (or the owner override): for directories we add.
    dir_meta: DirMetaId,
    report: BootableReport,
}

/// Reshape the tree `(tree, meta)` just written into a bootable one; its new root.
pub(crate) fn reshape(
    ctx: &Ctx<'_>,
    rec: Recorder,
    tree: DirTreeId,
    meta: DirMetaId,
    opts: &BootableOptions,
) -> Result<(DirTreeId, DirMetaId, BootableReport)> {
    let objs = Objects {
        trees: rec.trees.into_inner().expect("poisoned"),
        metas: rec.metas.into_inner().expect("poisoned"),
        files: rec.files.into_inner().expect("poisoned"),
    };
    let root = Dir::lazy(tree, meta);
    let mut r = Reshape {
        ctx,
        objs,
        root,
        dir_meta: meta,
        report: BootableReport::default(),
    };
    r.dir_meta = r.new_meta(0o755)?;
    r.usr_and_etc()?;
    r.kernel(opts)?;
    r.api_dirs()?;
    r.seed()?;
    for d in ["efi", "sysroot"] {
        r.ensure_dir(d, 0o755)?;
    }
    let Reshape {
        root, report, ctx, ..
    } = r;
    let mut report = report;
    report.dev_nodes_dropped += ctx
        .counters
        .dev_nodes
        .load(std::sync::atomic::Ordering::Relaxed);
    report.api_entries_dropped += ctx
        .counters
        .api_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let (t, m) = root.write(ctx)?;
    Ok((t, m, report))
}

impl Reshape<'_> {
    fn new_meta(&mut self, perm: u32) -> Result<DirMetaId> {
        let (uid, gid) = self.ctx.opts.owner(0, 0);
        let meta = DirMeta::new(perm, uid, gid, Xattrs::empty())?;
        let id = self.ctx.txn.write_dirmeta(&meta)?;
        self.objs.metas.insert(id, meta);
        Ok(id)
    }

    fn new_file(&mut self, header: FileHeader, content: &[u8]) -> Result<FileId> {
        let id = self.ctx.txn.write_file(&header, &mut &content[..])?;
        self.objs.files.insert(id, header);
        Ok(id)
    }

    fn symlink(&mut self, target: &str) -> Result<FileId> {
        let (uid, gid) = self.ctx.opts.owner(0, 0);
        let h = FileHeader::symlink(target.as_bytes().to_vec(), uid, gid, Xattrs::empty())?;
        self.new_file(h, b"")
    }

    fn kind(&mut self, path: &str) -> Result<Kind> {
        self.root.kind(&self.objs, path)
    }

    /// `/usr` must be a directory; `/etc` moves into it.
    fn usr_and_etc(&mut self) -> Result<()> {
        match self.kind("usr")? {
            Kind::Dir => {}
            Kind::Missing => {
                return Err(Error::BootableShape {
                    path: "/usr".into(),
                    expected: "a directory (a merged-/usr tree)",
                    found: "missing".into(),
                })
            }
            Kind::File(h) => return Err(shape("/usr", "a directory", &h)),
        }
        let usr_etc = self.kind("usr/etc")?;
        if let Kind::File(h) = &usr_etc {
            return Err(shape("/usr/etc", "a directory", h));
        }
        self.report.etc = match (self.kind("etc")?, usr_etc) {
            (Kind::File(h), _) if h.is_symlink() => {
                return Err(Error::EtcSymlink {
                    target: String::from_utf8_lossy(&h.symlink_target).into_owned(),
                })
            }
            (Kind::File(h), _) => return Err(shape("/etc", "a directory", &h)),
            (Kind::Missing, Kind::Dir) => EtcMove::AlreadyInUsr,
            (Kind::Missing, _) => EtcMove::Absent,
            (Kind::Dir, Kind::Missing) => {
                let etc = self.take("etc")?;
                self.root.put(&self.objs, "usr/etc", etc, self.dir_meta)?;
                EtcMove::Moved
            }
            (Kind::Dir, _) => {
                let etc = self.take("etc")?;
                let usr_etc = self.take("usr/etc")?;
                match (ids(&etc), ids(&usr_etc)) {
                    (Some(a), Some(b)) if a == b => {}
                    _ => return Err(Error::UsrEtcDiffers),
                }
                self.root
                    .put(&self.objs, "usr/etc", usr_etc, self.dir_meta)?;
                EtcMove::Identical
            }
        };
        Ok(())
    }

    fn take(&mut self, path: &str) -> Result<Ent> {
        self.root
            .take(&self.objs, path)?
            .ok_or_else(|| Error::invalid(format!("/{path}"), "vanished while reshaping"))
    }

    /// The kernel and its initramfs into `/usr/lib/modules/KVER/`; `/boot` emptied.
    fn kernel(&mut self, opts: &BootableOptions) -> Result<()> {
        let mut boot: BTreeMap<EntryName, Ent> = BTreeMap::new();
        match self.kind("boot")? {
            Kind::Missing => {}
            Kind::File(h) => return Err(shape("/boot", "a directory", &h)),
            Kind::Dir => {
                if let Some(d) = self.root.dir_mut(&self.objs, "boot")? {
                    boot = std::mem::take(&mut d.entries);
                }
            }
        }
        let boot_file = |name: &str, objs: &Objects| -> Result<Option<FileId>> {
            match EntryName::new(name).ok().and_then(|n| boot.get(&n)) {
                Some(Ent::File(id)) if !objs.header(id)?.is_symlink() => Ok(Some(*id)),
                _ => Ok(None),
            }
        };
        // Every kernel: /boot/vmlinuz-KVER, /usr/lib/modules/KVER/vmlinuz.
        let mut kvers: BTreeMap<String, String> = BTreeMap::new();
        for name in boot.keys() {
            if let Some(k) = name.as_str().strip_prefix("vmlinuz-") {
                if boot_file(name.as_str(), &self.objs)?.is_some() && !k.is_empty() {
                    kvers.insert(k.to_owned(), format!("/boot/{name}"));
                }
            }
        }
        let modules_path = "usr/lib/modules";
        let mut module_kernels = Vec::new();
        if let Some(m) = self.root.dir_mut(&self.objs, modules_path)? {
            for (name, ent) in m.entries.iter_mut() {
                if let Ent::Dir(d) = ent {
                    d.materialise(&self.objs)?;
                    if let Some(Ent::File(id)) = d.entries.get(&EntryName::new("vmlinuz")?) {
                        if !self.objs.header(id)?.is_symlink() {
                            module_kernels.push(name.as_str().to_owned());
                        }
                    }
                }
            }
        }
        for k in module_kernels {
            kvers.insert(k.clone(), format!("/{modules_path}/{k}/vmlinuz"));
        }
        let found: Vec<String> = kvers.keys().cloned().collect();
        let kver = match (&opts.kernel, found.len()) {
            (Some(k), _) if kvers.contains_key(k) => k.clone(),
            (Some(k), _) => {
                return Err(Error::KernelNotFound {
                    kver: k.clone(),
                    found,
                })
            }
            (None, 0) => return Err(Error::NoKernel),
            (None, 1) => found[0].clone(),
            (None, _) => return Err(Error::SeveralKernels { found }),
        };
        let kernel_from = kvers.get(&kver).cloned().unwrap_or_default();
        let kdir_path = format!("{modules_path}/{kver}");
        let initramfs = [
            format!("initrd.img-{kver}"),
            format!("initramfs-{kver}.img"),
        ]
        .iter()
        .find_map(|n| match boot_file(n, &self.objs) {
            Ok(Some(id)) => Some(Ok((id, format!("/boot/{n}")))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .transpose()?;
        let extras = [
            (
                "vmlinuz",
                boot_file(&format!("vmlinuz-{kver}"), &self.objs)?,
            ),
            ("config", boot_file(&format!("config-{kver}"), &self.objs)?),
            (
                "System.map",
                boot_file(&format!("System.map-{kver}"), &self.objs)?,
            ),
        ];
        let objs = &self.objs;
        let Some(kdir) = self.root.dir_mut(objs, &kdir_path)? else {
            return Err(Error::KernelWithoutModules {
                kver,
                kernel: kernel_from,
            });
        };
        let initramfs_name = EntryName::new("initramfs.img")?;
        let initramfs_from = match (kdir.entries.get(&initramfs_name), initramfs) {
            (Some(Ent::File(_)), _) => format!("/{kdir_path}/initramfs.img"),
            (Some(_), _) => {
                return Err(Error::BootableShape {
                    path: format!("/{kdir_path}/initramfs.img"),
                    expected: "a regular file",
                    found: "a directory".into(),
                })
            }
            (None, Some((id, from))) => {
                kdir.entries.insert(initramfs_name, Ent::File(id));
                from
            }
            (None, None) => {
                return Err(Error::NoInitramfs {
                    kver,
                    kernel: kernel_from,
                })
            }
        };
        for (name, id) in extras {
            if let Some(id) = id {
                kdir.entries
                    .entry(EntryName::new(name)?)
                    .or_insert(Ent::File(id));
            }
        }
        // The other kernels: their boot files go, their modules stay.
        let mut dropped = Vec::new();
        for other in kvers.keys().filter(|k| **k != kver) {
            if let Some(d) = self
                .root
                .dir_mut(&self.objs, &format!("{modules_path}/{other}"))?
            {
                for n in ["vmlinuz", "initramfs.img"] {
                    d.entries.remove(&EntryName::new(n)?);
                }
            }
            dropped.push(other.clone());
        }
        let used: [String; 5] = [
            format!("vmlinuz-{kver}"),
            format!("initrd.img-{kver}"),
            format!("initramfs-{kver}.img"),
            format!("config-{kver}"),
            format!("System.map-{kver}"),
        ];
        for (name, ent) in &boot {
            if !used.iter().any(|u| u == name.as_str()) {
                let slash = if matches!(ent, Ent::File(_)) { "" } else { "/" };
                self.report
                    .boot_dropped
                    .push(format!("/boot/{name}{slash}"));
            }
        }
        for link in ROOT_KERNEL_LINKS {
            if let Kind::File(h) = self.kind(link)? {
                let t = &h.symlink_target;
                if h.is_symlink() && (t.starts_with(b"boot/") || t.starts_with(b"/boot/")) {
                    self.take(link)?;
                    self.report.boot_dropped.push(format!("/{link}"));
                }
            }
        }
        self.report.kver = kver;
        self.report.kernel_from = kernel_from;
        self.report.initramfs_from = initramfs_from;
        self.report.kernels_dropped = dropped;
        Ok(())
    }

    /// `/dev`, `/proc`, `/sys`, `/run`, `/tmp`: there and empty.
    fn api_dirs(&mut self) -> Result<()> {
        for d in API_DIRS {
            let perm = match d {
                "tmp" => 0o1777,
                "proc" | "sys" => 0o555,
                _ => 0o755,
            };
            let dropped = match self.ensure_dir(d, perm)? {
                Some(dir) => std::mem::take(&mut dir.entries),
                None => BTreeMap::new(),
            };
            self.report.api_entries_dropped += count(&self.objs, dropped.values())?;
        }
        Ok(())
    }

    /// The directory `path`, added (empty, with `perm`) if missing; `None` when added.
    fn ensure_dir(&mut self, path: &str, perm: u32) -> Result<Option<&mut Dir>> {
        match self.kind(path)? {
            Kind::Dir => self.root.dir_mut(&self.objs, path),
            Kind::File(h) => Err(shape(&format!("/{path}"), "a directory", &h)),
            Kind::Missing => {
                let meta = if perm == 0o755 {
                    self.dir_meta
                } else {
                    self.new_meta(perm)?
                };
                self.root
                    .put(&self.objs, path, Ent::Dir(Dir::empty(meta)), self.dir_meta)?;
                self.report.created.push(format!("/{path}"));
                Ok(None)
            }
        }
    }

    /// `/var` and the writable directories into the factory, the tmpfiles.d lines for
    /// them, the symlinks.
    fn seed(&mut self) -> Result<()> {
        for p in [
            format!("{FACTORY}/var"),
            format!("{FACTORY}/run"),
            TMPFILES_CONF.to_owned(),
        ] {
            if !matches!(self.kind(&p)?, Kind::Missing) {
                return Err(Error::SeedConflict {
                    path: format!("/{p}"),
                    reason: "exists already (was the tree converted before?)",
                });
            }
        }
        let mut lines = Vec::new();
        let mut var_content = None;
        match self.kind("var")? {
            Kind::File(h) => return Err(shape("/var", "a directory", &h)),
            Kind::Missing => {
                self.ensure_dir("var", 0o755)?;
            }
            Kind::Dir => {
                if let Some(var) = self.root.dir_mut(&self.objs, "var")? {
                    let mut content = Dir::empty(var.meta);
                    content.entries = std::mem::take(&mut var.entries);
                    for n in VAR_RUNTIME {
                        content.entries.remove(&EntryName::new(n)?);
                    }
                    var_content = Some(content);
                }
            }
        }
        let mut linked = Vec::new();
        for (path, target, seeded) in LINKED {
            let mut ent = match self.kind(path)? {
                Kind::Dir => self.take(path)?,
                Kind::File(h) if h.is_symlink() => {
                    if h.symlink_target == target.as_bytes() {
                        Ent::Dir(Dir::empty(self.default_meta_for(seeded)?))
                    } else {
                        // A symlink of the builder's own: theirs to keep.
                        continue;
                    }
                }
                Kind::File(h) => return Err(shape(&format!("/{path}"), "a directory", &h)),
                Kind::Missing => Ent::Dir(Dir::empty(self.default_meta_for(seeded)?)),
            };
            // Debian has an empty /var/opt beside /opt: one of the two may have content.
            if let (Some(rest), Some(var)) = (seeded.strip_prefix("var/"), var_content.as_mut()) {
                if let Some(existing) = var.entries.remove(&EntryName::new(rest)?) {
                    if is_empty_dir(&self.objs, &ent)? {
                        ent = existing;
                    } else if !is_empty_dir(&self.objs, &existing)? {
                        return Err(Error::SeedConflict {
                            path: format!("/{path}"),
                            reason: "has content, and so has the directory of /var it moves \
                                     to: merge them in the tree first",
                        });
                    }
                }
            }
            linked.push((path, target, seeded, ent));
        }
        if let Some(content) = var_content {
            let ent = Ent::Dir(content);
            seed_lines(&self.objs, &ent, "/var", false, &mut lines)?;
            self.report.var_entries = lines.len() as u64;
            self.root
                .put(&self.objs, &format!("{FACTORY}/var"), ent, self.dir_meta)?;
        }
        for (path, target, seeded, ent) in linked {
            seed_lines(&self.objs, &ent, &format!("/{seeded}"), true, &mut lines)?;
            let at = format!("{FACTORY}/{seeded}");
            if !self.root.put(&self.objs, &at, ent, self.dir_meta)? {
                return Err(Error::SeedConflict {
                    path: format!("/{path}"),
                    reason: "cannot be moved to its seed place",
                });
            }
            if matches!(self.kind(path)?, Kind::Missing) {
                let link = self.symlink(target)?;
                self.root
                    .put(&self.objs, path, Ent::File(link), self.dir_meta)?;
            }
            self.report
                .symlinked
                .push((format!("/{path}"), target.to_owned()));
        }
        lines.sort();
        let mut text = String::from(
            "# Generated by `update commit --bootable`: creates at boot what the device's /var\n\
             # lacks from /usr/share/factory; an existing file is never overwritten.\n",
        );
        for (_, l) in &lines {
            text.push_str(l);
            text.push('\n');
        }
        self.report.tmpfiles_lines = lines.len() as u64;
        let (uid, gid) = self.ctx.opts.owner(0, 0);
        let h = FileHeader::regular(0o644, uid, gid, text.len() as u64, Xattrs::empty())?;
        let id = self.new_file(h, text.as_bytes())?;
        self.root
            .put(&self.objs, TMPFILES_CONF, Ent::File(id), self.dir_meta)?;
        Ok(())
    }

    fn default_meta_for(&mut self, seeded: &str) -> Result<DirMetaId> {
        if seeded == "var/roothome" {
            self.new_meta(0o700)
        } else {
            Ok(self.dir_meta)
        }
    }
}

/// The ids of a directory entry, to compare two trees.
fn ids(e: &Ent) -> Option<(DirTreeId, DirMetaId)> {
    match e {
        Ent::Dir(d) => d.is_lazy(),
        Ent::File(_) => None,
    }
}

/// Whether `e` is a directory with nothing in it.
fn is_empty_dir(objs: &Objects, e: &Ent) -> Result<bool> {
    Ok(match e {
        Ent::File(_) => false,
        Ent::Dir(d) => match d.is_lazy() {
            Some((t, _)) => {
                let t = objs.tree(&t)?;
                t.files.is_empty() && t.dirs.is_empty()
            }
            None => d.entries.is_empty(),
        },
    })
}

/// How many entries are in and below `ents`.
fn count<'a>(objs: &Objects, ents: impl Iterator<Item = &'a Ent>) -> Result<u64> {
    let mut n = 0;
    for e in ents {
        n += 1;
        n += match e {
            Ent::File(_) => 0,
            Ent::Dir(d) => match d.is_lazy() {
                Some((t, _)) => count_tree(objs, &t)?,
                None => count(objs, d.entries.values())?,
            },
        };
    }
    Ok(n)
}

fn count_tree(objs: &Objects, t: &DirTreeId) -> Result<u64> {
    let tree = objs.tree(t)?;
    let mut n = (tree.files.len() + tree.dirs.len()) as u64;
    for (_, t, _) in &tree.dirs {
        n += count_tree(objs, t)?;
    }
    Ok(n)
}

/// The tmpfiles.d lines that create `ent` at `target` and everything below it (without
/// a line for `target` itself unless `with_self`), as (path, line).
fn seed_lines(
    objs: &Objects,
    ent: &Ent,
    target: &str,
    with_self: bool,
    lines: &mut Vec<(String, String)>,
) -> Result<()> {
    let dir_line = |meta: &DirMetaId, lines: &mut Vec<(String, String)>| -> Result<()> {
        if with_self {
            let m = objs.meta(meta)?;
            let line = format!(
                "d {} {:04o} {} {} -",
                tmpfiles_path(target)?,
                m.mode & PERM_MASK,
                m.uid,
                m.gid
            );
            lines.push((target.to_owned(), line));
        }
        Ok(())
    };
    match ent {
        Ent::File(id) => {
            let h = objs.header(id)?;
            let path = tmpfiles_path(target)?;
            let line = match symlink_argument(h) {
                Some(arg) => format!("L {path} - - - - {arg}"),
                None => format!("C {path} - - - -"),
            };
            lines.push((target.to_owned(), line));
        }
        Ent::Dir(d) => match d.is_lazy() {
            Some((t, m)) => {
                dir_line(&m, lines)?;
                let tree = objs.tree(&t)?;
                for (n, id) in &tree.files {
                    seed_lines(objs, &Ent::File(*id), &format!("{target}/{n}"), true, lines)?;
                }
                for (n, t, m) in &tree.dirs {
                    let sub = Ent::Dir(Dir::lazy(*t, *m));
                    seed_lines(objs, &sub, &format!("{target}/{n}"), true, lines)?;
                }
            }
            None => {
                dir_line(&d.meta, lines)?;
                for (n, e) in &d.entries {
                    seed_lines(objs, e, &format!("{target}/{n}"), true, lines)?;
                }
            }
        },
    }
    Ok(())
}

/// A path as a tmpfiles.d field: `%` doubled (specifiers), quoted when it holds a space
/// or a quote or backslash (escaped inside the quotes). Control characters cannot be
/// written at all.
fn tmpfiles_path(path: &str) -> Result<String> {
    if path.chars().any(char::is_control) {
        return Err(Error::UnseedableName {
            path: path.escape_debug().to_string(),
        });
    }
    let plain = path.replace('%', "%%");
    if !path
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return Ok(plain);
    }
    let mut q = String::from("\"");
    for c in plain.chars() {
        if matches!(c, '"' | '\\') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    Ok(q)
}

/// The argument of an `L` line for a symlink whose target tmpfiles reads back as it is
/// (the rest of the line, `%` doubled); `None` for a regular file or a target with
/// spaces at its ends, quotes, backslashes or control characters: those are copied
/// (`C`) from the factory instead.
fn symlink_argument(h: &FileHeader) -> Option<String> {
    if !h.is_symlink() {
        return None;
    }
    let t = std::str::from_utf8(&h.symlink_target).ok()?;
    let plain = t
        .chars()
        .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\'));
    plain.then(|| t.replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::{symlink_argument, tmpfiles_path};
    use crate::object::{FileHeader, Xattrs};

    #[test]
    fn tmpfiles_paths_are_quoted_only_when_needed() {
        assert_eq!(tmpfiles_path("/var/lib/dpkg").unwrap(), "/var/lib/dpkg");
        assert_eq!(tmpfiles_path("/var/50%").unwrap(), "/var/50%%");
        assert_eq!(tmpfiles_path("/var/a b").unwrap(), "\"/var/a b\"");
        assert_eq!(tmpfiles_path("/var/q\"\\").unwrap(), "\"/var/q\\\"\\\\\"");
        assert!(tmpfiles_path("/var/new\nline").is_err());
    }

    #[test]
    fn symlinks_with_awkward_targets_are_copied_not_linked() {
        let link = |t: &str| FileHeader::symlink(t.into(), 0, 0, Xattrs::empty()).unwrap();
        assert_eq!(symlink_argument(&link("../run")).as_deref(), Some("../run"));
        assert_eq!(symlink_argument(&link("a%b")).as_deref(), Some("a%%b"));
        assert_eq!(symlink_argument(&link("a b")), None);
        assert_eq!(symlink_argument(&link("a\\b")), None);
        let file = FileHeader::regular(0o644, 0, 0, 0, Xattrs::empty()).unwrap();
        assert_eq!(symlink_argument(&file), None);
    }
}
