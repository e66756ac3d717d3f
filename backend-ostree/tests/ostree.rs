//! `update-backend-ostree` against the real `ostree`: a builder archive repo served as a
//! file:// URL, a temp sysroot (`ostree admin init-fs`, `os-init`), and the adapter driven
//! through its JSON protocol (docs/backends.md): check, apply, status, and the error paths.
//!
//! Needs root (ostree's bare sysroot repo stores real ownership), Debian's `ostree`
//! (scripts/install-deps.sh).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::require_tool;

const OS: &str = "debian";
const REF: &str = "os/x86_64/stable";

/// The adapter under test: the one cargo built for this test run, or
/// `$UPDATE_BACKEND_OSTREE_BIN` (to test an installed one).
fn backend_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("UPDATE_BACKEND_OSTREE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_update-backend-ostree")))
    })
}

/// One run of the adapter: exit code and stdout parsed as JSON.
struct Answer {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

impl Answer {
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        assert_eq!(self.json["ok"], true, "answer: {}", self.json);
        &self.json["result"]
    }

    #[track_caller]
    fn error(&self) -> String {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        assert_eq!(self.json["ok"], false, "answer: {}", self.json);
        self.json["error"]
            .as_str()
            .expect("error is text")
            .to_owned()
    }
}

/// Feeds `stdin` to the adapter (killed after 60 s).
fn backend_raw(stdin: &[u8]) -> Answer {
    let mut child = Command::new(backend_bin())
        .env_remove("UPDATE_OSTREE_OS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run update-backend-ostree");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin)
        .expect("write request");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("update-backend-ostree did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout:?}"));
    Answer {
        code: out.status.code(),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn ostree(args: &[&str]) -> String {
    let out = Command::new("ostree")
        .args(args)
        .output()
        .expect("run ostree");
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A builder repo and a sysroot with one stateroot, both in a temp dir.
struct Fixture {
    _dir: TempDir,
    build: PathBuf,
    tree: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        require_tool("ostree");
        require_tool("chattr");
        let dir = tempfile::tempdir().expect("tempdir");
        let build = dir.path().join("build");
        let tree = dir.path().join("tree");
        let root = dir.path().join("sysroot");
        std::fs::create_dir_all(&root).expect("mkdir sysroot");
        ostree(&["init", &repo_arg(&build), "--mode=archive"]);
        for (path, text) in [
            (
                "usr/lib/modules/6.1.0-test/vmlinuz",
                "not really a kernel\n",
            ),
            ("usr/lib/os-release", "ID=debian\nVERSION_ID=12\n"),
            ("usr/etc/hostname", "device\n"),
            ("usr/bin/hello", "#!/bin/sh\necho hello\n"),
        ] {
            let p = tree.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write tree file");
        }
        ostree(&["admin", "init-fs", &root.display().to_string()]);
        ostree(&[
            "admin",
            "os-init",
            OS,
            &format!("--sysroot={}", root.display()),
        ]);
        Fixture {
            _dir: dir,
            build,
            tree,
            root,
        }
    }

    /// Commits the tree (with `usr/share/version` = `version`) to `git_ref` as `version`
    /// and updates the summary; returns the commit.
    fn commit(&self, git_ref: &str, version: &str) -> String {
        let v = self.tree.join("usr/share/version");
        std::fs::create_dir_all(v.parent().expect("parent")).expect("mkdir");
        std::fs::write(&v, format!("{version}\n{}\n", "x".repeat(4096))).expect("write");
        let commit = ostree(&[
            "commit",
            &repo_arg(&self.build),
            &format!("--branch={git_ref}"),
            &format!("--tree=dir={}", self.tree.display()),
            &format!("--add-metadata-string=version={version}"),
            &format!("--subject=version {version}"),
        ]);
        ostree(&["summary", "-u", &repo_arg(&self.build)]);
        commit
    }

    fn url(&self) -> String {
        format!("file://{}", self.build.display())
    }

    fn request(&self, op: &str, source: &str) -> Answer {
        let request = json!({
            "protocol": 1,
            "op": op,
            "root": self.root,
            "config": { "source": source, "keys": {}, "verify": false, "secure": false,
                        "tls_client_cert": null, "tls_client_key": null, "tls_ca": null,
                        "boot_retry_limit": 3 },
        });
        backend_raw(request.to_string().as_bytes())
    }

    fn admin_status(&self) -> String {
        ostree(&[
            "admin",
            "status",
            &format!("--sysroot={}", self.root.display()),
        ])
    }
}

impl Drop for Fixture {
    /// ostree makes each deployment directory immutable (`chattr +i`), which would leave
    /// the temp dir behind: lift the flag so `TempDir` can remove it.
    fn drop(&mut self) {
        let Ok(stateroots) = std::fs::read_dir(self.root.join("ostree/deploy")) else {
            return;
        };
        for stateroot in stateroots.flatten() {
            let Ok(deployments) = std::fs::read_dir(stateroot.path().join("deploy")) else {
                continue;
            };
            for d in deployments.flatten().filter(|d| d.path().is_dir()) {
                let _ = Command::new("chattr").arg("-i").arg(d.path()).status();
            }
        }
    }
}

fn repo_arg(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

fn v(commit: &str, version: &str) -> Value {
    json!({ "commit": commit, "version": version })
}

#[test]
fn check_apply_status_round_trip() {
    testkit::require_root!("ostree admin deploy writes a bare repo with real ownership");
    let start = Instant::now();
    let f = Fixture::new();
    let c1 = f.commit(REF, "1");

    // No deployment yet and no #REF: the ref is the only one the repo lists.
    let r = f.request("check", &f.url());
    let check = r.ok();
    assert_eq!(check["current"], Value::Null);
    assert_eq!(check["available"], v(&c1, "1"));
    assert_eq!(check["update_available"], true);
    assert!(
        f.admin_status().contains("No deployments"),
        "check deployed"
    );
    let url = ostree(&[
        "remote",
        "show-url",
        &repo_arg(&f.root.join("ostree/repo")),
        "update",
    ]);
    assert_eq!(url, f.url(), "the adapter's remote follows config.source");

    let r = f.request("apply", &format!("{}#{REF}", f.url()));
    let apply = r.ok();
    assert_eq!(apply["from"], Value::Null);
    assert_eq!(apply["to"], v(&c1, "1"));
    assert_eq!(apply["signer"], Value::Null);
    assert!(
        apply["bytes_fetched"].as_u64().expect("a number") > 0,
        "{apply}"
    );
    let status = f.admin_status();
    assert!(status.contains(&format!("{OS} {c1}.0")), "{status}");
    assert!(status.contains("Version: 1"), "{status}");

    // Up to date: from the deployment's origin ref now (no #REF).
    let r = f.request("check", &f.url());
    let check = r.ok();
    assert_eq!(check["current"], v(&c1, "1"));
    assert_eq!(check["available"], v(&c1, "1"));
    assert_eq!(check["update_available"], false);
    let r = f.request("apply", &f.url());
    let again = r.ok();
    assert_eq!(again["from"], again["to"], "nothing to do: {again}");
    assert_eq!(again["bytes_fetched"], 0);

    let c2 = f.commit(REF, "2");
    let r = f.request("check", &f.url());
    let check = r.ok();
    assert_eq!(check["current"], v(&c1, "1"));
    assert_eq!(check["available"], v(&c2, "2"));
    assert_eq!(check["update_available"], true);
    let r = f.request("apply", &f.url());
    let apply = r.ok();
    assert_eq!(apply["from"], v(&c1, "1"));
    assert_eq!(apply["to"], v(&c2, "2"));

    // Offline (nothing booted): the default deployment is pending, the older one rollback.
    let r = f.request("status", &f.url());
    let deployments = r.ok()["deployments"].as_array().expect("a list").clone();
    assert_eq!(
        deployments,
        vec![
            json!({"commit": c2, "version": "2", "booted": false, "pending": true,
                   "rollback": false, "failed": false}),
            json!({"commit": c1, "version": "1", "booted": false, "pending": false,
                   "rollback": true, "failed": false}),
        ]
    );
    let status = f.admin_status();
    assert!(status.find(&c2) < status.find(&c1), "v2 first: {status}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn bad_source_urls_are_protocol_errors() {
    testkit::require_root!("ostree admin deploy writes a bare repo with real ownership");
    let f = Fixture::new();
    f.commit(REF, "1");
    let error = f.request("check", "ftp://example.invalid/os").error();
    assert!(
        error.contains("config.source") && error.contains("ftp://"),
        "{error}"
    );
    let error = f.request("apply", "").error();
    assert!(error.contains("config.source is not set"), "{error}");

    let missing = f.build.with_file_name("no-such-repo");
    let error = f
        .request("check", &format!("file://{}#{REF}", missing.display()))
        .error();
    assert!(
        error.contains("`ostree pull "),
        "names the command: {error}"
    );
    assert!(
        error.contains("no-such-repo"),
        "ends with ostree's stderr: {error}"
    );
    assert!(f.admin_status().contains("No deployments"));
}

#[test]
fn unknown_and_ambiguous_refs_are_named() {
    testkit::require_root!("ostree admin deploy writes a bare repo with real ownership");
    let f = Fixture::new();
    f.commit(REF, "1");
    let error = f
        .request("check", &format!("{}#os/no/such/ref", f.url()))
        .error();
    assert!(error.contains("os/no/such/ref"), "{error}");
    assert!(error.contains("`ostree pull "), "{error}");

    f.commit("os/x86_64/testing", "1");
    let error = f.request("apply", &f.url()).error();
    assert!(
        error.contains(REF) && error.contains("os/x86_64/testing") && error.contains("URL#REF"),
        "{error}"
    );
    assert!(f.admin_status().contains("No deployments"));
}

#[test]
fn malformed_requests() {
    for bad in [&b"not json"[..], b"[1, 2]", b"{\"protocol\": 1}", b""] {
        let a = backend_raw(bad);
        assert_eq!(
            a.code,
            Some(2),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            a.json
        );
        assert_eq!(a.json["ok"], false);
        assert!(a.stderr.contains("update-backend-ostree:"), "{}", a.stderr);
    }
    // Well-formed but not servable: protocol-level errors, exit 0.
    let error =
        backend_raw(br#"{"protocol": 2, "op": "status", "root": "/", "config": {}}"#).error();
    assert!(error.contains("protocol 2"), "{error}");
    let error =
        backend_raw(br#"{"protocol": 1, "op": "rollback", "root": "/", "config": {}}"#).error();
    assert!(error.contains("rollback"), "{error}");
    let dir = tempfile::tempdir().expect("tempdir");
    let request = json!({"protocol": 1, "op": "status", "root": dir.path(), "config": {}});
    let error = backend_raw(request.to_string().as_bytes()).error();
    assert!(error.contains("not an OSTree sysroot"), "{error}");
}

#[test]
fn verify_needs_an_ostree_with_ed25519() {
    testkit::require_root!("ostree admin deploy writes a bare repo with real ownership");
    let f = Fixture::new();
    f.commit(REF, "1");
    let version = ostree(&["--version"]);
    if version.contains("sign-ed25519") {
        eprintln!("this ostree verifies ed25519; the unsupported-build message is not reachable");
        return;
    }
    let request = json!({
        "protocol": 1, "op": "check", "root": f.root,
        "config": { "source": f.url(), "verify": true,
                    "keys": { "release": "ZmFrZS1rZXktZmFrZS1rZXktZmFrZS1rZXktZmFrZSE=" } },
    });
    let error = backend_raw(request.to_string().as_bytes()).error();
    assert!(
        error.contains("this ostree cannot verify ed25519 signatures; set verify false"),
        "{error}"
    );
    // Missing `verify` means verify: never silently unverified.
    let request = json!({"protocol": 1, "op": "apply", "root": f.root,
                         "config": { "source": f.url() }});
    let error = backend_raw(request.to_string().as_bytes()).error();
    assert!(error.contains("config.keys is empty"), "{error}");
    assert!(f.admin_status().contains("No deployments"));
}

#[test]
fn help_has_an_example() {
    let out = Command::new(backend_bin())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EXAMPLE") && text.contains("\"op\": \"check\""),
        "{text}"
    );
}
