//! The per-commit chunk index (`UCIX`): every file reachable from a commit with its header
//! and chunk list, and every reachable dirtree and dirmeta. With it and the pack indexes a
//! client computes exactly which blobs it lacks and how many bytes they are.

use std::collections::BTreeMap;
use std::io::Write;

use super::{BlobKind, MAX_ENTRIES, MAX_HEADER_LEN};
use crate::chunk::{CHUNK_MAX, CHUNK_MIN};
use crate::error::{Error, Result};
use store::id::{CommitId, FileId, ObjectId, ID_LEN};
use store::object::{Decoder, Encoder, FileHeader, ObjectKind};

/// Tag opening a chunk index.
pub const CHUNK_INDEX_TAG: &[u8; 4] = b"UCIX";

/// Shortest encoded file header: tag, version, mode, uid, gid, size, empty symlink target,
/// no xattrs.
const MIN_HEADER_LEN: usize = 4 + 1 + 4 + 4 + 4 + 8 + 4 + 4;

/// One chunk of a file's content, in order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub id: ObjectId,
    /// Its length: 1..=[`CHUNK_MAX`], at least [`CHUNK_MIN`] unless it is the file's last.
    pub len: u32,
}

/// One file object reachable from the commit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileChunks {
    /// The file object's id: BLAKE3(header || content).
    pub id: FileId,
    /// Its encoded header (canonical [`FileHeader`] bytes); its `size` is the content size.
    pub header: Vec<u8>,
    /// Its content's chunks, in order; their lengths add up to the content size.
    pub chunks: Vec<ChunkRef>,
}

impl FileChunks {
    /// The decoded header.
    pub fn decode_header(&self) -> Result<FileHeader> {
        Ok(FileHeader::decode(&self.header)?)
    }
}

/// Most chunks a file of `size` content bytes can have: `ceil(size / CHUNK_MIN)`. Every
/// chunk but the last is at least [`CHUNK_MIN`] bytes and the last at least one, so `n`
/// chunks hold at least `(n - 1) * CHUNK_MIN + 1` bytes. Empty content has no chunk.
pub fn max_chunks(size: u64) -> u64 {
    size.div_ceil(u64::from(CHUNK_MIN))
}

/// The chunk index of one commit.
///
/// Invariants (checked by [`ChunkIndex::validate`] and [`ChunkIndex::decode`]): `metadata`
/// holds only dirtree and dirmeta entries, strictly sorted by `(kind, id)`; `files` is
/// strictly sorted by id; each header is a canonical [`FileHeader`]; a symlink has no
/// chunks; a regular file's chunk lengths are 1..=[`CHUNK_MAX`], all but the last at least
/// [`CHUNK_MIN`], and add up to the header's size; at most [`MAX_ENTRIES`] of each list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChunkIndex {
    /// The commit described.
    pub commit: CommitId,
    /// Every dirtree and dirmeta reachable from the commit.
    pub metadata: Vec<(BlobKind, ObjectId)>,
    /// Every file object reachable from the commit.
    pub files: Vec<FileChunks>,
}

impl ChunkIndex {
    /// Check the invariants.
    pub fn validate(&self) -> Result<()> {
        validate(self).map_err(|r| Error::invalid("chunk index", r))
    }

    /// The entry of a file, by binary search.
    pub fn find(&self, file: &FileId) -> Option<&FileChunks> {
        self.files
            .binary_search_by(|f| f.id.cmp(file))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Every distinct chunk of the commit with its length, sorted by id.
    pub fn chunks(&self) -> BTreeMap<ObjectId, u32> {
        self.files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| (c.id, c.len)))
            .collect()
    }

    /// The distinct chunks for which `have` says false, sorted by id: what a client must
    /// fetch.
    pub fn missing_chunks(&self, have: &dyn Fn(&ObjectId) -> bool) -> Vec<ChunkRef> {
        self.chunks()
            .into_iter()
            .filter(|(id, _)| !have(id))
            .map(|(id, len)| ChunkRef { id, len })
            .collect()
    }

    /// The canonical encoding (`docs/transport.md`, section 4.2).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(CHUNK_INDEX_TAG);
        e.raw(self.commit.0.as_bytes());
        e.count(self.metadata.len());
        for (kind, id) in &self.metadata {
            e.u8(kind.as_u8());
            e.raw(id.as_bytes());
        }
        e.count(self.files.len());
        for f in &self.files {
            e.raw(f.id.0.as_bytes());
            e.bytes(&f.header);
            e.count(f.chunks.len());
            for c in &f.chunks {
                e.raw(c.id.as_bytes());
                e.u32(c.len);
            }
        }
        e.finish()
    }

    /// Decode a chunk index, refusing anything but the canonical encoding of a valid one.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "chunk index");
        d.tag(CHUNK_INDEX_TAG)?;
        let commit = CommitId(d.id()?);
        let nmeta = d.count(MAX_ENTRIES, 1 + ID_LEN)?;
        let mut metadata = Vec::with_capacity(nmeta);
        for i in 0..nmeta {
            let k = d.u8()?;
            let kind = match BlobKind::from_u8(k) {
                Some(kind @ (BlobKind::DirTree | BlobKind::DirMeta)) => kind,
                _ => {
                    return Err(Error::decode(
                        "chunk index",
                        format!("metadata entry {i}: kind {k} is not a dirtree or dirmeta"),
                    ))
                }
            };
            metadata.push((kind, d.id()?));
        }
        let nfiles = d.count(MAX_ENTRIES, ID_LEN + 4 + MIN_HEADER_LEN + 4)?;
        let mut files = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            let id = FileId(d.id()?);
            let header = d.bytes(MAX_HEADER_LEN as usize)?.to_vec();
            let size = FileHeader::decode(&header)
                .map_err(|e| Error::decode("chunk index", format!("file {id}: {e}")))?
                .size;
            let limit = usize::try_from(max_chunks(size)).unwrap_or(usize::MAX);
            let n = d.count(limit, ID_LEN + 4)?;
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                chunks.push(ChunkRef {
                    id: d.id()?,
                    len: d.u32()?,
                });
            }
            files.push(FileChunks { id, header, chunks });
        }
        d.finish()?;
        let ci = ChunkIndex {
            commit,
            metadata,
            files,
        };
        validate(&ci).map_err(|r| Error::decode("chunk index", r))?;
        Ok(ci)
    }
}

fn validate(ci: &ChunkIndex) -> Result<(), String> {
    if ci.metadata.len() > MAX_ENTRIES || ci.files.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    for (i, (kind, id)) in ci.metadata.iter().enumerate() {
        if !matches!(kind, BlobKind::DirTree | BlobKind::DirMeta) {
            return Err(format!(
                "metadata entry {kind} {id} is not a dirtree or dirmeta"
            ));
        }
        if i > 0 && ci.metadata[i - 1] >= (*kind, *id) {
            return Err(format!(
                "metadata entry {kind} {id}: entries not sorted by (kind, id) or duplicate"
            ));
        }
    }
    for (i, f) in ci.files.iter().enumerate() {
        let id = f.id;
        if i > 0 && ci.files[i - 1].id >= id {
            return Err(format!("file {id}: files not sorted by id or duplicate"));
        }
        if f.header.len() > MAX_HEADER_LEN as usize {
            return Err(format!(
                "file {id}: header longer than {MAX_HEADER_LEN} bytes"
            ));
        }
        let h = FileHeader::decode(&f.header).map_err(|e| format!("file {id}: {e}"))?;
        if h.encode() != f.header {
            return Err(format!("file {id}: header is not canonical"));
        }
        if f.chunks.len() as u64 > max_chunks(h.size) {
            return Err(format!(
                "file {id}: {} chunks for {} bytes (at most {})",
                f.chunks.len(),
                h.size,
                max_chunks(h.size)
            ));
        }
        let mut total = 0u64;
        for (j, c) in f.chunks.iter().enumerate() {
            let last = j + 1 == f.chunks.len();
            if c.len == 0 || c.len > CHUNK_MAX || (!last && c.len < CHUNK_MIN) {
                return Err(format!(
                    "file {id}: chunk {j} of {} bytes (chunks are 1..={CHUNK_MAX} bytes, \
                     at least {CHUNK_MIN} but for the last)",
                    c.len
                ));
            }
            total += u64::from(c.len);
        }
        if total != h.size {
            return Err(format!(
                "file {id}: chunks add up to {total} bytes, its header says {}",
                h.size
            ));
        }
    }
    Ok(())
}

/// Reassemble a file object from its encoded header and its chunks' raw bytes, in order:
/// write the content to `out` while hashing, and check that the size is the header's and
/// that BLAKE3(header || content) is `id`. Returns the decoded header.
///
/// `out` receives content before the check ends: write to a temporary file and publish it
/// only when this returns `Ok`. A chunk stream longer than the header's size is refused as
/// soon as it overflows.
pub fn assemble_file<I>(
    id: &FileId,
    header: &[u8],
    chunks: I,
    out: &mut dyn Write,
) -> Result<FileHeader>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let corrupt = |reason: String| {
        Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason,
        })
    };
    let h = FileHeader::decode(header).map_err(|e| corrupt(e.to_string()))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(header);
    let mut total = 0u64;
    for c in chunks {
        let c = c.as_ref();
        total = total.saturating_add(c.len() as u64);
        if total > h.size {
            return Err(corrupt(format!(
                "chunks hold more than the {} bytes its header declares",
                h.size
            )));
        }
        hasher.update(c);
        out.write_all(c)
            .map_err(super::stream_err("writing assembled content"))?;
    }
    if total != h.size {
        return Err(corrupt(format!(
            "chunks hold {total} bytes, its header declares {}",
            h.size
        )));
    }
    if ObjectId::from(hasher.finalize()) != id.0 {
        return Err(corrupt(
            "header and chunks do not hash to the file id".into(),
        ));
    }
    Ok(h)
}
