//! Pack files, pack indexes and per-commit chunk indexes: how a published repository
//! holds its objects in a few large static files that devices read by HTTP Range.
//!
//! - A *pack* (`packs/<pack-id>.pack`) is a plain concatenation of blobs: metadata objects
//!   (commit, dirtree, dirmeta) and file headers stored as their canonical bytes, and
//!   content chunks stored as one zstd frame each ([`crate::compress::compress_chunk`]). The
//!   pack id is the BLAKE3 of the whole pack.
//! - A *pack index* (`packs/<pack-id>.idx`, [`PackIndex`]) lists every blob of one pack,
//!   sorted by `(kind, id)`, with its offset and lengths, so a client finds a blob by binary
//!   search and fetches exactly its byte range.
//! - A *chunk index* (`chunks/<commit-id>.cidx`, [`ChunkIndex`]) lists, for one commit,
//!   every reachable file with its header and its chunk list, and every reachable dirtree
//!   and dirmeta, so a client knows exactly which chunks it lacks and how many bytes they
//!   are before it downloads anything.
//!
//! Nothing read from a pack, an index or a chunk index is trusted: [`read_blob`] and
//! [`verify_blob`] check every chunk and metadata object against its id, and
//! [`assemble_file`] checks a file's header and chunks against the file id. The byte
//! layouts are specified in `docs/transport.md`, sections 3 and 4.
//!
//! ```
//! use transport::pack::{BlobKind, PackIndex, PackWriter, PackWriterOptions, read_blob};
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = PackWriter::create(dir.path(), PackWriterOptions::default()).unwrap();
//! let chunk = b"some content".to_vec();
//! let id = store::ObjectId::of(&chunk);
//! assert!(w.add_chunk(&id, &chunk).unwrap());
//! assert!(!w.add_chunk(&id, &chunk).unwrap()); // deduplicated
//! let packs = w.finish().unwrap();
//! let pack = std::fs::read(dir.path().join(packs[0].pack_file_name())).unwrap();
//! let idx = std::fs::read(dir.path().join(packs[0].index_file_name())).unwrap();
//! let idx = PackIndex::decode(&idx).unwrap();
//! let entry = idx.find(BlobKind::Chunk, &id).unwrap();
//! assert_eq!(read_blob(&idx, &pack, entry).unwrap(), chunk);
//! ```

mod build;
mod chunk_index;
mod index;
mod write;

use std::fmt;

pub use build::{build_chunk_index, pack_commit, pack_commit_with, PackOutcome};
pub use chunk_index::{
    assemble_file, max_chunks, ChunkIndex, ChunkRef, FileChunks, CHUNK_INDEX_TAG,
};
pub use index::{
    read_blob, read_blob_from_file, verify_blob, IndexEntry, PackIndex, INDEX_ENTRY_LEN,
    PACK_INDEX_TAG,
};
pub use write::{PackInfo, PackWriter, PackWriterOptions, DEFAULT_PACK_TARGET};

use crate::error::Error;
use store::object::ObjectKind;

/// Most entries in one pack index, and most files or metadata objects in one chunk index.
pub const MAX_ENTRIES: usize = 10_000_000;

/// Largest file header blob (the encoded [`store::object::FileHeader`], xattrs included):
/// 20 MiB, the cap archive-mode objects use too. The largest valid header (a 4095-byte
/// symlink target and 256 xattrs of 64 KiB) is about 16.8 MiB.
pub const MAX_HEADER_LEN: u32 = 20 * 1024 * 1024;

/// What a blob in a pack holds. The numeric value is the `kind` byte of the encodings, and
/// index entries sort by it first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobKind {
    /// A commit object's canonical bytes; id = their BLAKE3.
    Commit = 1,
    /// A dirtree object's canonical bytes; id = their BLAKE3.
    DirTree = 2,
    /// A dirmeta object's canonical bytes; id = their BLAKE3.
    DirMeta = 3,
    /// A file object's encoded header; id = the *file* id (header and content), so it is
    /// verified only when the file is assembled ([`assemble_file`]).
    FileHeader = 4,
    /// One zstd frame of a content chunk; id = BLAKE3 of the uncompressed chunk.
    Chunk = 5,
}

impl BlobKind {
    /// Every kind, in index order.
    pub const ALL: [BlobKind; 5] = [
        BlobKind::Commit,
        BlobKind::DirTree,
        BlobKind::DirMeta,
        BlobKind::FileHeader,
        BlobKind::Chunk,
    ];

    /// The kind byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind of a kind byte, if it is one.
    pub fn from_u8(b: u8) -> Option<Self> {
        BlobKind::ALL.into_iter().find(|k| k.as_u8() == b)
    }

    /// The blob kind holding a metadata object of `kind`; `None` for file objects, which
    /// travel as a header blob plus chunks.
    pub fn of_object(kind: ObjectKind) -> Option<Self> {
        match kind {
            ObjectKind::Commit => Some(BlobKind::Commit),
            ObjectKind::DirTree => Some(BlobKind::DirTree),
            ObjectKind::DirMeta => Some(BlobKind::DirMeta),
            ObjectKind::File => None,
        }
    }

    /// True for the metadata object kinds (stored uncompressed, id = BLAKE3 of the bytes).
    pub const fn is_metadata(self) -> bool {
        matches!(
            self,
            BlobKind::Commit | BlobKind::DirTree | BlobKind::DirMeta
        )
    }

    /// Largest raw (uncompressed) length a blob of this kind may declare.
    pub const fn max_raw_len(self) -> u32 {
        match self {
            BlobKind::Commit | BlobKind::DirTree | BlobKind::DirMeta => {
                store::object::MAX_METADATA_SIZE as u32
            }
            BlobKind::FileHeader => MAX_HEADER_LEN,
            BlobKind::Chunk => crate::chunk::CHUNK_MAX,
        }
    }

    /// Lowercase name, as used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            BlobKind::Commit => "commit",
            BlobKind::DirTree => "dirtree",
            BlobKind::DirMeta => "dirmeta",
            BlobKind::FileHeader => "file header",
            BlobKind::Chunk => "chunk",
        }
    }
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest stored length of a chunk blob: zstd's worst-case bound for [`crate::chunk::CHUNK_MAX`]
/// bytes (incompressible data grows by a few hundred bytes of framing).
pub fn max_chunk_stored_len() -> u32 {
    let bound = zstd::zstd_safe::compress_bound(crate::chunk::CHUNK_MAX as usize);
    u32::try_from(bound).expect("bound of 128 KiB fits in u32")
}

fn stream_err(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Stream { what, source }
}
