//! The content of a type 1 boot entry: `key value` lines.
//!
//! Parsing follows systemd-boot: leading and trailing blanks of a line are dropped, lines
//! starting with `#` and blank lines are ignored, the key ends at the first space or tab
//! and the value starts after the blanks that follow it. Unlike systemd-boot, values are
//! kept verbatim (systemd-boot drops one pair of surrounding double quotes), a line with a
//! key and no value is ignored (as systemd-boot does), and for single-valued keys the last
//! line wins (as systemd-boot does).

use std::path::Path;

use crate::error::{Error, Result};

/// Largest entry file accepted, in bytes.
pub const MAX_ENTRY_SIZE: usize = 64 * 1024;

/// Keys with a field of their own in [`Entry`]; every other key goes to [`Entry::other`].
const KNOWN_KEYS: &[&str] = &[
    "title",
    "version",
    "sort-key",
    "machine-id",
    "linux",
    "initrd",
    "options",
];

/// A Boot Loader Specification type 1 entry.
///
/// [`Entry::to_text`] writes the canonical form, which [`Entry::parse`] reads back to an
/// equal value when [`Entry::check`] accepts the entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// `title`: shown in the menu.
    pub title: Option<String>,
    /// `version`: compared (newest first) between entries with the same `sort-key`.
    pub version: Option<String>,
    /// `sort-key`: entries with one sort before entries without, by this key.
    pub sort_key: Option<String>,
    /// `machine-id`.
    pub machine_id: Option<String>,
    /// `linux`: the kernel, a path on the boot partition (required).
    pub linux: String,
    /// `initrd` lines, in order.
    pub initrd: Vec<String>,
    /// `options` lines, in order; the kernel command line is them joined by spaces.
    pub options: Vec<String>,
    /// Every other `key value` line (`devicetree`, `architecture`, ...), in order.
    pub other: Vec<(String, String)>,
}

impl Entry {
    /// Parse the bytes of an entry file. `path` names the file in errors.
    ///
    /// Fails with [`Error::Malformed`] when the file is larger than [`MAX_ENTRY_SIZE`], is
    /// not UTF-8, holds a NUL byte, or has no `linux` line.
    pub fn parse(data: &[u8], path: &Path) -> Result<Entry> {
        let bad = |reason: String| Error::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        if data.len() > MAX_ENTRY_SIZE {
            return Err(bad(format!(
                "boot entry is {} bytes, more than {MAX_ENTRY_SIZE}",
                data.len()
            )));
        }
        let text =
            std::str::from_utf8(data).map_err(|e| bad(format!("boot entry is not UTF-8: {e}")))?;
        if text.contains('\0') {
            return Err(bad("boot entry holds a NUL byte".into()));
        }
        let mut entry = Entry::default();
        let mut linux = None;
        for line in text.split('\n') {
            let line = line.trim_matches(is_blank);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once([' ', '\t']) else {
                continue;
            };
            let value = value.trim_start_matches(is_blank).to_owned();
            match key {
                "title" => entry.title = Some(value),
                "version" => entry.version = Some(value),
                "sort-key" => entry.sort_key = Some(value),
                "machine-id" => entry.machine_id = Some(value),
                "linux" => linux = Some(value),
                "initrd" => entry.initrd.push(value),
                "options" => entry.options.push(value),
                _ => entry.other.push((key.to_owned(), value)),
            }
        }
        entry.linux = linux.ok_or_else(|| bad("boot entry has no 'linux' line".into()))?;
        Ok(entry)
    }

    /// The canonical text: `key value\n` lines in the order title, version, sort-key,
    /// machine-id, linux, initrd..., options..., then the other keys as found.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            out.push(' ');
            out.push_str(value);
            out.push('\n');
        };
        let single = [
            ("title", &self.title),
            ("version", &self.version),
            ("sort-key", &self.sort_key),
            ("machine-id", &self.machine_id),
        ];
        for (key, value) in single {
            if let Some(v) = value {
                line(key, v);
            }
        }
        line("linux", &self.linux);
        for v in &self.initrd {
            line("initrd", v);
        }
        for v in &self.options {
            line("options", v);
        }
        for (k, v) in &self.other {
            line(k, v);
        }
        out
    }

    /// Check that [`Entry::to_text`] writes what [`Entry::parse`] reads back unchanged:
    /// every value non-empty, without line breaks, NUL or surrounding blanks; keys of
    /// [`Entry::other`] made of `[A-Za-z0-9_-]` and not one of the keys with a field.
    pub fn check(&self) -> Result<()> {
        let single = [
            ("title", &self.title),
            ("version", &self.version),
            ("sort-key", &self.sort_key),
            ("machine-id", &self.machine_id),
        ];
        for (key, value) in single {
            if let Some(v) = value {
                check_value(key, v)?;
            }
        }
        check_value("linux", &self.linux)?;
        for v in &self.initrd {
            check_value("initrd", v)?;
        }
        for v in &self.options {
            check_value("options", v)?;
        }
        for (k, v) in &self.other {
            let key_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !KNOWN_KEYS.contains(&k.as_str());
            if !key_ok {
                return Err(Error::invalid(
                    format!("boot entry key {k:?}"),
                    "must be [A-Za-z0-9_-] and not a key with a field of its own",
                ));
            }
            check_value(k, v)?;
        }
        if self.to_text().len() > MAX_ENTRY_SIZE {
            return Err(Error::invalid(
                "boot entry",
                format!("longer than {MAX_ENTRY_SIZE} bytes"),
            ));
        }
        Ok(())
    }

    /// The kernel command line: the `options` lines joined by spaces.
    pub fn options(&self) -> String {
        self.options.join(" ")
    }

    /// The value of kernel argument `key` (`key=value`) in the options; the last one wins,
    /// as the kernel does. `None` when absent or given without `=`. Quotes are not
    /// interpreted.
    pub fn karg(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .flat_map(|line| line.split_ascii_whitespace())
            .filter_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .next_back()
    }
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

fn check_value(key: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "is empty"
    } else if value.contains(['\n', '\r', '\0']) {
        "contains a line break or NUL"
    } else if value.starts_with(is_blank) || value.ends_with(is_blank) {
        "starts or ends with a blank"
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        format!("boot entry {key} {value:?}"),
        reason,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::{Entry, MAX_ENTRY_SIZE};
    use crate::error::Error;

    fn sample() -> Entry {
        Entry {
            title: Some("os 1.2 (0123456789ab)".into()),
            version: Some("7".into()),
            sort_key: Some("update-os".into()),
            machine_id: None,
            linux: "/update/os/6.1-abc/vmlinuz".into(),
            initrd: vec!["/update/os/6.1-abc/initramfs.img".into()],
            options: vec!["root=/dev/vda2 rw update.deployment=os/abc.0".into()],
            other: vec![("devicetree".into(), "/dtb".into())],
        }
    }

    #[test]
    fn canonical_text() {
        assert_eq!(
            sample().to_text(),
            "title os 1.2 (0123456789ab)\nversion 7\nsort-key update-os\n\
             linux /update/os/6.1-abc/vmlinuz\ninitrd /update/os/6.1-abc/initramfs.img\n\
             options root=/dev/vda2 rw update.deployment=os/abc.0\ndevicetree /dtb\n"
        );
        let back = Entry::parse(sample().to_text().as_bytes(), Path::new("x")).expect("parses");
        assert_eq!(back, sample());
    }

    #[test]
    fn parse_like_systemd_boot() {
        let text = "# comment\n\n  title\tHello  World \r\n  # indented comment\n\
                    linux   /vmlinuz\noptions a=1 b\noptions  c=2\ninitrd /i1\ninitrd /i2\n\
                    lonely\narchitecture x64\ntitle Second\n";
        let e = Entry::parse(text.as_bytes(), Path::new("x")).expect("parses");
        assert_eq!(e.title.as_deref(), Some("Second"));
        assert_eq!(e.linux, "/vmlinuz");
        assert_eq!(e.initrd, ["/i1", "/i2"]);
        assert_eq!(e.options(), "a=1 b c=2");
        assert_eq!(e.other, [("architecture".to_string(), "x64".to_string())]);
    }

    #[test]
    fn malformed_entries_name_the_file() {
        let path = Path::new("/boot/loader/entries/x.conf");
        let cases: &[(&[u8], &str)] = &[
            (b"title x\n", "no 'linux'"),
            (b"linux /a\xff\n", "not UTF-8"),
            (b"linux /a\0\n", "NUL"),
        ];
        for (data, want) in cases {
            match Entry::parse(data, path) {
                Err(e @ Error::Malformed { .. }) => {
                    let s = e.to_string();
                    assert!(
                        s.contains("/boot/loader/entries/x.conf") && s.contains(want),
                        "{s}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let big = format!("linux /a\n{}", "#".repeat(MAX_ENTRY_SIZE));
        assert!(matches!(
            Entry::parse(big.as_bytes(), path),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn karg_exact_word_last_wins() {
        let e = Entry {
            linux: "/k".into(),
            options: vec![
                "update.deployment=os/a.0 rootfoo=1 root=/dev/a quiet".into(),
                "xroot=/dev/x root=/dev/b update.deployment".into(),
            ],
            ..Entry::default()
        };
        assert_eq!(e.karg("root"), Some("/dev/b"));
        assert_eq!(e.karg("update.deployment"), Some("os/a.0"));
        assert_eq!(e.karg("quiet"), None);
        assert_eq!(e.karg("missing"), None);
        assert_eq!(e.karg("oot"), None);
    }

    #[test]
    fn check_refuses_what_would_not_round_trip() {
        let mut e = sample();
        assert!(e.check().is_ok());
        e.title = Some("a\nlinux /evil".into());
        assert!(e.check().is_err());
        let mut e = sample();
        e.options.push(" lead".into());
        assert!(e.check().is_err());
        let mut e = sample();
        e.other.push(("linux".into(), "/second".into()));
        assert!(e.check().is_err());
        let mut e = sample();
        e.linux = String::new();
        assert!(e.check().is_err());
    }

    fn value() -> impl Strategy<Value = String> {
        "[!-~]([ -~\t]{0,20}[!-~])?"
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            value(),
            proptest::collection::vec(value(), 0..3),
            proptest::collection::vec(value(), 0..3),
            proptest::collection::vec(("[a-z][a-z0-9_-]{0,8}", value()), 0..3),
        )
            .prop_map(
                |(title, version, sort_key, machine_id, linux, initrd, options, other)| Entry {
                    title,
                    version,
                    sort_key,
                    machine_id,
                    linux,
                    initrd,
                    options,
                    other: other
                        .into_iter()
                        .filter(|(k, _)| !super::KNOWN_KEYS.contains(&k.as_str()))
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(e in entry()) {
            prop_assert!(e.check().is_ok());
            let back = Entry::parse(e.to_text().as_bytes(), Path::new("x")).expect("parses");
            prop_assert_eq!(back, e);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Entry::parse(&data, Path::new("x"));
        }

        #[test]
        fn parse_never_panics_on_text(text in "[a-z# \t\r\n=/.-]{0,300}") {
            if let Ok(e) = Entry::parse(text.as_bytes(), Path::new("x")) {
                // What parses, and passes check, survives a second round.
                if e.check().is_ok() {
                    let again = Entry::parse(e.to_text().as_bytes(), Path::new("x")).expect("parses");
                    prop_assert_eq!(again, e);
                }
            }
        }
    }
}
