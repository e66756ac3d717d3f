//! Content-defined chunking of file *content* for transport.
//!
//! A big file travels as chunks cut by FastCDC (the 2020 variant, normalization level 1,
//! gear seed 0, as implemented by the `fastcdc` crate's `v2020` module), so that a device
//! holding an older version of the file fetches only the chunks it lacks: an edit moves
//! at most the chunk boundaries near it. Only the content is chunked, never the file
//! object's header; a file's id stays BLAKE3(header || whole content) however the content
//! was cut (`docs/format.md`, section 5).
//!
//! The boundaries are part of the format: the same bytes must cut at the same offsets in
//! every build, or devices would re-download what they hold. [`CHUNK_MIN`], [`CHUNK_AVG`]
//! and [`CHUNK_MAX`] are pinned by a golden vector in `transport/tests/chunk_delta.rs`.
//!
//! [`chunk_reader`] streams: it holds at most [`CHUNK_MAX`] bytes of input at a time (plus
//! the chunk it hands out), whatever the file's size. [`chunk_bytes`] cuts a buffer already
//! in memory and gives the same chunks.

use std::io::Read;

use fastcdc::v2020::{FastCDC, StreamCDC};

use crate::error::{Error, Result};
use store::id::ObjectId;

/// The smallest chunk FastCDC cuts (except the last chunk of a file). Content no longer
/// than this is one chunk.
///
/// The three sizes were chosen with `cargo run --release -p update-store --example
/// chunk_params` on the 790 MB rootfs-like bench tree (`/var/tmp/update-bench/tree-full`,
/// 13 926 files) against a deterministic "v2" of it. See [`CHUNK_AVG`] for the numbers.
pub const CHUNK_MIN: u32 = 8 * 1024;

/// The average chunk size FastCDC aims for.
///
/// Measured with `cargo run --release -p update-store --example chunk_params` (zstd level 3
/// on each fetched chunk) on `tree-full` (790 MB, 13 926 files) against a v2 in which one
/// file in eight got a small insertion, a 64-byte overwrite and a 32-byte tail:
///
/// | min/avg/max KiB | chunks in v2 | mean size | chunks v1 lacks | their bytes, raw | zstd | chunk index (44 B/chunk) |
/// | --- | --- | --- | --- | --- | --- | --- |
/// | **8/32/128** | 37 702 | 29 114 | 2 227 | 38.0 MB | **12.96 MB** | 1.66 MB |
/// | 16/64/256 | 25 664 | 42 770 | 2 046 | 46.7 MB | 15.78 MB | 1.13 MB |
/// | 32/128/512 | 19 707 | 55 699 | 1 931 | 56.4 MB | 19.04 MB | 0.87 MB |
/// | 64/256/1024 | 16 815 | 65 278 | 1 835 | 62.7 MB | 21.13 MB | 0.74 MB |
///
/// 8/32/128 fetches the fewest bytes even counting a whole chunk index (14.6 MB against
/// 16.9 MB for casync's default 16/64/256), with only 9 % more chunks to request (ranges are
/// coalesced, so requests do not grow with them) and no loss of compression ratio (34 % of
/// raw for every candidate). Its index is 0.2 % of the tree. Edits in real package
/// upgrades touch more of each file, which narrows the gap but does not reverse it.
pub const CHUNK_AVG: u32 = 32 * 1024;

/// The largest chunk FastCDC cuts: no chunk is longer, so a reader never needs more than
/// this in memory to find a boundary.
pub const CHUNK_MAX: u32 = 128 * 1024;

/// One chunk of a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Where the chunk starts in the content.
    pub offset: u64,
    /// Its length in bytes: at least 1, at most [`CHUNK_MAX`].
    pub len: u32,
    /// BLAKE3 of the chunk's bytes.
    pub id: ObjectId,
}

/// Chunk size parameters. The format uses [`ChunkParams::FORMAT`]; other values exist to
/// measure alternatives (`examples/chunk_params.rs`), never to write a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    /// Smallest chunk (except a file's last).
    pub min: u32,
    /// Average chunk size aimed for.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkParams {
    /// The parameters of the format: [`CHUNK_MIN`], [`CHUNK_AVG`], [`CHUNK_MAX`].
    pub const FORMAT: ChunkParams = ChunkParams {
        min: CHUNK_MIN,
        avg: CHUNK_AVG,
        max: CHUNK_MAX,
    };

    /// Refuse sizes FastCDC v2020 does not accept (it only checks them in debug builds).
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && [min, avg, max].iter().all(|v| v % 2 == 0);
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("chunk sizes {min}/{avg}/{max}"),
                "FastCDC v2020 needs even sizes with 64 <= min <= avg <= max, \
                 avg in 256..=4 MiB, max in 1 KiB..=16 MiB",
            ))
        }
    }
}

/// Cut `r`'s bytes into chunks with the format's parameters, streaming: yields each chunk
/// with its bytes, in order. Empty content gives no chunks. A read error ends the
/// iteration after it is yielded.
pub fn chunk_reader<R: Read>(r: R) -> impl Iterator<Item = Result<(Chunk, Vec<u8>)>> {
    chunk_reader_with(ChunkParams::FORMAT, r)
}

/// [`chunk_reader`] with other parameters, for measurements.
///
/// # Panics
/// If `params` fails [`ChunkParams::validate`].
pub fn chunk_reader_with<R: Read>(
    params: ChunkParams,
    r: R,
) -> impl Iterator<Item = Result<(Chunk, Vec<u8>)>> {
    params.validate().expect("valid chunk parameters");
    let mut inner = StreamCDC::new(
        r,
        params.min as usize,
        params.avg as usize,
        params.max as usize,
    );
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        match inner.next()? {
            Ok(c) => {
                let chunk = Chunk {
                    offset: c.offset,
                    len: u32::try_from(c.length).expect("a chunk is at most CHUNK_MAX"),
                    id: ObjectId::of(&c.data),
                };
                Some(Ok((chunk, c.data)))
            }
            Err(e) => {
                failed = true;
                Some(Err(Error::Stream {
                    what: "reading content to chunk",
                    source: e.into(),
                }))
            }
        }
    })
}

/// Cut a buffer into chunks with the format's parameters: the same chunks
/// [`chunk_reader`] gives for the same bytes.
pub fn chunk_bytes(data: &[u8]) -> Vec<Chunk> {
    chunk_bytes_with(ChunkParams::FORMAT, data)
}

/// [`chunk_bytes`] with other parameters, for measurements.
///
/// # Panics
/// If `params` fails [`ChunkParams::validate`].
pub fn chunk_bytes_with(params: ChunkParams, data: &[u8]) -> Vec<Chunk> {
    params.validate().expect("valid chunk parameters");
    FastCDC::new(
        data,
        params.min as usize,
        params.avg as usize,
        params.max as usize,
    )
    .map(|c| {
        let bytes = &data[c.offset..c.offset + c.length];
        Chunk {
            offset: c.offset as u64,
            len: u32::try_from(c.length).expect("a chunk is at most CHUNK_MAX"),
            id: ObjectId::of(bytes),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::{chunk_bytes, ChunkParams, CHUNK_MIN};
    use store::id::ObjectId;

    #[test]
    fn small_content_is_one_chunk_and_empty_is_none() {
        assert!(chunk_bytes(&[]).is_empty());
        let data = vec![7u8; CHUNK_MIN as usize];
        let chunks = chunk_bytes(&data);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len, CHUNK_MIN);
        assert_eq!(chunks[0].id, ObjectId::of(&data));
    }

    #[test]
    fn format_params_are_valid() {
        ChunkParams::FORMAT.validate().unwrap();
        assert!(ChunkParams {
            min: 3,
            avg: 8,
            max: 16
        }
        .validate()
        .is_err());
    }
}
