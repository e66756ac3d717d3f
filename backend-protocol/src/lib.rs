//! `backend_protocol`: the JSON the `update` front end and an `update-backend-NAME`
//! executable exchange (docs/backends.md, protocol version [`PROTOCOL`]).
//!
//! One [`Request`] on the backend's stdin, one [`Response`] on its stdout. A request names
//! an [`Op`], the system root and the front end's settings ([`Config`]); a successful
//! response carries the op's result: [`Check`], [`Applied`] or [`Status`], whose versions
//! are [`Version`]s. Both sides use these types, so a backend (ostree, swupdate, mender,
//! rauc) speaks exactly what the front end sends and reads.
//!
//! ```
//! use backend_protocol::{parse_request, Check, Op, Response, Version};
//!
//! // The backend's side: read the request, answer it.
//! let request = parse_request(br#"{"protocol": 1, "op": "check", "root": "/"}"#)?;
//! assert_eq!(request.op, Op::Check);
//! assert!(request.config.verify, "verification is on unless the front end says otherwise");
//! let v = Version { commit: "ab12".into(), version: Some("2".into()) };
//! let check = Check { current: None, available: Some(v), update_available: true };
//! let line = Response::result(&check).to_line();
//! assert!(line.starts_with(r#"{"ok":true,"result":{"available":{"commit":"ab12""#));
//!
//! // The front end's side: read the answer.
//! let answer: serde_json::Value = serde_json::from_str(&line)?;
//! match Response::from_value(answer) {
//!     Some(Response::Ok(result)) => {
//!         let got: Check = serde_json::from_value(result)?;
//!         assert!(got.update_available);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every message is written through [`serde_json::Value`], whose objects keep their keys
//! sorted: the bytes on the wire do not depend on the order of fields in these structs.

#![deny(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks; a backend refuses any other.
pub const PROTOCOL: u64 = 1;

/// The boot retry limit a request without one stands for (the front end's default).
pub const DEFAULT_BOOT_RETRY_LIMIT: u32 = 3;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Find what the source offers; may fetch into the backend's own store, never changes
    /// what boots. Answered with a [`Check`].
    Check,
    /// Fetch and deploy what `check` found, so it boots next; never reboots. Answered with
    /// an [`Applied`].
    Apply,
    /// List what is installed. Answered with a [`Status`].
    Status,
    /// An op this version of the protocol does not have, kept so that a backend answers
    /// it with an error naming it rather than refusing the whole request.
    #[serde(untagged)]
    Unknown(String),
}

impl Op {
    /// Its name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Op::Check => "check",
            Op::Apply => "apply",
            Op::Status => "status",
            Op::Unknown(s) => s,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request: what the front end writes to a backend's stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version; [`PROTOCOL`] from this crate.
    pub protocol: u64,
    /// What to do.
    pub op: Op,
    /// The system root (`/` on a device); missing: `/`.
    #[serde(default = "default_root")]
    pub root: String,
    /// The front end's update settings; missing keys take their defaults.
    #[serde(default)]
    pub config: Config,
}

fn default_root() -> String {
    "/".to_owned()
}

impl Request {
    /// A request of this protocol version.
    pub fn new(op: Op, root: String, config: Config) -> Request {
        Request {
            protocol: PROTOCOL,
            op,
            root,
            config,
        }
    }

    /// The request as written to the backend's stdin: one JSON object, keys sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_value(self).to_string().into_bytes()
    }
}

/// The settings the front end passes on (`update config show`, without its own ones such
/// as the schedule and the log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `URL` or `URL#REF`: where updates come from (http://, https:// or file://).
    pub source: Option<String>,
    /// Trusted ed25519 public keys by name (base64 of the 32 raw bytes).
    pub keys: BTreeMap<String, String>,
    /// Require signatures by one of `keys`.
    pub verify: bool,
    /// Mutual TLS with the source; plain http:// is refused.
    pub secure: bool,
    /// Client certificate (PEM path) for mutual TLS.
    pub tls_client_cert: Option<String>,
    /// Its private key (PEM path).
    pub tls_client_key: Option<String>,
    /// CA certificates (PEM path) the server certificate must chain to, instead of the
    /// public roots.
    pub tls_ca: Option<String>,
    /// Boot tries a new deployment gets before the firmware falls back.
    pub boot_retry_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        // Verification on unless the front end says otherwise: an absent key must not
        // silently turn signatures off.
        Config {
            source: None,
            keys: BTreeMap::new(),
            verify: true,
            secure: false,
            tls_client_cert: None,
            tls_client_key: None,
            tls_ca: None,
            boot_retry_limit: DEFAULT_BOOT_RETRY_LIMIT,
        }
    }
}

/// A commit and its `version` metadata: the protocol's `V`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The commit id.
    pub commit: String,
    /// Its `version` metadata string, if it has one.
    pub version: Option<String>,
}

/// `check`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What runs now (offline: what boots next).
    pub current: Option<Version>,
    /// What the source offers.
    pub available: Option<Version>,
    /// Whether applying would change what boots next.
    pub update_available: bool,
}

/// `apply`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// What ran before.
    pub from: Option<Version>,
    /// What boots next now.
    pub to: Version,
    /// Bytes downloaded.
    pub bytes_fetched: u64,
    /// The name (in `config.keys`) of the trusted key that signed it.
    pub signer: Option<String>,
}

/// One installed deployment in `status`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The commit id.
    pub commit: String,
    /// Its `version` metadata.
    pub version: Option<String>,
    /// Running now.
    pub booted: bool,
    /// Boots next and is not running yet.
    pub pending: bool,
    /// An older deployment kept to roll back to.
    pub rollback: bool,
    /// Known to have failed to boot.
    pub failed: bool,
}

/// `status`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Deployments in boot order: the first one boots next.
    pub deployments: Vec<Deployment>,
}

/// One response: what a backend writes to its stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `{"ok": true, "result": RESULT}`.
    Ok(Value),
    /// `{"ok": false, "error": "text naming what was wrong"}`.
    Err(String),
}

/// What [`Response::from_value`] puts in place of a failure that does not say why.
pub const NO_REASON: &str = "failed without saying why";

impl Response {
    /// A successful response carrying `result`.
    pub fn result<T: Serialize>(result: &T) -> Response {
        Response::Ok(to_value(result))
    }

    /// The response as a JSON object.
    pub fn to_value(&self) -> Value {
        match self {
            Response::Ok(result) => serde_json::json!({ "ok": true, "result": result }),
            Response::Err(error) => serde_json::json!({ "ok": false, "error": error }),
        }
    }

    /// The response as written to stdout: one line of JSON, keys sorted.
    pub fn to_line(&self) -> String {
        format!("{}\n", self.to_value())
    }

    /// Read a response; `None` when it has no boolean `ok`. A missing `result` is `null`,
    /// a missing `error` is [`NO_REASON`].
    pub fn from_value(mut v: Value) -> Option<Response> {
        match v.get("ok").and_then(Value::as_bool)? {
            true => Some(Response::Ok(
                v.get_mut("result").map_or(Value::Null, Value::take),
            )),
            false => Some(Response::Err(
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or(NO_REASON)
                    .to_owned(),
            )),
        }
    }
}

/// Why a backend's stdin is not a request: the one case a backend answers with a non-zero
/// exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

/// Parse a backend's stdin into a request.
pub fn parse_request(input: &[u8]) -> Result<Request, BadRequest> {
    let value: Value =
        serde_json::from_slice(input).map_err(|e| BadRequest(format!("stdin is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(BadRequest("stdin is not a JSON object".to_owned()));
    }
    serde_json::from_value(value)
        .map_err(|e| BadRequest(format!("stdin is not a protocol request: {e}")))
}

/// `v` as a JSON value. The types here have string keys only, so this cannot fail.
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("protocol values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a request as the front end has always written them (docs/backends.md).
    #[test]
    fn a_request_on_the_wire() {
        let config = Config {
            source: Some("https://updates.example.com/os#os/stable".into()),
            keys: BTreeMap::from([("release".into(), "BASE64".into())]),
            tls_ca: Some("/etc/update/ca.pem".into()),
            ..Config::default()
        };
        let r = Request::new(Op::Apply, "/".into(), config);
        let want = r#"{"config":{"boot_retry_limit":3,"keys":{"release":"BASE64"},"secure":false,"source":"https://updates.example.com/os#os/stable","tls_ca":"/etc/update/ca.pem","tls_client_cert":null,"tls_client_key":null,"verify":true},"op":"apply","protocol":1,"root":"/"}"#;
        assert_eq!(String::from_utf8(r.to_bytes()).unwrap(), want);
        assert_eq!(parse_request(want.as_bytes()), Ok(r));
    }

    /// The bytes of responses as backends have always written them.
    #[test]
    fn responses_on_the_wire() {
        let applied = Applied {
            from: None,
            to: Version {
                commit: "bbb".into(),
                version: Some("2".into()),
            },
            bytes_fetched: 42,
            signer: Some("release".into()),
        };
        assert_eq!(
            Response::result(&applied).to_line(),
            "{\"ok\":true,\"result\":{\"bytes_fetched\":42,\"from\":null,\"signer\":\"release\",\"to\":{\"commit\":\"bbb\",\"version\":\"2\"}}}\n"
        );
        assert_eq!(
            Response::Err("the mirror is down".into()).to_line(),
            "{\"error\":\"the mirror is down\",\"ok\":false}\n"
        );
    }

    #[test]
    fn reading_responses_and_requests() {
        let read = |s: &str| Response::from_value(serde_json::from_str(s).unwrap());
        assert_eq!(read(r#"{"ok":true}"#), Some(Response::Ok(Value::Null)));
        assert_eq!(
            read(r#"{"ok":false}"#),
            Some(Response::Err(NO_REASON.into()))
        );
        assert_eq!(read(r#"{"result":{}}"#), None);
        assert_eq!(read(r#"{"ok":"yes"}"#), None);
        let r = parse_request(br#"{"protocol":2,"op":"reboot"}"#).unwrap();
        assert_eq!(
            (r.protocol, r.op.as_str(), r.root.as_str()),
            (2, "reboot", "/")
        );
        assert_eq!(r.config, Config::default());
        for bad in [
            &b"nope"[..],
            b"[1]",
            br#"{"op":"check"}"#,
            br#"{"protocol":1,"op":7}"#,
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
