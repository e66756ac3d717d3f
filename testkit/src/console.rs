//! Reading a VM's serial console: the text without carriage returns and ANSI escapes (OVMF,
//! systemd-boot and systemd print both), and the `key=value` words of marker lines.

/// The serial log as plain text: `\r` dropped, `ESC [ params letter` sequences removed.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The value of `key=` in a marker line's space-separated words ("" when absent).
pub fn word<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or("")
}

/// The rest of each line that contains `marker`, after it, in order.
pub fn markers<'a>(console: &'a str, marker: &str) -> Vec<&'a str> {
    console
        .lines()
        .filter_map(|l| l.find(marker).map(|at| l[at + marker.len()..].trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_carriage_returns_go() {
        assert_eq!(clean(b"\x1b[0;32m  OK  \x1b[0m] x\r\n"), "  OK  ] x\n");
    }

    #[test]
    fn words_and_markers() {
        let c = "junk VMTEST-BOOTED version=2 n=1\nVMTEST-READY version=2\n";
        let b = markers(c, "VMTEST-BOOTED");
        assert_eq!(b, ["version=2 n=1"]);
        assert_eq!(word(b[0], "version"), "2");
        assert_eq!(word(b[0], "x"), "");
    }
}
