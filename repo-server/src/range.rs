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
    /// At least one satisfiable range; overlapping and adjacent ones merged, so they are
    /// disjoint and cover at most the file once. Each comes where the first range-spec it
    /// covers was asked.
    Ranges(Vec<ByteRange>),
    /// Well-formed but nothing satisfiable: 416.
    Unsatisfiable,
}

/// Most range-specs read from one header; beyond that the header is ignored (a 200 with the
/// whole file is always a valid answer, RFC 9110 §14.2), which bounds the parsing work.
pub const MAX_RANGE_SPECS: usize = 1024;

/// Most ranges left after merging that one response sends as parts; beyond that the header
/// is ignored too (Apache's `MaxRanges` default; the pull client asks for at most 200).
pub const MAX_PARTS: usize = 200;

/// Parses a `Range` header value against a file of `size` bytes, merging overlapping and
/// adjacent ranges (RFC 9110 §14.2 lets a server coalesce them), so that no request makes
/// the server send a byte of the file twice.
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
        if seen > MAX_RANGE_SPECS {
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
        let merged = coalesce(ranges);
        if merged.len() > MAX_PARTS {
            RangeRequest::Full
        } else {
            RangeRequest::Ranges(merged)
        }
    }
}

/// Merges ranges that overlap or touch. A merged range takes the place of the earliest
/// range-spec it covers: RFC 9110 §14.6 asks for the parts in the order they were asked,
/// "excluding those ... coalesced into other ranges".
fn coalesce(ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut by_start: Vec<(usize, ByteRange)> = ranges.into_iter().enumerate().collect();
    by_start.sort_by_key(|&(_, r)| r.start);
    let mut merged: Vec<(usize, ByteRange)> = Vec::with_capacity(by_start.len());
    for (asked, r) in by_start {
        match merged.last_mut() {
            Some((first, last)) if r.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(r.end);
                *first = (*first).min(asked);
            }
            _ => merged.push((asked, r)),
        }
    }
    merged.sort_by_key(|&(asked, _)| asked);
    merged.into_iter().map(|(_, r)| r).collect()
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{parse, ByteRange, RangeRequest, MAX_PARTS};

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

    #[test]
    fn overlapping_and_adjacent_ranges_merge_in_asked_order() {
        let same = format!("bytes={}", vec!["0-"; 1024].join(","));
        assert_eq!(parse(&same, 100), RangeRequest::Ranges(vec![r(0, 99)]));
        assert_eq!(
            parse("bytes=500-599,0-99,50-149,150-199,-1", 1000),
            RangeRequest::Ranges(vec![r(500, 599), r(0, 199), r(999, 999)])
        );
        // The last spec joins the first two groups; the whole lot is first asked at spec 0.
        assert_eq!(
            parse("bytes=10-19,0-4,30-39,5-9,20-29", 100),
            RangeRequest::Ranges(vec![r(0, 39)])
        );
        // Suffix and open ranges reaching the end merge too.
        assert_eq!(
            parse("bytes=-10,95-,0-0", 100),
            RangeRequest::Ranges(vec![r(90, 99), r(0, 0)])
        );
        // A one-byte gap is kept.
        assert_eq!(
            parse("bytes=0-0,2-2", 100),
            RangeRequest::Ranges(vec![r(0, 0), r(2, 2)])
        );
    }

    #[test]
    fn too_many_parts_after_merging_sends_it_all() {
        let spaced = |n: u64| {
            let specs: Vec<String> = (0..n).map(|i| format!("{0}-{0}", i * 2)).collect();
            format!("bytes={}", specs.join(","))
        };
        let max = MAX_PARTS as u64;
        match parse(&spaced(max), 10_000) {
            RangeRequest::Ranges(ranges) => assert_eq!(ranges.len(), MAX_PARTS),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&spaced(max + 1), 10_000), RangeRequest::Full);
        // Many specs that merge into few parts are fine.
        let touching: Vec<String> = (0..1000).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            parse(&format!("bytes={}", touching.join(",")), 10_000),
            RangeRequest::Ranges(vec![r(0, 999)])
        );
    }
}
