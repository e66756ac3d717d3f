//! The merge's check of copied defaults against their object ids ([`super::Expected`]).
#![allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use store::object::{FileHasher, FileHeader, Xattrs};

use super::tests::tempdir;
use super::{merge_at, Expected, MergeAt, Root};
use crate::error::Error;

/// The header and id `content` has as a 0644 file owned by the caller.
fn object(content: &[u8]) -> (store::FileId, FileHeader) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let header =
        FileHeader::regular(0o644, uid, gid, content.len() as u64, Xattrs::empty()).unwrap();
    let mut h = FileHasher::new(&header);
    h.update(content);
    (h.finish(), header)
}

/// Merge `new` (first deployment) into `dest` with `expected`.
fn merge_new(new: &Path, dest_parent: &Path, expected: &Expected) -> crate::Result<()> {
    let new_fd = store::durable::open_dir(new).unwrap();
    let parent_fd = store::durable::open_dir(dest_parent).unwrap();
    merge_at(&MergeAt {
        old_defaults: None,
        local: None,
        new_defaults: Root {
            fd: new_fd.as_fd(),
            path: new,
        },
        dest_parent: Root {
            fd: parent_fd.as_fd(),
            path: dest_parent,
        },
        dest_name: "etc".as_ref(),
        expected: Some(expected),
    })
    .map(|_| ())
}

fn write_0644(p: &Path, content: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

#[test]
fn defaults_that_hash_to_their_ids_are_copied() {
    let t = tempdir();
    let new = t.path().join("usr/etc");
    write_0644(&new.join("a.conf"), b"a=1\n");
    write_0644(&new.join("sub/b.conf"), b"b=1\n");
    let mut expected = Expected::default();
    let (id, h) = object(b"a=1\n");
    expected.insert("/etc/a.conf".into(), id, h);
    let (id, h) = object(b"b=1\n");
    expected.insert("/etc/sub/b.conf".into(), id, h);
    merge_new(&new, t.path(), &expected).unwrap();
    assert_eq!(fs::read(t.path().join("etc/sub/b.conf")).unwrap(), b"b=1\n");
}

#[test]
fn a_default_that_differs_from_its_object_is_refused_by_id_and_path() {
    let t = tempdir();
    let new = t.path().join("usr/etc");
    write_0644(&new.join("sub/b.conf"), b"b=X\n");
    let mut expected = Expected::default();
    let (id, h) = object(b"b=1\n");
    expected.insert("/etc/sub/b.conf".into(), id, h);
    match merge_new(&new, t.path(), &expected) {
        Err(Error::CorruptObject { id: got, path, .. }) => {
            assert_eq!(got, id);
            assert_eq!(path, "/usr/etc/sub/b.conf");
        }
        r => panic!("{r:?}"),
    }
    assert!(!t.path().join("etc").exists(), "the half merge is removed");
}

#[test]
fn a_default_of_another_size_or_not_in_the_commit_is_refused() {
    let t = tempdir();
    let new = t.path().join("usr/etc");
    write_0644(&new.join("a.conf"), b"a=10\n");
    let mut expected = Expected::default();
    let (id, h) = object(b"a=1\n");
    expected.insert("/etc/a.conf".into(), id, h);
    let e = merge_new(&new, t.path(), &expected).unwrap_err();
    assert!(e.to_string().contains("5 bytes"), "{e}");

    write_0644(&new.join("extra.conf"), b"x\n");
    let e = merge_new(&new, t.path(), &Expected::default()).unwrap_err();
    assert!(e.to_string().contains("not a file of the commit"), "{e}");
}
