//! Packs, pack indexes and chunk indexes: a commit packed and reassembled from its packs,
//! incremental packing, roll-over, the index encodings, and refusals of hostile indexes
//! and blobs (THREATS C6).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use store::commit::{commit, CommitOptions, Source};
use store::object::{FileHeader, Xattrs};
use store::repo::FileContent;
use store::{CommitId, FileId, ObjectId, Repo, RepoMode};
use testkit::noise::noise;
use transport::chunk::{CHUNK_MAX, CHUNK_MIN};
use transport::pack::{
    assemble_file, build_chunk_index, pack_commit, read_blob, read_blob_from_file, verify_blob,
    BlobKind, ChunkIndex, ChunkRef, FileChunks, IndexEntry, PackIndex, PackWriter,
    PackWriterOptions, INDEX_ENTRY_LEN,
};
use transport::Error;

/// A source tree: a 3 MiB random file, a compressible one, a small one, an empty one, a
/// duplicate, a symlink, nested directories.
fn make_tree(root: &Path, big: &[u8]) {
    std::fs::create_dir_all(root.join("usr/lib/deep")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("usr/lib/big.bin"), big).unwrap();
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    std::fs::write(root.join("usr/lib/deep/text.txt"), &text).unwrap();
    std::fs::write(root.join("etc/hostname"), b"device\n").unwrap();
    std::fs::write(root.join("etc/copy"), b"device\n").unwrap();
    std::fs::write(root.join("etc/empty"), b"").unwrap();
    symlink("../usr/lib/big.bin", root.join("etc/link")).unwrap();
}

fn commit_dir(repo: &Repo, dir: &Path) -> CommitId {
    let src = Source::Dir(dir.to_path_buf());
    commit(repo, &src, &CommitOptions::default())
        .unwrap()
        .commit
}

/// Every pack in `dir`: its index and bytes.
fn load_packs(dir: &Path) -> Vec<(PackIndex, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx") {
            let idx = PackIndex::decode(&std::fs::read(&p).unwrap()).unwrap();
            let pack = std::fs::read(p.with_extension("pack")).unwrap();
            assert_eq!(ObjectId::of(&pack), *idx.pack_id(), "pack id is its hash");
            assert_eq!(pack.len() as u64, idx.pack_size());
            assert_eq!(
                p.file_stem().unwrap().to_str().unwrap(),
                idx.pack_id().to_hex()
            );
            out.push((idx, pack));
        }
    }
    out
}

fn fetch(packs: &[(PackIndex, Vec<u8>)], kind: BlobKind, id: &ObjectId) -> Option<Vec<u8>> {
    packs
        .iter()
        .find_map(|(idx, pack)| idx.find(kind, id).map(|e| read_blob(idx, pack, e).unwrap()))
}

fn content_of(repo: &Repo, id: &FileId) -> Vec<u8> {
    let mut v = Vec::new();
    if let (_, FileContent::Regular(mut r)) = repo.read_file(id).unwrap() {
        std::io::Read::read_to_end(&mut r, &mut v).unwrap();
    }
    v
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: Repo,
    tree: PathBuf,
    publish: PathBuf,
    big: Vec<u8>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::init(tmp.path().join("repo"), RepoMode::Archive).unwrap();
    let tree = tmp.path().join("tree");
    let big = noise(42, 3 << 20);
    make_tree(&tree, &big);
    let publish = tmp.path().join("pub");
    std::fs::create_dir(&publish).unwrap();
    Fixture {
        _tmp: tmp,
        repo,
        tree,
        publish,
        big,
    }
}

#[test]
fn commit_packs_and_reassembles_from_packs() {
    let f = fixture();
    let c = commit_dir(&f.repo, &f.tree);
    let ci = build_chunk_index(&f.repo, &c).unwrap();
    // 6 distinct file objects: big, text, hostname (= copy), empty, link.
    assert_eq!(ci.files.len(), 5);
    let big_id = ci
        .files
        .iter()
        .find(|x| x.decode_header().unwrap().size == f.big.len() as u64)
        .unwrap();
    assert!(big_id.chunks.len() > 10, "{} chunks", big_id.chunks.len());
    // root, usr, usr/lib, usr/lib/deep, etc: 5 dirtrees; one dirmeta (all 0755 same owner).
    assert_eq!(
        ci.metadata
            .iter()
            .filter(|m| m.0 == BlobKind::DirTree)
            .count(),
        5
    );

    let out = pack_commit(&f.repo, &c, &f.publish, &|_, _| false).unwrap();
    assert_eq!(out.chunk_index, ci);
    assert_eq!(out.blobs_skipped, 0);
    let on_disk = std::fs::read(f.publish.join(format!("chunks/{c}.cidx"))).unwrap();
    assert_eq!(ChunkIndex::decode(&on_disk).unwrap(), ci);
    assert_eq!(ci.encode(), on_disk);

    let packs = load_packs(&f.publish.join("packs"));
    assert_eq!(packs.len(), 1);
    let total: usize = packs.iter().map(|p| p.0.entries().len()).sum();
    assert_eq!(total as u64, out.blobs_written);
    // Every blob reads back verified.
    for (idx, pack) in &packs {
        for e in idx.entries() {
            read_blob(idx, pack, e).unwrap();
        }
    }
    // Metadata: the commit and everything the chunk index lists.
    assert!(fetch(&packs, BlobKind::Commit, &c.0).is_some());
    for (kind, id) in &ci.metadata {
        assert!(fetch(&packs, *kind, id).is_some(), "{kind} {id}");
    }
    // Every file reassembles from its header blob and chunk blobs to its id.
    for file in &ci.files {
        let header = fetch(&packs, BlobKind::FileHeader, &file.id.0).unwrap();
        assert_eq!(header, file.header);
        let chunks: Vec<Vec<u8>> = file
            .chunks
            .iter()
            .map(|ch| fetch(&packs, BlobKind::Chunk, &ch.id).unwrap())
            .collect();
        let mut content = Vec::new();
        let h = assemble_file(&file.id, &header, &chunks, &mut content).unwrap();
        assert_eq!(h.size, content.len() as u64);
        assert_eq!(content, content_of(&f.repo, &file.id));
    }
    // A duplicate chunk is stored once.
    let distinct = ci.chunks().len();
    let chunk_blobs = packs[0]
        .0
        .entries()
        .iter()
        .filter(|e| e.kind == BlobKind::Chunk)
        .count();
    assert_eq!(distinct, chunk_blobs);
}

#[test]
fn second_commit_packs_only_new_blobs() {
    let f = fixture();
    let c1 = commit_dir(&f.repo, &f.tree);
    let out1 = pack_commit(&f.repo, &c1, &f.publish, &|_, _| false).unwrap();

    // v2: a small edit in the middle of the big file and one new file.
    let mut big2 = f.big.clone();
    big2[1_500_000..1_500_064].copy_from_slice(&[0xAA; 64]);
    std::fs::write(f.tree.join("usr/lib/big.bin"), &big2).unwrap();
    std::fs::write(f.tree.join("etc/new"), b"new file\n").unwrap();
    let c2 = commit_dir(&f.repo, &f.tree);

    let packed: BTreeSet<(BlobKind, ObjectId)> = load_packs(&f.publish.join("packs"))
        .iter()
        .flat_map(|(idx, _)| idx.entries().iter().map(|e| (e.kind, e.id)))
        .collect();
    let out2 = pack_commit(&f.repo, &c2, &f.publish, &|k, id| {
        packed.contains(&(k, *id))
    })
    .unwrap();
    assert_eq!(out2.packs.len(), 1);
    assert!(out2.blobs_skipped > 0);

    let v1_chunks = out1.chunk_index.chunks();
    let v2_chunks = out2.chunk_index.chunks();
    let new_chunks: Vec<_> = v2_chunks
        .keys()
        .filter(|id| !v1_chunks.contains_key(id))
        .collect();
    // The edit touches one or two chunks of the big file; plus the new file's one chunk.
    assert!(
        (2..=4).contains(&new_chunks.len()),
        "{} new chunks",
        new_chunks.len()
    );
    let missing = out2
        .chunk_index
        .missing_chunks(&|id| v1_chunks.contains_key(id));
    assert_eq!(missing.len(), new_chunks.len());

    let packs = load_packs(&f.publish.join("packs"));
    let new_pack = packs
        .iter()
        .find(|(idx, _)| *idx.pack_id() == out2.packs[0].id)
        .unwrap();
    let new_pack_chunks: BTreeSet<ObjectId> = new_pack
        .0
        .entries()
        .iter()
        .filter(|e| e.kind == BlobKind::Chunk)
        .map(|e| e.id)
        .collect();
    assert_eq!(
        new_pack_chunks,
        new_chunks.into_iter().copied().collect::<BTreeSet<_>>()
    );
    // Nothing in the new pack was packed before.
    for e in new_pack.0.entries() {
        assert!(
            !packed.contains(&(e.kind, e.id)),
            "{} {} re-packed",
            e.kind,
            e.id
        );
    }
    // Every v2 file still reassembles from the union of packs.
    for file in &out2.chunk_index.files {
        let chunks: Vec<Vec<u8>> = file
            .chunks
            .iter()
            .map(|ch| fetch(&packs, BlobKind::Chunk, &ch.id).unwrap())
            .collect();
        assemble_file(&file.id, &file.header, &chunks, &mut std::io::sink()).unwrap();
    }
}

#[test]
fn writer_rolls_over_at_target_size() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PackWriterOptions {
        target_size: 100 * 1024,
        level: 1,
    };
    let mut w = PackWriter::create(dir.path(), opts).unwrap();
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let raw = noise(i + 1, 30_000);
        let id = ObjectId::of(&raw);
        assert!(w.add_chunk(&id, &raw).unwrap());
        ids.push(id);
    }
    assert!(!w.add_chunk(&ids[0], &noise(1, 30_000)).unwrap());
    let infos = w.finish().unwrap();
    assert!(infos.len() >= 5, "{} packs", infos.len());
    let packs = load_packs(dir.path());
    assert_eq!(packs.len(), infos.len());
    for (idx, _) in &packs {
        // Random data does not compress, so each pack holds 3 or 4 chunks of ~30 KB.
        assert!(idx.pack_size() <= 100 * 1024);
    }
    for id in &ids {
        assert!(fetch(&packs, BlobKind::Chunk, id).is_some());
    }
    // Positioned reads from the pack file give the same verified bytes.
    let (idx, _) = &packs[0];
    let file = std::fs::File::open(dir.path().join(format!("{}.pack", idx.pack_id()))).unwrap();
    for e in idx.entries() {
        let raw = read_blob_from_file(idx, &file, e).unwrap();
        assert_eq!(ObjectId::of(&raw), e.id);
    }
    // No temporary file is left behind.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".pack") || name.ends_with(".idx"), "{name}");
    }
}

#[test]
fn dropped_writer_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(dir.path(), PackWriterOptions::default()).unwrap();
    let raw = b"abc".to_vec();
    w.add_chunk(&ObjectId::of(&raw), &raw).unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_refuses_a_chunk_that_is_not_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(dir.path(), PackWriterOptions::default()).unwrap();
    let err = w.add_chunk(&ObjectId::of(b"x"), b"y").unwrap_err();
    assert!(err.to_string().contains("do not hash"), "{err}");
}

fn entry(kind: BlobKind, id: ObjectId, offset: u64, stored: u32, raw: u32) -> IndexEntry {
    IndexEntry {
        kind,
        id,
        offset,
        stored_len: stored,
        raw_len: raw,
    }
}

/// Encode an index byte by byte, without the checks of `PackIndex::new`.
fn raw_index(pack_id: ObjectId, size: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let mut v = b"UPIX\x01".to_vec();
    v.extend_from_slice(pack_id.as_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        v.push(e.kind as u8);
        v.extend_from_slice(e.id.as_bytes());
        v.extend_from_slice(&e.offset.to_le_bytes());
        v.extend_from_slice(&e.stored_len.to_le_bytes());
        v.extend_from_slice(&e.raw_len.to_le_bytes());
    }
    v
}

fn id(n: u8) -> ObjectId {
    ObjectId::from_bytes([n; 32])
}

#[test]
fn index_encoding_is_pinned() {
    let entries = vec![
        entry(BlobKind::Chunk, id(2), 0, 10, 20),
        entry(BlobKind::DirTree, id(9), 10, 5, 5),
    ];
    let idx = PackIndex::new(id(7), 15, entries.clone()).unwrap();
    // Sorted by (kind, id): the dirtree (kind 2) before the chunk (kind 5).
    assert_eq!(idx.entries()[0].kind, BlobKind::DirTree);
    let bytes = idx.encode();
    assert_eq!(bytes.len(), 5 + 32 + 8 + 4 + 2 * INDEX_ENTRY_LEN);
    assert_eq!(INDEX_ENTRY_LEN, 49);
    let sorted = [entries[1], entries[0]];
    assert_eq!(bytes, raw_index(id(7), 15, &sorted));
    assert_eq!(&bytes[..5], b"UPIX\x01");
    assert_eq!(bytes[49], 2, "first entry's kind byte");
    assert_eq!(
        blake3::hash(&bytes).to_hex().as_str(),
        blake3::hash(&raw_index(id(7), 15, &sorted))
            .to_hex()
            .as_str()
    );
    assert_eq!(PackIndex::decode(&bytes).unwrap(), idx);
    assert_eq!(idx.find(BlobKind::Chunk, &id(2)).unwrap().range(), 0..10);
    assert!(idx.find(BlobKind::Chunk, &id(9)).is_none());
}

fn decode_err(bytes: &[u8]) -> String {
    match PackIndex::decode(bytes) {
        Err(e @ Error::Store(store::Error::Decode { .. })) => e.to_string(),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn hostile_pack_indexes_are_refused() {
    let p = id(7);
    let a = entry(BlobKind::DirTree, id(1), 0, 10, 10);
    let b = entry(BlobKind::DirTree, id(2), 10, 10, 10);

    let past_end = entry(BlobKind::DirTree, id(2), 10, 11, 11);
    assert!(decode_err(&raw_index(p, 20, &[a, past_end])).contains("past the end"));

    let overflow = entry(BlobKind::DirTree, id(2), u64::MAX - 3, 10, 10);
    assert!(decode_err(&raw_index(p, 20, &[a, overflow])).contains("past the end"));

    let overlapping = entry(BlobKind::DirTree, id(2), 5, 10, 10);
    assert!(decode_err(&raw_index(p, 20, &[a, overlapping])).contains("overlaps"));

    assert!(decode_err(&raw_index(p, 20, &[b, a])).contains("not sorted"));
    assert!(decode_err(&raw_index(p, 20, &[a, a])).contains("duplicate"));
    assert!(decode_err(&raw_index(p, 30, &[a, b])).contains("gap"));

    let bad_kind = {
        let mut v = raw_index(p, 20, &[a, b]);
        v[49] = 9;
        v
    };
    assert!(decode_err(&bad_kind).contains("unknown kind"));

    let huge_chunk = entry(BlobKind::Chunk, id(3), 0, 10, CHUNK_MAX + 1);
    assert!(decode_err(&raw_index(p, 10, &[huge_chunk])).contains("limit"));
    let uncompressed_mismatch = entry(BlobKind::DirMeta, id(3), 0, 10, 12);
    assert!(decode_err(&raw_index(p, 10, &[uncompressed_mismatch])).contains("differs"));
    let empty = entry(BlobKind::Chunk, id(3), 0, 0, 0);
    assert!(decode_err(&raw_index(p, 0, &[empty])).contains("empty"));

    // A count larger than the bytes that follow is refused before allocating.
    let mut forged = raw_index(p, 20, &[a, b]);
    forged[45..49].copy_from_slice(&9_999_999u32.to_le_bytes());
    assert!(decode_err(&forged).contains("remaining"));
    let mut trailing = raw_index(p, 20, &[a, b]);
    trailing.push(0);
    assert!(decode_err(&trailing).contains("trailing"));
    assert!(decode_err(&raw_index(p, 20, &[a, b])[..40]).contains("truncated"));
    // PackIndex::new refuses the same things.
    assert!(PackIndex::new(p, 20, vec![a, a]).is_err());
}

/// THREATS C6: an index whose entry names an id the bytes do not hash to, and a pack
/// whose bytes were changed, are refused when the blob is read.
#[test]
fn blobs_that_do_not_match_their_id_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(dir.path(), PackWriterOptions::default()).unwrap();
    let c1 = noise(1, 20_000);
    let c2 = noise(2, 20_000);
    let (id1, id2) = (ObjectId::of(&c1), ObjectId::of(&c2));
    w.add_chunk(&id1, &c1).unwrap();
    w.add_chunk(&id2, &c2).unwrap();
    let header = FileHeader::regular(0o644, 0, 0, 3, Xattrs::empty())
        .unwrap()
        .encode();
    let file_id = FileId(ObjectId::of(&[header.as_slice(), b"abc"].concat()));
    w.add_file_header(&file_id, &header).unwrap();
    let infos = w.finish().unwrap();
    let (idx, mut pack) = load_packs(dir.path()).remove(0);
    assert_eq!(*idx.pack_id(), infos[0].id);

    // Swap the two chunk ids: well-formed index, wrong bytes behind each id.
    let swapped: Vec<IndexEntry> = idx
        .entries()
        .iter()
        .map(|e| match e.kind {
            BlobKind::Chunk if e.id == id1 => IndexEntry { id: id2, ..*e },
            BlobKind::Chunk => IndexEntry { id: id1, ..*e },
            _ => *e,
        })
        .collect();
    let forged = PackIndex::new(*idx.pack_id(), idx.pack_size(), swapped).unwrap();
    let forged = PackIndex::decode(&forged.encode()).unwrap();
    let e = forged.find(BlobKind::Chunk, &id1).unwrap();
    let err = read_blob(&forged, &pack, e).unwrap_err();
    assert!(
        matches!(&err, Error::BadBlob { kind: BlobKind::Chunk, id, .. } if *id == id1),
        "{err}"
    );
    assert!(err.to_string().contains("do not hash to its id"), "{err}");

    // A stored length other than the entry's.
    let e = *idx.find(BlobKind::Chunk, &id1).unwrap();
    let short = &pack[e.offset as usize..e.offset as usize + 10];
    assert!(verify_blob(&idx, &e, short)
        .unwrap_err()
        .to_string()
        .contains("the index says"));

    // A flipped byte in a chunk's frame.
    pack[e.offset as usize + e.stored_len as usize / 2] ^= 0x55;
    assert!(matches!(
        read_blob(&idx, &pack, &e),
        Err(Error::BadBlob { .. })
    ));

    // A header is verified when the file is assembled: wrong content, wrong size.
    let he = idx.find(BlobKind::FileHeader, &file_id.0).unwrap();
    let h = read_blob(&idx, &pack, he).unwrap();
    assemble_file(&file_id, &h, [b"abc"], &mut std::io::sink()).unwrap();
    for content in [&b"abd"[..], b"ab", b"abcd"] {
        let err = assemble_file(&file_id, &h, [content], &mut std::io::sink()).unwrap_err();
        assert!(
            matches!(err, Error::Store(store::Error::Corrupt { .. })),
            "{err}"
        );
    }
}

fn regular_header(size: u64) -> Vec<u8> {
    FileHeader::regular(0o644, 0, 0, size, Xattrs::empty())
        .unwrap()
        .encode()
}

fn small_chunk_index() -> ChunkIndex {
    let size = u64::from(CHUNK_MIN) + 5;
    ChunkIndex {
        commit: CommitId(id(1)),
        metadata: vec![(BlobKind::DirTree, id(2)), (BlobKind::DirMeta, id(3))],
        files: vec![
            FileChunks {
                id: FileId(id(4)),
                header: regular_header(size),
                chunks: vec![
                    ChunkRef {
                        id: id(5),
                        len: CHUNK_MIN,
                    },
                    ChunkRef { id: id(6), len: 5 },
                ],
            },
            FileChunks {
                id: FileId(id(8)),
                header: FileHeader::symlink(b"target".to_vec(), 0, 0, Xattrs::empty())
                    .unwrap()
                    .encode(),
                chunks: vec![],
            },
        ],
    }
}

#[test]
fn chunk_index_round_trip_and_layout() {
    let ci = small_chunk_index();
    ci.validate().unwrap();
    let bytes = ci.encode();
    assert_eq!(&bytes[..5], b"UCIX\x01");
    assert_eq!(&bytes[5..37], id(1).as_bytes());
    assert_eq!(&bytes[37..41], &2u32.to_le_bytes());
    assert_eq!(bytes[41], BlobKind::DirTree as u8);
    assert_eq!(ChunkIndex::decode(&bytes).unwrap(), ci);
    assert_eq!(ci.find(&FileId(id(8))).unwrap().chunks.len(), 0);
    assert_eq!(ci.chunks().len(), 2);
}

#[test]
fn hostile_chunk_indexes_are_refused() {
    let check = |ci: ChunkIndex, needle: &str| {
        let err = ChunkIndex::decode(&ci.encode()).unwrap_err();
        assert!(
            matches!(err, Error::Store(store::Error::Decode { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    };
    let mut ci = small_chunk_index();
    ci.files[0].chunks[1].len = 6;
    check(ci, "add up to");

    let mut ci = small_chunk_index();
    ci.files.swap(0, 1);
    check(ci, "not sorted");

    let mut ci = small_chunk_index();
    ci.files[1] = ci.files[0].clone();
    check(ci, "not sorted by id or duplicate");

    let mut ci = small_chunk_index();
    ci.metadata.swap(0, 1);
    check(ci, "not sorted");

    let mut ci = small_chunk_index();
    ci.files[0].chunks = vec![
        ChunkRef { id: id(5), len: 5 },
        ChunkRef {
            id: id(6),
            len: CHUNK_MIN,
        },
    ];
    check(ci, "at least");

    let mut ci = small_chunk_index();
    ci.files[0].header = regular_header(10);
    ci.files[0].chunks = (0..3).map(|_| ChunkRef { id: id(5), len: 1 }).collect();
    check(ci, "count 3 exceeds the limit of 1");

    let mut ci = small_chunk_index();
    ci.files[1].chunks = vec![ChunkRef { id: id(5), len: 1 }];
    check(ci, "exceeds the limit");

    let mut ci = small_chunk_index();
    ci.metadata[0].0 = BlobKind::Chunk;
    check(ci, "not a dirtree or dirmeta");

    let mut trailing = small_chunk_index().encode();
    trailing.push(1);
    assert!(ChunkIndex::decode(&trailing).is_err());
}

fn arb_entries() -> impl Strategy<Value = Vec<(u8, [u8; 32], u32, u32)>> {
    proptest::collection::vec(
        (1u8..=5, any::<[u8; 32]>(), 1u32..200_000, 1u32..=CHUNK_MAX),
        0..20,
    )
}

fn index_from(spec: &[(u8, [u8; 32], u32, u32)]) -> Option<PackIndex> {
    let mut offset = 0u64;
    let mut entries = Vec::new();
    let mut seen = HashMap::new();
    for (k, idb, stored, raw) in spec {
        let kind = BlobKind::from_u8(*k).unwrap();
        if seen.insert((kind, *idb), ()).is_some() {
            continue;
        }
        let (stored, raw) = if kind == BlobKind::Chunk {
            (stored % 131_000 + 1, *raw)
        } else {
            (*stored, *stored)
        };
        entries.push(entry(kind, ObjectId::from_bytes(*idb), offset, stored, raw));
        offset += u64::from(stored);
    }
    PackIndex::new(id(0xEE), offset, entries).ok()
}

fn arb_chunk_index() -> impl Strategy<Value = ChunkIndex> {
    let file = (
        any::<[u8; 32]>(),
        proptest::collection::vec((any::<[u8; 32]>(), CHUNK_MIN..=CHUNK_MAX), 0..4),
        1u32..=CHUNK_MAX,
        any::<bool>(),
    );
    (
        any::<[u8; 32]>(),
        proptest::collection::btree_set((2u8..=3, any::<[u8; 32]>()), 0..5),
        proptest::collection::vec(file, 0..5),
    )
        .prop_map(|(c, meta, files)| {
            let mut files: Vec<FileChunks> = files
                .into_iter()
                .map(|(fid, mut chunks, last, symlink_)| {
                    if symlink_ {
                        return FileChunks {
                            id: FileId(ObjectId::from_bytes(fid)),
                            header: FileHeader::symlink(b"t".to_vec(), 0, 0, Xattrs::empty())
                                .unwrap()
                                .encode(),
                            chunks: vec![],
                        };
                    }
                    chunks.push(([0x11; 32], last));
                    let chunks: Vec<ChunkRef> = chunks
                        .into_iter()
                        .map(|(i, len)| ChunkRef {
                            id: ObjectId::from_bytes(i),
                            len,
                        })
                        .collect();
                    let size = chunks.iter().map(|c| u64::from(c.len)).sum();
                    FileChunks {
                        id: FileId(ObjectId::from_bytes(fid)),
                        header: regular_header(size),
                        chunks,
                    }
                })
                .collect();
            files.sort_by_key(|f| f.id);
            files.dedup_by_key(|f| f.id);
            ChunkIndex {
                commit: CommitId(ObjectId::from_bytes(c)),
                metadata: meta
                    .into_iter()
                    .map(|(k, i)| (BlobKind::from_u8(k).unwrap(), ObjectId::from_bytes(i)))
                    .collect(),
                files,
            }
        })
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, val, op) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = pos % bytes.len();
        match op % 3 {
            0 => bytes[i] = val,
            1 => bytes.truncate(i),
            _ => bytes.insert(i, val),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pack_index_round_trips(spec in arb_entries()) {
        if let Some(idx) = index_from(&spec) {
            let bytes = idx.encode();
            prop_assert_eq!(PackIndex::decode(&bytes).unwrap(), idx);
        }
    }

    #[test]
    fn pack_index_mutations_never_panic(
        spec in arb_entries(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        if let Some(idx) = index_from(&spec) {
            let bytes = mutate(idx.encode(), &edits);
            if let Ok(d) = PackIndex::decode(&bytes) {
                // Whatever decodes is canonical.
                prop_assert_eq!(d.encode(), bytes);
            }
        }
    }

    #[test]
    fn chunk_index_round_trips(ci in arb_chunk_index()) {
        ci.validate().unwrap();
        prop_assert_eq!(ChunkIndex::decode(&ci.encode()).unwrap(), ci);
    }

    #[test]
    fn chunk_index_mutations_never_panic(
        ci in arb_chunk_index(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = mutate(ci.encode(), &edits);
        if let Ok(d) = ChunkIndex::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes);
        }
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), which in any::<bool>()) {
        if which {
            bytes.splice(0..0, b"UPIX\x01".iter().copied());
            let _ = PackIndex::decode(&bytes);
        } else {
            bytes.splice(0..0, b"UCIX\x01".iter().copied());
            let _ = ChunkIndex::decode(&bytes);
        }
    }
}
