//! Decoding one file's zstd frame as a stream, so a file of any size goes from the delta
//! into the store through [`store::Transaction::write_file`] without being held in memory;
//! and decoding the frame around all the records.

use std::io::{self, Read};

use zstd::zstd_safe::{self, DCtx, DParameter, InBuffer, OutBuffer};

use super::RECORDS_WINDOW_LOG;
use crate::compress::{DecompressProblem, MAX_DELTA_WINDOW_LOG};
use crate::error::{Error, Result};

const IN_BUF: usize = 64 * 1024;

/// Reads the content of one file record: decodes exactly `frame_len` compressed bytes
/// from `input` (a plain frame, or a patch-from frame against `base`) into exactly
/// `expected` bytes. It refuses a window over [`MAX_DELTA_WINDOW_LOG`], output longer or
/// shorter than `expected` (never producing more), a frame cut short, bytes after the
/// frame within the record, and a content checksum that does not match.
///
/// An error is returned to the reader's caller as an `io::Error`; the precise
/// [`Error`] is kept and handed out by [`FrameReader::take_error`].
pub(super) struct FrameReader<'a> {
    dctx: DCtx<'a>,
    input: &'a mut dyn Read,
    frame_len: u64,
    left: u64,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    expected: u64,
    produced: u64,
    frame_done: bool,
    error: Option<Error>,
}

fn problem(p: DecompressProblem) -> Error {
    Error::Decompress {
        what: "static delta file content",
        problem: p,
    }
}

fn zstd_error(code: usize) -> Error {
    problem(DecompressProblem::Zstd(zstd_safe::get_error_name(code)))
}

impl<'a> FrameReader<'a> {
    /// Prepare to decode `frame_len` bytes of `input`, against `base` when it is given.
    pub(super) fn new(
        input: &'a mut dyn Read,
        frame_len: u64,
        base: Option<&'a [u8]>,
        expected: u64,
    ) -> Result<Self> {
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(MAX_DELTA_WINDOW_LOG))
            .map_err(zstd_error)?;
        if let Some(base) = base {
            dctx.ref_prefix(base).map_err(zstd_error)?;
        }
        let cap = usize::try_from(frame_len)
            .unwrap_or(IN_BUF)
            .clamp(1, IN_BUF);
        Ok(FrameReader {
            dctx,
            input,
            frame_len,
            left: frame_len,
            inbuf: vec![0; cap],
            in_pos: 0,
            in_len: 0,
            expected,
            produced: 0,
            frame_done: false,
            error: None,
        })
    }

    /// The error that made a read fail, if one did.
    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    /// Whether the frame was decoded completely and exactly.
    pub(super) fn finished(&self) -> bool {
        self.frame_done
            && self.produced == self.expected
            && self.left == 0
            && self.in_pos == self.in_len
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut scratch = [0u8; 1];
        loop {
            if self.frame_done {
                if self.in_pos < self.in_len || self.left > 0 {
                    return Err(problem(DecompressProblem::TrailingData));
                }
                if self.produced != self.expected {
                    return Err(problem(DecompressProblem::TooShort {
                        expected: self.expected,
                        found: self.produced,
                    }));
                }
                return Ok(0);
            }
            if self.in_pos == self.in_len && self.left > 0 {
                let want = self
                    .inbuf
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                let n = read_retrying(self.input, &mut self.inbuf[..want]).map_err(read_err)?;
                if n == 0 {
                    return Err(Error::decode(
                        "static delta",
                        format!(
                            "file ends {} bytes into a zstd frame announced as {} bytes",
                            self.frame_len - self.left,
                            self.frame_len
                        ),
                    ));
                }
                self.left -= n as u64;
                self.in_pos = 0;
                self.in_len = n;
            }
            let room = self.expected - self.produced;
            // With the declared output complete, a 1-byte scratch buffer lets zstd finish the
            // frame (checksum) and shows any further output as a bomb.
            let out: &mut [u8] = if room == 0 {
                &mut scratch
            } else {
                let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                &mut buf[..n]
            };
            let mut ob = OutBuffer::around(out);
            let mut ib = InBuffer::around(&self.inbuf[self.in_pos..self.in_len]);
            let hint = self
                .dctx
                .decompress_stream(&mut ob, &mut ib)
                .map_err(zstd_error)?;
            let consumed = ib.pos();
            let n = ob.pos();
            self.in_pos += consumed;
            if room == 0 && n > 0 {
                return Err(problem(DecompressProblem::TooLong {
                    expected: self.expected,
                }));
            }
            self.produced += n as u64;
            if hint == 0 {
                self.frame_done = true;
            }
            if n > 0 {
                return Ok(n);
            }
            if !self.frame_done && consumed == 0 && self.in_pos == self.in_len && self.left == 0 {
                return Err(problem(DecompressProblem::Truncated {
                    found: self.produced,
                }));
            }
        }
    }
}

impl Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        }
        self.fill(buf).map_err(|e| {
            let io = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
            self.error = Some(e);
            io
        })
    }
}

fn read_retrying(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads the records of a version-2 delta out of the one zstd frame that holds them: the
/// rest of the file after the header. Decoding refuses a window over
/// [`RECORDS_WINDOW_LOG`], a frame cut short, a wrong content checksum, and any byte after
/// the frame; it returns end of input only once the frame ended exactly at the end of the
/// file. How much it decodes is bounded by the record parser, which checks every record.
pub(super) struct RecordsReader<'a> {
    dctx: DCtx<'static>,
    input: &'a mut dyn Read,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    produced: u64,
    frame_done: bool,
}

fn records_problem(p: DecompressProblem) -> Error {
    Error::Decompress {
        what: "static delta records",
        problem: p,
    }
}

fn records_zstd_error(code: usize) -> Error {
    records_problem(DecompressProblem::Zstd(zstd_safe::get_error_name(code)))
}

impl<'a> RecordsReader<'a> {
    pub(super) fn new(input: &'a mut dyn Read) -> Result<Self> {
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(RECORDS_WINDOW_LOG))
            .map_err(records_zstd_error)?;
        Ok(RecordsReader {
            dctx,
            input,
            inbuf: vec![0; IN_BUF],
            in_pos: 0,
            in_len: 0,
            produced: 0,
            frame_done: false,
        })
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.frame_done {
                let mut one = [0u8; 1];
                let more = self.in_pos < self.in_len
                    || read_retrying(self.input, &mut one).map_err(read_err)? > 0;
                if more {
                    return Err(records_problem(DecompressProblem::TrailingData));
                }
                return Ok(0);
            }
            let mut ob = OutBuffer::around(&mut *buf);
            let mut ib = InBuffer::around(&self.inbuf[self.in_pos..self.in_len]);
            let hint = self
                .dctx
                .decompress_stream(&mut ob, &mut ib)
                .map_err(records_zstd_error)?;
            let consumed = ib.pos();
            let n = ob.pos();
            self.in_pos += consumed;
            self.produced += n as u64;
            if hint == 0 {
                self.frame_done = true;
            }
            if n > 0 {
                return Ok(n);
            }
            if self.frame_done {
                continue;
            }
            if self.in_pos < self.in_len {
                if consumed == 0 {
                    return Err(records_problem(DecompressProblem::Zstd("no progress")));
                }
                continue;
            }
            let n = read_retrying(self.input, &mut self.inbuf).map_err(read_err)?;
            if n == 0 {
                return Err(Error::decode(
                    "static delta",
                    format!(
                        "truncated: the file ends inside the zstd frame of its records (after {} bytes of records)",
                        self.produced
                    ),
                ));
            }
            self.in_pos = 0;
            self.in_len = n;
        }
    }
}

impl Read for RecordsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, RecordsError(e)))
    }
}

/// The precise error of a [`RecordsReader`], carried inside an `io::Error` so the record
/// parser can hand it on unchanged (see [`read_err`]).
#[derive(Debug)]
pub(super) struct RecordsError(pub(super) Error);

impl std::fmt::Display for RecordsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RecordsError {}

/// An error reading the delta: the [`Error`] a [`RecordsReader`] failed with when `source`
/// carries one, else the I/O error.
pub(super) fn read_err(source: io::Error) -> Error {
    if source
        .get_ref()
        .is_some_and(|inner| inner.is::<RecordsError>())
    {
        if let Some(Ok(r)) = source
            .into_inner()
            .map(|inner| inner.downcast::<RecordsError>())
        {
            return r.0;
        }
        unreachable!("checked to be a RecordsError above");
    }
    Error::Stream {
        what: "reading a static delta",
        source,
    }
}
