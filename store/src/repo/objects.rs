//! Reading objects: where each lives, and reading it back verified.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{Repo, RepoMode};
use crate::error::{Error, IoResultExt, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use crate::object::{
    Commit, DirMeta, DirTree, FileHasher, FileHeader, ObjectKind, Signatures, MAX_METADATA_SIZE,
    PERM_MASK, S_IFLNK, S_IFMT, S_IFREG,
};

/// Largest signature file accepted beside a commit.
pub const MAX_SIGNATURES_FILE: u64 = 64 * 1024;

/// Largest archive-mode file header accepted (xattrs included).
pub const MAX_ARCHIVE_HEADER: usize = 20 * 1024 * 1024;

/// File name extension of an object of `kind` in a repository of `mode`.
pub fn extension(kind: ObjectKind, mode: RepoMode) -> &'static str {
    match (kind, mode) {
        (ObjectKind::File, RepoMode::Bare) => "file",
        (ObjectKind::File, RepoMode::Archive) => "filez",
        (ObjectKind::DirTree, _) => "dirtree",
        (ObjectKind::DirMeta, _) => "dirmeta",
        (ObjectKind::Commit, _) => "commit",
    }
}

/// The fan-out directory (first two hex digits) and file name of an object.
pub fn object_name(kind: ObjectKind, mode: RepoMode, id: &ObjectId) -> (String, String) {
    let hex = id.to_hex();
    (
        hex[..2].to_owned(),
        format!("{}.{}", &hex[2..], extension(kind, mode)),
    )
}

/// `XX/REST.EXT`: an object's path below `objects/`, the same place [`object_name`] names,
/// as one string built without intermediate allocations (it runs once per object on the
/// checkout and commit hot paths).
pub(crate) fn object_rel(kind: ObjectKind, mode: RepoMode, id: &ObjectId) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let ext = extension(kind, mode);
    let mut s = String::with_capacity(2 * 32 + 2 + ext.len());
    for (i, b) in id.as_bytes().iter().enumerate() {
        if i == 1 {
            s.push('/');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s.push('.');
    s.push_str(ext);
    s
}

/// The name of a commit's signature file, beside the commit object.
pub fn signatures_name(id: &CommitId) -> (String, String) {
    let hex = id.0.to_hex();
    (hex[..2].to_owned(), format!("{}.sig", &hex[2..]))
}

/// The content of a file object, as a stream.
pub enum FileContent {
    /// A regular file: read exactly `header.size` bytes.
    Regular(Box<dyn Read + Send>),
    /// A symlink has no content.
    Symlink,
}

impl Repo {
    /// Path of an object relative to the repository root.
    pub fn object_path(&self, kind: ObjectKind, id: &ObjectId) -> PathBuf {
        let (dir, name) = object_name(kind, self.mode(), id);
        PathBuf::from("objects").join(dir).join(name)
    }

    fn full_object_path(&self, kind: ObjectKind, id: &ObjectId) -> PathBuf {
        self.path().join(self.object_path(kind, id))
    }

    /// Open a fan-out directory of `objects/`, if it exists.
    pub(crate) fn fanout_dir(&self, prefix: &str) -> Result<Option<OwnedFd>> {
        match crate::durable::open_dir_at(self.objects_dir(), prefix) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e).at_path(self.path().join("objects").join(prefix)),
        }
    }

    /// Whether the object is present.
    pub fn has_object(&self, kind: ObjectKind, id: &ObjectId) -> Result<bool> {
        let rel = object_rel(kind, self.mode(), id);
        match rustix::fs::statat(self.objects_dir(), rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e).at_path(self.full_object_path(kind, id)),
        }
    }

    /// Read a metadata object's bytes, checking their size cap and that they hash to `id`.
    pub fn read_metadata_bytes(&self, kind: ObjectKind, id: &ObjectId) -> Result<Vec<u8>> {
        debug_assert_ne!(kind, ObjectKind::File);
        let path = self.full_object_path(kind, id);
        let rel = object_rel(kind, self.mode(), id);
        let fd = match rustix::fs::openat(
            self.objects_dir(),
            rel.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(Error::MissingObject { kind, id: *id }),
            Err(e) => return Err(e).at_path(&path),
        };
        let bytes = read_capped(File::from(fd), MAX_METADATA_SIZE).at_path(&path)?;
        let Some(bytes) = bytes else {
            return Err(Error::Corrupt {
                kind,
                id: *id,
                reason: format!("larger than the {MAX_METADATA_SIZE}-byte metadata cap"),
            });
        };
        if ObjectId::of(&bytes) != *id {
            return Err(Error::Corrupt {
                kind,
                id: *id,
                reason: "content does not hash to its id".into(),
            });
        }
        Ok(bytes)
    }

    fn decode_meta<T>(
        &self,
        kind: ObjectKind,
        id: &ObjectId,
        decode: fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let bytes = self.read_metadata_bytes(kind, id)?;
        decode(&bytes).map_err(|e| Error::Corrupt {
            kind,
            id: *id,
            reason: e.to_string(),
        })
    }

    /// Read and verify a commit.
    pub fn read_commit(&self, id: &CommitId) -> Result<Commit> {
        self.decode_meta(ObjectKind::Commit, &id.0, Commit::decode)
    }

    /// Read and verify a dirtree.
    pub fn read_dirtree(&self, id: &DirTreeId) -> Result<DirTree> {
        self.decode_meta(ObjectKind::DirTree, &id.0, DirTree::decode)
    }

    /// Read and verify a dirmeta.
    pub fn read_dirmeta(&self, id: &DirMetaId) -> Result<DirMeta> {
        self.decode_meta(ObjectKind::DirMeta, &id.0, DirMeta::decode)
    }

    /// The signatures stored beside a commit (empty when it has none).
    pub fn read_signatures(&self, id: &CommitId) -> Result<Signatures> {
        let (dir, name) = signatures_name(id);
        let rel = format!("{dir}/{name}");
        let path = self.path().join("objects").join(&rel);
        let fd = match rustix::fs::openat(
            self.objects_dir(),
            rel.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Signatures::default()),
            Err(e) => return Err(e).at_path(&path),
        };
        let bytes = read_capped(File::from(fd), MAX_SIGNATURES_FILE)
            .at_path(&path)?
            .ok_or(Error::SignaturesTooLarge {
                path,
                limit: MAX_SIGNATURES_FILE,
            })?;
        Signatures::decode(&bytes)
    }

    /// Replace the signatures stored beside a commit, atomically and durably.
    pub fn write_signatures(&self, id: &CommitId, sigs: &Signatures) -> Result<()> {
        sigs.validate()?;
        let (dir, name) = signatures_name(id);
        let shown = self.path().join("objects").join(&dir).join(&name);
        let fd = crate::durable::mkdir_all_at(self.objects_dir(), dir.as_ref(), &shown)?;
        crate::durable::write_atomic(fd.as_fd(), &name, &sigs.encode(), 0o644, &shown)
    }

    /// Open a file object: its header and a stream of its content. The content is not
    /// verified here; use [`Repo::verify_file`] for that.
    pub fn read_file(&self, id: &FileId) -> Result<(FileHeader, FileContent)> {
        let kind = ObjectKind::File;
        let path = self.full_object_path(kind, &id.0);
        let rel = object_rel(kind, self.mode(), &id.0);
        let missing = |e: Errno| match e {
            Errno::NOENT => Error::MissingObject { kind, id: id.0 },
            e => Error::Io {
                path: path.clone(),
                source: e.into(),
            },
        };
        match self.mode() {
            RepoMode::Bare => {
                let st =
                    rustix::fs::statat(self.objects_dir(), rel.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(missing)?;
                if st.st_mode & S_IFMT == S_IFLNK {
                    let target =
                        rustix::fs::readlinkat(self.objects_dir(), rel.as_str(), Vec::new())
                            .at_path(&path)?;
                    let xattrs = crate::xattrs::of_link(&path).at_path(&path)?;
                    let header =
                        FileHeader::symlink(target.into_bytes(), st.st_uid, st.st_gid, xattrs)
                            .map_err(|e| corrupt(id, e))?;
                    return Ok((header, FileContent::Symlink));
                }
                let (fd, st) = self.open_regular(&rel, id, missing)?;
                let xattrs = crate::xattrs::of_fd(fd.as_fd()).at_path(&path)?;
                let header = FileHeader::regular(
                    st.st_mode & PERM_MASK,
                    st.st_uid,
                    st.st_gid,
                    st.st_size as u64,
                    xattrs,
                )
                .map_err(|e| corrupt(id, e))?;
                let size = header.size;
                Ok((
                    header,
                    FileContent::Regular(Box::new(ExactReader::new(File::from(fd), size))),
                ))
            }
            RepoMode::Archive => {
                let (fd, _) = self.open_regular(&rel, id, missing)?;
                let mut f = io::BufReader::with_capacity(128 * 1024, File::from(fd));
                let mut len = [0u8; 4];
                f.read_exact(&mut len).map_err(|e| corrupt_io(id, e))?;
                let len = u32::from_le_bytes(len) as usize;
                if len > MAX_ARCHIVE_HEADER {
                    return Err(corrupt(id, Error::invalid("archive header", "too large")));
                }
                let mut hbuf = vec![0u8; len];
                f.read_exact(&mut hbuf).map_err(|e| corrupt_io(id, e))?;
                let header = FileHeader::decode(&hbuf).map_err(|e| corrupt(id, e))?;
                if header.is_symlink() {
                    return Ok((header, FileContent::Symlink));
                }
                let size = header.size;
                let dec = zstd::stream::read::Decoder::with_buffer(f).at_path(&path)?;
                // The declared size bounds how much is ever decompressed (zstd bombs stop
                // here); anything after it is refused.
                Ok((
                    header,
                    FileContent::Regular(Box::new(ExactReader::new(dec, size))),
                ))
            }
        }
    }

    /// Open a file object's file, which must be a regular file. Opened without following
    /// a symlink and without blocking, so a FIFO swapped in by damage cannot hang us.
    fn open_regular(
        &self,
        rel: &str,
        id: &FileId,
        missing: impl Fn(Errno) -> Error,
    ) -> Result<(OwnedFd, rustix::fs::Stat)> {
        let fd = rustix::fs::openat(
            self.objects_dir(),
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(&missing)?;
        let st = rustix::fs::fstat(&fd).map_err(missing)?;
        if st.st_mode & S_IFMT != S_IFREG {
            return Err(corrupt(
                id,
                Error::invalid("object file", "not a regular file"),
            ));
        }
        Ok((fd, st))
    }

    /// Re-read a file object in full and check that it hashes to its id and has exactly
    /// the declared size.
    pub fn verify_file(&self, id: &FileId) -> Result<FileHeader> {
        self.copy_file_verified(id, &mut io::sink(), Path::new("/dev/null"))
    }

    /// Stream a file object's content into `to` while hashing it; fails with
    /// [`Error::Corrupt`] if it does not hash to its id or differs from the declared size.
    /// The bytes written are exactly the bytes hashed: a caller that discards `to` on an
    /// error never keeps unverified content. A symlink writes nothing. `to_shown` names
    /// `to` in a write error.
    pub fn copy_file_verified(
        &self,
        id: &FileId,
        to: &mut dyn Write,
        to_shown: &Path,
    ) -> Result<FileHeader> {
        let (header, content) = self.read_file(id)?;
        let mut h = FileHasher::new(&header);
        if let FileContent::Regular(mut r) = content {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = r.read(&mut buf).map_err(|e| corrupt_io(id, e))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                h.update(&buf[..n]);
                to.write_all(&buf[..n]).at_path(to_shown)?;
            }
            if total != header.size {
                return Err(corrupt(
                    id,
                    Error::invalid(
                        "content",
                        format!("{total} bytes, header says {}", header.size),
                    ),
                ));
            }
        }
        if h.finish() != *id {
            return Err(Error::Corrupt {
                kind: ObjectKind::File,
                id: id.0,
                reason: "content does not hash to its id".into(),
            });
        }
        Ok(header)
    }

    /// Every object id of `kind` present, in no particular order.
    pub fn list_objects(&self, kind: ObjectKind) -> Result<Vec<ObjectId>> {
        let ext = format!(".{}", extension(kind, self.mode()));
        let mut out = Vec::new();
        for b in 0..=255u8 {
            let prefix = format!("{b:02x}");
            let Some(fd) = self.fanout_dir(&prefix)? else {
                continue;
            };
            let shown = self.path().join("objects").join(&prefix);
            for entry in rustix::fs::Dir::read_from(&fd).at_path(&shown)? {
                let entry = entry.at_path(&shown)?;
                let name = entry.file_name().to_string_lossy();
                if let Some(rest) = name.strip_suffix(&ext) {
                    if let Ok(id) = format!("{prefix}{rest}").parse::<ObjectId>() {
                        out.push(id);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Yields exactly `left` bytes of `inner`, then refuses trailing data instead of EOF.
struct ExactReader<R> {
    inner: R,
    left: u64,
    checked: bool,
}

impl<R: Read> ExactReader<R> {
    fn new(inner: R, size: u64) -> Self {
        ExactReader {
            inner,
            left: size,
            checked: false,
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            if !self.checked {
                self.checked = true;
                if self.inner.read(&mut [0u8; 1])? != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "content is longer than its header says",
                    ));
                }
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn corrupt(id: &FileId, e: Error) -> Error {
    Error::Corrupt {
        kind: ObjectKind::File,
        id: id.0,
        reason: e.to_string(),
    }
}

fn corrupt_io(id: &FileId, e: io::Error) -> Error {
    Error::Corrupt {
        kind: ObjectKind::File,
        id: id.0,
        reason: format!("reading: {e}"),
    }
}

/// Read a whole file unless it is larger than `cap` (then `None`).
fn read_capped(f: File, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

#[cfg(test)]
mod tests {
    use super::{object_name, object_rel};
    use crate::id::ObjectId;
    use crate::object::ObjectKind;
    use crate::repo::RepoMode;

    #[test]
    fn object_rel_matches_object_name() {
        let id = ObjectId::of(b"x");
        for kind in ObjectKind::ALL {
            for mode in [RepoMode::Bare, RepoMode::Archive] {
                let (dir, name) = object_name(kind, mode, &id);
                assert_eq!(object_rel(kind, mode, &id), format!("{dir}/{name}"));
            }
        }
    }
}
