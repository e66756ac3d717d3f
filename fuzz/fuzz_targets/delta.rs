//! The zstd decoders of transport: `decompress_chunk` (a chunk frame) and `apply_delta`
//! (a delta against an old version). Never more output than declared; an accepted frame
//! gives exactly the declared length.
//!
//! Input: a mode byte (even: chunk, odd: delta), a u32 declared length (little-endian);
//! for a delta a u32 old-version length and the old version; then the frame.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use transport::chunk::CHUNK_MAX;
use transport::compress::{apply_delta, decompress_chunk};
use transport::Error;

/// Counts what is written, without keeping it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn take_u32(data: &mut &[u8]) -> Option<u32> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    *data = rest;
    Some(u32::from_le_bytes(*head))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let Some(declared) = take_u32(&mut rest) else {
        return;
    };
    if mode % 2 == 0 {
        // Lengths past the chunk maximum are refused up front; keep most inputs below.
        let expected = u64::from(declared % (CHUNK_MAX + 2));
        match decompress_chunk(rest, expected) {
            Ok(v) => assert_eq!(v.len() as u64, expected),
            Err(e) => assert!(matches!(
                e,
                Error::Decompress { .. } | Error::Store(store::Error::Invalid { .. })
            )),
        }
    } else {
        let Some(old_len) = take_u32(&mut rest) else {
            return;
        };
        let (old, frame) = rest.split_at((old_len as usize).min(rest.len()));
        // Bounded, so a zstd bomb costs the fuzzer little time.
        let expected = u64::from(declared % (1 << 22));
        let mut out = Counter(0);
        let r = apply_delta(old, &mut &frame[..], expected, &mut out);
        assert!(out.0 <= expected, "wrote past the declared length");
        match r {
            Ok(n) => assert!(n == expected && out.0 == expected),
            Err(e) => assert!(matches!(e, Error::Decompress { .. }), "{e:?}"),
        }
    }
});
