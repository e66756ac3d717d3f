//! [`Fetcher`]: the blocking facade over the HTTP and file backends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use crate::config::FetchConfig;
use crate::error::Error;
use crate::file;
use crate::http::Http;
use crate::stream::require_ordered;

enum Backend {
    File(PathBuf),
    Http {
        runtime: Box<tokio::runtime::Runtime>,
        http: Http,
    },
}

/// Fetches files of one repository with bounded size, time and retries.
///
/// Methods block; the fetcher owns a small tokio runtime, so it must not be called from inside
/// another async runtime.
pub struct Fetcher {
    base: Url,
    cfg: Arc<FetchConfig>,
    backend: Backend,
    /// Calls served by the file backend (HTTP counts its requests itself).
    file_calls: AtomicU64,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// Logs the end of one fetcher call: what was asked, how many bytes came back in how long,
/// or why it failed. Each HTTP request inside it is logged by the HTTP backend.
fn log_call<T>(
    call: &'static str,
    url: &Url,
    ranges: usize,
    started: Instant,
    result: &Result<T, Error>,
    bytes: impl FnOnce(&T) -> u64,
) {
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(value) => {
            tracing::debug!(call, url = %url, ranges, bytes = bytes(value), ms, "fetched")
        }
        Err(error) => tracing::debug!(call, url = %url, ranges, ms, %error, "fetch failed"),
    }
}

/// Accepts only plain relative paths: no empty, `.` or `..` segments, and a conservative
/// character set, so a path can never escape the repository or smuggle a query.
fn check_path(path: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.~+=,@".contains(c);
    let ok = !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s.chars().all(ok_char));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPath {
            path: path.to_string(),
        })
    }
}

impl Fetcher {
    /// Checks the configuration, loads TLS files and starts the runtime.
    pub fn new(cfg: FetchConfig) -> Result<Fetcher, Error> {
        let base_url = cfg.base_url.clone();
        let invalid = |reason| Error::InvalidUrl {
            url: base_url.clone(),
            reason,
        };
        let mut base = Url::parse(&cfg.base_url).map_err(|_| invalid("does not parse"))?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("has a query or fragment"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let cfg = Arc::new(cfg);
        let backend = match base.scheme() {
            "file" => Backend::File(
                base.to_file_path()
                    .map_err(|()| invalid("not a local path"))?,
            ),
            "http" | "https" => {
                if base.host_str().is_none() {
                    return Err(invalid("has no host"));
                }
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("update-fetch")
                    .enable_all()
                    .build()
                    .map_err(Error::Runtime)?;
                let http = {
                    let _guard = runtime.enter();
                    Http::new(cfg.clone())?
                };
                Backend::Http {
                    runtime: Box::new(runtime),
                    http,
                }
            }
            _ => return Err(invalid("scheme must be http, https or file")),
        };
        Ok(Fetcher {
            base,
            cfg,
            backend,
            file_calls: AtomicU64::new(0),
        })
    }

    /// The repository's base URL (ends with `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// How many requests this fetcher has sent: HTTP requests (redirects and retries
    /// included), or calls for a `file://` repository.
    pub fn requests(&self) -> u64 {
        match &self.backend {
            Backend::File(_) => self.file_calls.load(Ordering::Relaxed),
            Backend::Http { http, .. } => http.requests(),
        }
    }

    fn count_file_call(&self) {
        self.file_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The full URL of a repository-relative `path`.
    pub fn url(&self, path: &str) -> Result<Url, Error> {
        check_path(path)?;
        self.base.join(path).map_err(|_| Error::InvalidPath {
            path: path.to_string(),
        })
    }

    /// Runs `op` on the runtime under the deadline `limit`.
    fn run<T>(
        runtime: &tokio::runtime::Runtime,
        limit: Duration,
        url: &Url,
        op: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        runtime.block_on(async {
            tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
                Err(Error::TimedOut {
                    url: url.to_string(),
                    after: limit,
                })
            })
        })
    }

    /// The file `path` of a `file://` repository.
    fn file(&self, root: &Path, path: &str, url: &Url) -> file::Source {
        self.count_file_call();
        file::Source {
            path: root.join(path),
            root: root.to_path_buf(),
            rel: path.to_string(),
            url: url.to_string(),
        }
    }

    /// The whole file at `path`, refused if longer than `max_bytes` (checked against
    /// `Content-Length` and while streaming, after gzip decoding), within the deadline
    /// [`FetchConfig::whole_file_deadline`] gives for `max_bytes`.
    pub fn get(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let url = self.url(path)?;
        let limit = self.cfg.whole_file_deadline(max_bytes);
        let started = Instant::now();
        let result = match &self.backend {
            Backend::File(root) => file::get(&self.file(root, path, &url), max_bytes, limit),
            Backend::Http { runtime, http } => {
                Self::run(runtime, limit, &url, http.get(&url, max_bytes))
            }
        };
        log_call("get", &url, 0, started, &result, |b| b.len() as u64);
        result
    }

    /// The byte ranges `(offset, len)` of `path`, in the order asked, together at most
    /// `max_total` bytes. Near ranges are coalesced into few requests sent in parallel; every
    /// partial response is checked against what was asked. A server that ignores `Range` is
    /// accepted only if its whole body fits in `max_total`.
    pub fn get_ranges(
        &self,
        path: &str,
        ranges: &[(u64, u64)],
        max_total: u64,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let url = self.url(path)?;
        let started = Instant::now();
        let result = match &self.backend {
            Backend::File(root) => file::get_ranges(
                &self.file(root, path, &url),
                ranges,
                max_total,
                self.cfg.overall_timeout,
            ),
            Backend::Http { runtime, http } => Self::run(
                runtime,
                self.cfg.overall_timeout,
                &url,
                http.get_ranges(&url, ranges, max_total),
            ),
        };
        log_call("get_ranges", &url, ranges.len(), started, &result, |r| {
            r.iter().map(|b| b.len() as u64).sum()
        });
        result
    }

    /// Streams the byte ranges `(offset, len)` of `path`, sorted by offset and disjoint,
    /// together at most `max_total` bytes, to `sink` in order: `sink(i, bytes)` as soon as
    /// range `i` is whole, so memory does not grow with the total. Near ranges share a
    /// request; requests go one at a time. A transfer cut off resumes from the first byte
    /// still missing. An error from `sink` stops the transfer and is returned.
    pub fn stream_ranges(
        &self,
        path: &str,
        ranges: &[(u64, u64)],
        max_total: u64,
        sink: &mut (dyn FnMut(usize, Vec<u8>) -> Result<(), Error> + Send),
    ) -> Result<(), Error> {
        let url = self.url(path)?;
        require_ordered(ranges)?;
        let started = Instant::now();
        let mut received = 0u64;
        let mut counted = |i: usize, bytes: Vec<u8>| {
            received += bytes.len() as u64;
            sink(i, bytes)
        };
        let result = match &self.backend {
            Backend::File(root) => file::stream_ranges(
                &self.file(root, path, &url),
                ranges,
                max_total,
                self.cfg.overall_timeout,
                &mut counted,
            ),
            Backend::Http { runtime, http } => Self::run(
                runtime,
                self.cfg.overall_timeout,
                &url,
                http.stream_ranges(&url, ranges, max_total, &mut counted),
            ),
        };
        log_call(
            "stream_ranges",
            &url,
            ranges.len(),
            started,
            &result,
            |()| received,
        );
        result
    }

    /// Downloads `path` into `dest` (a `.part` file), resuming after the bytes it already
    /// holds. Fails unless the result is exactly `expected_len` bytes; `expected_len` above
    /// `max_bytes` is refused before any request. On failure the partial file is kept for the
    /// next call. Returns the number of bytes received by this call.
    pub fn download_to(
        &self,
        path: &str,
        dest: &Path,
        expected_len: u64,
        max_bytes: u64,
    ) -> Result<u64, Error> {
        let url = self.url(path)?;
        if expected_len > max_bytes {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit: max_bytes,
            });
        }
        let started = Instant::now();
        let result = match &self.backend {
            Backend::File(root) => file::download_to(
                &self.file(root, path, &url),
                dest,
                expected_len,
                self.cfg.overall_timeout,
            ),
            Backend::Http { runtime, http } => Self::run(
                runtime,
                self.cfg.overall_timeout,
                &url,
                http.download_to(&url, dest, expected_len),
            ),
        };
        log_call("download_to", &url, 0, started, &result, |n| *n);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_cannot_escape_the_repository() {
        assert!(check_path("objects/ab/cd.pack").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "./a",
            "a//b",
            "a?x=1",
            "a#f",
            "a b",
            "a%2e",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
