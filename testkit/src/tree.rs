//! Test trees from a small text DSL, one entry per line:
//!
//! ```text
//! # comment
//! d PATH MODE UID GID            directory (parents are made implicitly, 0755)
//! f PATH MODE UID GID CONTENT    regular file; CONTENT is the rest of the line, or
//!                                @rand:LEN:SEED for LEN pseudo-random bytes
//! l PATH TARGET [UID GID]        symlink
//! h PATH EXISTING                hardlink to an earlier file
//! x PATH NAME VALUE              extended attribute (VALUE 0x... is hex)
//! ```
//!
//! MODE is octal and may carry setuid/setgid/sticky bits. `.` is the root itself
//! (`d . 0755 0 0`). Tokens are split on spaces; inside a token `\s` is a space, `\t` a
//! tab, `\n` a newline, `\\` a backslash and `\xHH` any byte, so names with spaces and
//! non-UTF-8 names can be written. [`Tree::to_dsl`] prints a tree back in this form.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// The content of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` pseudo-random bytes from `seed` (see [`rand_bytes`]).
    Random {
        /// How many bytes.
        len: usize,
        /// Which bytes.
        seed: u64,
    },
}

impl Content {
    /// The bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Bytes(b) => b.clone(),
            Content::Random { len, seed } => rand_bytes(*len, *seed),
        }
    }
}

/// `len` bytes from a SplitMix64 stream seeded with `seed`.
pub fn rand_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::random::Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One line of the DSL. Paths are relative to the tree's root, as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory and its final mode and owner.
    Dir {
        /// Where.
        path: Vec<u8>,
        /// Permission bits (with setuid/setgid/sticky).
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A regular file.
    File {
        /// Where.
        path: Vec<u8>,
        /// Permission bits (with setuid/setgid/sticky).
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// What it holds.
        content: Content,
    },
    /// A symlink.
    Symlink {
        /// Where.
        path: Vec<u8>,
        /// What it points at.
        target: Vec<u8>,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A second name for an earlier file.
    Hardlink {
        /// The new name.
        path: Vec<u8>,
        /// The existing file.
        existing: Vec<u8>,
    },
    /// An extended attribute on an earlier entry.
    Xattr {
        /// Which entry.
        path: Vec<u8>,
        /// The attribute's name (`user.x`, `trusted.x`, `security.capability`, ...).
        name: Vec<u8>,
        /// Its value.
        value: Vec<u8>,
    },
}

/// A tree to build: entries in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries, each after its parents and hardlink targets.
    pub entries: Vec<Entry>,
}

/// The `security.capability` value (VFS_CAP_REVISION_2, effective) granting `cap_net_raw`.
pub fn cap_net_raw_v2() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    const CAP_NET_RAW: u32 = 13;
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE).to_le_bytes());
    v.extend_from_slice(&(1u32 << CAP_NET_RAW).to_le_bytes()); // permitted, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted, high word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, high word
    v
}

impl Tree {
    /// Parse the DSL.
    pub fn parse(text: &str) -> Result<Tree> {
        let mut entries = Vec::new();
        for (no, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let e = parse_line(line).with_context(|| format!("DSL line {}: {line}", no + 1))?;
            entries.push(e);
        }
        Ok(Tree { entries })
    }

    /// The tree as DSL text, which [`Tree::parse`] reads back to the same tree.
    pub fn to_dsl(&self) -> String {
        let mut s = String::new();
        for e in &self.entries {
            let line = match e {
                Entry::Dir {
                    path,
                    mode,
                    uid,
                    gid,
                } => format!("d {} {mode:o} {uid} {gid}", esc(path)),
                Entry::File {
                    path,
                    mode,
                    uid,
                    gid,
                    content,
                } => {
                    let c = match content {
                        Content::Bytes(b) => esc(b),
                        Content::Random { len, seed } => format!("@rand:{len}:{seed}"),
                    };
                    format!("f {} {mode:o} {uid} {gid} {c}", esc(path))
                }
                Entry::Symlink {
                    path,
                    target,
                    uid,
                    gid,
                } => format!("l {} {} {uid} {gid}", esc(path), esc(target)),
                Entry::Hardlink { path, existing } => format!("h {} {}", esc(path), esc(existing)),
                Entry::Xattr { path, name, value } => {
                    let v: String = value.iter().map(|b| format!("{b:02x}")).collect();
                    format!("x {} {} 0x{v}", esc(path), esc(name))
                }
            };
            s.push_str(&line);
            s.push('\n');
        }
        s
    }

    /// Create the tree under `root` (made if missing). Owners and modes are applied after
    /// all content is written (chown first: it clears setuid/setgid), then xattrs (after
    /// chown, which clears `security.capability`).
    pub fn build(&self, root: &Path) -> Result<()> {
        std::fs::create_dir_all(root).with_context(|| format!("mkdir {}", root.display()))?;
        let at = |p: &[u8]| -> PathBuf {
            if p == b"." {
                root.to_path_buf()
            } else {
                root.join(OsStr::from_bytes(p))
            }
        };
        let mut dirs: Vec<(PathBuf, u32, u32, u32)> = Vec::new();
        let mut files: Vec<(PathBuf, u32, u32, u32)> = Vec::new();
        let mut xattrs: Vec<(PathBuf, Vec<u8>, Vec<u8>)> = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Dir {
                    path,
                    mode,
                    uid,
                    gid,
                } => {
                    let p = at(path);
                    mkdirs(root, &p)?;
                    dirs.push((p, *mode, *uid, *gid));
                }
                Entry::File {
                    path,
                    mode,
                    uid,
                    gid,
                    content,
                } => {
                    let p = at(path);
                    mkdirs(root, p.parent().expect("has parent"))?;
                    std::fs::write(&p, content.bytes())
                        .with_context(|| format!("write {}", p.display()))?;
                    files.push((p, *mode, *uid, *gid));
                }
                Entry::Symlink {
                    path,
                    target,
                    uid,
                    gid,
                } => {
                    let p = at(path);
                    mkdirs(root, p.parent().expect("has parent"))?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(target), &p)
                        .with_context(|| format!("symlink {}", p.display()))?;
                    std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid))
                        .with_context(|| format!("lchown {} (needs root)", p.display()))?;
                }
                Entry::Hardlink { path, existing } => {
                    let p = at(path);
                    mkdirs(root, p.parent().expect("has parent"))?;
                    std::fs::hard_link(at(existing), &p)
                        .with_context(|| format!("link {}", p.display()))?;
                }
                Entry::Xattr { path, name, value } => {
                    xattrs.push((at(path), name.clone(), value.clone()));
                }
            }
        }
        for (p, mode, uid, gid) in &files {
            std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                .with_context(|| format!("chown {} (needs root)", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {}", p.display()))?;
        }
        for (p, name, value) in &xattrs {
            rustix::fs::lsetxattr(
                p,
                OsStr::from_bytes(name),
                value,
                rustix::fs::XattrFlags::empty(),
            )
            .with_context(|| {
                format!(
                    "setxattr {} on {} (needs root)",
                    String::from_utf8_lossy(name),
                    p.display()
                )
            })?;
        }
        // Deepest first, so a read-only parent is changed after its children.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (p, mode, uid, gid) in &dirs {
            std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                .with_context(|| format!("chown {} (needs root)", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {}", p.display()))?;
        }
        Ok(())
    }
}

/// Make `dir` and its missing parents below `root`, each 0755 whatever the umask.
fn mkdirs(root: &Path, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir != root {
        mkdirs(root, dir.parent().expect("below root"))?;
    }
    std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn parse_line(line: &str) -> Result<Entry> {
    let (kind, rest) = line.split_once(' ').ok_or_else(|| anyhow!("no fields"))?;
    let mut fields = rest.splitn(if kind == "f" { 5 } else { 4 }, ' ');
    let mut next =
        |what: &str| -> Result<&str> { fields.next().ok_or_else(|| anyhow!("missing {what}")) };
    let octal = |s: &str| u32::from_str_radix(s, 8).with_context(|| format!("mode '{s}'"));
    let num = |s: &str| s.parse::<u32>().with_context(|| format!("id '{s}'"));
    Ok(match kind {
        "d" => Entry::Dir {
            path: unesc(next("path")?)?,
            mode: octal(next("mode")?)?,
            uid: num(next("uid")?)?,
            gid: num(next("gid")?)?,
        },
        "f" => {
            let path = unesc(next("path")?)?;
            let mode = octal(next("mode")?)?;
            let uid = num(next("uid")?)?;
            let gid = num(next("gid")?)?;
            let c = fields.next().unwrap_or("");
            let content = if let Some(spec) = c.strip_prefix("@rand:") {
                let (len, seed) = spec
                    .split_once(':')
                    .ok_or_else(|| anyhow!("@rand:LEN:SEED"))?;
                Content::Random {
                    len: len.parse()?,
                    seed: seed.parse()?,
                }
            } else {
                Content::Bytes(unesc(c)?)
            };
            Entry::File {
                path,
                mode,
                uid,
                gid,
                content,
            }
        }
        "l" => {
            let path = unesc(next("path")?)?;
            let target = unesc(next("target")?)?;
            let (uid, gid) = match (fields.next(), fields.next()) {
                (Some(u), Some(g)) => (num(u)?, num(g)?),
                _ => (0, 0),
            };
            Entry::Symlink {
                path,
                target,
                uid,
                gid,
            }
        }
        "h" => Entry::Hardlink {
            path: unesc(next("path")?)?,
            existing: unesc(next("existing path")?)?,
        },
        "x" => {
            let path = unesc(next("path")?)?;
            let name = unesc(next("name")?)?;
            let v = next("value").unwrap_or("");
            let value = match v.strip_prefix("0x") {
                Some(hex) => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("?"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .with_context(|| format!("hex value '{v}'"))?,
                None => unesc(v)?,
            };
            Entry::Xattr { path, name, value }
        }
        other => bail!("unknown entry kind '{other}'"),
    })
}

/// Undo the token escapes (`\s`, `\t`, `\n`, `\\`, `\xHH`).
pub fn unesc(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b's') => out.push(b' '),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .ok_or_else(|| anyhow!("short \\x escape"))?;
                out.push(u8::from_str_radix(hex, 16)?);
                i += 2;
            }
            _ => bail!("bad escape in '{s}'"),
        }
        i += 2;
    }
    Ok(out)
}

/// Escape bytes into one DSL token.
pub fn esc(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                ' ' => out.push_str("\\s"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if out.is_empty() {
        // An empty token cannot be written; only file content may be empty, and it is the
        // last field of its line.
        return String::new();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsl_round_trips() {
        let text = "d . 755 0 0\nf a\\sb 4755 1 2 hello world\nf e 644 0 0 \nl s \\xff\\n 3 4\nh c a\\sb\nx a\\sb user.k 0x00ff\nf r 600 0 0 @rand:10:7\n";
        let t = Tree::parse(text).unwrap();
        assert_eq!(t.entries.len(), 7);
        assert_eq!(Tree::parse(&t.to_dsl()).unwrap(), t);
        assert_eq!(cap_net_raw_v2().len(), 20);
    }
}
