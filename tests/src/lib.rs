//! Shared helpers for the end-to-end tests of the `update` binary.
//!
//! - [`cli`] finds the built `update` binary (`UPDATE_BIN`, else the newer of
//!   `target/release/update` and `target/debug/update`) and runs it, capturing its output,
//!   optionally under a deadline.
//! - [`tree`] builds test trees on disk from a small text DSL (`f`, `l`, `d`, `h`, `x`
//!   lines) and prints a tree back as DSL, so a failing generated tree can be replayed.
//! - [`random`] generates deep and wide trees from a seed: odd names, sizes, modes, owners,
//!   hardlinks and xattrs.
//! - [`snapshot`] walks a tree into a comparable model (path, type, mode, owner, size,
//!   content hash, symlink target, xattrs, hardlink groups) and diffs two of them.
//! - [`raw`] writes hand-made objects straight into a repository, to build hostile repos.
//! - [`world`] a builder that commits, signs and publishes a tree, and devices with the
//!   remote `origin` added, for pull tests.
//! - [`nginx`] runs Debian's nginx on 127.0.0.1 serving a directory, with its own config,
//!   logs and temp paths in a temp dir, and parses its access log (method, path, status,
//!   bytes, Range).
//! - [`serve`] runs `update serve` on 127.0.0.1: plain, TLS or mutual TLS.
//! - [`certs`] makes a test PKI with rcgen: a CA, a server certificate for
//!   `localhost`/`127.0.0.1`, a client certificate, and an unrelated CA and client.
//!
//! Tests run as root (CI does): owners, device nodes and `trusted.*`/`security.*` xattrs
//! need it. [`require_root`] fails a test with a clear message otherwise.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

pub mod certs;
pub mod cli;
pub mod device;
pub mod kill;
pub mod nginx;
pub mod random;
pub mod raw;
pub mod serve;
pub mod snapshot;
pub mod tree;
pub mod world;

/// Fail the calling test unless it runs as root, saying why root is needed.
pub fn require_root(why: &str) {
    if !rustix::process::geteuid().is_root() {
        panic!(
            "this test must run as root ({why}); CI runs the suite as root. \
             Run it with `sudo -E cargo test -p update-tests`"
        );
    }
}

/// Fail the calling test unless `tool` is on PATH, pointing at the script that installs it.
pub fn require_tool(tool: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        panic!("`{tool}` is not installed: run scripts/install-deps.sh (it installs {tool})");
    }
}
