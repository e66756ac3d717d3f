//! `Range: bytes=...` parsing (RFC 9110 §14).

/// One satisfiable byte range, both ends inclusive, within the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes covered.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// What a `Range` header asks for, given the file size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable header (absent, another unit, malformed, too many ranges): send it all.
    Full,
    /// At least one satisfiable range, in the order asked.
    Ranges(Vec<ByteRange>),
    /// Well-formed but nothing satisfiable: 416.
    Unsatisfiable,
}

/// Most ranges honoured in one request; beyond that the header is ignored (a 200 with the
/// whole file is always a valid answer), which bounds the per-request work.
pub const MAX_RANGES: usize = 1024;

/// Parses a `Range` header value against a file of `size` bytes.
pub fn parse(header: &str, size: u64) -> RangeRequest {
    let Some((unit, specs)) = header.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    let mut ranges = Vec::new();
    let mut seen = 0usize;
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        seen += 1;
        if seen > MAX_RANGES {
            return RangeRequest::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeRequest::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = if first.is_empty() {
            let Some(suffix) = parse_u64(last) else {
                return RangeRequest::Full;
            };
            (suffix > 0 && size > 0).then(|| ByteRange {
                start: size - suffix.min(size),
                end: size - 1,
            })
        } else {
            let Some(start) = parse_u64(first) else {
                return RangeRequest::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match parse_u64(last) {
                    Some(end) if end >= start => end,
                    _ => return RangeRequest::Full,
                }
            };
            (start < size).then(|| ByteRange {
                start,
                end: end.min(size - 1),
            })
        };
        ranges.extend(range);
    }
    if seen == 0 {
        RangeRequest::Full
    } else if ranges.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Ranges(ranges)
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{parse, ByteRange, RangeRequest};

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn forms() {
        assert_eq!(parse("bytes=0-9", 100), RangeRequest::Ranges(vec![r(0, 9)]));
        assert_eq!(
            parse("bytes=90-", 100),
            RangeRequest::Ranges(vec![r(90, 99)])
        );
        assert_eq!(
            parse("bytes=-10", 100),
            RangeRequest::Ranges(vec![r(90, 99)])
        );
        assert_eq!(
            parse("bytes=-500", 100),
            RangeRequest::Ranges(vec![r(0, 99)])
        );
        assert_eq!(
            parse("bytes=50-500", 100),
            RangeRequest::Ranges(vec![r(50, 99)])
        );
        assert_eq!(
            parse("bytes=0-0, 5-6 ,-1", 100),
            RangeRequest::Ranges(vec![r(0, 0), r(5, 6), r(99, 99)])
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse("bytes=200-300, 150-", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse("items=0-1", 100), RangeRequest::Full);
        assert_eq!(parse("bytes=5-1", 100), RangeRequest::Full);
        assert_eq!(parse("bytes=a-b", 100), RangeRequest::Full);
        assert_eq!(parse("bytes=+1-2", 100), RangeRequest::Full);
        assert_eq!(parse("bytes=", 100), RangeRequest::Full);
        let many = format!("bytes={}", vec!["0-0"; 2000].join(","));
        assert_eq!(parse(&many, 100), RangeRequest::Full);
    }
}
