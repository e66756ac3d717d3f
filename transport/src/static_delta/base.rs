//! Choosing the old file a new file is compressed against.
//!
//! Packages rename files on every version bump (`/usr/lib/modules/6.1.0-25-amd64/...`
//! becomes `.../6.1.0-26-amd64/...`, `libfoo.so.1.2.2` becomes `libfoo.so.1.2.3`), so
//! besides the same path the index looks files up by their path with every run of digits
//! replaced by `#`, then by their file name alone.

use std::collections::HashMap;

use store::id::FileId;

/// How many candidates are tried, in order, before a file goes without a base.
pub(super) const MAX_CANDIDATES: usize = 4;

/// The files of `from`, by path, by digit-normalised path and by file name.
#[derive(Default)]
pub(super) struct BaseIndex {
    by_path: HashMap<String, FileId>,
    by_pattern: HashMap<String, Vec<(String, FileId)>>,
    by_name: HashMap<String, Vec<(String, FileId)>>,
}

/// `path` with every maximal run of ASCII digits replaced by one `#`.
pub(super) fn normalize_digits(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

impl BaseIndex {
    /// Add a file of `from` at `path` (relative to the root, `/`-separated).
    pub(super) fn add(&mut self, path: &str, id: FileId) {
        self.by_path.entry(path.to_owned()).or_insert(id);
        self.by_pattern
            .entry(normalize_digits(path))
            .or_default()
            .push((path.to_owned(), id));
        self.by_name
            .entry(file_name(path).to_owned())
            .or_default()
            .push((path.to_owned(), id));
    }

    /// Candidate bases for a new file at `path`, best first, at most [`MAX_CANDIDATES`]:
    /// the file at the same path; then files whose digit-normalised path is the same;
    /// then files of the same name. Within a group, the longest common prefix with `path`
    /// wins, then the greater path (usually the newer version).
    pub(super) fn candidates(&self, path: &str) -> Vec<FileId> {
        let mut out: Vec<FileId> = Vec::with_capacity(MAX_CANDIDATES);
        let push = |id: FileId, out: &mut Vec<FileId>| {
            if out.len() < MAX_CANDIDATES && !out.contains(&id) {
                out.push(id);
            }
        };
        if let Some(id) = self.by_path.get(path) {
            push(*id, &mut out);
        }
        for group in [
            self.by_pattern.get(&normalize_digits(path)),
            self.by_name.get(file_name(path)),
        ]
        .into_iter()
        .flatten()
        {
            let mut ranked: Vec<&(String, FileId)> = group.iter().collect();
            ranked.sort_by(|a, b| {
                common_prefix(&b.0, path)
                    .cmp(&common_prefix(&a.0, path))
                    .then_with(|| b.0.cmp(&a.0))
            });
            for (_, id) in ranked {
                push(*id, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize_digits, BaseIndex};
    use store::id::{FileId, ObjectId};

    fn id(n: u8) -> FileId {
        FileId(ObjectId::from_bytes([n; 32]))
    }

    #[test]
    fn digit_runs_collapse() {
        assert_eq!(
            normalize_digits("usr/lib/modules/6.1.0-26-amd64/kernel/x.ko"),
            "usr/lib/modules/#.#.#-#-amd#/kernel/x.ko"
        );
        assert_eq!(
            normalize_digits("libfoo.so.1.2.3"),
            normalize_digits("libfoo.so.1.2.2")
        );
        assert_eq!(normalize_digits(""), "");
    }

    #[test]
    fn same_path_then_versioned_path_then_name() {
        let mut ix = BaseIndex::default();
        ix.add("usr/lib/modules/6.1.0-25-amd64/kernel/x.ko", id(1));
        ix.add("usr/lib/libfoo.so.1.2.1", id(2));
        ix.add("usr/lib/libfoo.so.1.2.2", id(3));
        ix.add("etc/other/x.ko", id(4));
        ix.add("usr/bin/ls", id(5));
        assert_eq!(
            ix.candidates("usr/lib/modules/6.1.0-26-amd64/kernel/x.ko"),
            [id(1), id(4)]
        );
        // Both old versions match the pattern; the greater path wins the tie.
        assert_eq!(ix.candidates("usr/lib/libfoo.so.1.2.3"), [id(3), id(2)]);
        assert_eq!(ix.candidates("usr/bin/ls"), [id(5)]);
        assert_eq!(ix.candidates("opt/x.ko"), [id(1), id(4)]);
        assert!(ix.candidates("usr/bin/cat").is_empty());
    }
}
