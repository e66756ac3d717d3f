//! The access log: one line per request, written when its response body is finished or dropped,
//! so the byte count is what was actually handed to the connection.

use std::fs::OpenOptions;
use std::io::{self, LineWriter, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::config::AccessLogTarget;
use crate::error::{Error, Result};

/// A shared sink for access log lines.
pub struct AccessLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLog {
    /// Opens the configured target (files are appended to).
    pub fn open(target: &AccessLogTarget) -> Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(LineWriter::new(io::stdout())),
            AccessLogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::AccessLog {
                        path: path.clone(),
                        source,
                    })?;
                Box::new(LineWriter::new(file))
            }
        };
        Ok(AccessLog {
            out: Mutex::new(out),
        })
    }

    fn write_line(&self, line: &str) {
        // A full disk must not take the server down; the line is dropped instead.
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One request's log record, filled in as the response is built.
pub struct LogEntry {
    log: Arc<AccessLog>,
    client: SocketAddr,
    method: String,
    path: String,
    started: Instant,
    status: u16,
}

impl LogEntry {
    /// Starts a record for a request that just arrived.
    pub fn new(log: Arc<AccessLog>, client: SocketAddr, method: &str, path: &str) -> LogEntry {
        LogEntry {
            log,
            client,
            method: method.to_owned(),
            // Quotes are the only field delimiter a request path can carry (hyper refuses
            // spaces and control bytes); escape them so a line always parses.
            path: path.replace('"', "%22"),
            started: Instant::now(),
            status: 0,
        }
    }

    /// Records the response status.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Writes the line: client, time, method, path, status, body bytes sent, duration.
    pub fn finish(self, bytes: u64, complete: bool) {
        let line = format!(
            "{} [{}] \"{} {}\" {} {} {}ms{}",
            self.client,
            httpdate::fmt_http_date(SystemTime::now()),
            self.method,
            self.path,
            self.status,
            bytes,
            self.started.elapsed().as_millis(),
            if complete { "" } else { " aborted" },
        );
        self.log.write_line(&line);
    }
}
