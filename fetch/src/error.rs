//! The one error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed error from a lower layer (hyper, rustls, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a TLS handshake failed, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate chain does not lead to a trusted root.
    UnknownIssuer,
    /// The server's certificate has expired (or is not yet valid).
    Expired,
    /// The server's certificate is not valid for the host name that was asked for.
    WrongHostname,
    /// The server refused our client certificate, or wanted one and got none.
    ClientAuthRejected,
    /// Any other handshake failure.
    Other,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFailure::UnknownIssuer => "certificate signed by an unknown authority",
            TlsFailure::Expired => "certificate expired or not yet valid",
            TlsFailure::WrongHostname => "certificate not valid for this host name",
            TlsFailure::ClientAuthRejected => "server rejected the client certificate",
            TlsFailure::Other => "handshake failed",
        })
    }
}

/// Everything that can go wrong while fetching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL or a redirect target is not a usable URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL text.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A repository-relative path that is empty, absolute, or has `.`/`..` or odd characters.
    #[error("invalid repository path {path:?}")]
    InvalidPath {
        /// The offending path.
        path: String,
    },
    /// A TLS certificate, key or CA file could not be loaded.
    #[error("cannot load TLS {what} from {}: {reason}", path.display())]
    TlsFile {
        /// Which file: "CA", "client certificate", "client key".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS client configuration was rejected by rustls.
    #[error("invalid TLS configuration")]
    TlsConfig(#[source] rustls::Error),
    /// The async runtime could not be started.
    #[error("cannot start the I/O runtime")]
    Runtime(#[source] std::io::Error),
    /// 404: the file is not on the server.
    #[error("{url}: not found (HTTP 404)")]
    NotFound {
        /// The URL asked for.
        url: String,
    },
    /// 401/403: the server refuses access (S3 also answers 403 for missing files).
    #[error("{url}: access denied (HTTP {status})")]
    Forbidden {
        /// The URL asked for.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// 410: the file was removed for good.
    #[error("{url}: gone (HTTP 410)")]
    Gone {
        /// The URL asked for.
        url: String,
    },
    /// Any other unexpected HTTP status.
    #[error("{url}: unexpected HTTP status {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code received.
        status: u16,
    },
    /// The response is (or would be) larger than the caller's cap.
    #[error("{url}: response exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The transfer was slower than the configured low-speed limit for the configured time.
    #[error("{url}: slow retrieval: below {limit} bytes/s for {period:?}")]
    TooSlow {
        /// The URL asked for.
        url: String,
        /// Minimum acceptable speed in bytes per second.
        limit: u64,
        /// How long the speed may stay below the limit.
        period: Duration,
    },
    /// No response headers came within the connect timeout plus the low-speed time.
    #[error("{url}: no response within {after:?} (connect timeout + low-speed time)")]
    NoResponse {
        /// The URL asked for.
        url: String,
        /// The limit that fired.
        after: Duration,
    },
    /// The call's deadline passed: the overall timeout, or the shorter deadline of a whole
    /// small file ([`FetchConfig::whole_file_speed`](crate::FetchConfig::whole_file_speed)).
    #[error("{url}: gave up after the deadline of {after:?}")]
    TimedOut {
        /// The URL asked for.
        url: String,
        /// The overall timeout.
        after: Duration,
    },
    /// Could not connect (refused, unreachable, DNS, connect timeout).
    #[error("{url}: cannot connect")]
    Connect {
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The connection broke while sending the request or receiving the response.
    #[error("{url}: connection failed during transfer")]
    Transport {
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The TLS handshake failed; never bypassed.
    #[error("{url}: TLS: {kind}")]
    Tls {
        /// The URL asked for.
        url: String,
        /// The classified cause.
        kind: TlsFailure,
        /// The rustls error.
        #[source]
        source: BoxError,
    },
    /// A redirect from https to http was refused.
    #[error("refusing redirect from {from} to insecure {to}")]
    InsecureRedirect {
        /// The URL that redirected.
        from: String,
        /// Where it pointed.
        to: String,
    },
    /// A redirect to another scheme, host or port was refused.
    #[error("refusing redirect from {from} to another origin {to}")]
    RedirectOffOrigin {
        /// The URL that redirected.
        from: String,
        /// Where it pointed.
        to: String,
    },
    /// A redirect without a usable `Location`.
    #[error("{url}: redirect without a valid Location header")]
    BadRedirect {
        /// The URL that redirected.
        url: String,
    },
    /// More redirects than allowed.
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The URL first asked for.
        url: String,
        /// The redirect limit.
        limit: u32,
    },
    /// The server ignored `Range` and its full body is larger than allowed.
    #[error("{url}: server ignored the Range request and the full body exceeds {limit} bytes")]
    RangeIgnored {
        /// The URL asked for.
        url: String,
        /// The cap the full body would have had to fit in.
        limit: u64,
    },
    /// A 206 response whose ranges are not the ones asked for.
    #[error("{url}: partial response does not match the request: asked {expected}, got {got}")]
    BadContentRange {
        /// The URL asked for.
        url: String,
        /// The ranges asked for, as in the `Range` header.
        expected: String,
        /// What the server sent.
        got: String,
    },
    /// A `multipart/byteranges` body that does not parse.
    #[error("{url}: malformed multipart/byteranges body: {reason}")]
    BadMultipart {
        /// The URL asked for.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `Content-Encoding` this client cannot or will not decode here.
    #[error("{url}: unsupported Content-Encoding {encoding:?}")]
    UnsupportedEncoding {
        /// The URL asked for.
        url: String,
        /// The encoding received.
        encoding: String,
    },
    /// A gzip-encoded body that does not decode.
    #[error("{url}: corrupt gzip Content-Encoding")]
    Decode {
        /// The URL asked for.
        url: String,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A requested byte range whose end overflows.
    #[error("invalid byte range: offset {offset}, length {len}")]
    InvalidRange {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A body shorter or longer than expected.
    #[error("{url}: expected {expected} bytes, got {actual}")]
    LengthMismatch {
        /// The URL asked for.
        url: String,
        /// Expected length.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// A local file (file:// source or download destination) could not be used.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `file://` repository path that is not a regular file (or a directory on the way):
    /// a symbolic link, a FIFO, a device. Refused, never read or followed.
    #[error(
        "{url}: refused: {} is a {kind}; a file:// repository may hold only regular files \
         and directories",
        path.display()
    )]
    NotAFile {
        /// The URL asked for.
        url: String,
        /// The local path that was refused.
        path: PathBuf,
        /// What it is ("symbolic link", "FIFO", ...).
        kind: &'static str,
    },
    /// The reader of a streamed download stopped taking data (it failed or was done).
    #[error("the download was stopped by its reader")]
    Stopped,
    /// Transient failures persisted through every retry.
    #[error("{url}: giving up after {attempts} attempts")]
    RetriesExhausted {
        /// The URL asked for.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Whether another attempt might succeed (5xx, 408, 429, connection failures).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Error::Connect { .. } | Error::Transport { .. } => true,
            _ => false,
        }
    }
}

impl error_ext::FromIoError for Error {
    fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        Error::File { path, source }
    }
}

error_ext::io_result_ext!(pub(crate) Error);

#[cfg(test)]
mod tests {
    use super::IoResultExt;

    #[test]
    fn file_error_text_is_the_path_and_the_cause_only_its_source() {
        let path = std::path::Path::new("/nonexistent/update-test");
        let e = std::fs::read(path).at_path(path).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/update-test");
        assert_eq!(
            error_ext::Chain(&e).to_string(),
            "/nonexistent/update-test: No such file or directory (os error 2)"
        );
    }
}
