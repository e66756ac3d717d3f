//! Running `update serve` (the same server as `update-repo-server`) on 127.0.0.1 for a test,
//! plain, with TLS or with mutual TLS, and the process plumbing it shares with [`crate::nginx`].
//!
//! `update serve` does not report the port it bound, so [`Served::start`] picks a free port
//! (bind `127.0.0.1:0`, note the port, let it go), starts the server on it and waits, at most
//! [`READY_TIMEOUT`], until that very process owns a listening socket on the port (checked
//! through `/proc`, so another program that grabbed the port in between is never mistaken
//! for ours) and it accepts a connection. If the port was taken in between, the server
//! exits with "address in use" and another port is tried. Dropping a [`Served`] stops the
//! server (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and reaps it, so its port is closed
//! once `drop` returns.
//!
//! ```no_run
//! use testkit::{certs::TestPki, serve::{ServeOptions, Served}};
//! # let (root, dir) = (std::path::Path::new("/srv/repo"), std::path::Path::new("/tmp/pki"));
//! let pki = TestPki::new(dir);
//! let server = Served::start(root, ServeOptions::mutual_tls(&pki));
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//! ```

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::certs::TestPki;

/// How long a server has to start listening.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server has to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How many ports are tried when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 8;

/// TLS settings for [`Served`].
#[derive(Debug, Clone)]
pub struct ServeTls {
    /// PEM certificate chain (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to (`--client-ca`): mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// How to run `update serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// HTTPS when set, else plain HTTP.
    pub tls: Option<ServeTls>,
    /// More arguments for `update serve` (for example `--max-connections 1`).
    pub extra_args: Vec<String>,
}

impl ServeOptions {
    /// Plain HTTP.
    pub fn plain() -> ServeOptions {
        ServeOptions::default()
    }

    /// HTTPS with the PKI's server certificate; no client certificate asked for.
    pub fn tls(pki: &TestPki) -> ServeOptions {
        ServeOptions {
            tls: Some(ServeTls {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: None,
            }),
            extra_args: Vec::new(),
        }
    }

    /// HTTPS that requires a client certificate signed by the PKI's CA (`ca_cert`).
    pub fn mutual_tls(pki: &TestPki) -> ServeOptions {
        let mut opts = ServeOptions::tls(pki);
        if let Some(tls) = &mut opts.tls {
            tls.client_ca = Some(pki.ca_cert.clone());
        }
        opts
    }

    /// Add arguments for `update serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> ServeOptions {
        self.extra_args.push(arg.into());
        self
    }
}

/// A running `update serve`; stopped and reaped on drop.
pub struct Served {
    child: Child,
    port: u16,
    tls: bool,
    dir: tempfile::TempDir,
}

impl Served {
    /// Serve `root` with `opts` on a free 127.0.0.1 port; returns once it accepts
    /// connections. Panics, with the server's stderr, if it does not within
    /// [`READY_TIMEOUT`].
    pub fn start(root: &Path, opts: ServeOptions) -> Served {
        let bin = crate::cli::update_bin();
        let dir = tempfile::Builder::new()
            .prefix("update-serve-")
            .tempdir()
            .expect("temp dir for update serve");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .arg("--root")
                .arg(root)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--access-log")
                .arg(dir.path().join("access.log"));
            if let Some(tls) = &opts.tls {
                cmd.arg("--tls-cert").arg(&tls.cert);
                cmd.arg("--tls-key").arg(&tls.key);
                if let Some(ca) = &tls.client_ca {
                    cmd.arg("--client-ca").arg(ca);
                }
            }
            cmd.args(&opts.extra_args);
            let cmdline = format!("{cmd:?}");
            let mut child = spawn_logged(cmd, dir.path(), "serve");
            let stderr = || fs::read_to_string(dir.path().join("serve.stderr")).unwrap_or_default();
            match wait_listening(&mut child, port, READY_TIMEOUT) {
                Ok(()) => {
                    return Served {
                        child,
                        port,
                        tls: opts.tls.is_some(),
                        dir,
                    };
                }
                Err(Some(status)) if is_addr_in_use(&stderr()) => {
                    last = format!("{cmdline} exited {status}: {}", stderr());
                }
                Err(Some(status)) => {
                    panic!(
                        "`update serve` exited {status} before listening on port {port}\n\
                         $ {cmdline}\n--- stderr ---\n{}",
                        stderr()
                    );
                }
                Err(None) => {
                    stop(&mut child, Duration::ZERO);
                    panic!(
                        "`update serve` did not listen on 127.0.0.1:{port} within \
                         {READY_TIMEOUT:?}\n$ {cmdline}\n--- stderr ---\n{}",
                        stderr()
                    );
                }
            }
        }
        panic!("`update serve` found no free port in {PORT_ATTEMPTS} attempts; last: {last}");
    }

    /// The base URL, with a trailing slash: `http://127.0.0.1:PORT/` or
    /// `https://127.0.0.1:PORT/` (the test server certificate names `127.0.0.1`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("serve.stderr")).unwrap_or_default()
    }

    /// The raw access log lines so far.
    pub fn access_log_lines(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The access log so far, parsed. `range` is always `None`: `update serve` does not
    /// log the Range header.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        self.access_log_lines()
            .iter()
            .map(|l| {
                parse_serve_log_line(l)
                    .unwrap_or_else(|| panic!("unparsable `update serve` access log line: {l:?}"))
            })
            .collect()
    }

    /// Wait (at most `timeout`) until the access log has at least `n` entries, and return
    /// them. A server logs a request after its response went out, so a client can finish
    /// before the line is written. Panics with the log on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<AccessEntry> {
        wait_for_entries(n, timeout, || self.access_log(), "update serve")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        stop(&mut self.child, STOP_GRACE);
    }
}

/// One request as a server's access log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The request method, like `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// The response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The request's Range header, if it had one (and the server logs it).
    pub range: Option<String>,
}

/// `CLIENT [DATE] "METHOD PATH" STATUS BYTES Nms[ aborted]`.
fn parse_serve_log_line(line: &str) -> Option<AccessEntry> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (method, path) = request.split_once(' ')?;
    let mut fields = rest.split(' ');
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().ok()?;
    Some(AccessEntry {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        bytes,
        range: None,
    })
}

pub(crate) fn wait_for_entries(
    n: usize,
    timeout: Duration,
    read: impl Fn() -> Vec<AccessEntry>,
    what: &str,
) -> Vec<AccessEntry> {
    let start = Instant::now();
    loop {
        let entries = read();
        if entries.len() >= n {
            return entries;
        }
        if start.elapsed() > timeout {
            panic!(
                "{what}'s access log has {} entries after {timeout:?}, expected at least {n}: \
                 {entries:#?}",
                entries.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port on 127.0.0.1 that was free a moment ago: bind port 0, read the port, let it go.
/// Someone else may take it before the caller binds it; callers retry on "address in use".
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` (1 s connect timeout).
pub fn port_is_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Spawn `cmd` with stdin from /dev/null and stdout/stderr into `dir/NAME.stdout` and
/// `dir/NAME.stderr` (files, not pipes, so a chatty server never blocks).
pub(crate) fn spawn_logged(mut cmd: Command, dir: &Path, name: &str) -> Child {
    let out = fs::File::create(dir.join(format!("{name}.stdout"))).expect("stdout file");
    let err = fs::File::create(dir.join(format!("{name}.stderr"))).expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("RUST_BACKTRACE", "1");
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

pub(crate) fn is_addr_in_use(diagnostics: &str) -> bool {
    diagnostics.contains("in use") || diagnostics.contains("os error 98")
}

/// Wait until `child` owns a listening TCP socket on 127.0.0.1:`port` and a connection to
/// it succeeds. `Err(Some(status))` if the child exited first, `Err(None)` on timeout.
pub(crate) fn wait_listening(
    child: &mut Child,
    port: u16,
    timeout: Duration,
) -> Result<(), Option<ExitStatus>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(Some(status));
        }
        if owns_listener(child.id(), port) && port_is_open(port) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(None);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (per /proc).
fn owns_listener(pid: u32, port: u16) -> bool {
    let Some(inode) = listener_inode(port) else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str()))
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listener_inode(port: u16) -> Option<u64> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        (f.len() > 9 && f[1] == local && f[3] == "0A")
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

/// SIGTERM `child`, wait up to `grace` for it to exit, then SIGKILL it; always reaps it.
pub(crate) fn stop(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    if !grace.is_zero() {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serve_log_lines() {
        let line =
            "127.0.0.1:40000 [Wed, 25 Nov 2026 15:00:00 GMT] \"GET /packs/a.pack\" 206 100 0ms";
        assert_eq!(
            parse_serve_log_line(line),
            Some(AccessEntry {
                method: "GET".into(),
                path: "/packs/a.pack".into(),
                status: 206,
                bytes: 100,
                range: None,
            })
        );
        assert!(parse_serve_log_line("garbage").is_none());
    }
}
