//! Trust state that can be neither poisoned nor frozen, and refs that mirror the remote
//! (issue 14, items 5-7), end to end with the `update` binary over `file://`: a summary
//! from a clock 20 years ahead, the two ways back from a frozen clock, a beta channel with
//! a higher serial, a pull that fails late, a ref renamed upstream, `refs --delete` and the
//! remote refs in `update refs`. After each: `update fsck` clean, the next good pull works.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::cli::{self, update};
use testkit::world::{assert_refused, pull, pulled, try_pull, World};

const YEAR: u64 = 365 * 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn trust_state(device: &Path) -> Vec<u8> {
    std::fs::read(device.join("remotes/origin/trust-state")).unwrap()
}

fn refs(device: &Path) -> String {
    update(["refs", "--repo", device.to_str().unwrap()])
        .success()
        .out()
        .to_owned()
}

/// Publish the builder with a summary timestamp 20 years ahead (a publisher whose clock
/// was wrong once); it is correctly signed and expires a week after that.
fn publish_from_the_future(w: &World) -> String {
    let ts = (now() + 20 * YEAR).to_string();
    w.publish(&["--timestamp", &ts]);
    ts
}

#[test]
fn summary_from_the_future_does_not_freeze_the_device() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    publish_from_the_future(&w);
    let device = w.device("device", "bare");
    let run = try_pull(&device, "origin", &[]);
    run.success();
    assert!(run.stdout.contains("timestamp-ahead"), "{}", run.describe());
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));

    // The next real summary (published now, expiring in 7 days) is accepted.
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    cli::fsck(&device).success();
    w.publish(&[]);
    pull(&device, "origin", &[]);
}

/// A device that lets summaries teach it any time (a skew of about 190 years) is frozen
/// by one from the future; the way back is the local command or a signed reset.
fn frozen_device(w: &World, name: &str) -> (PathBuf, String) {
    let v1 = w.commit("1.0", 1_700_000_000);
    publish_from_the_future(w);
    let device = w.device_at(name, "bare", &w.url(), &["--max-clock-skew", "10000w"]);
    pull(&device, "origin", &[]);
    w.publish(&[]);
    let before = trust_state(&device);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "expired");
    assert_eq!(
        trust_state(&device),
        before,
        "trust state moved on a refused pull"
    );
    (device, v1)
}

#[test]
fn frozen_clock_recovers_with_remote_reset_time() {
    let w = World::new();
    let (device, _) = frozen_device(&w, "device");
    let out = update([
        "remote",
        "reset-time",
        "--repo",
        device.to_str().unwrap(),
        "origin",
    ]);
    out.success();
    assert!(out.out().contains("serial 1 kept"), "{}", out.describe());
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    cli::fsck(&device).success();
    // The serial was kept: the summary from the future (serial 1) is still a rollback.
    assert_eq!(report["serial"], 3);
}

#[test]
fn frozen_clock_recovers_with_a_signed_reset_clock_summary() {
    let w = World::new();
    let (device, _) = frozen_device(&w, "device");
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&["--reset-clock"]);
    let run = try_pull(&device, "origin", &[]);
    run.success();
    assert!(run.stdout.contains("clock-reset"), "{}", run.describe());
    assert_eq!(pulled(&device).as_deref(), Some(v2.as_str()));
    // Without the flag, the next summaries are accepted too: the clock stays repaired.
    w.publish(&[]);
    pull(&device, "origin", &[]);
    cli::fsck(&device).success();
}

/// Move `from` to `to`, replacing it: serve another directory at the same URL.
fn serve(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::rename(from, to).unwrap();
}

#[test]
fn beta_channel_with_a_higher_serial_is_refused() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    let stable = w.root.join("stable");
    let beta = w.root.join("beta");
    let served = w.root.join("served");
    let publish_to = |dir: &Path, channel: &str| {
        w.publish(&["--output", dir.to_str().unwrap(), "--channel", channel]);
    };
    publish_to(&stable, "stable");
    let v2 = w.commit("2.0-beta", 1_700_000_100);
    for _ in 0..4 {
        publish_to(&beta, "beta");
    }
    serve(&stable, &served);
    let url = format!("file://{}", served.display());

    // Trust on first use: the first summary pins "stable".
    let device = w.device_at("device", "bare", &url, &[]);
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    // A device told its channel refuses beta even on its first pull.
    let told = w.device_at("told", "bare", &url, &["--channel", "stable"]);

    // Beta (serial 4, same key) is served in place of stable.
    serve(&served, &stable);
    serve(&beta, &served);
    let before = trust_state(&device);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "channel 'beta'");
    assert!(run.stderr.contains("'stable'"), "{}", run.describe());
    assert_eq!(
        trust_state(&device),
        before,
        "serial moved to the beta channel"
    );
    let run = try_pull(&told, "origin", &[]);
    assert_refused(&run, &told, None, "channel 'beta'");
    assert!(!told.join("remotes/origin/trust-state").exists());

    // The real repository still pulls after, with its own (lower) serial.
    serve(&served, &beta);
    serve(&stable, &served);
    w.publish(&["--output", served.to_str().unwrap()]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["serial"], 2);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    pull(&told, "origin", &[]);
    cli::fsck(&device).success();
}

#[test]
fn trust_state_is_unchanged_after_a_pull_that_fails_late() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);

    let packs = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        v.sort();
        v
    };
    let old = packs(&w.builder);
    std::fs::write(w.src.join("usr/lib/new.bin"), vec![7u8; 200_000]).unwrap();
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    let new: Vec<PathBuf> = packs(&w.builder)
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect();
    assert!(!new.is_empty());
    let saved: Vec<Vec<u8>> = new.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for p in &new {
        let mut b = std::fs::read(p).unwrap();
        for i in (0..b.len()).step_by(997) {
            b[i] ^= 0x55;
        }
        std::fs::write(p, b).unwrap();
    }
    let before = trust_state(&device);
    let run = try_pull(&device, "origin", &["--no-deltas"]);
    assert_refused(&run, &device, Some(&v1), "");
    assert_eq!(
        trust_state(&device),
        before,
        "trust state saved by a failed pull"
    );

    for (p, b) in new.iter().zip(&saved) {
        std::fs::write(p, b).unwrap();
    }
    let report = pull(&device, "origin", &["--no-deltas"]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    assert_ne!(trust_state(&device), before);
    cli::fsck(&device).success();
}

fn commit_to(w: &World, branch: &str, ts: u64) -> String {
    cli::commit(
        &w.builder,
        branch,
        w.src.as_os_str(),
        &[
            "--timestamp",
            &ts.to_string(),
            "--sign-with",
            w.key.to_str().unwrap(),
        ],
    )
}

#[test]
fn ref_renamed_upstream_is_mirrored() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);
    assert_eq!(refs(&device), format!("{v1} origin:main"));

    // `main` becomes `main/stable` upstream.
    let builder = w.builder.to_str().unwrap();
    update(["refs", "--repo", builder, "--delete", "main"]).success();
    let v2 = commit_to(&w, "main/stable", 1_700_000_100);
    w.publish(&[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["removed"], serde_json::json!(["main"]));
    assert_eq!(refs(&device), format!("{v2} origin:main/stable"));
    cli::fsck(&device).success();

    // And back: `main/stable` becomes `main` again.
    update(["refs", "--repo", builder, "--delete", "main/stable"]).success();
    let v3 = commit_to(&w, "main", 1_700_000_200);
    w.publish(&[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["removed"], serde_json::json!(["main/stable"]));
    assert_eq!(refs(&device), format!("{v3} origin:main"));
    cli::fsck(&device).success();
    pull(&device, "origin", &[]);
}

#[test]
fn refs_lists_remote_refs_and_deletes_refs() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let dev = device.to_str().unwrap();
    pull(&device, "origin", &[]);
    assert_eq!(refs(&device), format!("{v1} origin:main"));
    let json = update(["refs", "--repo", dev, "--json"])
        .success()
        .out()
        .to_owned();
    assert!(json.contains("origin:main"), "{json}");

    // A local branch and a remote ref, each deleted by name.
    cli::commit(&device, "local", w.src.as_os_str(), &[]);
    assert!(refs(&device).contains(" local\n"));
    update(["refs", "--repo", dev, "--delete", "local"]).success();
    update(["refs", "--repo", dev, "--delete", "origin:main"]).success();
    assert_eq!(refs(&device), "");
    let run = update(["refs", "--repo", dev, "--delete", "origin:main"]);
    assert_ne!(run.code(), Some(0));
    assert!(run.stderr.contains("origin:main"), "{}", run.describe());
    cli::fsck(&device).success();
    pull(&device, "origin", &[]);
    assert_eq!(refs(&device), format!("{v1} origin:main"));

    // `remote remove` takes its refs along; a remote added again pulls afresh.
    update(["remote", "remove", "--repo", dev, "origin"]).success();
    assert_eq!(refs(&device), "");
    cli::fsck(&device).success();
    let key = w.pubkey();
    update([
        "remote",
        "add",
        "--repo",
        dev,
        "origin",
        &w.url(),
        "--key",
        key.to_str().unwrap(),
    ])
    .success();
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
}
