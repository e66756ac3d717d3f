//! Repository basics: objects written through a transaction read back verified, refs
//! round-trip, revisions resolve.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use store::object::{Commit, DirMeta, DirTree, EntryName, FileHeader, ObjectKind, Xattrs};
use store::repo::FileContent;
use store::{RefName, Repo, RepoMode};

fn sample(mode: RepoMode) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("r"), mode).unwrap();
    let txn = repo.begin().unwrap();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let content = b"hello world\n".repeat(1000);
    let h = FileHeader::regular(0o644, uid, gid, content.len() as u64, Xattrs::empty()).unwrap();
    let fid = txn.write_file(&h, &mut &content[..]).unwrap();
    let l = FileHeader::symlink(b"target".to_vec(), uid, gid, Xattrs::empty()).unwrap();
    let lid = txn.write_file(&l, &mut std::io::empty()).unwrap();
    let meta = txn
        .write_dirmeta(&DirMeta::new(0o755, uid, gid, Xattrs::empty()).unwrap())
        .unwrap();
    let tree = DirTree::new(
        vec![
            (EntryName::new("a").unwrap(), fid),
            (EntryName::new("l").unwrap(), lid),
        ],
        vec![],
    )
    .unwrap();
    let tid = txn.write_dirtree(&tree).unwrap();
    let commit = Commit {
        parent: None,
        timestamp: 1,
        subject: "s".into(),
        body: String::new(),
        metadata: vec![("version".into(), "1".into())],
        root_tree: tid,
        root_meta: meta,
    };
    let cid = txn.write_commit(&commit).unwrap();
    txn.commit().unwrap();
    let branch = RefName::new("os/stable").unwrap();
    repo.write_ref(&branch, &cid).unwrap();

    assert_eq!(repo.read_commit(&cid).unwrap(), commit);
    assert_eq!(repo.read_dirtree(&tid).unwrap(), tree);
    assert_eq!(repo.verify_file(&fid).unwrap(), h);
    assert_eq!(repo.verify_file(&lid).unwrap(), l);
    let (_, c) = repo.read_file(&fid).unwrap();
    let FileContent::Regular(mut r) = c else {
        panic!()
    };
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut back).unwrap();
    assert_eq!(back, content);
    assert_eq!(repo.list_refs().unwrap(), vec![(branch, cid)]);
    assert_eq!(repo.resolve_rev("os/stable").unwrap(), cid);
    assert_eq!(repo.resolve_rev(&cid.to_string()[..8]).unwrap(), cid);
    assert!(repo.resolve_rev("nope").is_err());
    assert_eq!(repo.list_objects(ObjectKind::File).unwrap().len(), 2);
    // Staging is gone after commit.
    assert_eq!(
        std::fs::read_dir(dir.path().join("r/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn bare_round_trip() {
    sample(RepoMode::Bare);
}

#[test]
fn archive_round_trip() {
    sample(RepoMode::Archive);
}
