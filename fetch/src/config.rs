//! Plain option structs for a [`Fetcher`](crate::Fetcher).

use std::path::PathBuf;
use std::time::Duration;

/// TLS settings for an `https://` remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of CA certificates. When set, these are the *only* trusted roots (a private
    /// repository's CA); when unset, the Mozilla roots from `webpki-roots` are trusted.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to servers that ask for one (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key matching `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// How to reach a repository and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// `http://`, `https://` or `file://` URL of the repository root.
    pub base_url: String,
    /// TLS settings; `None` means default roots and no client certificate.
    pub tls: Option<TlsConfig>,
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Minimum speed in bytes per second (like curl's `--speed-limit`, ostree's
    /// `low-speed-limit-bytes`); waiting for response headers counts as zero bytes.
    pub low_speed_limit: u64,
    /// How long the speed may stay below `low_speed_limit` before the transfer is aborted.
    pub low_speed_time: Duration,
    /// Deadline for one call, all retries and redirects included.
    pub overall_timeout: Duration,
    /// Slowest average speed, in bytes per second, at which a whole file fetched with
    /// [`Fetcher::get`](crate::Fetcher::get) (the summary, an index) may arrive: such a
    /// call ends within `connect_timeout + low_speed_time + max_bytes / whole_file_speed`
    /// (and `overall_timeout`). The low-speed rule alone lets a server that trickles just
    /// above `low_speed_limit` hold a call until `overall_timeout`. 0 turns it off.
    pub whole_file_speed: u64,
    /// Extra attempts after a transient failure (5xx, 408, 429, connect errors, resets).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one, with random jitter.
    pub retry_backoff: Duration,
    /// Most requests in flight at once in [`Fetcher::get_ranges`](crate::Fetcher::get_ranges).
    pub max_parallel: usize,
    /// Ranges are spread over parallel requests only with at least this many bytes for
    /// each: below it, more requests cost more round trips than they save.
    pub min_parallel_bytes: u64,
    /// Two wanted ranges separated by at most this many bytes are fetched as one.
    pub range_gap: u64,
    /// Most byte ranges asked for in one request (a `multipart/byteranges` response).
    pub max_ranges_per_request: usize,
    /// Most redirects followed; only within the same scheme, host and port.
    pub max_redirects: u32,
    /// Follow redirects from https to http. Off by default: that would be a downgrade.
    pub allow_insecure_redirects: bool,
}

impl FetchConfig {
    /// The deadline of a [`Fetcher::get`](crate::Fetcher::get) of at most `max_bytes`.
    pub fn whole_file_deadline(&self, max_bytes: u64) -> Duration {
        if self.whole_file_speed == 0 {
            return self.overall_timeout;
        }
        let transfer = Duration::from_secs_f64(max_bytes as f64 / self.whole_file_speed as f64);
        (self.connect_timeout + self.low_speed_time + transfer).min(self.overall_timeout)
    }

    /// Defaults for `base_url`.
    pub fn new(base_url: impl Into<String>) -> FetchConfig {
        FetchConfig {
            base_url: base_url.into(),
            ..FetchConfig::default()
        }
    }
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            base_url: String::new(),
            tls: None,
            connect_timeout: Duration::from_secs(30),
            low_speed_limit: 1000,
            low_speed_time: Duration::from_secs(30),
            overall_timeout: Duration::from_secs(3600),
            // A summary at its 16 MiB cap within about 18 minutes.
            whole_file_speed: 16 * 1024,
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            max_parallel: 4,
            min_parallel_bytes: crate::ranges::MIN_PARALLEL_BYTES,
            range_gap: 64 * 1024,
            max_ranges_per_request: 32,
            max_redirects: 5,
            allow_insecure_redirects: false,
        }
    }
}
