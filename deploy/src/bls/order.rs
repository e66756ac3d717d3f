//! The order in which systemd-boot 252 lists entries; with no `default` in `loader.conf`
//! it boots the first one.
//!
//! Ported from systemd v252 `src/boot/efi/boot.c` (`config_entry_compare`,
//! `config_entry_parse_tries`, `config_entry_add_from_file`) and
//! `src/fundamental/string-util-fundamental.c` (`strverscmp_improved`).

use std::cmp::Ordering;

use super::entry::Entry;
use super::name::EntryName;

/// Compare two version strings as systemd's `strverscmp_improved` does (`Less` means `a`
/// is older).
///
/// The strings are split into numeric and alphabetic segments; `~` marks a pre-release
/// (older than anything), `-` separates version and release, `^` marks a patched release,
/// `.` a point release; every other character is a separator and ignored. Comparison stops
/// at a NUL, as in C.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let a = until_nul(a.as_bytes());
    let b = until_nul(b.as_bytes());
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        // Drop leading invalid characters.
        while i < a.len() && !is_version_char(a[i]) {
            i += 1;
        }
        while j < b.len() && !is_version_char(b[j]) {
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));

        // '~': the string with it is older.
        if ca == b'~' || cb == b'~' {
            let r = (ca != b'~').cmp(&(cb != b'~'));
            if r.is_ne() {
                return r;
            }
            i += 1;
            j += 1;
        }
        // At the end of one string, the longer one is newer.
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == 0 || cb == 0 {
            return ca.cmp(&cb);
        }
        for sep in [b'-', b'^', b'.'] {
            let (ca, cb) = (at(a, i), at(b, j));
            if ca == sep || cb == sep {
                let r = (ca != sep).cmp(&(cb != sep));
                if r.is_ne() {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca.is_ascii_digit() || cb.is_ascii_digit() {
            let ea = i + a[i.min(a.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            let eb = j + b[j.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            // A numeric segment is newer than an empty one.
            let r = (i != ea).cmp(&(j != eb));
            if r.is_ne() {
                return r;
            }
            // Skip leading zeros (they are digits, so this stays inside the segment),
            // then the longer number is newer, and equal lengths compare as strings.
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }
            let r = (ea - i)
                .cmp(&(eb - j))
                .then_with(|| a[i..ea].cmp(&b[j..eb]));
            if r.is_ne() {
                return r;
            }
            i = ea;
            j = eb;
        } else {
            let ea = i + a[i.min(a.len())..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            let eb = j + b[j.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            let n = (ea - i).min(eb - j);
            let r = a[i..i + n].cmp(&b[j..j + n]);
            if r.is_ne() {
                return r;
            }
            let r = (ea - i).cmp(&(eb - j));
            if r.is_ne() {
                return r;
            }
            i = ea;
            j = eb;
        }
    }
}

fn until_nul(s: &[u8]) -> &[u8] {
    s.iter().position(|&c| c == 0).map_or(s, |n| &s[..n])
}

fn is_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// Compare two entries in systemd-boot 252's menu order (`Less` means `a` is listed, and
/// without `default` booted, before `b`):
///
/// 1. entries with no tries left (`+0`) last;
/// 2. entries with a `sort-key` before entries without;
/// 3. when both have one: `sort-key` ascending (`strcmp`), then `machine-id` ascending
///    (missing first), then `version` descending by [`version_cmp`];
/// 4. the id descending by [`version_cmp`]: the id is the whole file name, counter and
///    `.conf` included, lowercased;
/// 5. when both count: more tries left first, then fewer tries done first.
///
/// The counters are read as 252 reads them (only their last digit; see
/// [`super::MAX_TRIES`]).
pub fn boot_cmp(a: (&EntryName, &Entry), b: (&EntryName, &Entry)) -> Ordering {
    let (an, ae) = a;
    let (bn, be) = b;
    let at = an.tries_as_sdboot252();
    let bt = bn.tries_as_sdboot252();
    let a_bad = matches!(at, Some((0, _)));
    let b_bad = matches!(bt, Some((0, _)));
    let r = a_bad.cmp(&b_bad);
    if r.is_ne() {
        return r;
    }
    let r = ae.sort_key.is_none().cmp(&be.sort_key.is_none());
    if r.is_ne() {
        return r;
    }
    if let (Some(ak), Some(bk)) = (&ae.sort_key, &be.sort_key) {
        // systemd-boot compares UTF-16 code units.
        let r = ak.encode_utf16().cmp(bk.encode_utf16());
        if r.is_ne() {
            return r;
        }
        // strcmp_ptr: a missing machine-id sorts first.
        let r = match (&ae.machine_id, &be.machine_id) {
            (Some(x), Some(y)) => x.encode_utf16().cmp(y.encode_utf16()),
            (x, y) => x.is_some().cmp(&y.is_some()),
        };
        if r.is_ne() {
            return r;
        }
        let r = version_cmp(
            ae.version.as_deref().unwrap_or(""),
            be.version.as_deref().unwrap_or(""),
        );
        if r.is_ne() {
            return r.reverse();
        }
    }
    let ai = an.file_name().to_ascii_lowercase();
    let bi = bn.file_name().to_ascii_lowercase();
    let r = version_cmp(&ai, &bi);
    if r.is_ne() {
        return r.reverse();
    }
    match (at, bt) {
        (Some((al, ad)), Some((bl, bd))) => bl.cmp(&al).then(ad.cmp(&bd)),
        _ => Ordering::Equal,
    }
}

/// Sort `entries` into systemd-boot 252's order: index 0 is the entry it boots when
/// `loader.conf` has no `default` and no `LoaderEntryDefault`/one-shot variable is set.
///
/// systemd-boot also drops entries whose `linux` file is missing or whose `architecture`
/// does not match; the caller passes only entries that can boot.
pub fn boot_order(entries: &mut [(EntryName, Entry)]) {
    entries.sort_by(|a, b| boot_cmp((&a.0, &a.1), (&b.0, &b.1)));
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::{boot_order, version_cmp};
    use crate::bls::entry::Entry;
    use crate::bls::name::EntryName;

    /// systemd's test_strverscmp_improved list, oldest first.
    const ORDERED: &[&str] = &[
        "~1",
        "",
        "ab",
        "abb",
        "abc",
        "0001",
        "002",
        "12",
        "122",
        "122.9",
        "123~rc1",
        "123",
        "123-a",
        "123-a.1",
        "123-a1",
        "123-a1.1",
        "123-3",
        "123-3.1",
        "123^patch1",
        "123^1",
        "123.a-1",
        "123.1-1",
        "123a-1",
        "124",
    ];

    fn newer(older: &str, newer: &str) {
        assert_eq!(
            version_cmp(older, newer),
            Ordering::Less,
            "{older} < {newer}"
        );
        assert_eq!(
            version_cmp(newer, older),
            Ordering::Greater,
            "{newer} > {older}"
        );
        assert_eq!(version_cmp(older, older), Ordering::Equal);
        assert_eq!(version_cmp(newer, newer), Ordering::Equal);
    }

    #[test]
    fn systemd_ordered_list() {
        for (n, a) in ORDERED.iter().enumerate() {
            for b in &ORDERED[n + 1..] {
                newer(a, b);
            }
        }
    }

    #[test]
    fn systemd_pairs() {
        let pairs = [
            ("123.45-67.88", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.89a"),
            ("123.45-67.ab", "123.45-67.89"),
            ("123.45-67.9", "123.45-67.89"),
            ("123.45-67", "123.45-67.89"),
            ("123.45-66.89", "123.45-67.89"),
            ("123.45-9.99", "123.45-67.89"),
            ("123.42-99.99", "123.45-67.89"),
            ("123-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123-45.67.89"),
            ("123~rc1-99.99", "123~rc2-67.89"),
            ("123~rc1-99.99", "123^aa2-67.89"),
            ("123~rc1-99.99", "123aa2-67.89"),
            ("123-99.99", "123^aa2-67.89"),
            ("123-99.99", "123aa2-67.89"),
            ("123^45-67.89", "123.45-67.89"),
            ("123^aa1-99.99", "123^aa2-67.89"),
            ("123^aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123.ab2-67.89"),
        ];
        for (a, b) in pairs {
            newer(a, b);
        }
    }

    #[test]
    fn systemd_corner_cases() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("123_aa2-67.89", "123aa+2-67.89", Equal),
            ("123.", "123", Greater),
            ("12_3", "123", Less),
            ("12_3", "12", Greater),
            ("12_3", "12.3", Greater),
            ("123.0", "123", Greater),
            ("123_0", "123", Greater),
            ("123..0", "123.0", Less),
            ("0_", "0", Equal),
            ("_0_", "0", Equal),
            ("_0", "0", Equal),
            ("0", "0___", Equal),
            ("", "_", Equal),
            ("_", "", Equal),
            ("_", "_", Equal),
            ("", "~", Greater),
            ("~", "", Less),
            ("~", "~", Equal),
            ("1٠١٢٣٤٥٦٧٨٩", "1", Equal),
            // rpm's suite as kept by systemd
            ("1.0", "2.0", Less),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Greater),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2.0", "2_0", Less),
            ("a+", "a_", Equal),
            ("+", "_", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1", "1.0^git1~pre", Greater),
            ("1b.fc17", "1.fc17", Greater),
            ("1.1.α", "1.1.β", Equal),
            ("1.1.ββ", "1.1.αα", Equal),
            // leading zeros only
            ("00", "0", Equal),
            ("00", "1", Less),
            ("7", "10", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(version_cmp(a, b), want, "{a:?} vs {b:?}");
        }
    }

    fn ours(gen: u32, version: &str) -> Entry {
        Entry {
            title: Some(format!("os gen {gen}")),
            version: Some(version.into()),
            sort_key: Some("update-os".into()),
            linux: "/update/os/k/vmlinuz".into(),
            options: vec![format!("update.deployment=os/c{gen}.0")],
            ..Entry::default()
        }
    }

    fn name(s: &str) -> EntryName {
        EntryName::parse(s).expect("valid")
    }

    fn order(list: &[(&str, Entry)]) -> Vec<String> {
        let mut v: Vec<(EntryName, Entry)> =
            list.iter().map(|(n, e)| (name(n), e.clone())).collect();
        boot_order(&mut v);
        v.into_iter().map(|(n, _)| n.file_name()).collect()
    }

    #[test]
    fn findings_table_sequence() {
        // FINDINGS.md: entries without sort-key, a.conf (old) and b+3.conf (new).
        let plain = Entry {
            linux: "/vmlinuz".into(),
            version: None,
            ..Entry::default()
        };
        for (b, first) in [
            ("b+3.conf", "b+3.conf"),
            ("b+2-1.conf", "b+2-1.conf"),
            ("b+1-2.conf", "b+1-2.conf"),
            ("b+0-3.conf", "a.conf"),
            ("b.conf", "b.conf"),
        ] {
            let got = order(&[("a.conf", plain.clone()), (b, plain.clone())]);
            assert_eq!(got[0], first, "{got:?}");
        }
    }

    #[test]
    fn our_entries_through_a_failed_trial() {
        for (new, first) in [
            ("update-os-8+3.conf", "update-os-8+3.conf"),
            ("update-os-8+2-1.conf", "update-os-8+2-1.conf"),
            ("update-os-8+1-2.conf", "update-os-8+1-2.conf"),
            ("update-os-8+0-3.conf", "update-os-7.conf"),
            ("update-os-8.conf", "update-os-8.conf"),
        ] {
            let got = order(&[("update-os-7.conf", ours(7, "7")), (new, ours(8, "8"))]);
            assert_eq!(got[0], first, "{got:?}");
        }
    }

    #[test]
    fn newer_version_beats_old_blessed_whatever_the_name() {
        // Versions compare as numbers: gen 10 over gen 9, though "9" > "10" as strings.
        let got = order(&[
            ("update-os-9.conf", ours(9, "9")),
            ("update-os-10+3.conf", ours(10, "10")),
        ]);
        assert_eq!(got, ["update-os-10+3.conf", "update-os-9.conf"]);
        // And with the names the other way round, the version still wins.
        let got = order(&[("zzz.conf", ours(1, "1")), ("aaa+3.conf", ours(2, "2"))]);
        assert_eq!(got, ["aaa+3.conf", "zzz.conf"]);
    }

    #[test]
    fn sort_key_before_none() {
        let foreign = Entry {
            linux: "/v".into(),
            version: Some("999".into()),
            ..Entry::default()
        };
        let got = order(&[
            ("zzzz-foreign.conf", foreign),
            ("update-os-1.conf", ours(1, "1")),
        ]);
        assert_eq!(got, ["update-os-1.conf", "zzzz-foreign.conf"]);
        // sort-key ascending by strcmp.
        let mut other = ours(50, "50");
        other.sort_key = Some("zos".into());
        let got = order(&[("b.conf", other), ("a.conf", ours(1, "1"))]);
        assert_eq!(got, ["a.conf", "b.conf"]);
    }

    #[test]
    fn bad_entries_last_even_with_sort_key() {
        let foreign = Entry {
            linux: "/v".into(),
            ..Entry::default()
        };
        let got = order(&[
            ("update-os-9+0-3.conf", ours(9, "9")),
            ("foreign.conf", foreign),
            ("update-os-8+0.conf", ours(8, "8")),
        ]);
        assert_eq!(
            got,
            ["foreign.conf", "update-os-9+0-3.conf", "update-os-8+0.conf"]
        );
    }

    #[test]
    fn same_id_counter_tiebreak() {
        // Same version and sort-key: id descending decides ("+3" > "+2-1" as versions).
        let got = order(&[("x+2-1.conf", ours(1, "1")), ("x+3.conf", ours(1, "1"))]);
        assert_eq!(got, ["x+3.conf", "x+2-1.conf"]);
        // Blessed vs counting with equal version: by id, "x+3.conf" is the newer
        // version string ("x" "3" "conf" against "x" ".conf").
        let got = order(&[("x.conf", ours(1, "1")), ("x+3.conf", ours(1, "1"))]);
        assert_eq!(got[0], "x+3.conf");
    }

    #[test]
    fn sdboot252_reads_only_the_last_digit() {
        // "+10" is 0 tries left for 252: bad, sorted last.
        let got = order(&[
            ("update-os-9+10.conf", ours(9, "9")),
            ("update-os-1.conf", ours(1, "1")),
        ]);
        assert_eq!(got[0], "update-os-1.conf");
    }

    proptest! {
        #[test]
        fn version_cmp_is_antisymmetric(a in "[0-9a-c~^._+-]{0,8}", b in "[0-9a-c~^._+-]{0,8}") {
            prop_assert_eq!(version_cmp(&a, &b), version_cmp(&b, &a).reverse());
            prop_assert_eq!(version_cmp(&a, &a), Ordering::Equal);
        }

        #[test]
        fn version_cmp_total_on_any_text(a in any::<String>(), b in any::<String>()) {
            let _ = version_cmp(&a, &b);
        }
    }
}
