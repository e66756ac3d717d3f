//! Property tests of the canonical encoding (`docs/format.md`), and the CI fuzz harness
//! for the decoders of untrusted bytes:
//!
//! - every valid value round-trips: `decode(encode(x)) == x`;
//! - one value, one encoding: whatever bytes decode re-encode to exactly those bytes;
//! - random bytes and random mutations (bit flips, truncations, insertions, deletions,
//!   overwritten length fields) of valid encodings never panic a decoder.
//!
//! Case counts are modest so the suite runs in seconds; raise `PROPTEST_CASES` for a
//! longer local run.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::BTreeMap;

use proptest::prelude::*;
use store::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use store::object::{
    Commit, DirMeta, DirTree, EntryName, FileHeader, ObjectKind, SignatureEntry, Signatures, Xattrs,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// ---- generators of valid values ----

fn arb_id() -> impl Strategy<Value = ObjectId> {
    prop_oneof![
        // Few distinct ids, so trees repeat them as real trees do.
        (0u8..4).prop_map(|b| ObjectId::from_bytes([b; 32])),
        any::<[u8; 32]>().prop_map(ObjectId::from_bytes),
    ]
}

/// An xattr name: 1..=255 bytes without NUL, mostly short, often a real namespace.
fn arb_xattr_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            b"security.capability".to_vec(),
            b"security.selinux".to_vec(),
            b"security.ima".to_vec(),
            b"trusted.overlay.opaque".to_vec(),
            b"user.a".to_vec(),
            b"user.b".to_vec(),
        ]),
        3 => prop::collection::vec(1u8..=255, 1..16),
        1 => prop::collection::vec(1u8..=255, 250..=255),
    ]
}

fn arb_xattrs() -> impl Strategy<Value = Xattrs> {
    prop::collection::btree_map(
        arb_xattr_name(),
        prop::collection::vec(any::<u8>(), 0..40),
        0..5,
    )
    .prop_map(|m| Xattrs::new(m.into_iter().collect()).expect("valid xattrs"))
}

fn arb_perm() -> impl Strategy<Value = u32> {
    0u32..=0o7777
}

fn arb_symlink_target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(1u8..=255, 1..40),
        1 => prop::collection::vec(1u8..=255, 4090..=4095),
    ]
}

fn arb_file_header() -> impl Strategy<Value = FileHeader> {
    prop_oneof![
        (
            arb_perm(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            arb_xattrs()
        )
            .prop_map(|(perm, uid, gid, size, x)| FileHeader::regular(
                perm, uid, gid, size, x
            )
            .expect("valid")),
        (
            arb_symlink_target(),
            any::<u32>(),
            any::<u32>(),
            arb_xattrs()
        )
            .prop_map(|(t, uid, gid, x)| FileHeader::symlink(t, uid, gid, x).expect("valid")),
    ]
}

fn arb_dirmeta() -> impl Strategy<Value = DirMeta> {
    (arb_perm(), any::<u32>(), any::<u32>(), arb_xattrs())
        .prop_map(|(perm, uid, gid, x)| DirMeta::new(perm, uid, gid, x).expect("valid"))
}

/// A valid entry name: any UTF-8 without '/' or NUL, 1..=255 bytes, not '.' or '..'.
fn arb_name() -> impl Strategy<Value = EntryName> {
    prop_oneof!["[a-zA-Z0-9._-]{1,12}", "[^/\\x00]{1,8}", "[a-z]{255}",]
        .prop_filter_map("not an entry name", |s| EntryName::new(s).ok())
}

fn arb_dirtree() -> impl Strategy<Value = DirTree> {
    (
        prop::collection::btree_map(arb_name(), arb_id(), 0..8),
        prop::collection::btree_map(arb_name(), (arb_id(), arb_id()), 0..6),
    )
        .prop_map(|(files, dirs)| {
            let dirs = dirs
                .into_iter()
                .filter(|(n, _)| !files.contains_key(n))
                .map(|(n, (t, m))| (n, DirTreeId(t), DirMetaId(m)))
                .collect();
            let files = files.into_iter().map(|(n, f)| (n, FileId(f))).collect();
            DirTree::new(files, dirs).expect("valid dirtree")
        })
}

fn arb_commit() -> impl Strategy<Value = Commit> {
    (
        prop::option::of(arb_id()),
        any::<u64>(),
        ".{0,40}",
        ".{0,200}",
        prop::collection::btree_map(".{1,12}", ".{0,20}", 0..5),
        arb_id(),
        arb_id(),
    )
        .prop_map(|(parent, timestamp, subject, body, metadata, tree, meta)| {
            let c = Commit {
                parent: parent.map(CommitId),
                timestamp,
                subject,
                body,
                metadata: metadata
                    .into_iter()
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
                root_tree: DirTreeId(tree),
                root_meta: DirMetaId(meta),
            };
            c.validate().expect("valid commit");
            c
        })
}

fn arb_signatures() -> impl Strategy<Value = Signatures> {
    prop::collection::btree_map(
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 64),
        0..6,
    )
    .prop_map(|m| {
        let mut s = Signatures::default();
        for (public_key, sig) in m {
            s.insert(SignatureEntry {
                public_key,
                signature: sig.try_into().expect("64 bytes"),
            });
        }
        s.validate().expect("valid signature set");
        s
    })
}

// ---- decoding any bytes ----

/// The kinds of encoded values, each with its decoder.
#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    DirMeta,
    DirTree,
    Commit,
    Signatures,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::File,
        Kind::DirMeta,
        Kind::DirTree,
        Kind::Commit,
        Kind::Signatures,
    ];

    fn tag(self) -> &'static [u8; 4] {
        match self {
            Kind::File => ObjectKind::File.tag(),
            Kind::DirMeta => ObjectKind::DirMeta.tag(),
            Kind::DirTree => ObjectKind::DirTree.tag(),
            Kind::Commit => ObjectKind::Commit.tag(),
            Kind::Signatures => b"USIG",
        }
    }

    /// Decode and re-encode: `None` when the bytes do not decode.
    fn reencode(self, bytes: &[u8]) -> Option<Vec<u8>> {
        match self {
            Kind::File => FileHeader::decode(bytes).ok().map(|v| v.encode()),
            Kind::DirMeta => DirMeta::decode(bytes).ok().map(|v| v.encode()),
            Kind::DirTree => DirTree::decode(bytes).ok().map(|v| v.encode()),
            Kind::Commit => Commit::decode(bytes).ok().map(|v| v.encode()),
            Kind::Signatures => Signatures::decode(bytes).ok().map(|v| v.encode()),
        }
    }
}

/// Feed `bytes` to every decoder: none may panic, and any that accepts them must
/// re-encode them byte for byte (one value, one encoding).
fn check_any_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    for kind in Kind::ALL {
        if let Some(again) = kind.reencode(bytes) {
            prop_assert_eq!(
                &again,
                bytes,
                "{:?} accepted a non-canonical encoding",
                kind
            );
        }
    }
    // A header prefix (as in an archive-mode file object) re-encodes to the bytes it used.
    if let Ok((h, used)) = FileHeader::decode_prefix(bytes) {
        prop_assert_eq!(&h.encode()[..], &bytes[..used]);
    }
    Ok(())
}

/// Random bytes: often opened by a valid tag and version, so the decoders get past the
/// first check and exercise the field parsers.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tagged = (
        prop::sample::select(Kind::ALL.to_vec()),
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(k, rest)| {
            let mut v = k.tag().to_vec();
            v.push(1);
            v.extend(rest);
            v
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..256), tagged]
}

/// One edit of a byte string; positions are taken modulo the length at the time.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
    /// Overwrite four bytes with a u32 (hits length and count fields).
    SetU32(usize, u32),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let small_u32 = prop_oneof![0u32..300, Just(u32::MAX), any::<u32>()];
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), small_u32).prop_map(|(i, v)| Mutation::SetU32(i, v)),
        ],
        1..4,
    )
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::FlipBit(i, b) if len > 0 => bytes[i % len] ^= 1 << b,
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::SetU32(i, v) if len >= 4 => {
                let at = i % (len - 3);
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    bytes
}

/// A valid encoding of any kind.
fn arb_encoding() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_file_header().prop_map(|v| v.encode()),
        arb_dirmeta().prop_map(|v| v.encode()),
        arb_dirtree().prop_map(|v| v.encode()),
        arb_commit().prop_map(|v| v.encode()),
        arb_signatures().prop_map(|v| v.encode()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn xattrs_round_trip_through_dirmeta(x in arb_xattrs(), perm in arb_perm()) {
        let m = DirMeta::new(perm, 0, 0, x).unwrap();
        prop_assert_eq!(DirMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn file_header_round_trips(h in arb_file_header(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let bytes = h.encode();
        prop_assert_eq!(FileHeader::decode(&bytes).unwrap(), h.clone());
        // In an archive object the content follows the header.
        let mut with_tail = bytes.clone();
        with_tail.extend(&tail);
        prop_assert_eq!(FileHeader::decode_prefix(&with_tail).unwrap(), (h, bytes.len()));
    }

    #[test]
    fn dirmeta_round_trips(m in arb_dirmeta()) {
        prop_assert_eq!(DirMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn dirtree_round_trips(t in arb_dirtree()) {
        prop_assert_eq!(DirTree::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn commit_round_trips(c in arb_commit()) {
        prop_assert_eq!(Commit::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn signatures_round_trip(s in arb_signatures()) {
        prop_assert_eq!(Signatures::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn random_bytes_never_panic_and_decode_canonically(bytes in arb_bytes()) {
        check_any_bytes(&bytes)?;
    }

    #[test]
    fn mutated_encodings_never_panic_and_decode_canonically(
        bytes in arb_encoding(),
        mutations in arb_mutations(),
    ) {
        check_any_bytes(&mutate(bytes, &mutations))?;
    }

    /// Only the kind a tag names decodes it: a valid encoding is refused by every other
    /// decoder, so an object can never be read as another kind.
    #[test]
    fn an_encoding_decodes_as_its_own_kind_only(bytes in arb_encoding()) {
        let accepted: Vec<_> = Kind::ALL.iter().filter(|k| k.reencode(&bytes).is_some()).collect();
        prop_assert_eq!(accepted.len(), 1);
    }
}
