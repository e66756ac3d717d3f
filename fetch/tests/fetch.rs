//! Integration tests: real servers on 127.0.0.1 with hostile knobs, and TLS with rcgen certs.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use fetch::{Error, FetchConfig, Fetcher, TlsConfig, TlsFailure};
use support::{Knob, Server};
use testkit::certs::{write, Ca, ExtendedKeyUsagePurpose};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Short limits so that every test ends within seconds.
fn config(base: String) -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(2),
        low_speed_limit: 100,
        low_speed_time: Duration::from_secs(1),
        overall_timeout: Duration::from_secs(10),
        retries: 0,
        retry_backoff: Duration::from_millis(10),
        ..FetchConfig::new(base)
    }
}

fn fetcher(server: &Server) -> Fetcher {
    Fetcher::new(config(server.url("http"))).unwrap()
}

#[test]
fn get_returns_the_body_and_reuses_the_pool() {
    let data = content(100_000);
    let server = Server::start(vec![("dir/file", data.clone(), Knob::Normal)]);
    let f = fetcher(&server);
    assert_eq!(f.get("dir/file", 100_000).unwrap(), data);
    assert_eq!(f.get("dir/file", 1 << 20).unwrap(), data);
}

#[test]
fn get_refuses_a_declared_length_over_the_cap() {
    let server = Server::start(vec![("big", content(5000), Knob::Normal)]);
    let err = fetcher(&server).get("big", 4999).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 4999, .. }),
        "{err:?}"
    );
}

#[test]
fn endless_stream_stops_at_the_cap() {
    // E1: a summary endpoint that streams forever.
    let server = Server::start(vec![("summary", Vec::new(), Knob::StreamForever)]);
    let start = Instant::now();
    let err = fetcher(&server).get("summary", 1 << 20).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == 1 << 20),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn trickling_server_is_reported_as_slow() {
    // F4: slowloris body.
    let server = Server::start(vec![(
        "slow",
        content(100),
        Knob::Trickle(Duration::from_millis(300)),
    )]);
    let start = Instant::now();
    let err = fetcher(&server).get("slow", 1000).unwrap_err();
    assert!(matches!(err, Error::TooSlow { limit: 100, .. }), "{err:?}");
    assert!(err.to_string().contains("slow retrieval"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn headers_that_never_come_name_the_limit_that_fired() {
    let server = Server::start(vec![("hang", Vec::new(), Knob::Hang)]);
    let err = fetcher(&server).get("hang", 1000).unwrap_err();
    // connect_timeout (2 s) + low_speed_time (1 s), not the low-speed period alone.
    assert!(
        matches!(err, Error::NoResponse { after, .. } if after == Duration::from_secs(3)),
        "{err:?}"
    );
    assert!(err.to_string().contains("no response within 3s"), "{err}");
}

#[test]
fn a_whole_file_trickled_above_the_speed_floor_has_a_deadline_of_its_own() {
    // 1 byte a millisecond: ten times the low-speed floor of 100 B/s, so only the
    // whole-file deadline (2 s + 1 s + 100 kB at 1 MB/s) ends it, not the overall 10 s.
    let server = Server::start(vec![(
        "summary",
        content(100_000),
        Knob::Trickle(Duration::from_millis(1)),
    )]);
    let cfg = FetchConfig {
        whole_file_speed: 1_000_000,
        ..config(server.url("http"))
    };
    let start = Instant::now();
    let err = Fetcher::new(cfg)
        .unwrap()
        .get("summary", 100_000)
        .unwrap_err();
    assert!(
        matches!(err, Error::TimedOut { after, .. } if after == Duration::from_millis(3100)),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn file_sources_refuse_fifos_symlinks_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("packs")).unwrap();
    std::fs::write(root.join("packs/good.pack"), b"0123456789").unwrap();
    std::fs::write(dir.path().join("host-file"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("host-file"), root.join("summary")).unwrap();
    std::os::unix::fs::symlink(root.join("packs"), root.join("linked")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("packs/fifo.pack"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", root.join("packs/zero.pack")).unwrap();
    let f = Fetcher::new(config(format!("file://{}", root.display()))).unwrap();

    let kind = |e: Error| match e {
        Error::NotAFile { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(kind(f.get("summary", 100).unwrap_err()), "symbolic link");
    assert_eq!(
        kind(f.get("linked/good.pack", 100).unwrap_err()),
        "symbolic link"
    );
    assert_eq!(
        kind(f.get("packs/zero.pack", 100).unwrap_err()),
        "symbolic link"
    );
    assert_eq!(kind(f.get("packs", 100).unwrap_err()), "directory");
    let start = Instant::now();
    let err = f.get_ranges("packs/fifo.pack", &[(0, 4)], 4).unwrap_err();
    assert!(err.to_string().contains("fifo.pack is a FIFO"), "{err}");
    let err = f
        .download_to("packs/fifo.pack", &dir.path().join("part"), 4, 4)
        .unwrap_err();
    assert_eq!(kind(err), "FIFO");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        f.get("packs/missing.pack", 100).unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(
        f.get_ranges("packs/good.pack", &[(2, 3)], 3).unwrap(),
        [b"234"]
    );
}

#[test]
fn overall_deadline_applies_without_a_speed_limit() {
    let server = Server::start(vec![(
        "slow",
        content(100),
        Knob::Trickle(Duration::from_millis(100)),
    )]);
    let cfg = FetchConfig {
        low_speed_limit: 0,
        overall_timeout: Duration::from_secs(1),
        ..config(server.url("http"))
    };
    let err = Fetcher::new(cfg).unwrap().get("slow", 1000).unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
}

#[test]
fn transient_errors_are_retried_then_reported() {
    // F3: 503 twice, then 200.
    let server = Server::start(vec![
        ("flaky", b"ok".to_vec(), Knob::FailFirst(2, 503)),
        ("down", Vec::new(), Knob::Status(502)),
    ]);
    let cfg = FetchConfig {
        retries: 3,
        ..config(server.url("http"))
    };
    let f = Fetcher::new(cfg).unwrap();
    assert_eq!(f.get("flaky", 100).unwrap(), b"ok");
    assert_eq!(server.requests().len(), 3);
    let err = f.get("down", 100).unwrap_err();
    match err {
        Error::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(attempts, 4);
            assert!(matches!(*last, Error::Status { status: 502, .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let f = Fetcher::new(config(format!("http://{addr}/"))).unwrap();
    let err = f.get("x", 10).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[test]
fn missing_forbidden_gone_and_other_statuses_are_distinct() {
    // F2.
    let server = Server::start(vec![
        ("forbidden", Vec::new(), Knob::Status(403)),
        ("gone", Vec::new(), Knob::Status(410)),
        ("teapot", Vec::new(), Knob::Status(418)),
    ]);
    let f = fetcher(&server);
    let err = f.get("missing", 10).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { url } if url.ends_with("/missing")),
        "{err:?}"
    );
    assert!(err.to_string().contains("/missing: not found"), "{err}");
    assert!(matches!(
        f.get("forbidden", 10).unwrap_err(),
        Error::Forbidden { status: 403, .. }
    ));
    assert!(matches!(f.get("gone", 10).unwrap_err(), Error::Gone { .. }));
    assert!(matches!(
        f.get("teapot", 10).unwrap_err(),
        Error::Status { status: 418, .. }
    ));
}

#[test]
fn redirects_are_followed_within_the_origin_only() {
    let data = content(10);
    let server = Server::start(vec![
        ("target", data.clone(), Knob::Normal),
        ("hop", Vec::new(), Knob::Redirect("/target".into())),
        ("loop", Vec::new(), Knob::Redirect("loop".into())),
    ]);
    let f = fetcher(&server);
    assert_eq!(f.get("hop", 100).unwrap(), data);
    let err = f.get("loop", 100).unwrap_err();
    assert!(
        matches!(err, Error::TooManyRedirects { limit: 5, .. }),
        "{err:?}"
    );
    let other = Server::start(vec![(
        "away",
        Vec::new(),
        Knob::Redirect(format!("http://localhost:{}/target", server.addr.port())),
    )]);
    let err = fetcher(&other).get("away", 100).unwrap_err();
    assert!(matches!(err, Error::RedirectOffOrigin { .. }), "{err:?}");
}

#[test]
fn gzip_content_encoding_is_decoded_under_the_cap() {
    // F7.
    let data = vec![7u8; 200_000];
    let server = Server::start(vec![
        ("z", data.clone(), Knob::Gzip),
        ("bad", content(100), Knob::BadGzip),
    ]);
    let f = fetcher(&server);
    assert_eq!(f.get("z", 200_000).unwrap(), data);
    // The compressed body is tiny; the decoded one is over the cap (a gzip bomb).
    let err = f.get("z", 100_000).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 100_000, .. }),
        "{err:?}"
    );
    let err = f.get("bad", 1000).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[test]
fn ranges_are_coalesced_and_fetched_in_parallel() {
    let data = content(4 << 20);
    let server = Server::start(vec![("pack", data.clone(), Knob::Normal)]);
    let cfg = FetchConfig {
        range_gap: 1000,
        max_parallel: 2,
        ..config(server.url("http"))
    };
    let f = Fetcher::new(cfg).unwrap();
    // Out of order, adjacent, near, far, empty and duplicate ranges.
    let ranges = [
        (500_000, 10),
        (0, 100),
        (100, 50),
        (700, 10),
        (200_000, 1),
        (300_000, 5),
        (0, 0),
        (0, 100),
    ];
    let got = f.get_ranges("pack", &ranges, 10_000).unwrap();
    for (piece, &(offset, len)) in got.iter().zip(&ranges) {
        assert_eq!(piece[..], data[offset as usize..(offset + len) as usize]);
    }
    let requests = server.requests();
    // Four spans after coalescing, a few hundred bytes: one multipart request, since
    // parallel requests only pay off for larger fetches.
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(f.requests(), 1);
    assert!(requests
        .iter()
        .all(|r| r.range.as_deref().unwrap().contains(',')));
    // Megabytes in four spans: spread over the two connections allowed.
    let big = [
        (0, 1_000_000),
        (1_100_000, 1_000_000),
        (2_200_000, 1_000_000),
        (3_300_000, 800_000),
    ];
    let got = f.get_ranges("pack", &big, 4_000_000).unwrap();
    for (piece, &(offset, len)) in got.iter().zip(&big) {
        assert_eq!(piece[..], data[offset as usize..(offset + len) as usize]);
    }
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    let err = f.get_ranges("pack", &ranges, 100).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 100, .. }), "{err:?}");
    // The budget is for the bytes asked; the gaps coalescing fills come on top.
    let near = [(0, 10), (500, 10)];
    assert_eq!(
        f.get_ranges("pack", &near, 20).unwrap(),
        vec![data[..10].to_vec(), data[500..510].to_vec()]
    );
}

#[test]
fn single_range_responses_are_checked() {
    let data = content(10_000);
    let server = Server::start(vec![
        ("good", data.clone(), Knob::Normal),
        ("wrong", data.clone(), Knob::WrongRange),
    ]);
    let f = fetcher(&server);
    assert_eq!(
        f.get_ranges("good", &[(10, 20)], 100).unwrap(),
        vec![data[10..30].to_vec()]
    );
    // F5: a Content-Range other than the one asked is never spliced in.
    let err = f.get_ranges("wrong", &[(10, 20)], 100).unwrap_err();
    assert!(matches!(err, Error::BadContentRange { .. }), "{err:?}");
}

#[test]
fn multipart_parts_must_be_the_ranges_asked() {
    let server = Server::start(vec![("pack", content(300_000), Knob::ShiftSecondPart)]);
    let cfg = FetchConfig {
        max_parallel: 1,
        ..config(server.url("http"))
    };
    let err = Fetcher::new(cfg)
        .unwrap()
        .get_ranges("pack", &[(0, 10), (200_000, 10)], 100)
        .unwrap_err();
    match &err {
        Error::BadContentRange { expected, got, .. } => {
            assert_eq!(expected, "bytes=0-9,200000-200009");
            // The first part that is not the one asked next.
            assert_eq!(got, "bytes=200001-200010");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_and_fetchers_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Error>();
    send_sync::<Fetcher>();
}

#[test]
fn servers_ignoring_range_are_sliced_or_refused() {
    // F5: 200 with the full body.
    let data = content(5000);
    let server = Server::start(vec![("all", data.clone(), Knob::IgnoreRange)]);
    let f = fetcher(&server);
    let got = f.get_ranges("all", &[(4000, 10), (0, 3)], 5000).unwrap();
    assert_eq!(got, vec![data[4000..4010].to_vec(), data[0..3].to_vec()]);
    let err = f.get_ranges("all", &[(4000, 10)], 1000).unwrap_err();
    assert!(
        matches!(err, Error::RangeIgnored { limit: 1000, .. }),
        "{err:?}"
    );
}

#[test]
fn download_resumes_after_a_cut_connection() {
    let data = content(300_000);
    let server = Server::start(vec![("big", data.clone(), Knob::CutFirstAfter(120_000))]);
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("big.part");
    let f = fetcher(&server);
    let err = f.download_to("big", &part, 300_000, 1 << 20).unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 120_000);
    let fetched = f.download_to("big", &part, 300_000, 1 << 20).unwrap();
    assert_eq!(fetched, 180_000);
    assert_eq!(std::fs::read(&part).unwrap(), data);
    let requests = server.requests();
    assert_eq!(requests[1].path, "/big");
    assert_eq!(requests[1].range.as_deref(), Some("bytes=120000-"));
    // Already complete: nothing fetched.
    assert_eq!(f.download_to("big", &part, 300_000, 1 << 20).unwrap(), 0);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn download_retries_resume_within_one_call() {
    let data = content(50_000);
    let server = Server::start(vec![("big", data.clone(), Knob::CutFirstAfter(20_000))]);
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("big.part");
    let cfg = FetchConfig {
        retries: 2,
        ..config(server.url("http"))
    };
    let f = Fetcher::new(cfg).unwrap();
    assert_eq!(f.download_to("big", &part, 50_000, 50_000).unwrap(), 50_000);
    assert_eq!(std::fs::read(&part).unwrap(), data);
    let err = f.download_to("big", &part, 50_000, 49_999).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    let other = dir.path().join("other.part");
    // Longer or shorter than the signed metadata says.
    let err = f.download_to("big", &other, 40_000, 50_000).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 40_000, .. }),
        "{err:?}"
    );
    let err = f
        .download_to("big", &dir.path().join("short.part"), 60_000, 60_000)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                expected: 60_000,
                actual: 50_000,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn file_urls_have_the_same_caps() {
    // C11: file:// goes through the same limits.
    let dir = tempfile::tempdir().unwrap();
    let data = content(10_000);
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/pack"), &data).unwrap();
    let base = url::Url::from_directory_path(dir.path().join("repo")).unwrap();
    let f = Fetcher::new(config(base.to_string())).unwrap();
    assert_eq!(f.get("pack", 10_000).unwrap(), data);
    assert!(matches!(
        f.get("pack", 9_999).unwrap_err(),
        Error::TooLarge { .. }
    ));
    assert!(matches!(
        f.get("nope", 10).unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(
        f.get_ranges("pack", &[(5, 5), (0, 2)], 10).unwrap(),
        vec![data[5..10].to_vec(), data[0..2].to_vec()]
    );
    assert!(matches!(
        f.get_ranges("pack", &[(9_999, 2)], 10).unwrap_err(),
        Error::LengthMismatch { .. }
    ));
    let part = dir.path().join("pack.part");
    std::fs::write(&part, &data[..4000]).unwrap();
    assert_eq!(f.download_to("pack", &part, 10_000, 10_000).unwrap(), 6000);
    assert_eq!(std::fs::read(&part).unwrap(), data);
}

#[test]
fn paths_and_urls_are_validated() {
    let server = Server::start(vec![]);
    let f = fetcher(&server);
    assert!(matches!(
        f.get("../etc/passwd", 10).unwrap_err(),
        Error::InvalidPath { .. }
    ));
    assert!(matches!(
        f.get("a?b", 10).unwrap_err(),
        Error::InvalidPath { .. }
    ));
    assert!(server.requests().is_empty());
    assert!(matches!(
        Fetcher::new(FetchConfig::new("ftp://x/")).unwrap_err(),
        Error::InvalidUrl { .. }
    ));
}

mod tls {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
        ca: Ca,
        ca_file: std::path::PathBuf,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("update test CA");
        let ca_file = write(dir.path(), "ca.pem", &ca.pem);
        Pki { dir, ca, ca_file }
    }

    fn tls_server(leaf: &(String, String), client_ca: Option<&Ca>) -> Server {
        let tls = support::server_tls(leaf, client_ca);
        Server::start_with(
            vec![("summary", b"signed".to_vec(), Knob::Normal)],
            Some(tls),
        )
    }

    fn tls_config(server: &Server, tls: TlsConfig) -> FetchConfig {
        FetchConfig {
            tls: Some(tls),
            ..config(server.url("https"))
        }
    }

    fn trusting(pki: &Pki) -> TlsConfig {
        TlsConfig {
            ca_file: Some(pki.ca_file.clone()),
            ..TlsConfig::default()
        }
    }

    fn server_leaf(ca: &Ca, name: &str, expired: bool) -> (String, String) {
        if expired {
            ca.issue_expired(&[name], ExtendedKeyUsagePurpose::ServerAuth)
        } else {
            ca.issue(&[name], ExtendedKeyUsagePurpose::ServerAuth)
        }
    }

    fn tls_kind(err: &Error) -> TlsFailure {
        match err {
            Error::Tls { kind, .. } => *kind,
            other => panic!("not a TLS error: {other:?}"),
        }
    }

    #[test]
    fn https_with_a_private_ca() {
        let pki = pki();
        let server = tls_server(&server_leaf(&pki.ca, "127.0.0.1", false), None);
        let f = Fetcher::new(tls_config(&server, trusting(&pki))).unwrap();
        assert_eq!(f.get("summary", 100).unwrap(), b"signed");
    }

    #[test]
    fn tls_fails_closed() {
        // F8: unknown CA, wrong host name, expired certificate.
        let pki = pki();
        let other = Ca::new("other CA");
        let cases = [
            (
                server_leaf(&other, "127.0.0.1", false),
                TlsFailure::UnknownIssuer,
            ),
            (
                server_leaf(&pki.ca, "example.com", false),
                TlsFailure::WrongHostname,
            ),
            (server_leaf(&pki.ca, "127.0.0.1", true), TlsFailure::Expired),
        ];
        for (leaf, expected) in cases {
            let server = tls_server(&leaf, None);
            let f = Fetcher::new(tls_config(&server, trusting(&pki))).unwrap();
            let err = f.get("summary", 100).unwrap_err();
            assert_eq!(tls_kind(&err), expected, "{err:?}");
        }
        // Default roots do not trust a private CA either.
        let server = tls_server(&server_leaf(&pki.ca, "127.0.0.1", false), None);
        let f = Fetcher::new(config(server.url("https"))).unwrap();
        assert_eq!(
            tls_kind(&f.get("summary", 100).unwrap_err()),
            TlsFailure::UnknownIssuer
        );
    }

    #[test]
    fn mutual_tls() {
        let pki = pki();
        let server = tls_server(&server_leaf(&pki.ca, "127.0.0.1", false), Some(&pki.ca));
        let dir = pki.dir.path();
        let client = pki
            .ca
            .issue(&["device-1"], ExtendedKeyUsagePurpose::ClientAuth);
        let with_cert = TlsConfig {
            client_cert: Some(write(dir, "client.crt", &client.0)),
            client_key: Some(write(dir, "client.key", &client.1)),
            ..trusting(&pki)
        };
        let f = Fetcher::new(tls_config(&server, with_cert)).unwrap();
        assert_eq!(f.get("summary", 100).unwrap(), b"signed");

        // F9: no client certificate, or one from another CA.
        let f = Fetcher::new(tls_config(&server, trusting(&pki))).unwrap();
        let err = f.get("summary", 100).unwrap_err();
        assert_eq!(tls_kind(&err), TlsFailure::ClientAuthRejected, "{err:?}");
        let rogue = Ca::new("rogue").issue(&["device-1"], ExtendedKeyUsagePurpose::ClientAuth);
        let with_rogue = TlsConfig {
            client_cert: Some(write(dir, "rogue.crt", &rogue.0)),
            client_key: Some(write(dir, "rogue.key", &rogue.1)),
            ..trusting(&pki)
        };
        let f = Fetcher::new(tls_config(&server, with_rogue)).unwrap();
        let err = f.get("summary", 100).unwrap_err();
        assert_eq!(tls_kind(&err), TlsFailure::ClientAuthRejected, "{err:?}");
    }

    #[test]
    fn https_to_http_redirect_is_refused() {
        // F6.
        let pki = pki();
        let plain = Server::start(vec![("summary", b"downgraded".to_vec(), Knob::Normal)]);
        let tls = support::server_tls(&server_leaf(&pki.ca, "127.0.0.1", false), None);
        let location = format!("http://127.0.0.1:{}/summary", plain.addr.port());
        let server = Server::start_with(
            vec![("summary", Vec::new(), Knob::Redirect(location))],
            Some(tls),
        );
        let f = Fetcher::new(tls_config(&server, trusting(&pki))).unwrap();
        let err = f.get("summary", 100).unwrap_err();
        assert!(matches!(err, Error::InsecureRedirect { .. }), "{err:?}");
        assert!(err.to_string().contains("insecure"), "{err}");
        assert!(plain.requests().is_empty());
        // Only when explicitly configured.
        let cfg = FetchConfig {
            allow_insecure_redirects: true,
            ..tls_config(&server, trusting(&pki))
        };
        assert_eq!(
            Fetcher::new(cfg).unwrap().get("summary", 100).unwrap(),
            b"downgraded"
        );
    }

    #[test]
    fn bad_tls_files_are_reported() {
        let pki = pki();
        let missing = TlsConfig {
            client_cert: Some(pki.dir.path().join("nope.crt")),
            ..trusting(&pki)
        };
        let err = Fetcher::new(FetchConfig {
            tls: Some(missing),
            ..FetchConfig::new("https://127.0.0.1/")
        })
        .unwrap_err();
        assert!(matches!(err, Error::TlsFile { .. }), "{err:?}");
    }
}

#[test]
fn a_server_without_multiple_ranges_gets_one_range_per_request() {
    let data = content(4 << 20);
    let server = Server::start(vec![("pack", data.clone(), Knob::SingleRangeOnly)]);
    let f = Fetcher::new(config(server.url("http"))).unwrap();
    let ranges = [(100, 10), (2_000_000, 20), (4_000_000, 30)];
    let got = f.get_ranges("pack", &ranges, 1000).unwrap();
    for (piece, &(offset, len)) in got.iter().zip(&ranges) {
        assert_eq!(piece[..], data[offset as usize..(offset + len) as usize]);
    }
    // One refused multi-range request, then one request per range, and only single
    // ranges from then on.
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
    let again = f.get_ranges("pack", &ranges[..2], 1000).unwrap();
    assert_eq!(again[1][..], data[2_000_000..2_000_020]);
    let requests = server.requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert!(requests[4..]
        .iter()
        .all(|r| !r.range.as_deref().unwrap().contains(',')));
}

/// Collects what `stream_ranges` hands over, checking it comes in order.
fn streamed(
    f: &Fetcher,
    path: &str,
    ranges: &[(u64, u64)],
    max: u64,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut got: Vec<Vec<u8>> = Vec::new();
    f.stream_ranges(path, ranges, max, &mut |i, bytes| {
        assert_eq!(i, got.len(), "ranges come in order");
        got.push(bytes);
        Ok(())
    })?;
    Ok(got)
}

fn slices(data: &[u8], ranges: &[(u64, u64)]) -> Vec<Vec<u8>> {
    ranges
        .iter()
        .map(|&(o, l)| data[o as usize..(o + l) as usize].to_vec())
        .collect()
}

#[test]
fn streamed_ranges_come_in_order_in_few_requests() {
    let data = content(1 << 20);
    let server = Server::start(vec![("pack", data.clone(), Knob::Normal)]);
    let cfg = FetchConfig {
        range_gap: 100,
        max_ranges_per_request: 3,
        ..config(server.url("http"))
    };
    let f = Fetcher::new(cfg).unwrap();
    // Adjacent, near, far and empty ranges: five spans, so two requests of at most three.
    let ranges = [
        (0, 10),
        (10, 20),
        (50, 0),
        (80, 5),
        (1000, 100_000),
        (200_000, 1),
        (300_000, 7),
        (900_000, 100_000),
    ];
    assert_eq!(
        streamed(&f, "pack", &ranges, 300_000).unwrap(),
        slices(&data, &ranges)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].range.as_deref(),
        Some("bytes=0-84,1000-100999,200000-200000")
    );
    // Unordered or overlapping ranges are refused before any request.
    for bad in [[(10, 5), (0, 5)], [(0, 10), (5, 10)]] {
        let err = streamed(&f, "pack", &bad, 100).unwrap_err();
        assert!(matches!(err, Error::InvalidRange { .. }), "{err:?}");
    }
    let err = streamed(&f, "pack", &ranges, 1000).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 2);
    // The reader stopping ends the transfer at once, without retries.
    let err = f
        .stream_ranges("pack", &ranges, 300_000, &mut |_, _| Err(Error::Stopped))
        .unwrap_err();
    assert!(matches!(err, Error::Stopped), "{err:?}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn streamed_ranges_resume_from_the_first_missing_byte() {
    // The first answer ignores Range (a 200 with the whole file, read up to the last byte
    // wanted) and is cut after 120 000 bytes; the retry asks only for what is missing.
    let data = content(300_000);
    let server = Server::start(vec![("pack", data.clone(), Knob::CutFirstAfter(120_000))]);
    let cfg = FetchConfig {
        retries: 1,
        range_gap: 100,
        ..config(server.url("http"))
    };
    let f = Fetcher::new(cfg).unwrap();
    let ranges = [(0, 1000), (50_000, 100_000), (200_000, 50_000)];
    assert_eq!(
        streamed(&f, "pack", &ranges, 300_000).unwrap(),
        slices(&data, &ranges)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[1].range.as_deref(),
        Some("bytes=120000-149999,200000-249999")
    );
}

#[test]
fn streamed_parts_and_bodies_are_checked() {
    let data = content(300_000);
    let server = Server::start(vec![
        ("shifted", data.clone(), Knob::ShiftSecondPart),
        ("wrong", data.clone(), Knob::WrongRange),
        ("all", data.clone(), Knob::IgnoreRange),
    ]);
    let f = fetcher(&server);
    // F5: parts other than the ones asked are never spliced in.
    let err = streamed(&f, "shifted", &[(0, 10), (200_000, 10)], 100).unwrap_err();
    assert!(matches!(err, Error::BadContentRange { .. }), "{err:?}");
    let err = streamed(&f, "wrong", &[(10, 20)], 100).unwrap_err();
    assert!(matches!(err, Error::BadContentRange { .. }), "{err:?}");
    // A server ignoring Range: read up to the last byte wanted, within the budget.
    let ranges = [(10, 5), (4000, 10)];
    assert_eq!(
        streamed(&f, "all", &ranges, 5000).unwrap(),
        slices(&data, &ranges)
    );
    let err = streamed(&f, "all", &ranges, 1000).unwrap_err();
    assert!(matches!(err, Error::RangeIgnored { .. }), "{err:?}");
    // file:// streams the same, in order.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pack"), &data).unwrap();
    let local = Fetcher::new(FetchConfig::new(format!("file://{}", dir.path().display()))).unwrap();
    assert_eq!(
        streamed(&local, "pack", &ranges, 15).unwrap(),
        slices(&data, &ranges)
    );
    let err = streamed(&local, "pack", &[(10, 5), (0, 1)], 15).unwrap_err();
    assert!(matches!(err, Error::InvalidRange { .. }), "{err:?}");
}
