//! Every error `update` prints for bad user input, pinned.
//!
//! Each case runs the `update` binary against temp directories and compares its exit code
//! and stderr with `tests/errors/NAME.txt`. Temp paths read `$TMP` and the scene's commit
//! id `$COMMIT`, so the files do not change from run to run.
//!
//! After a deliberate change of wording, rewrite the files and review the diff:
//! `UPDATE_BLESS=1 cargo test -p update-cli --test errors`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_update");

/// A repository `repo` (archive mode) with branch `stable` on one commit of `src/`, a key
/// pair `k.key`/`k.key.pub`, a file `garbage.key` that holds no key, and a non-empty
/// directory `full/`.
struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    commit: String,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir_all(root.join("src/etc")).unwrap();
        fs::write(root.join("src/etc/a"), "a\n").unwrap();
        fs::create_dir(root.join("full")).unwrap();
        fs::write(root.join("full/x"), "x\n").unwrap();
        fs::write(root.join("garbage.key"), "garbage\n").unwrap();
        bootable_trees(&root);
        let mut s = Scene {
            _tmp: tmp,
            root,
            commit: String::new(),
        };
        s.ok(&["init", "--repo", "$TMP/repo", "--mode", "archive"]);
        s.ok(&["key", "generate", "--output", "$TMP/k.key"]);
        let out = s.ok(&["commit", "--repo", "$TMP/repo", "-b", "stable", "$TMP/src"]);
        s.commit = out.trim().to_string();
        assert_eq!(s.commit.len(), 64, "{out}");
        s
    }

    /// Run `update` with `$TMP` in `args` replaced by the scene's directory.
    fn command(&self, args: &[&str]) -> Command {
        let root = self.root.to_str().unwrap();
        let mut c = Command::new(BIN);
        c.args(args.iter().map(|a| a.replace("$TMP", root)))
            .env_remove("UPDATE_REPO")
            .env("NO_COLOR", "1");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The exit code and stderr of a failing run, normalised.
    fn fail(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        let code = out.status.code().expect("exited, not killed by a signal");
        assert_ne!(code, 0, "{args:?} succeeded");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let stderr = stderr
            .replace(self.root.to_str().unwrap(), "$TMP")
            .replace(&self.commit, "$COMMIT");
        format!("exit: {code}\n{stderr}")
    }
}

/// Root filesystems `commit --bootable` refuses, each `boot-CASE/` for one refusal.
fn bootable_trees(root: &Path) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    let k = "6.1.0-x-amd64";
    for t in ["nokernel", "twokernels", "nomodules", "noinitramfs", "fifo"] {
        w(&format!("boot-{t}/etc/hostname"), "debian\n");
        w(&format!("boot-{t}/usr/bin/sh"), "sh\n");
    }
    fs::create_dir_all(root.join(format!("boot-nokernel/usr/lib/modules/{k}"))).unwrap();
    for v in [k, "6.1.0-y-amd64"] {
        w(&format!("boot-twokernels/boot/vmlinuz-{v}"), "kernel\n");
        w(&format!("boot-twokernels/boot/initrd.img-{v}"), "initrd\n");
        fs::create_dir_all(root.join(format!("boot-twokernels/usr/lib/modules/{v}"))).unwrap();
    }
    w(&format!("boot-nomodules/boot/vmlinuz-{k}"), "kernel\n");
    w(&format!("boot-nomodules/boot/initrd.img-{k}"), "initrd\n");
    w(&format!("boot-noinitramfs/boot/vmlinuz-{k}"), "kernel\n");
    fs::create_dir_all(root.join(format!("boot-noinitramfs/usr/lib/modules/{k}"))).unwrap();
    w("boot-etclink/usr/etc/hostname", "debian\n");
    std::os::unix::fs::symlink("usr/etc", root.join("boot-etclink/etc")).unwrap();
    w("boot-etcdiffers/etc/hostname", "debian\n");
    w("boot-etcdiffers/usr/etc/hostname", "other\n");
    fs::create_dir_all(root.join("boot-fifo/var")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("boot-fifo/var/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// Compare `actual` with `tests/errors/NAME.txt`, or write it there under UPDATE_BLESS=1.
fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/errors")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_BLESS").is_some_and(|v| v == "1") {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name}: stderr differs from {}\n--- expected\n{expected}--- actual\n{actual}\
         (UPDATE_BLESS=1 rewrites the file after a deliberate change)",
        path.display()
    );
}

/// One `#[test]` per case: `case!(name, [args...])`.
macro_rules! case {
    ($name:ident, [$($arg:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            let s = Scene::new();
            check(stringify!($name), &s.fail(&[$($arg),*]));
        }
    };
}

// Arguments clap refuses: exit 2.
case!(
    bad_value_for_a_choice,
    ["init", "--repo", "$TMP/r2", "--mode", "bogus"]
);
case!(
    bad_duration,
    ["prune", "--repo", "$TMP/repo", "--older-than", "3x"]
);
case!(
    missing_required_argument,
    ["commit", "--repo", "$TMP/repo", "$TMP/src"]
);

// Repositories.
case!(missing_repo, ["log", "--repo", "$TMP/nope"]);
case!(
    init_over_a_non_empty_dir,
    ["init", "--repo", "$TMP/full", "--mode", "bare"]
);

// Ref names and revisions.
case!(
    ref_name_empty,
    ["commit", "--repo", "$TMP/repo", "-b", "", "$TMP/src"]
);
case!(
    ref_name_dot_component,
    ["commit", "--repo", "$TMP/repo", "-b", "a/../b", "$TMP/src"]
);
case!(
    ref_name_bad_character,
    ["commit", "--repo", "$TMP/repo", "-b", "a b", "$TMP/src"]
);
case!(unknown_rev, ["show", "--repo", "$TMP/repo", "deadbeef"]);
case!(
    unknown_rev_in_diff,
    ["diff", "--repo", "$TMP/repo", "stable", "nosuch"]
);

// Files that are missing or in the way.
case!(
    missing_commit_source,
    ["commit", "--repo", "$TMP/repo", "-b", "x", "$TMP/missing"]
);
case!(
    checkout_over_a_non_empty_dir,
    ["checkout", "--repo", "$TMP/repo", "stable", "$TMP/full"]
);
case!(
    checkout_missing_subpath,
    [
        "checkout",
        "--repo",
        "$TMP/repo",
        "stable",
        "$TMP/out",
        "--subpath",
        "nope"
    ]
);
case!(
    checkout_subpath_through_a_file,
    [
        "checkout",
        "--repo",
        "$TMP/repo",
        "stable",
        "$TMP/out",
        "--subpath",
        "etc/a/b"
    ]
);
case!(
    ls_missing_path,
    ["ls", "--repo", "$TMP/repo", "stable", "/nope"]
);
case!(not_a_sysroot, ["status", "--sysroot", "$TMP/nope"]);
case!(
    sysroot_init_below_a_file,
    [
        "sysroot",
        "init",
        "--sysroot",
        "$TMP/src/etc/a/x",
        "--os",
        "debian"
    ]
);
case!(
    front_end_root_is_a_file,
    ["config", "--root", "$TMP/src/etc/a", "show"]
);

// Keys and signatures.
case!(
    bad_secret_key_file,
    [
        "sign",
        "--repo",
        "$TMP/repo",
        "--key",
        "$TMP/garbage.key",
        "stable"
    ]
);
case!(
    sign_with_the_public_key_file,
    [
        "sign",
        "--repo",
        "$TMP/repo",
        "--key",
        "$TMP/k.key.pub",
        "stable"
    ]
);

/// A secret key whose FILE.pub beside it is another key's: not the pair it claims to be.
#[test]
fn sign_with_a_secret_key_its_public_file_does_not_match() {
    let s = Scene::new();
    s.ok(&["key", "generate", "--output", "$TMP/o.key"]);
    fs::copy(s.root.join("k.key.pub"), s.root.join("o.key.pub")).unwrap();
    check(
        "sign_with_a_secret_key_its_public_file_does_not_match",
        &s.fail(&[
            "sign",
            "--repo",
            "$TMP/repo",
            "--key",
            "$TMP/o.key",
            "stable",
        ]),
    );
}
case!(
    missing_secret_key_file,
    [
        "sign",
        "--repo",
        "$TMP/repo",
        "--key",
        "$TMP/missing.key",
        "stable"
    ]
);
case!(
    bad_trusted_keys_file,
    [
        "verify",
        "--repo",
        "$TMP/repo",
        "--trusted-keys",
        "$TMP/garbage.key",
        "stable"
    ]
);
case!(
    missing_trusted_keys_file,
    [
        "verify",
        "--repo",
        "$TMP/repo",
        "--trusted-keys",
        "$TMP/missing.pub",
        "stable"
    ]
);
case!(
    verify_unsigned_commit,
    [
        "verify",
        "--repo",
        "$TMP/repo",
        "--trusted-keys",
        "$TMP/k.key.pub",
        "stable"
    ]
);
case!(
    key_generate_over_an_existing_file,
    ["key", "generate", "--output", "$TMP/k.key"]
);
case!(
    publish_missing_key_file,
    [
        "publish",
        "--repo",
        "$TMP/repo",
        "--key",
        "$TMP/missing.key",
        "--output",
        "$TMP/pub"
    ]
);

// Remotes.
case!(
    remote_add_not_a_url,
    [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "origin",
        "not-a-url",
        "--key",
        "$TMP/k.key.pub"
    ]
);
case!(
    remote_add_unsupported_scheme,
    [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "origin",
        "ftp://host/os",
        "--key",
        "$TMP/k.key.pub"
    ]
);
case!(
    remote_add_bad_name,
    [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "bad/name",
        "https://host/os",
        "--key",
        "$TMP/k.key.pub"
    ]
);
case!(
    remote_add_missing_key_file,
    [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "origin",
        "https://host/os",
        "--key",
        "$TMP/missing.pub"
    ]
);
case!(
    remote_add_bad_key_file,
    [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "origin",
        "https://host/os",
        "--key",
        "$TMP/garbage.key"
    ]
);
case!(
    remote_remove_unknown,
    ["remote", "remove", "--repo", "$TMP/repo", "nosuch"]
);
case!(
    pull_unknown_remote,
    ["pull", "--repo", "$TMP/repo", "nosuch"]
);

#[test]
fn remote_add_twice() {
    let s = Scene::new();
    let add = [
        "remote",
        "add",
        "--repo",
        "$TMP/repo",
        "origin",
        "https://host/os",
        "--key",
        "$TMP/k.key.pub",
    ];
    s.ok(&add);
    check("remote_add_twice", &s.fail(&add));
}

// Root filesystems a bootable commit refuses.
macro_rules! bootable_case {
    ($name:ident, $tree:expr $(, $arg:expr)*) => {
        case!(
            $name,
            ["commit", "--repo", "$TMP/repo", "-b", "stable", "--bootable", $($arg,)* $tree]
        );
    };
}
bootable_case!(bootable_without_usr, "$TMP/src");
bootable_case!(bootable_no_kernel, "$TMP/boot-nokernel");
bootable_case!(bootable_two_kernels, "$TMP/boot-twokernels");
bootable_case!(
    bootable_kernel_not_in_tree,
    "$TMP/boot-twokernels",
    "--kernel",
    "5.10.0-z"
);
bootable_case!(bootable_kernel_without_modules, "$TMP/boot-nomodules");
bootable_case!(bootable_kernel_without_initramfs, "$TMP/boot-noinitramfs");
bootable_case!(bootable_etc_symlink, "$TMP/boot-etclink");
bootable_case!(bootable_usr_etc_differs, "$TMP/boot-etcdiffers");
bootable_case!(bootable_fifo, "$TMP/boot-fifo");
case!(
    kernel_without_bootable,
    [
        "commit",
        "--repo",
        "$TMP/repo",
        "-b",
        "x",
        "--kernel",
        "6.1",
        "$TMP/src"
    ]
);
