//! Writing packs: append blobs, deduplicated by `(kind, id)`, roll over to a new pack at a
//! target size, and publish each pack and its index durably.
//!
//! A pack is streamed to a temporary file in the output directory while it is hashed; when
//! it is complete it is fsynced and renamed to `<pack-id>.pack`, then its index is written
//! with the atomic-publish primitive (temp file, fsync, rename, fsync the directory), so an
//! index never names a pack that is not durably there. A writer dropped before
//! [`PackWriter::finish`] removes its temporary file; packs already rolled over stay (they
//! are complete and named by their hash, so a later run reuses or ignores them).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::index::{IndexEntry, PackIndex};
use super::{stream_err, BlobKind};
use crate::chunk::CHUNK_MAX;
use crate::compress::compress_chunk;
use crate::error::{Error, Result};
use store::durable;
use store::id::{FileId, ObjectId};
use store::object::{FileHeader, ObjectKind};
use store::IoResultExt;

/// Default size at which a pack is closed and a new one started: 64 MiB.
pub const DEFAULT_PACK_TARGET: u64 = 64 * 1024 * 1024;

/// How a [`PackWriter`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackWriterOptions {
    /// Close a pack once adding the next blob would take it past this many bytes (a single
    /// blob larger than this still gets a pack of its own).
    pub target_size: u64,
    /// zstd level for chunks.
    pub level: i32,
}

impl Default for PackWriterOptions {
    fn default() -> Self {
        PackWriterOptions {
            target_size: DEFAULT_PACK_TARGET,
            level: 9,
        }
    }
}

/// A pack that was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackInfo {
    /// BLAKE3 of the pack file.
    pub id: ObjectId,
    /// Its size in bytes.
    pub size: u64,
    /// How many blobs it holds.
    pub blobs: usize,
}

impl PackInfo {
    /// `<pack-id>.pack`.
    pub fn pack_file_name(&self) -> String {
        format!("{}.pack", self.id)
    }

    /// `<pack-id>.idx`.
    pub fn index_file_name(&self) -> String {
        format!("{}.idx", self.id)
    }
}

struct OpenPack {
    tmp: String,
    file: BufWriter<File>,
    hasher: blake3::Hasher,
    size: u64,
    entries: Vec<IndexEntry>,
}

/// Appends blobs to packs in one directory. See the module documentation.
#[must_use = "a pack writer publishes nothing until finish() is called"]
pub struct PackWriter {
    dir: OwnedFd,
    path: PathBuf,
    opts: PackWriterOptions,
    seen: HashSet<(BlobKind, ObjectId)>,
    cur: Option<OpenPack>,
    done: Vec<PackInfo>,
}

impl PackWriter {
    /// Write packs into the existing directory `dir`.
    pub fn create(dir: &Path, opts: PackWriterOptions) -> Result<Self> {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at_path(dir)?;
        Ok(Self::in_dir(fd, dir.to_path_buf(), opts))
    }

    /// Write packs into an open directory; `path` is used in messages.
    pub fn in_dir(dir: OwnedFd, path: PathBuf, opts: PackWriterOptions) -> Self {
        PackWriter {
            dir,
            path,
            opts,
            seen: HashSet::new(),
            cur: None,
            done: Vec::new(),
        }
    }

    /// True if this writer already holds the blob.
    pub fn contains(&self, kind: BlobKind, id: &ObjectId) -> bool {
        self.seen.contains(&(kind, *id))
    }

    /// Add a content chunk (its raw bytes; it is compressed here). Returns false if the
    /// writer already had it.
    pub fn add_chunk(&mut self, id: &ObjectId, raw: &[u8]) -> Result<bool> {
        if self.contains(BlobKind::Chunk, id) {
            return Ok(false);
        }
        if raw.is_empty() || raw.len() > CHUNK_MAX as usize {
            return Err(Error::invalid(
                format!("chunk {id}"),
                format!("{} bytes is not 1..={CHUNK_MAX}", raw.len()),
            ));
        }
        check_id(BlobKind::Chunk, id, raw)?;
        let stored = compress_chunk(raw, self.opts.level);
        self.add_blob(BlobKind::Chunk, id, &stored, raw.len() as u32)
    }

    /// Add a metadata object (commit, dirtree or dirmeta) by its canonical bytes.
    pub fn add_metadata(&mut self, kind: ObjectKind, id: &ObjectId, bytes: &[u8]) -> Result<bool> {
        let blob = BlobKind::of_object(kind).ok_or_else(|| {
            Error::invalid(
                format!("{kind} object {id}"),
                "a file travels as a header and chunks, not as a metadata blob",
            )
        })?;
        if self.contains(blob, id) {
            return Ok(false);
        }
        check_id(blob, id, bytes)?;
        self.add_uncompressed(blob, id, bytes)
    }

    /// Add a file object's encoded header (refused unless it decodes), named by the file's
    /// id.
    pub fn add_file_header(&mut self, id: &FileId, header: &[u8]) -> Result<bool> {
        if self.contains(BlobKind::FileHeader, &id.0) {
            return Ok(false);
        }
        FileHeader::decode(header)?;
        self.add_uncompressed(BlobKind::FileHeader, &id.0, header)
    }

    fn add_uncompressed(&mut self, kind: BlobKind, id: &ObjectId, bytes: &[u8]) -> Result<bool> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| (1..=kind.max_raw_len()).contains(l))
            .ok_or_else(|| {
                Error::invalid(
                    format!("{kind} {id}"),
                    format!(
                        "{} bytes is not 1..={} bytes",
                        bytes.len(),
                        kind.max_raw_len()
                    ),
                )
            })?;
        self.add_blob(kind, id, bytes, len)
    }

    fn add_blob(
        &mut self,
        kind: BlobKind,
        id: &ObjectId,
        stored: &[u8],
        raw_len: u32,
    ) -> Result<bool> {
        let len = stored.len() as u64;
        if let Some(cur) = &self.cur {
            if !cur.entries.is_empty() && cur.size + len > self.opts.target_size {
                self.close_current()?;
            }
        }
        if self.cur.is_none() {
            self.cur = Some(self.open_pack()?);
        }
        let cur = self.cur.as_mut().expect("opened above");
        cur.file
            .write_all(stored)
            .map_err(stream_err("writing a pack"))?;
        cur.hasher.update(stored);
        cur.entries.push(IndexEntry {
            kind,
            id: *id,
            offset: cur.size,
            stored_len: stored.len() as u32,
            raw_len,
        });
        cur.size += len;
        self.seen.insert((kind, *id));
        Ok(true)
    }

    fn open_pack(&self) -> Result<OpenPack> {
        let tmp = durable::temp_name(".tmp-pack-");
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .at_path(self.path.join(&tmp))?;
        Ok(OpenPack {
            tmp,
            file: BufWriter::with_capacity(1 << 20, File::from(fd)),
            hasher: blake3::Hasher::new(),
            size: 0,
            entries: Vec::new(),
        })
    }

    /// Publish the open pack: fsync, rename to `<id>.pack`, then write `<id>.idx`
    /// atomically (which also fsyncs the directory, making both renames durable).
    fn close_current(&mut self) -> Result<()> {
        let Some(cur) = self.cur.take() else {
            return Ok(());
        };
        let tmp_path = self.path.join(&cur.tmp);
        let result = (|| {
            let file = cur
                .file
                .into_inner()
                .map_err(|e| e.into_error())
                .at_path(&tmp_path)?;
            file.sync_all().at_path(&tmp_path)?;
            let id = ObjectId::from(cur.hasher.finalize());
            let info = PackInfo {
                id,
                size: cur.size,
                blobs: cur.entries.len(),
            };
            let index = PackIndex::new(id, cur.size, cur.entries)?;
            let name = info.pack_file_name();
            rustix::fs::renameat(
                self.dir.as_fd(),
                cur.tmp.as_str(),
                self.dir.as_fd(),
                name.as_str(),
            )
            .at_path(self.path.join(&name))?;
            let idx = info.index_file_name();
            durable::write_atomic(
                self.dir.as_fd(),
                &idx,
                &index.encode(),
                0o644,
                &self.path.join(&idx),
            )?;
            Ok(info)
        })();
        match result {
            Ok(info) => {
                self.done.push(info);
                Ok(())
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(self.dir.as_fd(), cur.tmp.as_str(), AtFlags::empty());
                Err(e)
            }
        }
    }

    /// Publish the last pack and return every pack written, in order.
    pub fn finish(mut self) -> Result<Vec<PackInfo>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        if let Some(cur) = self.cur.take() {
            drop(cur.file);
            let _ = rustix::fs::unlinkat(self.dir.as_fd(), cur.tmp.as_str(), AtFlags::empty());
        }
    }
}

fn check_id(kind: BlobKind, id: &ObjectId, raw: &[u8]) -> Result<()> {
    if ObjectId::of(raw) != *id {
        return Err(Error::invalid(
            format!("{kind} {id}"),
            "bytes do not hash to the id given",
        ));
    }
    Ok(())
}
