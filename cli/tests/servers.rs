//! The server harness at the level a user meets it: a repository made and published with
//! the `update` CLI, served by a real nginx and by `update serve` (plain, TLS, mutual TLS)
//! on 127.0.0.1, and fetched with curl: the summary whole and a byte range of a pack. Bytes
//! must equal the files on disk, the access logs must show the requests, mutual TLS must
//! refuse clients without an acceptable certificate, and every server must be gone (process
//! reaped, port closed) once dropped.
//!
//! Needs `cargo build -p update-cli` first, and nginx and curl (scripts/install-deps.sh).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::certs::TestPki;
use testkit::cli::{self, run_command, Run};
use testkit::nginx::Nginx;
use testkit::noise::noise;
use testkit::serve::{port_is_open, ServeOptions, Served};

/// How long one curl run may take (curl's own `--max-time` is a little shorter).
const CURL_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to write its access log lines.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// A published repository: `update init --mode archive`, `key generate`, `commit`,
/// `publish --output`.
struct Published {
    dir: tempfile::TempDir,
    /// The published directory that gets served.
    out: PathBuf,
    /// One pack file, relative to `out` (like `packs/HEX.pack`).
    pack: String,
}

impl Published {
    fn new() -> Published {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("etc")).unwrap();
        // Incompressible-ish content so the pack is big enough for interesting ranges.
        let big = noise(1, 400_000);
        fs::write(src.join("big.bin"), &big).unwrap();
        fs::write(src.join("etc/os-release"), b"NAME=test\n").unwrap();

        let repo = dir.path().join("repo");
        let key = dir.path().join("keys/summary");
        let out = dir.path().join("out");
        fs::create_dir_all(key.parent().unwrap()).unwrap();
        cli::init(&repo, "archive");
        cli::key_generate(&key);
        cli::commit(&repo, "os/stable", src.as_os_str(), &["--subject", "test"]);
        cli::update([
            OsString::from("publish"),
            "--repo".into(),
            repo.into(),
            "--key".into(),
            key.into(),
            "--output".into(),
            out.clone().into(),
        ])
        .success();

        assert!(out.join("summary").is_file(), "publish wrote no summary");
        let pack = fs::read_dir(out.join("packs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .find(|n| n.ends_with(".pack"))
            .expect("publish wrote no pack");
        let published = Published {
            dir,
            out,
            pack: format!("packs/{pack}"),
        };
        assert!(
            published.file(&published.pack).len() > 200_000,
            "the pack should hold the big file"
        );
        published
    }

    fn file(&self, rel: &str) -> Vec<u8> {
        fs::read(self.out.join(rel)).unwrap()
    }
}

/// TLS material for one curl run.
#[derive(Default, Clone, Copy)]
struct Tls<'a> {
    /// `--cacert`.
    ca: Option<&'a Path>,
    /// `--cert` and `--key`.
    client: Option<(&'a Path, &'a Path)>,
}

impl<'a> Tls<'a> {
    fn trusting(pki: &'a TestPki) -> Tls<'a> {
        Tls {
            ca: Some(&pki.ca_cert),
            client: None,
        }
    }

    fn with_client(self, cert: &'a Path, key: &'a Path) -> Tls<'a> {
        Tls {
            client: Some((cert, key)),
            ..self
        }
    }
}

/// What curl got.
struct Got {
    run: Run,
    status: u16,
    body: Vec<u8>,
}

/// `curl` `url`, optionally with `--range`, the body into a file; the status from `-w`.
fn curl(url: &str, range: Option<&str>, tls: Tls<'_>) -> Got {
    testkit::require_tool("curl");
    let body_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--write-out", "%{http_code}", "--output"])
        .arg(body_file.path());
    if let Some(r) = range {
        cmd.arg("--range").arg(r);
    }
    if let Some(ca) = tls.ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some((cert, key)) = tls.client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    cmd.arg(url);
    let run = run_command(cmd, CURL_DEADLINE);
    let status = run.out().parse().unwrap_or(0);
    let body = fs::read(body_file.path()).unwrap_or_default();
    Got { run, status, body }
}

/// Fetch the summary and bytes 1000..=5095 of the pack from `base` and check both against
/// the files on disk.
fn fetch_and_check(published: &Published, base: &str, tls: Tls<'_>) {
    let summary = curl(&format!("{base}summary"), None, tls);
    summary.run.success();
    assert_eq!(summary.status, 200, "{}", summary.run.describe());
    assert_eq!(
        summary.body,
        published.file("summary"),
        "summary bytes differ from the file on disk"
    );

    let pack = curl(&format!("{base}{}", published.pack), Some("1000-5095"), tls);
    pack.run.success();
    assert_eq!(pack.status, 206, "{}", pack.run.describe());
    assert_eq!(pack.body.len(), 4096);
    assert_eq!(
        pack.body,
        published.file(&published.pack)[1000..5096],
        "range bytes differ from the pack on disk"
    );
}

/// The process is reaped and nothing listens on its port any more.
fn assert_gone(what: &str, pid: u32, port: u16) {
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "{what} (pid {pid}) still exists after drop"
    );
    assert!(
        !port_is_open(port),
        "port {port} still accepts connections after {what} was dropped"
    );
}

/// A refused TLS client: curl failed at the TLS layer (35: handshake failed, 56: the
/// server's alert arrived while reading, as with TLS 1.3 client auth) and reports the
/// server's alert, which names one of `alerts` (like "certificate required").
#[track_caller]
fn assert_tls_refused(got: &Got, why: &str, alerts: &[&str]) {
    assert!(
        matches!(got.run.code(), Some(35 | 56)),
        "{why}: expected a TLS failure (curl exit 35 or 56)\n{}",
        got.run.describe()
    );
    let stderr = got.run.stderr.to_lowercase();
    assert!(
        stderr.contains("alert") && alerts.iter().any(|a| stderr.contains(a)),
        "{why}: curl should report the server's TLS alert, one of {alerts:?}\n{}",
        got.run.describe()
    );
    assert!(got.body.is_empty(), "{why}: got a body: {:?}", got.body);
}

#[test]
fn nginx_serves_a_published_repo() {
    let published = Published::new();
    let nginx = Nginx::start(&published.out);
    assert!(nginx.url().starts_with("http://127.0.0.1:"));
    let conf = nginx.config();
    assert!(
        conf.contains("sendfile on;") && conf.contains("gzip off;"),
        "{conf}"
    );

    fetch_and_check(&published, &nginx.url(), Tls::default());
    let log = nginx.wait_for_requests(2, LOG_WAIT);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("GET", "/summary", 200)
    );
    assert_eq!(log[0].bytes, published.file("summary").len() as u64);
    assert_eq!(log[0].range, None);
    assert_eq!(
        (log[1].method.as_str(), log[1].path.as_str(), log[1].status),
        ("GET", format!("/{}", published.pack).as_str(), 206)
    );
    assert_eq!(log[1].bytes, 4096);
    assert_eq!(log[1].range.as_deref(), Some("bytes=1000-5095"));

    // A missing file is a 404, logged too.
    let missing = curl(
        &format!("{}no-such-file", nginx.url()),
        None,
        Tls::default(),
    );
    assert_eq!(missing.status, 404, "{}", missing.run.describe());
    let log = nginx.wait_for_requests(3, LOG_WAIT);
    assert_eq!(
        (log[2].path.as_str(), log[2].status),
        ("/no-such-file", 404)
    );
    assert_eq!(nginx.request_count(), 3);

    let errors = nginx.error_log();
    assert!(
        !["[emerg]", "[alert]", "[crit]"]
            .iter()
            .any(|l| errors.contains(l)),
        "nginx logged errors:\n{errors}"
    );

    // Everything nginx wrote stays in its prefix.
    let prefix = nginx.prefix().to_path_buf();
    assert!(prefix.join("nginx.pid").is_file());
    let (pid, port) = (nginx.pid(), nginx.port());
    drop(nginx);
    assert_gone("nginx", pid, port);
    assert!(
        !prefix.exists(),
        "nginx's temp dir should be removed on drop"
    );
}

#[test]
fn nginx_builder_adds_directives() {
    let published = Published::new();
    let nginx = Nginx::builder()
        .server_conf("add_header X-Harness yes;")
        .start(&published.out);
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20", "--head"])
        .arg(format!("{}summary", nginx.url()));
    let run = run_command(cmd, CURL_DEADLINE);
    run.success();
    assert!(
        run.stdout.to_lowercase().contains("x-harness: yes"),
        "{}",
        run.describe()
    );
    let log = nginx.wait_for_requests(1, LOG_WAIT);
    assert_eq!((log[0].method.as_str(), log[0].status), ("HEAD", 200));
}

#[test]
fn two_nginx_instances_run_side_by_side() {
    let published = Published::new();
    let a = Nginx::start(&published.out);
    let b = Nginx::start(&published.out);
    assert_ne!(a.port(), b.port());
    fetch_and_check(&published, &a.url(), Tls::default());
    fetch_and_check(&published, &b.url(), Tls::default());
    assert_eq!(a.wait_for_requests(2, LOG_WAIT).len(), 2);
    assert_eq!(b.wait_for_requests(2, LOG_WAIT).len(), 2);
}

#[test]
fn update_serve_plain() {
    let published = Published::new();
    let served = Served::start(&published.out, ServeOptions::plain());
    assert!(served.url().starts_with("http://127.0.0.1:"));
    fetch_and_check(&published, &served.url(), Tls::default());

    let log = served.wait_for_requests(2, LOG_WAIT);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("GET", "/summary", 200)
    );
    assert_eq!(log[0].bytes, published.file("summary").len() as u64);
    assert_eq!(
        (log[1].path.as_str(), log[1].status, log[1].bytes),
        (format!("/{}", published.pack).as_str(), 206, 4096)
    );

    let (pid, port) = (served.pid(), served.port());
    drop(served);
    assert_gone("update serve", pid, port);
}

#[test]
fn update_serve_tls() {
    let published = Published::new();
    let pki = TestPki::new(&published.dir.path().join("pki"));
    let served = Served::start(&published.out, ServeOptions::tls(&pki));
    assert!(served.url().starts_with("https://127.0.0.1:"));
    fetch_and_check(&published, &served.url(), Tls::trusting(&pki));

    // A client that does not trust the test CA refuses the server (curl: 60).
    let untrusted = curl(
        &format!("{}summary", served.url()),
        None,
        Tls {
            ca: Some(&pki.other_ca),
            client: None,
        },
    );
    assert_eq!(
        untrusted.run.code(),
        Some(60),
        "{}",
        untrusted.run.describe()
    );

    assert_eq!(served.wait_for_requests(2, LOG_WAIT).len(), 2);
    let (pid, port) = (served.pid(), served.port());
    drop(served);
    assert_gone("update serve --tls-cert", pid, port);
}

#[test]
fn update_serve_mutual_tls() {
    let published = Published::new();
    let pki = TestPki::new(&published.dir.path().join("pki"));
    let served = Served::start(&published.out, ServeOptions::mutual_tls(&pki));
    let summary_url = format!("{}summary", served.url());

    let no_cert = curl(&summary_url, None, Tls::trusting(&pki));
    assert_tls_refused(
        &no_cert,
        "no client certificate",
        &["certificate required", "handshake failure"],
    );
    let wrong_ca = curl(
        &summary_url,
        None,
        Tls::trusting(&pki).with_client(&pki.other_client_cert, &pki.other_client_key),
    );
    assert_tls_refused(
        &wrong_ca,
        "client certificate from an unrelated CA",
        &["unknown ca", "bad certificate"],
    );

    let good = Tls::trusting(&pki).with_client(&pki.client_cert, &pki.client_key);
    fetch_and_check(&published, &served.url(), good);

    // Only the accepted client's two requests reached HTTP.
    let log = served.wait_for_requests(2, LOG_WAIT);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|e| e.status == 200 || e.status == 206));

    let (pid, port) = (served.pid(), served.port());
    drop(served);
    assert_gone("update serve --client-ca", pid, port);
}

#[test]
fn nginx_and_update_serve_agree() {
    let published = Published::new();
    let nginx = Nginx::start(&published.out);
    let served = Served::start(&published.out, ServeOptions::plain());
    for range in ["0-0", "0-99", "12345-", "-500"] {
        let a = curl(
            &format!("{}{}", nginx.url(), published.pack),
            Some(range),
            Tls::default(),
        );
        let b = curl(
            &format!("{}{}", served.url(), published.pack),
            Some(range),
            Tls::default(),
        );
        a.run.success();
        b.run.success();
        assert_eq!((a.status, b.status), (206, 206), "range {range}");
        assert_eq!(
            a.body, b.body,
            "range {range}: nginx and update serve differ"
        );
    }
    let log = nginx.wait_for_requests(4, LOG_WAIT);
    let ranges: Vec<_> = log.iter().map(|e| e.range.clone().unwrap()).collect();
    assert_eq!(
        ranges,
        ["bytes=0-0", "bytes=0-99", "bytes=12345-", "bytes=-500"]
    );
    assert_eq!(served.wait_for_requests(4, LOG_WAIT).len(), 4);
}

#[test]
fn nginx_start_failure_shows_the_error_log() {
    let published = Published::new();
    let failed = std::panic::catch_unwind(|| {
        Nginx::builder()
            .server_conf("no_such_directive on;")
            .start(&published.out)
    });
    let message = match failed {
        Ok(_) => panic!("nginx started with an unknown directive"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| format!("{e:?}")),
    };
    assert!(
        message.contains("unknown directive \"no_such_directive\"")
            && message.contains("--- error.log ---"),
        "{message}"
    );
}

#[test]
fn update_serve_start_failure_shows_stderr() {
    let published = Published::new();
    let missing = published.dir.path().join("no-such-cert.pem");
    let failed = std::panic::catch_unwind(|| {
        Served::start(
            &published.out,
            ServeOptions::plain()
                .arg("--tls-cert")
                .arg(missing.to_str().unwrap())
                .arg("--tls-key")
                .arg(missing.to_str().unwrap()),
        )
    });
    let message = match failed {
        Ok(_) => panic!("update serve started with a missing certificate"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| format!("{e:?}")),
    };
    assert!(
        message.contains("exited") && message.contains("no-such-cert.pem"),
        "{message}"
    );
}
