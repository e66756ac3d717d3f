//! A builder and devices for transport tests: a builder repository that commits a source
//! tree, signs and publishes it, and device repositories with the remote `origin` added.

use std::path::{Path, PathBuf};

use crate::cli::{self, update};
use crate::snapshot::Snapshot;
use crate::tree::rand_bytes;

/// A builder repository publishing into itself, and a source tree to commit.
pub struct World {
    _dir: tempfile::TempDir,
    /// The temp dir everything lives in.
    pub root: PathBuf,
    /// The builder's archive repository, published into itself.
    pub builder: PathBuf,
    /// The release key (secret; `.pub` beside it) that signs commits and summaries.
    pub key: PathBuf,
    /// The source tree committed by [`World::commit`].
    pub src: PathBuf,
}

/// Write `data` to `path`, creating its parent directories.
pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Text-like data that compresses a little and chunks deterministically.
pub fn texty(len: usize, seed: u64) -> Vec<u8> {
    let mut s = Vec::with_capacity(len + 16);
    for c in rand_bytes(len / 2 + 16, seed).chunks_exact(4) {
        let word = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 50_000;
        s.extend_from_slice(format!("{word:x} ").as_bytes());
        if s.len() >= len {
            break;
        }
    }
    s.truncate(len);
    s
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    /// A builder repository with a release key and a source tree.
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let builder = root.join("builder");
        cli::init(&builder, "archive");
        let key = root.join("keys/release");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        cli::key_generate(&key);
        let src = root.join("src");
        write(&src.join("usr/lib/big.bin"), &texty(600_000, 1));
        write(&src.join("usr/lib/random.bin"), &rand_bytes(300_000, 2));
        write(&src.join("usr/bin/tool"), &texty(50_000, 3));
        write(&src.join("etc/os-release"), b"NAME=test\nVERSION=1\n");
        for i in 0..40 {
            write(
                &src.join(format!("usr/share/doc/f{i}")),
                &texty(2_000 + i * 37, 100 + i as u64),
            );
        }
        std::os::unix::fs::symlink("../lib/big.bin", src.join("usr/bin/link")).unwrap();
        World {
            _dir: dir,
            root,
            builder,
            key,
            src,
        }
    }

    /// The builder's `file://` URL.
    pub fn url(&self) -> String {
        format!("file://{}", self.builder.display())
    }

    /// The release key's public half.
    pub fn pubkey(&self) -> PathBuf {
        self.root.join("keys/release.pub")
    }

    /// Commit the source tree to `main`, signed, with a version and timestamp.
    pub fn commit(&self, version: &str, timestamp: u64) -> String {
        let ts = timestamp.to_string();
        cli::commit(
            &self.builder,
            "main",
            self.src.as_os_str(),
            &[
                "--version",
                version,
                "--timestamp",
                &ts,
                "--sign-with",
                self.key.to_str().unwrap(),
            ],
        )
    }

    /// [`World::try_publish`], which must succeed.
    pub fn publish(&self, extra: &[&str]) {
        self.try_publish(extra).success();
    }

    /// Run `update publish` of the builder with the release key and `extra` options.
    pub fn try_publish(&self, extra: &[&str]) -> cli::Run {
        let mut args = vec![
            "publish",
            "--repo",
            self.builder.to_str().unwrap(),
            "--key",
            self.key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        update(args)
    }

    /// Publish the builder as `update publish` does, but through the library with the clock
    /// set to `now` (unix seconds) and an expiry of `expires_in` seconds: a summary that has
    /// already expired, or one signed at another second, without waiting for time to pass.
    pub fn publish_at(&self, now: u64, expires_in: u64) -> transport::publish::PublishReport {
        let repo = store::Repo::open(&self.builder)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.builder.display()));
        let opts = transport::publish::PublishOptions {
            key: self.key.clone(),
            expires_in,
            now: Some(now),
            ..Default::default()
        };
        transport::publish::publish(&repo, &opts).unwrap_or_else(|e| panic!("publish: {e}"))
    }

    /// A fresh device repository of `mode` with the remote `origin` added.
    pub fn device(&self, name: &str, mode: &str) -> PathBuf {
        self.device_at(name, mode, &self.url(), &[])
    }

    /// A fresh device repository with `origin` at `url`, with extra `remote add` options.
    pub fn device_at(&self, name: &str, mode: &str, url: &str, extra: &[&str]) -> PathBuf {
        let repo = self.root.join(name);
        cli::init(&repo, mode);
        let key = self.pubkey();
        let mut args = vec![
            "remote",
            "add",
            "--repo",
            repo.to_str().unwrap(),
            "origin",
            url,
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        update(args).success();
        repo
    }
}

/// Run `update pull --json` and return its final report.
pub fn pull(device: &Path, target: &str, extra: &[&str]) -> serde_json::Value {
    let run = try_pull(device, target, extra);
    run.success();
    let last = run.out().lines().last().unwrap_or_default().to_owned();
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("bad JSON {last:?}: {e}"))
}

/// Run `update pull --json` of `target` into `device` with `extra` options.
pub fn try_pull(device: &Path, target: &str, extra: &[&str]) -> cli::Run {
    let mut args = vec!["pull", "--repo", device.to_str().unwrap(), target, "--json"];
    args.extend_from_slice(extra);
    update(args)
}

/// The commit `origin:main` names on the device, if any.
pub fn pulled(device: &Path) -> Option<String> {
    let path = device.join("refs/remotes/origin/main");
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Check out `origin:main` of `device` below `work` and compare it with `src`.
pub fn assert_tree(device: &Path, src: &Path, work: &Path) {
    let dest = work.join(format!(
        "co-{}",
        rand_bytes(4, 9)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let _ = std::fs::remove_dir_all(&dest);
    cli::checkout(device, "origin:main", &dest, &[]).success();
    Snapshot::take(src)
        .unwrap()
        .assert_same(&Snapshot::take(&dest).unwrap(), "pulled tree vs source");
    std::fs::remove_dir_all(&dest).unwrap();
}

/// The invariants after a refused pull.
pub fn assert_refused(run: &cli::Run, device: &Path, before: Option<&str>, needle: &str) {
    assert_ne!(run.code(), Some(0), "pull should fail: {}", run.describe());
    assert!(
        run.describe()
            .to_lowercase()
            .contains(&needle.to_lowercase()),
        "error should mention {needle:?}: {}",
        run.describe()
    );
    assert_eq!(
        pulled(device).as_deref(),
        before,
        "ref moved on a failed pull"
    );
    cli::fsck(device).success();
}
