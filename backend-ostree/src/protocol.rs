//! The backend protocol's JSON shapes (docs/backends.md, version 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one protocol version this adapter speaks.
pub const PROTOCOL: u64 = 1;

/// One request, read from stdin.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Protocol version; only [`PROTOCOL`] is served.
    pub protocol: u64,
    /// `check`, `apply` or `status`.
    pub op: String,
    /// The system root; the OSTree sysroot is this directory.
    #[serde(default = "default_root")]
    pub root: String,
    /// The front end's update settings; missing keys take their defaults.
    #[serde(default)]
    pub config: Config,
}

fn default_root() -> String {
    "/".to_owned()
}

/// The settings the front end passes on (`update config show`).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `URL` or `URL#REF`: an OSTree repository (http://, https:// or file://).
    pub source: Option<String>,
    /// Trusted ed25519 public keys by name (base64 of the 32 raw bytes).
    pub keys: BTreeMap<String, String>,
    /// Require signed commits.
    pub verify: bool,
    /// Refuse plain http:// sources.
    pub secure: bool,
    /// Client certificate (PEM path) for mutual TLS.
    pub tls_client_cert: Option<String>,
    /// Client key (PEM path) for mutual TLS.
    pub tls_client_key: Option<String>,
    /// CA bundle (PEM path) the server certificate must chain to.
    pub tls_ca: Option<String>,
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
        }
    }
}

/// A commit and its `version` metadata: the protocol's `V`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Full hex commit checksum.
    pub commit: String,
    /// The commit's `version` metadata string, if it has one.
    pub version: Option<String>,
}

/// `check`'s result.
#[derive(Debug, Serialize)]
pub struct CheckResult {
    /// What runs now (booted deployment; offline, the default one).
    pub current: Option<Version>,
    /// What the source offers.
    pub available: Option<Version>,
    /// `available` differs from `current`.
    pub update_available: bool,
}

/// `apply`'s result.
#[derive(Debug, Serialize)]
pub struct ApplyResult {
    /// What ran before.
    pub from: Option<Version>,
    /// What boots next.
    pub to: Version,
    /// Bytes the pull reported (see `--help`).
    pub bytes_fetched: u64,
    /// Name of the config key whose signature verified, when verifying.
    pub signer: Option<String>,
}

/// One entry of `status`'s list.
#[derive(Debug, Serialize)]
pub struct DeploymentInfo {
    /// Full hex commit checksum.
    pub commit: String,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// Running now.
    pub booted: bool,
    /// Boots next and is not running yet.
    pub pending: bool,
    /// An older deployment kept to roll back to.
    pub rollback: bool,
    /// Known to have failed to boot (ostree does not record this: always false).
    pub failed: bool,
}

/// `status`'s result.
#[derive(Debug, Serialize)]
pub struct StatusResult {
    /// Deployments in boot order: the first one boots next.
    pub deployments: Vec<DeploymentInfo>,
}

/// Why a request could not even be read: the one case with a non-zero exit.
#[derive(Debug)]
pub struct BadRequest(pub String);

/// Parses stdin's bytes into a request.
pub fn parse_request(input: &[u8]) -> Result<Request, BadRequest> {
    let value: Value =
        serde_json::from_slice(input).map_err(|e| BadRequest(format!("stdin is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(BadRequest("stdin is not a JSON object".to_owned()));
    }
    serde_json::from_value(value)
        .map_err(|e| BadRequest(format!("stdin is not a protocol request: {e}")))
}

/// The response line for a result or an error.
pub fn response(result: anyhow::Result<Value>) -> Value {
    match result {
        Ok(result) => serde_json::json!({ "ok": true, "result": result }),
        Err(e) => serde_json::json!({ "ok": false, "error": format!("{e:#}") }),
    }
}
