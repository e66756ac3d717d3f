//! Static deltas (`docs/transport.md`, section 5): a delta between two real commits
//! rebuilds the new commit exactly in a repository holding only the old one, patch-from
//! finds renamed and re-versioned files, and every kind of broken or hostile delta gives
//! an error, never a panic, with nothing entering the store.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::any;
use store::checkout::{checkout, CheckoutOptions, LinkMode};
use store::commit::{commit, CommitOptions, Source};
use store::fsck::{fsck, FsckOptions};
use store::object::{FileHeader, ObjectKind, Xattrs};
use store::walk::{Node, WalkOptions, Walker};
use store::{CommitId, ObjectId, RefName, Repo, RepoMode};
use testkit::noise::noise;
use transport::static_delta::{
    apply_static_delta, write_static_delta, ApplyStats, StaticDeltaOptions, StaticDeltaStats,
};
use transport::Error;

/// Deterministic bytes that compress a little, like code: words from a small vocabulary.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn ", "let ", "mut ", "self", "return ", "0x1f", "match ", "=> ", "{\n", "}\n", "struct ",
        "impl ", "if ", "else ", "Result", "Ok(", "Err(", "); ", "// ", "pub ",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        if x.is_multiple_of(7) {
            out.extend_from_slice(&x.to_le_bytes()[..3]);
        }
    }
    out.truncate(len);
    out
}

/// `data` with a few bytes changed and a few inserted: a new version of a file.
fn edit(data: &[u8], seed: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    let n = out.len();
    for i in 0..8 {
        let at = (seed as usize * 7919 + i * 104_729) % n;
        out[at] ^= 0x5a;
    }
    let at = (seed as usize * 31) % n;
    out.splice(at..at, text(seed + 1000, 300));
    out
}

enum E {
    F(&'static str, Vec<u8>),
    L(&'static str, &'static str),
}

fn write_tree(dir: &Path, entries: &[E]) {
    std::fs::create_dir_all(dir).unwrap();
    for e in entries {
        match e {
            E::F(p, data) => {
                let p = dir.join(p);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
            E::L(p, target) => {
                let p = dir.join(p);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, p).unwrap();
            }
        }
    }
}

fn commit_dir(repo: &Repo, dir: &Path, branch: &str, version: &str) -> CommitId {
    let opts = CommitOptions {
        branch: Some(RefName::new(branch).unwrap()),
        subject: Some(format!("version {version}")),
        version: Some(version.into()),
        owner_uid: Some(rustix::process::geteuid().as_raw()),
        owner_gid: Some(rustix::process::getegid().as_raw()),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    commit(repo, &Source::Dir(dir.to_path_buf()), &opts)
        .unwrap()
        .commit
}

/// Every path of a commit with what it is, for comparing two repositories.
fn listing(repo: &Repo, c: &CommitId) -> BTreeMap<String, ObjectId> {
    Walker::commit(repo, c, WalkOptions::default())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let id = match e.node {
                Node::Dir { tree, .. } => tree.0,
                Node::File { id, .. } => id.0,
            };
            (e.path, id)
        })
        .collect()
}

/// The regular files and symlinks below `dir`, by relative path.
fn read_dir_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                let mut v = b"-> ".to_vec();
                v.extend(
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
                out.insert(rel, v);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A publisher repository (archive) with v1 and v2 on one branch, and a device repository
/// (bare) with only v1.
struct Pair {
    tmp: tempfile::TempDir,
    publisher: Repo,
    device: Repo,
    v1: CommitId,
    v2: CommitId,
}

fn pair(v1: &[E], v2: &[E]) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_tree(&root.join("v1"), v1);
    write_tree(&root.join("v2"), v2);
    let publisher = Repo::init(root.join("publisher"), RepoMode::Archive).unwrap();
    let device = Repo::init(root.join("device"), RepoMode::Bare).unwrap();
    let v1_id = commit_dir(&publisher, &root.join("v1"), "os", "1");
    assert_eq!(commit_dir(&device, &root.join("v1"), "os", "1"), v1_id);
    let v2_id = commit_dir(&publisher, &root.join("v2"), "os", "2");
    Pair {
        tmp,
        publisher,
        device,
        v1: v1_id,
        v2: v2_id,
    }
}

fn release_trees() -> (Vec<E>, Vec<E>) {
    let tool = text(1, 200_000);
    let lib = text(2, 300_000);
    let ko = text(3, 100_000);
    let doc = text(4, 20_000);
    let v1 = vec![
        E::F("usr/bin/tool", tool.clone()),
        E::F("usr/lib/libfoo.so.1.2.2", lib.clone()),
        E::F("usr/lib/modules/6.1.0-25-amd64/kernel/x.ko", ko.clone()),
        E::F("usr/share/doc/foo/README", doc.clone()),
        E::F("etc/config", b"answer = 41\n".to_vec()),
        E::F("var/removed-later", text(5, 5_000)),
        E::F("var/empty", Vec::new()),
        E::L("usr/lib/libfoo.so.1", "libfoo.so.1.2.2"),
    ];
    let v2 = vec![
        E::F("usr/bin/tool", edit(&tool, 1)),
        E::F("usr/lib/libfoo.so.1.2.3", edit(&lib, 2)),
        E::F("usr/lib/modules/6.1.0-26-amd64/kernel/x.ko", edit(&ko, 3)),
        E::F("opt/foo/doc/README", edit(&doc, 4)),
        E::F("etc/config", b"answer = 42\n".to_vec()),
        E::F("usr/bin/brand-new", text(6, 50_000)),
        E::F("var/empty", Vec::new()),
        E::F("var/also-empty/x", Vec::new()),
        E::F("usr/share/copy-of-old-tool", tool.clone()),
        E::L("usr/lib/libfoo.so.1", "libfoo.so.1.2.3"),
    ];
    (v1, v2)
}

fn make_delta(p: &Pair) -> (Vec<u8>, StaticDeltaStats) {
    let mut out = Vec::new();
    let stats = write_static_delta(
        &p.publisher,
        &p.v1,
        &p.v2,
        &mut out,
        &StaticDeltaOptions::default(),
    )
    .unwrap();
    (out, stats)
}

fn try_apply(
    repo: &Repo,
    delta: &[u8],
    from: &CommitId,
    to: &CommitId,
) -> transport::Result<ApplyStats> {
    let txn = repo.begin().unwrap();
    apply_static_delta(&txn, &mut &delta[..], from, to)
    // The transaction is dropped: nothing is ever committed by this helper.
}

#[test]
fn a_delta_rebuilds_the_new_commit_exactly_and_patches_renamed_files() {
    let (v1, v2) = release_trees();
    let p = pair(&v1, &v2);
    let (delta, stats) = make_delta(&p);

    eprintln!("{stats:?}");
    assert_eq!(stats.size, delta.len() as u64);
    assert_eq!(stats.id, ObjectId::of(&delta));
    // tool (same path), libfoo (version in the name), x.ko (version in the directory),
    // README (same name elsewhere) are patched; brand-new and etc/config are not.
    assert!(stats.patched_files >= 4, "{stats:?}");
    assert_eq!(
        stats.empty_files, 1,
        "the symlink (empty files are one object, in v1)"
    );
    let new_content = stats.content_bytes;
    assert!(
        stats.size < 60_000 + new_content / 20,
        "delta of {} bytes for {new_content} bytes of new content: {stats:?}",
        stats.size
    );

    // Deterministic.
    assert_eq!(make_delta(&p).0, delta);

    let txn = p.device.begin().unwrap();
    let applied = apply_static_delta(&txn, &mut &delta[..], &p.v1, &p.v2).unwrap();
    txn.commit().unwrap();
    assert_eq!(applied.id, stats.id);
    assert_eq!(applied.size, stats.size);
    assert_eq!(applied.files, stats.files);
    assert_eq!(applied.metadata_objects, stats.metadata_objects);
    assert_eq!(applied.patched_files, stats.patched_files);

    assert_eq!(listing(&p.device, &p.v2), listing(&p.publisher, &p.v2));
    let report = fsck(&p.device, &FsckOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let out = p.tmp.path().join("checkout");
    checkout(
        &p.device,
        &p.v2,
        &out,
        &CheckoutOptions {
            subpath: None,
            mode: LinkMode::Copy,
        },
    )
    .unwrap();
    assert_eq!(read_dir_tree(&out), read_dir_tree(&p.tmp.path().join("v2")));

    // Applying again is harmless: every object is already there.
    let again = try_apply(&p.device, &delta, &p.v1, &p.v2).unwrap();
    assert_eq!(again.files, stats.files);
}

#[test]
fn a_delta_made_without_tuning_applies_the_same() {
    let (v1, v2) = release_trees();
    let p = pair(&v1, &v2);
    let opts = StaticDeltaOptions {
        tuned: false,
        ..StaticDeltaOptions::default()
    };
    let mut plain = Vec::new();
    let stats = write_static_delta(&p.publisher, &p.v1, &p.v2, &mut plain, &opts).unwrap();
    assert!(stats.patched_files >= 4, "{stats:?}");
    assert_ne!(plain, make_delta(&p).0, "tuning changes the frames");
    let txn = p.device.begin().unwrap();
    let applied = apply_static_delta(&txn, &mut &plain[..], &p.v1, &p.v2).unwrap();
    txn.commit().unwrap();
    assert_eq!(applied.files, stats.files);
    assert_eq!(listing(&p.device, &p.v2), listing(&p.publisher, &p.v2));
}

#[test]
fn a_delta_changing_only_the_commit_carries_only_the_commit() {
    let tree = vec![E::F("a", text(1, 1000))];
    let p = pair(&tree, &tree);
    let (delta, stats) = make_delta(&p);
    assert_eq!((stats.metadata_objects, stats.files), (1, 0));
    let txn = p.device.begin().unwrap();
    apply_static_delta(&txn, &mut &delta[..], &p.v1, &p.v2).unwrap();
    txn.commit().unwrap();
    assert_eq!(listing(&p.device, &p.v2), listing(&p.publisher, &p.v2));
}

#[test]
fn a_delta_to_itself_is_refused() {
    let tree = vec![E::F("a", text(1, 1000))];
    let p = pair(&tree, &tree);
    let err = write_static_delta(
        &p.publisher,
        &p.v1,
        &p.v1,
        &mut Vec::new(),
        &StaticDeltaOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("two different commits"), "{err}");
}

#[test]
fn batching_does_not_change_the_output() {
    let (v1, v2) = release_trees();
    let p = pair(&v1, &v2);
    let (delta, _) = make_delta(&p);
    let mut one_by_one = Vec::new();
    let opts = StaticDeltaOptions {
        batch_bytes: 1,
        ..StaticDeltaOptions::default()
    };
    write_static_delta(&p.publisher, &p.v1, &p.v2, &mut one_by_one, &opts).unwrap();
    assert_eq!(one_by_one, delta);
}

#[test]
fn a_file_over_64_mib_is_compressed_twice_and_streamed() {
    let big = text(20, 65 << 20);
    let v1 = vec![E::F("boot/initrd.img-6.1.0-25", big.clone())];
    let v2 = vec![
        E::F("boot/initrd.img-6.1.0-26", edit(&big, 20)),
        E::F("boot/fresh.img", text(21, 65 << 20)),
    ];
    let p = pair(&v1, &v2);
    let opts = StaticDeltaOptions {
        level: 1,
        ..StaticDeltaOptions::default()
    };
    let mut delta = Vec::new();
    let stats = write_static_delta(&p.publisher, &p.v1, &p.v2, &mut delta, &opts).unwrap();
    assert_eq!((stats.patched_files, stats.raw_files), (1, 1), "{stats:?}");
    assert_eq!(stats.size, delta.len() as u64);
    let txn = p.device.begin().unwrap();
    apply_static_delta(&txn, &mut &delta[..], &p.v1, &p.v2).unwrap();
    txn.commit().unwrap();
    assert_eq!(listing(&p.device, &p.v2), listing(&p.publisher, &p.v2));
    let report = fsck(&p.device, &FsckOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// A small delta with one record of each content kind: patch, plain zstd (a file whose
/// base, found by name, is of no use), raw (a file without a base), none.
fn small() -> (Pair, Vec<u8>) {
    let a = text(10, 3000);
    let v1 = vec![
        E::F("a", a.clone()),
        E::F("keep", b"same".to_vec()),
        E::F("d/b", text(11, 500)),
        E::F("d/c", noise(13, 3000)),
    ];
    let v2 = vec![
        E::F("a", edit(&a, 9)),
        E::F("keep", b"same".to_vec()),
        E::F("d/b", text(11, 500)),
        E::F("m/c", text(14, 2000)),
        E::F("n/new", text(12, 700)),
        E::L("n/link", "../a"),
    ];
    let p = pair(&v1, &v2);
    let (delta, stats) = make_delta(&p);
    assert_eq!(
        (
            stats.patched_files,
            stats.plain_files,
            stats.raw_files,
            stats.empty_files
        ),
        (1, 1, 1, 1),
        "{stats:?}"
    );
    (p, delta)
}

/// Where a file record's content encoding byte is.
fn encoding_at(rec: &[u8]) -> usize {
    37 + u32::from_le_bytes(rec[33..37].try_into().unwrap()) as usize
}

/// The header of a file record.
fn header_of(rec: &[u8]) -> FileHeader {
    FileHeader::decode(&rec[37..encoding_at(rec)]).unwrap()
}

/// The index of the first file record with content encoding `enc`.
fn file_with(recs: &[Vec<u8>], enc: u8) -> usize {
    recs.iter()
        .position(|r| r[0] == 4 && r[encoding_at(r)] == enc)
        .unwrap()
}

/// The records with every raw file record (version 3) turned into a plain zstd one: what
/// a version 1 or 2 delta carries.
fn without_raw(recs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    recs.iter()
        .map(|r| {
            if r[0] != 4 || r[encoding_at(r)] != 3 {
                return r.clone();
            }
            let at = encoding_at(r);
            let frame = zstd::bulk::compress(&r[at + 1..], 3).unwrap();
            let mut plain = r[..at].to_vec();
            plain.push(1);
            plain.extend_from_slice(&(frame.len() as u64).to_le_bytes());
            plain.extend_from_slice(&frame);
            plain
        })
        .collect()
}

/// The records of a delta, split by the documented layout: the 69-byte header, then
/// each record's bytes (the end record last), decoded from the one zstd frame after the
/// header.
fn records(file: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let head = file[..69].to_vec();
    let delta = &zstd::stream::decode_all(&file[69..]).unwrap()[..];
    let mut at = 0;
    let mut out = Vec::new();
    let u32_at = |at: usize| u32::from_le_bytes(delta[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(delta[at..at + 8].try_into().unwrap()) as usize;
    while at < delta.len() {
        let start = at;
        match delta[at] {
            0 => at += 17,
            1..=3 => at += 5 + u32_at(at + 1),
            4 => {
                at += 33;
                let hlen = u32_at(at);
                let size = FileHeader::decode(&delta[at + 4..at + 4 + hlen])
                    .unwrap()
                    .size as usize;
                at += 4 + hlen;
                let enc = delta[at];
                at += 1;
                match enc {
                    0 => {}
                    1 => at += 8 + u64_at(at),
                    2 => at += 32 + 8 + u64_at(at + 32),
                    3 => at += size,
                    e => panic!("content encoding {e}"),
                }
            }
            k => panic!("kind {k}"),
        }
        out.push(delta[start..at].to_vec());
    }
    (head, out)
}

/// A delta file of `head` and the records `recs`, in one zstd frame as the writer makes it.
fn join(head: &[u8], recs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend_from_slice(&records_frame(&recs.concat()));
    v
}

fn records_frame(records: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(records).unwrap();
    enc.finish().unwrap()
}

fn end(nmeta: u64, nfiles: u64) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&nmeta.to_le_bytes());
    v.extend_from_slice(&nfiles.to_le_bytes());
    v
}

fn err_of(p: &Pair, delta: &[u8]) -> String {
    match try_apply(&p.device, delta, &p.v1, &p.v2) {
        Ok(s) => panic!("applied: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_untouched(p: &Pair) {
    assert!(!p.device.has_object(ObjectKind::Commit, &p.v2.0).unwrap());
    let report = fsck(&p.device, &FsckOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn the_layout_is_as_documented() {
    let (p, delta) = small();
    assert_eq!(&delta[..4], b"UDLT");
    assert_eq!(delta[4], 3);
    assert_eq!(&delta[5..37], p.v1.0.as_bytes());
    assert_eq!(&delta[37..69], p.v2.0.as_bytes());
    let (_, recs) = records(&delta);
    let kinds: Vec<u8> = recs.iter().map(|r| r[0]).collect();
    // commit; root dirtree; n's dirtree and dirmeta-less (same mode) ...; files; end.
    assert_eq!(kinds[0], 1);
    assert_eq!(*kinds.last().unwrap(), 0);
    let first_file = kinds.iter().position(|k| *k == 4).unwrap();
    assert!(kinds[..first_file].iter().all(|k| (1..=3).contains(k)));
    assert!(kinds[first_file..kinds.len() - 1].iter().all(|k| *k == 4));
    let nmeta = first_file as u64;
    let nfiles = (kinds.len() - 1 - first_file) as u64;
    assert_eq!(recs.last().unwrap(), &end(nmeta, nfiles));
}

#[test]
fn a_version_1_delta_with_plain_records_still_applies() {
    let (p, delta) = small();
    let (mut head, recs) = records(&delta);
    head[4] = 1;
    let v1 = [head, without_raw(&recs).concat()].concat();
    let stats = try_apply(&p.device, &v1, &p.v1, &p.v2).unwrap();
    assert_eq!(stats.size, v1.len() as u64);
    assert_eq!(stats.id, ObjectId::of(&v1));
    assert_eq!(stats.patched_files, 1);
}

#[test]
fn a_version_2_delta_still_applies_and_sends_no_raw_file() {
    let (p, delta) = small();
    let (mut head, recs) = records(&delta);
    head[4] = 2;
    let v2 = join(&head, &without_raw(&recs));
    let stats = try_apply(&p.device, &v2, &p.v1, &p.v2).unwrap();
    assert_eq!((stats.files, stats.patched_files), (4, 1));

    // A raw record is new in version 3.
    let err = err_of(&p, &join(&head, &recs));
    assert!(err.contains("unknown content encoding 3"), "{err}");
    assert_untouched(&p);
}

#[test]
fn a_records_frame_with_a_window_over_2_mib_is_refused() {
    let (p, delta) = small();
    let (head, recs) = records(&delta);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(23).unwrap();
    enc.write_all(&recs.concat()).unwrap();
    let bad = [head, enc.finish().unwrap()].concat();
    let err = err_of(&p, &bad);
    assert!(err.contains("static delta records"), "{err}");
    assert_untouched(&p);
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let (p, delta) = small();
    for n in 0..delta.len() {
        let err = err_of(&p, &delta[..n]);
        assert!(
            err.contains("truncated") || err.contains("ends") || err.contains("no commit"),
            "cut at {n}: {err}"
        );
    }
    assert_untouched(&p);
}

#[test]
fn a_flipped_bit_anywhere_never_panics_and_never_stages_a_wrong_object() {
    let (p, delta) = small();
    let mut applied = 0;
    for i in 0..delta.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = delta.clone();
            bad[i] ^= bit;
            // An Ok can only come from a change that does not alter what is decoded
            // (such as a zstd window descriptor raised); every object is still checked.
            if try_apply(&p.device, &bad, &p.v1, &p.v2).is_ok() {
                applied += 1;
            }
        }
    }
    eprintln!("{applied} of {} flips applied", delta.len() * 2);
    assert!(
        applied * 50 < delta.len() * 2,
        "{applied} of {} flips applied",
        delta.len() * 2
    );
    assert_untouched(&p);
}

#[test]
fn header_errors_are_named() {
    let (p, delta) = small();
    let mut bad = delta.clone();
    bad[0] = b'X';
    assert!(err_of(&p, &bad).contains("not a static delta"));
    let mut bad = delta.clone();
    bad[4] = 4;
    let err = try_apply(&p.device, &bad, &p.v1, &p.v2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(store::Error::NewerFormat { found: 4, .. })
        ),
        "{err}"
    );
    bad[4] = 0;
    assert!(err_of(&p, &bad).contains("version 0"));

    // Asked for another hop than the delta is.
    let err = try_apply(&p.device, &delta, &p.v2, &p.v1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("expected the delta from {} to {}", p.v2, p.v1)),
        "{err}"
    );

    // A repository without `from`.
    let other = Repo::init(p.tmp.path().join("empty"), RepoMode::Archive).unwrap();
    let err = try_apply(&other, &delta, &p.v1, &p.v2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not have commit"), "{err}");
}

#[test]
fn records_out_of_place_are_refused() {
    let (p, delta) = small();
    let (head, recs) = records(&delta);
    let n = recs.len();
    let first_file = recs.iter().position(|r| r[0] == 4).unwrap();
    let nmeta = first_file as u64;
    let nfiles = (n - 1 - first_file) as u64;

    // Trailing bytes, after the end record and after the frame.
    let mut r = recs.clone();
    r.push(vec![0]);
    assert!(err_of(&p, &join(&head, &r)).contains("bytes after the end record"));
    let mut bad = delta.clone();
    bad.push(0);
    let err = err_of(&p, &bad);
    assert!(
        err.contains("bytes follow the end of the zstd frame"),
        "{err}"
    );
    let mut bad = delta.clone();
    bad.extend_from_slice(&records_frame(&[0]));
    let err = err_of(&p, &bad);
    assert!(
        err.contains("bytes follow the end of the zstd frame"),
        "{err}"
    );

    // Wrong counts.
    let mut r = recs.clone();
    r[n - 1] = end(nmeta, nfiles + 1);
    assert!(err_of(&p, &join(&head, &r)).contains("the end record counts"));

    // A file record sent twice.
    let mut r = recs.clone();
    r.insert(first_file, recs[first_file].clone());
    r[n] = end(nmeta, nfiles + 1);
    assert!(err_of(&p, &join(&head, &r)).contains("sent twice"));

    // A file record missing: the commit is incomplete.
    let mut r = recs.clone();
    r.remove(first_file);
    r[n - 2] = end(nmeta, nfiles - 1);
    let err = err_of(&p, &join(&head, &r));
    assert!(
        err.contains("neither in the delta nor in this repository"),
        "{err}"
    );

    // A dirtree missing: its files are named by nothing.
    let tree = recs.iter().position(|r| r[0] == 2).unwrap();
    let mut r = recs.clone();
    r.remove(tree);
    r[n - 2] = end(nmeta - 1, nfiles);
    let err = err_of(&p, &join(&head, &r));
    assert!(err.contains("not named"), "{err}");

    // Metadata after files.
    let mut r = recs.clone();
    let m = r.remove(first_file - 1);
    r.insert(n - 2, m);
    let err = err_of(&p, &join(&head, &r));
    assert!(
        err.contains("after file records") || err.contains("not named"),
        "{err}"
    );

    // Something before the commit.
    let mut r = recs.clone();
    r.swap(0, 1);
    assert!(err_of(&p, &join(&head, &r)).contains("before the commit record"));

    // An unknown record kind.
    let mut r = recs.clone();
    r.insert(1, vec![9]);
    assert!(err_of(&p, &join(&head, &r)).contains("unknown record kind 9"));
    assert_untouched(&p);
}

/// A file record for `header` and `content`, sent as a plain frame of `frame_of`.
fn file_record(header: &FileHeader, content: &[u8], frame_of: &[u8]) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    let hb = header.encode();
    hasher.update(&hb);
    hasher.update(content);
    let mut r = vec![4u8];
    r.extend_from_slice(hasher.finalize().as_bytes());
    r.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    r.extend_from_slice(&hb);
    r.push(1);
    let frame = zstd::bulk::compress(frame_of, 3).unwrap();
    r.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    r.extend_from_slice(&frame);
    r
}

#[test]
fn hostile_file_records_are_refused() {
    let (p, delta) = small();
    let (head, recs) = records(&delta);
    let n = recs.len();
    let first_file = recs.iter().position(|r| r[0] == 4).unwrap();
    let nmeta = first_file as u64;
    let nfiles = (n - 1 - first_file) as u64;
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );

    // A file no dirtree of the delta names.
    let h = FileHeader::regular(0o644, me.0, me.1, 5, Xattrs::empty()).unwrap();
    let mut r = recs.clone();
    r.insert(n - 1, file_record(&h, b"hello", b"hello"));
    r[n] = end(nmeta, nfiles + 1);
    let err = err_of(&p, &join(&head, &r));
    assert!(err.contains("is not named by any dirtree"), "{err}");

    // The plain (non-patch) record: swap its frame for a bomb and for a short one.
    let plain = file_with(&recs, 1);
    let rec = &recs[plain];
    let hlen = u32::from_le_bytes(rec[33..37].try_into().unwrap()) as usize;
    let prefix = &rec[..37 + hlen + 1];
    let size = header_of(rec).size as usize;
    for (content, want) in [
        (vec![0u8; 50 << 20], "more than the declared"),
        (vec![0u8; size - 1], "not the declared"),
    ] {
        let frame = zstd::bulk::compress(&content, 3).unwrap();
        let mut bad = prefix.to_vec();
        bad.extend_from_slice(&(frame.len() as u64).to_le_bytes());
        bad.extend_from_slice(&frame);
        let mut r = recs.clone();
        r[plain] = bad;
        let err = err_of(&p, &join(&head, &r));
        assert!(err.contains(want), "{err}");
    }
    // Right length, wrong bytes: the file id does not match.
    let frame = zstd::bulk::compress(&vec![7u8; size], 3).unwrap();
    let mut bad = prefix.to_vec();
    bad.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    bad.extend_from_slice(&frame);
    let mut r = recs.clone();
    r[plain] = bad;
    assert!(err_of(&p, &join(&head, &r)).contains("hash to"));
    // A frame length over the cap, refused before reading it.
    let mut bad = prefix.to_vec();
    bad.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut r = recs.clone();
    r[plain] = bad;
    assert!(err_of(&p, &join(&head, &r)).contains("allowed 1..="));
    // A header length over the 20 MiB cap, refused before reading it.
    let mut bad = rec[..33].to_vec();
    bad.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut r = recs.clone();
    r[plain] = bad;
    assert!(err_of(&p, &join(&head, &r)).contains("cap"));

    // The raw record: right length, wrong bytes; the records ending inside the content;
    // content for a file that has none; content over the cap, refused before reading it.
    let raw = file_with(&recs, 3);
    let rec = &recs[raw];
    let at = encoding_at(rec);
    let mut bad = rec.clone();
    bad[at + 1] ^= 1;
    let mut r = recs.clone();
    r[raw] = bad;
    assert!(err_of(&p, &join(&head, &r)).contains("hash to"));
    let cut = [&recs[..raw], &[rec[..rec.len() - 10].to_vec()]].concat();
    let err = err_of(&p, &join(&head, &cut));
    assert!(
        err.contains("truncated: the records end") && err.contains("10 bytes of its content"),
        "{err}"
    );
    for (h, want) in [
        (
            FileHeader::regular(0o644, me.0, me.1, 0, Xattrs::empty()).unwrap(),
            "has no content",
        ),
        (
            FileHeader::regular(0o644, me.0, me.1, 1 << 37, Xattrs::empty()).unwrap(),
            "content cap",
        ),
    ] {
        let hb = h.encode();
        let mut bad = rec[..33].to_vec();
        bad.extend_from_slice(&(hb.len() as u32).to_le_bytes());
        bad.extend_from_slice(&hb);
        bad.push(3);
        bad.extend_from_slice(&rec[at + 1..]);
        let mut r = recs.clone();
        r[raw] = bad;
        let err = err_of(&p, &join(&head, &r));
        assert!(err.contains(want), "{err}");
    }

    // The patch record: against a file not in `from`, and against a missing base.
    let patch = file_with(&recs, 2);
    let rec = &recs[patch];
    let hlen = u32::from_le_bytes(rec[33..37].try_into().unwrap()) as usize;
    let base_at = 37 + hlen + 1;
    let mut bad = rec.clone();
    bad[base_at..base_at + 32].copy_from_slice(&[0xee; 32]);
    let mut r = recs.clone();
    r[patch] = bad;
    let err = err_of(&p, &join(&head, &r));
    assert!(err.contains("which is not a file of commit"), "{err}");

    let base: ObjectId = {
        let b: [u8; 32] = rec[base_at..base_at + 32].try_into().unwrap();
        ObjectId::from_bytes(b)
    };
    let object = p
        .device
        .path()
        .join(p.device.object_path(ObjectKind::File, &base));
    let saved = std::fs::read(&object).unwrap();
    std::fs::remove_file(&object).unwrap();
    let err = err_of(&p, &delta);
    assert!(err.contains(&format!("static delta base {base}")), "{err}");
    assert!(err.contains("lacks it"), "{err}");
    std::fs::write(&object, saved).unwrap();
    std::fs::set_permissions(&object, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert_untouched(&p);
}

/// Random edits of a valid delta (flips, cuts, inserted and deleted runs) give an error
/// or, if nothing decoded changed, a correct result; never a panic.
#[test]
fn mutated_deltas_never_panic() {
    use proptest::test_runner::{Config, TestRunner};
    let (p, delta) = small();
    let edits = proptest::collection::vec((any::<u16>(), 0u8..4, any::<u8>(), 1usize..64), 1..6);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&edits, |edits| {
            let mut bad = delta.clone();
            for (at, op, byte, len) in edits {
                let at = at as usize % (bad.len() + 1);
                match op {
                    0 if at < bad.len() => bad[at] ^= byte | 1,
                    1 => bad.truncate(at),
                    2 => {
                        bad.splice(at..at, std::iter::repeat_n(byte, len));
                    }
                    _ => {
                        let end = (at + len).min(bad.len());
                        bad.drain(at..end);
                    }
                }
            }
            let _ = try_apply(&p.device, &bad, &p.v1, &p.v2);
            Ok(())
        })
        .unwrap();
    assert_untouched(&p);
}

/// Size and time of a delta between two real trees, and of applying it to a bare
/// repository holding the old one. Run by hand:
/// `DELTA_BENCH_OLD=DIR DELTA_BENCH_NEW=DIR [DELTA_BENCH_LEVELS=19,9] cargo test -p
/// update-store --test static_delta -- --ignored --nocapture bench_real_trees`.
#[test]
#[ignore = "needs two real trees, see the doc comment"]
fn bench_real_trees() {
    use std::time::Instant;
    let old = PathBuf::from(std::env::var_os("DELTA_BENCH_OLD").expect("DELTA_BENCH_OLD"));
    let new = PathBuf::from(std::env::var_os("DELTA_BENCH_NEW").expect("DELTA_BENCH_NEW"));
    let levels: Vec<i32> = std::env::var("DELTA_BENCH_LEVELS")
        .unwrap_or_else(|_| "19".into())
        .split(',')
        .map(|l| l.parse().unwrap())
        .collect();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let publisher = Repo::init(tmp.path().join("publisher"), RepoMode::Archive).unwrap();
    let v1 = commit_dir(&publisher, &old, "os", "1");
    let device = Repo::init(tmp.path().join("device"), RepoMode::Bare).unwrap();
    assert_eq!(commit_dir(&device, &old, "os", "1"), v1);
    let v2 = commit_dir(&publisher, &new, "os", "2");
    let diff = store::diff::diff(&publisher, &v1, &v2).unwrap().summary();
    eprintln!("diff: {diff:?}");
    let mut last = Vec::new();
    for level in levels {
        let t = Instant::now();
        let mut delta = Vec::new();
        let opts = StaticDeltaOptions {
            level,
            ..StaticDeltaOptions::default()
        };
        let stats = write_static_delta(&publisher, &v1, &v2, &mut delta, &opts).unwrap();
        eprintln!(
            "level {level}: {} bytes in {:.1}s ({} files: {} patched, {} plain, {} raw, {} empty; {} content bytes)",
            stats.size,
            t.elapsed().as_secs_f64(),
            stats.files,
            stats.patched_files,
            stats.plain_files,
            stats.raw_files,
            stats.empty_files,
            stats.content_bytes
        );
        last = delta;
    }
    let t = Instant::now();
    let txn = device.begin().unwrap();
    let applied = apply_static_delta(&txn, &mut &last[..], &v1, &v2).unwrap();
    txn.commit().unwrap();
    eprintln!(
        "applied into a bare repository in {:.1}s: {applied:?}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(listing(&device, &v2), listing(&publisher, &v2));
}
