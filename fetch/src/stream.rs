//! Pure logic for streamed range responses: an incremental `multipart/byteranges` parser
//! and the assembler that cuts the wanted ranges out of the bytes as they arrive, so a
//! response of any size is handled in a small, fixed amount of memory.

use crate::error::Error;
use crate::ranges::{parse_content_range, Span};

/// Most bytes before the first delimiter (RFC 2046 allows a preamble; servers send none or
/// a line break).
const MAX_PREAMBLE: usize = 4096;
/// Most bytes of one part's headers.
const MAX_PART_HEADERS: usize = 8192;
/// Bytes moved into the parser's buffer at a time outside part data, so a part's data
/// is mostly passed through without a copy.
const STEP: usize = 1024;

/// What the parser found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A part starts, holding these bytes of the file.
    Part(Span),
    /// The next bytes of the current part's data.
    Data(&'a [u8]),
}

/// Why feeding stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop<E> {
    /// The body is not a valid `multipart/byteranges` body.
    Bad(&'static str),
    /// The consumer refused an item.
    Sink(E),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the first delimiter.
    Preamble,
    /// After a delimiter: `--` ends the body, CRLF starts a part.
    AfterDelimiter,
    /// Reading a part's headers up to the empty line.
    Headers,
    /// Passing through this many more bytes of part data.
    Data(u64),
    /// After part data: CRLF and the next delimiter must follow.
    AfterData,
    /// The closing delimiter was seen; the epilogue is ignored.
    Done,
}

/// An incremental, strict `multipart/byteranges` parser. Each part's length comes from its
/// own `Content-Range`; the bytes after it must be the next delimiter, so data is never
/// guessed.
pub(crate) struct Multipart {
    delimiter: Vec<u8>,
    state: State,
    buf: Vec<u8>,
    pos: usize,
    parts: usize,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Multipart {
    pub(crate) fn new(boundary: &str) -> Result<Multipart, &'static str> {
        if boundary.is_empty() || boundary.len() > 200 {
            return Err("invalid boundary");
        }
        Ok(Multipart {
            delimiter: format!("--{boundary}").into_bytes(),
            state: State::Preamble,
            buf: Vec::new(),
            pos: 0,
            parts: 0,
        })
    }

    /// Parse the next bytes of the body, handing what they hold to `emit` in order.
    pub(crate) fn feed<E>(
        &mut self,
        mut data: &[u8],
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        loop {
            match self.state {
                State::Done => return Ok(()),
                State::Data(left) => {
                    // Bytes buffered while looking at the headers come first.
                    let from_buf = self.pos < self.buf.len();
                    let source = if from_buf {
                        &self.buf[self.pos..]
                    } else {
                        data
                    };
                    if source.is_empty() {
                        return Ok(());
                    }
                    let n = source
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    emit(Item::Data(&source[..n])).map_err(Stop::Sink)?;
                    if from_buf {
                        self.pos += n;
                    } else {
                        data = &data[n..];
                    }
                    self.state = match left - n as u64 {
                        0 => State::AfterData,
                        left => State::Data(left),
                    };
                }
                _ => {
                    if !self.step(emit)? {
                        if data.is_empty() {
                            return Ok(());
                        }
                        self.buf.drain(..self.pos);
                        self.pos = 0;
                        let n = data.len().min(STEP);
                        self.buf.extend_from_slice(&data[..n]);
                        data = &data[n..];
                    }
                }
            }
        }
    }

    /// Check that the body ended where it may: after the closing delimiter.
    pub(crate) fn finish(&self) -> Result<(), &'static str> {
        match self.state {
            State::Done => Ok(()),
            State::Preamble => Err("no boundary"),
            State::Data(_) => Err("part shorter than its Content-Range"),
            _ => Err("body ends before the closing boundary"),
        }
    }

    /// Take one step on the buffered bytes; false when more bytes are needed.
    fn step<E>(
        &mut self,
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<bool, Stop<E>> {
        let rest = &self.buf[self.pos..];
        let d = self.delimiter.len();
        match self.state {
            State::Preamble => match find(rest, &self.delimiter) {
                Some(at) => {
                    self.pos += at + d;
                    self.state = State::AfterDelimiter;
                }
                None if rest.len() > MAX_PREAMBLE + d => return Err(Stop::Bad("no boundary")),
                None => return Ok(false),
            },
            State::AfterDelimiter => {
                if rest.len() < 2 {
                    return Ok(false);
                }
                if rest.starts_with(b"--") {
                    if self.parts == 0 {
                        return Err(Stop::Bad("no parts"));
                    }
                    self.state = State::Done;
                } else if rest.starts_with(b"\r\n") {
                    self.pos += 2;
                    self.state = State::Headers;
                } else {
                    return Err(Stop::Bad("missing CRLF after boundary"));
                }
            }
            State::Headers => {
                let Some(end) = find(rest, b"\r\n\r\n") else {
                    if rest.len() > MAX_PART_HEADERS {
                        return Err(Stop::Bad("unterminated part headers"));
                    }
                    return Ok(false);
                };
                let span = part_span(&rest[..end]).map_err(Stop::Bad)?;
                self.pos += end + 4;
                self.parts += 1;
                self.state = State::Data(span.len());
                emit(Item::Part(span)).map_err(Stop::Sink)?;
            }
            State::AfterData => {
                if rest.len() < 2 + d {
                    return Ok(false);
                }
                if !rest.starts_with(b"\r\n") || &rest[2..2 + d] != self.delimiter.as_slice() {
                    return Err(Stop::Bad("part longer than its Content-Range"));
                }
                self.pos += 2 + d;
                self.state = State::AfterDelimiter;
            }
            State::Data(_) | State::Done => {}
        }
        Ok(true)
    }
}

/// The span a part's headers declare in their one `Content-Range`.
fn part_span(headers: &[u8]) -> Result<Span, &'static str> {
    let headers = std::str::from_utf8(headers).map_err(|_| "non-UTF-8 part headers")?;
    let mut span = None;
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("malformed part header")?;
        if name.trim().eq_ignore_ascii_case("content-range") {
            if span.is_some() {
                return Err("duplicate Content-Range in part");
            }
            span = Some(
                parse_content_range(value)
                    .ok_or("invalid Content-Range in part")?
                    .0,
            );
        }
    }
    span.ok_or("part without Content-Range")
}

/// Why [`Assembler::accept`] refused bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gap<E> {
    /// Bytes at `offset` came while the byte at `wanted` was still missing.
    Hole { wanted: u64, offset: u64 },
    /// The consumer refused a range.
    Sink(E),
}

/// Fills sorted, disjoint ranges `(offset, len)` from bytes that arrive in file order, and
/// hands each range to the consumer as soon as it is complete, with its index.
pub(crate) struct Assembler<'r> {
    ranges: &'r [(u64, u64)],
    next: usize,
    buf: Vec<u8>,
}

impl<'r> Assembler<'r> {
    /// `ranges` must be sorted and disjoint (see [`check_ordered`]).
    pub(crate) fn new(ranges: &'r [(u64, u64)]) -> Assembler<'r> {
        Assembler {
            ranges,
            next: 0,
            buf: Vec::new(),
        }
    }

    /// The offset of the next byte wanted, if any.
    pub(crate) fn pos(&self) -> Option<u64> {
        self.ranges
            .get(self.next)
            .map(|(offset, _)| offset + self.buf.len() as u64)
    }

    /// Hand over the empty ranges at the front (call once before any bytes arrive, so
    /// ranges that are all empty are done too).
    pub(crate) fn flush_empty<E>(
        &mut self,
        sink: &mut (impl FnMut(usize, Vec<u8>) -> Result<(), E> + ?Sized),
    ) -> Result<(), Gap<E>> {
        while self.ranges.get(self.next).is_some_and(|r| r.1 == 0) {
            sink(self.next, Vec::new()).map_err(Gap::Sink)?;
            self.next += 1;
        }
        Ok(())
    }

    /// `data` are the file's bytes from `offset` on. Bytes already held or not wanted
    /// are skipped.
    pub(crate) fn accept<E>(
        &mut self,
        mut offset: u64,
        mut data: &[u8],
        sink: &mut (impl FnMut(usize, Vec<u8>) -> Result<(), E> + ?Sized),
    ) -> Result<(), Gap<E>> {
        self.flush_empty(sink)?;
        while !data.is_empty() {
            let Some(wanted) = self.pos() else {
                return Ok(());
            };
            if offset > wanted {
                return Err(Gap::Hole { wanted, offset });
            }
            let skip = usize::try_from(wanted - offset).unwrap_or(usize::MAX);
            if skip >= data.len() {
                return Ok(());
            }
            data = &data[skip..];
            offset = wanted;
            let (start, len) = self.ranges[self.next];
            let missing = usize::try_from(start + len - wanted).unwrap_or(usize::MAX);
            let n = missing.min(data.len());
            if self.buf.is_empty() {
                self.buf.reserve_exact(usize::try_from(len).unwrap_or(0));
            }
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            offset += n as u64;
            if n == missing {
                sink(self.next, std::mem::take(&mut self.buf)).map_err(Gap::Sink)?;
                self.next += 1;
                self.flush_empty(sink)?;
            }
        }
        Ok(())
    }
}

/// Where streamed ranges go: `sink(i, bytes)` once range `i` is whole, in order.
pub(crate) type Sink<'s> = &'s mut (dyn FnMut(usize, Vec<u8>) -> Result<(), Error> + Send);

/// Whether `ranges` are sorted by offset and disjoint.
pub(crate) fn check_ordered(ranges: &[(u64, u64)]) -> bool {
    ranges
        .windows(2)
        .all(|w| w[0].0.saturating_add(w[0].1) <= w[1].0)
}

/// Refuses ranges that are not sorted by offset and disjoint, naming the first that is
/// out of order.
pub(crate) fn require_ordered(ranges: &[(u64, u64)]) -> Result<(), Error> {
    match ranges.windows(2).find(|w| !check_ordered(w)) {
        Some(w) => Err(Error::InvalidRange {
            offset: w[1].0,
            len: w[1].1,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a whole `multipart/byteranges` body.
    fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(Span, Vec<u8>)>, &'static str> {
        let mut parser = Multipart::new(boundary)?;
        let mut parts: Vec<(Span, Vec<u8>)> = Vec::new();
        let fed = parser.feed(body, &mut |item| {
            match item {
                Item::Part(span) => parts.push((
                    span,
                    Vec::with_capacity(usize::try_from(span.len()).unwrap_or(0)),
                )),
                Item::Data(bytes) => {
                    if let Some((_, data)) = parts.last_mut() {
                        data.extend_from_slice(bytes);
                    }
                }
            }
            Ok::<(), ()>(())
        });
        match fed {
            Err(Stop::Bad(reason)) => return Err(reason),
            Err(Stop::Sink(())) => return Err("unreachable"),
            Ok(()) => {}
        }
        parser.finish()?;
        Ok(parts)
    }

    const BODY: &[u8] = b"\r\n--XX\r\nContent-Type: a/b\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--XX\r\nContent-Range: bytes 5-5/10\r\n\r\n-\r\n--XX--\r\n";

    /// Feed `body` in pieces cut at `cuts` and collect the parts.
    fn fed_in_pieces(body: &[u8], cuts: &[usize]) -> Result<Vec<(Span, Vec<u8>)>, &'static str> {
        let mut parser = Multipart::new("XX")?;
        let mut parts: Vec<(Span, Vec<u8>)> = Vec::new();
        let mut emit = |item: Item<'_>| {
            match item {
                Item::Part(span) => parts.push((span, Vec::new())),
                Item::Data(d) => parts.last_mut().unwrap().1.extend_from_slice(d),
            }
            Ok::<(), ()>(())
        };
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            match parser.feed(&body[at..cut], &mut emit) {
                Ok(()) => {}
                Err(Stop::Bad(reason)) => return Err(reason),
                Err(Stop::Sink(())) => unreachable!(),
            }
            at = cut;
        }
        parser.finish()?;
        Ok(parts)
    }

    #[test]
    fn multipart_uses_declared_lengths() {
        let parts = parse_multipart(BODY, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (Span { start: 0, end: 3 }, b"abc".to_vec()));
        assert_eq!(parts[1], (Span { start: 5, end: 6 }, b"-".to_vec()));
        let short = b"--XX\r\nContent-Range: bytes 0-3/10\r\n\r\nabc\r\n--XX--\r\n";
        assert!(parse_multipart(short, "XX").is_err());
        let long = b"--XX\r\nContent-Range: bytes 0-1/10\r\n\r\nabc\r\n--XX--\r\n";
        assert_eq!(
            parse_multipart(long, "XX").unwrap_err(),
            "part longer than its Content-Range"
        );
        let cut = &BODY[..BODY.len() - 10];
        assert!(parse_multipart(cut, "XX").is_err());
        assert_eq!(
            parse_multipart(b"garbage", "XX").unwrap_err(),
            "no boundary"
        );
        assert_eq!(
            parse_multipart(b"--XX--\r\n", "XX").unwrap_err(),
            "no parts"
        );
        let no_range = b"--XX\r\nContent-Type: a/b\r\n\r\nabc\r\n--XX--\r\n";
        assert_eq!(
            parse_multipart(no_range, "XX").unwrap_err(),
            "part without Content-Range"
        );
    }

    #[test]
    fn multipart_parses_the_same_however_the_body_is_cut() {
        let whole = parse_multipart(BODY, "XX").unwrap();
        for a in 0..=BODY.len() {
            for b in a..=BODY.len() {
                assert_eq!(
                    fed_in_pieces(BODY, &[a, b]).unwrap(),
                    whole,
                    "cut at {a}, {b}"
                );
            }
        }
    }

    #[test]
    fn endless_headers_and_preambles_are_refused() {
        let mut parser = Multipart::new("XX").unwrap();
        let junk = vec![b'a'; MAX_PREAMBLE + 100];
        let mut emit = |_: Item<'_>| Ok::<(), ()>(());
        assert_eq!(parser.feed(&junk, &mut emit), Err(Stop::Bad("no boundary")));
        let mut parser = Multipart::new("XX").unwrap();
        let mut body = b"--XX\r\nX-A: ".to_vec();
        body.extend(vec![b'a'; MAX_PART_HEADERS + 100]);
        assert_eq!(
            parser.feed(&body, &mut emit),
            Err(Stop::Bad("unterminated part headers"))
        );
    }

    fn assemble(
        ranges: &[(u64, u64)],
        pieces: &[(u64, &[u8])],
    ) -> Result<Vec<(usize, Vec<u8>)>, Gap<()>> {
        let mut asm = Assembler::new(ranges);
        let mut out = Vec::new();
        let mut sink = |i: usize, d: Vec<u8>| {
            out.push((i, d));
            Ok::<(), ()>(())
        };
        for (offset, data) in pieces {
            asm.accept(*offset, data, &mut sink)?;
        }
        assert!(asm.pos().is_none());
        Ok(out)
    }

    #[test]
    fn assembler_cuts_ranges_out_of_coalesced_bytes() {
        let file: Vec<u8> = (0..100u8).collect();
        let ranges = [(2, 3), (5, 0), (10, 20), (40, 1)];
        // One span covering everything, fed in uneven pieces.
        let pieces: Vec<(u64, &[u8])> = vec![(0, &file[..7]), (7, &file[7..31]), (31, &file[31..])];
        let got = assemble(&ranges, &pieces).unwrap();
        let want: Vec<(usize, Vec<u8>)> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(o, l))| (i, file[o as usize..(o + l) as usize].to_vec()))
            .collect();
        assert_eq!(got, want);
        // Bytes resent from an earlier offset (a retried request) are skipped.
        let again: Vec<(u64, &[u8])> = vec![(0, &file[..15]), (12, &file[12..])];
        assert_eq!(assemble(&ranges, &again).unwrap(), want);
        // A hole is refused.
        let holed: Vec<(u64, &[u8])> = vec![(0, &file[..12]), (14, &file[14..])];
        assert_eq!(
            assemble(&ranges, &holed).unwrap_err(),
            Gap::Hole {
                wanted: 12,
                offset: 14
            }
        );
    }

    #[test]
    fn ordered_ranges() {
        assert!(check_ordered(&[(0, 5), (5, 1), (10, 0), (10, 3)]));
        assert!(!check_ordered(&[(0, 5), (4, 1)]));
        assert!(!check_ordered(&[(10, 1), (0, 1)]));
    }
}
