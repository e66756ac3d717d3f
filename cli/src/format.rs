//! Turning values into text for people, and the few argument syntaxes clap does not know.

use store::object::{PERM_MASK, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

/// `ls -l` style mode string: `-rwxr-xr-x`, `drwxr-xr-x`, `lrwxrwxrwx`, with `s`/`S` and
/// `t`/`T` for setuid, setgid and sticky.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFREG => '-',
        _ => '?',
    };
    let perm = mode & PERM_MASK;
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (perm >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (perm & special != 0, x) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Seconds since the epoch as RFC 3339 in UTC: `2024-05-01T12:00:00Z` (one implementation,
/// shared with the audit log).
pub use frontend::audit::rfc3339;

/// A duration such as `30d`, `12h`, `45m`, `90s` or `2w`, in seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let err = || {
        format!("'{s}' is not a duration: expected a number and a unit s, m, h, d or w (like 30d)")
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(err()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

/// `KEY=VALUE` with a non-empty key (`commit --add-metadata`).
#[cfg(any(feature = "builder", test))]
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// A path from the commit root as shown to people: `/usr/bin/ls`, `/` for the root.
pub fn shown_path(path: &str) -> String {
    format!("/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string(S_IFREG | 0o755), "-rwxr-xr-x");
        assert_eq!(mode_string(S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(S_IFREG | 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(S_IFREG | 0o6755), "-rwsr-sr-x");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        for bad in ["", "d", "30", "30x", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }
}
