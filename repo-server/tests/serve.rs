//! The server end to end: a real listener on 127.0.0.1 and raw HTTP/1.1 clients.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use repo_server::{AccessLogTarget, ServerConfig, TlsFiles};
use support::{plain, start, tls_get, Resp, Tree, SECRET};
use testkit::certs::{write_pair, Ca, ExtendedKeyUsagePurpose};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_serve_file_with_validators() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();

    let get = plain(addr, "GET", "/data.bin", &[]).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, tree.data);
    assert_eq!(get.header("content-length"), Some("300000"));
    assert_eq!(get.header("accept-ranges"), Some("bytes"));
    let etag = get.header("etag").unwrap();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert!(get.header("last-modified").is_some());

    let head = plain(addr, "HEAD", "/data.bin", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("etag"), Some(etag));

    let nested = plain(addr, "GET", "/sub//hello.txt", &[]).await;
    assert_eq!(
        (nested.status, nested.body.as_slice()),
        (200, &b"hello\n"[..])
    );
    let encoded = plain(addr, "GET", "/sub/%68ello.txt", &[]).await;
    assert_eq!(encoded.status, 200);
    // A symlink that stays inside the root is followed.
    let inside = plain(addr, "GET", "/inside", &[]).await;
    assert_eq!((inside.status, inside.body == tree.data), (200, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_directories_and_methods() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();
    for target in ["/nope", "/sub", "/sub/", "/", "/data.bin/x"] {
        assert_eq!(
            plain(addr, "GET", target, &[]).await.status,
            404,
            "{target}"
        );
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let resp = plain(addr, method, "/data.bin", &["Content-Length: 0"]).await;
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_range_and_suffix() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();

    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=100-299"]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-299/300000"));
    assert_eq!(r.header("content-length"), Some("200"));
    assert_eq!(r.body, &tree.data[100..300]);

    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=-10"]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &tree.data[299_990..]);

    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=299000-"]).await;
    assert_eq!(r.body, &tree.data[299_000..]);

    // Malformed ranges are ignored: the whole file, 200.
    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=9-1"]).await;
    assert_eq!((r.status, r.body.len()), (200, 300_000));
}

fn multipart_parts(resp: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct = resp.header("content-type").unwrap();
    let boundary = ct.split("boundary=").nth(1).unwrap();
    let delimiter = format!("\r\n--{boundary}");
    let body = &resp.body;
    let mut positions = Vec::new();
    let d = delimiter.as_bytes();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            positions.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for pair in positions.windows(2) {
        let part = &body[pair[0] + d.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap();
        let split = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(part[..split].to_vec()).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_owned();
        parts.push((range, part[split + 4..].to_vec()));
    }
    let last = *positions.last().unwrap();
    assert_eq!(&body[last + d.len()..], b"--\r\n");
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_are_multipart() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();
    let r = plain(
        addr,
        "GET",
        "/data.bin",
        &["Range: bytes=0-9, 1000-1999,-5"],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    assert_eq!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        r.body.len()
    );
    let parts = multipart_parts(&r);
    assert_eq!(
        parts,
        vec![
            ("bytes 0-9/300000".to_owned(), tree.data[0..10].to_vec()),
            (
                "bytes 1000-1999/300000".to_owned(),
                tree.data[1000..2000].to_vec()
            ),
            (
                "bytes 299995-299999/300000".to_owned(),
                tree.data[299_995..].to_vec()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ranges_never_send_more_than_the_file() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();

    // 1,024 copies of the whole file asked at once: merged into one range, sent once.
    let same = format!("Range: bytes={}", vec!["0-"; 1024].join(","));
    let r = plain(addr, "GET", "/data.bin", &[&same]).await;
    assert!(r.body.len() <= tree.data.len(), "{} bytes", r.body.len());
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 0-299999/300000"));
    assert_eq!(r.body, tree.data);

    // Overlapping and adjacent ranges merge; parts keep the order first asked.
    let r = plain(
        addr,
        "GET",
        "/data.bin",
        &["Range: bytes=5000-5999,0-99,50-149,150-199,5500-"],
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(
        multipart_parts(&r),
        vec![
            (
                "bytes 5000-299999/300000".to_owned(),
                tree.data[5000..].to_vec()
            ),
            ("bytes 0-199/300000".to_owned(), tree.data[..200].to_vec()),
        ]
    );

    // Two disjoint ranges are still two parts.
    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=10-19,100-109"]).await;
    assert_eq!(r.status, 206);
    assert_eq!(
        multipart_parts(&r),
        vec![
            ("bytes 10-19/300000".to_owned(), tree.data[10..20].to_vec()),
            (
                "bytes 100-109/300000".to_owned(),
                tree.data[100..110].to_vec()
            ),
        ]
    );

    // Parts whose framing outweighs the file: the whole file instead, 200.
    let r = plain(addr, "GET", "/sub/hello.txt", &["Range: bytes=0-0,2-2,4-4"]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));

    // Too many parts left after merging: the header is ignored.
    let spaced: Vec<String> = (0..201).map(|i| format!("{0}-{0}", i * 1000)).collect();
    let spaced = format!("Range: bytes={}", spaced.join(","));
    let r = plain(addr, "GET", "/data.bin", &[&spaced]).await;
    assert_eq!((r.status, r.body.len()), (200, 300_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_range_is_416() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let r = plain(
        server.local_addr(),
        "GET",
        "/data.bin",
        &["Range: bytes=300000-"],
    )
    .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();
    let first = plain(addr, "GET", "/data.bin", &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let modified = first.header("last-modified").unwrap().to_owned();

    let inm = format!("If-None-Match: \"other\", {etag}");
    let r = plain(addr, "GET", "/data.bin", &[&inm]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let r = plain(addr, "GET", "/data.bin", &["If-None-Match: \"stale\""]).await;
    assert_eq!((r.status, r.body.len()), (200, 300_000));

    let ims = format!("If-Modified-Since: {modified}");
    assert_eq!(plain(addr, "GET", "/data.bin", &[&ims]).await.status, 304);
    let old = "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT";
    assert_eq!(plain(addr, "GET", "/data.bin", &[old]).await.status, 200);

    // If-Range with the current ETag honours the range; with a stale one sends it all.
    let current = format!("If-Range: {etag}");
    let r = plain(addr, "GET", "/data.bin", &["Range: bytes=0-3", &current]).await;
    assert_eq!((r.status, r.body.len()), (206, 4));
    let r = plain(
        addr,
        "GET",
        "/data.bin",
        &["Range: bytes=0-3", "If-Range: \"x\""],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 300_000));

    // A changed file gets a new ETag.
    std::fs::write(tree.root().join("data.bin"), b"changed").unwrap();
    let r = plain(addr, "GET", "/data.bin", &[&inm]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"changed"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_root_is_served() {
    let tree = Tree::new();
    let server = start(tree.config()).await;
    let addr = server.local_addr();
    // `sub/up` points at the root itself: following it stays inside and is fine.
    assert_eq!(
        plain(addr, "GET", "/sub/up/data.bin", &[]).await.status,
        200
    );
    let attempts = [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/escape",
        "/absolute",
        "/sub/up/secret.txt",
        "/data.bin%00",
        "/./data.bin",
    ];
    for target in attempts {
        let r = plain(addr, "GET", target, &[]).await;
        assert!(r.status == 400 || r.status == 404, "{target}: {}", r.status);
        assert!(
            !r.body.windows(SECRET.len()).any(|w| w == SECRET),
            "{target} leaked the secret"
        );
    }
    // Absolute-form targets are judged by their path too.
    let r = plain(addr, "GET", "http://localhost/../secret.txt", &[]).await;
    assert!(r.status == 400 || r.status == 404, "{}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_records_requests() {
    let tree = Tree::new();
    let log_path = tree.dir.path().join("access.log");
    let config = ServerConfig {
        access_log: Some(AccessLogTarget::File(log_path.clone())),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();
    plain(addr, "GET", "/data.bin", &[]).await;
    plain(addr, "GET", "/nope", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("127.0.0.1:")
            && l.contains("\"GET /data.bin\" 200 300000 ")
            && l.ends_with("ms")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"GET /nope\" 404 10 ")),
        "{text}"
    );
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    tls: TlsFiles,
}

fn pki(client_ca: bool) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = ca.issue(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (cert, key) = write_pair(dir.path(), "server", &server);
    let client_ca = client_ca.then(|| ca.write(dir.path(), "ca.crt"));
    Pki {
        tls: TlsFiles {
            cert,
            key,
            client_ca,
        },
        ca,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_files() {
    let tree = Tree::new();
    let pki = pki(false);
    let config = ServerConfig {
        tls: Some(pki.tls.clone()),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();
    let r = tls_get(addr, &pki.ca.pem, None, "/data.bin").await.unwrap();
    assert_eq!((r.status, r.body == tree.data), (200, true));
    // A client trusting another CA refuses the server.
    let other = Ca::new("other CA");
    assert!(tls_get(addr, &other.pem, None, "/data.bin").await.is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let stream = TcpStream::connect(addr).await.unwrap();
    let plain_answer = support::exchange(stream, &support::request("GET", "/data.bin", &[])).await;
    assert!(plain_answer.is_err(), "{plain_answer:?}");
    drop(pki.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let tree = Tree::new();
    let pki = pki(true);
    let config = ServerConfig {
        tls: Some(pki.tls.clone()),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();

    let good = pki
        .ca
        .issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let r = tls_get(addr, &pki.ca.pem, Some(&good), "/sub/hello.txt")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));

    let none = tls_get(addr, &pki.ca.pem, None, "/sub/hello.txt").await;
    assert!(none.is_err(), "no client cert was served: {none:?}");

    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let refused = tls_get(addr, &pki.ca.pem, Some(&rogue), "/sub/hello.txt").await;
    assert!(
        refused.is_err(),
        "foreign client cert was served: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_other_clients() {
    let tree = Tree::new();
    let config = ServerConfig {
        max_connections: 256,
        header_timeout: Duration::from_secs(2),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();
    let started = Instant::now();

    let mut trickles = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        trickles.push(tokio::spawn(async move {
            if stream
                .write_all(b"GET /data.bin HTTP/1.1\r\n")
                .await
                .is_err()
            {
                return;
            }
            // One header byte every half second, never finishing the headers.
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let asked = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(8),
        plain(addr, "GET", "/sub/hello.txt", &[]),
    )
    .await
    .expect("normal client starved by slowloris connections");
    assert_eq!(r.status, 200);
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    eprintln!("normal client served after {waited:?}");

    for t in trickles {
        t.abort();
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_header_timeout() {
    let tree = Tree::new();
    let config = ServerConfig {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        ..tree.config()
    };
    let server = start(config).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /data.bin HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf),
    )
    .await;
    assert!(
        closed.is_ok(),
        "connection still open after the header timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_body_leaves_server_healthy() {
    let tree = Tree::new();
    std::fs::write(tree.root().join("big.bin"), vec![7u8; 8 << 20]).unwrap();
    let server = start(tree.config()).await;
    let addr = server.local_addr();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&support::request("GET", "/big.bin", &[]))
            .await
            .unwrap();
        let mut first = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut first).await;
        drop(stream);
    }
    let r = plain(addr, "GET", "/sub/hello.txt", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_hold_no_connection_slots() {
    const SLOTS: usize = 4;
    let tree = Tree::new();
    let config = ServerConfig {
        max_connections: SLOTS,
        header_timeout: Duration::from_secs(10),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();

    // 4 x N clients that started a request and drip one header byte per second.
    let mut drips = Vec::new();
    for _ in 0..4 * SLOTS {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /data.bin HTTP/1.1\r\n")
            .await
            .unwrap();
        drips.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..30 {
                tick.tick().await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
            }
        }));
    }

    // Normal clients, one after the other, are each answered within 2 s.
    for _ in 0..3 {
        let asked = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            plain(addr, "GET", "/sub/hello.txt", &[]),
        )
        .await
        .expect("normal client waited behind slow header senders");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
        eprintln!("normal client served after {:?}", asked.elapsed());
    }
    for drip in drips {
        drip.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_is_given_back_when_the_response_is_sent() {
    let tree = Tree::new();
    let config = ServerConfig {
        max_connections: 1,
        header_timeout: Duration::from_secs(10),
        ..tree.config()
    };
    let server = start(config).await;
    let addr = server.local_addr();

    // A keep-alive client is answered, then drips its next request's headers.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /sub/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nhello\n") {
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut kept, &mut buf),
        )
        .await
        .expect("keep-alive client not answered")
        .unwrap();
        assert!(n > 0, "closed after {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    kept.write_all(b"GET /data.bin HTTP/1.1\r\n").await.unwrap();
    let drip = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for _ in 0..30 {
            tick.tick().await;
            if kept.write_all(b"X").await.is_err() {
                return;
            }
        }
    });

    let r = tokio::time::timeout(
        Duration::from_secs(2),
        plain(addr, "GET", "/sub/hello.txt", &[]),
    )
    .await
    .expect("the only slot stayed with a connection between its requests");
    assert_eq!(r.status, 200);
    drip.abort();
}
