//! `update pull` over real servers on 127.0.0.1: Debian's nginx serving the published
//! directory as plain files, `update serve` with TLS and with mutual TLS (certificates made
//! by the test), and a proxy that cuts the connection midway to show that a second pull
//! resumes where the first stopped.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testkit::certs::TestPki;
use testkit::nginx::Nginx;
use testkit::serve::{ServeOptions, Served};
use testkit::tree::rand_bytes;
use testkit::world::{assert_refused, assert_tree, pull, pulled, try_pull, write, World};

#[test]
fn pull_from_nginx_in_few_requests() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let nginx = Nginx::start(&w.builder);
    let device = w.device_at("device", "bare", &nginx.url(), &[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v1.as_str());
    assert_tree(&device, &w.src, &w.root);
    let full_requests = nginx.wait_for_requests(
        report["requests"].as_u64().unwrap() as usize,
        Duration::from_secs(10),
    );
    assert!(
        full_requests
            .iter()
            .all(|e| e.status == 200 || e.status == 206),
        "{full_requests:?}"
    );
    // summary, signatures, chunk index, pack index, metadata, then the files in one batch.
    assert!(full_requests.len() <= 8, "{full_requests:#?}");
    assert!(full_requests.iter().any(|e| e.range.is_some()));

    // An update: one changed file.
    let mut big = std::fs::read(w.src.join("usr/lib/big.bin")).unwrap();
    big[100..110].copy_from_slice(b"abcdefghij");
    write(&w.src.join("usr/lib/big.bin"), &big);
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&["--no-deltas"]);
    let before = nginx.access_log().len();
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    let log = nginx.wait_for_requests(
        before + report["requests"].as_u64().unwrap() as usize,
        Duration::from_secs(10),
    );
    let update_requests = log.len() - before;
    assert!(update_requests <= 20, "{:#?}", &log[before..]);
    assert_tree(&device, &w.src, &w.root);
}

#[test]
fn pull_over_tls_and_mutual_tls() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let pki = TestPki::new(&w.root.join("pki"));
    let ca = pki.ca_cert.to_str().unwrap();

    let tls = Served::start(&w.builder, ServeOptions::tls(&pki));
    let device = w.device_at("device-tls", "bare", &tls.url(), &["--tls-ca", ca]);
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    assert_tree(&device, &w.src, &w.root);
    // Without the private CA the server is not trusted.
    let untrusting = w.device_at("device-public-roots", "bare", &tls.url(), &[]);
    let run = try_pull(&untrusting, "origin", &[]);
    assert_refused(&run, &untrusting, None, "certificate");

    let mtls = Served::start(&w.builder, ServeOptions::mutual_tls(&pki));
    let device = w.device_at(
        "device-mtls",
        "bare",
        &mtls.url(),
        &[
            "--tls-ca",
            ca,
            "--tls-client-cert",
            pki.client_cert.to_str().unwrap(),
            "--tls-client-key",
            pki.client_key.to_str().unwrap(),
        ],
    );
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    // No client certificate, or one from another CA: refused by the server.
    let anonymous = w.device_at("device-anon", "bare", &mtls.url(), &["--tls-ca", ca]);
    let run = try_pull(&anonymous, "origin", &[]);
    assert_refused(&run, &anonymous, None, "tls");
    let stranger = w.device_at(
        "device-stranger",
        "bare",
        &mtls.url(),
        &[
            "--tls-ca",
            ca,
            "--tls-client-cert",
            pki.other_client_cert.to_str().unwrap(),
            "--tls-client-key",
            pki.other_client_key.to_str().unwrap(),
        ],
    );
    let run = try_pull(&stranger, "origin", &[]);
    assert_refused(&run, &stranger, None, "tls");
}

/// A TCP proxy to `upstream` that forwards at most `budget` bytes of responses in all,
/// then cuts every connection and refuses new ones until `heal` is set.
struct CuttingProxy {
    port: u16,
    budget: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: std::net::SocketAddr, budget: i64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let budget = Arc::new(AtomicI64::new(budget));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (budget.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let b = b.clone();
                        std::thread::spawn(move || relay(client, upstream, b));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy { port, budget, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn heal(&self) {
        self.budget.store(i64::MAX, Ordering::Relaxed);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(mut client: TcpStream, upstream: std::net::SocketAddr, budget: Arc<AtomicI64>) {
    if budget.load(Ordering::Relaxed) <= 0 {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let timeout = Some(Duration::from_secs(20));
    let _ = client.set_read_timeout(timeout);
    let _ = server.set_read_timeout(timeout);
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let left = budget.fetch_sub(n as i64, Ordering::Relaxed);
        if left <= 0 {
            break;
        }
        let n = n.min(left as usize);
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
}

#[test]
fn an_interrupted_pull_resumes() {
    let w = World::new();
    // Enough incompressible content for many batches.
    for i in 0..24 {
        write(
            &w.src.join(format!("usr/lib/firmware/blob{i}")),
            &rand_bytes(100_000, 500 + i),
        );
    }
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let served = Served::start(&w.builder, ServeOptions::plain());
    let batch = ["--batch-bytes", "200000"];

    let full = pull(
        &w.device_at("device-full", "bare", &served.url(), &[]),
        "origin",
        &batch,
    );
    let full_bytes = full["bytes"].as_u64().unwrap();
    assert!(full_bytes > 2_500_000, "{full}");

    // The connection is cut after about half of the bytes.
    let proxy = CuttingProxy::start(served.addr(), (full_bytes / 2) as i64);
    let device = w.device_at("device", "bare", &proxy.url(), &[]);
    let run = try_pull(&device, "origin", &batch);
    assert_refused(&run, &device, None, "127.0.0.1");

    proxy.heal();
    let second = pull(&device, "origin", &batch);
    let second_bytes = second["bytes"].as_u64().unwrap();
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    assert!(
        second_bytes < full_bytes * 7 / 10,
        "the resumed pull fetched {second_bytes} of {full_bytes} bytes"
    );
    assert_tree(&device, &w.src, &w.root);
}
