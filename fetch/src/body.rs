//! Reading a response body: size caps, the low-speed rule, gzip decoding.

use std::io::Write;
use std::time::Duration;

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::Error;
use crate::tls;

/// How a body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

/// The body's `Content-Encoding`; anything but identity and gzip is refused.
pub(crate) fn encoding(url: &str, headers: &HeaderMap) -> Result<Encoding, Error> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        _ => Err(Error::UnsupportedEncoding {
            url: url.to_string(),
            encoding: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        }),
    }
}

/// The declared `Content-Length`, if any and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The low-speed rule (curl's `--speed-limit`/`--speed-time`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Speed {
    pub(crate) limit: u64,
    pub(crate) time: Duration,
}

impl Speed {
    fn enabled(&self) -> bool {
        self.limit > 0 && !self.time.is_zero()
    }

    pub(crate) fn too_slow(&self, url: &str) -> Error {
        Error::TooSlow {
            url: url.to_string(),
            limit: self.limit,
            period: self.time,
        }
    }
}

/// Maps a hyper error to a typed error, recognising TLS failures wherever they surface.
pub(crate) fn transport_error(url: &str, err: Box<dyn std::error::Error + Send + Sync>) -> Error {
    match tls::classify(&*err) {
        Some(kind) => Error::Tls {
            url: url.to_string(),
            kind,
            source: err,
        },
        None => Error::Transport {
            url: url.to_string(),
            source: err,
        },
    }
}

/// A writer that refuses to go past `limit` bytes and keeps the typed reason for a failure.
struct Capped<'a> {
    url: &'a str,
    dest: &'a std::path::Path,
    inner: &'a mut (dyn Write + Send),
    written: u64,
    limit: u64,
    failure: Option<Error>,
}

impl Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            self.failure = Some(Error::TooLarge {
                url: self.url.to_string(),
                limit: self.limit,
            });
            return Err(std::io::Error::other("size cap reached"));
        }
        match self.inner.write_all(buf) {
            Ok(()) => {
                self.written += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => {
                let kind = e.kind();
                self.failure = Some(Error::File {
                    path: self.dest.to_path_buf(),
                    source: e,
                });
                Err(std::io::Error::from(kind))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams `body` into `out`, decoding it, never writing more than `limit` decoded bytes nor
/// accepting a transfer slower than `speed`. Returns the decoded length.
pub(crate) async fn read_body(
    url: &str,
    body: Incoming,
    encoding: Encoding,
    out: &mut (dyn Write + Send),
    dest: &std::path::Path,
    limit: u64,
    speed: Speed,
) -> Result<u64, Error> {
    let mut capped = Capped {
        url,
        dest,
        inner: out,
        written: 0,
        limit,
        failure: None,
    };
    match encoding {
        Encoding::Identity => {
            let result = pump(url, body, speed, |data| capped.write_all(data)).await;
            if let Some(failure) = capped.failure.take() {
                return Err(failure);
            }
            result?;
        }
        Encoding::Gzip => {
            // Compressed input is not buffered, but bound it too so that a stream of empty
            // deflate blocks cannot run forever.
            let raw_limit = limit.saturating_add(limit / 8).saturating_add(64 * 1024);
            let mut raw = 0u64;
            let mut decoder = flate2::write::GzDecoder::new(&mut capped);
            let result = pump(url, body, speed, |data| {
                raw += data.len() as u64;
                if raw > raw_limit {
                    return Err(std::io::Error::other("compressed size cap reached"));
                }
                decoder.write_all(data)
            })
            .await;
            let finished = match result {
                Ok(()) => decoder.try_finish().map_err(Some),
                Err(PumpError::Write(e)) => Err(Some(e)),
                Err(other) => {
                    drop(decoder);
                    capped.failure.take();
                    return Err(other.into_error(url, limit));
                }
            };
            drop(decoder);
            if let Some(failure) = capped.failure.take() {
                return Err(failure);
            }
            if raw > raw_limit {
                return Err(Error::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            if let Err(Some(source)) = finished {
                return Err(Error::Decode {
                    url: url.to_string(),
                    source,
                });
            }
        }
    }
    Ok(capped.written)
}

/// Why [`pump`] stopped early.
pub(crate) enum PumpError {
    /// The consumer refused the data.
    Write(std::io::Error),
    /// The transfer failed.
    Fetch(Error),
}

impl PumpError {
    fn into_error(self, url: &str, limit: u64) -> Error {
        match self {
            PumpError::Fetch(e) => e,
            PumpError::Write(_) => Error::TooLarge {
                url: url.to_string(),
                limit,
            },
        }
    }
}

impl From<PumpError> for Error {
    fn from(e: PumpError) -> Error {
        match e {
            PumpError::Fetch(e) => e,
            PumpError::Write(source) => Error::File {
                path: "<download destination>".into(),
                source,
            },
        }
    }
}

/// Feeds body frames to `write`, enforcing the low-speed rule over consecutive windows of
/// `speed.time`: a window that ends with fewer than `limit × time` bytes aborts.
async fn pump(
    url: &str,
    mut body: Incoming,
    speed: Speed,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), PumpError> {
    let needed = (speed.limit as f64 * speed.time.as_secs_f64()) as u64;
    let far = Duration::from_secs(86400 * 365);
    let window = if speed.enabled() { speed.time } else { far };
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        let window_end = window_start + window;
        let frame = match tokio::time::timeout_at(window_end, body.frame()).await {
            Err(_elapsed) => None,
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(PumpError::Fetch(transport_error(url, e.into()))),
            Ok(Some(Ok(frame))) => Some(frame),
        };
        if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
            window_bytes += data.len() as u64;
            let writing = Instant::now();
            write(&data).map_err(PumpError::Write)?;
            // A consumer that makes the stream wait (a pull writing files) does not count
            // against the server: the window pauses meanwhile.
            window_start += writing.elapsed();
        }
        let now = Instant::now();
        if now >= window_start + window {
            if window_bytes < needed {
                return Err(PumpError::Fetch(speed.too_slow(url)));
            }
            window_start = now;
            window_bytes = 0;
        }
    }
}
