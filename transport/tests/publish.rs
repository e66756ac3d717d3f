//! `publish`: the static layout of a published repository (`docs/transport.md`). Every
//! file the summary names is there with its pinned hash and size, every commit reassembles
//! from the packs, a second publish is incremental, and refusals happen before any write.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use store::commit::{commit, CommitOptions, Source};
use store::object::Signatures;
use store::sign::{generate_key, load_secret_key, verify_signatures, TrustedKeys};
use store::{CommitId, ObjectId, RefName, Repo, RepoMode};
use testkit::noise::noise;
use transport::pack::{assemble_file, read_blob, BlobKind, ChunkIndex, PackIndex};
use transport::publish::{publish, PublishOptions, PublishReport};
use transport::summary::{verify_summary, Summary, TrustState};
use transport::Error;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    repo: Repo,
    key: PathBuf,
    trusted: TrustedKeys,
}

fn fixture(mode: RepoMode) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let repo = Repo::init(root.join("repo"), mode).unwrap();
    let key = root.join("summary.key");
    let public = generate_key(&key).unwrap();
    let mut trusted = TrustedKeys::new();
    trusted.insert("summary", public);
    Fixture {
        _tmp: tmp,
        root,
        repo,
        key,
        trusted,
    }
}

fn commit_tree(f: &Fixture, branch: &str, files: &[(&str, Vec<u8>)], version: &str) -> CommitId {
    let tree = f
        .root
        .join(format!("tree-{branch}-{version}").replace('/', "_"));
    std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
    for (name, data) in files {
        std::fs::write(tree.join(name), data).unwrap();
    }
    std::os::unix::fs::symlink("lib/a.bin", tree.join("usr/link")).unwrap();
    let opts = CommitOptions {
        branch: Some(RefName::new(branch).unwrap()),
        subject: Some(format!("{branch} {version}")),
        version: Some(version.into()),
        sign_with: Some(store::sign::SigningKey::from_bytes(&[9; 32])),
        ..Default::default()
    };
    commit(&f.repo, &Source::Dir(tree), &opts).unwrap().commit
}

fn opts(f: &Fixture, out: &Path) -> PublishOptions {
    PublishOptions {
        key: f.key.clone(),
        output: Some(out.to_path_buf()),
        now: Some(NOW),
        ..PublishOptions::default()
    }
}

fn run(f: &Fixture, out: &Path) -> PublishReport {
    publish(&f.repo, &opts(f, out)).unwrap()
}

/// Read `rel` under `out`, checking it has the pinned hash and size.
fn pinned(out: &Path, rel: &str, id: &ObjectId, size: u64) -> Vec<u8> {
    let bytes = std::fs::read(out.join(rel)).unwrap();
    assert_eq!(bytes.len() as u64, size, "{rel}: size");
    assert_eq!(ObjectId::of(&bytes), *id, "{rel}: hash");
    bytes
}

/// Verify the published summary with the trusted key and check every file it names, every
/// blob of every ref, and every file reassembled from the packs. Returns the summary.
fn check_published(f: &Fixture, out: &Path) -> Summary {
    let file = std::fs::read(out.join("summary")).unwrap();
    let v = verify_summary(&file, &f.trusted, &TrustState::default(), NOW + 1).unwrap();
    let s = v.summary;
    let mut packs = Vec::new();
    for p in &s.packs {
        let idx = pinned(
            out,
            &format!("packs/{}.idx", p.id),
            &p.index_id,
            p.index_size,
        );
        let idx = PackIndex::decode(&idx).unwrap();
        assert_eq!(*idx.pack_id(), p.id);
        let pack = pinned(out, &format!("packs/{}.pack", p.id), &p.id, p.size);
        packs.push((idx, pack));
    }
    let fetch = |kind: BlobKind, id: &ObjectId| -> (Vec<u8>, u64) {
        packs
            .iter()
            .find_map(|(idx, pack)| {
                idx.find(kind, id)
                    .map(|e| (read_blob(idx, pack, e).unwrap(), u64::from(e.stored_len)))
            })
            .unwrap_or_else(|| panic!("{kind} {id} is in no listed pack"))
    };
    let mut commit_keys = TrustedKeys::new();
    commit_keys.insert(
        "release",
        store::sign::PublicKey::from(&store::sign::SigningKey::from_bytes(&[9; 32])),
    );
    for r in &s.refs {
        assert_eq!(f.repo.read_ref(&r.name).unwrap(), Some(r.commit));
        let cidx = pinned(
            out,
            &format!("chunks/{}.cidx", r.commit),
            &r.chunk_index_id,
            r.chunk_index_size,
        );
        let ci = ChunkIndex::decode(&cidx).unwrap();
        assert_eq!(ci.commit, r.commit);
        let sigs = pinned(
            out,
            &format!("sigs/{}.sig", r.signatures_id),
            &r.signatures_id,
            r.signatures_size,
        );
        let sigs = Signatures::decode(&sigs).unwrap();
        verify_signatures(&r.commit, &sigs, &commit_keys).unwrap();

        let (commit_bytes, mut total) = fetch(BlobKind::Commit, &r.commit.0);
        assert_eq!(ObjectId::of(&commit_bytes), r.commit.0);
        for (kind, id) in &ci.metadata {
            let (bytes, n) = fetch(*kind, id);
            assert_eq!(ObjectId::of(&bytes), *id);
            total += n;
        }
        for fc in &ci.files {
            let (header, n) = fetch(BlobKind::FileHeader, &fc.id.0);
            assert_eq!(header, fc.header);
            total += n;
            let chunks: Vec<Vec<u8>> = fc
                .chunks
                .iter()
                .map(|c| fetch(BlobKind::Chunk, &c.id).0)
                .collect();
            let mut content = Vec::new();
            assemble_file(&fc.id, &header, &chunks, &mut content).unwrap();
        }
        for id in ci.chunks().keys() {
            total += fetch(BlobKind::Chunk, id).1;
        }
        assert_eq!(total, r.download_size, "{}: download size", r.name);
    }
    s
}

/// Every pack file under `out/packs` with its bytes.
fn pack_files(out: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack" || x == "idx"))
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn publish_two_branches_then_incrementally() {
    let f = fixture(RepoMode::Archive);
    let big = noise(1, 400_000);
    let text: Vec<u8> = (0..30_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let stable = commit_tree(
        &f,
        "os/stable",
        &[
            ("usr/lib/a.bin", big.clone()),
            ("usr/lib/t.txt", text.clone()),
        ],
        "1.0",
    );
    let testing = commit_tree(
        &f,
        "os/testing",
        &[
            ("usr/lib/a.bin", big.clone()),
            ("usr/lib/n.bin", noise(2, 50_000)),
        ],
        "1.1-rc1",
    );
    let out = f.root.join("www");
    let r1 = run(&f, &out);
    assert_eq!(r1.summary.serial, 1);
    assert_eq!(r1.summary.expires, NOW + 7 * 86_400);
    assert!(!r1.packs_written.is_empty());
    let s1 = check_published(&f, &out);
    assert_eq!(s1, r1.summary);
    let names: Vec<_> = s1.refs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["os/stable", "os/testing"]);
    assert_eq!(s1.refs[0].commit, stable);
    assert_eq!(s1.refs[0].version.as_deref(), Some("1.0"));
    assert_eq!(s1.refs[1].commit, testing);
    assert!(s1.refs.iter().all(|r| r.download_size > 0));

    // A new commit on one branch: the serial grows, old packs are untouched, and the new
    // packs hold only blobs no old pack had.
    let before = pack_files(&out);
    let stable2 = commit_tree(
        &f,
        "os/stable",
        &[
            ("usr/lib/a.bin", big),
            ("usr/lib/t.txt", text),
            ("usr/lib/new.bin", noise(3, 70_000)),
        ],
        "1.1",
    );
    let r2 = run(&f, &out);
    assert_eq!(r2.summary.serial, 2);
    let s2 = check_published(&f, &out);
    assert_eq!(s2.refs[0].commit, stable2);
    assert_eq!(s2.refs[1], s1.refs[1], "an unchanged ref keeps its entry");
    let after = pack_files(&out);
    for (name, bytes) in &before {
        assert_eq!(after.get(name), Some(bytes), "{name} changed");
    }
    assert_eq!(after.len(), before.len() + 2 * r2.packs_written.len());
    let old: BTreeSet<(BlobKind, ObjectId)> = before
        .iter()
        .filter(|(n, _)| n.ends_with(".idx"))
        .flat_map(|(_, b)| {
            let idx = PackIndex::decode(b).unwrap();
            idx.entries()
                .iter()
                .map(|e| (e.kind, e.id))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!r2.packs_written.is_empty());
    for p in &r2.packs_written {
        let idx = PackIndex::decode(&after[&p.index_file_name()]).unwrap();
        for e in idx.entries() {
            assert!(
                !old.contains(&(e.kind, e.id)),
                "{} {} packed twice",
                e.kind,
                e.id
            );
        }
        // Only the new commit's own objects and the new file's content are new.
        assert!(idx.find(BlobKind::Commit, &stable2.0).is_some());
    }

    // Nothing changed: the third publish writes no pack and bumps the serial.
    let r3 = run(&f, &out);
    assert_eq!(r3.summary.serial, 3);
    assert!(r3.packs_written.is_empty());
    assert_eq!(pack_files(&out), after);
    check_published(&f, &out);
}

#[test]
fn publish_into_the_repository_itself_by_default() {
    let f = fixture(RepoMode::Archive);
    commit_tree(&f, "main", &[("usr/lib/a.bin", noise(4, 20_000))], "1");
    let o = PublishOptions {
        output: None,
        ..opts(&f, Path::new("/nonexistent"))
    };
    let r = publish(&f.repo, &o).unwrap();
    assert_eq!(r.output, f.repo.path());
    check_published(&f, f.repo.path());
    // The repository is still an intact repository.
    let report = store::fsck::fsck(&f.repo, &Default::default()).unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[test]
fn bare_repository_is_refused() {
    let f = fixture(RepoMode::Bare);
    commit_tree(&f, "main", &[("usr/lib/a.bin", noise(5, 1000))], "1");
    let out = f.root.join("www");
    let err = publish(&f.repo, &opts(&f, &out)).unwrap_err();
    assert!(
        matches!(err, Error::Store(store::Error::Repo { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("archive-mode"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn missing_key_fails_before_writing() {
    let f = fixture(RepoMode::Archive);
    commit_tree(&f, "main", &[("usr/lib/a.bin", noise(6, 1000))], "1");
    let out = f.root.join("www");
    let o = PublishOptions {
        key: f.root.join("no-such-key"),
        ..opts(&f, &out)
    };
    let err = publish(&f.repo, &o).unwrap_err();
    assert!(err.to_string().contains("no-such-key"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn unreadable_previous_summary_is_refused() {
    let f = fixture(RepoMode::Archive);
    commit_tree(&f, "main", &[("usr/lib/a.bin", noise(7, 1000))], "1");
    let out = f.root.join("www");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("summary"), b"garbage").unwrap();
    let err = publish(&f.repo, &opts(&f, &out)).unwrap_err();
    assert!(matches!(err, Error::PreviousSummary { .. }), "{err:?}");
    assert!(err.to_string().contains("serial must only grow"), "{err}");
    assert!(!out.join("packs").exists(), "nothing written");
    // The key is usable (the refusal is about the summary, not the key).
    load_secret_key(&f.key).unwrap();
}
