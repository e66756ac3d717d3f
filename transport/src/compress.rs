//! zstd compression for transport: single chunks, and deltas of a file against its old
//! version.
//!
//! A *delta* is one zstd frame of the new content compressed with the old content as a
//! reference prefix (`ZSTD_CCtx_refPrefix`, what `zstd --patch-from` does), with
//! long-distance matching on and a window covering old and new together. The frame carries
//! its content size and zstd's content checksum, so applying it to the wrong old version
//! fails at the end of the frame even before the caller checks the file's BLAKE3.
//!
//! **Memory.** Both ends hold the old version in memory for the reference prefix, and the
//! decoder keeps a window of up to [`MAX_DELTA_WINDOW`] (128 MiB). A delta is therefore
//! only made when the old version is at most [`MAX_DELTA_WINDOW`] bytes
//! ([`crate::Error::DeltaTooLarge`] otherwise: send the whole file, chunked): applying a
//! delta costs at most about 2 × 128 MiB plus zstd's small fixed state. Encoding uses a
//! fresh zstd context per delta (a referenced prefix borrows the old bytes for the
//! context's lifetime); its tables are sized from the pledged size, so small files cost
//! little.
//!
//! **Untrusted input.** Decoding never trusts the frame: the decoder refuses a window
//! larger than [`MAX_DELTA_WINDOW_LOG`] (a chunk's, larger than [`CHUNK_WINDOW_LOG`]),
//! stops at the declared length (a "zstd bomb" ends in [`DecompressProblem::TooLong`]
//! after at most `expected_len` bytes were written), and refuses output shorter than
//! declared, a frame cut short, and bytes after the frame.
//!
//! Chunks are plain zstd frames without the content checksum (the chunk id is the BLAKE3 of
//! its bytes); [`compress_chunk`] and [`decompress_chunk`] reuse one zstd context per
//! thread, since a fresh context per chunk costs megabytes of zeroed pages.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

use crate::chunk::CHUNK_MAX;
use crate::error::{Error, Result};

/// Largest zstd window log a delta may use or declare: 27, a 128 MiB window.
pub const MAX_DELTA_WINDOW_LOG: u32 = 27;

/// Largest old version a delta is made against, in bytes (`1 << MAX_DELTA_WINDOW_LOG`).
pub const MAX_DELTA_WINDOW: u64 = 1 << MAX_DELTA_WINDOW_LOG;

/// Largest zstd window log a chunk frame may declare: the smallest power of two holding
/// [`CHUNK_MAX`] bytes. zstd's encoder, told the chunk's size, never needs more.
pub const CHUNK_WINDOW_LOG: u32 = window_log_for(CHUNK_MAX as u64);

/// zstd's smallest window log.
const MIN_WINDOW_LOG: u32 = 10;
const IO_BUF: usize = 128 * 1024;

/// Why compressed bytes did not decode to the declared content.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecompressProblem {
    /// The frame decodes to more than the declared length (decoding stopped there).
    TooLong {
        /// The declared length.
        expected: u64,
    },
    /// The frame ended having produced fewer bytes than declared.
    TooShort {
        /// The declared length.
        expected: u64,
        /// What it produced.
        found: u64,
    },
    /// The input ended in the middle of the frame (or held no frame).
    Truncated {
        /// Bytes produced before the input ended.
        found: u64,
    },
    /// Bytes follow the end of the frame.
    TrailingData,
    /// zstd refused the frame: corrupt data, a window larger than allowed, a content
    /// checksum mismatch (a delta applied to the wrong old version), ...
    Zstd(&'static str),
}

impl fmt::Display for DecompressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressProblem::TooLong { expected } => write!(
                f,
                "decompresses to more than the declared {expected} bytes (stopped there)"
            ),
            DecompressProblem::TooShort { expected, found } => write!(
                f,
                "decompresses to {found} bytes, not the declared {expected}"
            ),
            DecompressProblem::Truncated { found } => write!(
                f,
                "compressed data ends in the middle of its zstd frame (after {found} bytes of output)"
            ),
            DecompressProblem::TrailingData => f.write_str("bytes follow the end of the zstd frame"),
            DecompressProblem::Zstd(name) => write!(f, "zstd: {name}"),
        }
    }
}

/// `ceil(log2(n))`, at least zstd's minimum window log.
const fn window_log_for(n: u64) -> u32 {
    let log = if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    };
    if log < MIN_WINDOW_LOG {
        MIN_WINDOW_LOG
    } else {
        log
    }
}

/// The window log a delta of `new_len` bytes against `old_len` bytes uses: enough to
/// reach from the end of the new content back to the start of the old, capped at
/// [`MAX_DELTA_WINDOW_LOG`].
pub fn delta_window_log(old_len: u64, new_len: u64) -> u32 {
    window_log_for(old_len.saturating_add(new_len)).min(MAX_DELTA_WINDOW_LOG)
}

fn zstd_err(what: &'static str) -> impl Fn(usize) -> Error {
    move |code| Error::Decompress {
        what,
        problem: DecompressProblem::Zstd(zstd_safe::get_error_name(code)),
    }
}

fn encode_err(code: usize) -> Error {
    Error::Stream {
        what: "compressing",
        source: io::Error::other(zstd_safe::get_error_name(code)),
    }
}

fn write_err(what: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Stream { what, source }
}

/// Read into `buf`, retrying on `Interrupted`.
fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Compress exactly `new_len` bytes read from `new` against `old`, writing one zstd frame
/// to `out`; returns the number of bytes written. `level` is a zstd level (19 for
/// publishing). Refuses an old version over [`MAX_DELTA_WINDOW`]
/// ([`Error::DeltaTooLarge`]: send the whole file) and a `new` that is shorter or longer
/// than `new_len`.
pub fn encode_delta(
    old: &[u8],
    new: &mut dyn Read,
    new_len: u64,
    out: &mut dyn Write,
    level: i32,
) -> Result<u64> {
    encode_delta_with(old, new, new_len, out, &DeltaParams::level(level))
}

/// zstd parameters of [`encode_delta_with`]: a level, and optional overrides of what the
/// level would choose. Whatever they are, the frame is one a reader accepts (window and
/// flags are fixed by [`encode_delta_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaParams {
    /// zstd level.
    pub level: i32,
    /// zstd `searchLog` (match candidates tried per position, as a log), if set.
    pub search_log: Option<u32>,
    /// zstd `hashLog` and `chainLog` (match-finder table sizes, as logs), if set. zstd
    /// still shrinks them for small inputs.
    pub table_log: Option<u32>,
    /// Shortest match long-distance matching looks for, if set.
    pub ldm_min_match: Option<u32>,
    /// zstd `targetLength`: at levels 16 and above, a match this long is taken without
    /// weighing the alternatives, if set.
    pub target_length: Option<u32>,
}

impl DeltaParams {
    /// Only a level: what the level chooses.
    pub const fn level(level: i32) -> Self {
        DeltaParams {
            level,
            search_log: None,
            table_log: None,
            ldm_min_match: None,
            target_length: None,
        }
    }
}

/// [`encode_delta`] with tuned zstd parameters.
pub fn encode_delta_with(
    old: &[u8],
    new: &mut dyn Read,
    new_len: u64,
    out: &mut dyn Write,
    params: &DeltaParams,
) -> Result<u64> {
    let level = params.level;
    let old_len = old.len() as u64;
    if old_len > MAX_DELTA_WINDOW {
        return Err(Error::DeltaTooLarge {
            old_len,
            limit: MAX_DELTA_WINDOW,
        });
    }
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(delta_window_log(old_len, new_len)),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
        CParameter::ContentSizeFlag(true),
    ] {
        cctx.set_parameter(p).map_err(encode_err)?;
    }
    let overrides = [
        params.search_log.map(CParameter::SearchLog),
        params.table_log.map(CParameter::HashLog),
        params.table_log.map(CParameter::ChainLog),
        params.ldm_min_match.map(CParameter::LdmMinMatch),
        params.target_length.map(CParameter::TargetLength),
    ];
    for p in overrides.into_iter().flatten() {
        cctx.set_parameter(p).map_err(encode_err)?;
    }
    cctx.set_pledged_src_size(Some(new_len))
        .map_err(encode_err)?;
    cctx.ref_prefix(old).map_err(encode_err)?;

    let mut inbuf = vec![0u8; IO_BUF];
    let mut outbuf: Vec<u8> = Vec::with_capacity(zstd_safe::CCtx::out_size());
    let mut written = 0u64;
    let mut left = new_len;
    let mut emit = |outbuf: &mut Vec<u8>| -> Result<()> {
        out.write_all(outbuf)
            .map_err(write_err("writing a delta"))?;
        written += outbuf.len() as u64;
        outbuf.clear();
        Ok(())
    };
    while left > 0 {
        let want = inbuf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_some(new, &mut inbuf[..want]).map_err(write_err("reading the new version"))?;
        if n == 0 {
            return Err(Error::Stream {
                what: "reading the new version",
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("ended {left} bytes before its declared {new_len}"),
                ),
            });
        }
        left -= n as u64;
        let mut input = InBuffer::around(&inbuf[..n]);
        while input.pos() < n {
            let mut ob = OutBuffer::around(&mut outbuf);
            cctx.compress_stream(&mut ob, &mut input)
                .map_err(encode_err)?;
            emit(&mut outbuf)?;
        }
    }
    if read_some(new, &mut inbuf[..1]).map_err(write_err("reading the new version"))? != 0 {
        return Err(Error::invalid(
            "new version",
            format!("longer than its declared {new_len} bytes"),
        ));
    }
    loop {
        let mut ob = OutBuffer::around(&mut outbuf);
        let remaining = cctx.end_stream(&mut ob).map_err(encode_err)?;
        emit(&mut outbuf)?;
        if remaining == 0 {
            break;
        }
    }
    Ok(written)
}

/// Decode a delta made by [`encode_delta`] against `old`, writing exactly `expected_len`
/// bytes to `out`; returns `expected_len`. Errors ([`Error::Decompress`]) when the frame
/// is corrupt, declares a window over [`MAX_DELTA_WINDOW_LOG`], decodes to more or fewer
/// bytes than `expected_len` (never writing more), is cut short, or is followed by other
/// bytes, and when its content checksum shows `old` was not the version it was made
/// against. The caller still verifies the result's BLAKE3.
pub fn apply_delta(
    old: &[u8],
    delta: &mut dyn Read,
    expected_len: u64,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(MAX_DELTA_WINDOW_LOG))
        .map_err(zstd_err("delta"))?;
    dctx.ref_prefix(old).map_err(zstd_err("delta"))?;
    decode_capped(&mut dctx, "delta", delta, expected_len, out)
}

/// Decode one zstd frame from `input` into `out`, producing exactly `expected` bytes.
fn decode_capped(
    dctx: &mut DCtx<'_>,
    what: &'static str,
    input: &mut dyn Read,
    expected: u64,
    out: &mut dyn Write,
) -> Result<u64> {
    let fail = |problem| Error::Decompress { what, problem };
    let mut inbuf = vec![0u8; IO_BUF];
    let cap = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .clamp(1, DCtx::out_size());
    let mut outbuf: Vec<u8> = Vec::with_capacity(cap);
    let mut produced = 0u64;
    let mut frame_done = false;
    loop {
        let n = read_some(input, &mut inbuf).map_err(write_err("reading compressed data"))?;
        if n == 0 {
            break;
        }
        if frame_done {
            return Err(fail(DecompressProblem::TrailingData));
        }
        let mut ib = InBuffer::around(&inbuf[..n]);
        loop {
            outbuf.clear();
            let mut ob = OutBuffer::around(&mut outbuf);
            let hint = dctx
                .decompress_stream(&mut ob, &mut ib)
                .map_err(zstd_err(what))?;
            let full = ob.pos() == ob.capacity();
            let room = expected - produced;
            if outbuf.len() as u64 > room {
                let keep = usize::try_from(room).expect("less than the buffer");
                out.write_all(&outbuf[..keep])
                    .map_err(write_err("writing decompressed data"))?;
                return Err(fail(DecompressProblem::TooLong { expected }));
            }
            out.write_all(&outbuf)
                .map_err(write_err("writing decompressed data"))?;
            produced += outbuf.len() as u64;
            if hint == 0 {
                frame_done = true;
                if ib.pos() < n {
                    return Err(fail(DecompressProblem::TrailingData));
                }
                break;
            }
            if ib.pos() == n && !full {
                break;
            }
        }
    }
    if !frame_done {
        return Err(fail(DecompressProblem::Truncated { found: produced }));
    }
    if produced != expected {
        return Err(fail(DecompressProblem::TooShort {
            expected,
            found: produced,
        }));
    }
    Ok(produced)
}

thread_local! {
    /// This thread's chunk compressor and the level it is set to.
    static CHUNK_CCTX: RefCell<Option<(i32, CCtx<'static>)>> = const { RefCell::new(None) };
    /// This thread's chunk decompressor.
    static CHUNK_DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Compress one chunk as a zstd frame at `level`, with its content size and without the
/// content checksum (the chunk id covers the bytes).
pub fn compress_chunk(data: &[u8], level: i32) -> Vec<u8> {
    CHUNK_CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut cctx = CCtx::create();
            for p in [
                CParameter::CompressionLevel(level),
                CParameter::ChecksumFlag(false),
                CParameter::ContentSizeFlag(true),
            ] {
                cctx.set_parameter(p)
                    .expect("zstd accepts (clamps) every level and these flags");
            }
            *slot = Some((level, cctx));
        }
        let (_, cctx) = slot.as_mut().expect("set above");
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        cctx.compress2(&mut out, data)
            .expect("the output holds compress_bound bytes");
        out
    })
}

/// Decompress one chunk frame made by [`compress_chunk`] to exactly `expected_len` bytes
/// (at most [`CHUNK_MAX`]), with the same refusals as [`apply_delta`]; the frame may
/// declare a window of at most [`CHUNK_WINDOW_LOG`].
pub fn decompress_chunk(compressed: &[u8], expected_len: u64) -> Result<Vec<u8>> {
    if expected_len > u64::from(CHUNK_MAX) {
        return Err(Error::invalid(
            "chunk length",
            format!("{expected_len} bytes is over the {CHUNK_MAX}-byte chunk maximum"),
        ));
    }
    CHUNK_DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match slot.as_mut() {
            Some(d) => d,
            None => {
                let mut d = DCtx::create();
                d.set_parameter(DParameter::WindowLogMax(CHUNK_WINDOW_LOG))
                    .map_err(zstd_err("chunk"))?;
                slot.insert(d)
            }
        };
        // A previous failure may have left a frame half decoded.
        dctx.reset(zstd_safe::ResetDirective::SessionOnly)
            .map_err(zstd_err("chunk"))?;
        let mut out = Vec::with_capacity(expected_len as usize);
        decode_capped(dctx, "chunk", &mut &compressed[..], expected_len, &mut out)?;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::{delta_window_log, window_log_for, CHUNK_WINDOW_LOG, MAX_DELTA_WINDOW_LOG};

    #[test]
    fn window_logs() {
        assert_eq!(window_log_for(0), 10);
        assert_eq!(window_log_for(1024), 10);
        assert_eq!(window_log_for(1025), 11);
        assert_eq!(window_log_for(1 << 20), 20);
        assert_eq!(delta_window_log(1 << 26, 1 << 26), 27);
        assert_eq!(delta_window_log(1 << 27, 1), MAX_DELTA_WINDOW_LOG);
        assert_eq!(
            CHUNK_WINDOW_LOG,
            window_log_for(u64::from(crate::chunk::CHUNK_MAX))
        );
    }
}
