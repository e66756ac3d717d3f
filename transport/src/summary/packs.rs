//! The pack list of a summary: each pack a client may need, pinned by hash and size
//! together with its index.

use store::id::ObjectId;

/// One published pack and its index (`packs/<id>.pack`, `packs/<id>.idx`), both pinned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PackEntry {
    /// BLAKE3 of the pack file (its file name).
    pub id: ObjectId,
    /// The pack's size in bytes.
    pub size: u64,
    /// BLAKE3 of the index file.
    pub index_id: ObjectId,
    /// The index's size in bytes.
    pub index_size: u64,
}
