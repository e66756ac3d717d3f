//! External backends: the executable `update-backend-NAME`, one JSON request on stdin, one
//! JSON response on stdout (`docs/backends.md`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend_protocol::{Op, Request, Response};

use super::{Applied, Backend, Check, Settings};
use crate::error::{Error, Result};

/// The protocol version this build speaks.
pub use backend_protocol::PROTOCOL;
/// How long one request may take (an apply downloads a whole OS).
pub const DEADLINE: Duration = Duration::from_secs(3 * 3600);
/// The most bytes of response read.
const MAX_RESPONSE: u64 = 16 << 20;

/// An `update-backend-NAME` executable.
pub struct External {
    name: String,
    path: PathBuf,
}

impl External {
    /// The backend `name` at `path`.
    pub fn new(name: String, path: PathBuf) -> External {
        External { name, path }
    }

    fn request(&self, op: Op, s: &Settings) -> Result<serde_json::Value> {
        let fail = |reason: String| Error::Backend {
            backend: self.name.clone(),
            reason,
        };
        let text = |p: &Path| {
            p.to_str().map(str::to_owned).ok_or_else(|| {
                fail(format!(
                    "{}: the protocol carries UTF-8 paths only",
                    p.display()
                ))
            })
        };
        let c = &s.config;
        let text_opt = |p: &Option<PathBuf>| p.as_deref().map(text).transpose();
        let config = backend_protocol::Config {
            source: c.source.clone(),
            keys: c.keys.clone(),
            verify: c.verify,
            secure: c.secure,
            tls_client_cert: text_opt(&c.tls_client_cert)?,
            tls_client_key: text_opt(&c.tls_client_key)?,
            tls_ca: text_opt(&c.tls_ca)?,
            boot_retry_limit: c.boot_retry_limit,
        };
        let req = Request::new(op.clone(), text(&s.root)?, config);
        let mut child = Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.path.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        let body = req.to_bytes();
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = (&mut stdout).take(MAX_RESPONSE).read_to_end(&mut v);
            v
        });
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break st;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "{op} did not finish within {} s",
                    DEADLINE.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        let shown = String::from_utf8_lossy(&out[..out.len().min(500)]).into_owned();
        if !status.success() {
            return Err(fail(format!("{op} exited with {status}; output: {shown}")));
        }
        let resp: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            fail(format!(
                "{op} answered with something that is not one JSON object ({e}): {shown}"
            ))
        })?;
        match Response::from_value(resp) {
            Some(Response::Ok(result)) => Ok(result),
            Some(Response::Err(error)) => Err(fail(error)),
            None => Err(fail(format!("{op} answered without \"ok\": {shown}"))),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, op: &str, v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Backend {
        backend: name.to_owned(),
        reason: format!("{op}: unexpected result: {e}"),
    })
}

impl Backend for External {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn check(&mut self, s: &Settings) -> Result<Check> {
        let v = self.request(Op::Check, s)?;
        parse(&self.name, "check", v)
    }

    fn apply(&mut self, s: &Settings) -> Result<Applied> {
        let v = self.request(Op::Apply, s)?;
        parse(&self.name, "apply", v)
    }

    fn status(&mut self, s: &Settings) -> Result<serde_json::Value> {
        self.request(Op::Status, s)
    }
}
