//! Trusted signing keys: `update config key add|update|delete NAME [KEY]`.
//!
//! A key has a name (a file stem and a name in logs) and the base64 text of an ed25519
//! public key. The key is given as that text or as the path of its `.pub` file; malformed
//! and weak keys, and secret key files, are refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// What `update config key` does to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add a key under a new name.
    Add,
    /// Replace the key of an existing name.
    Update,
    /// Remove a key.
    Delete,
}

impl Action {
    /// Its word on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Action> {
        match s {
            "add" => Ok(Action::Add),
            "update" => Ok(Action::Update),
            "delete" => Ok(Action::Delete),
            _ => Err(Error::KeyAction {
                action: s.to_owned(),
            }),
        }
    }
}

/// Check a key name: 1 to 64 of `A-Z a-z 0-9 - _ .`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::KeyName {
            name: name.to_owned(),
        })
    }
}

/// Check the base64 text of a public key; returns it in canonical form.
pub fn parse_text(text: &str) -> Result<String> {
    let key = store::sign::parse_public_key(text.trim()).map_err(|e| Error::BadKey {
        reason: match e {
            store::Error::BadKey { reason, .. } => reason,
            e => e.to_string(),
        },
    })?;
    Ok(key.to_base64())
}

/// Read a public key given as base64 text or as the path of a `.pub` file; refuses
/// malformed and weak keys, secret key files, and paths of files that cannot be read.
pub fn parse(given: &str) -> Result<String> {
    let p = Path::new(given);
    if p.is_file() {
        if store::sign::public_key_path(p).exists() {
            return Err(Error::SecretKeyFile { path: p.into() });
        }
        let text = std::fs::read_to_string(p).map_err(|source| Error::KeyFile {
            path: p.into(),
            source,
        })?;
        return parse_text(&text);
    }
    match parse_text(given) {
        Ok(k) => Ok(k),
        // Not a key, and '.' is no base64 character and '/' rarely starts one: the user
        // meant a file, so say what is wrong with the file rather than with the base64.
        Err(_) if looks_like_path(given) => Err(Error::KeyFile {
            path: p.into(),
            source: match std::fs::metadata(p) {
                Err(e) => e,
                Ok(_) => std::io::Error::other("not a regular file"),
            },
        }),
        Err(e) => Err(e),
    }
}

/// Whether text that is not a key was meant as a file path.
fn looks_like_path(given: &str) -> bool {
    given.contains('.') || given.starts_with('/') || given.ends_with('/')
}

/// Apply `update config key ACTION NAME [KEY]` to `keys`.
pub fn change(
    keys: &mut BTreeMap<String, String>,
    action: Action,
    name: &str,
    key: Option<&str>,
) -> Result<()> {
    validate_name(name)?;
    let missing = |keys: &BTreeMap<String, String>| Error::NoSuchKey {
        name: name.to_owned(),
        action,
        known: keys.keys().cloned().collect(),
    };
    match (action, key) {
        (Action::Add, Some(k)) => {
            if keys.contains_key(name) {
                return Err(Error::KeyExists {
                    name: name.to_owned(),
                });
            }
            keys.insert(name.to_owned(), parse(k)?);
        }
        (Action::Update, Some(k)) => {
            if !keys.contains_key(name) {
                return Err(missing(keys));
            }
            keys.insert(name.to_owned(), parse(k)?);
        }
        (Action::Delete, None) => {
            if keys.remove(name).is_none() {
                return Err(missing(keys));
            }
        }
        (Action::Delete, Some(_)) => return Err(Error::KeyNotExpected),
        (action, None) => return Err(Error::KeyNeeded { action }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["release", "a", "k-1_x.2", &"x".repeat(64)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "a b", "a/b", &"x".repeat(65), "ключ"] {
            assert!(
                matches!(validate_name(bad), Err(Error::KeyName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_and_text() {
        assert!(looks_like_path("/etc/update/release.pub"));
        assert!(looks_like_path("release.pub"));
        assert!(!looks_like_path("AAAA"));
        assert!(matches!(
            parse("/nonexistent/release.pub"),
            Err(Error::KeyFile { .. })
        ));
        assert!(matches!(parse("AAAA"), Err(Error::BadKey { .. })));
    }

    #[test]
    fn add_update_delete() {
        let mut keys = BTreeMap::new();
        let e = change(&mut keys, Action::Delete, "k", None).unwrap_err();
        assert_eq!(e.to_string(), "no key 'k' to delete (keys: none)");
        assert!(matches!(
            change(&mut keys, Action::Add, "k", None),
            Err(Error::KeyNeeded {
                action: Action::Add
            })
        ));
        keys.insert("k".to_owned(), "x".to_owned());
        assert!(matches!(
            change(&mut keys, Action::Add, "k", Some("x")),
            Err(Error::KeyExists { .. })
        ));
        assert!(matches!(
            change(&mut keys, Action::Delete, "k", Some("x")),
            Err(Error::KeyNotExpected)
        ));
        let e = change(&mut keys, Action::Update, "j", Some("x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no key 'j' to update (keys: k): use `update config key add`"
        );
        change(&mut keys, Action::Delete, "k", None).unwrap();
        assert!(keys.is_empty());
    }
}
