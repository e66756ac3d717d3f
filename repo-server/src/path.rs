//! Request target → a path relative to the served root, validated component by component.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// Why a request target was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// Not origin-form: does not start with `/`.
    NotAbsolute,
    /// Contains a NUL byte once decoded.
    Nul,
    /// Has a `.` or `..` component once decoded.
    DotComponent,
}

/// Decodes the percent-encoded path of a request and returns it relative to the root.
///
/// Decoding happens before splitting, so `%2e%2e` and `%2f` cannot smuggle a `..` or a
/// separator past the checks. Empty components (`//`) are dropped. The empty path means the root.
pub fn relative_path(raw: &str) -> Result<PathBuf, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    if decoded.contains(&0) {
        return Err(BadPath::Nul);
    }
    let mut path = PathBuf::new();
    for component in decoded.split(|&b| b == b'/') {
        match component {
            b"" => {}
            b"." | b".." => return Err(BadPath::DotComponent),
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::{relative_path, BadPath};
    use std::path::Path;

    #[test]
    fn plain_and_encoded_paths() {
        assert_eq!(relative_path("/a/b").unwrap(), Path::new("a/b"));
        assert_eq!(relative_path("//a//b/").unwrap(), Path::new("a/b"));
        assert_eq!(relative_path("/a%20b").unwrap(), Path::new("a b"));
        assert_eq!(relative_path("/").unwrap(), Path::new(""));
    }

    #[test]
    fn traversal_is_refused() {
        for bad in ["/../x", "/a/%2e%2e/x", "/a%2f..%2fx", "/%2E%2E", "/./x"] {
            assert_eq!(relative_path(bad), Err(BadPath::DotComponent), "{bad}");
        }
        assert_eq!(relative_path("/a%00b"), Err(BadPath::Nul));
        assert_eq!(relative_path("a"), Err(BadPath::NotAbsolute));
        assert_eq!(relative_path("*"), Err(BadPath::NotAbsolute));
    }
}
