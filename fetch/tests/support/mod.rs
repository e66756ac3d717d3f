//! A small hyper server with knobs for hostile behaviour, and its rustls configuration.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use testkit::certs::Ca;
use tokio::net::TcpListener;

type Body = Channel<Bytes, std::io::Error>;

/// How a path misbehaves.
#[derive(Clone, Debug)]
pub enum Knob {
    /// Serves the content, honouring single and multiple ranges.
    Normal,
    /// Answers every request with 200 and the whole body.
    IgnoreRange,
    /// Honours a single range, answers several with 200 and the whole body (like some CDNs).
    SingleRangeOnly,
    /// 200 without a length, zeros forever.
    StreamForever,
    /// 200 with the right length, one byte per interval.
    Trickle(Duration),
    /// Never sends response headers.
    Hang,
    /// The first `n` requests get `status`, then normal.
    FailFirst(u32, u16),
    /// Always this status.
    Status(u16),
    /// 302 to this Location.
    Redirect(String),
    /// The first request declares the full length, sends `n` bytes and cuts the connection.
    CutFirstAfter(usize),
    /// 200 with the content gzip-encoded (Range ignored).
    Gzip,
    /// 200 with a `Content-Encoding: gzip` header on bytes that are not gzip.
    BadGzip,
    /// 206 whose Content-Range is off by one.
    WrongRange,
    /// Multipart 206 whose second part is shifted by one byte (self-consistent but not asked).
    ShiftSecondPart,
}

struct Route {
    content: Vec<u8>,
    knob: Knob,
    hits: AtomicU32,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Logged>>>,
}

impl Server {
    pub fn start(routes: Vec<(&str, Vec<u8>, Knob)>) -> Server {
        Server::start_with(routes, None)
    }

    pub fn start_with(
        routes: Vec<(&str, Vec<u8>, Knob)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let routes: HashMap<String, Route> = routes
            .into_iter()
            .map(|(p, content, knob)| {
                let route = Route {
                    content,
                    knob,
                    hits: AtomicU32::new(0),
                };
                (format!("/{p}"), route)
            })
            .collect();
        let routes = Arc::new(routes);
        let log = Arc::new(Mutex::new(Vec::new()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let server_log = log.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let routes = routes.clone();
                    let log = server_log.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let routes = routes.clone();
                            let log = log.clone();
                            async move { Ok::<_, Infallible>(handle(&routes, &log, req).await) }
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    let _ = http.serve_connection(TokioIo::new(tls), service).await;
                                }
                            }
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
            });
        });
        Server { addr, log }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/", self.addr)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

fn full(status: u16, headers: &[(&str, String)], data: Vec<u8>) -> Response<Body> {
    let (mut tx, body) = Channel::new(1);
    tx.try_send(Frame::data(Bytes::from(data))).unwrap();
    let mut response = Response::builder().status(status);
    for (k, v) in headers {
        response = response.header(*k, v);
    }
    response.body(body).unwrap()
}

fn streaming(
    status: u16,
    headers: &[(&str, String)],
    task: impl FnOnce(Sender<Bytes, std::io::Error>) -> tokio::task::JoinHandle<()>,
) -> Response<Body> {
    let (tx, body) = Channel::new(1);
    task(tx);
    let mut response = Response::builder().status(status);
    for (k, v) in headers {
        response = response.header(*k, v);
    }
    response.body(body).unwrap()
}

/// Parses `bytes=a-b,c-,...` into inclusive ranges within `len`.
fn parse_range(value: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let spec = value.strip_prefix("bytes=")?;
    spec.split(',')
        .map(|part| {
            let (a, b) = part.trim().split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                len - 1
            } else {
                b.parse().ok()?
            };
            (a <= b && b < len).then_some((a, b))
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn handle(
    routes: &HashMap<String, Route>,
    log: &Mutex<Vec<Logged>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get("range")
        .map(|v| v.to_str().unwrap().to_string());
    log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: range.clone(),
    });
    let Some(route) = routes.get(&path) else {
        return full(404, &[], b"not found".to_vec());
    };
    let hit = route.hits.fetch_add(1, Ordering::SeqCst);
    let content = route.content.clone();
    let len = content.len();
    match &route.knob {
        Knob::Normal | Knob::ShiftSecondPart => {}
        Knob::IgnoreRange => return full(200, &[], content),
        Knob::SingleRangeOnly if range.as_deref().is_some_and(|r| r.contains(',')) => {
            return full(200, &[], content)
        }
        Knob::SingleRangeOnly => {}
        Knob::StreamForever => {
            return streaming(200, &[], |mut tx| {
                tokio::spawn(async move {
                    while tx.send_data(Bytes::from(vec![0u8; 16384])).await.is_ok() {}
                })
            })
        }
        Knob::Trickle(every) => {
            let every = *every;
            return streaming(200, &[("content-length", len.to_string())], |mut tx| {
                tokio::spawn(async move {
                    for byte in content {
                        if tx.send_data(Bytes::from(vec![byte])).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(every).await;
                    }
                })
            });
        }
        Knob::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Knob::FailFirst(n, status) if hit < *n => return full(*status, &[], b"busy".to_vec()),
        Knob::FailFirst(..) => {}
        Knob::Status(status) => return full(*status, &[], b"no".to_vec()),
        Knob::Redirect(location) => {
            return full(302, &[("location", location.clone())], Vec::new())
        }
        Knob::CutFirstAfter(n) if hit == 0 => {
            let n = *n;
            return streaming(200, &[("content-length", len.to_string())], |mut tx| {
                tokio::spawn(async move {
                    let _ = tx.send_data(Bytes::from(content[..n].to_vec())).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    tx.abort(std::io::Error::other("cut"));
                })
            });
        }
        Knob::CutFirstAfter(_) => {}
        Knob::Gzip => {
            return full(
                200,
                &[("content-encoding", "gzip".to_string())],
                gzip(&content),
            )
        }
        Knob::BadGzip => return full(200, &[("content-encoding", "gzip".to_string())], content),
        Knob::WrongRange => {
            let (a, b) = parse_range(range.as_deref().unwrap_or(""), len as u64).unwrap()[0];
            let cr = format!("bytes {}-{}/{len}", a + 1, b + 1);
            return full(
                206,
                &[("content-range", cr)],
                content[a as usize..=b as usize].to_vec(),
            );
        }
    }
    let Some(range) = range else {
        return full(200, &[], content);
    };
    let Some(ranges) = parse_range(&range, len as u64) else {
        return full(
            416,
            &[("content-range", format!("bytes */{len}"))],
            Vec::new(),
        );
    };
    if let [(a, b)] = ranges[..] {
        let cr = format!("bytes {a}-{b}/{len}");
        return full(
            206,
            &[("content-range", cr)],
            content[a as usize..=b as usize].to_vec(),
        );
    }
    let boundary = "SEPARATOR42";
    let mut body = Vec::new();
    let shift = matches!(route.knob, Knob::ShiftSecondPart);
    for (i, (a, b)) in ranges.into_iter().enumerate() {
        let (a, b) = if shift && i == 1 {
            (a + 1, b + 1)
        } else {
            (a, b)
        };
        write!(
            body,
            "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(&content[a as usize..=b as usize]);
    }
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    let ct = format!("multipart/byteranges; boundary={boundary}");
    full(206, &[("content-type", ct)], body)
}

/// A rustls server configuration for `leaf`, requiring client certificates from `client_ca`.
pub fn server_tls(leaf: &(String, String), client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.0.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
