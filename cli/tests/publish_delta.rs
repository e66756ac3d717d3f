//! `update publish` and static deltas at the level a user meets them: the default delta
//! from each branch head's parent, `--delta-from`, `--no-deltas`, reuse on the next
//! publish, the files in `deltas/` matching what the summary pins, and a listed delta
//! rebuilding the new commit in a repository that holds only the old one.
//!
//! Needs `cargo build -p update-cli` first.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use store::{CommitId, ObjectId, Repo};
use testkit::cli::{self, Run};
use transport::static_delta::apply_static_delta;
use transport::summary::{parse_signed, DeltaEntry, Summary};

struct Site {
    dir: tempfile::TempDir,
    repo: PathBuf,
    key: PathBuf,
    out: PathBuf,
}

fn words(seed: u64, len: usize) -> Vec<u8> {
    const W: &[&str] = &["alpha ", "beta ", "gamma ", "delta\n", "0x42 ", "{ ", "} "];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(W[(x % W.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let key = dir.path().join("summary.key");
        let out = dir.path().join("out");
        cli::init(&repo, "archive");
        cli::key_generate(&key);
        Site {
            dir,
            repo,
            key,
            out,
        }
    }

    /// Commit version `n` of a small OS tree on `os/stable`.
    fn commit(&self, n: u64) -> CommitId {
        let src = self.dir.path().join(format!("src{n}"));
        fs::create_dir_all(src.join("usr/lib")).unwrap();
        fs::create_dir_all(src.join("etc")).unwrap();
        let mut big = words(1, 300_000);
        for i in 0..n as usize {
            big[1000 * (i + 1)] = b'#';
        }
        fs::write(src.join("usr/lib/big.so"), &big).unwrap();
        fs::write(
            src.join(format!("usr/lib/libv.so.{n}")),
            words(2 + n, 20_000),
        )
        .unwrap();
        fs::write(src.join("etc/os-release"), format!("VERSION={n}\n")).unwrap();
        let id = cli::commit(
            &self.repo,
            "os/stable",
            src.as_os_str(),
            &["--subject", &format!("v{n}")],
        );
        id.parse().unwrap()
    }

    fn publish(&self, extra: &[&str]) -> Run {
        let mut args: Vec<OsString> = vec![
            "publish".into(),
            "--repo".into(),
            self.repo.clone().into(),
            "--key".into(),
            self.key.clone().into(),
            "--output".into(),
            self.out.clone().into(),
            "--delta-level".into(),
            "3".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let run = cli::update(args);
        run.success();
        run
    }

    fn summary(&self) -> Summary {
        let bytes = fs::read(self.out.join("summary")).unwrap();
        parse_signed(&bytes).unwrap().summary
    }

    /// The delta file a summary entry names, checked against the entry's pins.
    fn delta_file(&self, d: &DeltaEntry) -> Vec<u8> {
        let bytes = fs::read(self.out.join(format!("deltas/{}.delta", d.id))).unwrap();
        assert_eq!(bytes.len() as u64, d.size);
        assert_eq!(ObjectId::of(&bytes), d.id);
        bytes
    }
}

fn hops(s: &Summary) -> Vec<(CommitId, CommitId)> {
    s.deltas.iter().map(|d| (d.from, d.to)).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a failed");
}

#[test]
fn publish_writes_the_parent_delta_by_default_and_reuses_it() {
    let site = Site::new();
    let v1 = site.commit(1);
    // A first commit has no parent: nothing to offer.
    let run = site.publish(&[]);
    assert!(
        run.out().contains("0 static deltas listed"),
        "{}",
        run.describe()
    );
    assert!(site.summary().deltas.is_empty());

    let device = site.dir.path().join("device");
    copy_dir(&site.repo, &device);
    let v2 = site.commit(2);
    let run = site.publish(&[]);
    assert!(
        run.out().contains("1 static deltas listed: 1 written"),
        "{}",
        run.describe()
    );
    let s = site.summary();
    assert_eq!(hops(&s), [(v1, v2)]);
    let delta = site.delta_file(&s.deltas[0]);
    assert!(
        run.out()
            .contains(&format!("delta {v1} -> {v2} {} bytes", delta.len())),
        "{}",
        run.describe()
    );
    // Much smaller than the new commit's full download.
    let full = s.refs[0].download_size;
    assert!(
        delta.len() as u64 * 5 < full,
        "delta {} vs full {full}",
        delta.len()
    );

    // The next publish lists the same delta without writing it again.
    let run = site.publish(&[]);
    assert!(
        run.out()
            .contains("1 static deltas listed: 0 written (0 bytes), 1 reused"),
        "{}",
        run.describe()
    );
    assert_eq!(site.summary().deltas, s.deltas);

    // A damaged delta file is not reused: it is written again.
    let path = site.out.join(format!("deltas/{}.delta", s.deltas[0].id));
    fs::write(&path, b"damaged").unwrap();
    let run = site.publish(&[]);
    assert!(run.out().contains("1 written"), "{}", run.describe());
    assert_eq!(site.delta_file(&site.summary().deltas[0]), delta);

    // The delta rebuilds v2 in a copy of the repository taken when it held only v1.
    let repo = Repo::open(&device).unwrap();
    let txn = repo.begin().unwrap();
    let stats = apply_static_delta(&txn, &mut &delta[..], &v1, &v2).unwrap();
    txn.commit().unwrap();
    assert_eq!(stats.id, s.deltas[0].id);
    assert!(stats.patched_files >= 1, "{stats:?}");
    cli::fsck(&device).success();
    let a = site.dir.path().join("from-delta");
    let b = site.dir.path().join("from-publisher");
    cli::checkout(&device, &v2.to_string(), &a, &[]).success();
    cli::checkout(&site.repo, &v2.to_string(), &b, &[]).success();
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(diff.success(), "checkouts differ");
}

#[test]
fn delta_from_and_no_deltas_choose_the_hops() {
    let site = Site::new();
    let v1 = site.commit(1);
    let v2 = site.commit(2);
    let v3 = site.commit(3);
    let v1s = v1.to_string();

    // --delta-from v1 adds v1 → v3 to the default v2 → v3.
    site.publish(&["--delta-from", &v1s]);
    let s = site.summary();
    let mut want = vec![(v1, v3), (v2, v3)];
    want.sort();
    assert_eq!(hops(&s), want);
    for d in &s.deltas {
        site.delta_file(d);
    }

    // --no-deltas keeps only the explicit hops; a REV equal to the head is skipped.
    site.publish(&[
        "--no-deltas",
        "--delta-from",
        &v1s[..12],
        "--delta-from",
        "os/stable",
    ]);
    assert_eq!(hops(&site.summary()), [(v1, v3)]);

    site.publish(&["--no-deltas"]);
    assert!(site.summary().deltas.is_empty());

    // An unknown revision is an error before anything is published.
    let serial = site.summary().serial;
    let mut args: Vec<OsString> = vec![
        "publish".into(),
        "--repo".into(),
        site.repo.clone().into(),
        "--key".into(),
        site.key.clone().into(),
        "--output".into(),
        site.out.clone().into(),
        "--delta-from".into(),
        "no/such/branch".into(),
    ];
    args.shrink_to_fit();
    let run = cli::update(args);
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(site.summary().serial, serial);
}
