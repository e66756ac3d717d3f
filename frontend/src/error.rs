//! The one error type of the `frontend` crate.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::keys::Action;

/// What `update config key` accepts as a key, said after every key error.
const KEY_ACCEPTED: &str = "accepted: the base64 text of an ed25519 public key from `update key generate`, or the path of its .pub file";

/// What can go wrong in the front end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A value given by the user breaks a rule; `reason` says what is accepted.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid, with the value.
        what: String,
        /// What is accepted.
        reason: String,
    },
    /// A file does not parse.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No backend is set up on this system.
    #[error("Not implemented: no update backend is installed on this system. Consider `update sysroot init` (the built-in tree store) or installing an update-backend-NAME executable on PATH (such as update-backend-ostree)")]
    NoBackend,
    /// The backend failed.
    #[error("backend {backend}: {reason}")]
    Backend {
        /// Its name.
        backend: String,
        /// What it reported.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The deploy engine failed.
    #[error(transparent)]
    Deploy(#[from] deploy::Error),
    /// `update config key` was given an action it does not know.
    #[error("invalid key action '{action}': accepted: add, update or delete")]
    KeyAction {
        /// What was given.
        action: String,
    },
    /// A key name breaks the naming rule.
    #[error("invalid key name '{}': accepted: 1 to 64 of A-Z a-z 0-9 - _ . (not starting with '.')", name.escape_debug())]
    KeyName {
        /// The name given.
        name: String,
    },
    /// The text of a public key is malformed or weak.
    #[error("invalid public key: {reason} ({KEY_ACCEPTED})")]
    BadKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A key file was given that is a secret key.
    #[error("invalid key file {}: this is a secret key (its .pub file is beside it): give the .pub file", path.display())]
    SecretKeyFile {
        /// The secret key file.
        path: PathBuf,
    },
    /// A key file cannot be read (missing, a directory, no permission).
    #[error("invalid key file {} ({KEY_ACCEPTED})", path.display())]
    KeyFile {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// `key add` of a name that is taken.
    #[error(
        "key '{name}' exists already: use `update config key update {name} KEY` to replace it"
    )]
    KeyExists {
        /// The name.
        name: String,
    },
    /// `key update` or `key delete` of a name that is not there.
    #[error("no key '{name}' to {action} (keys: {}){}", key_list(known), if *action == Action::Update { ": use `update config key add`" } else { "" })]
    NoSuchKey {
        /// The name.
        name: String,
        /// What was asked.
        action: Action,
        /// The names there are.
        known: Vec<String>,
    },
    /// `key delete NAME KEY`: delete takes a name only.
    #[error("`update config key delete NAME` takes no key")]
    KeyNotExpected,
    /// `key add NAME` or `key update NAME` without the key.
    #[error("`update config key {action} NAME KEY` needs the key: base64 text or a .pub file")]
    KeyNeeded {
        /// `add` or `update`.
        action: Action,
    },
    /// The built-in backend's pull from the source failed.
    #[error("pull from {url}")]
    Pull {
        /// The source URL.
        url: String,
        /// What went wrong.
        source: Box<transport::pull::PullError>,
    },
    /// The source does not publish the ref a run follows.
    #[error("the remote does not publish '{name}'")]
    NotPublished {
        /// The ref.
        name: String,
    },
    /// The reboot command could not be started.
    #[error("cannot run reboot command '{command}'")]
    RebootSpawn {
        /// The command.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// The reboot command ran and failed.
    #[error("reboot command '{command}' failed: {status}")]
    RebootFailed {
        /// The command.
        command: String,
        /// How it exited.
        status: ExitStatus,
    },
}

fn key_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
