//! Golden vectors: pin the canonical encoding of `docs/format.md` byte for byte.
//!
//! The values below are built in code; `fixtures/golden/vectors.toml` holds their encoded
//! bytes and ids, and `fixtures/golden/negative.toml` holds encodings that every decoder
//! must refuse. This test fails whenever an encoding, an id or a decoding rule changes.
//! After a deliberate format change (which also bumps the format version and updates the
//! spec), regenerate the files with
//!
//! ```text
//! UPDATE_BLESS=1 cargo test -p update-store --test golden
//! ```
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Deserialize;
use store::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use store::object::{
    Commit, DirMeta, DirTree, Encoder, EntryName, FileHasher, FileHeader, ObjectKind,
    SignatureEntry, Signatures, Xattrs,
};
use store::{Error, RefName, Repo, RepoMode};

/// The domain tag of the message a commit signature signs, as the spec writes it: the
/// library's constant must equal it.
const COMMIT_SIGNATURE_DOMAIN: &[u8] = b"update/commit-signature/v1\0";
/// The domain tag of the summary signature message.
const SUMMARY_SIGNATURE_DOMAIN: &[u8] = b"update/summary-signature/v1\0";

/// A decoded value of any kind that has a canonical encoding.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    File(FileHeader),
    DirMeta(DirMeta),
    DirTree(DirTree),
    Commit(Commit),
    Signatures(Signatures),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::File(_) => "file",
            Value::DirMeta(_) => "dirmeta",
            Value::DirTree(_) => "dirtree",
            Value::Commit(_) => "commit",
            Value::Signatures(_) => "signatures",
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Value::File(v) => v.encode(),
            Value::DirMeta(v) => v.encode(),
            Value::DirTree(v) => v.encode(),
            Value::Commit(v) => v.encode(),
            Value::Signatures(v) => v.encode(),
        }
    }
}

/// Decode `bytes` with the decoder of `kind`.
fn decode(kind: &str, bytes: &[u8]) -> store::Result<Value> {
    Ok(match kind {
        "file" => Value::File(FileHeader::decode(bytes)?),
        "dirmeta" => Value::DirMeta(DirMeta::decode(bytes)?),
        "dirtree" => Value::DirTree(DirTree::decode(bytes)?),
        "commit" => Value::Commit(Commit::decode(bytes)?),
        "signatures" => Value::Signatures(Signatures::decode(bytes)?),
        other => panic!("unknown kind {other}"),
    })
}

/// One positive vector.
struct Vector {
    name: &'static str,
    value: Value,
    /// File content (file vectors only).
    content: Option<Vec<u8>>,
}

impl Vector {
    fn new(name: &'static str, value: Value) -> Self {
        Vector {
            name,
            value,
            content: None,
        }
    }

    /// The object id: BLAKE3 of the encoding (followed by the content, for a file).
    /// A signature set is not content-addressed and has none.
    fn id(&self) -> Option<ObjectId> {
        match &self.value {
            Value::File(h) => {
                let mut hasher = FileHasher::new(h);
                hasher.update(self.content.as_deref().unwrap_or_default());
                Some(hasher.finish().0)
            }
            Value::Signatures(_) => None,
            v => Some(ObjectId::of(&v.encode())),
        }
    }
}

fn name(s: &str) -> EntryName {
    EntryName::new(s).unwrap()
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// `security.capability` granting CAP_NET_BIND_SERVICE (bit 10), effective: a
/// `vfs_cap_data` revision 2 (magic 0x02000001 = revision 2 | effective flag), then
/// permitted/inheritable low words and permitted/inheritable high words, all LE.
fn cap_net_bind_service() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

/// The fixed set of values whose encodings are pinned.
fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();

    let dirmeta_root = DirMeta::new(0o755, 0, 0, Xattrs::empty()).unwrap();
    let dirmeta_root_id = DirMetaId(ObjectId::of(&dirmeta_root.encode()));
    out.push(Vector::new("dirmeta-root", Value::DirMeta(dirmeta_root)));

    // Given out of order on purpose: Xattrs::new sorts by name bytes.
    let tmp_xattrs = Xattrs::new(vec![
        (b"user.comment".to_vec(), b"scratch".to_vec()),
        (
            b"security.selinux".to_vec(),
            b"system_u:object_r:tmp_t:s0\0".to_vec(),
        ),
    ])
    .unwrap();
    let dirmeta_tmp = DirMeta::new(0o1777, 0, 0, tmp_xattrs).unwrap();
    let dirmeta_tmp_id = DirMetaId(ObjectId::of(&dirmeta_tmp.encode()));
    out.push(Vector::new(
        "dirmeta-sticky-xattrs",
        Value::DirMeta(dirmeta_tmp),
    ));

    let hello = b"hello\n".to_vec();
    let h = FileHeader::regular(0o644, 0, 0, hello.len() as u64, Xattrs::empty()).unwrap();
    let mut v = Vector::new("file-regular", Value::File(h));
    v.content = Some(hello);
    let file_regular_id = FileId(v.id().unwrap());
    out.push(v);

    let h = FileHeader::regular(0o600, 1000, 1000, 0, Xattrs::empty()).unwrap();
    let mut v = Vector::new("file-empty", Value::File(h));
    v.content = Some(Vec::new());
    let file_empty_id = FileId(v.id().unwrap());
    out.push(v);

    let caps = Xattrs::new(vec![
        (b"user.origin".to_vec(), b"fixtures".to_vec()),
        (b"security.capability".to_vec(), cap_net_bind_service()),
    ])
    .unwrap();
    let content = b"#!/bin/sh\nexec true\n".to_vec();
    let h = FileHeader::regular(0o4755, 0, 27, content.len() as u64, caps).unwrap();
    let mut v = Vector::new("file-setuid-capability", Value::File(h));
    v.content = Some(content);
    let file_caps_id = FileId(v.id().unwrap());
    out.push(v);

    let h = FileHeader::symlink(b"../lib/libfoo.so.1".to_vec(), 0, 0, Xattrs::empty()).unwrap();
    let mut v = Vector::new("file-symlink", Value::File(h));
    v.content = Some(Vec::new());
    let file_symlink_id = FileId(v.id().unwrap());
    out.push(v);

    let empty_tree = DirTree::default();
    let empty_tree_id = DirTreeId(ObjectId::of(&empty_tree.encode()));
    out.push(Vector::new("dirtree-empty", Value::DirTree(empty_tree)));

    // Names sort by UTF-8 bytes: uppercase before lowercase, 'é' (0xc3 0xa9) after 'z'.
    let tree = DirTree::new(
        vec![
            (name("libfoo.so"), file_symlink_id),
            (name("README"), file_regular_id),
            (name("éclair"), file_empty_id),
            (name("ping"), file_caps_id),
        ],
        vec![
            (name("tmp"), empty_tree_id, dirmeta_tmp_id),
            (name("etc"), empty_tree_id, dirmeta_root_id),
        ],
    )
    .unwrap();
    let tree_id = DirTreeId(ObjectId::of(&tree.encode()));
    out.push(Vector::new("dirtree-files-and-dirs", Value::DirTree(tree)));

    let root = Commit {
        parent: None,
        timestamp: 1_700_000_000,
        subject: "Initial import".into(),
        body: String::new(),
        metadata: Vec::new(),
        root_tree: tree_id,
        root_meta: dirmeta_root_id,
    };
    root.validate().unwrap();
    let root_id = CommitId(ObjectId::of(&root.encode()));
    out.push(Vector::new("commit-root", Value::Commit(root)));

    let child = Commit {
        parent: Some(root_id),
        timestamp: 1_700_086_400,
        subject: "Update to 1.1".into(),
        body: "Fixes the ping capability.\n\nSecond paragraph.\n".into(),
        metadata: vec![
            ("update.arch".into(), "x86_64".into()),
            ("version".into(), "1.1".into()),
        ],
        root_tree: tree_id,
        root_meta: dirmeta_root_id,
    };
    child.validate().unwrap();
    let child_id = CommitId(ObjectId::of(&child.encode()));
    out.push(Vector::new("commit-child-metadata", Value::Commit(child)));

    out.push(Vector::new(
        "signatures-empty",
        Value::Signatures(Signatures::default()),
    ));

    let mut message = COMMIT_SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(child_id.0.as_bytes());
    let mut sigs = Signatures::default();
    for seed in [1u8, 2] {
        let key = signing_key(seed);
        sigs.insert(SignatureEntry {
            public_key: key.verifying_key().to_bytes(),
            signature: key.sign(&message).to_bytes(),
        });
    }
    sigs.validate().unwrap();
    out.push(Vector::new("signatures-two-keys", Value::Signatures(sigs)));

    out
}

/// Encodings every decoder must refuse: `(name, decoder kind, bytes, error, reason)`,
/// where `error` is `newer-format` or `decode` and `reason` a part of the message.
type Negative = (
    &'static str,
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
);

fn negatives(vectors: &[Vector]) -> Vec<Negative> {
    let get = |n: &str| vectors.iter().find(|v| v.name == n).unwrap().value.encode();
    let with = |n: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = get(n);
        f(&mut b);
        b
    };
    let id = [0x11u8; 32];
    let tree = |files: &[&[u8]], dirs: &[&[u8]]| {
        let mut e = Encoder::with_tag(ObjectKind::DirTree.tag());
        e.count(files.len());
        for n in files {
            e.bytes(n);
            e.raw(&id);
        }
        e.count(dirs.len());
        for n in dirs {
            e.bytes(n);
            e.raw(&id);
            e.raw(&id);
        }
        e.finish()
    };
    let dirmeta = |mode: u32, xattrs: &[(&[u8], &[u8])]| {
        let mut e = Encoder::with_tag(ObjectKind::DirMeta.tag());
        e.u32(mode);
        e.u32(0);
        e.u32(0);
        e.count(xattrs.len());
        for (n, v) in xattrs {
            e.bytes(n);
            e.bytes(v);
        }
        e.finish()
    };
    let file = |mode: u32, size: u64, target: &[u8]| {
        let mut e = Encoder::with_tag(ObjectKind::File.tag());
        e.u32(mode);
        e.u32(0);
        e.u32(0);
        e.u64(size);
        e.bytes(target);
        e.count(0);
        e.finish()
    };
    let commit = |parent: u8, subject: &[u8], meta: &[(&str, &str)]| {
        let mut e = Encoder::with_tag(ObjectKind::Commit.tag());
        e.u8(parent);
        if parent == 1 {
            e.raw(&id);
        }
        e.u64(0);
        e.bytes(subject);
        e.bytes(b"");
        e.count(meta.len());
        for (k, v) in meta {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.raw(&id);
        e.raw(&id);
        e.finish()
    };
    let sigs = |keys: &[u8]| {
        let mut e = Encoder::with_tag(b"USIG");
        e.count(keys.len());
        for k in keys {
            e.raw(&[*k; 32]);
            e.raw(&[0u8; 64]);
        }
        e.finish()
    };

    vec![
        (
            "dirmeta-trailing-byte",
            "dirmeta",
            with("dirmeta-root", &|b| b.push(0)),
            "decode",
            "1 trailing bytes",
        ),
        (
            "commit-trailing-byte",
            "commit",
            with("commit-root", &|b| b.push(0)),
            "decode",
            "1 trailing bytes",
        ),
        (
            "file-header-trailing-byte",
            "file",
            with("file-regular", &|b| b.push(0)),
            "decode",
            "1 trailing bytes",
        ),
        (
            "signatures-trailing-byte",
            "signatures",
            with("signatures-empty", &|b| b.push(0)),
            "decode",
            "1 trailing bytes",
        ),
        (
            "dirmeta-truncated",
            "dirmeta",
            with("dirmeta-root", &|b| {
                b.pop();
            }),
            "decode",
            "truncated",
        ),
        (
            "dirmeta-wrong-tag",
            "dirmeta",
            with("dirmeta-root", &|b| b[..4].copy_from_slice(b"UDTR")),
            "decode",
            "expected tag",
        ),
        (
            "dirtree-decoded-as-commit",
            "commit",
            get("dirtree-empty"),
            "decode",
            "expected tag",
        ),
        (
            "dirmeta-version-2",
            "dirmeta",
            with("dirmeta-root", &|b| b[4] = 2),
            "newer-format",
            "format version 2",
        ),
        (
            "commit-version-2",
            "commit",
            with("commit-root", &|b| b[4] = 2),
            "newer-format",
            "format version 2",
        ),
        (
            "file-header-version-2",
            "file",
            with("file-regular", &|b| b[4] = 2),
            "newer-format",
            "format version 2",
        ),
        (
            "signatures-version-2",
            "signatures",
            with("signatures-empty", &|b| b[4] = 2),
            "newer-format",
            "format version 2",
        ),
        (
            "dirmeta-version-0",
            "dirmeta",
            with("dirmeta-root", &|b| b[4] = 0),
            "decode",
            "unknown format version 0",
        ),
        (
            "dirtree-unsorted-files",
            "dirtree",
            tree(&[b"b", b"a"], &[]),
            "decode",
            "not sorted",
        ),
        (
            "dirtree-unsorted-dirs",
            "dirtree",
            tree(&[], &[b"b", b"a"]),
            "decode",
            "not sorted",
        ),
        (
            "dirtree-duplicate-file",
            "dirtree",
            tree(&[b"a", b"a"], &[]),
            "decode",
            "duplicate name",
        ),
        (
            "dirtree-file-and-dir-same-name",
            "dirtree",
            tree(&[b"a"], &[b"a"]),
            "decode",
            "duplicate name",
        ),
        (
            "dirtree-dotdot-name",
            "dirtree",
            tree(&[b".."], &[]),
            "decode",
            "'.' and '..'",
        ),
        (
            "dirtree-dot-name",
            "dirtree",
            tree(&[], &[b"."]),
            "decode",
            "'.' and '..'",
        ),
        (
            "dirtree-empty-name",
            "dirtree",
            tree(&[b""], &[]),
            "decode",
            "empty name",
        ),
        (
            "dirtree-slash-in-name",
            "dirtree",
            tree(&[b"a/b"], &[]),
            "decode",
            "contains '/'",
        ),
        (
            "dirtree-nul-in-name",
            "dirtree",
            tree(&[b"a\0b"], &[]),
            "decode",
            "contains NUL",
        ),
        (
            "dirtree-name-not-utf8",
            "dirtree",
            tree(&[b"\xff"], &[]),
            "decode",
            "not valid UTF-8",
        ),
        (
            "dirtree-name-256-bytes",
            "dirtree",
            tree(&[&[b'x'; 256]], &[]),
            "decode",
            "exceeds the limit of 255",
        ),
        (
            "dirtree-count-beyond-input",
            "dirtree",
            with("dirtree-empty", &|b| {
                b[5..9].copy_from_slice(&1000u32.to_le_bytes())
            }),
            "decode",
            "larger than the remaining bytes",
        ),
        (
            "dirtree-count-beyond-limit",
            "dirtree",
            with("dirtree-empty", &|b| {
                b[5..9].copy_from_slice(&u32::MAX.to_le_bytes())
            }),
            "decode",
            "exceeds the limit",
        ),
        (
            "dirmeta-xattrs-unsorted",
            "dirmeta",
            dirmeta(0o40755, &[(b"user.b", b""), (b"user.a", b"")]),
            "decode",
            "unique and sorted",
        ),
        (
            "dirmeta-xattrs-duplicate",
            "dirmeta",
            dirmeta(0o40755, &[(b"user.a", b"1"), (b"user.a", b"2")]),
            "decode",
            "unique and sorted",
        ),
        (
            "dirmeta-xattr-empty-name",
            "dirmeta",
            dirmeta(0o40755, &[(b"", b"")]),
            "decode",
            "without NUL",
        ),
        (
            "dirmeta-regular-file-mode",
            "dirmeta",
            dirmeta(0o100755, &[]),
            "decode",
            "S_IFDIR",
        ),
        (
            "dirmeta-unknown-mode-bits",
            "dirmeta",
            dirmeta(0o1040755, &[]),
            "decode",
            "S_IFDIR",
        ),
        (
            "file-header-device-node",
            "file",
            file(0o020644, 0, b""),
            "decode",
            "regular file or a symlink",
        ),
        (
            "file-header-directory",
            "file",
            file(0o040755, 0, b""),
            "decode",
            "regular file or a symlink",
        ),
        (
            "file-header-regular-with-target",
            "file",
            file(0o100644, 0, b"x"),
            "decode",
            "symlink target",
        ),
        (
            "file-header-symlink-empty-target",
            "file",
            file(0o120777, 0, b""),
            "decode",
            "symlink target",
        ),
        (
            "file-header-symlink-nul-target",
            "file",
            file(0o120777, 0, b"a\0b"),
            "decode",
            "symlink target",
        ),
        (
            "file-header-symlink-mode-0755",
            "file",
            file(0o120755, 0, b"x"),
            "decode",
            "0777",
        ),
        (
            "file-header-symlink-with-size",
            "file",
            file(0o120777, 1, b"x"),
            "decode",
            "non-zero size",
        ),
        (
            "commit-parent-flag-2",
            "commit",
            commit(2, b"s", &[]),
            "decode",
            "parent flag 2",
        ),
        (
            "commit-subject-not-utf8",
            "commit",
            commit(0, b"\xff", &[]),
            "decode",
            "not valid UTF-8",
        ),
        (
            "commit-metadata-unsorted",
            "commit",
            commit(0, b"s", &[("b", ""), ("a", "")]),
            "decode",
            "unique and sorted",
        ),
        (
            "commit-metadata-duplicate",
            "commit",
            commit(0, b"s", &[("a", "1"), ("a", "2")]),
            "decode",
            "unique and sorted",
        ),
        (
            "commit-metadata-empty-key",
            "commit",
            commit(0, b"s", &[("", "x")]),
            "decode",
            "empty",
        ),
        (
            "signatures-unsorted",
            "signatures",
            sigs(&[2, 1]),
            "decode",
            "sorted by public key",
        ),
        (
            "signatures-duplicate-key",
            "signatures",
            sigs(&[1, 1]),
            "decode",
            "sorted by public key",
        ),
        (
            "signatures-too-many",
            "signatures",
            sigs(&(0..65).collect::<Vec<u8>>()),
            "decode",
            "exceeds the limit of 64",
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

fn blessing() -> bool {
    std::env::var_os("UPDATE_BLESS").is_some_and(|v| v == "1")
}

/// Hex, 32 bytes a line, as a TOML multi-line string.
fn hex_block(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "\"\"".into();
    }
    let mut s = String::from("\"\"\"\n");
    for chunk in bytes.chunks(32) {
        s.push_str(&hex::encode(chunk));
        s.push('\n');
    }
    s.push_str("\"\"\"");
    s
}

const HEADER: &str =
    "# Generated by `UPDATE_BLESS=1 cargo test -p update-store --test golden`; do not edit.\n\
# Spec: docs/format.md. Hex may be split across lines: ignore whitespace.\n";

fn render_vectors(vectors: &[Vector]) -> String {
    let mut s = String::from(HEADER);
    s.push_str("# `hex` is the canonical encoding (for a file: its header). `content` is a\n");
    s.push_str("# file's content. `id` is BLAKE3(hex || content); a signature set has none.\n");
    for v in vectors {
        writeln!(s, "\n[[vector]]").unwrap();
        writeln!(s, "name = {:?}", v.name).unwrap();
        writeln!(s, "kind = {:?}", v.value.kind()).unwrap();
        if let Some(id) = v.id() {
            writeln!(s, "id = \"{id}\"").unwrap();
        }
        if let Some(c) = &v.content {
            writeln!(s, "content = {}", hex_block(c)).unwrap();
        }
        writeln!(s, "hex = {}", hex_block(&v.value.encode())).unwrap();
    }
    s
}

fn render_negatives(negs: &[Negative]) -> String {
    let mut s = String::from(HEADER);
    s.push_str("# Each `hex` must be refused by the decoder of `kind` with an error of class\n");
    s.push_str("# `error` (decode | newer-format) whose message contains `reason`.\n");
    for (name, kind, bytes, error, reason) in negs {
        writeln!(s, "\n[[negative]]").unwrap();
        writeln!(s, "name = {name:?}").unwrap();
        writeln!(s, "kind = {kind:?}").unwrap();
        writeln!(s, "error = {error:?}").unwrap();
        writeln!(s, "reason = {reason:?}").unwrap();
        writeln!(s, "hex = {}", hex_block(bytes)).unwrap();
    }
    s
}

#[derive(Deserialize)]
struct VectorFile {
    vector: Vec<StoredVector>,
}

#[derive(Deserialize)]
struct StoredVector {
    name: String,
    kind: String,
    id: Option<String>,
    content: Option<String>,
    hex: String,
}

#[derive(Deserialize)]
struct NegativeFile {
    negative: Vec<StoredNegative>,
}

#[derive(Deserialize)]
struct StoredNegative {
    name: String,
    kind: String,
    error: String,
    reason: String,
    hex: String,
}

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("valid hex in golden file")
}

/// Write the file when blessing; otherwise return its stored text.
fn stored(file: &str, rendered: &str) -> String {
    let path = golden_dir().join(file);
    if blessing() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, rendered).unwrap();
    }
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with `UPDATE_BLESS=1 cargo test -p update-store --test golden`",
            path.display()
        )
    })
}

#[test]
fn encodings_match_golden_vectors() {
    let vectors = vectors();
    let text = stored("vectors.toml", &render_vectors(&vectors));
    let file: VectorFile = toml::from_str(&text).unwrap();
    assert_eq!(
        file.vector
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vectors.iter().map(|v| v.name).collect::<Vec<_>>(),
        "the set of golden vectors changed; re-bless only for a deliberate format change"
    );
    for (v, s) in vectors.iter().zip(&file.vector) {
        let n = v.name;
        assert_eq!(s.kind, v.value.kind(), "{n}: kind");
        let bytes = unhex(&s.hex);
        let encoded = v.value.encode();
        assert!(
            encoded == bytes,
            "{n}: encoding changed\n  stored:  {}\n  encoded: {}\n\
             A format change needs a new format version, a spec update and a re-bless.",
            hex::encode(&bytes),
            hex::encode(&encoded),
        );
        // The decoder gives back exactly the value.
        let decoded = decode(&s.kind, &bytes).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(decoded, v.value, "{n}: decode(stored) differs");
        // The id is BLAKE3 of the stored bytes (then the content, for a file).
        let content = s.content.as_deref().map(unhex);
        assert_eq!(content, v.content, "{n}: content");
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        hasher.update(content.as_deref().unwrap_or_default());
        let from_stored = ObjectId::from(hasher.finalize());
        match (&s.id, v.id()) {
            (Some(stored_id), Some(id)) => {
                let stored_id: ObjectId = stored_id.parse().unwrap();
                assert_eq!(stored_id, id, "{n}: id changed");
                assert_eq!(from_stored, id, "{n}: id is not BLAKE3 of the stored bytes");
            }
            (None, None) => {}
            (a, b) => panic!("{n}: stored id {a:?}, computed {b:?}"),
        }
    }
    assert_eq!(
        text,
        render_vectors(&vectors),
        "vectors.toml is not what the generator writes; re-bless"
    );
}

#[test]
fn decoders_refuse_negative_vectors() {
    let negs = negatives(&vectors());
    let text = stored("negative.toml", &render_negatives(&negs));
    let file: NegativeFile = toml::from_str(&text).unwrap();
    assert_eq!(
        file.negative.len(),
        negs.len(),
        "the set of negative vectors changed; re-bless"
    );
    for (s, (name, kind, bytes, error, reason)) in file.negative.iter().zip(&negs) {
        assert_eq!(
            (
                s.name.as_str(),
                s.kind.as_str(),
                s.error.as_str(),
                s.reason.as_str()
            ),
            (*name, *kind, *error, *reason)
        );
        assert_eq!(unhex(&s.hex), *bytes, "{name}: bytes changed");
        let err = match decode(kind, bytes) {
            Ok(v) => panic!("{name}: decoded to {v:?}"),
            Err(e) => e,
        };
        match (&err, *error) {
            (
                Error::NewerFormat {
                    found: 2,
                    supported: 1,
                    ..
                },
                "newer-format",
            ) => {}
            (Error::Decode { .. }, "decode") => {}
            _ => panic!("{name}: expected a {error} error, got {err:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(reason),
            "{name}: message {msg:?} lacks {reason:?}"
        );
    }
    assert_eq!(
        text,
        render_negatives(&negs),
        "negative.toml is not what the generator writes; re-bless"
    );
}

#[test]
fn signatures_sign_the_domain_separated_commit_id() {
    let vectors = vectors();
    let child = vectors
        .iter()
        .find(|v| v.name == "commit-child-metadata")
        .unwrap();
    let Some(Value::Signatures(sigs)) = vectors
        .iter()
        .find(|v| v.name == "signatures-two-keys")
        .map(|v| v.value.clone())
    else {
        panic!("no signature vector");
    };
    let mut message = COMMIT_SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(child.id().unwrap().as_bytes());
    assert_eq!(message.len(), 27 + 32);
    // The library signs exactly the message of the spec.
    assert_eq!(
        store::sign::COMMIT_SIGNATURE_DOMAIN,
        COMMIT_SIGNATURE_DOMAIN
    );
    assert_eq!(
        store::sign::SUMMARY_SIGNATURE_DOMAIN,
        SUMMARY_SIGNATURE_DOMAIN
    );
    let child_id = CommitId(child.id().unwrap());
    assert_eq!(store::sign::commit_message(&child_id), message);
    for e in &sigs.0 {
        let key = VerifyingKey::from_bytes(&e.public_key).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&e.signature);
        key.verify_strict(&message, &sig).unwrap();
    }
}

/// Read a whole file below the repository root.
fn read(root: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn object_rel(id: &ObjectId, ext: &str) -> String {
    let hex = id.to_hex();
    format!("objects/{}/{}.{ext}", &hex[..2], &hex[2..])
}

/// The archive-mode layout of `docs/format.md`: config text, object paths and bytes,
/// the `.filez` framing, ref files and signature files.
#[test]
fn archive_repository_layout_matches_spec() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let repo = Repo::init(&root, RepoMode::Archive).unwrap();
    assert_eq!(
        String::from_utf8(read(&root, "config")).unwrap(),
        "[core]\nformat-version = 1\nmode = \"archive\"\n"
    );
    for d in ["objects", "refs/heads", "refs/remotes", "tmp"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    assert!(root.join("lock").is_file());

    let vectors = vectors();
    let txn = repo.begin().unwrap();
    let mut commits = Vec::new();
    for v in &vectors {
        match &v.value {
            Value::File(h) => {
                let content = v.content.clone().unwrap();
                let id = txn.write_file(h, &mut &content[..]).unwrap();
                assert_eq!(Some(id.0), v.id(), "{}", v.name);
            }
            Value::DirMeta(m) => assert_eq!(Some(txn.write_dirmeta(m).unwrap().0), v.id()),
            Value::DirTree(t) => assert_eq!(Some(txn.write_dirtree(t).unwrap().0), v.id()),
            Value::Commit(c) => {
                let id = txn.write_commit(c).unwrap();
                assert_eq!(Some(id.0), v.id());
                commits.push(id);
            }
            Value::Signatures(_) => {}
        }
    }
    txn.commit().unwrap();
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);

    for v in &vectors {
        let encoded = v.value.encode();
        let (ext, id) = match &v.value {
            Value::File(_) => ("filez", v.id().unwrap()),
            Value::DirMeta(_) => ("dirmeta", v.id().unwrap()),
            Value::DirTree(_) => ("dirtree", v.id().unwrap()),
            Value::Commit(_) => ("commit", v.id().unwrap()),
            Value::Signatures(_) => continue,
        };
        let on_disk = read(&root, &object_rel(&id, ext));
        if ext != "filez" {
            assert_eq!(
                on_disk, encoded,
                "{}: metadata objects are stored as encoded",
                v.name
            );
            continue;
        }
        // u32 LE header length, the header, then (regular files only) one zstd frame.
        let len = u32::from_le_bytes(on_disk[..4].try_into().unwrap()) as usize;
        assert_eq!(&on_disk[4..4 + len], &encoded[..], "{}", v.name);
        let rest = &on_disk[4 + len..];
        let Value::File(h) = &v.value else {
            unreachable!()
        };
        if h.is_symlink() {
            assert!(
                rest.is_empty(),
                "{}: a symlink has no content frame",
                v.name
            );
        } else {
            assert_eq!(
                &rest[..4],
                &[0x28, 0xb5, 0x2f, 0xfd],
                "{}: zstd magic",
                v.name
            );
            let mut back = Vec::new();
            zstd::stream::read::Decoder::new(rest)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(Some(back), v.content, "{}", v.name);
        }
    }

    let child = *commits.last().unwrap();
    let branch = RefName::new("os/x86_64/stable").unwrap();
    repo.write_ref(&branch, &child).unwrap();
    assert_eq!(
        read(&root, "refs/heads/os/x86_64/stable"),
        format!("{}\n", child.0.to_hex()).into_bytes()
    );

    let sigs = vectors
        .iter()
        .find(|v| v.name == "signatures-two-keys")
        .unwrap();
    let Value::Signatures(s) = &sigs.value else {
        unreachable!()
    };
    repo.write_signatures(&child, s).unwrap();
    assert_eq!(read(&root, &object_rel(&child.0, "sig")), s.encode());
    assert_eq!(repo.read_signatures(&child).unwrap(), *s);
}
