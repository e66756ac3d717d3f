//! The HTTP(S) backend: a pooled hyper client, redirects, retries, ranges, resumable downloads.

use std::collections::hash_map::RandomState;
use std::fs::OpenOptions;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, USER_AGENT};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use url::Url;

use crate::body::{content_length, encoding, read_body, transport_error, Encoding, Speed};
use crate::config::FetchConfig;
use crate::connect::{TlsSlot, WatchingConnector};
use crate::error::{Error, IoResultExt};
use crate::ranges::{
    coalesce, describe, extract, group, multipart_boundary, parse_content_range, range_header,
    total_len, Span,
};
use crate::stream::{Assembler, Gap, Item, Multipart, Sink, Stop};
use crate::tls;

/// Where bodies read into memory are said to go, in error messages.
const MEMORY: &str = "<memory>";

/// The HTTP client; cheap to clone (the pool is shared).
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<WatchingConnector, Empty<Bytes>>,
    cfg: Arc<FetchConfig>,
    tls_seen: TlsSlot,
    /// Requests sent, redirects and retries included.
    requests: Arc<AtomicU64>,
    /// Set once the server answered a multi-range request with the whole file: ranges
    /// are then asked for one per request.
    single_ranges: Arc<AtomicBool>,
}

/// Maps an error status to its typed error.
fn status_error(url: &str, status: u16) -> Error {
    let url = url.to_string();
    match status {
        404 => Error::NotFound { url },
        401 | 403 => Error::Forbidden { url, status },
        410 => Error::Gone { url },
        _ => Error::Status { url, status },
    }
}

/// Most bytes of a `multipart/byteranges` body carrying `wanted` bytes in `parts` parts:
/// the data plus generous room for each part's delimiter and headers.
fn multipart_cap(wanted: u64, parts: usize) -> u64 {
    wanted + 512 * parts as u64 + 1024
}

/// The error for bytes the assembler refused.
fn gap_error(url: &str, asked: &[Span], gap: Gap<Error>) -> Error {
    match gap {
        Gap::Sink(e) => e,
        Gap::Hole { wanted, offset } => Error::BadContentRange {
            url: url.to_string(),
            expected: describe(asked),
            got: format!("bytes from {offset} on while byte {wanted} was still missing"),
        },
    }
}

/// A writer handing every buffer to a closure, keeping the typed error the closure
/// returned (the writer itself can only return an `io::Error`).
struct FnWriter<F> {
    write: F,
    failure: Option<Error>,
}

impl<F: FnMut(&[u8]) -> Result<(), Error>> FnWriter<F> {
    fn new(write: F) -> Self {
        FnWriter {
            write,
            failure: None,
        }
    }
}

impl<F: FnMut(&[u8]) -> Result<(), Error>> std::io::Write for FnWriter<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match (self.write)(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let message = e.to_string();
                self.failure = Some(e);
                Err(std::io::Error::other(message))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exponential backoff with ±50 % jitter, capped at 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(30));
    let random = RandomState::new().build_hasher().finish();
    exp.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
}

impl Http {
    /// Builds the client; call inside the runtime.
    pub(crate) fn new(cfg: Arc<FetchConfig>) -> Result<Http, Error> {
        let tls = tls::client_config(cfg.tls.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let tls_seen = TlsSlot::default();
        let connector = WatchingConnector {
            inner: connector,
            slot: tls_seen.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_parallel.max(1))
            .build(connector);
        Ok(Http {
            client,
            cfg,
            tls_seen,
            requests: Arc::new(AtomicU64::new(0)),
            single_ranges: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Requests sent so far, redirects and retries included.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn speed(&self) -> Speed {
        Speed {
            limit: self.cfg.low_speed_limit,
            time: self.cfg.low_speed_time,
        }
    }

    /// Sends one GET, following redirects within the same origin; returns the final URL and
    /// the response (any status but a redirect).
    async fn send(
        &self,
        url: &Url,
        range: Option<&str>,
    ) -> Result<(Url, Response<Incoming>), Error> {
        let speed = self.speed();
        let head_timeout = self.cfg.connect_timeout + self.cfg.low_speed_time;
        let mut current = url.clone();
        for _ in 0..=self.cfg.max_redirects {
            let mut request = Request::get(current.as_str())
                .header(
                    USER_AGENT,
                    concat!("update-fetch/", env!("CARGO_PKG_VERSION")),
                )
                .header(ACCEPT_ENCODING, "identity");
            if let Some(range) = range {
                request = request.header(RANGE, range);
            }
            let request = request.body(Empty::new()).map_err(|_| Error::InvalidUrl {
                url: current.to_string(),
                reason: "not a valid request URI",
            })?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let sent = self.client.request(request);
            let response = if speed.limit > 0 && !speed.time.is_zero() {
                tokio::time::timeout(head_timeout, sent)
                    .await
                    .map_err(|_| Error::NoResponse {
                        url: current.to_string(),
                        after: head_timeout,
                    })?
            } else {
                sent.await
            };
            let response = response.map_err(|e| {
                let connect = e.is_connect();
                let error = transport_error(current.as_str(), e.into());
                if matches!(error, Error::Tls { .. }) {
                    self.tls_seen.take();
                }
                match error {
                    Error::Transport { url, source } => match self.tls_seen.take() {
                        // The connection died of a TLS alert hyper did not pass on.
                        Some((kind, _)) => Error::Tls { url, kind, source },
                        None if connect => Error::Connect { url, source },
                        None => Error::Transport { url, source },
                    },
                    other => other,
                }
            })?;
            tracing::debug!(
                url = %current,
                range,
                status = response.status().as_u16(),
                bytes = content_length(response.headers()),
                ms = started.elapsed().as_millis() as u64,
                "GET"
            );
            if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok((current, response));
            }
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| current.join(l).ok())
                .ok_or_else(|| Error::BadRedirect {
                    url: current.to_string(),
                })?;
            let downgrade = current.scheme() == "https" && next.scheme() == "http";
            if downgrade && !self.cfg.allow_insecure_redirects {
                return Err(Error::InsecureRedirect {
                    from: current.to_string(),
                    to: next.to_string(),
                });
            }
            let same_origin = (next.scheme() == current.scheme() || downgrade)
                && next.host_str() == current.host_str()
                && (next.port_or_known_default() == current.port_or_known_default() || downgrade);
            if !same_origin {
                return Err(Error::RedirectOffOrigin {
                    from: current.to_string(),
                    to: next.to_string(),
                });
            }
            current = next;
        }
        Err(Error::TooManyRedirects {
            url: url.to_string(),
            limit: self.cfg.max_redirects,
        })
    }

    /// Runs `op` until it succeeds, fails permanently, or the retries are spent.
    async fn retrying<T, F, Fut>(&self, url: &Url, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < self.cfg.retries => {
                    tracing::info!(url = %url, attempt = attempt + 1, error = %e, "retrying");
                    tokio::time::sleep(backoff(self.cfg.retry_backoff, attempt)).await;
                    attempt += 1;
                }
                Err(e) if e.is_transient() && attempt > 0 => {
                    return Err(Error::RetriesExhausted {
                        url: url.to_string(),
                        attempts: attempt + 1,
                        last: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn get(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, Error> {
        self.retrying(url, || self.get_once(url, max_bytes)).await
    }

    async fn get_once(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let (url, response) = self.send(url, None).await?;
        let url = url.as_str();
        let status = response.status().as_u16();
        if status != 200 {
            return Err(status_error(url, status));
        }
        let encoding = encoding(url, response.headers())?;
        if encoding == Encoding::Identity
            && content_length(response.headers()).is_some_and(|len| len > max_bytes)
        {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit: max_bytes,
            });
        }
        let mut out = Vec::new();
        read_body(
            url,
            response.into_body(),
            encoding,
            &mut out,
            Path::new(MEMORY),
            max_bytes,
            self.speed(),
        )
        .await?;
        Ok(out)
    }

    /// The ranges (any order, overlapping or repeated) of `url`: coalesced into spans
    /// streamed by up to `max_parallel` requests at once, then cut back out.
    pub(crate) async fn get_ranges(
        &self,
        url: &Url,
        ranges: &[(u64, u64)],
        max_total: u64,
    ) -> Result<Vec<Vec<u8>>, Error> {
        if total_len(ranges)? > max_total {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit: max_total,
            });
        }
        let spans = coalesce(ranges, self.cfg.range_gap);
        // The gaps that coalescing fills come on top of the caller's budget.
        let budget = max_total.max(spans.iter().map(Span::len).sum());
        let parallel = self.cfg.max_parallel.max(1);
        let mut groups = group(
            &spans,
            parallel,
            self.cfg.max_ranges_per_request,
            self.cfg.min_parallel_bytes,
        )
        .into_iter();
        let mut tasks = JoinSet::new();
        let spawn = |tasks: &mut JoinSet<_>, spans: Vec<Span>| {
            let http = self.clone();
            let url = url.clone();
            tasks.spawn(async move {
                let wanted: Vec<(u64, u64)> = spans.iter().map(|s| (s.start, s.len())).collect();
                let mut pieces = Vec::with_capacity(spans.len());
                http.stream_ranges(&url, &wanted, budget, &mut |i, bytes| {
                    pieces.push((spans[i], bytes));
                    Ok(())
                })
                .await?;
                Ok::<_, Error>(pieces)
            });
        };
        for spans in groups.by_ref().take(parallel) {
            spawn(&mut tasks, spans);
        }
        let mut pieces = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(|e| Error::Transport {
                url: url.to_string(),
                source: Box::new(e),
            })?;
            pieces.extend(result?);
            if let Some(spans) = groups.next() {
                spawn(&mut tasks, spans);
            }
        }
        extract(ranges, pieces).map_err(|got| Error::BadContentRange {
            url: url.to_string(),
            expected: describe(&spans),
            got: describe(&got),
        })
    }

    /// Reads a `multipart/byteranges` body of at most `cap` bytes, handing each part and
    /// its data to `on_item` as they arrive.
    async fn read_multipart(
        &self,
        url: &str,
        body: Incoming,
        boundary: &str,
        cap: u64,
        mut on_item: impl FnMut(Item<'_>) -> Result<(), Error> + Send,
    ) -> Result<(), Error> {
        let bad = |reason| Error::BadMultipart {
            url: url.to_string(),
            reason,
        };
        let mut parser = Multipart::new(boundary).map_err(bad)?;
        let mut writer = FnWriter::new(|data: &[u8]| match parser.feed(data, &mut on_item) {
            Ok(()) => Ok(()),
            Err(Stop::Bad(reason)) => Err(bad(reason)),
            Err(Stop::Sink(e)) => Err(e),
        });
        let read = read_body(
            url,
            body,
            Encoding::Identity,
            &mut writer,
            Path::new(MEMORY),
            cap,
            self.speed(),
        )
        .await;
        if let Some(failure) = writer.failure.take() {
            return Err(failure);
        }
        read?;
        drop(writer);
        parser.finish().map_err(bad)
    }

    /// Streams `ranges` (sorted by offset and disjoint: `Fetcher::stream_ranges` checks,
    /// `get_ranges` passes coalesced spans) of `url` to `sink` in order, each as
    /// soon as its last byte arrived, so memory stays small whatever the total. Near
    /// ranges are coalesced and up to `max_ranges_per_request` spans asked per request,
    /// one request at a time. A transfer cut off is resumed from the first byte still
    /// missing; ranges already handed over are never fetched again.
    pub(crate) async fn stream_ranges(
        &self,
        url: &Url,
        ranges: &[(u64, u64)],
        max_total: u64,
        sink: Sink<'_>,
    ) -> Result<(), Error> {
        if total_len(ranges)? > max_total {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit: max_total,
            });
        }
        let spans = coalesce(ranges, self.cfg.range_gap);
        let mut asm = Assembler::new(ranges);
        asm.flush_empty(sink)
            .map_err(|g| gap_error(url.as_str(), &spans, g))?;
        let mut attempt = 0;
        while let Some(pos) = asm.pos() {
            let per_request = if self.single_ranges.load(Ordering::Relaxed) {
                1
            } else {
                self.cfg.max_ranges_per_request.max(1)
            };
            let group: Vec<Span> = spans
                .iter()
                .filter(|s| s.end > pos)
                .take(per_request)
                .map(|s| Span {
                    start: s.start.max(pos),
                    end: s.end,
                })
                .collect();
            match self
                .stream_once(url, &group, max_total, &mut asm, sink)
                .await
            {
                Ok(()) => attempt = 0,
                // Some servers and CDNs answer a multi-range request with the whole file
                // but honour single ranges: ask for one range at a time from now on.
                Err(Error::RangeIgnored { .. }) if group.len() > 1 => {
                    tracing::debug!(url = %url, "server ignores multi-range requests; one range per request from now on");
                    self.single_ranges.store(true, Ordering::Relaxed);
                }
                Err(e) if e.is_transient() => {
                    if asm.pos() != Some(pos) {
                        // Progress: the retries count again from here.
                        attempt = 0;
                    }
                    if attempt >= self.cfg.retries {
                        if attempt == 0 {
                            return Err(e);
                        }
                        return Err(Error::RetriesExhausted {
                            url: url.to_string(),
                            attempts: attempt + 1,
                            last: Box::new(e),
                        });
                    }
                    tracing::info!(url = %url, attempt = attempt + 1, error = %e, "retrying");
                    tokio::time::sleep(backoff(self.cfg.retry_backoff, attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One request for `group`, its bytes fed to `asm` as they arrive.
    async fn stream_once(
        &self,
        url: &Url,
        group: &[Span],
        max_total: u64,
        asm: &mut Assembler<'_>,
        sink: Sink<'_>,
    ) -> Result<(), Error> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(());
        };
        let (url, response) = self.send(url, Some(&range_header(group))).await?;
        let url = url.as_str();
        let status = response.status().as_u16();
        let encoding = encoding(url, response.headers())?;
        let bad_range = |got: String| Error::BadContentRange {
            url: url.to_string(),
            expected: describe(group),
            got,
        };
        match status {
            206 => {
                if encoding != Encoding::Identity {
                    return Err(Error::UnsupportedEncoding {
                        url: url.to_string(),
                        encoding: "gzip (on a partial response)".to_string(),
                    });
                }
                let headers = response.headers();
                let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
                if let Some(boundary) = content_type.and_then(multipart_boundary) {
                    let wanted: u64 = group.iter().map(Span::len).sum();
                    let mut next = 0;
                    let mut at = 0u64;
                    let on_item = |item: Item<'_>| match item {
                        // Parts in the order asked, each exactly a span asked.
                        Item::Part(span) if group.get(next) == Some(&span) => {
                            next += 1;
                            at = span.start;
                            Ok(())
                        }
                        Item::Part(span) => Err(bad_range(describe(&[span]))),
                        Item::Data(bytes) => {
                            asm.accept(at, bytes, sink)
                                .map_err(|g| gap_error(url, group, g))?;
                            at += bytes.len() as u64;
                            Ok(())
                        }
                    };
                    let cap = multipart_cap(wanted, group.len());
                    self.read_multipart(url, response.into_body(), &boundary, cap, on_item)
                        .await?;
                    if next != group.len() {
                        return Err(bad_range(describe(&group[..next])));
                    }
                    return Ok(());
                }
                let value = headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| bad_range("no Content-Range".to_string()))?;
                let (span, _) =
                    parse_content_range(value).ok_or_else(|| bad_range(value.to_string()))?;
                if group.len() != 1 || span != *first {
                    return Err(bad_range(value.to_string()));
                }
                let mut at = span.start;
                let mut writer = FnWriter::new(|bytes: &[u8]| {
                    asm.accept(at, bytes, sink)
                        .map_err(|g| gap_error(url, group, g))?;
                    at += bytes.len() as u64;
                    Ok(())
                });
                let read = read_body(
                    url,
                    response.into_body(),
                    encoding,
                    &mut writer,
                    Path::new(MEMORY),
                    span.len(),
                    self.speed(),
                )
                .await;
                if let Some(failure) = writer.failure.take() {
                    return Err(failure);
                }
                let len = read?;
                if len != span.len() {
                    return Err(Error::LengthMismatch {
                        url: url.to_string(),
                        expected: span.len(),
                        actual: len,
                    });
                }
                Ok(())
            }
            200 => {
                // The server ignored Range: read the file from its start up to the last
                // byte wanted, if the caller's budget allows that much.
                let needed = last.end;
                if needed > max_total {
                    return Err(Error::RangeIgnored {
                        url: url.to_string(),
                        limit: max_total,
                    });
                }
                let mut at = 0u64;
                let mut enough = false;
                let mut writer = FnWriter::new(|bytes: &[u8]| {
                    asm.accept(at, bytes, sink)
                        .map_err(|g| gap_error(url, group, g))?;
                    at += bytes.len() as u64;
                    if at >= needed {
                        // Stop reading: the rest is not wanted.
                        enough = true;
                        return Err(Error::Stopped);
                    }
                    Ok(())
                });
                let read = read_body(
                    url,
                    response.into_body(),
                    encoding,
                    &mut writer,
                    Path::new(MEMORY),
                    u64::MAX,
                    self.speed(),
                )
                .await;
                let failure = writer.failure.take();
                drop(writer);
                match failure {
                    Some(Error::Stopped) if enough => return Ok(()),
                    Some(failure) => return Err(failure),
                    None => {}
                }
                read?;
                if at < needed {
                    return Err(Error::LengthMismatch {
                        url: url.to_string(),
                        expected: needed,
                        actual: at,
                    });
                }
                let _ = first;
                Ok(())
            }
            _ => Err(status_error(url, status)),
        }
    }

    pub(crate) async fn download_to(
        &self,
        url: &Url,
        dest: &Path,
        expected: u64,
    ) -> Result<u64, Error> {
        let fetched = AtomicU64::new(0);
        self.retrying(url, || self.download_once(url, dest, expected, &fetched))
            .await?;
        Ok(fetched.into_inner())
    }

    async fn download_once(
        &self,
        url: &Url,
        dest: &Path,
        expected: u64,
        fetched: &AtomicU64,
    ) -> Result<(), Error> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dest)
            .at_path(dest)?;
        let mut have = file.metadata().at_path(dest)?.len();
        if have > expected {
            file.set_len(0).at_path(dest)?;
            have = 0;
        }
        if have < expected {
            let range = format!("bytes={have}-");
            let (url, response) = self.send(url, (have > 0).then_some(range.as_str())).await?;
            let url = url.as_str();
            let status = response.status().as_u16();
            let encoding = encoding(url, response.headers())?;
            let start = match status {
                206 if have > 0 => {
                    let value = response
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let ok = encoding == Encoding::Identity
                        && parse_content_range(value).is_some_and(|(span, total)| {
                            span.start == have
                                && span.end == expected
                                && total.is_none_or(|t| t == expected)
                        });
                    if !ok {
                        return Err(Error::BadContentRange {
                            url: url.to_string(),
                            expected: format!("bytes {have}-{}/{expected}", expected - 1),
                            got: value.to_string(),
                        });
                    }
                    have
                }
                200 => {
                    if encoding == Encoding::Identity
                        && content_length(response.headers()).is_some_and(|len| len != expected)
                    {
                        return Err(Error::LengthMismatch {
                            url: url.to_string(),
                            expected,
                            actual: content_length(response.headers()).unwrap_or(0),
                        });
                    }
                    file.set_len(0).at_path(dest)?;
                    0
                }
                _ => return Err(status_error(url, status)),
            };
            let result = read_body(
                url,
                response.into_body(),
                encoding,
                &mut file,
                dest,
                expected - start,
                self.speed(),
            )
            .await;
            let now = file.metadata().at_path(dest)?.len();
            fetched.fetch_add(now.saturating_sub(start), Ordering::Relaxed);
            result?;
        }
        file.sync_data().at_path(dest)?;
        let actual = file.metadata().at_path(dest)?.len();
        if actual != expected {
            return Err(Error::LengthMismatch {
                url: url.to_string(),
                expected,
                actual,
            });
        }
        Ok(())
    }
}
