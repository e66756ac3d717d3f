//! The pack index (`UPIX`): where each blob of one pack is, and reading a blob back
//! verified. Decoding is strict: an index that is not the one canonical encoding of a
//! well-formed table is refused before anything in it is used.

use std::os::unix::fs::FileExt;

use super::{max_chunk_stored_len, BlobKind, MAX_ENTRIES};
use crate::compress::decompress_chunk;
use crate::error::{Error, Result};
use store::id::{ObjectId, ID_LEN};
use store::object::{Decoder, Encoder, FileHeader};

/// Tag opening a pack index.
pub const PACK_INDEX_TAG: &[u8; 4] = b"UPIX";

/// Encoded length of one index entry: kind, id, offset, stored length, raw length.
pub const INDEX_ENTRY_LEN: usize = 1 + ID_LEN + 8 + 4 + 4;

/// One blob of a pack.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IndexEntry {
    /// What the blob holds.
    pub kind: BlobKind,
    /// Its id: BLAKE3 of the raw bytes, except for a file header, whose id is the file's.
    pub id: ObjectId,
    /// Where it starts in the pack.
    pub offset: u64,
    /// How many bytes it takes in the pack.
    pub stored_len: u32,
    /// Its length once decompressed (equal to `stored_len` for all but chunks).
    pub raw_len: u32,
}

impl IndexEntry {
    /// The byte range it occupies in the pack, for an HTTP Range request (end exclusive).
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.stored_len)
    }
}

/// The index of one pack: its id, its size, and every blob sorted by `(kind, id)`.
///
/// Invariants (checked by [`PackIndex::new`] and [`PackIndex::decode`]): at most
/// [`MAX_ENTRIES`] entries, strictly sorted by `(kind, id)`; each entry's lengths within
/// its kind's caps; and the blobs, taken in offset order, tile the pack exactly: the first
/// starts at 0, each starts where the previous ends, the last ends at the pack size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PackIndex {
    pack_id: ObjectId,
    pack_size: u64,
    entries: Vec<IndexEntry>,
}

impl PackIndex {
    /// Build an index from entries in any order, refusing duplicates and any entry that
    /// breaks the invariants.
    pub fn new(pack_id: ObjectId, pack_size: u64, mut entries: Vec<IndexEntry>) -> Result<Self> {
        entries.sort_by_key(|e| (e.kind, e.id));
        validate(pack_size, &entries).map_err(|r| Error::invalid("pack index", r))?;
        Ok(PackIndex {
            pack_id,
            pack_size,
            entries,
        })
    }

    /// The id of the pack this indexes (BLAKE3 of the pack file).
    pub fn pack_id(&self) -> &ObjectId {
        &self.pack_id
    }

    /// The pack's size in bytes.
    pub fn pack_size(&self) -> u64 {
        self.pack_size
    }

    /// The entries, sorted by `(kind, id)`.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The entry of a blob, by binary search.
    pub fn find(&self, kind: BlobKind, id: &ObjectId) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| (e.kind, &e.id).cmp(&(kind, id)))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The canonical encoding (`docs/transport.md`, section 3.2).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(PACK_INDEX_TAG);
        e.raw(self.pack_id.as_bytes());
        e.u64(self.pack_size);
        e.count(self.entries.len());
        for x in &self.entries {
            e.u8(x.kind.as_u8());
            e.raw(x.id.as_bytes());
            e.u64(x.offset);
            e.u32(x.stored_len);
            e.u32(x.raw_len);
        }
        e.finish()
    }

    /// Decode an index, refusing anything but the canonical encoding of a valid index.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "pack index");
        d.tag(PACK_INDEX_TAG)?;
        let pack_id = d.id()?;
        let pack_size = d.u64()?;
        let n = d.count(MAX_ENTRIES, INDEX_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let k = d.u8()?;
            let kind = BlobKind::from_u8(k).ok_or_else(|| {
                Error::decode("pack index", format!("entry {i}: unknown kind {k}"))
            })?;
            entries.push(IndexEntry {
                kind,
                id: d.id()?,
                offset: d.u64()?,
                stored_len: d.u32()?,
                raw_len: d.u32()?,
            });
        }
        d.finish()?;
        validate(pack_size, &entries).map_err(|r| Error::decode("pack index", r))?;
        Ok(PackIndex {
            pack_id,
            pack_size,
            entries,
        })
    }
}

/// Check the invariants of [`PackIndex`]; the reason names the first broken rule.
fn validate(pack_size: u64, entries: &[IndexEntry]) -> Result<(), String> {
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} entries exceed the limit of {MAX_ENTRIES}",
            entries.len()
        ));
    }
    let max_chunk_stored = max_chunk_stored_len();
    for (i, e) in entries.iter().enumerate() {
        let what = format!("entry {i} ({} {})", e.kind, e.id);
        if i > 0 {
            let prev = &entries[i - 1];
            match (prev.kind, prev.id).cmp(&(e.kind, e.id)) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(format!("{what}: duplicate entry")),
                std::cmp::Ordering::Greater => {
                    return Err(format!("{what}: entries not sorted by (kind, id)"))
                }
            }
        }
        if e.stored_len == 0 || e.raw_len == 0 {
            return Err(format!("{what}: empty blob"));
        }
        if e.raw_len > e.kind.max_raw_len() {
            return Err(format!(
                "{what}: raw length {} exceeds the {} limit of {}",
                e.raw_len,
                e.kind,
                e.kind.max_raw_len()
            ));
        }
        if e.kind == BlobKind::Chunk {
            if e.stored_len > max_chunk_stored {
                return Err(format!(
                    "{what}: stored length {} exceeds the compressed chunk limit of {max_chunk_stored}",
                    e.stored_len
                ));
            }
        } else if e.stored_len != e.raw_len {
            return Err(format!(
                "{what}: stored length {} differs from raw length {} of an uncompressed blob",
                e.stored_len, e.raw_len
            ));
        }
        match e.offset.checked_add(u64::from(e.stored_len)) {
            Some(end) if end <= pack_size => {}
            _ => {
                return Err(format!(
                    "{what}: bytes {}+{} extend past the end of the {pack_size}-byte pack",
                    e.offset, e.stored_len
                ))
            }
        }
    }
    let mut by_offset: Vec<&IndexEntry> = entries.iter().collect();
    by_offset.sort_by_key(|e| e.offset);
    let mut end = 0u64;
    for e in by_offset {
        if e.offset < end {
            return Err(format!(
                "{} {} at offset {} overlaps the blob before it (which ends at {end})",
                e.kind, e.id, e.offset
            ));
        }
        if e.offset > end {
            return Err(format!(
                "gap in the pack: bytes {end}..{} belong to no blob",
                e.offset
            ));
        }
        end = e.offset + u64::from(e.stored_len);
    }
    if end != pack_size {
        return Err(format!(
            "gap in the pack: bytes {end}..{pack_size} belong to no blob"
        ));
    }
    Ok(())
}

/// Read the blob `entry` from a whole pack held in memory and verify it ([`verify_blob`]).
pub fn read_blob(index: &PackIndex, pack: &[u8], entry: &IndexEntry) -> Result<Vec<u8>> {
    let r = entry.range();
    let stored = usize::try_from(r.start)
        .ok()
        .zip(usize::try_from(r.end).ok())
        .and_then(|(s, e)| pack.get(s..e))
        .ok_or_else(|| {
            bad(
                index,
                entry,
                format!("pack holds only {} bytes", pack.len()),
            )
        })?;
    verify_blob(index, entry, stored)
}

/// Read the blob `entry` from an open pack file (positioned reads) and verify it.
pub fn read_blob_from_file(
    index: &PackIndex,
    pack: &std::fs::File,
    entry: &IndexEntry,
) -> Result<Vec<u8>> {
    let mut stored = vec![0u8; entry.stored_len as usize];
    pack.read_exact_at(&mut stored, entry.offset)
        .map_err(super::stream_err("reading a blob from a pack"))?;
    verify_blob(index, entry, &stored)
}

/// Check the stored bytes of a blob (as fetched by a Range request) against its entry and
/// return its raw bytes: a chunk is decompressed (window, length and trailing-byte caps of
/// [`decompress_chunk`]) and must hash to its id; a metadata object must hash to its id; a
/// file header must decode as a canonical header (its id is checked by [`super::assemble_file`]).
pub fn verify_blob(index: &PackIndex, entry: &IndexEntry, stored: &[u8]) -> Result<Vec<u8>> {
    if stored.len() != entry.stored_len as usize {
        return Err(bad(
            index,
            entry,
            format!(
                "got {} bytes, the index says {}",
                stored.len(),
                entry.stored_len
            ),
        ));
    }
    let raw = match entry.kind {
        BlobKind::Chunk => decompress_chunk(stored, u64::from(entry.raw_len))
            .map_err(|e| bad(index, entry, e.to_string()))?,
        _ => stored.to_vec(),
    };
    match entry.kind {
        BlobKind::FileHeader => {
            let h = FileHeader::decode(&raw).map_err(|e| bad(index, entry, e.to_string()))?;
            if h.encode() != raw {
                return Err(bad(index, entry, "file header is not canonical".into()));
            }
        }
        _ => {
            if ObjectId::of(&raw) != entry.id {
                return Err(bad(index, entry, "bytes do not hash to its id".into()));
            }
        }
    }
    Ok(raw)
}

fn bad(index: &PackIndex, entry: &IndexEntry, reason: String) -> Error {
    Error::BadBlob {
        pack: index.pack_id,
        kind: entry.kind,
        id: entry.id,
        reason,
    }
}
