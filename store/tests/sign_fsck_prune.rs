//! Keys and signatures (THREATS A1-A6, A9), fsck (C9) and prune.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use store::fsck::{fsck, FsckError, FsckOptions};
use store::id::{CommitId, DirTreeId, FileId};
use store::object::{
    Commit, DirMeta, DirTree, EntryName, FileHeader, ObjectKind, SignatureEntry, Signatures, Xattrs,
};
use store::prune::{prune, PruneOptions};
use store::sign::{
    self, generate_key, load_public_key, load_secret_key, load_trusted_keys, parse_public_key,
    sign_commit, signatures_report, verify_commit, SigningKey, TrustedKeys,
};
use store::{Error, RefName, Repo, RepoMode};

fn ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// A commit of `/shared` (same in every commit), `/etc/version` (= `unique`) and a
/// subdirectory `/lib` holding `/lib/shared.so`.
fn make_commit(repo: &Repo, unique: &str, parent: Option<CommitId>, timestamp: u64) -> CommitId {
    let (uid, gid) = ids();
    let _g = repo.lock_shared().unwrap();
    let txn = repo.begin().unwrap();
    let file = |content: &[u8]| {
        let h =
            FileHeader::regular(0o644, uid, gid, content.len() as u64, Xattrs::empty()).unwrap();
        txn.write_file(&h, &mut &content[..]).unwrap()
    };
    let shared = file(&b"shared content\n".repeat(100));
    let uniq = file(unique.as_bytes());
    let so = file(b"\x7fELF library");
    let meta = txn
        .write_dirmeta(&DirMeta::new(0o755, uid, gid, Xattrs::empty()).unwrap())
        .unwrap();
    let etc = txn
        .write_dirtree(
            &DirTree::new(vec![(EntryName::new("version").unwrap(), uniq)], vec![]).unwrap(),
        )
        .unwrap();
    let lib = txn
        .write_dirtree(
            &DirTree::new(vec![(EntryName::new("shared.so").unwrap(), so)], vec![]).unwrap(),
        )
        .unwrap();
    let root = txn
        .write_dirtree(
            &DirTree::new(
                vec![(EntryName::new("shared").unwrap(), shared)],
                vec![
                    (EntryName::new("etc").unwrap(), etc, meta),
                    (EntryName::new("lib").unwrap(), lib, meta),
                ],
            )
            .unwrap(),
        )
        .unwrap();
    let id = txn
        .write_commit(&Commit {
            parent,
            timestamp,
            subject: unique.into(),
            body: String::new(),
            metadata: vec![],
            root_tree: root,
            root_meta: meta,
        })
        .unwrap();
    txn.commit().unwrap();
    id
}

fn set_ref(repo: &Repo, name: &str, id: &CommitId) {
    repo.write_ref(&RefName::new(name).unwrap(), id).unwrap();
}

fn obj_path(repo: &Repo, kind: ObjectKind, id: &store::ObjectId) -> PathBuf {
    repo.path().join(repo.object_path(kind, id))
}

fn sig_path(repo: &Repo, id: &CommitId) -> PathBuf {
    let hex = id.to_string();
    repo.path()
        .join("objects")
        .join(&hex[..2])
        .join(format!("{}.sig", &hex[2..]))
}

fn flip_last_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len() - 1;
    b[n] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

fn new_repo(mode: RepoMode) -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo"), mode).unwrap();
    (dir, repo)
}

fn key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

fn trust(keys: &[&SigningKey]) -> TrustedKeys {
    let mut t = TrustedKeys::new();
    for (i, k) in keys.iter().enumerate() {
        t.insert(format!("k{i}"), sign::PublicKey::from(*k));
    }
    t
}

fn tree_of(repo: &Repo, c: &CommitId) -> DirTreeId {
    repo.read_commit(c).unwrap().root_tree
}

fn file_in(repo: &Repo, tree: &DirTreeId, dir: &str, name: &str) -> FileId {
    let root = repo.read_dirtree(tree).unwrap();
    let sub = root.dirs.iter().find(|d| d.0.as_str() == dir).unwrap().1;
    let t = repo.read_dirtree(&sub).unwrap();
    t.files.iter().find(|f| f.0.as_str() == name).unwrap().1
}

// ---------------------------------------------------------------- keys

#[test]
fn key_generate_and_load_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("release.key");
    let public = generate_key(&path).unwrap();
    let secret = load_secret_key(&path).unwrap();
    assert_eq!(sign::PublicKey::from(&secret), public);
    assert_eq!(
        load_public_key(&sign::public_key_path(&path)).unwrap(),
        public
    );
    assert_eq!(
        dir.path().join("release.key.pub"),
        sign::public_key_path(&path)
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && text.trim().len() == 44, "{text:?}");
    // Never overwrite a key.
    assert!(generate_key(&path).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    std::fs::write(dir.path().join("bad"), "nope\n").unwrap();
    assert!(matches!(
        load_secret_key(&dir.path().join("bad")),
        Err(Error::BadKey { .. })
    ));
}

#[test]
fn parse_public_key_rejects_bad_forms() {
    let k = key();
    let good = STANDARD.encode(k.verifying_key().to_bytes());
    assert_eq!(
        parse_public_key(&format!("  {good}\n")).unwrap(),
        sign::PublicKey::from(&k)
    );

    let err = |text: &str| match parse_public_key(text) {
        Err(Error::BadKey { reason, .. }) => reason,
        other => panic!("{text:?} accepted: {other:?}"),
    };
    assert!(err("not base64!!").contains("base64"));
    assert!(err(&good[..good.len() - 1]).contains("base64"));
    assert!(err(&STANDARD.encode([7u8; 31])).contains("31 bytes"));
    assert!(err(&STANDARD.encode([7u8; 33])).contains("33 bytes"));
    assert!(err("").contains("0 bytes"));
    // seed || public key, as some tools write secret keys.
    assert!(err(&STANDARD.encode(k.to_keypair_bytes())).contains("secret key"));
    // Small-order points: the identity (y = 1) and the order-4 point y = 0.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(err(&STANDARD.encode(identity)).contains("weak"));
    assert!(err(&STANDARD.encode([0u8; 32])).contains("weak"));
    // Some encoding that is not a curve point at all.
    let not_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some byte pattern is off the curve");
    err(&STANDARD.encode(not_point));
}

#[test]
fn trusted_keys_file_and_dir_count_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(), key());
    let pa = STANDARD.encode(a.verifying_key().to_bytes());
    let pb = STANDARD.encode(b.verifying_key().to_bytes());
    let file = dir.path().join("trusted");
    std::fs::write(&file, format!("# release keys\n\n{pa}\n  {pb}  \n{pa}\n")).unwrap();
    let t = load_trusted_keys(&file).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.name_of(&a.verifying_key().to_bytes()), Some("line 3"));
    assert_eq!(t.name_of(&b.verifying_key().to_bytes()), Some("line 4"));

    let kd = dir.path().join("keys.d");
    std::fs::create_dir(&kd).unwrap();
    std::fs::write(kd.join("alpha.pub"), format!("{pa}\n")).unwrap();
    std::fs::write(kd.join("alias.pub"), format!("{pa}\n")).unwrap();
    std::fs::write(kd.join("README"), "not a key").unwrap();
    let t = load_trusted_keys(&kd).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.name_of(&a.verifying_key().to_bytes()), Some("alias"));

    // One signature by a key listed under two names counts once.
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    sign_commit(&repo, &c, &a).unwrap();
    sign_commit(&repo, &c, &a).unwrap();
    let v = verify_commit(&repo, &c, &t).unwrap();
    assert_eq!(v.trusted, vec!["alias".to_owned()]);
    assert_eq!(repo.read_signatures(&c).unwrap().0.len(), 1);

    // A bad line fails the whole load, naming the line.
    std::fs::write(&file, format!("{pa}\nAAAA\n")).unwrap();
    let e = load_trusted_keys(&file).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
}

// ---------------------------------------------------------------- signatures

#[test]
fn sign_and_verify() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    let (k1, k2, other) = (key(), key(), key());
    assert!(matches!(
        verify_commit(&repo, &c, &trust(&[&k1])),
        Err(Error::Unsigned { .. })
    ));
    sign_commit(&repo, &c, &k1).unwrap();
    sign_commit(&repo, &c, &other).unwrap();
    let v = verify_commit(&repo, &c, &trust(&[&k1, &k2])).unwrap();
    assert_eq!(v.trusted, vec!["k0".to_owned()]);
    assert_eq!((v.untrusted, v.invalid), (1, 0));
    let report = signatures_report(&repo, &c).unwrap();
    assert_eq!(report.len(), 2);
    assert!(report.iter().all(|s| s.valid));
    // A1: signed only by keys outside the trusted set.
    match verify_commit(&repo, &c, &trust(&[&k2])) {
        Err(Error::NoTrustedSignature {
            untrusted: 2,
            invalid: 0,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Signing a commit that is not there fails.
    let absent = CommitId(store::ObjectId::of(b"nothing"));
    assert!(sign_commit(&repo, &absent, &k1).is_err());
    assert!(verify_commit(&repo, &absent, &trust(&[&k1])).is_err());
}

#[test]
fn signature_copied_from_another_commit_is_rejected() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let x = make_commit(&repo, "x", None, 1);
    let y = make_commit(&repo, "y", Some(x), 2);
    set_ref(&repo, "stable", &y);
    let k = key();
    sign_commit(&repo, &x, &k).unwrap();
    std::fs::copy(sig_path(&repo, &x), sig_path(&repo, &y)).unwrap();
    match verify_commit(&repo, &y, &trust(&[&k])) {
        Err(Error::NoTrustedSignature {
            invalid: 1,
            untrusted: 0,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!signatures_report(&repo, &y).unwrap()[0].valid);
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    assert!(r
        .errors
        .iter()
        .any(|e| matches!(e, FsckError::BadSignature { commit, .. } if *commit == y)));
}

#[test]
fn summary_domain_signature_is_not_a_commit_signature() {
    use ed25519_dalek::Signer;
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    let k = key();
    let mut msg = sign::SUMMARY_SIGNATURE_DOMAIN.to_vec();
    msg.extend_from_slice(c.0.as_bytes());
    let mut sigs = Signatures::default();
    sigs.insert(SignatureEntry {
        public_key: k.verifying_key().to_bytes(),
        signature: k.sign(&msg).to_bytes(),
    });
    repo.write_signatures(&c, &sigs).unwrap();
    assert!(matches!(
        verify_commit(&repo, &c, &trust(&[&k])),
        Err(Error::NoTrustedSignature { invalid: 1, .. })
    ));
    // And the real message is the domain tag then the raw id.
    assert_eq!(
        &sign::commit_message(&c)[..sign::COMMIT_SIGNATURE_DOMAIN.len()],
        sign::COMMIT_SIGNATURE_DOMAIN
    );
    assert_ne!(
        sign::COMMIT_SIGNATURE_DOMAIN,
        sign::SUMMARY_SIGNATURE_DOMAIN
    );
}

#[test]
fn truncated_or_garbage_signature_file_is_an_error() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    set_ref(&repo, "stable", &c);
    let k = key();
    sign_commit(&repo, &c, &k).unwrap();
    let path = sig_path(&repo, &c);
    let good = std::fs::read(&path).unwrap();
    let bad_forms: Vec<Vec<u8>> = vec![
        good[..good.len() - 1].to_vec(),  // 63-byte signature
        [good.clone(), vec![0]].concat(), // 65-byte signature / trailing byte
        b"garbage".to_vec(),
        Vec::new(),
        vec![0xff; 200 * 1024], // larger than the read cap
    ];
    for bytes in bad_forms {
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify_commit(&repo, &c, &trust(&[&k])).is_err());
        assert!(signatures_report(&repo, &c).is_err());
        let r = fsck(&repo, &FsckOptions::default()).unwrap();
        assert!(!r.is_ok());
        assert!(
            r.errors
                .iter()
                .all(|e| matches!(e, FsckError::BadSignature { .. })),
            "{:?}",
            r.errors
        );
    }
    // Non-canonical S (S + L): strict verification refuses it.
    let mut sigs = Signatures::decode(&good).unwrap();
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = &mut sigs.0[0].signature[32..];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(l[i]) + carry;
        s[i] = v as u8;
        carry = v >> 8;
    }
    repo.write_signatures(&c, &sigs).unwrap();
    assert!(matches!(
        verify_commit(&repo, &c, &trust(&[&k])),
        Err(Error::NoTrustedSignature { invalid: 1, .. })
    ));
}

#[test]
fn oversized_signature_file_names_the_file_and_the_limit() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    let path = sig_path(&repo, &c);
    std::fs::write(&path, vec![0xff; 200 * 1024]).unwrap();
    match repo.read_signatures(&c) {
        Err(Error::SignaturesTooLarge { path: p, limit }) => {
            assert_eq!(p, path);
            assert_eq!(limit, store::repo::MAX_SIGNATURES_FILE);
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- fsck

#[test]
fn fsck_clean_repo() {
    for mode in [RepoMode::Archive, RepoMode::Bare] {
        let (_d, repo) = new_repo(mode);
        let c1 = make_commit(&repo, "1", None, 1);
        let c2 = make_commit(&repo, "2", Some(c1), 2);
        set_ref(&repo, "os/stable", &c2);
        sign_commit(&repo, &c2, &key()).unwrap();
        let r = fsck(&repo, &FsckOptions::default()).unwrap();
        assert!(r.is_ok(), "{:?}", r.errors);
        assert_eq!(r.refs.len(), 1);
        assert_eq!(r.refs[0].name, "heads/os/stable");
        assert_eq!(r.refs[0].valid_signatures(), 1);
        assert!(
            r.unreachable.values().all(|&n| n == 0),
            "{:?}",
            r.unreachable
        );
        // 2 commits, 2 roots + 2 etc + 1 lib trees, 1 dirmeta, 4 files.
        assert_eq!(r.objects_checked, 2 + 5 + 1 + 4);
    }
}

#[test]
fn fsck_detects_flipped_file_byte() {
    for mode in [RepoMode::Archive, RepoMode::Bare] {
        let (_d, repo) = new_repo(mode);
        let c = make_commit(&repo, "1", None, 1);
        set_ref(&repo, "stable", &c);
        let f = file_in(&repo, &tree_of(&repo, &c), "lib", "shared.so");
        flip_last_byte(&obj_path(&repo, ObjectKind::File, &f.0));
        let r = fsck(&repo, &FsckOptions::default()).unwrap();
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert!(
            matches!(&r.errors[0], FsckError::Corrupt { kind: ObjectKind::File, id, .. } if *id == f.0)
        );
        // The quick mode does not read contents.
        assert!(fsck(
            &repo,
            &FsckOptions {
                skip_file_contents: true
            }
        )
        .unwrap()
        .is_ok());
    }
}

#[test]
fn fsck_detects_flipped_dirtree_byte_and_missing_objects() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    set_ref(&repo, "stable", &c);
    let root = repo.read_dirtree(&tree_of(&repo, &c)).unwrap();
    let lib = root.dirs.iter().find(|d| d.0.as_str() == "lib").unwrap().1;
    flip_last_byte(&obj_path(&repo, ObjectKind::DirTree, &lib.0));
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    assert!(r.errors.iter().any(|e| matches!(e, FsckError::Corrupt { kind: ObjectKind::DirTree, id, .. } if *id == lib.0)), "{:?}", r.errors);

    // A missing file reachable from the ref.
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    set_ref(&repo, "stable", &c);
    let f = file_in(&repo, &tree_of(&repo, &c), "etc", "version");
    std::fs::remove_file(obj_path(&repo, ObjectKind::File, &f.0)).unwrap();
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        matches!(&r.errors[0], FsckError::Missing { kind: ObjectKind::File, id, .. } if *id == f.0)
    );

    // A missing dirtree.
    let root = repo.read_dirtree(&tree_of(&repo, &c)).unwrap();
    let etc = root.dirs.iter().find(|d| d.0.as_str() == "etc").unwrap().1;
    std::fs::remove_file(obj_path(&repo, ObjectKind::DirTree, &etc.0)).unwrap();
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    assert!(r.errors.iter().any(|e| matches!(e, FsckError::Missing { kind: ObjectKind::DirTree, id, .. } if *id == etc.0)), "{:?}", r.errors);
}

#[test]
fn fsck_detects_ref_to_missing_commit_and_bad_ref() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "1", None, 1);
    set_ref(&repo, "stable", &c);
    let ghost = store::ObjectId::of(b"ghost");
    std::fs::write(repo.path().join("refs/heads/ghost"), format!("{ghost}\n")).unwrap();
    std::fs::create_dir_all(repo.path().join("refs/remotes/origin")).unwrap();
    std::fs::write(repo.path().join("refs/remotes/origin/junk"), "hello\n").unwrap();
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    let names: Vec<&str> = r
        .errors
        .iter()
        .map(|e| match e {
            FsckError::BadRef { name, .. } => name.as_str(),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(names, vec!["heads/ghost", "remotes/origin/junk"]);
}

#[test]
fn fsck_notes_unreachable_and_staging_without_errors() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c1 = make_commit(&repo, "1", None, 1);
    let _orphan = make_commit(&repo, "orphan", None, 5);
    set_ref(&repo, "stable", &c1);
    std::fs::create_dir(repo.path().join("tmp/txn-crashed")).unwrap();
    let r = fsck(&repo, &FsckOptions::default()).unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    assert_eq!(r.unreachable[&ObjectKind::Commit], 1);
    assert_eq!(r.unreachable[&ObjectKind::File], 1);
    assert_eq!(r.unreachable[&ObjectKind::DirTree], 2);
    assert_eq!(r.staging_dirs, 1);
}

// ---------------------------------------------------------------- prune

fn chain(repo: &Repo) -> [CommitId; 3] {
    let c1 = make_commit(repo, "1", None, 100);
    let c2 = make_commit(repo, "2", Some(c1), 200);
    let c3 = make_commit(repo, "3", Some(c2), 300);
    set_ref(repo, "os/stable", &c3);
    [c1, c2, c3]
}

fn count(repo: &Repo, kind: ObjectKind) -> usize {
    repo.list_objects(kind).unwrap().len()
}

#[test]
fn prune_by_depth_keeps_shared_and_reachable() {
    for mode in [RepoMode::Archive, RepoMode::Bare] {
        let (_d, repo) = new_repo(mode);
        let [c1, c2, c3] = chain(&repo);
        let k = key();
        sign_commit(&repo, &c1, &k).unwrap();
        let f1 = file_in(&repo, &tree_of(&repo, &c1), "etc", "version");
        let shared = file_in(&repo, &tree_of(&repo, &c1), "lib", "shared.so");
        assert_eq!(count(&repo, ObjectKind::File), 5);

        let r = prune(
            &repo,
            &PruneOptions {
                depth: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.commits_kept, 2);
        assert_eq!(r.removed[&ObjectKind::Commit], 1);
        assert_eq!(r.removed[&ObjectKind::File], 1);
        // c1's root and etc trees go; lib is shared.
        assert_eq!(r.removed[&ObjectKind::DirTree], 2);
        assert_eq!(r.signatures_removed, 1);
        assert!(r.bytes_freed > 0);
        assert!(!sig_path(&repo, &c1).exists());
        assert!(!repo.has_object(ObjectKind::Commit, &c1.0).unwrap());
        assert!(!repo.has_object(ObjectKind::File, &f1.0).unwrap());
        assert!(repo.has_object(ObjectKind::File, &shared.0).unwrap());
        for c in [c2, c3] {
            assert!(repo.has_object(ObjectKind::Commit, &c.0).unwrap());
        }
        let f = fsck(&repo, &FsckOptions::default()).unwrap();
        assert!(f.is_ok(), "{:?}", f.errors);
        assert!(
            f.notes.iter().any(|n| n.contains("truncated")),
            "{:?}",
            f.notes
        );
        assert!(f.unreachable.values().all(|&n| n == 0));

        // Again: nothing more to do. Then depth 0 keeps only the head.
        let again = prune(
            &repo,
            &PruneOptions {
                depth: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(again.objects_removed(), 0);
        let r = prune(
            &repo,
            &PruneOptions {
                depth: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.commits_kept, 1);
        assert_eq!(count(&repo, ObjectKind::Commit), 1);
        assert_eq!(count(&repo, ObjectKind::File), 3);
        assert!(fsck(&repo, &FsckOptions::default()).unwrap().is_ok());
    }
}

#[test]
fn prune_depth_counts_from_each_ref() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let [c1, c2, c3] = chain(&repo);
    // A second ref at c2 keeps c2's parent under depth 1, even though the first ref's
    // walk reaches c2 at its last allowed step.
    set_ref(&repo, "os/old", &c2);
    let r = prune(
        &repo,
        &PruneOptions {
            depth: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.objects_removed(), 0);
    assert_eq!(r.commits_kept, 3);
    for c in [c1, c2, c3] {
        assert!(repo.has_object(ObjectKind::Commit, &c.0).unwrap());
    }
}

#[test]
fn prune_by_age() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let [c1, c2, c3] = chain(&repo);
    let r = prune(
        &repo,
        &PruneOptions {
            older_than: Some(150),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.commits_kept, 2);
    assert!(!repo.has_object(ObjectKind::Commit, &c1.0).unwrap());
    assert!(repo.has_object(ObjectKind::Commit, &c2.0).unwrap());
    // Older than everything: the head stays anyway.
    let r = prune(
        &repo,
        &PruneOptions {
            older_than: Some(10_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.commits_kept, 1);
    assert!(repo.has_object(ObjectKind::Commit, &c3.0).unwrap());
    assert!(!repo.has_object(ObjectKind::Commit, &c2.0).unwrap());
    assert!(fsck(&repo, &FsckOptions::default()).unwrap().is_ok());
}

#[test]
fn prune_dry_run_deletes_nothing() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let _ = chain(&repo);
    let _orphan = make_commit(&repo, "orphan", None, 5);
    std::fs::create_dir(repo.path().join("tmp/txn-crashed")).unwrap();
    let before: Vec<usize> = ObjectKind::ALL.iter().map(|k| count(&repo, *k)).collect();
    let dry = prune(
        &repo,
        &PruneOptions {
            depth: Some(0),
            dry_run: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        before,
        ObjectKind::ALL
            .iter()
            .map(|k| count(&repo, *k))
            .collect::<Vec<_>>()
    );
    assert!(repo.path().join("tmp/txn-crashed").exists());
    let real = prune(
        &repo,
        &PruneOptions {
            depth: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (dry.removed.clone(), dry.bytes_freed),
        (real.removed.clone(), real.bytes_freed)
    );
    assert_eq!(real.removed[&ObjectKind::Commit], 3);
    assert_eq!(real.staging_dirs_removed, 1);
    assert!(!repo.path().join("tmp/txn-crashed").exists());
}

#[test]
fn prune_keeps_remote_refs_and_refuses_on_damage() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let c = make_commit(&repo, "remote", None, 1);
    std::fs::create_dir_all(repo.path().join("refs/remotes/origin")).unwrap();
    std::fs::write(
        repo.path().join("refs/remotes/origin/stable"),
        format!("{c}\n"),
    )
    .unwrap();
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    assert_eq!(r.objects_removed(), 0);

    // A corrupt reachable dirtree hides what it reaches: refuse, delete nothing.
    let orphan = make_commit(&repo, "orphan", None, 2);
    flip_last_byte(&obj_path(&repo, ObjectKind::DirTree, &tree_of(&repo, &c).0));
    let e = prune(&repo, &PruneOptions::default()).unwrap_err();
    assert!(e.to_string().contains("prune refused"), "{e}");
    assert!(repo.has_object(ObjectKind::Commit, &orphan.0).unwrap());

    // So does an unreadable ref.
    let (_d, repo) = new_repo(RepoMode::Archive);
    let _ = chain(&repo);
    std::fs::write(repo.path().join("refs/heads/broken"), "xyz\n").unwrap();
    assert!(prune(
        &repo,
        &PruneOptions {
            depth: Some(0),
            ..Default::default()
        }
    )
    .is_err());
    assert_eq!(count(&repo, ObjectKind::Commit), 3);
}

#[test]
fn prune_waits_for_writers() {
    let (_d, repo) = new_repo(RepoMode::Archive);
    let _ = chain(&repo);
    let guard = repo.lock_shared().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = prune(
                &repo,
                &PruneOptions {
                    depth: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "prune ran under a writer's lock"
        );
        drop(guard);
        assert_eq!(h.join().unwrap().removed[&ObjectKind::Commit], 2);
    });
}
