//! Writing objects. A [`Transaction`] stages new objects in its own directory under
//! `tmp/` without per-object fsync; [`Transaction::commit`] makes them durable with one
//! `syncfs`, renames them into `objects/`, and fsyncs the fan-out directories. Only after
//! that may a ref name them. Dropping a transaction without committing removes its staging
//! directory. Many threads may write through one transaction at once.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::objects::object_name;
use super::{Repo, RepoLock, RepoMode};
use crate::durable;
use crate::error::{IoResultExt, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use crate::object::{Commit, DirMeta, DirTree, FileHasher, FileHeader, ObjectKind, Signatures};

const TXN_PREFIX: &str = "txn-";
const TXN_LOCK: &str = "lock";
const COPY_BUF: usize = 256 * 1024;

/// A batch of objects being added to a repository.
#[must_use = "a transaction is rolled back unless commit() is called"]
pub struct Transaction<'r> {
    repo: &'r Repo,
    name: String,
    staging: OwnedFd,
    _txn_lock: OwnedFd,
    _repo_lock: RepoLock,
    /// Objects written here, by the temp file holding each.
    staged: Mutex<HashMap<(ObjectKind, ObjectId), String>>,
    signatures: Mutex<Vec<(CommitId, Signatures)>>,
    counter: std::sync::atomic::AtomicU64,
    committed: bool,
}

impl Repo {
    /// Start adding objects. Holds the repository lock shared until the transaction ends,
    /// and clears out staging directories left by crashed writers.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        let repo_lock = self.lock_shared()?;
        let tmp_path = self.path().join("tmp");
        let tmp = durable::mkdir_all_at(self.dir(), "tmp".as_ref(), &tmp_path)?;
        self.clean_stale_staging(&tmp)?;
        let name = durable::temp_name(TXN_PREFIX);
        let shown = tmp_path.join(&name);
        rustix::fs::mkdirat(&tmp, name.as_str(), Mode::from_raw_mode(0o700)).at_path(&shown)?;
        let staging = durable::open_dir_at(tmp.as_fd(), &name).at_path(&shown)?;
        let lock = rustix::fs::openat(
            &staging,
            TXN_LOCK,
            OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .at_path(shown.join(TXN_LOCK))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).at_path(shown.join(TXN_LOCK))?;
        Ok(Transaction {
            repo: self,
            name,
            staging,
            _txn_lock: lock,
            _repo_lock: repo_lock,
            staged: Mutex::new(HashMap::new()),
            signatures: Mutex::new(Vec::new()),
            counter: std::sync::atomic::AtomicU64::new(0),
            committed: false,
        })
    }

    /// Remove staging directories whose writer is gone (their lock file is not held).
    fn clean_stale_staging(&self, tmp: &OwnedFd) -> Result<()> {
        let shown = self.path().join("tmp");
        for entry in rustix::fs::Dir::read_from(tmp).at_path(&shown)? {
            let entry = entry.at_path(&shown)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TXN_PREFIX) {
                continue;
            }
            let lock_rel = format!("{name}/{TXN_LOCK}");
            let stale = match rustix::fs::openat(
                tmp,
                lock_rel.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok(),
                // A writer creates its lock right after its directory; an hour without one
                // means it died in between.
                Err(Errno::NOENT) => {
                    rustix::fs::statat(tmp, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| now_secs().saturating_sub(st.st_mtime as u64) > 3600)
                        .unwrap_or(false)
                }
                Err(_) => false,
            };
            if stale {
                durable::remove_tree_at(tmp.as_fd(), &name).at_path(shown.join(&name))?;
            }
        }
        Ok(())
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Transaction<'_> {
    /// The repository being written.
    pub fn repo(&self) -> &Repo {
        self.repo
    }

    fn staging_path(&self) -> PathBuf {
        self.repo.path().join("tmp").join(&self.name)
    }

    /// How many objects this transaction has added that the repository lacked.
    pub fn new_objects(&self) -> usize {
        self.staged.lock().expect("poisoned").len()
    }

    /// A commit staged by this transaction or already in the repository, checked against
    /// its id.
    pub fn read_commit(&self, id: &CommitId) -> Result<Commit> {
        let staged = self
            .staged
            .lock()
            .expect("poisoned")
            .get(&(ObjectKind::Commit, id.0))
            .cloned();
        let Some(tmp) = staged else {
            return self.repo.read_commit(id);
        };
        let path = self.staging_path().join(&tmp);
        let bytes = durable::read_at(self.staging.as_fd(), tmp.as_str()).at_path(&path)?;
        if ObjectId::of(&bytes) != id.0 {
            return Err(crate::Error::Corrupt {
                kind: ObjectKind::Commit,
                id: id.0,
                reason: "staged bytes do not hash to its id".into(),
            });
        }
        Commit::decode(&bytes)
    }

    /// Whether an object is already in the repository or staged here.
    pub fn has_object(&self, kind: ObjectKind, id: &ObjectId) -> Result<bool> {
        if self
            .staged
            .lock()
            .expect("poisoned")
            .contains_key(&(kind, *id))
        {
            return Ok(true);
        }
        self.repo.has_object(kind, id)
    }

    /// Keep a finished temp file as the object's content, or drop it if the object
    /// exists already. It keeps its temp name until [`Transaction::commit`] renames it
    /// into `objects/`: one rename per object.
    fn stage(&self, tmp: &str, kind: ObjectKind, id: ObjectId) -> Result<()> {
        let present = self.repo.has_object(kind, &id)?;
        let newly = !present && {
            let mut staged = self.staged.lock().expect("poisoned");
            match staged.entry((kind, id)) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(tmp.to_owned());
                    true
                }
            }
        };
        if !newly {
            rustix::fs::unlinkat(&self.staging, tmp, AtFlags::empty())
                .at_path(self.staging_path().join(tmp))?;
        }
        Ok(())
    }

    /// The staging directory is this transaction's own: a counter names temp files.
    fn temp_name(&self) -> String {
        format!(
            "w{}",
            self.counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }

    fn create_temp(&self, mode: u32) -> Result<(String, File)> {
        let tmp = self.temp_name();
        let fd = rustix::fs::openat(
            &self.staging,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .at_path(self.staging_path().join(&tmp))?;
        Ok((tmp, File::from(fd)))
    }

    fn write_metadata(&self, kind: ObjectKind, bytes: &[u8]) -> Result<ObjectId> {
        if bytes.len() as u64 > crate::object::MAX_METADATA_SIZE {
            return Err(crate::Error::invalid(
                kind.name(),
                format!(
                    "encodes to {} bytes, over the {}-byte metadata cap",
                    bytes.len(),
                    crate::object::MAX_METADATA_SIZE
                ),
            ));
        }
        let id = ObjectId::of(bytes);
        if self.has_object(kind, &id)? {
            return Ok(id);
        }
        let (tmp, mut f) = self.create_temp(0o644)?;
        f.write_all(bytes).at_path(self.staging_path().join(&tmp))?;
        drop(f);
        self.stage(&tmp, kind, id)?;
        Ok(id)
    }

    /// Add a dirtree.
    pub fn write_dirtree(&self, tree: &DirTree) -> Result<DirTreeId> {
        tree.validate()?;
        self.write_metadata(ObjectKind::DirTree, &tree.encode())
            .map(DirTreeId)
    }

    /// Add a dirmeta.
    pub fn write_dirmeta(&self, meta: &DirMeta) -> Result<DirMetaId> {
        meta.validate()?;
        self.write_metadata(ObjectKind::DirMeta, &meta.encode())
            .map(DirMetaId)
    }

    /// Add a commit.
    pub fn write_commit(&self, commit: &Commit) -> Result<CommitId> {
        commit.validate()?;
        self.write_metadata(ObjectKind::Commit, &commit.encode())
            .map(CommitId)
    }

    /// Attach signatures to a commit of this transaction. They are written after the
    /// objects are durable and before any ref moves, so a branch never names a commit
    /// whose signatures are still to come.
    pub fn write_signatures(&self, commit: &CommitId, sigs: Signatures) -> Result<()> {
        sigs.validate()?;
        self.signatures
            .lock()
            .expect("poisoned")
            .push((*commit, sigs));
        Ok(())
    }

    /// Add a file object, reading its content from `content` exactly once: it is hashed
    /// and stored (bare: copied; archive: zstd-compressed) in the same pass. Exactly
    /// `header.size` bytes must come out of `content`; a source that is shorter or longer
    /// (a file changed while being committed) is refused.
    pub fn write_file(&self, header: &FileHeader, content: &mut dyn Read) -> Result<FileId> {
        header.validate()?;
        if header.is_symlink() {
            return self.write_symlink(header);
        }
        let mut hasher = FileHasher::new(header);
        let mode = self.repo.mode();
        let (tmp, file) = self.create_temp(0o600)?;
        let shown = self.staging_path().join(&tmp);
        let result = (|| -> Result<File> {
            match mode {
                RepoMode::Bare => {
                    let mut file = file;
                    copy_exact(content, header.size, &mut hasher, &mut file).at_path(&shown)?;
                    Ok(file)
                }
                RepoMode::Archive => {
                    let hbytes = header.encode();
                    let mut out = io::BufWriter::with_capacity(COPY_BUF, file);
                    out.write_all(&u32::try_from(hbytes.len()).expect("bounded").to_le_bytes())
                        .at_path(&shown)?;
                    out.write_all(&hbytes).at_path(&shown)?;
                    let level = self.repo.config().core.compression_level;
                    with_cctx(level, |cctx| {
                        let mut enc = zstd::stream::write::Encoder::with_context(out, cctx);
                        enc.set_pledged_src_size(Some(header.size))?;
                        copy_exact(content, header.size, &mut hasher, &mut enc)?;
                        enc.finish()?.into_inner().map_err(|e| e.into_error())
                    })
                    .at_path(&shown)
                }
            }
        })();
        let file = match result {
            Ok(f) => f,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.staging, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
        };
        let id = hasher.finish();
        if mode == RepoMode::Bare {
            apply_metadata(&file, header).at_path(&shown)?;
        }
        drop(file);
        self.stage(&tmp, ObjectKind::File, id.0)?;
        Ok(id)
    }

    fn write_symlink(&self, header: &FileHeader) -> Result<FileId> {
        let id = FileHasher::new(header).finish();
        if self.has_object(ObjectKind::File, &id.0)? {
            return Ok(id);
        }
        let tmp = self.temp_name();
        let shown = self.staging_path().join(&tmp);
        match self.repo.mode() {
            RepoMode::Bare => {
                rustix::fs::symlinkat(
                    header.symlink_target.as_slice(),
                    &self.staging,
                    tmp.as_str(),
                )
                .at_path(&shown)?;
                let owner = (header.uid, header.gid);
                if owner
                    != (
                        rustix::process::geteuid().as_raw(),
                        rustix::process::getegid().as_raw(),
                    )
                {
                    rustix::fs::chownat(
                        &self.staging,
                        tmp.as_str(),
                        Some(rustix::fs::Uid::from_raw(header.uid)),
                        Some(rustix::fs::Gid::from_raw(header.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .at_path(&shown)?;
                }
                for (name, value) in header.xattrs.iter() {
                    rustix::fs::lsetxattr(&shown, name, value, rustix::fs::XattrFlags::empty())
                        .at_path(&shown)?;
                }
            }
            RepoMode::Archive => {
                let (t, mut f) = self.create_temp(0o644)?;
                let shown = self.staging_path().join(&t);
                let hbytes = header.encode();
                f.write_all(&u32::try_from(hbytes.len()).expect("bounded").to_le_bytes())
                    .at_path(&shown)?;
                f.write_all(&hbytes).at_path(&shown)?;
                drop(f);
                self.stage(&t, ObjectKind::File, id.0)?;
                return Ok(id);
            }
        }
        self.stage(&tmp, ObjectKind::File, id.0)?;
        Ok(id)
    }

    /// Make every staged object durable and visible in `objects/`. Refs may name them
    /// afterwards; to name one without a prune slipping in between, use
    /// [`Transaction::commit_and_set_ref`].
    pub fn commit(mut self) -> Result<()> {
        self.publish(true)
    }

    /// Like [`Transaction::commit`], but without fsyncing the fan-out directories: the
    /// objects are durable and visible, while their directory entries become durable with
    /// the next `syncfs` of the filesystem ([`Repo::sync`], or any later commit that stages
    /// something). For objects no ref names yet, written in many batches (a pull): a power
    /// cut may then lose some of them, never leave one half-written, and the fsync of every
    /// touched fan-out per batch (hundreds of directory fsyncs) is paid once instead. Call
    /// [`Repo::sync`] before a ref names them.
    pub fn commit_unsynced(mut self) -> Result<()> {
        self.publish(false)
    }

    /// Publish the staged objects, then point `name` at `commit`, all under the
    /// repository's shared lock, so a concurrent prune (which takes it exclusive) sees
    /// either neither or both.
    pub fn commit_and_set_ref(mut self, name: &super::RefName, commit: &CommitId) -> Result<()> {
        self.publish(true)?;
        self.repo.write_ref(name, commit)
    }

    /// Like [`Transaction::commit_and_set_ref`], for a remote's ref (`update pull`).
    pub fn commit_and_set_remote_ref(
        mut self,
        remote: &str,
        name: &super::RefName,
        commit: &CommitId,
    ) -> Result<()> {
        self.publish(true)?;
        self.repo.write_remote_ref(remote, name, commit)
    }

    fn publish(&mut self, sync_dirs: bool) -> Result<()> {
        let staged = std::mem::take(&mut *self.staged.lock().expect("poisoned"));
        if !staged.is_empty() {
            // One syncfs makes all staged content durable before any becomes visible.
            let started = std::time::Instant::now();
            rustix::fs::syncfs(&self.staging).at_path(self.staging_path())?;
            tracing::debug!(
                objects = staged.len(),
                ms = started.elapsed().as_millis() as u64,
                "commit: syncfs of the staged objects"
            );
            let mode = self.repo.mode();
            let mut touched = BTreeSet::new();
            let mut fanouts: HashMap<String, OwnedFd> = HashMap::new();
            for ((kind, id), src) in &staged {
                let (dir, name) = object_name(*kind, mode, id);
                if !fanouts.contains_key(&dir) {
                    let shown = self.repo.path().join("objects").join(&dir);
                    let fd = durable::mkdir_all_at(self.repo.objects_dir(), dir.as_ref(), &shown)?;
                    fanouts.insert(dir.clone(), fd);
                }
                let dst = &fanouts[&dir];
                tracing::trace!(object = %src, to = %format_args!("objects/{dir}/{name}"), "rename");
                match rustix::fs::renameat_with(
                    &self.staging,
                    src.as_str(),
                    dst,
                    name.as_str(),
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    // Added meanwhile by another writer: same id, same content.
                    Err(Errno::EXIST) => {
                        let _ = rustix::fs::unlinkat(&self.staging, src.as_str(), AtFlags::empty());
                    }
                    Err(e) => {
                        return Err(e)
                            .at_path(self.repo.path().join("objects").join(&dir).join(&name))
                    }
                }
                touched.insert(dir);
            }
            if sync_dirs {
                let started = std::time::Instant::now();
                for dir in &touched {
                    rustix::fs::fsync(&fanouts[dir])
                        .at_path(self.repo.path().join("objects").join(dir))?;
                }
                rustix::fs::fsync(self.repo.objects_dir())
                    .at_path(self.repo.path().join("objects"))?;
                tracing::debug!(
                    directories = touched.len() + 1,
                    ms = started.elapsed().as_millis() as u64,
                    "commit: fsync of the object directories"
                );
            }
        }
        for (commit, sigs) in std::mem::take(&mut *self.signatures.lock().expect("poisoned")) {
            // Keep signatures an identical, earlier commit already has.
            let mut all = self.repo.read_signatures(&commit)?;
            for entry in sigs.0 {
                all.insert(entry);
            }
            self.repo.write_signatures(&commit, &all)?;
        }
        self.committed = true;
        self.remove_staging();
        Ok(())
    }

    fn remove_staging(&self) {
        if let Ok(tmp) = durable::open_dir_at(self.repo.dir(), "tmp") {
            let _ = durable::remove_tree_at(tmp.as_fd(), &self.name);
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.remove_staging();
        }
    }
}

thread_local! {
    /// One compression context per thread, reused for every file: a fresh context per
    /// file costs megabytes of newly zeroed memory, which dominated commit time.
    static CCTX: std::cell::RefCell<Option<(i32, zstd::zstd_safe::CCtx<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's zstd context set to `level` (no content checksum: the
/// BLAKE3 id covers the content).
fn with_cctx<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::zstd_safe::CCtx<'static>) -> io::Result<T>,
) -> io::Result<T> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut cctx = zstd::zstd_safe::CCtx::create();
            let set = |c: &mut zstd::zstd_safe::CCtx<'static>, p| {
                c.set_parameter(p)
                    .map(drop)
                    .map_err(|code| io::Error::other(zstd::zstd_safe::get_error_name(code)))
            };
            set(
                &mut cctx,
                zstd::zstd_safe::CParameter::CompressionLevel(level),
            )?;
            set(&mut cctx, zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
            *slot = Some((level, cctx));
        }
        let (_, cctx) = slot.as_mut().expect("set above");
        f(cctx)
    })
}

/// Copy exactly `size` bytes from `src` to `dst`, hashing them; refuse a source that
/// ends early or has more.
fn copy_exact(
    src: &mut dyn Read,
    size: u64,
    hasher: &mut FileHasher,
    dst: &mut dyn Write,
) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUF.min(size as usize + 1).max(1)];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("source ended {left} bytes early (file changed while being read?)"),
            ));
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    if src.read(&mut buf[..1])? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "source has more than the {size} bytes expected (file changed while being read?)"
            ),
        ));
    }
    Ok(())
}

/// Give a bare object its final owner, mode and xattrs. The owner goes first: chown
/// clears setuid/setgid bits.
fn apply_metadata(file: &File, header: &FileHeader) -> io::Result<()> {
    let fd = file.as_fd();
    let st = rustix::fs::fstat(fd)?;
    if (st.st_uid, st.st_gid) != (header.uid, header.gid) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(header.uid)),
            Some(rustix::fs::Gid::from_raw(header.gid)),
        )?;
    }
    for (name, value) in header.xattrs.iter() {
        let name = std::ffi::CString::new(name).expect("validated: no NUL");
        rustix::fs::fsetxattr(fd, &name, value, rustix::fs::XattrFlags::empty())?;
    }
    rustix::fs::fchmod(
        fd,
        Mode::from_raw_mode(header.mode & crate::object::PERM_MASK),
    )?;
    Ok(())
}
