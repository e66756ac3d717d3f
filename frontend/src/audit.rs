//! The audit log: one JSON line per update attempt (and per rollback detected at boot),
//! to the configured file, or to syslog (the default).
//!
//! Syslog messages go to the `/dev/log` datagram socket (`$UPDATE_SYSLOG_SOCKET` overrides
//! it, for tests), facility `daemon`, tag `update`, in the format every syslog daemon and
//! journald accept on that socket: `<PRI>update[PID]: MESSAGE`.
//!
//! A run writes through a [`Log`]: a line that cannot be written (no syslog daemon, a full
//! disk) is reported on stderr, once per run, and never changes the run's outcome.

use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::SYSLOG;
use crate::error::{Error, Result};

/// The syslog socket unless `$UPDATE_SYSLOG_SOCKET` names another.
pub const DEV_LOG: &str = "/dev/log";

/// A commit and its version: the backend protocol's `V`, also in audit lines.
pub use backend_protocol::Version;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A new deployment was made (and, unless `--noreboot`, the machine rebooted into it).
    Success,
    /// The source offers what is already deployed.
    NothingToDo,
    /// Something failed; `error` says what.
    Error,
    /// Found at boot: a deployment never came up and the firmware fell back.
    Rollback,
}

/// One line of the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// RFC 3339 time, UTC.
    pub time: String,
    /// The backend that ran.
    pub backend: String,
    /// What ran before.
    pub from: Option<Version>,
    /// What was deployed (or failed to be).
    pub to: Option<Version>,
    /// The trusted key that signed it.
    pub signer: Option<String>,
    /// Bytes downloaded.
    pub bytes_fetched: u64,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// How it ended.
    pub result: Outcome,
    /// What went wrong, or why a rollback happened.
    pub error: Option<String>,
    /// Signature verification was off for this attempt.
    pub verify: bool,
    /// The source used.
    pub source: Option<String>,
    /// Anything else worth knowing (why nothing was done).
    pub note: Option<String>,
}

/// RFC 3339 (seconds, UTC) for a unix time: `2024-05-01T12:00:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let s = secs % 86400;
    let (y, m, d) = crate::schedule::civil_from_days((secs / 86400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Where log lines go.
#[derive(Clone, Debug)]
pub enum Sink {
    /// The syslog socket.
    Syslog(PathBuf),
    /// A file of JSON lines, appended to.
    File(PathBuf),
}

impl Sink {
    /// The sink for a `log` setting.
    pub fn from_setting(log: &str) -> Sink {
        if log == SYSLOG {
            Sink::Syslog(
                std::env::var_os("UPDATE_SYSLOG_SOCKET")
                    .map_or_else(|| PathBuf::from(DEV_LOG), PathBuf::from),
            )
        } else {
            Sink::File(PathBuf::from(log))
        }
    }

    /// Write one line. `error` picks the syslog severity.
    pub fn write_line(&self, line: &str, error: bool) -> Result<()> {
        match self {
            Sink::File(p) => append(p, line),
            Sink::Syslog(sock) => {
                // facility daemon (3); severity err (3) or info (6)
                let pri = 3 * 8 + if error { 3 } else { 6 };
                let msg = format!("<{pri}>update[{}]: {line}", std::process::id());
                let s = UnixDatagram::unbound().map_err(|e| Error::Io {
                    path: sock.clone(),
                    source: e,
                })?;
                s.send_to(msg.as_bytes(), sock).map_err(|e| Error::Io {
                    path: sock.clone(),
                    source: e,
                })?;
                Ok(())
            }
        }
    }

    /// Write a record as one JSON line.
    pub fn record(&self, r: &Record) -> Result<()> {
        let line = serde_json::to_string(r).expect("record serializes");
        self.write_line(
            &line,
            matches!(r.result, Outcome::Error | Outcome::Rollback),
        )
    }
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Syslog(sock) => write!(f, "syslog (socket {})", sock.display()),
            Sink::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The audit log of one run: writes to its [`Sink`]; the first line that cannot be
/// written is reported on stderr, naming the sink and the error, the rest silently lost
/// (one warning says it all; a run's outcome never depends on its log).
#[derive(Debug)]
pub struct Log {
    sink: Sink,
    warned: Cell<bool>,
}

impl Log {
    /// The log for a `log` setting.
    pub fn from_setting(log: &str) -> Log {
        Log::new(Sink::from_setting(log))
    }

    /// The log writing to `sink`.
    pub fn new(sink: Sink) -> Log {
        Log {
            sink,
            warned: Cell::new(false),
        }
    }

    /// Write a record as one JSON line.
    pub fn record(&self, r: &Record) {
        self.report(self.sink.record(r));
    }

    /// Write one line (`error` picks the syslog severity).
    pub fn line(&self, line: &str, error: bool) {
        self.report(self.sink.write_line(line, error));
    }

    /// Whether a line could not be written (and was reported).
    pub fn failed(&self) -> bool {
        self.warned.get()
    }

    fn report(&self, r: Result<()>) {
        if let Err(e) = r {
            if !self.warned.replace(true) {
                eprintln!(
                    "warning: could not write the audit log to {}: {}",
                    self.sink,
                    error_ext::Chain(&e)
                );
            }
        }
    }
}

fn append(path: &Path, line: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    // One write call per line: with O_APPEND, lines of concurrent writers never interleave.
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    f.write_all(&buf)
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_file_lines() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_627_359), "2026-11-25T17:22:39Z");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log/audit.jsonl");
        let s = Sink::File(p.clone());
        s.write_line("{\"a\":1}", false).unwrap();
        s.write_line("{\"a\":2}", true).unwrap();
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
    }

    #[test]
    fn a_log_that_cannot_be_written_is_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::new(Sink::Syslog(d.path().join("missing.sock")));
        assert!(!log.failed());
        log.line("one", false);
        log.line("two", true);
        assert!(log.failed());
        assert_eq!(
            Sink::Syslog("/dev/log".into()).to_string(),
            "syslog (socket /dev/log)"
        );
    }

    #[test]
    fn syslog_datagrams() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("log.sock");
        let server = UnixDatagram::bind(&sock).unwrap();
        Sink::Syslog(sock).write_line("hello", true).unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            got.starts_with("<27>update[") && got.ends_with("]: hello"),
            "{got}"
        );
    }
}
