//! Chunking and zstd deltas for transport: the chunk-boundary golden vector, stability and
//! streaming properties, delta round trips, and refusals of hostile compressed input.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::io::Read;

use testkit::noise::xorshift_bytes;
use transport::chunk::{chunk_bytes, chunk_reader, Chunk, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};
use transport::compress::{
    apply_delta, compress_chunk, decompress_chunk, encode_delta, DecompressProblem,
    CHUNK_WINDOW_LOG, MAX_DELTA_WINDOW, MAX_DELTA_WINDOW_LOG,
};
use transport::Error;

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const FOUR_MIB: usize = 4 << 20;

fn ids_digest(chunks: &[Chunk]) -> String {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(c.id.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The chunk boundaries are part of the format: these exact cuts of the xorshift input.
#[test]
fn chunk_boundaries_golden_vector() {
    let data = xorshift_bytes(SEED, FOUR_MIB);
    let chunks = chunk_bytes(&data);
    let cuts: Vec<(u64, u32)> = chunks.iter().map(|c| (c.offset, c.len)).collect();
    if std::env::var_os("PRINT_GOLDEN").is_some() {
        println!("{cuts:?}\n{}", ids_digest(&chunks));
    }
    assert_eq!(cuts, GOLDEN_CUTS);
    assert_eq!(ids_digest(&chunks), GOLDEN_IDS_DIGEST);
    assert_eq!(
        chunks.iter().map(|c| u64::from(c.len)).sum::<u64>(),
        FOUR_MIB as u64
    );
    for c in &chunks {
        let bytes = &data[c.offset as usize..(c.offset + u64::from(c.len)) as usize];
        assert_eq!(c.id, store::ObjectId::of(bytes));
    }
}

const GOLDEN_CUTS: &[(u64, u32)] = &[
    (0, 22033),
    (22033, 22717),
    (44750, 41059),
    (85809, 55968),
    (141777, 33907),
    (175684, 70353),
    (246037, 78316),
    (324353, 24953),
    (349306, 15531),
    (364837, 20675),
    (385512, 12408),
    (397920, 62609),
    (460529, 9743),
    (470272, 33833),
    (504105, 9028),
    (513133, 19017),
    (532150, 35765),
    (567915, 23214),
    (591129, 43015),
    (634144, 53422),
    (687566, 76900),
    (764466, 61563),
    (826029, 35378),
    (861407, 12879),
    (874286, 83292),
    (957578, 39188),
    (996766, 21006),
    (1017772, 14111),
    (1031883, 30556),
    (1062439, 26407),
    (1088846, 13477),
    (1102323, 59090),
    (1161413, 38508),
    (1199921, 12767),
    (1212688, 45260),
    (1257948, 44789),
    (1302737, 17581),
    (1320318, 26424),
    (1346742, 60818),
    (1407560, 36940),
    (1444500, 34163),
    (1478663, 29509),
    (1508172, 45453),
    (1553625, 18793),
    (1572418, 50539),
    (1622957, 33312),
    (1656269, 12729),
    (1668998, 44443),
    (1713441, 30082),
    (1743523, 46687),
    (1790210, 78014),
    (1868224, 48788),
    (1917012, 45383),
    (1962395, 60666),
    (2023061, 10780),
    (2033841, 12037),
    (2045878, 38118),
    (2083996, 45041),
    (2129037, 51535),
    (2180572, 100898),
    (2281470, 27420),
    (2308890, 57620),
    (2366510, 37848),
    (2404358, 10213),
    (2414571, 38775),
    (2453346, 33753),
    (2487099, 19953),
    (2507052, 37450),
    (2544502, 54629),
    (2599131, 21940),
    (2621071, 83026),
    (2704097, 38516),
    (2742613, 60673),
    (2803286, 93025),
    (2896311, 33588),
    (2929899, 25589),
    (2955488, 14407),
    (2969895, 21416),
    (2991311, 35107),
    (3026418, 34310),
    (3060728, 34673),
    (3095401, 8605),
    (3104006, 38055),
    (3142061, 32953),
    (3175014, 32914),
    (3207928, 18998),
    (3226926, 39541),
    (3266467, 49903),
    (3316370, 18101),
    (3334471, 30030),
    (3364501, 34358),
    (3398859, 33136),
    (3431995, 34034),
    (3466029, 37823),
    (3503852, 41465),
    (3545317, 9242),
    (3554559, 14555),
    (3569114, 39586),
    (3608700, 52010),
    (3660710, 65612),
    (3726322, 40496),
    (3766818, 35844),
    (3802662, 35051),
    (3837713, 67152),
    (3904865, 41163),
    (3946028, 36508),
    (3982536, 22476),
    (4005012, 38484),
    (4043496, 15681),
    (4059177, 85152),
    (4144329, 49975),
];
const GOLDEN_IDS_DIGEST: &str = "e70d2b881ba753cc8dd5557e51b35e264f2c745bb577a649eb4960296a6576f6";

#[test]
fn chunk_sizes_are_bounded() {
    let data = xorshift_bytes(7, FOUR_MIB);
    let chunks = chunk_bytes(&data);
    let (last, body) = chunks.split_last().unwrap();
    assert!(last.len <= CHUNK_MAX);
    for c in body {
        assert!((CHUNK_MIN..=CHUNK_MAX).contains(&c.len), "{c:?}");
    }
    let avg = FOUR_MIB / chunks.len();
    assert!(
        avg as u32 > CHUNK_AVG / 2 && (avg as u32) < CHUNK_AVG * 2,
        "average {avg}"
    );
}

#[test]
fn insertion_near_start_changes_only_the_first_chunks() {
    let data = xorshift_bytes(SEED, FOUR_MIB);
    let mut edited = data.clone();
    edited.splice(
        1000..1000,
        b"a few inserted bytes near the start".iter().copied(),
    );
    let before = chunk_bytes(&data);
    let after = chunk_bytes(&edited);
    let old_ids: std::collections::HashSet<_> = before.iter().map(|c| c.id).collect();
    let changed: Vec<usize> = after
        .iter()
        .enumerate()
        .filter(|(_, c)| !old_ids.contains(&c.id))
        .map(|(i, _)| i)
        .collect();
    assert!(!changed.is_empty());
    assert!(changed.len() <= 2, "changed chunks {changed:?}");
    assert!(changed.iter().all(|&i| i < 2), "changed chunks {changed:?}");
}

/// A reader handing out bytes in small odd-sized pieces.
struct Dribble<'a>(&'a [u8]);

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(4099);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn streaming_and_in_memory_chunking_agree() {
    for (seed, len) in [
        (SEED, FOUR_MIB + 12345),
        (3, 100),
        (4, CHUNK_MIN as usize + 1),
    ] {
        let data = xorshift_bytes(seed, len);
        let mem = chunk_bytes(&data);
        let mut streamed = Vec::new();
        for item in chunk_reader(Dribble(&data)) {
            let (chunk, bytes) = item.unwrap();
            assert_eq!(
                bytes,
                &data[chunk.offset as usize..chunk.offset as usize + bytes.len()]
            );
            streamed.push(chunk);
        }
        assert_eq!(streamed, mem);
    }
    assert_eq!(chunk_reader(&[][..]).count(), 0);
    let small = chunk_bytes(&[1, 2, 3]);
    assert_eq!(small.len(), 1);
    assert_eq!((small[0].offset, small[0].len), (0, 3));
}

#[test]
fn chunk_read_error_is_reported() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let items: Vec<_> = chunk_reader(Broken).collect();
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(Error::Stream { .. })));
}

/// 2 MiB of random bytes and a new version with small edits: overwrites, an insertion,
/// a deletion.
fn similar_pair() -> (Vec<u8>, Vec<u8>) {
    let old = xorshift_bytes(11, 2 << 20);
    let mut new = old.clone();
    for at in [5_000usize, 700_000, 1_500_000] {
        for b in &mut new[at..at + 100] {
            *b = !*b;
        }
    }
    new.splice(1_000_000..1_000_000, xorshift_bytes(12, 500));
    new.drain(1_800_000..1_800_300);
    (old, new)
}

fn delta_of(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut delta = Vec::new();
    let n = encode_delta(old, &mut &new[..], new.len() as u64, &mut delta, 19).unwrap();
    assert_eq!(n, delta.len() as u64);
    delta
}

#[test]
fn delta_round_trip_is_much_smaller_than_plain_zstd() {
    let (old, new) = similar_pair();
    let delta = delta_of(&old, &new);
    let plain = zstd::bulk::compress(&new, 19).unwrap();
    assert!(
        delta.len() * 10 < plain.len(),
        "delta {} bytes, plain zstd {} bytes",
        delta.len(),
        plain.len()
    );
    let mut out = Vec::new();
    let n = apply_delta(&old, &mut &delta[..], new.len() as u64, &mut out).unwrap();
    assert_eq!(n, new.len() as u64);
    assert!(out == new);
}

#[test]
fn delta_of_empty_and_unrelated_files_round_trips() {
    for (old, new) in [
        (Vec::new(), Vec::new()),
        (Vec::new(), b"brand new".to_vec()),
        (xorshift_bytes(1, 5000), Vec::new()),
        (xorshift_bytes(1, 5000), xorshift_bytes(2, 70_000)),
    ] {
        let delta = delta_of(&old, &new);
        let mut out = Vec::new();
        apply_delta(&old, &mut &delta[..], new.len() as u64, &mut out).unwrap();
        assert!(out == new);
    }
}

#[test]
fn delta_applied_to_wrong_old_version_fails_its_checksum() {
    let (old, new) = similar_pair();
    let delta = delta_of(&old, &new);
    let mut wrong = old.clone();
    for b in &mut wrong[300_000..300_064] {
        *b ^= 0x5a;
    }
    let mut out = Vec::new();
    let err = apply_delta(&wrong, &mut &delta[..], new.len() as u64, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::Zstd(name),
                ..
            } if name.contains("checksum")
        ),
        "{err}"
    );
    assert!(
        out != new,
        "the output is wrong, and the caller's BLAKE3 would say so too"
    );
    assert_ne!(blake3::hash(&out), blake3::hash(&new));
}

/// A zstd frame header declaring a 2^31-byte window, then one raw last block.
fn frame_with_window_log_31() -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    f.push(0x00); // frame header descriptor: no content size, not single-segment
    f.push((31 - 10) << 3); // window descriptor: exponent 21, mantissa 0
    f.extend_from_slice(&[0x09, 0x00, 0x00]); // last raw block of 1 byte
    f.push(b'x');
    f
}

#[test]
fn window_log_31_frame_is_refused() {
    let frame = frame_with_window_log_31();
    let mut out = Vec::new();
    let err = apply_delta(b"old", &mut &frame[..], 1, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::Zstd(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(out.is_empty());
    assert!(decompress_chunk(&frame, 1).is_err());
    // The same frame with an acceptable window decodes: the refusal is about the window.
    let mut ok = frame.clone();
    ok[5] = ((CHUNK_WINDOW_LOG - 10) << 3) as u8;
    assert_eq!(decompress_chunk(&ok, 1).unwrap(), b"x");
    ok[5] = ((MAX_DELTA_WINDOW_LOG - 10) << 3) as u8;
    let mut out = Vec::new();
    apply_delta(b"old", &mut &ok[..], 1, &mut out).unwrap();
    assert_eq!(out, b"x");
    // One step over the chunk window: refused by the chunk decoder.
    ok[5] = ((CHUNK_WINDOW_LOG + 1 - 10) << 3) as u8;
    assert!(decompress_chunk(&ok, 1).is_err());
}

#[test]
fn zstd_bomb_stops_at_the_declared_size() {
    let bomb = zstd::stream::encode_all(std::io::repeat(0).take(100 << 20), 19).unwrap();
    assert!(bomb.len() < 8 * 1024, "bomb is {} bytes", bomb.len());
    let mut out = Vec::new();
    let err = apply_delta(&[], &mut &bomb[..], 1 << 20, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::TooLong {
                    expected: 1_048_576
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(out.len(), 1 << 20, "writes no more than the declared size");
    assert!(decompress_chunk(&bomb, u64::from(CHUNK_MIN)).is_err());
    // A chunk-sized bomb within the chunk window: stops at the declared size too.
    let small = compress_chunk(&vec![0u8; CHUNK_MAX as usize], 3);
    let err = decompress_chunk(&small, 1000).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::TooLong { expected: 1000 },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_short_and_trailing_deltas_are_refused() {
    let (old, new) = similar_pair();
    let delta = delta_of(&old, &new);
    let len = new.len() as u64;
    for cut in [0, 3, delta.len() / 2, delta.len() - 1] {
        let err = apply_delta(&old, &mut &delta[..cut], len, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Decompress {
                    problem: DecompressProblem::Truncated { .. },
                    ..
                }
            ),
            "cut at {cut}: {err}"
        );
    }
    let err = apply_delta(&old, &mut &delta[..], len + 1, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::TooShort { .. },
                ..
            }
        ),
        "{err}"
    );
    let mut trailing = delta.clone();
    trailing.push(0);
    let err = apply_delta(&old, &mut &trailing[..], len, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decompress {
                problem: DecompressProblem::TrailingData,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn encode_delta_refuses_huge_old_versions_and_wrong_lengths() {
    let huge = vec![0u8; MAX_DELTA_WINDOW as usize + 1];
    let err = encode_delta(&huge, &mut &b"x"[..], 1, &mut Vec::new(), 3).unwrap_err();
    assert!(matches!(err, Error::DeltaTooLarge { .. }), "{err}");
    let err = encode_delta(b"old", &mut &b"short"[..], 10, &mut Vec::new(), 3).unwrap_err();
    assert!(matches!(err, Error::Stream { .. }), "{err}");
    let err = encode_delta(b"old", &mut &b"longer"[..], 2, &mut Vec::new(), 3).unwrap_err();
    assert!(
        matches!(err, Error::Store(store::Error::Invalid { .. })),
        "{err}"
    );
}

#[test]
fn chunk_compression_round_trips_and_reuses_its_context() {
    let data = xorshift_bytes(5, 100_000);
    let text = b"hello hello hello hello hello".repeat(1000);
    for level in [3, 19, 3] {
        for input in [&data[..], &text[..], &[][..]] {
            let c = compress_chunk(input, level);
            assert_eq!(decompress_chunk(&c, input.len() as u64).unwrap(), input);
            assert!(decompress_chunk(&c[..c.len() / 2], input.len() as u64).is_err());
        }
    }
    // A failed decode leaves the thread's context usable.
    let c = compress_chunk(&text, 3);
    assert!(decompress_chunk(&c, 5).is_err());
    assert_eq!(decompress_chunk(&c, text.len() as u64).unwrap(), text);
    assert!(decompress_chunk(&c, u64::from(CHUNK_MAX) + 1).is_err());
}
