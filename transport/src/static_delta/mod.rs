//! Static deltas: one file that turns a commit a device has into the next one
//! (`docs/transport.md`, section 5).
//!
//! A static delta `from → to` carries every metadata object reachable from `to` and not
//! from `from`, then every new file object: when `from` holds a similar file, compressed
//! with zstd against that file as reference (patch-from, see [`crate::compress`]), else as
//! it is. All these records go in one more zstd frame, which compresses the files sent as
//! they are in one window, and what lies between the file frames (dirtrees, headers,
//! lengths) by about half. [`write_static_delta`] makes one from a repository holding both
//! commits; [`apply_static_delta`] reads one into a [`store::Transaction`] of a repository
//! holding `from`, checking every object against its id before it is staged and, at the
//! end, that `to` is complete.
//!
//! ```no_run
//! # fn main() -> transport::Result<()> {
//! use transport::static_delta::{apply_static_delta, write_static_delta, StaticDeltaOptions};
//! let publisher = store::Repo::open("repo")?;
//! let to = publisher.resolve_rev("os/stable")?;
//! let from = publisher.read_commit(&to)?.parent.expect("a parent");
//! let mut delta = Vec::new();
//! write_static_delta(&publisher, &from, &to, &mut delta, &StaticDeltaOptions::default())?;
//!
//! let device = store::Repo::open("device-repo")?;
//! let txn = device.begin()?;
//! apply_static_delta(&txn, &mut &delta[..], &from, &to)?;
//! txn.commit()?;
//! # Ok(()) }
//! ```
//!
//! The file format is strict and streamable: a reader never needs to seek, checks every
//! length against its cap before reading the bytes it announces, and allocates only as
//! bytes actually arrive, so a truncated or hostile delta ends in a clear error.

mod apply;
mod base;
mod frame;
mod write;

use std::io::{self, Write};

pub use apply::{apply_static_delta, ApplyStats};
pub use write::{write_static_delta, StaticDeltaOptions, StaticDeltaStats};

use store::id::ObjectId;

/// The tag a static delta file starts with.
pub const DELTA_TAG: &[u8; 4] = b"UDLT";
/// The format version this build writes: 3, the records inside one zstd frame, where a
/// file without a base is sent raw. It also reads versions 2 and 1.
pub const DELTA_VERSION: u8 = 3;
/// Version 2, still read: the records inside one zstd frame, every file with content in
/// a zstd frame of its own.
pub const DELTA_VERSION_FRAMED: u8 = 2;
/// The first format version, still read: the records follow the header uncompressed.
pub const DELTA_VERSION_PLAIN: u8 = 1;
/// zstd level of the frame around the records. It compresses the raw files, which share
/// its window, and the metadata, headers and lengths between the file frames, which pass
/// through it almost unchanged; on the transport bench's hop (30 MB of raw files, 25 MB
/// of frames) it costs about a second.
pub const RECORDS_LEVEL: i32 = 9;
/// Largest window log of the frame around the records (2 MiB): what a reader holds for it.
pub const RECORDS_WINDOW_LOG: u32 = 21;
/// File name extension of a static delta in a published directory (`deltas/<id>.delta`).
pub const DELTA_EXTENSION: &str = "delta";
/// Directory of a published repository holding the static deltas.
pub const DELTAS_DIR: &str = "deltas";
/// Largest file content a static delta carries: 64 GiB. Larger files are refused by the
/// writer and by the reader (before any of the content is decoded).
pub const MAX_DELTA_FILE_SIZE: u64 = 1 << 36;

/// Record kinds (the first byte of every record).
pub(crate) mod record {
    /// The end record: counts, then the end of the file.
    pub const END: u8 = 0;
    /// A commit (the same kind bytes as pack blobs, `docs/transport.md` 3.1).
    pub const COMMIT: u8 = 1;
    /// A dirtree.
    pub const DIRTREE: u8 = 2;
    /// A dirmeta.
    pub const DIRMETA: u8 = 3;
    /// A file object.
    pub const FILE: u8 = 4;

    /// A file record without content: a symlink or an empty regular file.
    pub const CONTENT_NONE: u8 = 0;
    /// A file record whose content is one plain zstd frame.
    pub const CONTENT_ZSTD: u8 = 1;
    /// A file record whose content is one zstd frame against a base file of `from`.
    pub const CONTENT_PATCH: u8 = 2;
    /// A file record whose content follows as it is, `size` bytes, compressed only by the
    /// frame around the records (version 3).
    pub const CONTENT_RAW: u8 = 3;
}

/// Most compressed bytes a file record may announce for content of `size` bytes: zstd's
/// worst case (`size + size / 256` plus headers) with room to spare. Checked before the
/// frame is read.
pub fn max_frame_len(size: u64) -> u64 {
    size.saturating_add(size / 128).saturating_add(4096)
}

/// A writer that counts and hashes what passes through it: the delta's size and id.
pub(crate) struct HashingWriter<'w> {
    inner: &'w mut dyn Write,
    hasher: blake3::Hasher,
    len: u64,
}

impl<'w> HashingWriter<'w> {
    pub(crate) fn new(inner: &'w mut dyn Write) -> Self {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// Bytes written so far and their BLAKE3.
    pub(crate) fn finish(&self) -> (u64, ObjectId) {
        (self.len, ObjectId::from(self.hasher.finalize()))
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
