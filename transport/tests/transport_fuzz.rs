//! CI fuzz harness for the parsers of untrusted transport input (`docs/transport.md`;
//! THREATS sections C and E): the signed summary and its body, the trust state file, pack
//! indexes, chunk indexes, pack blobs and file assembly, chunk frames and deltas.
//!
//! Each parser is fed (a) valid encodings built with the public encoders and then mutated
//! (bit flips, byte overwrites, truncation, insertion, deletion, duplicated spans, u32 and
//! u64 fields set to extreme values, counts and lengths set huge or nudged by one) and
//! (b) random bytes behind the right tag. The properties:
//!
//! - nothing panics, and every input is answered quickly (forged counts and lengths are
//!   refused before anything is allocated for them);
//! - **canonical form**: whatever a decoder accepts re-encodes to exactly the input bytes
//!   and passes `validate`;
//! - a decoder refuses with a decode error (`Error::Store(store::Error::Decode)`, or `NewerFormat`);
//! - a summary accepted by `verify_summary` carries a body signed by a trusted key;
//! - a blob accepted by `verify_blob` hashes to its id; a file accepted by `assemble_file`
//!   is the signed content; a chunk or delta accepted by the zstd decoders has exactly the
//!   declared length, and no output ever goes past it.
//!
//! Case counts are modest so the whole file runs in seconds in a debug build. Set
//! `PROPTEST_CASES` for a longer local run. The coverage-guided targets of the same
//! properties live in `fuzz/` (cargo-fuzz; see `fuzz/README.md`).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use store::id::{CommitId, FileId, ObjectId};
use store::object::{Encoder, FileHeader, SignatureEntry, Xattrs};
use store::sign::{PublicKey, SigningKey, TrustedKeys};
use store::RefName;
use transport::chunk::{chunk_bytes, CHUNK_MAX, CHUNK_MIN};
use transport::compress::{
    apply_delta, compress_chunk, decompress_chunk, encode_delta, CHUNK_WINDOW_LOG,
    MAX_DELTA_WINDOW_LOG,
};
use transport::pack::{
    assemble_file, max_chunk_stored_len, verify_blob, BlobKind, ChunkIndex, ChunkRef, FileChunks,
    IndexEntry, PackIndex, MAX_ENTRIES, MAX_HEADER_LEN,
};
use transport::summary::{
    load_trust_state, parse_signed, save_trust_state, sign_summary, summary_message,
    verify_summary, DeltaEntry, PackEntry, RefEntry, SignedSummary, Summary, TrustState,
};
use transport::Error;

/// The proptest configuration: `cases` unless `PROPTEST_CASES` says otherwise. Failures
/// are not persisted to files: a case worth keeping becomes a plain `#[test]` below.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// Whatever a decoder refuses, it refuses with a decode error (`docs/transport.md`).
fn is_decode_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Store(store::Error::Decode { .. }) | Error::Store(store::Error::NewerFormat { .. })
    )
}

// ---- the mutation engine ----

/// u32 values that sit on the limits the decoders check.
const U32_EDGES: &[u32] = &[
    0,
    1,
    2,
    16,
    17,
    255,
    256,
    257,
    1024,
    1025,
    4095,
    4096,
    8191,
    8192,
    65_535,
    65_536,
    65_537,
    131_072,
    131_073,
    131_584,
    131_585,
    9_999_999,
    10_000_000,
    10_000_001,
    20 * 1024 * 1024,
    20 * 1024 * 1024 + 1,
    134_217_728,
    134_217_729,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX - 1,
    u32::MAX,
];

/// u64 values that sit on the limits the decoders check (sizes, offsets, times).
const U64_EDGES: &[u64] = &[
    0,
    1,
    2,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

/// One edit of an encoding. Positions are taken modulo the current length when applied.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        pos: usize,
        bit: u8,
    },
    SetByte {
        pos: usize,
        val: u8,
    },
    Truncate {
        pos: usize,
    },
    Insert {
        pos: usize,
        bytes: Vec<u8>,
    },
    Delete {
        pos: usize,
        len: usize,
    },
    /// Copy `len` bytes at `pos` and insert the copy at `to`.
    Duplicate {
        pos: usize,
        len: usize,
        to: usize,
    },
    /// Swap two spans of `len` bytes.
    Swap {
        a: usize,
        b: usize,
        len: usize,
    },
    SetU32 {
        pos: usize,
        val: u32,
    },
    SetU64 {
        pos: usize,
        val: u64,
    },
    /// Pick one of the little-endian u32s whose value is small (the counts and lengths of
    /// an encoding) and set it to `val`.
    SetCount {
        which: usize,
        val: u32,
    },
    /// The same, nudging the value by `delta` (off by one, off by a few).
    NudgeCount {
        which: usize,
        delta: i8,
    },
}

fn arb_u32_edge() -> impl Strategy<Value = u32> {
    prop_oneof![3 => prop::sample::select(U32_EDGES), 1 => any::<u32>()]
}

fn arb_u64_edge() -> impl Strategy<Value = u64> {
    prop_oneof![3 => prop::sample::select(U64_EDGES), 1 => any::<u64>()]
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>;
    prop_oneof![
        3 => (pos(), 0u8..8).prop_map(|(pos, bit)| Mutation::FlipBit { pos, bit }),
        3 => (pos(), any::<u8>()).prop_map(|(pos, val)| Mutation::SetByte { pos, val }),
        1 => pos().prop_map(|pos| Mutation::Truncate { pos }),
        2 => (pos(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(pos, bytes)| Mutation::Insert { pos, bytes }),
        2 => (pos(), 1usize..40).prop_map(|(pos, len)| Mutation::Delete { pos, len }),
        2 => (pos(), 1usize..120, pos())
            .prop_map(|(pos, len, to)| Mutation::Duplicate { pos, len, to }),
        1 => (pos(), pos(), 1usize..40).prop_map(|(a, b, len)| Mutation::Swap { a, b, len }),
        2 => (pos(), arb_u32_edge()).prop_map(|(pos, val)| Mutation::SetU32 { pos, val }),
        2 => (pos(), arb_u64_edge()).prop_map(|(pos, val)| Mutation::SetU64 { pos, val }),
        4 => (pos(), arb_u32_edge()).prop_map(|(which, val)| Mutation::SetCount { which, val }),
        3 => (pos(), -3i8..=3).prop_map(|(which, delta)| Mutation::NudgeCount { which, delta }),
    ]
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(arb_mutation(), 1..5)
}

/// Offsets of the little-endian u32s whose value is at most 65 536: in these encodings,
/// the counts and length prefixes (and some bytes of ids, which do no harm).
fn small_u32_positions(b: &[u8]) -> Vec<usize> {
    (0..b.len().saturating_sub(3))
        .filter(|&i| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) <= 65_536)
        .collect()
}

fn put(b: &mut [u8], pos: usize, val: &[u8]) {
    if b.len() >= val.len() {
        let at = pos % (b.len() - val.len() + 1);
        b[at..at + val.len()].copy_from_slice(val);
    }
}

fn apply(mut b: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = b.len();
        match m {
            Mutation::FlipBit { pos, bit } if len > 0 => b[pos % len] ^= 1 << bit,
            Mutation::SetByte { pos, val } if len > 0 => b[pos % len] = *val,
            Mutation::Truncate { pos } => b.truncate(pos % (len + 1)),
            Mutation::Insert { pos, bytes } => {
                let at = pos % (len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete { pos, len: n } if len > 0 => {
                let at = pos % len;
                let end = (at + n).min(len);
                b.drain(at..end);
            }
            Mutation::Duplicate { pos, len: n, to } if len > 0 => {
                let at = pos % len;
                let span = b[at..(at + n).min(len)].to_vec();
                let to = to % (len + 1);
                b.splice(to..to, span);
            }
            Mutation::Swap {
                a,
                b: other,
                len: n,
            } if len >= 2 * n => {
                let a = a % (len - n + 1);
                let c = other % (len - n + 1);
                if a + n <= c || c + n <= a {
                    for i in 0..*n {
                        b.swap(a + i, c + i);
                    }
                }
            }
            Mutation::SetU32 { pos, val } => put(&mut b, *pos, &val.to_le_bytes()),
            Mutation::SetU64 { pos, val } => put(&mut b, *pos, &val.to_le_bytes()),
            Mutation::SetCount { which, val } => {
                let p = small_u32_positions(&b);
                if !p.is_empty() {
                    let at = p[which % p.len()];
                    b[at..at + 4].copy_from_slice(&val.to_le_bytes());
                }
            }
            Mutation::NudgeCount { which, delta } => {
                let p = small_u32_positions(&b);
                if !p.is_empty() {
                    let at = p[which % p.len()];
                    let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                    let v = v.wrapping_add_signed(i32::from(*delta));
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => {}
        }
    }
    b
}

/// Runs `f` and fails if it took longer than `limit`: a parser that allocates or loops on
/// a forged count is slow long before it runs out of memory.
fn quick<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took < limit, "{what} took {took:?}");
    r
}

// ---- shared generators ----

fn arb_id() -> impl Strategy<Value = ObjectId> {
    prop_oneof![
        (0u8..4).prop_map(|b| ObjectId::from_bytes([b; 32])),
        any::<[u8; 32]>().prop_map(ObjectId::from_bytes),
    ]
}

fn arb_xattrs() -> impl Strategy<Value = Xattrs> {
    prop::collection::btree_map(
        prop_oneof![
            Just(b"security.capability".to_vec()),
            Just(b"user.a".to_vec()),
            prop::collection::vec(1u8..=255, 1..12),
        ],
        prop::collection::vec(any::<u8>(), 0..24),
        0..3,
    )
    .prop_map(|m| Xattrs::new(m.into_iter().collect()).expect("valid xattrs"))
}

fn regular_header(size: u64, xattrs: Xattrs) -> Vec<u8> {
    FileHeader::regular(0o644, 0, 0, size, xattrs)
        .expect("valid header")
        .encode()
}

// ---- the summary ----

fn trusted_key() -> SigningKey {
    SigningKey::from_bytes(&[0x01; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[0x02; 32])
}

fn trusted_set() -> TrustedKeys {
    let mut t = TrustedKeys::new();
    t.insert("release", PublicKey::from(&trusted_key()));
    t
}

fn arb_ref_name() -> impl Strategy<Value = RefName> {
    "[a-z0-9][a-zA-Z0-9._+@-]{0,6}(/[a-z0-9][a-zA-Z0-9._+@-]{0,6}){0,2}"
        .prop_filter_map("valid ref name", |s| RefName::new(s).ok())
}

fn arb_ref_entry() -> impl Strategy<Value = RefEntry> {
    (
        arb_ref_name(),
        arb_id(),
        prop::option::of("\\PC{1,10}"),
        arb_u64_edge(),
        any::<u64>(),
        (arb_id(), any::<u64>(), arb_id(), any::<u64>()),
    )
        .prop_map(
            |(name, commit, version, timestamp, download_size, (ci, cis, si, sis))| RefEntry {
                name,
                commit: CommitId(commit),
                version,
                timestamp,
                download_size,
                chunk_index_id: ci,
                chunk_index_size: cis,
                signatures_id: si,
                signatures_size: sis,
            },
        )
}

fn arb_summary() -> impl Strategy<Value = Summary> {
    (
        arb_u64_edge(),
        0u64..u64::MAX - 1,
        1u64..1 << 40,
        prop::collection::vec(arb_ref_entry(), 0..4),
        prop::collection::btree_map(arb_id(), (any::<u64>(), arb_id(), any::<u64>()), 0..3),
        prop::collection::btree_map((arb_id(), arb_id()), (any::<u64>(), arb_id()), 0..3),
        prop::collection::btree_map("\\PC{1,8}", "\\PC{0,12}", 0..3),
    )
        .prop_map(|(serial, timestamp, life, refs, packs, deltas, meta)| {
            let mut refs = refs;
            refs.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));
            refs.dedup_by(|a, b| a.name == b.name);
            // A ref cannot also be a directory of refs (`a` and `a/b`).
            let names: Vec<String> = refs.iter().map(|r| format!("{}/", r.name)).collect();
            refs.retain(|r| {
                !names
                    .iter()
                    .any(|d| r.name.as_str().starts_with(d.as_str()))
            });
            Summary {
                serial,
                timestamp,
                expires: timestamp.saturating_add(life),
                channel: (serial % 3 != 0).then(|| format!("c{}", serial % 5)),
                reset_clock: serial % 2 == 1,
                refs,
                packs: packs
                    .into_iter()
                    .map(|(id, (size, index_id, index_size))| PackEntry {
                        id,
                        size,
                        index_id,
                        index_size,
                    })
                    .collect(),
                deltas: deltas
                    .into_iter()
                    .filter(|((from, to), _)| from != to)
                    .map(|((from, to), (size, id))| DeltaEntry {
                        from: CommitId(from),
                        to: CommitId(to),
                        size,
                        id,
                    })
                    .collect(),
                // BTreeMap<String, _> iterates in byte order of the keys.
                metadata: meta.into_iter().collect(),
            }
        })
}

/// A signed summary file assembled by hand around any body and any signatures.
fn envelope(body: &[u8], sigs: &[SignatureEntry]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.raw(b"USSF");
    e.u8(1);
    e.bytes(body);
    e.count(sigs.len());
    for s in sigs {
        e.raw(&s.public_key);
        e.raw(&s.signature);
    }
    e.finish()
}

fn sign_body(key: &SigningKey, body: &[u8]) -> SignatureEntry {
    SignatureEntry {
        public_key: key.verifying_key().to_bytes(),
        signature: key.sign(&summary_message(body)).to_bytes(),
    }
}

/// The canonical-form checks of a parsed signed summary against the file it came from.
fn check_signed_canonical(file: &[u8], p: &SignedSummary<'_>) {
    // Both format versions read share the envelope's layout; only the version byte differs.
    assert!(matches!(file[4], 1 | 2), "envelope version {}", file[4]);
    assert_eq!(
        envelope(p.body, &p.signatures)[5..],
        file[5..],
        "envelope not canonical"
    );
    assert_eq!(
        canonical(&p.summary, p.body[4]),
        p.body,
        "body not canonical"
    );
    p.summary.validate().expect("an accepted summary is valid");
}

/// The canonical encoding of `s` in format `version`: version 1 lacks the channel and the
/// reset-clock flag (the two bytes after `expires`, both 0 when absent).
fn canonical(s: &Summary, version: u8) -> Vec<u8> {
    let mut b = s.encode();
    if version == 1 {
        assert!(
            s.channel.is_none() && !s.reset_clock,
            "a version 1 body has neither"
        );
        assert_eq!(b[29..31], [0, 0]);
        b.drain(29..31);
        b[4] = 1;
    }
    b
}

/// Decode a (possibly mutated) body and check the properties; returns what decoded.
fn check_summary_body(bytes: &[u8]) -> Option<Summary> {
    match quick("Summary::decode", Duration::from_secs(2), || {
        Summary::decode(bytes)
    }) {
        Ok(s) => {
            assert_eq!(
                canonical(&s, bytes[4]),
                bytes,
                "accepted summary body is not canonical"
            );
            s.validate().expect("an accepted summary is valid");
            Some(s)
        }
        Err(e) => {
            assert!(is_decode_error(&e), "not a decode error: {e:?}");
            None
        }
    }
}

proptest! {
    #![proptest_config(config(768))]

    /// Mutated bodies: decoding is canonical, and `verify_summary` (the body re-signed by
    /// the trusted key) accepts exactly the bodies that decode and are fresh.
    #[test]
    fn summary_body_mutations(s in arb_summary(), edits in arb_mutations()) {
        let body = apply(s.encode(), &edits);
        let decoded = check_summary_body(&body);
        let file = envelope(&body, &[sign_body(&trusted_key(), &body)]);
        match parse_signed(&file) {
            Ok(p) => {
                check_signed_canonical(&file, &p);
                prop_assert_eq!(Some(&p.summary), decoded.as_ref());
            }
            Err(_) => prop_assert!(decoded.is_none()),
        }
        let now = s.timestamp;
        let v = verify_summary(&file, &trusted_set(), &TrustState::default(), now);
        match (&decoded, v) {
            (Some(d), Ok(v)) => {
                prop_assert_eq!(&v.summary, d);
                prop_assert!(d.expires > now);
                prop_assert_eq!(v.body_hash, *blake3::hash(&body).as_bytes());
            }
            (Some(d), Err(e)) => prop_assert!(
                matches!(e, Error::SummaryExpired { .. }) && d.expires <= now,
                "a valid, signed body refused: {e}"
            ),
            (None, Ok(_)) => prop_assert!(false, "verify_summary accepted an undecodable body"),
            (None, Err(_)) => {}
        }
    }

    /// Mutated signed files: what parses is canonical, and what verifies carries exactly
    /// the body that was signed (THREATS A1-A6).
    #[test]
    fn signed_summary_mutations(
        s in arb_summary(),
        also_other in any::<bool>(),
        edits in arb_mutations(),
    ) {
        let (k1, k2) = (trusted_key(), other_key());
        let keys: Vec<&SigningKey> = if also_other { vec![&k1, &k2] } else { vec![&k1] };
        let original = sign_summary(&s, &keys).unwrap();
        let signed_body = s.encode();
        let file = apply(original.clone(), &edits);
        match quick("parse_signed", Duration::from_secs(2), || parse_signed(&file)) {
            Ok(p) => check_signed_canonical(&file, &p),
            Err(e) => prop_assert!(
                is_decode_error(&e) || matches!(e, Error::SummaryTooLarge { .. }),
                "{e:?}"
            ),
        }
        let now = s.timestamp;
        if let Ok(v) = verify_summary(&file, &trusted_set(), &TrustState::default(), now) {
            prop_assert_eq!(v.body_hash, *blake3::hash(&signed_body).as_bytes());
            prop_assert_eq!(&v.summary, &s);
            prop_assert_eq!(v.signed_by, vec!["release".to_string()]);
            // Whatever verifies also parses, canonically.
            let p = parse_signed(&file).expect("a verified file parses");
            check_signed_canonical(&file, &p);
        }
        // Against a state that accepted the original: only the same body is accepted, as
        // unchanged; any other serial-equal body is equivocation, a smaller one rollback.
        let state = TrustState {
            last_serial: Some(s.serial),
            last_body_hash: Some(*blake3::hash(&signed_body).as_bytes()),
            latest_known_time: now,
            channel: s.channel.clone(),
        };
        if let Ok(v) = verify_summary(&file, &trusted_set(), &state, now) {
            prop_assert!(v.unchanged);
            prop_assert_eq!(&v.summary, &s);
        }
        // An untrusted signer's signature counts for nothing.
        let mut only_other = TrustedKeys::new();
        only_other.insert("other", PublicKey::from(&k2));
        if let Ok(v) = verify_summary(&file, &only_other, &TrustState::default(), now) {
            prop_assert!(also_other, "verified by a key that never signed");
            prop_assert_eq!(&v.summary, &s);
        }
    }

    #[test]
    fn summary_random_bytes(
        tag in prop::sample::select(vec![&b"USUM\x01"[..], b"USSF\x01", b"USUM\x02", b"USSF\x00"]),
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let bytes = [tag, &rest].concat();
        if tag.starts_with(b"USUM") {
            check_summary_body(&bytes);
        } else if let Ok(p) = parse_signed(&bytes) {
            check_signed_canonical(&bytes, &p);
        }
        prop_assert!(verify_summary(&bytes, &trusted_set(), &TrustState::default(), 0).is_err());
    }
}

/// Signed files whose every count and length field is set huge: refused, quickly.
#[test]
fn summary_with_huge_counts_is_refused_quickly() {
    let s = Summary {
        serial: 9,
        timestamp: 1_000,
        expires: 2_000,
        refs: vec![RefEntry {
            name: RefName::new("os/stable").unwrap(),
            commit: CommitId(ObjectId::from_bytes([3; 32])),
            version: Some("1.0".into()),
            timestamp: 5,
            download_size: 6,
            chunk_index_id: ObjectId::from_bytes([4; 32]),
            chunk_index_size: 7,
            signatures_id: ObjectId::from_bytes([5; 32]),
            signatures_size: 8,
        }],
        metadata: vec![("k".into(), "v".into())],
        ..Summary::default()
    };
    let file = sign_summary(&s, &[&trusted_key()]).unwrap();
    let body = s.encode();
    for (bytes, is_body) in [(&file, false), (&body, true)] {
        for at in small_u32_positions(bytes) {
            for val in [u32::MAX, 0x8000_0000, 10_000_000, 65_537, 65_536, 16, 17] {
                let mut b = bytes.clone();
                b[at..at + 4].copy_from_slice(&val.to_le_bytes());
                if is_body {
                    check_summary_body(&b);
                } else {
                    let r = quick("parse_signed", Duration::from_secs(2), || parse_signed(&b));
                    if let Ok(p) = r {
                        check_signed_canonical(&b, &p);
                    }
                }
            }
        }
    }
}

// ---- the trust state file ----

/// Valid trust state files, as `save_trust_state` writes them.
fn trust_state_files() -> &'static Vec<Vec<u8>> {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        [
            TrustState::default(),
            TrustState {
                last_serial: Some(7),
                last_body_hash: Some([0xAB; 32]),
                latest_known_time: 1_700_000_000,
                channel: Some("stable".into()),
            },
            TrustState {
                last_serial: Some(u64::MAX),
                last_body_hash: Some([0; 32]),
                latest_known_time: u64::MAX,
                channel: None,
            },
        ]
        .iter()
        .map(|s| {
            save_trust_state(&path, s).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn trust_state_mutations(
        which in 0usize..3,
        edits in arb_mutations(),
        random in prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
    ) {
        let bytes = match random {
            Some(r) => [&b"UTST\x01"[..], &r].concat(),
            None => apply(trust_state_files()[which].clone(), &edits),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, &bytes).unwrap();
        match load_trust_state(&path) {
            Ok(Some(s)) => {
                // Accepted: saving it again writes exactly these bytes.
                let again = dir.path().join("again");
                save_trust_state(&again, &s).unwrap();
                prop_assert_eq!(std::fs::read(&again).unwrap(), bytes);
            }
            Ok(None) => prop_assert!(false, "an existing file read as no state"),
            Err(e) => prop_assert!(matches!(e, Error::TrustStateCorrupt { .. }), "{e:?}"),
        }
    }
}

#[test]
fn trust_state_valid_files_round_trip_and_huge_files_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    for f in trust_state_files() {
        std::fs::write(&path, f).unwrap();
        let s = load_trust_state(&path).unwrap().unwrap();
        let again = dir.path().join("again");
        save_trust_state(&again, &s).unwrap();
        assert_eq!(&std::fs::read(&again).unwrap(), f);
    }
    // A sparse 64 GiB file is refused without reading it.
    let big = std::fs::File::create(&path).unwrap();
    big.set_len(64 << 30).unwrap();
    drop(big);
    let err = quick("load_trust_state", Duration::from_secs(2), || {
        load_trust_state(&path)
    })
    .unwrap_err();
    assert!(matches!(err, Error::TrustStateCorrupt { .. }), "{err}");
    // A directory where the file should be: an error, not a panic nor "no state".
    assert!(load_trust_state(dir.path()).is_err());
}

// ---- pack indexes ----

fn arb_pack_index() -> impl Strategy<Value = PackIndex> {
    let entry = (1u8..=5, arb_id(), any::<u32>(), any::<u32>(), any::<u16>());
    (arb_id(), prop::collection::vec(entry, 0..12)).prop_map(|(pack_id, spec)| {
        let max_chunk = max_chunk_stored_len();
        let mut seen = BTreeSet::new();
        let mut blobs: Vec<(u16, IndexEntry)> = Vec::new();
        for (k, id, a, b, order) in spec {
            let kind = BlobKind::from_u8(k).unwrap();
            if !seen.insert((kind, id)) {
                continue;
            }
            let (stored, raw) = if kind == BlobKind::Chunk {
                (a % max_chunk + 1, b % CHUNK_MAX + 1)
            } else {
                // Mostly small, sometimes right at the kind's cap.
                let raw = if b % 8 == 0 {
                    kind.max_raw_len()
                } else {
                    a % 5000 + 1
                };
                (raw, raw)
            };
            let e = IndexEntry {
                kind,
                id,
                offset: 0,
                stored_len: stored,
                raw_len: raw,
            };
            blobs.push((order, e));
        }
        // Lay the blobs out in an order unrelated to (kind, id), as walk order is.
        blobs.sort_by_key(|(order, e)| (*order, e.kind, e.id));
        let mut offset = 0u64;
        let entries: Vec<IndexEntry> = blobs
            .into_iter()
            .map(|(_, mut e)| {
                e.offset = offset;
                offset += u64::from(e.stored_len);
                e
            })
            .collect();
        PackIndex::new(pack_id, offset, entries).expect("a valid index")
    })
}

fn check_pack_index(bytes: &[u8]) -> Option<PackIndex> {
    match quick("PackIndex::decode", Duration::from_secs(2), || {
        PackIndex::decode(bytes)
    }) {
        Ok(idx) => {
            assert_eq!(idx.encode(), bytes, "accepted pack index is not canonical");
            // `PackIndex::new` is the validator: it accepts the same table.
            let again =
                PackIndex::new(*idx.pack_id(), idx.pack_size(), idx.entries().to_vec()).unwrap();
            assert_eq!(again, idx);
            // Every range is inside the pack, and the blobs tile it.
            let mut total = 0u64;
            for e in idx.entries() {
                assert!(e.range().end <= idx.pack_size());
                total += u64::from(e.stored_len);
                assert_eq!(idx.find(e.kind, &e.id), Some(e));
            }
            assert_eq!(total, idx.pack_size());
            Some(idx)
        }
        Err(e) => {
            assert!(is_decode_error(&e), "not a decode error: {e:?}");
            None
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn pack_index_mutations(idx in arb_pack_index(), edits in arb_mutations()) {
        let bytes = idx.encode();
        prop_assert_eq!(check_pack_index(&bytes), Some(idx));
        check_pack_index(&apply(bytes, &edits));
    }

    #[test]
    fn pack_index_random_bytes(
        rest in prop::collection::vec(any::<u8>(), 0..400),
        count in prop::option::of(arb_u32_edge()),
    ) {
        let mut bytes = [&b"UPIX\x01"[..], &rest].concat();
        if let Some(n) = count {
            put_at(&mut bytes, 45, &n.to_le_bytes());
        }
        check_pack_index(&bytes);
    }
}

/// Overwrite bytes at a fixed offset, if the buffer reaches it.
fn put_at(b: &mut [u8], at: usize, val: &[u8]) {
    if b.len() >= at + val.len() {
        b[at..at + val.len()].copy_from_slice(val);
    }
}

// ---- chunk indexes ----

fn arb_file_chunks() -> impl Strategy<Value = FileChunks> {
    let regular = (
        arb_id(),
        prop::collection::vec((arb_id(), CHUNK_MIN..=CHUNK_MAX), 0..3),
        prop::option::of((arb_id(), 1u32..=CHUNK_MAX)),
        arb_xattrs(),
    )
        .prop_map(|(id, full, last, xattrs)| {
            let mut chunks: Vec<ChunkRef> = full
                .into_iter()
                .map(|(id, len)| ChunkRef { id, len })
                .collect();
            if let Some((id, len)) = last {
                chunks.push(ChunkRef { id, len });
            }
            let size = chunks.iter().map(|c| u64::from(c.len)).sum();
            FileChunks {
                id: FileId(id),
                header: regular_header(size, xattrs),
                chunks,
            }
        });
    let symlink =
        (arb_id(), "[a-z/.]{1,20}", arb_xattrs()).prop_map(|(id, target, xattrs)| FileChunks {
            id: FileId(id),
            header: FileHeader::symlink(target.into_bytes(), 0, 0, xattrs)
                .unwrap()
                .encode(),
            chunks: vec![],
        });
    prop_oneof![3 => regular, 1 => symlink]
}

fn arb_chunk_index() -> impl Strategy<Value = ChunkIndex> {
    (
        arb_id(),
        prop::collection::btree_set((2u8..=3, arb_id()), 0..4),
        prop::collection::vec(arb_file_chunks(), 0..4),
    )
        .prop_map(|(commit, meta, files)| {
            let mut files = files;
            files.sort_by_key(|f| f.id);
            files.dedup_by_key(|f| f.id);
            ChunkIndex {
                commit: CommitId(commit),
                metadata: meta
                    .into_iter()
                    .map(|(k, id)| (BlobKind::from_u8(k).unwrap(), id))
                    .collect(),
                files,
            }
        })
}

fn check_chunk_index(bytes: &[u8]) -> Option<ChunkIndex> {
    match quick("ChunkIndex::decode", Duration::from_secs(2), || {
        ChunkIndex::decode(bytes)
    }) {
        Ok(ci) => {
            assert_eq!(ci.encode(), bytes, "accepted chunk index is not canonical");
            ci.validate().expect("an accepted chunk index is valid");
            for f in &ci.files {
                let h = f.decode_header().unwrap();
                let total: u64 = f.chunks.iter().map(|c| u64::from(c.len)).sum();
                assert_eq!(total, h.size);
                assert!(f.header.len() <= MAX_HEADER_LEN as usize);
            }
            assert!(ci.metadata.len() <= MAX_ENTRIES && ci.files.len() <= MAX_ENTRIES);
            Some(ci)
        }
        Err(e) => {
            assert!(is_decode_error(&e), "not a decode error: {e:?}");
            None
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn chunk_index_mutations(ci in arb_chunk_index(), edits in arb_mutations()) {
        let bytes = ci.encode();
        prop_assert_eq!(check_chunk_index(&bytes), Some(ci));
        check_chunk_index(&apply(bytes, &edits));
    }

    #[test]
    fn chunk_index_random_bytes(rest in prop::collection::vec(any::<u8>(), 0..400)) {
        check_chunk_index(&[&b"UCIX\x01"[..], &rest].concat());
    }
}

/// A file whose header declares a huge size: the chunk count bound follows the size, but
/// the count is still checked against the bytes that remain.
#[test]
fn chunk_index_with_huge_sizes_and_counts_is_refused_quickly() {
    let ci = ChunkIndex {
        commit: CommitId(ObjectId::from_bytes([1; 32])),
        metadata: vec![(BlobKind::DirTree, ObjectId::from_bytes([2; 32]))],
        files: vec![FileChunks {
            id: FileId(ObjectId::from_bytes([3; 32])),
            header: regular_header(u64::MAX, Xattrs::empty()),
            chunks: vec![],
        }],
    };
    let bytes = ci.encode();
    assert!(check_chunk_index(&bytes).is_none(), "sizes do not add up");
    for at in small_u32_positions(&bytes) {
        for val in [u32::MAX, 10_000_000, 10_000_001, 1 << 20] {
            let mut b = bytes.clone();
            b[at..at + 4].copy_from_slice(&val.to_le_bytes());
            check_chunk_index(&b);
        }
    }
}

// ---- pack blobs and file assembly ----

/// Content with some repetition, so zstd has something to do.
fn arb_content(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (prop::collection::vec(any::<u8>(), 1..16), 0..max).prop_map(|(unit, n)| unit
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()),
    ]
}

/// A pack held in memory: its bytes and its index.
#[derive(Debug)]
struct MemPack {
    pack: Vec<u8>,
    index: PackIndex,
}

fn build_pack(chunks: &[Vec<u8>], metadata: &[Vec<u8>], headers: &[u64]) -> MemPack {
    let mut pack = Vec::new();
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |kind: BlobKind, id: ObjectId, stored: &[u8], raw_len: usize| {
        if stored.is_empty() || !seen.insert((kind, id)) {
            return;
        }
        entries.push(IndexEntry {
            kind,
            id,
            offset: pack.len() as u64,
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
        });
        pack.extend_from_slice(stored);
    };
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        push(
            BlobKind::Chunk,
            ObjectId::of(c),
            &compress_chunk(c, 1),
            c.len(),
        );
    }
    for (i, m) in metadata.iter().enumerate() {
        let kind = [BlobKind::Commit, BlobKind::DirTree, BlobKind::DirMeta][i % 3];
        push(kind, ObjectId::of(m), m, m.len());
    }
    for &size in headers {
        let h = regular_header(size, Xattrs::empty());
        let id = ObjectId::of(&[&h[..], &vec![0u8; size as usize]].concat());
        push(BlobKind::FileHeader, id, &h, h.len());
    }
    let index = PackIndex::new(ObjectId::of(&pack), pack.len() as u64, entries).unwrap();
    MemPack { pack, index }
}

/// The properties of a blob `verify_blob` accepted.
fn check_accepted_blob(entry: &IndexEntry, stored: &[u8], raw: &[u8]) {
    assert_eq!(stored.len(), entry.stored_len as usize);
    match entry.kind {
        BlobKind::FileHeader => {
            let h = FileHeader::decode(raw).expect("an accepted header decodes");
            assert_eq!(h.encode(), raw, "an accepted header is canonical");
        }
        BlobKind::Chunk => {
            assert_eq!(
                ObjectId::of(raw),
                entry.id,
                "accepted chunk does not hash to its id"
            );
            assert_eq!(raw.len(), entry.raw_len as usize);
        }
        _ => {
            // Metadata is stored as is; that its raw length equals its stored length is
            // an invariant of the index (`PackIndex::new`/`decode`), not of this call.
            assert_eq!(
                ObjectId::of(raw),
                entry.id,
                "accepted blob does not hash to its id"
            );
            assert_eq!(raw, stored);
        }
    }
}

fn arb_mem_pack() -> impl Strategy<Value = MemPack> {
    (
        prop::collection::vec(arb_content(3000), 0..4),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..100), 0..3),
        prop::collection::vec(0u64..64, 0..2),
    )
        .prop_map(|(c, m, h)| build_pack(&c, &m, &h))
}

proptest! {
    #![proptest_config(config(384))]

    /// Damaged pack bytes and lying entries: `verify_blob` accepts only blobs that are
    /// what their entry says (THREATS C6).
    #[test]
    fn pack_blob_mutations(
        p in arb_mem_pack(),
        edits in arb_mutations(),
        raw_len in prop::option::of(arb_u32_edge()),
        stored_len in prop::option::of(arb_u32_edge()),
    ) {
        let MemPack { pack, index } = p;
        for e in index.entries() {
            let good = &pack[e.offset as usize..e.range().end as usize];
            let raw = verify_blob(&index, e, good).expect("an intact blob verifies");
            check_accepted_blob(e, good, &raw);

            let damaged = apply(good.to_vec(), &edits);
            if let Ok(raw) = quick("verify_blob", Duration::from_secs(2), || {
                verify_blob(&index, e, &damaged)
            }) {
                check_accepted_blob(e, &damaged, &raw);
                if e.kind != BlobKind::FileHeader {
                    prop_assert_eq!(&raw, &verify_blob(&index, e, good).unwrap());
                }
            }
            // An entry that lies about the lengths (as a hand-made one could).
            let lying = IndexEntry {
                raw_len: raw_len.unwrap_or(e.raw_len),
                stored_len: stored_len.unwrap_or(e.stored_len),
                ..*e
            };
            if let Ok(raw) = quick("verify_blob", Duration::from_secs(2), || {
                verify_blob(&index, &lying, good)
            }) {
                check_accepted_blob(&lying, good, &raw);
            }
        }
        // After failures on this thread, the reused chunk decoder still works.
        for e in index.entries().iter().filter(|e| e.kind == BlobKind::Chunk) {
            let good = &pack[e.offset as usize..e.range().end as usize];
            prop_assert!(verify_blob(&index, e, good).is_ok());
        }
    }

    /// `assemble_file` accepts exactly the header and content the file id names, however
    /// the content is cut, and nothing else (THREATS C6).
    #[test]
    fn assemble_file_mutations(
        content in arb_content(40_000),
        header_edits in prop::option::of(arb_mutations()),
        chunk_edit in 0u8..8,
        pick in any::<usize>(),
        cut in any::<usize>(),
    ) {
        let header = regular_header(content.len() as u64, Xattrs::empty());
        let id = FileId(ObjectId::of(&[&header[..], &content].concat()));
        let mut chunks: Vec<Vec<u8>> = chunk_bytes(&content)
            .iter()
            .map(|c| content[c.offset as usize..c.offset as usize + c.len as usize].to_vec())
            .collect();
        let original_header = header.clone();
        let header = match header_edits {
            Some(edits) => apply(header, &edits),
            None => header,
        };
        let n = chunks.len();
        match chunk_edit {
            0 if n > 0 => { chunks.remove(pick % n); }
            1 if n > 0 => { let c = chunks[pick % n].clone(); chunks.insert(pick % n, c); }
            2 if n > 1 => chunks.swap(pick % n, (pick / n) % n),
            3 if n > 0 => {
                let c = &mut chunks[pick % n];
                let i = cut % c.len();
                c[i] ^= 0x40;
            }
            4 if n > 0 => { chunks[pick % n].push(0); }
            5 if n > 0 => {
                // Cut one chunk in two: the same content, cut differently, is fine.
                let c = chunks.remove(pick % n);
                let at = cut % (c.len() + 1);
                chunks.insert(pick % n, c[at..].to_vec());
                chunks.insert(pick % n, c[..at].to_vec());
            }
            6 => chunks.push(vec![1]),
            _ => {}
        }
        // Accepted exactly when the header and the concatenated chunks are the originals.
        let intact = header == original_header && chunks.concat() == content;
        let mut out = Vec::new();
        let r = assemble_file(&id, &header, &chunks, &mut out);
        prop_assert_eq!(r.is_ok(), intact, "{:?}", r);
        match r {
            Ok(h) => {
                prop_assert_eq!(&out, &content);
                prop_assert_eq!(h.size, content.len() as u64);
                prop_assert_eq!(ObjectId::of(&[&header[..], &out].concat()), id.0);
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::Store(store::Error::Corrupt { .. })), "{e:?}");
                // Content written before the refusal never exceeds the declared size.
                if let Ok(h) = FileHeader::decode(&header) {
                    prop_assert!(out.len() as u64 <= h.size);
                }
            }
        }
    }
}

// ---- zstd frames: chunks and deltas ----

/// An old version, a new version, and the delta of the new against the old.
type DeltaCase = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Delta cases, made once.
fn deltas() -> &'static Vec<DeltaCase> {
    static DELTAS: OnceLock<Vec<DeltaCase>> = OnceLock::new();
    DELTAS.get_or_init(|| {
        let base: Vec<u8> = (0..6000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut edited = base.clone();
        edited.splice(100..100, b"inserted text".iter().copied());
        edited[4000..4064].fill(0xEE);
        edited.extend_from_slice(b"tail");
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (base.clone(), edited.clone()),
            (Vec::new(), b"new file".to_vec()),
            (b"old file".to_vec(), Vec::new()),
            (base.clone(), b"unrelated".repeat(50)),
            (vec![0; 3000], vec![0; 5000]),
        ];
        pairs
            .into_iter()
            .map(|(old, new)| {
                let mut delta = Vec::new();
                encode_delta(&old, &mut &new[..], new.len() as u64, &mut delta, 3).unwrap();
                (old, new, delta)
            })
            .collect()
    })
}

/// Apply a delta and check the bounds: never more output than declared, and an accepted
/// delta gives exactly the declared length.
fn check_delta(old: &[u8], delta: &[u8], expected: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let r = quick("apply_delta", Duration::from_secs(5), || {
        apply_delta(old, &mut &delta[..], expected, &mut out)
    });
    assert!(
        out.len() as u64 <= expected,
        "wrote past the declared length"
    );
    match r {
        Ok(n) => {
            assert_eq!(n, expected);
            assert_eq!(out.len() as u64, expected);
            Some(out)
        }
        Err(e) => {
            assert!(matches!(e, Error::Decompress { .. }), "{e:?}");
            None
        }
    }
}

fn check_chunk_frame(frame: &[u8], expected: u64) -> Option<Vec<u8>> {
    let r = quick("decompress_chunk", Duration::from_secs(2), || {
        decompress_chunk(frame, expected)
    });
    match r {
        Ok(v) => {
            assert_eq!(v.len() as u64, expected);
            Some(v)
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Decompress { .. } | Error::Store(store::Error::Invalid { .. })
                ),
                "{e:?}"
            );
            None
        }
    }
}

/// A zstd frame header by hand (RFC 8878 3.1.1.1): frame header descriptor, optional
/// window descriptor, optional content size field.
#[derive(Clone, Debug)]
struct FrameHeader {
    single_segment: bool,
    /// Window descriptor: exponent (window log - 10) and mantissa.
    window: (u8, u8),
    /// Frame content size, with the field width flag (0..=3).
    content_size: (u8, u64),
    checksum: bool,
}

impl FrameHeader {
    fn encode(&self) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
        let (fcs_flag, fcs) = self.content_size;
        let desc =
            (fcs_flag << 6) | (u8::from(self.single_segment) << 5) | (u8::from(self.checksum) << 2);
        f.push(desc);
        if !self.single_segment {
            f.push((self.window.0 << 3) | (self.window.1 & 7));
        }
        match (fcs_flag, self.single_segment) {
            (0, true) => f.push(fcs as u8),
            (0, false) => {}
            (1, _) => f.extend_from_slice(&((fcs.wrapping_sub(256)) as u16).to_le_bytes()),
            (2, _) => f.extend_from_slice(&(fcs as u32).to_le_bytes()),
            _ => f.extend_from_slice(&fcs.to_le_bytes()),
        }
        f
    }
}

/// A block header (RFC 8878 3.1.1.2): last flag, type (0 raw, 1 RLE, 2 compressed,
/// 3 reserved), size.
fn block(last: bool, kind: u8, size: u32, payload: &[u8]) -> Vec<u8> {
    let h = u32::from(last) | (u32::from(kind & 3) << 1) | ((size & 0x1f_ffff) << 3);
    [&h.to_le_bytes()[..3], payload].concat()
}

fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        any::<bool>(),
        (0u8..32, 0u8..8),
        (0u8..4, arb_u64_edge()),
        any::<bool>(),
    )
        .prop_map(
            |(single_segment, window, content_size, checksum)| FrameHeader {
                single_segment,
                window,
                content_size,
                checksum,
            },
        );
    let blocks = prop::collection::vec(
        (
            any::<bool>(),
            0u8..4,
            prop_oneof![
                0u32..300,
                Just(CHUNK_MAX),
                Just(CHUNK_MAX + 1),
                Just(0x1f_ffff)
            ],
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        0..4,
    );
    (header, blocks).prop_map(|(h, blocks)| {
        let mut f = h.encode();
        for (last, kind, size, payload) in blocks {
            f.extend_from_slice(&block(last, kind, size, &payload));
        }
        f
    })
}

proptest! {
    #![proptest_config(config(768))]

    #[test]
    fn chunk_frame_mutations(
        data in arb_content(20_000),
        level in prop_oneof![Just(1), Just(3), Just(19)],
        edits in arb_mutations(),
        declared in prop::option::of(prop_oneof![
            Just(0u64), Just(1), Just(u64::from(CHUNK_MAX)), Just(u64::from(CHUNK_MAX) + 1),
            Just(u64::MAX), 0u64..30_000,
        ]),
    ) {
        let frame = compress_chunk(&data, level);
        let len = data.len() as u64;
        prop_assert_eq!(check_chunk_frame(&frame, len), Some(data.clone()));
        let damaged = apply(frame.clone(), &edits);
        check_chunk_frame(&damaged, declared.unwrap_or(len));
        check_chunk_frame(&frame, declared.unwrap_or(len));
        // The thread's reused decoder is not left broken by a failure.
        prop_assert_eq!(check_chunk_frame(&frame, len), Some(data));
    }

    #[test]
    fn delta_mutations(
        which in any::<prop::sample::Index>(),
        edits in arb_mutations(),
        old_edits in prop::option::of(arb_mutations()),
        declared in prop::option::of(prop_oneof![
            Just(0u64), Just(1), Just(u64::MAX), 0u64..10_000,
        ]),
    ) {
        let (old, new, delta) = which.get(deltas());
        let len = new.len() as u64;
        prop_assert_eq!(check_delta(old, delta, len), Some(new.clone()));
        let damaged = apply(delta.clone(), &edits);
        check_delta(old, &damaged, declared.unwrap_or(len));
        if let Some(e) = old_edits {
            check_delta(&apply(old.clone(), &e), delta, len);
        }
    }

    /// Hand-made frames: any window, any declared content size, any blocks. The chunk
    /// decoder refuses windows over 2^17, the delta decoder over 2^27, and both stop at the
    /// declared output; nothing allocates by what a frame declares.
    #[test]
    fn hand_made_frames(
        frame in arb_frame(),
        declared in prop_oneof![Just(0u64), Just(1), Just(300), Just(u64::from(CHUNK_MAX)), 0u64..2000],
    ) {
        check_chunk_frame(&frame, declared.min(u64::from(CHUNK_MAX)));
        check_delta(b"some old content", &frame, declared);
    }

    #[test]
    fn random_frames(rest in prop::collection::vec(any::<u8>(), 0..300), declared in 0u64..1000) {
        let frame = [&[0x28, 0xb5, 0x2f, 0xfd][..], &rest].concat();
        check_chunk_frame(&frame, declared);
        check_delta(b"old", &frame, declared);
        check_delta(b"", &rest, declared);
    }
}

/// Every window a frame header can declare, single-segment or not, with huge declared
/// content sizes: refused past the caps, fast, and accepted (for one raw byte) within them.
#[test]
fn huge_windows_and_content_sizes_are_refused_fast() {
    let one_byte = block(true, 0, 1, b"x");
    for exp in 0u8..32 {
        for mantissa in 0u8..8 {
            let log = u32::from(exp) + 10;
            let h = FrameHeader {
                single_segment: false,
                window: (exp, mantissa),
                content_size: (0, 0),
                checksum: false,
            };
            let frame = [h.encode(), one_byte.clone()].concat();
            let fits = |max: u32| log < max || (log == max && mantissa == 0);
            let chunk = check_chunk_frame(&frame, 1);
            assert_eq!(
                chunk.is_some(),
                fits(CHUNK_WINDOW_LOG),
                "window 2^{log} m{mantissa}"
            );
            let delta = check_delta(b"old", &frame, 1);
            assert_eq!(
                delta.is_some(),
                fits(MAX_DELTA_WINDOW_LOG),
                "window 2^{log} m{mantissa}"
            );
        }
    }
    // Single segment: the window is the content size.
    for fcs in [
        u64::from(CHUNK_MAX) + 1,
        (1 << 27) + 1,
        1 << 32,
        1 << 40,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let h = FrameHeader {
            single_segment: true,
            window: (0, 0),
            content_size: (3, fcs),
            checksum: false,
        };
        let frame = [h.encode(), one_byte.clone()].concat();
        assert!(check_chunk_frame(&frame, 1).is_none(), "content size {fcs}");
        assert!(
            check_delta(b"old", &frame, 1).is_none(),
            "content size {fcs}"
        );
        assert!(
            check_delta(b"old", &frame, fcs).is_none(),
            "content size {fcs}"
        );
    }
    // A small window declaring an absurd content size: zstd refuses the frame when its
    // output does not match that size. (A content size field of u64::MAX is zstd's
    // "unknown" and is not checked by zstd; the declared length still bounds the output.)
    for fcs in [1 << 40, u64::MAX] {
        let h = FrameHeader {
            single_segment: false,
            window: (0, 0),
            content_size: (3, fcs),
            checksum: false,
        };
        let frame = [h.encode(), one_byte.clone()].concat();
        let (chunk, delta) = (check_chunk_frame(&frame, 1), check_delta(b"old", &frame, 1));
        if fcs != u64::MAX {
            assert!(chunk.is_none() && delta.is_none(), "content size {fcs}");
        }
        // Then a zstd bomb of RLE blocks within the small window: stopped at the cap.
        let mut rle = h.encode();
        for i in 0..1000 {
            rle.extend_from_slice(&block(i == 999, 1, 1024, b"\0"));
        }
        assert!(check_chunk_frame(&rle, u64::from(CHUNK_MAX)).is_none());
        assert!(check_delta(b"", &rle, 100_000).is_none());
    }
}

// ---- seeds for the coverage-guided fuzzer ----

/// Writes small seed corpora for the `fuzz/` targets, from the same valid encodings the
/// properties above start from. Run with
/// `UPDATE_FUZZ_CORPUS=fuzz/corpus cargo test -p update-store --test transport_fuzz -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to seed fuzz/corpus"]
fn write_fuzz_seeds() {
    let Some(root) = std::env::var_os("UPDATE_FUZZ_CORPUS") else {
        eprintln!("UPDATE_FUZZ_CORPUS is not set: nothing written");
        return;
    };
    let root = std::path::PathBuf::from(root);
    let mut seeds: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut sample = |s: &dyn Fn(&mut proptest::test_runner::TestRunner) -> Vec<u8>| {
        (0..8).map(|_| s(&mut runner)).collect::<Vec<_>>()
    };
    seeds.insert(
        "summary",
        sample(&|r| {
            let s = arb_summary().new_tree(r).unwrap().current();
            sign_summary(&s, &[&trusted_key()]).unwrap()
        }),
    );
    seeds.get_mut("summary").unwrap().extend(sample(&|r| {
        arb_summary().new_tree(r).unwrap().current().encode()
    }));
    seeds.insert(
        "pack_index",
        sample(&|r| arb_pack_index().new_tree(r).unwrap().current().encode()),
    );
    seeds.insert(
        "chunk_index",
        sample(&|r| arb_chunk_index().new_tree(r).unwrap().current().encode()),
    );
    // The delta target reads a mode byte and a u32 length, then the frame (see
    // fuzz/fuzz_targets/delta.rs).
    let mut delta_seeds = Vec::new();
    for (old, new, delta) in deltas().iter().take(2) {
        let mut s = vec![1];
        s.extend_from_slice(&(new.len() as u32).to_le_bytes());
        s.extend_from_slice(&(old.len() as u32).to_le_bytes());
        s.extend_from_slice(old);
        s.extend_from_slice(delta);
        delta_seeds.push(s);
    }
    for data in [&b"chunk content chunk content"[..], &[0u8; 5000][..]] {
        let mut s = vec![0];
        s.extend_from_slice(&(data.len() as u32).to_le_bytes());
        s.extend_from_slice(&compress_chunk(data, 3));
        delta_seeds.push(s);
    }
    seeds.insert("delta", delta_seeds);
    for (target, list) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in list.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}

/// Sanity check of the harness itself: the mutation engine changes inputs, and the
/// count-finding mutation finds the counts of a real encoding.
#[test]
fn mutation_engine_finds_counts() {
    let ci = ChunkIndex {
        commit: CommitId(ObjectId::from_bytes([9; 32])),
        metadata: vec![],
        files: vec![],
    };
    let bytes = ci.encode();
    // The two counts, at 37 and 41, are among the candidates.
    let p = small_u32_positions(&bytes);
    assert!(p.contains(&37) && p.contains(&41), "{p:?}");
    let which = p.iter().position(|&i| i == 37).unwrap();
    let m = apply(
        bytes.clone(),
        &[Mutation::SetCount {
            which,
            val: u32::MAX,
        }],
    );
    assert_eq!(&m[37..41], &u32::MAX.to_le_bytes());
    assert_eq!(m.len(), bytes.len());
    assert!(ChunkIndex::decode(&m).is_err());
    assert_ne!(
        apply(bytes.clone(), &[Mutation::FlipBit { pos: 3, bit: 0 }]),
        bytes
    );
}
