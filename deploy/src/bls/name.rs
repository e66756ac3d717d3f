//! File names of boot entries: `STEM[+LEFT[-DONE]].conf`.
//!
//! The counter is systemd-boot's "Automatic Boot Assessment": `+LEFT` is the number of
//! tries left, `-DONE` the number of tries done (a missing `-DONE` means 0). On every
//! attempt the boot loader renames `x+3.conf` to `x+2-1.conf`, then `x+1-2.conf`, then
//! `x+0-3.conf`; an entry with no tries left is "bad" and sorts last. Blessing an entry is
//! renaming it to the name without counter.

use std::fmt;

use crate::error::{Error, Result};

/// The suffix systemd-boot requires of a type 1 entry.
pub const SUFFIX: &str = ".conf";

/// Longest stem accepted, in bytes. Leaves room for the counter, the suffix and our
/// temp-file decoration within vfat's 255-character names.
pub const MAX_STEM_LEN: usize = 200;

/// Largest number of tries [`EntryName::with_tries`] accepts.
///
/// systemd-boot 252 parses a counter digit by digit from the end and, through a bug in
/// that loop, keeps only the last digit of each number: it reads `x+10.conf` as 0 tries
/// left (a bad entry, never tried) and `x+12.conf` as 2. Single digits are read right by
/// every version.
pub const MAX_TRIES: u32 = 9;

/// The boot counter of an entry name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Counter {
    left: u32,
    /// `None` when the name has no `-DONE` part (which means 0 tries done).
    done: Option<u32>,
}

/// The validated file name of a boot entry in `loader/entries`.
///
/// Parsed as systemd-boot does: the counter is the last `+` segment before `.conf`, and
/// must be `+DIGITS` or `+DIGITS-DIGITS`. A name whose last `+` segment is anything else
/// has no counter for systemd-boot, and then its stem holds a `+`, which this type
/// refuses: [`EntryName::parse`] returns `None` for it, so such foreign entries are
/// ignored, like names not ending in `.conf`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryName {
    stem: String,
    counter: Option<Counter>,
}

impl EntryName {
    /// A blessed (counter-less) name with `stem`, e.g. `update-os-7`.
    ///
    /// The stem must be 1 to [`MAX_STEM_LEN`] bytes of `[A-Za-z0-9._-]`, must not start
    /// with `.` (systemd-boot and our temp files) nor with `auto-` (systemd-boot skips both).
    pub fn new(stem: &str) -> Result<EntryName> {
        check_stem(stem)
            .map_err(|reason| Error::invalid(format!("boot entry name {stem:?}"), reason))?;
        Ok(EntryName {
            stem: stem.to_owned(),
            counter: None,
        })
    }

    /// Parse a file name found in `loader/entries`. `None` for names that are not entries
    /// of ours to consider: not ending in `.conf` (temp files), or with an invalid stem.
    ///
    /// systemd-boot also accepts `.CONF` in any case; such names (never written by us) are
    /// `None` here, so they are invisible to [`super::EntriesDir::list`].
    pub fn parse(file_name: &str) -> Option<EntryName> {
        let base = file_name.strip_suffix(SUFFIX)?;
        let (stem, counter) = match base.rfind('+') {
            Some(plus) => match parse_counter(&base[plus + 1..]) {
                Some(c) => (&base[..plus], Some(c)),
                None => (base, None),
            },
            None => (base, None),
        };
        check_stem(stem).ok()?;
        Some(EntryName {
            stem: stem.to_owned(),
            counter,
        })
    }

    /// The file name, e.g. `update-os-7+2-1.conf`.
    pub fn file_name(&self) -> String {
        match self.counter {
            None => format!("{}{SUFFIX}", self.stem),
            Some(Counter { left, done: None }) => format!("{}+{left}{SUFFIX}", self.stem),
            Some(Counter {
                left,
                done: Some(done),
            }) => {
                format!("{}+{left}-{done}{SUFFIX}", self.stem)
            }
        }
    }

    /// The same stem with a fresh counter of `tries` tries left and none done (`+N`).
    /// `tries` must be 1 to [`MAX_TRIES`].
    pub fn with_tries(&self, tries: u32) -> Result<EntryName> {
        if !(1..=MAX_TRIES).contains(&tries) {
            return Err(Error::invalid(
                format!("boot tries {tries}"),
                format!("must be 1 to {MAX_TRIES} (systemd-boot 252 misreads longer counters)"),
            ));
        }
        Ok(EntryName {
            stem: self.stem.clone(),
            counter: Some(Counter {
                left: tries,
                done: None,
            }),
        })
    }

    /// The same stem without counter: the name an entry gets when it is blessed.
    pub fn blessed(&self) -> EntryName {
        EntryName {
            stem: self.stem.clone(),
            counter: None,
        }
    }

    /// The stem: the file name without counter and suffix.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// Whether the name carries a boot counter (the entry is on trial).
    pub fn is_counting(&self) -> bool {
        self.counter.is_some()
    }

    /// Whether the entry used up its tries (`+0`): systemd-boot sorts it last.
    pub fn is_bad(&self) -> bool {
        self.tries_left() == Some(0)
    }

    /// Tries left, `None` without counter.
    pub fn tries_left(&self) -> Option<u32> {
        self.counter.map(|c| c.left)
    }

    /// Tries done, `None` without counter; a counter without `-DONE` means 0.
    pub fn tries_done(&self) -> Option<u32> {
        self.counter.map(|c| c.done.unwrap_or(0))
    }

    /// The counter as systemd-boot 252 reads it: `(left, done)` where each number is only
    /// its last decimal digit (see [`MAX_TRIES`]). Used to sort exactly as it does.
    pub(crate) fn tries_as_sdboot252(&self) -> Option<(u32, u32)> {
        self.counter
            .map(|c| (c.left % 10, c.done.unwrap_or(0) % 10))
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// `DIGITS` or `DIGITS-DIGITS`, each fitting a `u32`.
fn parse_counter(s: &str) -> Option<Counter> {
    let (left, done) = match s.split_once('-') {
        Some((l, d)) => (l, Some(d)),
        None => (s, None),
    };
    let left = parse_decimal(left)?;
    let done = match done {
        Some(d) => Some(parse_decimal(d)?),
        None => None,
    };
    Some(Counter { left, done })
}

fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn check_stem(stem: &str) -> std::result::Result<(), String> {
    if stem.is_empty() {
        return Err("empty".into());
    }
    if stem.len() > MAX_STEM_LEN {
        return Err(format!("longer than {MAX_STEM_LEN} bytes"));
    }
    if let Some(c) = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("contains {c:?} (allowed: A-Z a-z 0-9 . _ -)"));
    }
    if stem.starts_with('.') {
        return Err("starts with '.' (hidden from the boot loader)".into());
    }
    if stem.starts_with("auto-") {
        return Err("starts with 'auto-' (skipped by systemd-boot)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{EntryName, MAX_STEM_LEN};

    fn p(s: &str) -> EntryName {
        EntryName::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn every_counter_state_round_trips() {
        type Case = (&'static str, Option<u32>, Option<u32>, bool, bool);
        let cases: &[Case] = &[
            // name, left, done, counting, bad
            ("update-os-7.conf", None, None, false, false),
            ("update-os-7+3.conf", Some(3), Some(0), true, false),
            ("update-os-7+2-1.conf", Some(2), Some(1), true, false),
            ("update-os-7+1-2.conf", Some(1), Some(2), true, false),
            ("update-os-7+0-3.conf", Some(0), Some(3), true, true),
            ("update-os-7+0.conf", Some(0), Some(0), true, true),
            ("update-os-7+4-0.conf", Some(4), Some(0), true, false),
        ];
        for &(name, left, done, counting, bad) in cases {
            let n = p(name);
            assert_eq!(n.stem(), "update-os-7", "{name}");
            assert_eq!(n.tries_left(), left, "{name}");
            assert_eq!(n.tries_done(), done, "{name}");
            assert_eq!(n.is_counting(), counting, "{name}");
            assert_eq!(n.is_bad(), bad, "{name}");
            assert_eq!(n.file_name(), name);
            assert_eq!(n.to_string(), name);
            assert_eq!(n.blessed().file_name(), "update-os-7.conf");
        }
    }

    #[test]
    fn with_tries_and_new() {
        let n = EntryName::new("update-os-7").expect("valid");
        assert!(!n.is_counting());
        assert_eq!(
            n.with_tries(3).expect("ok").file_name(),
            "update-os-7+3.conf"
        );
        assert_eq!(
            p("update-os-7+0-3.conf")
                .with_tries(2)
                .expect("ok")
                .file_name(),
            "update-os-7+2.conf"
        );
        assert!(n.with_tries(0).is_err());
        assert!(n.with_tries(10).is_err());
        assert!(n.with_tries(9).is_ok());
    }

    #[test]
    fn not_entries() {
        for s in [
            "update-os-7.conf.tmp-1234",
            ".update-os-7+3.conf.tmp-ab12",
            "update-os-7",
            ".conf",
            "+3.conf",
            ".hidden.conf",
            "auto-windows.conf",
            "a b.conf",
            "a/b.conf",
            "é.conf",
            "foo+bar.conf",
            "foo+3-.conf",
            "foo+-3.conf",
            "foo+3-1-2.conf",
            "foo+99999999999.conf",
            "x.CONF",
        ] {
            assert_eq!(EntryName::parse(s), None, "{s}");
        }
        assert!(EntryName::new("").is_err());
        assert!(EntryName::new("a+3").is_err());
        assert!(EntryName::new(&"a".repeat(MAX_STEM_LEN + 1)).is_err());
        assert!(EntryName::new(&"a".repeat(MAX_STEM_LEN)).is_ok());
    }

    #[test]
    fn counter_is_the_last_plus_segment() {
        // Not produced by us, but parsed as systemd-boot does: the counter is `+3`, which
        // leaves the stem `x+a`, and a stem with '+' is refused.
        assert_eq!(EntryName::parse("x+a+3.conf"), None);
        let n = p("a.b_c-1.2+12-34.conf");
        assert_eq!(n.stem(), "a.b_c-1.2");
        assert_eq!(n.tries_left(), Some(12));
        assert_eq!(n.tries_done(), Some(34));
        assert_eq!(n.tries_as_sdboot252(), Some((2, 4)));
    }

    #[test]
    fn error_names_the_rule() {
        let e = EntryName::new("a:b").expect_err("invalid").to_string();
        assert!(e.contains("a:b") && e.contains("':'"), "{e}");
    }
}
