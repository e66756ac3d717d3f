//! Validated directory entry names.

use std::fmt;

use crate::error::{Error, Result};

/// Longest entry name in bytes (NAME_MAX).
pub const MAX_NAME: usize = 255;

/// One path component: 1..=255 bytes of UTF-8, no `/`, no NUL, not `.` or `..`.
///
/// Non-UTF-8 names are refused, as OSTree does: names travel in JSON, logs and
/// terminals, and a tree that needs them is rare enough to fix at the source.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EntryName(String);

impl EntryName {
    /// Validate a name.
    pub fn new(name: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = name.into();
        let shown = String::from_utf8_lossy(&bytes).escape_debug().to_string();
        let reason = if bytes.is_empty() {
            Some("empty name")
        } else if bytes == b"." || bytes == b".." {
            Some("'.' and '..' are not entry names")
        } else if bytes.contains(&b'/') {
            Some("contains '/'")
        } else if bytes.contains(&0) {
            Some("contains NUL")
        } else if bytes.len() > MAX_NAME {
            Some("longer than 255 bytes")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::invalid(format!("entry name '{shown}'"), reason));
        }
        match String::from_utf8(bytes) {
            Ok(s) => Ok(EntryName(s)),
            Err(_) => Err(Error::invalid(
                format!("entry name '{shown}'"),
                "not valid UTF-8",
            )),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EntryName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::EntryName;

    #[test]
    fn rejects_bad_names() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b"a\0b",
            &[b'x'; 256],
            b"\xff",
        ] {
            assert!(EntryName::new(bad.to_vec()).is_err(), "{bad:?}");
        }
        assert!(EntryName::new("...").is_ok());
        assert!(EntryName::new(vec![b'x'; 255]).is_ok());
    }
}
