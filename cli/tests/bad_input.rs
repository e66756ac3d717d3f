//! Bad input gets a clear error and harms nothing (THREATS.md section D, and C9).
//!
//! Each case checks: exit code 1 (not a panic, not a signal, not a hang); stderr names the
//! problem (the path, the object id or the rule broken); the checkout destination was not
//! created and nothing appeared beside it; a sentinel directory outside is untouched; a
//! refused commit moved no ref and left no objects or staging behind.
//!
//! Hostile repositories are made by writing objects straight into `objects/` (see
//! `testkit::raw`): names the store's constructors refuse are hand-encoded.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use store::object::ObjectKind;
use store::{FileId, ObjectId, Repo};
use tempfile::TempDir;
use testkit::cli::{self, Run};
use testkit::raw;
use testkit::snapshot::{object_inodes, Snapshot};
use testkit::tree::Tree;

/// How long a refusal may take before the run is killed and counted as a hang.
const DEADLINE: Duration = Duration::from_secs(10);

/// A repo, an empty `out/` where checkouts go (`out/dest`), and a sentinel directory
/// beside them that nothing may touch.
struct Scene {
    _tmp: TempDir,
    root: PathBuf,
    repo: PathBuf,
    out: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
    sentinel_snap: Snapshot,
}

impl Scene {
    fn new(mode: &str) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let sentinel = root.join("sentinel");
        Tree::parse(
            "d . 755 0 0\nf keep 644 0 0 original\nd sub 700 1 1\nf sub/deeper 600 0 0 secret\n",
        )
        .unwrap()
        .build(&sentinel)
        .unwrap();
        let sentinel_snap = Snapshot::take(&sentinel).unwrap();
        let repo = root.join("repo");
        cli::init(&repo, mode);
        let out = root.join("out");
        std::fs::create_dir(&out).unwrap();
        Scene {
            dest: out.join("dest"),
            _tmp: tmp,
            root,
            repo,
            out,
            sentinel,
            sentinel_snap,
        }
    }

    /// What is wrong with the surroundings after a refused run, if anything.
    fn harm(&self) -> Option<String> {
        let now = Snapshot::take(&self.sentinel).unwrap();
        let d = self.sentinel_snap.diff(&now);
        if !d.is_empty() {
            return Some(format!("the sentinel outside changed: {d:?}"));
        }
        if self.dest.symlink_metadata().is_ok() {
            return Some(format!("{} was created", self.dest.display()));
        }
        let left: Vec<_> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if !left.is_empty() {
            return Some(format!("left behind in the checkout's parent: {left:?}"));
        }
        None
    }

    #[track_caller]
    fn assert_unharmed(&self, context: &str) {
        if let Some(h) = self.harm() {
            panic!("{context}: {h}");
        }
    }

    fn checkout(&self, commit: &str, extra: &[&str]) -> Run {
        let mut args: Vec<&OsStr> = vec![
            "checkout".as_ref(),
            "--repo".as_ref(),
            self.repo.as_os_str(),
            commit.as_ref(),
            self.dest.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        cli::update_with_deadline(args, DEADLINE)
    }

    fn fsck(&self) -> Run {
        cli::update_with_deadline(
            ["fsck".as_ref(), "--repo".as_ref(), self.repo.as_os_str()],
            DEADLINE,
        )
    }
}

/// Why `run` is not a clean refusal mentioning one of `needles` (case-insensitive), if it
/// is not.
fn not_refused(run: &Run, needles: &[&str]) -> Option<String> {
    let err = run.stderr.to_lowercase();
    if run.status.is_none() {
        return Some(format!(
            "hung (killed after {DEADLINE:?})\n{}",
            run.describe()
        ));
    }
    if run.code() != Some(1) {
        return Some(format!("expected exit code 1\n{}", run.describe()));
    }
    if err.contains("panicked at") {
        return Some(format!(
            "refused by a panic, not an error\n{}",
            run.describe()
        ));
    }
    if !needles.iter().any(|n| err.contains(&n.to_lowercase())) {
        return Some(format!(
            "stderr names none of {needles:?}\n{}",
            run.describe()
        ));
    }
    None
}

#[track_caller]
fn assert_refused(run: &Run, needles: &[&str], context: &str) {
    if let Some(why) = not_refused(run, needles) {
        panic!("{context}: {why}");
    }
}

/// The valid content every hostile repo starts from, and the ids in it.
struct Base {
    file: ObjectId,
    big: ObjectId,
    slash: ObjectId,
    sub_tree: ObjectId,
    sub_meta: ObjectId,
    root_tree: ObjectId,
    root_meta: ObjectId,
}

fn base(scene: &Scene) -> Base {
    let src = scene.root.join("base-src");
    Tree::parse(
        "d . 755 0 0\nf f 644 0 0 payload\nf big 644 0 0 @rand:200000:9\nl slash /\nd d 755 0 0\nf d/inner 644 0 0 inner\n",
    )
    .unwrap()
    .build(&src)
    .unwrap();
    let id = cli::commit(&scene.repo, "base", src.as_os_str(), &[]);
    let r = Repo::open(&scene.repo).unwrap();
    let c = r.read_commit(&id.parse().unwrap()).unwrap();
    let t = r.read_dirtree(&c.root_tree).unwrap();
    let file = |n: &str| t.files.iter().find(|e| e.0.as_str() == n).unwrap().1 .0;
    let d = t.dirs.iter().find(|e| e.0.as_str() == "d").unwrap();
    Base {
        file: file("f"),
        big: file("big"),
        slash: file("slash"),
        sub_tree: d.1 .0,
        sub_meta: d.2 .0,
        root_tree: c.root_tree.0,
        root_meta: c.root_meta.0,
    }
}

fn short(id: &ObjectId) -> String {
    id.to_hex()[..8].to_owned()
}

fn n(b: &'static [u8]) -> &'static [u8] {
    b
}

type Files<'a> = Vec<(&'a [u8], ObjectId)>;
type Dirs<'a> = Vec<(&'a [u8], ObjectId, ObjectId)>;

/// One hostile root dirtree: its name, files and dirs.
fn hostile_trees(b: &Base) -> Vec<(&'static str, Files<'static>, Dirs<'static>)> {
    let f = b.file;
    let (dt, dm) = (b.sub_tree, b.sub_meta);
    let long: &'static [u8] = Box::leak(vec![b'n'; 256].into_boxed_slice());
    vec![
        ("file named ..", vec![(n(b".."), f)], vec![]),
        ("file named .", vec![(n(b"."), f)], vec![]),
        ("empty name", vec![(n(b""), f)], vec![]),
        ("name a/b", vec![(n(b"a/b"), f)], vec![]),
        ("name ../escape", vec![(n(b"../sentinel"), f)], vec![]),
        ("name with NUL", vec![(n(b"a\0b"), f)], vec![]),
        ("256-byte name", vec![(long, f)], vec![]),
        ("non-UTF-8 name", vec![(n(b"bad\xffname"), f)], vec![]),
        (
            "duplicate file names",
            vec![(n(b"f"), f), (n(b"f"), f)],
            vec![],
        ),
        ("unsorted names", vec![(n(b"b"), f), (n(b"a"), f)], vec![]),
        (
            "symlink x -> / and directory x/",
            vec![(n(b"x"), b.slash)],
            vec![(n(b"x"), dt, dm)],
        ),
        ("directory named ..", vec![], vec![(n(b".."), dt, dm)]),
        ("directory named a/b", vec![], vec![(n(b"a/b"), dt, dm)]),
        (
            "duplicate directory names",
            vec![],
            vec![(n(b"d"), dt, dm), (n(b"d"), dt, dm)],
        ),
    ]
}

/// Every hostile dirtree, as the root and one level down: checkout refuses it naming
/// the bad object, writes nothing, and fsck reports it.
fn hostile_names(mode: &str) {
    let mut failures = Vec::new();
    let probe = Scene::new(mode);
    let cases = hostile_trees(&base(&probe)).len();
    drop(probe);
    for i in 0..cases {
        for nested in [false, true] {
            let scene = Scene::new(mode);
            let b = base(&scene);
            let (name, files, dirs) = hostile_trees(&b).swap_remove(i);
            let bytes = raw::dirtree_bytes(&files, &dirs);
            let bad = raw::put_metadata(&scene.repo, ObjectKind::DirTree, &bytes).unwrap();
            let root = if nested {
                // A valid root whose subdirectory `d` is the hostile tree.
                let ok =
                    raw::dirtree_bytes(&[(&b"f"[..], b.file)], &[(&b"d"[..], bad, b.sub_meta)]);
                raw::put_metadata(&scene.repo, ObjectKind::DirTree, &ok).unwrap()
            } else {
                bad
            };
            let commit = raw::put_commit(&scene.repo, root, b.root_meta, "hostile").unwrap();
            let label = format!(
                "{mode} repo, {name}{}",
                if nested { " (in d/)" } else { "" }
            );

            let run = scene.checkout(&commit.to_string(), &[]);
            if let Some(why) = not_refused(&run, &[&short(&bad), "invalid", "corrupt"]) {
                failures.push(format!("{label}: checkout: {why}"));
            }
            if let Some(h) = scene.harm() {
                failures.push(format!("{label}: checkout: {h}"));
            }
            let run = scene.fsck();
            if run.code() != Some(1)
                || !format!("{}{}", run.stdout, run.stderr).contains(&short(&bad))
            {
                failures.push(format!(
                    "{label}: fsck should fail (exit 1) naming the bad dirtree {}\n{}",
                    short(&bad),
                    run.describe()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn hostile_names_refused_bare() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    hostile_names("bare");
}

#[test]
fn hostile_names_refused_archive() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    hostile_names("archive");
}

/// Sanity check of the hand encoder: for valid input it gives the store's own bytes.
#[test]
fn hand_encoding_matches_the_store() {
    use store::object::{DirTree, EntryName};
    use store::{DirMetaId, DirTreeId};
    let a = ObjectId::of(b"a");
    let t = DirTree::new(
        vec![(EntryName::new("f").unwrap(), FileId(a))],
        vec![(EntryName::new("d").unwrap(), DirTreeId(a), DirMetaId(a))],
    )
    .unwrap();
    assert_eq!(
        t.encode(),
        raw::dirtree_bytes(&[(&b"f"[..], a)], &[(&b"d"[..], a, a)])
    );
}

/// Archive-mode file objects whose header breaks the format (D11, D14, D15, D17).
#[test]
fn hostile_file_headers_refused_archive() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    testkit::require_tool("zstd");
    let hello_zst = {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "printf hello | zstd -q -c | od -An -v -tx1"]);
        let run = cli::run_command(cmd, DEADLINE);
        let hex: String = run.stdout.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    assert!(!hello_zst.is_empty(), "could not compress with zstd");
    // (what, header, content the id covers, bytes stored after the header)
    type Case<'a> = (&'a str, Vec<u8>, &'a [u8], Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "character device",
            raw::file_header_bytes(0o020644, 0, 0, 0, b""),
            b"",
            vec![],
        ),
        (
            "FIFO",
            raw::file_header_bytes(0o010644, 0, 0, 0, b""),
            b"",
            vec![],
        ),
        (
            "symlink target with NUL",
            raw::file_header_bytes(0o120777, 0, 0, 0, b"/a\0b"),
            b"",
            vec![],
        ),
        (
            "unknown mode bits",
            raw::file_header_bytes(0o1100644, 0, 0, 5, b""),
            b"hello",
            hello_zst.clone(),
        ),
        (
            "size 10, content 5 bytes",
            raw::file_header_bytes(0o100644, 0, 0, 10, b""),
            b"hello",
            hello_zst.clone(),
        ),
        (
            "size 2, content 5 bytes",
            raw::file_header_bytes(0o100644, 0, 0, 2, b""),
            b"hello",
            hello_zst.clone(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, header, content, stored) in cases {
        let scene = Scene::new("archive");
        let b = base(&scene);
        let bad = raw::put_archive_file(&scene.repo, &header, content, &stored).unwrap();
        let tree = raw::dirtree_bytes(&[(&b"bad"[..], bad), (&b"f"[..], b.file)], &[]);
        let tree = raw::put_metadata(&scene.repo, ObjectKind::DirTree, &tree).unwrap();
        let commit = raw::put_commit(&scene.repo, tree, b.root_meta, "hostile").unwrap();
        for extra in [&[][..], &["--copy"][..]] {
            let run = scene.checkout(&commit.to_string(), extra);
            if let Some(why) = not_refused(&run, &[&short(&bad), "bad"]) {
                failures.push(format!("{name}: checkout {extra:?}: {why}"));
            }
            if let Some(h) = scene.harm() {
                failures.push(format!("{name}: checkout {extra:?}: {h}"));
                let _ = std::fs::remove_dir_all(&scene.dest);
            }
        }
        let run = scene.fsck();
        if run.code() != Some(1) || !format!("{}{}", run.stdout, run.stderr).contains(&short(&bad))
        {
            failures.push(format!(
                "{name}: fsck should fail naming {}\n{}",
                short(&bad),
                run.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Bare-mode file objects that are not regular files or symlinks: a hardlink checkout
/// must not link a FIFO or a device node into the tree, and nothing may hang opening one.
#[test]
fn special_files_in_bare_objects_refused() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    let mut failures = Vec::new();
    for (name, ftype, dev) in [
        ("FIFO", rustix::fs::FileType::Fifo, 0),
        (
            "character device 1:3",
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        ),
    ] {
        let scene = Scene::new("bare");
        let b = base(&scene);
        let bad = ObjectId::of(name.as_bytes());
        let path = raw::object_path(&scene.repo, ObjectKind::File, &bad).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            ftype,
            rustix::fs::Mode::from_raw_mode(0o644),
            dev,
        )
        .unwrap();
        let tree = raw::dirtree_bytes(&[(&b"bad"[..], bad), (&b"f"[..], b.file)], &[]);
        let tree = raw::put_metadata(&scene.repo, ObjectKind::DirTree, &tree).unwrap();
        let commit = raw::put_commit(&scene.repo, tree, b.root_meta, "hostile").unwrap();
        for extra in [&[][..], &["--copy"][..]] {
            let run = scene.checkout(&commit.to_string(), extra);
            if let Some(why) = not_refused(&run, &[&short(&bad), "bad"]) {
                failures.push(format!("{name}: checkout {extra:?}: {why}"));
            }
            if let Some(h) = scene.harm() {
                failures.push(format!("{name}: checkout {extra:?}: {h}"));
                let _ = std::fs::remove_dir_all(&scene.dest);
            }
        }
        let run = scene.fsck();
        if run.code() != Some(1) || !format!("{}{}", run.stdout, run.stderr).contains(&short(&bad))
        {
            failures.push(format!(
                "{name}: fsck should fail naming {}\n{}",
                short(&bad),
                run.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Refused commits: nothing published, no ref, no staging left.
#[track_caller]
fn assert_nothing_committed(repo: &Path, context: &str) {
    let r = Repo::open(repo).unwrap();
    assert!(
        r.list_refs().unwrap().is_empty(),
        "{context}: a ref was written"
    );
    let objects = object_inodes(repo).unwrap();
    assert!(
        objects.is_empty(),
        "{context}: objects were published: {:?}",
        objects.values().collect::<Vec<_>>()
    );
    let tmp: Vec<_> = std::fs::read_dir(repo.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{context}: staging left in tmp/: {tmp:?}");
}

/// FIFO, socket and device node in a source directory, and in a tar of it (D14).
#[test]
fn special_files_in_source_refused() {
    testkit::require_root!("mknod of a device node");
    testkit::require_tool("tar");
    let mut failures = Vec::new();
    for (kind, needle) in [("fifo", "fifo"), ("socket", "socket"), ("device", "device")] {
        for mode in ["bare", "archive"] {
            let scene = Scene::new(mode);
            let src = scene.root.join("src");
            Tree::parse("d . 755 0 0\nf a 644 0 0 a\nf sub/dir/z 644 0 0 z\n")
                .unwrap()
                .build(&src)
                .unwrap();
            let special = src.join("sub/dir/thing");
            let _listener;
            match kind {
                "fifo" => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &special,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap(),
                "socket" => _listener = std::os::unix::net::UnixListener::bind(&special).unwrap(),
                _ => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &special,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    rustix::fs::makedev(1, 3),
                )
                .unwrap(),
            }
            let before = Snapshot::take(&src).unwrap();
            let run = cli::try_commit(&scene.repo, "main", src.as_os_str(), &[]);
            if let Some(why) = not_refused(&run, &["sub/dir/thing"]) {
                failures.push(format!("{mode}, {kind} in a directory: {why}"));
            } else if !run.stderr.to_lowercase().contains(needle) {
                failures.push(format!(
                    "{mode}, {kind} in a directory: stderr does not say '{needle}'\n{}",
                    run.describe()
                ));
            }
            if let Err(e) = std::panic::catch_unwind(|| assert_nothing_committed(&scene.repo, "")) {
                failures.push(format!("{mode}, {kind} in a directory: {e:?}"));
            }
            before.assert_same(&Snapshot::take(&src).unwrap(), "the source must not change");

            // GNU tar archives FIFOs and devices (not sockets: it skips them).
            if kind != "socket" {
                let tarball = scene.root.join("t.tar");
                let mut cmd = std::process::Command::new("tar");
                cmd.arg("-cpf").arg(&tarball).arg("-C").arg(&src).arg(".");
                assert_eq!(cli::run_command(cmd, DEADLINE).code(), Some(0));
                let run = cli::try_commit(&scene.repo, "main", tarball.as_os_str(), &[]);
                if let Some(why) = not_refused(&run, &["sub/dir/thing"]) {
                    failures.push(format!("{mode}, {kind} in a tar: {why}"));
                }
                if let Err(e) =
                    std::panic::catch_unwind(|| assert_nothing_committed(&scene.repo, ""))
                {
                    failures.push(format!("{mode}, {kind} in a tar: {e:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// D5: names that are not UTF-8 are refused (documented policy, as OSTree), from a
/// directory and from a tar.
#[test]
fn non_utf8_name_refused() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    testkit::require_tool("tar");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let src = scene.root.join("src");
        Tree::parse("d . 755 0 0\nf ok 644 0 0 fine\nf dir/bad\\xffname 644 0 0 x\n")
            .unwrap()
            .build(&src)
            .unwrap();
        assert!(src
            .join("dir")
            .join(OsStr::from_bytes(b"bad\xffname"))
            .exists());
        let run = cli::try_commit(&scene.repo, "main", src.as_os_str(), &[]);
        assert_refused(
            &run,
            &["utf-8", "utf8", "unicode"],
            &format!("{mode}: non-UTF-8 name in a directory"),
        );
        assert!(
            run.stderr.contains("dir/bad"),
            "{mode}: stderr should name the path\n{}",
            run.describe()
        );
        assert_nothing_committed(&scene.repo, &format!("{mode}: non-UTF-8 name"));

        let tarball = scene.root.join("t.tar");
        let mut cmd = std::process::Command::new("tar");
        cmd.arg("-cpf").arg(&tarball).arg("-C").arg(&src).arg(".");
        assert_eq!(cli::run_command(cmd, DEADLINE).code(), Some(0));
        let run = cli::try_commit(&scene.repo, "main", tarball.as_os_str(), &[]);
        assert_refused(
            &run,
            &["utf-8", "utf8", "unicode"],
            &format!("{mode}: non-UTF-8 name in a tar"),
        );
        assert_nothing_committed(&scene.repo, &format!("{mode}: non-UTF-8 name in a tar"));
    }
}

#[test]
fn checkout_into_non_empty_dest_refused() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let src = scene.root.join("src");
        Tree::parse("d . 755 0 0\nf keep 644 0 0 from the tree\nf new 644 0 0 new\n")
            .unwrap()
            .build(&src)
            .unwrap();
        let id = cli::commit(&scene.repo, "main", src.as_os_str(), &[]);
        let dest = scene.root.join("busy");
        Tree::parse("d . 700 0 0\nf keep 600 0 0 precious\n")
            .unwrap()
            .build(&dest)
            .unwrap();
        let before = Snapshot::take(&dest).unwrap();
        let run = cli::checkout(&scene.repo, &id, &dest, &[]);
        assert_refused(
            &run,
            &["busy", "not empty", "exists"],
            &format!("{mode}: checkout into a non-empty dir"),
        );
        before.assert_same(
            &Snapshot::take(&dest).unwrap(),
            &format!("{mode}: the existing destination must not change"),
        );
        scene.assert_unharmed(mode);
    }
}

/// D9: a symlink to outside the root is checked out as a symlink, never written
/// through, never resolved by `--subpath`, and a later commit of the checkout records it
/// as a symlink instead of following it.
#[test]
fn symlink_to_outside_never_followed() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let src = scene.root.join("src");
        let dsl = format!(
            "d . 755 0 0\nl evil {}\nl up ../../..\nf evil-sibling 644 0 0 x\nd d 755 0 0\nf d/f 644 0 0 y\n",
            scene.sentinel.display().to_string().replace(' ', "\\s")
        );
        Tree::parse(&dsl).unwrap().build(&src).unwrap();
        let expected = Snapshot::take(&src).unwrap();
        let id = cli::commit(&scene.repo, "main", src.as_os_str(), &[]);

        // `--subpath evil` names a file entry (a symlink): checking out just that entry is
        // allowed (the help says PATH is a directory or a file), as long as DEST becomes the
        // symlink itself and nothing is followed.
        let run = scene.checkout(&id, &["--subpath", "evil"]);
        if run.code() == Some(0) {
            let md = scene.dest.symlink_metadata().unwrap();
            assert!(
                md.file_type().is_symlink(),
                "{mode}: --subpath evil did not give the symlink itself"
            );
            std::fs::remove_file(&scene.dest).unwrap();
        } else {
            assert_refused(&run, &["evil"], &format!("{mode}: --subpath evil"));
        }
        scene.assert_unharmed(&format!("{mode}: --subpath evil"));
        // Paths through a symlink, or climbing out of the tree, are refused.
        for sub in [
            "evil/sub",
            "evil/keep",
            "up/x",
            "../sentinel",
            "d/../../sentinel",
        ] {
            let run = scene.checkout(&id, &["--subpath", sub]);
            assert_refused(
                &run,
                &[sub, "subpath", "not a directory", "symlink", "invalid"],
                &format!("{mode}: --subpath {sub}"),
            );
            scene.assert_unharmed(&format!("{mode}: --subpath {sub}"));
        }

        cli::checkout(&scene.repo, &id, &scene.dest, &[]).success();
        expected.assert_same(
            &Snapshot::take(&scene.dest).unwrap(),
            &format!("{mode}: checkout"),
        );
        assert_eq!(
            scene
                .sentinel_snap
                .diff(&Snapshot::take(&scene.sentinel).unwrap()),
            Vec::<String>::new(),
            "{mode}: checkout wrote through the symlink"
        );
        // Commit the checkout itself: the symlinks are kept as symlinks.
        let again = cli::commit(&scene.repo, "again", scene.dest.as_os_str(), &[]);
        let out2 = scene.root.join("again");
        cli::checkout(&scene.repo, &again, &out2, &[]).success();
        expected.assert_same(
            &Snapshot::take(&out2).unwrap(),
            &format!("{mode}: commit of a checkout"),
        );
        assert_eq!(
            scene
                .sentinel_snap
                .diff(&Snapshot::take(&scene.sentinel).unwrap()),
            Vec::<String>::new()
        );
    }
}

/// D7/D9 from a tar: `evil -> OUTSIDE` followed by `evil/pwned` is refused, and nothing
/// is written outside.
#[test]
fn tar_entry_below_a_symlink_refused() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    testkit::require_tool("tar");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let one = scene.root.join("one");
        let two = scene.root.join("two");
        Tree::parse(&format!(
            "d . 755 0 0\nl evil {}\n",
            scene.sentinel.display()
        ))
        .unwrap()
        .build(&one)
        .unwrap();
        Tree::parse("d . 755 0 0\nf evil/pwned 644 0 0 pwned\n")
            .unwrap()
            .build(&two)
            .unwrap();
        let tarball = scene.root.join("evil.tar");
        for (op, dir, member) in [("-cpf", &one, "evil"), ("-rpf", &two, "evil/pwned")] {
            let mut cmd = std::process::Command::new("tar");
            cmd.arg(op).arg(&tarball).arg("-C").arg(dir).arg(member);
            let run = cli::run_command(cmd, DEADLINE);
            assert_eq!(run.code(), Some(0), "{}", run.describe());
        }
        let run = cli::try_commit(&scene.repo, "main", tarball.as_os_str(), &[]);
        assert_refused(
            &run,
            &["evil"],
            &format!("{mode}: tar with evil -> outside, then evil/pwned"),
        );
        assert_nothing_committed(&scene.repo, mode);
        scene.assert_unharmed(mode);
    }
}

/// D12: 30 levels, each directory holding `a` and `b`, both the same child dirtree: 2^30
/// paths from 31 small objects. Checkout must refuse it quickly (an entry budget), not
/// try to write a billion files; fsck must finish quickly (it visits each object once).
#[test]
fn dag_bomb_refused_quickly() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let b = base(&scene);
        let mut tree = raw::put_metadata(
            &scene.repo,
            ObjectKind::DirTree,
            &raw::dirtree_bytes(&[(&b"f"[..], b.file)], &[]),
        )
        .unwrap();
        for _ in 0..30 {
            let bytes = raw::dirtree_bytes(
                &[],
                &[(&b"a"[..], tree, b.sub_meta), (&b"b"[..], tree, b.sub_meta)],
            );
            tree = raw::put_metadata(&scene.repo, ObjectKind::DirTree, &bytes).unwrap();
        }
        let commit = raw::put_commit(&scene.repo, tree, b.root_meta, "bomb").unwrap();
        let run = scene.checkout(&commit.to_string(), &[]);
        assert_refused(
            &run,
            &["entries", "limit", "budget", "too many", "too large"],
            &format!("{mode}: DAG bomb"),
        );
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{mode}: refusing the DAG bomb took {:?}",
            run.elapsed
        );
        // A failed checkout must clean up what it wrote.
        scene.assert_unharmed(&format!("{mode}: DAG bomb"));
        let run = scene.fsck();
        assert!(
            run.status.is_some(),
            "{mode}: fsck of a DAG bomb hung\n{}",
            run.describe()
        );
        assert!(
            !run.stderr.contains("panicked at") && run.code().is_some(),
            "{mode}: fsck of a DAG bomb crashed\n{}",
            run.describe()
        );
    }
}

/// D13: a corrupt store where the file at dirtree S's path holds the bytes of the root
/// tree R (whose `d` is S): read without hash checks, that is a cycle R -> d -> R -> ...
/// fsck reports S corrupt; checkout errors (no hang, no stack overflow).
#[test]
fn dirtree_cycle_in_corrupt_store() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let b = base(&scene);
        let root_bytes = std::fs::read(
            raw::object_path(&scene.repo, ObjectKind::DirTree, &b.root_tree).unwrap(),
        )
        .unwrap();
        let sub_path = raw::object_path(&scene.repo, ObjectKind::DirTree, &b.sub_tree).unwrap();
        raw::put_at(&sub_path, &root_bytes).unwrap();
        let commit = Repo::open(&scene.repo)
            .unwrap()
            .read_ref(&store::RefName::new("base").unwrap())
            .unwrap()
            .unwrap();

        let run = scene.fsck();
        assert_refused(
            &run.clone_for_fsck(),
            &[&short(&b.sub_tree)],
            &format!("{mode}: fsck of a dirtree cycle"),
        );
        for extra in [&[][..], &["--copy"][..]] {
            let run = scene.checkout(&commit.to_string(), extra);
            assert_refused(
                &run,
                &[&short(&b.sub_tree), "corrupt"],
                &format!("{mode}: checkout {extra:?} of a dirtree cycle"),
            );
            scene.assert_unharmed(&format!("{mode}: checkout {extra:?} of a dirtree cycle"));
        }
    }
}

/// C9: a file object whose content has one byte flipped: `checkout --copy` (which reads
/// every byte) refuses it, fsck reports it, naming the object.
#[test]
fn flipped_file_content_reported() {
    testkit::require_root!("hostile trees are built with owners and device nodes");
    let mut failures = Vec::new();
    for mode in ["bare", "archive"] {
        let scene = Scene::new(mode);
        let b = base(&scene);
        let path = raw::object_path(&scene.repo, ObjectKind::File, &b.big).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 1000;
        bytes[at] ^= 0x01;
        raw::put_at(&path, &bytes).unwrap();
        let commit = Repo::open(&scene.repo)
            .unwrap()
            .read_ref(&store::RefName::new("base").unwrap())
            .unwrap()
            .unwrap();

        let run = scene.fsck();
        if let Some(why) = not_refused(&run.clone_for_fsck(), &[&short(&b.big)]) {
            failures.push(format!("{mode}: fsck of a flipped byte: {why}"));
        }
        let run = scene.checkout(&commit.to_string(), &["--copy"]);
        if let Some(why) = not_refused(&run, &[&short(&b.big), "big"]) {
            failures.push(format!("{mode}: checkout --copy of a flipped byte: {why}"));
        }
        if let Some(h) = scene.harm() {
            failures.push(format!("{mode}: checkout --copy of a flipped byte: {h}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// fsck may print its findings on stdout or stderr: look at both.
trait FsckOutput {
    fn clone_for_fsck(&self) -> Run;
}

impl FsckOutput for Run {
    fn clone_for_fsck(&self) -> Run {
        Run {
            cmdline: self.cmdline.clone(),
            status: self.status,
            stdout: self.stdout.clone(),
            stderr: format!("{}\n{}", self.stdout, self.stderr),
            elapsed: self.elapsed,
        }
    }
}
