//! Pure byte-range logic: coalescing, grouping into requests, `Content-Range` parsing,
//! slicing the answers back out.

use crate::error::Error;

/// A half-open byte span `[start, end)` of the remote file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Span {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Checks `(offset, len)` pairs and returns their total length.
pub(crate) fn total_len(ranges: &[(u64, u64)]) -> Result<u64, Error> {
    let mut total = 0u64;
    for &(offset, len) in ranges {
        offset
            .checked_add(len)
            .ok_or(Error::InvalidRange { offset, len })?;
        total = total.saturating_add(len);
    }
    Ok(total)
}

/// Sorted, merged spans covering every non-empty range; ranges closer than `gap` are joined.
pub(crate) fn coalesce(ranges: &[(u64, u64)], gap: u64) -> Vec<Span> {
    let mut sorted: Vec<Span> = ranges
        .iter()
        .filter(|r| r.1 > 0)
        .map(|&(start, len)| Span {
            start,
            end: start + len,
        })
        .collect();
    sorted.sort_by_key(|s| (s.start, s.end));
    let mut out: Vec<Span> = Vec::with_capacity(sorted.len());
    for span in sorted {
        match out.last_mut() {
            Some(last) if span.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(span.end);
            }
            _ => out.push(span),
        }
    }
    out
}

/// Default of [`crate::FetchConfig::min_parallel_bytes`]: below this many bytes per
/// request, spreading spans over parallel requests costs more round trips than it saves.
pub(crate) const MIN_PARALLEL_BYTES: u64 = 1 << 20;

/// Splits spans into requests: at most `max_per_request` spans each, neighbours kept
/// together, and spread over up to `max_parallel` requests when there are at least
/// `min_parallel_bytes` per request to share.
pub(crate) fn group(
    spans: &[Span],
    max_parallel: usize,
    max_per_request: usize,
    min_parallel_bytes: u64,
) -> Vec<Vec<Span>> {
    if spans.is_empty() {
        return Vec::new();
    }
    let max_per_request = max_per_request.max(1);
    let by_size = spans.len().div_ceil(max_per_request);
    let total: u64 = spans.iter().map(Span::len).sum();
    let worth = usize::try_from(total.div_ceil(min_parallel_bytes.max(1))).unwrap_or(usize::MAX);
    let requests = by_size.max(max_parallel.max(1).min(spans.len()).min(worth));
    let per = spans.len().div_ceil(requests);
    spans.chunks(per).map(<[Span]>::to_vec).collect()
}

/// The `Range` header value for `spans`.
pub(crate) fn range_header(spans: &[Span]) -> String {
    let parts: Vec<String> = spans
        .iter()
        .map(|s| format!("{}-{}", s.start, s.end - 1))
        .collect();
    format!("bytes={}", parts.join(","))
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into a span and the total.
pub(crate) fn parse_content_range(value: &str) -> Option<(Span, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((
        Span {
            start,
            end: end.checked_add(1)?,
        },
        total,
    ))
}

/// The boundary parameter of a `multipart/byteranges` content type, if it is one.
pub(crate) fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Describes spans like a `Range` header, for error messages.
pub(crate) fn describe(spans: &[Span]) -> String {
    if spans.is_empty() {
        return "nothing".to_string();
    }
    range_header(spans)
}

/// Cuts each wanted range out of the fetched pieces (disjoint spans), in the order asked;
/// on failure returns the spans that came, for the error message.
pub(crate) fn extract(
    ranges: &[(u64, u64)],
    mut pieces: Vec<(Span, Vec<u8>)>,
) -> Result<Vec<Vec<u8>>, Vec<Span>> {
    pieces.sort_by_key(|p| (p.0.start, p.0.end));
    // The piece holding each range: pieces answer disjoint spans, so it is the last one
    // starting at or before the range, found by binary search.
    let find = |offset: u64, end: u64| -> Option<usize> {
        let i = pieces.partition_point(|(s, _)| s.start <= offset);
        let j = i.checked_sub(1)?;
        (end <= pieces[j].0.end).then_some(j)
    };
    let mut holder = Vec::with_capacity(ranges.len());
    let mut uses = vec![0usize; pieces.len()];
    for &(offset, len) in ranges {
        if len == 0 {
            holder.push(None);
            continue;
        }
        let Some(j) = find(offset, offset + len) else {
            return Err(pieces.iter().map(|p| p.0).collect());
        };
        uses[j] += 1;
        holder.push(Some(j));
    }
    // A piece that is exactly one range, asked for once, is moved out rather than copied:
    // with exact ranges that is most of them, and it halves the memory a fetch needs.
    let mut out = Vec::with_capacity(ranges.len());
    for (&(offset, len), j) in ranges.iter().zip(holder) {
        let Some(j) = j else {
            out.push(Vec::new());
            continue;
        };
        let (span, data) = &mut pieces[j];
        if span.start == offset && span.len() == len && uses[j] == 1 {
            out.push(std::mem::take(data));
            continue;
        }
        let from = usize::try_from(offset - span.start).map_err(|_| Vec::new())?;
        let to = usize::try_from(offset + len - span.start).map_err(|_| Vec::new())?;
        match data.get(from..to) {
            Some(bytes) => out.push(bytes.to_vec()),
            None => return Err(pieces.iter().map(|p| p.0).collect()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{
        coalesce, extract, group, parse_content_range, range_header, Span, MIN_PARALLEL_BYTES,
    };

    #[test]
    fn extract_moves_exact_pieces_and_copies_shared_ones() {
        let piece = |start: u64, end: u64| {
            (
                Span { start, end },
                (start..end).map(|b| b as u8).collect::<Vec<u8>>(),
            )
        };
        // Out of order pieces; a range asked twice, one inside a coalesced piece, an empty
        // one.
        let pieces = vec![piece(100, 110), piece(0, 20), piece(50, 60)];
        let ranges = [(50, 10), (0, 5), (5, 15), (100, 10), (100, 10), (7, 0)];
        let got = extract(&ranges, pieces.clone()).unwrap();
        let want: Vec<Vec<u8>> = ranges
            .iter()
            .map(|&(o, l)| (o..o + l).map(|b| b as u8).collect())
            .collect();
        assert_eq!(got, want);
        // A range no piece holds: the spans that came are reported.
        let err = extract(&[(15, 10)], pieces).unwrap_err();
        assert_eq!(err.len(), 3);
    }

    #[test]
    fn coalesces_near_and_overlapping_ranges() {
        let spans = coalesce(&[(100, 10), (0, 10), (15, 5), (5, 10), (1000, 0)], 10);
        assert_eq!(
            spans,
            vec![
                Span { start: 0, end: 20 },
                Span {
                    start: 100,
                    end: 110
                }
            ]
        );
        assert_eq!(range_header(&spans), "bytes=0-19,100-109");
    }

    #[test]
    fn groups_use_parallelism_and_cap_ranges_per_request() {
        let mib = MIN_PARALLEL_BYTES;
        let big: Vec<Span> = (0..10)
            .map(|i| Span {
                start: i * 2 * mib,
                end: i * 2 * mib + mib,
            })
            .collect();
        assert_eq!(group(&big, 4, 32, MIN_PARALLEL_BYTES).len(), 4);
        assert_eq!(group(&big, 1, 3, MIN_PARALLEL_BYTES).len(), 4);
        assert_eq!(group(&big[..1], 4, 32, MIN_PARALLEL_BYTES).len(), 1);
        // Small fetches are not spread: one request, unless the range cap splits them.
        let small: Vec<Span> = (0..10)
            .map(|i| Span {
                start: i * 100,
                end: i * 100 + 1,
            })
            .collect();
        assert_eq!(group(&small, 4, 32, MIN_PARALLEL_BYTES).len(), 1);
        assert_eq!(group(&small, 4, 3, MIN_PARALLEL_BYTES).len(), 4);
        // Three MiB in ten spans: three requests are worth it, not four.
        let three: Vec<Span> = (0..10)
            .map(|i| Span {
                start: i * mib,
                end: i * mib + 3 * mib / 10,
            })
            .collect();
        assert_eq!(group(&three, 4, 32, MIN_PARALLEL_BYTES).len(), 3);
    }

    #[test]
    fn content_range_is_strict() {
        assert_eq!(
            parse_content_range("bytes 2-4/10"),
            Some((Span { start: 2, end: 5 }, Some(10)))
        );
        assert_eq!(parse_content_range("bytes 2-4/*").map(|r| r.1), Some(None));
        assert!(parse_content_range("bytes 4-2/10").is_none());
        assert!(parse_content_range("bytes 2-10/10").is_none());
        assert!(parse_content_range("items 2-4/10").is_none());
    }
}
