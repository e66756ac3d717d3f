//! `update-backend-ostree`: adapts Debian's `ostree` (`ostree pull`, `ostree admin deploy`,
//! `ostree admin status`) to the update front end's backend protocol (docs/backends.md).
//!
//! One JSON request on stdin, one JSON response on stdout, both of the `backend_protocol`
//! crate. Modules: `command` (running `ostree` under a deadline), `sysroot` (deployments and the
//! stateroot), `remote` (the `update` remote matching the config), `ops` (check, apply,
//! status).

mod command;
mod ops;
mod remote;
mod sysroot;

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use backend_protocol::{parse_request, BadRequest, Op, Request, Response, PROTOCOL};
use serde_json::Value;

const USAGE: &str = r#"update-backend-ostree: the update front end's backend for OSTree systems

USAGE:
    update-backend-ostree < REQUEST.json
    update-backend-ostree --help | --version

Reads one request (protocol 1, see docs/backends.md) on stdin and writes one JSON
response on stdout: {"ok": true, "result": {...}} or {"ok": false, "error": "..."}.
Exit status 0 for every answer, errors included; 2 when stdin is not a request.

EXAMPLE:
    echo '{"protocol": 1, "op": "check", "root": "/",
           "config": {"source": "https://updates.example.com/repo#os/x86_64/stable",
                      "verify": false}}' | update-backend-ostree

OPERATIONS:
    check   `ostree pull --commit-metadata-only update REF`; compares the commit with the
            booted deployment (offline: the default one). Deploys nothing.
    apply   `ostree pull update REF`, then `ostree admin deploy --os OS update:REF` unless
            that commit already boots next. Never reboots. bytes_fetched is read from
            pull's summary line ("transferred", else "content written"; to 3 digits).
    status  `ostree admin status`: deployments in boot order. Offline (nothing booted) the
            first is "pending" and the rest "rollback"; "failed" is always false.

SETTINGS:
    root             the OSTree sysroot (ROOT/ostree/repo, `ostree admin --sysroot ROOT`)
    config.source    URL or URL#REF (http://, https://, file://). Without REF: the default
                     deployment's origin ref, else the only ref the repository lists.
    config.verify    true: ed25519 signatures by config.keys (base64 public keys), needs an
                     ostree with the sign-ed25519 feature (`ostree --version`); Debian 12's
                     has none, so set false there. false: no GPG and no signature checks.
    config.secure    true refuses plain http:// sources
    config.tls_*     tls_client_cert, tls_client_key, tls_ca: the remote's tls-* options
    UPDATE_OSTREE_OS the stateroot; default: the booted or default deployment's, else the
                     only one under ROOT/ostree/deploy
    UPDATE_OSTREE_BIN the ostree executable (default: ostree from PATH)

The adapter keeps one remote, "update", in ROOT/ostree/repo, re-added whenever the config
changes it. Deadlines: 30 min per pull, 5 min per other ostree command.
"#;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("-h" | "--help") => return print_stdout(USAGE),
        Some("-V" | "--version") => {
            return print_stdout(&format!(
                "update-backend-ostree {}\n",
                env!("CARGO_PKG_VERSION")
            ))
        }
        Some(other) => {
            eprintln!("update-backend-ostree: unexpected argument {other:?}; see --help");
            return ExitCode::from(2);
        }
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return bad_request(&format!("cannot read stdin: {e}"));
    }
    let request = match parse_request(&input) {
        Ok(r) => r,
        Err(BadRequest(e)) => return bad_request(&e),
    };
    let response = match serve(&request) {
        Ok(result) => Response::Ok(result),
        Err(e) => Response::Err(format!("{e:#}")),
    };
    print_stdout(&response.to_line())
}

fn serve(request: &Request) -> Result<Value> {
    if request.protocol != PROTOCOL {
        bail!(
            "protocol {} is not supported; this backend speaks protocol {}",
            request.protocol,
            PROTOCOL
        );
    }
    match &request.op {
        Op::Check => ops::check(&request.root, &request.config),
        Op::Apply => ops::apply(&request.root, &request.config),
        Op::Status => ops::status(&request.root),
        Op::Unknown(other) => bail!("unknown op {other:?} (check, apply, status)"),
    }
}

/// Stdin was not a request: say so on both streams, exit 2.
fn bad_request(error: &str) -> ExitCode {
    eprintln!("update-backend-ostree: {error}");
    print_stdout(&Response::Err(error.to_owned()).to_line());
    ExitCode::from(2)
}

/// Writes to stdout; a closed pipe is not this program's failure.
fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("update-backend-ostree: writing stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
