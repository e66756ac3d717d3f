//! A real nginx (Debian's `/usr/sbin/nginx`) serving a directory on 127.0.0.1 for a test.
//!
//! [`Nginx::start`] writes its own `nginx.conf` into a temp dir that is also nginx's prefix:
//! the pid file, error log, access log and every temp path live there, so it never touches
//! `/etc/nginx`, `/var/log/nginx` or `/var/lib/nginx`. It runs in the foreground as a
//! single process (`daemon off; master_process off;`), with `sendfile on` and no gzip, on a
//! free port (picked by binding `127.0.0.1:0`; another one is tried if the port is taken
//! before nginx binds it). It returns once that nginx process owns the listening socket
//! and accepts a connection, or panics after [`crate::serve::READY_TIMEOUT`] with the error
//! log. Dropping it stops nginx (SIGTERM, then SIGKILL) and reaps it.
//!
//! The access log records, per request, the method, the request target, the status, the
//! body bytes sent and the Range header: see [`Nginx::access_log`]. nginx writes a line
//! after the response went out, so use [`Nginx::wait_for_requests`] to read it right after
//! a client finished.
//!
//! ```no_run
//! use testkit::nginx::Nginx;
//! let nginx = Nginx::builder()
//!     .server_conf("limit_rate 1m;")
//!     .start(std::path::Path::new("/srv/repo"));
//! println!("{}", nginx.url()); // http://127.0.0.1:PORT/
//! ```

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

use crate::serve::{
    is_addr_in_use, spawn_logged, stop, wait_for_entries, wait_listening, AccessEntry,
    READY_TIMEOUT, STOP_GRACE,
};

/// Debian's nginx binary.
pub const NGINX: &str = "/usr/sbin/nginx";
const PORT_ATTEMPTS: usize = 8;

/// Options for an [`Nginx`]; see [`Nginx::builder`].
#[derive(Debug, Clone, Default)]
pub struct NginxBuilder {
    http_conf: Vec<String>,
    server_conf: Vec<String>,
}

impl NginxBuilder {
    /// Add directives to the `http { }` block (for example `"keepalive_timeout 1s;"`).
    pub fn http_conf(mut self, directives: &str) -> NginxBuilder {
        self.http_conf.push(directives.to_owned());
        self
    }

    /// Add directives to the `server { }` block (for example `"limit_rate 100k;"` or a
    /// `location`).
    pub fn server_conf(mut self, directives: &str) -> NginxBuilder {
        self.server_conf.push(directives.to_owned());
        self
    }

    /// Start nginx serving `root`; see the module docs.
    pub fn start(self, root: &Path) -> Nginx {
        require_nginx();
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("nginx root {}: {e}", root.display()));
        let dir = tempfile::Builder::new()
            .prefix("update-nginx-")
            .tempdir()
            .expect("temp dir for nginx");
        let prefix = dir.path().to_path_buf();
        fs::create_dir_all(prefix.join("tmp")).expect("nginx tmp dir");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::serve::free_port();
            let conf = prefix.join("nginx.conf");
            fs::write(&conf, self.config(&prefix, &root, port)).expect("write nginx.conf");
            // Start from empty logs so a retry's diagnostics are its own.
            let _ = fs::remove_file(prefix.join("error.log"));
            let _ = fs::remove_file(prefix.join("access.log"));
            let mut cmd = Command::new(NGINX);
            cmd.arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.join("error.log"));
            let cmdline = format!("{cmd:?}");
            let mut child = spawn_logged(cmd, &prefix, "nginx");
            let diagnostics = || diagnostics(&prefix);
            match wait_listening(&mut child, port, READY_TIMEOUT) {
                Ok(()) => {
                    return Nginx {
                        child,
                        port,
                        dir,
                        root,
                    };
                }
                Err(Some(status)) if is_addr_in_use(&diagnostics()) => {
                    last = format!("{cmdline} exited {status}: {}", diagnostics());
                }
                Err(Some(status)) => panic!(
                    "nginx exited {status} before listening on port {port}\n$ {cmdline}\n{}",
                    diagnostics()
                ),
                Err(None) => {
                    stop(&mut child, Duration::ZERO);
                    panic!(
                        "nginx did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:?}\n\
                         $ {cmdline}\n{}",
                        diagnostics()
                    );
                }
            }
        }
        panic!("nginx found no free port in {PORT_ATTEMPTS} attempts; last: {last}");
    }

    fn config(&self, prefix: &Path, root: &Path, port: u16) -> String {
        let p = |name: &str| quote(&prefix.join(name));
        // As root nginx would otherwise switch to `nobody`, which may not read the tree.
        let user = if rustix::process::geteuid().is_root() {
            "user root root;\n"
        } else {
            ""
        };
        let mut temp_paths = format!("    client_body_temp_path {};\n", p("tmp/client_body"));
        for module in ["proxy", "fastcgi", "uwsgi", "scgi"] {
            if has_module(module) {
                temp_paths.push_str(&format!(
                    "    {module}_temp_path {};\n",
                    p(&format!("tmp/{module}"))
                ));
            }
        }
        format!(
            "# Written by update-testkit (testkit/src/nginx.rs).\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             {user}\
             pid {pid};\n\
             error_log {error_log} info;\n\
             events {{\n    worker_connections 256;\n}}\n\
             http {{\n\
             {temp_paths}\
             \x20   types {{ }}\n\
             \x20   default_type application/octet-stream;\n\
             \x20   sendfile on;\n\
             \x20   tcp_nopush on;\n\
             \x20   gzip off;\n\
             \x20   server_tokens off;\n\
             \x20   keepalive_timeout 15s;\n\
             \x20   log_format harness \"$request_method\t$request_uri\t$status\t$body_bytes_sent\t$http_range\";\n\
             \x20   access_log {access_log} harness;\n\
             {http_conf}\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name localhost;\n\
             \x20       root {root};\n\
             \x20       location / {{ }}\n\
             {server_conf}\
             \x20   }}\n\
             }}\n",
            pid = p("nginx.pid"),
            error_log = p("error.log"),
            access_log = p("access.log"),
            root = quote(root),
            http_conf = indent(&self.http_conf, 4),
            server_conf = indent(&self.server_conf, 8),
        )
    }
}

/// A running nginx; stopped and reaped on drop.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Nginx {
    /// Serve `root` with the default configuration; see the module docs.
    pub fn start(root: &Path) -> Nginx {
        NginxBuilder::default().start(root)
    }

    /// Options before starting: extra configuration directives.
    pub fn builder() -> NginxBuilder {
        NginxBuilder::default()
    }

    /// The base URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The directory served (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// nginx's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding nginx.conf, the logs and the temp paths.
    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration nginx runs with.
    pub fn config(&self) -> String {
        fs::read_to_string(self.dir.path().join("nginx.conf")).unwrap_or_default()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log so far, one entry per request.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                parse_log_line(l)
                    .unwrap_or_else(|| panic!("unparsable nginx access log line: {l:?}"))
            })
            .collect()
    }

    /// How many requests the access log has so far.
    pub fn request_count(&self) -> usize {
        self.access_log().len()
    }

    /// Wait (at most `timeout`) until the access log has at least `n` entries, and return
    /// them. Panics with the log on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<AccessEntry> {
        wait_for_entries(n, timeout, || self.access_log(), "nginx")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child, STOP_GRACE);
    }
}

/// Fail the calling test unless Debian's nginx is installed.
pub fn require_nginx() {
    if !Path::new(NGINX).is_file() {
        panic!(
            "{NGINX} is not installed: run scripts/install-deps.sh (it installs Debian's \
             nginx-light)"
        );
    }
}

/// `METHOD\tURI\tSTATUS\tBYTES\tRANGE`, `-` for an absent Range (nginx escapes tabs and
/// quotes inside values, so the split is unambiguous).
fn parse_log_line(line: &str) -> Option<AccessEntry> {
    let f: Vec<&str> = line.split('\t').collect();
    let [method, path, status, bytes, range] = f.as_slice() else {
        return None;
    };
    Some(AccessEntry {
        method: (*method).to_owned(),
        path: (*path).to_owned(),
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        range: (*range != "-").then(|| (*range).to_owned()),
    })
}

/// The error log and nginx's own stderr, for panic messages.
fn diagnostics(prefix: &Path) -> String {
    let read = |name: &str| fs::read_to_string(prefix.join(name)).unwrap_or_default();
    format!(
        "--- error.log ---\n{}\n--- stderr ---\n{}\n--- nginx.conf ---\n{}",
        read("error.log"),
        read("nginx.stderr"),
        read("nginx.conf")
    )
}

/// Whether this nginx was built with the http `module` (`nginx -V` lists what was left out).
fn has_module(module: &str) -> bool {
    static CONFIGURE: OnceLock<String> = OnceLock::new();
    let configure = CONFIGURE.get_or_init(|| {
        Command::new(NGINX)
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    });
    !configure.contains(&format!("--without-http_{module}_module"))
}

/// A path as a double-quoted nginx string.
fn quote(path: &Path) -> String {
    let s = path.to_str().expect("nginx paths must be UTF-8");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn indent(blocks: &[String], by: usize) -> String {
    let pad = " ".repeat(by);
    blocks
        .iter()
        .flat_map(|b| b.lines())
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_lines() {
        assert_eq!(
            parse_log_line("GET\t/packs/a.pack\t206\t100\tbytes=0-99"),
            Some(AccessEntry {
                method: "GET".into(),
                path: "/packs/a.pack".into(),
                status: 206,
                bytes: 100,
                range: Some("bytes=0-99".into()),
            })
        );
        assert_eq!(
            parse_log_line("HEAD\t/summary\t200\t0\t-").map(|e| e.range),
            Some(None)
        );
        assert!(parse_log_line("garbage").is_none());
    }
}
