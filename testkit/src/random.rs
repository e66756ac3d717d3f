//! Seeded generation of deep and wide trees with every entry kind.
//!
//! The same seed always gives the same [`Tree`]; a failing test prints the seed and the
//! tree as DSL so it can be replayed. Set `UPDATE_TEST_SEED` to run one seed.

use crate::tree::{cap_net_raw_v2, Content, Entry, Tree};

/// SplitMix64: small, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bounds for a generated tree.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Deepest directory nesting.
    pub max_depth: usize,
    /// Most entries created directly in one directory.
    pub max_width: usize,
    /// Most entries in the whole tree (directories included).
    pub max_entries: usize,
    /// Allow files of 1 MiB and more (at most two per tree).
    pub big_files: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            max_depth: 7,
            max_width: 9,
            max_entries: 160,
            big_files: true,
        }
    }
}

const NAMES: &[&str] = &[
    "-rf",
    "--help",
    "-",
    " lead space",
    "trail space ",
    "a b c",
    "日本語のファイル",
    "émoji 🦀 crab",
    "...",
    ".hidden",
    "..x",
    "x..",
    "tab\there",
    "new\nline",
    "back\\slash",
    "*glob?[x]",
    "%s%n",
    "$(echo pwned)",
    "quote'\"",
    "CON",
    "UPPER",
    "upper",
    "#hash",
    "~tilde",
    "Ω≈ç√",
    "\u{202e}rtl",
    "zero\u{200b}width",
];

const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o755, 0o600, 0o400, 0o000, 0o4755, 0o2755, 0o6755, 0o1755, 0o777, 0o666, 0o2711,
];
const DIR_MODES: &[u32] = &[0o755, 0o755, 0o700, 0o1777, 0o2775, 0o555, 0o3777, 0o711];
const IDS: &[u32] = &[
    0,
    0,
    0,
    1,
    2,
    1000,
    65534,
    65535,
    100_000,
    4_294_967_294,
    123_456_789,
];

/// A random tree from `seed` within `shape`. The root is `d . 0755 0 0`.
pub fn random_tree(seed: u64, shape: Shape) -> Tree {
    let mut g = Gen {
        rng: Rng::new(seed),
        shape,
        entries: vec![Entry::Dir {
            path: b".".to_vec(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        }],
        files: Vec::new(),
        count: 0,
        big: 0,
        seed,
    };
    g.dir(Vec::new(), 0);
    // A 255-byte name (the longest allowed) somewhere near the top.
    let long: String = "ü".repeat(127) + "x";
    debug_assert_eq!(long.len(), 255);
    g.entries.push(Entry::File {
        path: long.into_bytes(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        content: Content::Bytes(b"longest name".to_vec()),
    });
    Tree { entries: g.entries }
}

struct Gen {
    rng: Rng,
    shape: Shape,
    entries: Vec<Entry>,
    files: Vec<Vec<u8>>,
    count: usize,
    big: usize,
    seed: u64,
}

impl Gen {
    fn name(&mut self, taken: &mut Vec<Vec<u8>>) -> Vec<u8> {
        loop {
            let base = if self.rng.chance(45) {
                (*self.rng.pick(NAMES)).to_owned()
            } else {
                let len = 1 + self.rng.below(12);
                (0..len)
                    .map(|_| {
                        *self
                            .rng
                            .pick(&['a', 'b', 'z', '0', '9', '_', '.', '-', 'é', '世', ' '])
                    })
                    .collect()
            };
            let name = if taken.iter().any(|t| t == base.as_bytes()) || base == "." || base == ".."
            {
                format!("{base}{}", self.rng.below(10_000))
            } else {
                base
            };
            if name != "." && name != ".." && !taken.iter().any(|t| t == name.as_bytes()) {
                taken.push(name.clone().into_bytes());
                return name.into_bytes();
            }
        }
    }

    fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
        if dir.is_empty() {
            name.to_vec()
        } else {
            [dir, b"/", name].concat()
        }
    }

    fn size(&mut self) -> usize {
        match self.rng.below(20) {
            0..=3 => 0,
            4..=5 => 1,
            6 => 65535,
            7 => 65536,
            8 if self.shape.big_files && self.big < 2 => {
                self.big += 1;
                (1 << 20) + 1 + self.rng.below(70_000)
            }
            _ => self.rng.below(5000),
        }
    }

    fn dir(&mut self, dir: Vec<u8>, depth: usize) {
        let mut taken = Vec::new();
        let width = 1 + self.rng.below(self.shape.max_width);
        for _ in 0..width {
            if self.count >= self.shape.max_entries {
                return;
            }
            self.count += 1;
            let name = self.name(&mut taken);
            let path = Self::join(&dir, &name);
            let roll = self.rng.below(100);
            if roll < 22 && depth < self.shape.max_depth {
                self.entries.push(Entry::Dir {
                    path: path.clone(),
                    mode: *self.rng.pick(DIR_MODES),
                    uid: *self.rng.pick(IDS),
                    gid: *self.rng.pick(IDS),
                });
                if self.rng.chance(20) {
                    self.xattr(&path, false);
                }
                self.dir(path, depth + 1);
            } else if roll < 70 {
                let size = self.size();
                let content = if self.rng.chance(15) && !self.files.is_empty() {
                    // Same bytes as another file (maybe with another mode): dedup in the store.
                    Content::Random {
                        len: 100,
                        seed: self.seed,
                    }
                } else {
                    Content::Random {
                        len: size,
                        seed: self.rng.next_u64() >> 1,
                    }
                };
                self.entries.push(Entry::File {
                    path: path.clone(),
                    mode: *self.rng.pick(FILE_MODES),
                    uid: *self.rng.pick(IDS),
                    gid: *self.rng.pick(IDS),
                    content,
                });
                if self.rng.chance(20) {
                    self.xattr(&path, false);
                }
                if self.rng.chance(5) {
                    self.entries.push(Entry::Xattr {
                        path: path.clone(),
                        name: b"security.capability".to_vec(),
                        value: cap_net_raw_v2(),
                    });
                }
                self.files.push(path);
            } else if roll < 85 {
                let target: Vec<u8> = match self.rng.below(7) {
                    0 => b"/etc/passwd".to_vec(),
                    1 => b"../../../../../../..".to_vec(),
                    2 => b"dangling target with spaces".to_vec(),
                    3 => "ünïcødé/→".as_bytes().to_vec(),
                    4 => vec![b'a'; 1 + self.rng.below(4000)],
                    5 => b"/".to_vec(),
                    _ => self
                        .files
                        .last()
                        .cloned()
                        .unwrap_or_else(|| b"nowhere".to_vec()),
                };
                self.entries.push(Entry::Symlink {
                    path: path.clone(),
                    target,
                    uid: *self.rng.pick(IDS),
                    gid: *self.rng.pick(IDS),
                });
                if self.rng.chance(15) {
                    self.xattr(&path, true);
                }
            } else if !self.files.is_empty() {
                let existing = self.rng.pick(&self.files).clone();
                self.entries.push(Entry::Hardlink { path, existing });
            } else {
                self.entries.push(Entry::File {
                    path: path.clone(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    content: Content::Bytes(Vec::new()),
                });
                self.files.push(path);
            }
        }
    }

    /// One or two xattrs; `trusted.*` on symlinks (Linux refuses `user.*` there).
    fn xattr(&mut self, path: &[u8], symlink: bool) {
        let n = 1 + self.rng.below(2);
        for i in 0..n {
            let ns = if symlink || self.rng.chance(30) {
                "trusted"
            } else {
                "user"
            };
            let len = match self.rng.below(4) {
                0 => 0,
                1 => 1,
                2 => 1500,
                _ => self.rng.below(64),
            };
            self.entries.push(Entry::Xattr {
                path: path.to_vec(),
                name: format!("{ns}.k{i}-{}", self.rng.below(100)).into_bytes(),
                value: crate::tree::rand_bytes(len, self.rng.next_u64()),
            });
        }
    }
}
