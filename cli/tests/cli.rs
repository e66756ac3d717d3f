//! The `update` binary, driven as a user would against temp repositories.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_update");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(repo: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(BIN)
        .args(args)
        .env("UPDATE_REPO", repo)
        .output()
        .expect("run update");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Run and require success; returns stdout.
fn ok(repo: &Path, args: &[&str]) -> String {
    let r = run_in(repo, args);
    assert_eq!(
        r.code, 0,
        "update {args:?} failed:\n{}{}",
        r.stdout, r.stderr
    );
    r.stdout
}

fn json(repo: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(repo, args)).expect("valid JSON")
}

/// A source tree: nested dirs, an executable, a symlink, an empty file.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/config"), b"key=1\n").unwrap();
    fs::write(root.join("etc/old"), b"going away").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("usr/bin/tool", root.join("link")).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    src: PathBuf,
    uid: String,
    gid: String,
}

fn fixture(mode: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let repo = dir.join("repo");
    let src = dir.join("src");
    make_tree(&src);
    let me = fs::metadata(&src).unwrap();
    let out = ok(
        &repo,
        &["init", "--repo", repo.to_str().unwrap(), "--mode", mode],
    );
    assert!(out.contains(mode), "{out}");
    Fixture {
        _tmp: tmp,
        dir,
        repo,
        src,
        uid: me.uid().to_string(),
        gid: me.gid().to_string(),
    }
}

impl Fixture {
    fn commit(&self, subject: &str, version: &str, ts: &str) -> String {
        let out = ok(
            &self.repo,
            &[
                "commit",
                "--branch",
                "os/stable",
                "--subject",
                subject,
                "--version",
                version,
                "--add-metadata",
                "board=rpi4",
                "--owner-uid",
                &self.uid,
                "--owner-gid",
                &self.gid,
                "--timestamp",
                ts,
                self.src.to_str().unwrap(),
            ],
        );
        let id = out.trim().to_owned();
        assert_eq!(id.len(), 64, "{out}");
        id
    }
}

/// Every path below `root` with its type, permission bits and content (or link target).
fn snapshot(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let content = if meta.is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            out.push((rel, meta.mode(), content));
        }
    }
    out.sort();
    out
}

fn round_trip(mode: &str) {
    let f = fixture(mode);
    let repo = f.repo.as_path();
    let id = f.commit("first", "1.0", "1700000000");

    // refs
    assert_eq!(ok(repo, &["refs"]), format!("{id} os/stable\n"));
    let refs = json(repo, &["refs", "--json"]);
    assert_eq!(refs[0]["name"], "os/stable");
    assert_eq!(refs[0]["commit"], id.as_str());

    // show, by branch and by prefix
    let show = json(repo, &["show", "--json", "os/stable"]);
    assert_eq!(show["id"], id.as_str());
    assert_eq!(show["parent"], Value::Null);
    assert_eq!(show["subject"], "first");
    assert_eq!(show["date"], "2023-11-14T22:13:20Z");
    assert_eq!(show["metadata"]["version"], "1.0");
    assert_eq!(show["metadata"]["board"], "rpi4");
    assert_eq!(show["signatures"], Value::Array(vec![]));
    let text = ok(repo, &["show", &id[..10]]);
    assert!(text.contains(&format!("commit    {id}")), "{text}");

    // log
    let log = ok(repo, &["log"]);
    assert!(log.contains(&format!("commit {id}")), "{log}");
    assert!(
        log.contains("Date:    2023-11-14T22:13:20Z") && log.contains("Version: 1.0"),
        "{log}"
    );
    assert!(log.contains("    first"), "{log}");

    // ls
    let ls = ok(repo, &["ls", "os/stable", "/usr/bin"]);
    let tool_line = format!(
        "-rwxr-xr-x {:>5} {:>5} {:>10} /usr/bin/tool",
        f.uid, f.gid, 18
    );
    assert!(
        ls.lines().any(|l| l == tool_line),
        "{ls}\nwanted {tool_line}"
    );
    assert!(ls.starts_with("drwxr-xr-x"), "{ls}");
    let root = ok(repo, &["ls", "os/stable"]);
    assert!(
        root.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("/link -> usr/bin/tool")),
        "{root}"
    );
    assert!(
        !root.contains("/usr/bin/tool"),
        "not recursive by default: {root}"
    );
    let all = json(repo, &["ls", "-R", "--json", "os/stable"]);
    let paths: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/",
            "/empty",
            "/etc",
            "/etc/config",
            "/etc/old",
            "/link",
            "/usr",
            "/usr/bin",
            "/usr/bin/tool"
        ]
    );

    // checkout round trip, hardlinked (bare) or copied, and an explicit copy
    for (name, extra) in [("out", None), ("copy", Some("--copy"))] {
        let dest = f.dir.join(name);
        let mut args = vec!["checkout", "os/stable", dest.to_str().unwrap()];
        args.extend(extra);
        ok(repo, &args);
        assert_eq!(snapshot(&dest), snapshot(&f.src), "{name}");
    }
    let sub = f.dir.join("sub");
    ok(
        repo,
        &[
            "checkout",
            "os/stable",
            sub.to_str().unwrap(),
            "--subpath",
            "etc",
        ],
    );
    assert_eq!(fs::read(sub.join("config")).unwrap(), b"key=1\n");

    // fsck
    let r = run_in(repo, &["fsck"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(json(repo, &["fsck", "--json"])["ok"], true);
}

#[test]
fn archive_round_trip() {
    round_trip("archive");
}

#[test]
fn bare_round_trip() {
    round_trip("bare");
}

#[test]
fn diff_and_log_across_two_commits() {
    let f = fixture("archive");
    let repo = f.repo.as_path();
    let first = f.commit("first", "1.0", "1700000000");
    fs::write(f.src.join("etc/config"), b"key=2\nmore=3\n").unwrap();
    fs::remove_file(f.src.join("etc/old")).unwrap();
    fs::create_dir(f.src.join("opt")).unwrap();
    fs::write(f.src.join("opt/new"), b"12345").unwrap();
    let second = f.commit("second", "1.1", "1700003600");

    let text = ok(repo, &["diff", &first, "os/stable"]);
    let expected = "\
M /etc/config  (6 bytes -> 13 bytes)
D /etc/old  (10 bytes)
A /opt  (dir)
A /opt/new  (5 bytes)
2 added (5 bytes), 1 removed (10 bytes), 1 modified (6 -> 13 bytes)
";
    assert_eq!(text, expected);
    let d = json(repo, &["diff", "--json", &first, &second]);
    assert_eq!(d["summary"]["added"], 2);
    assert_eq!(d["changes"][0]["status"], "M");
    assert_eq!(d["changes"][0]["old"]["size"], 6);
    assert_eq!(d["changes"][0]["new"]["size"], 13);
    assert_eq!(
        ok(repo, &["diff", &second, &second]),
        "0 added (0 bytes), 0 removed (0 bytes), 0 modified (0 -> 0 bytes)\n"
    );

    let log = json(repo, &["log", "--json", "os/stable"]);
    let ids: Vec<&str> = log["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(log["commits"][0]["parent"], first.as_str());
    assert_eq!(log["commits"][1]["version"], "1.0");
    assert_eq!(log["truncated"], false);

    // Pruning the history leaves the log stopping cleanly.
    ok(repo, &["prune", "--depth", "0"]);
    let log = ok(repo, &["log", "os/stable"]);
    assert!(
        log.contains("    second") && !log.contains("    first"),
        "{log}"
    );
    assert!(log.trim_end().ends_with("(history truncated)"), "{log}");
    assert_eq!(json(repo, &["log", "--json"])["truncated"], true);
}

#[test]
fn sign_and_verify() {
    let f = fixture("archive");
    let repo = f.repo.as_path();
    let id = f.commit("signed", "1", "1700000000");
    let key = f.dir.join("release");
    let other = f.dir.join("other");
    let public = ok(
        repo,
        &["key", "generate", "--output", key.to_str().unwrap()],
    );
    assert_eq!(
        public.trim(),
        fs::read_to_string(f.dir.join("release.pub"))
            .unwrap()
            .trim()
    );
    ok(
        repo,
        &["key", "generate", "--output", other.to_str().unwrap()],
    );

    let unsigned = run_in(
        repo,
        &[
            "verify",
            &id,
            "--trusted-keys",
            f.dir.join("release.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(unsigned.code, 1);
    assert!(
        unsigned.stderr.starts_with("error: "),
        "{}",
        unsigned.stderr
    );

    ok(repo, &["sign", "os/stable", "--key", key.to_str().unwrap()]);
    let out = ok(
        repo,
        &[
            "verify",
            "os/stable",
            "--trusted-keys",
            f.dir.join("release.pub").to_str().unwrap(),
        ],
    );
    assert!(out.contains("good signature"), "{out}");
    let wrong = run_in(
        repo,
        &[
            "verify",
            &id,
            "--trusted-keys",
            f.dir.join("other.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stdout);
    assert!(
        wrong.stderr.contains("no trusted signature"),
        "{}",
        wrong.stderr
    );
    let show = json(repo, &["show", "--json", &id]);
    assert_eq!(show["signatures"][0]["valid"], true);
    assert_eq!(show["signatures"][0]["public_key"], public.trim());

    // Signing at commit time.
    let signed = ok(
        repo,
        &[
            "commit",
            "-b",
            "other",
            "--sign-with",
            other.to_str().unwrap(),
            f.src.to_str().unwrap(),
        ],
    );
    ok(
        repo,
        &[
            "verify",
            signed.trim(),
            "--trusted-keys",
            f.dir.join("other.pub").to_str().unwrap(),
        ],
    );
}

#[test]
fn errors_are_clear_and_exit_codes_documented() {
    let f = fixture("archive");
    let repo = f.repo.as_path();
    f.commit("first", "1", "1700000000");

    let r = run_in(repo, &["show", "no-such-branch"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: 'no-such-branch' is neither a branch nor the id or unique id prefix of a commit in this repository\n"
    );
    assert!(r.stdout.is_empty());

    let r = run_in(repo, &["ls", "os/stable", "/nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: '/nope' not found in commit"),
        "{}",
        r.stderr
    );

    let r = run_in(
        repo,
        &[
            "init",
            "--repo",
            f.dir.join("x").to_str().unwrap(),
            "--mode",
            "zip",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("possible values: bare, archive"),
        "{}",
        r.stderr
    );

    let r = run_in(repo, &["init", "--mode", "bare"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);

    let r = run_in(repo, &["prune", "--older-than", "soon"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    let r = run_in(&f.dir.join("missing"), &["refs"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);

    let help = ok(repo, &["--help"]);
    assert!(
        help.contains("0  success") && help.contains("2  usage error"),
        "{help}"
    );
    let help = ok(repo, &["diff", "--help"]);
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn fsck_fails_on_a_corrupt_object() {
    let f = fixture("archive");
    let repo = f.repo.as_path();
    let id = f.commit("first", "1", "1700000000");
    let show = json(repo, &["show", "--json", &id]);
    let tree = show["root_tree"].as_str().unwrap();
    let path = repo
        .join("objects")
        .join(&tree[..2])
        .join(format!("{}.dirtree", &tree[2..]));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"garbage").unwrap();
    let r = run_in(repo, &["fsck"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("error: "), "{}", r.stdout);
    assert_eq!(json_lenient(run_in(repo, &["fsck", "--json"]))["ok"], false);
}

fn json_lenient(r: Run) -> Value {
    serde_json::from_str(&r.stdout).expect("valid JSON")
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let f = fixture("archive");
    let repo = f.repo.as_path();
    // Enough output to fill a pipe buffer several times over.
    let many = f.src.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..3000 {
        fs::write(many.join(format!("file-with-a-longish-name-{i:05}")), b"").unwrap();
    }
    f.commit("many", "1", "1700000000");
    let mut child = Command::new(BIN)
        .args(["ls", "-R", "os/stable"])
        .env("UPDATE_REPO", repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
