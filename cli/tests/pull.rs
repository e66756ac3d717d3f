//! `update remote` and `update pull` end to end, over `file://`: a builder commits and
//! publishes, a device adds the remote with the builder's key and pulls. Every hostile case
//! checks the invariants: a clear error naming the problem, the ref unchanged, `update
//! fsck` clean, and the next good pull succeeding.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use testkit::cli::{self, update};
use testkit::tree::rand_bytes;
use testkit::world::{assert_refused, assert_tree, pull, pulled, texty, try_pull, write, World};

#[test]
fn pull_then_update_fetches_only_what_changed() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    for mode in ["bare", "archive"] {
        let device = w.device(&format!("device-{mode}"), mode);
        let report = pull(&device, "origin", &[]);
        assert_eq!(report["refs"][0]["commit"], v1.as_str());
        assert_eq!(report["refs"][0]["version"], "1.0");
        assert_eq!(report["refs"][0]["updated"], true);
        assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
        assert_tree(&device, &w.src, &w.root);
        cli::fsck(&device).success();

        // Nothing new: only the summary and the signature set are read again.
        let again = pull(&device, "origin:main", &[]);
        assert_eq!(again["refs"][0]["updated"], false);
        assert!(again["bytes"].as_u64().unwrap() < 4096, "{again}");
    }

    // v2: one small edit in the middle of a big file, one new file.
    let full = pull(&w.device("device-full", "bare"), "origin", &[])["bytes"]
        .as_u64()
        .unwrap();
    let device = w.device("device-up", "bare");
    pull(&device, "origin", &[]);
    let mut big = std::fs::read(w.src.join("usr/lib/big.bin")).unwrap();
    big[300_000..300_010].copy_from_slice(b"0123456789");
    write(&w.src.join("usr/lib/big.bin"), &big);
    write(&w.src.join("usr/share/doc/new"), &texty(5_000, 77));
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&["--no-deltas"]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    assert_eq!(report["refs"][0]["previous"], v1.as_str());
    let bytes = report["bytes"].as_u64().unwrap();
    assert!(
        bytes * 5 < full,
        "an update of one chunk fetched {bytes} bytes, a full pull {full}"
    );
    assert_tree(&device, &w.src, &w.root);
    cli::fsck(&device).success();
}

#[test]
fn remote_add_list_remove() {
    let w = World::new();
    let device = w.device("device", "bare");
    let dev = device.to_str().unwrap();
    let list = update(["remote", "list", "--repo", dev, "--json"]);
    let list: serde_json::Value = serde_json::from_str(list.success().out()).unwrap();
    assert_eq!(list[0]["name"], "origin");
    assert_eq!(list[0]["url"], w.url());
    assert_eq!(list[0]["trusted_keys"].as_array().unwrap().len(), 1);

    // The same name twice, a bad name, a bad URL, a secret key, TLS options on http.
    let key = w.pubkey();
    let key = key.to_str().unwrap();
    let url = w.url();
    for (args, needle) in [
        (vec!["origin", url.as_str(), "--key", key], "exists"),
        (vec!["../x", url.as_str(), "--key", key], "remote name"),
        (
            vec!["x", "ftp://host/os", "--key", key],
            "http://, https:// or file://",
        ),
        (
            vec!["x", url.as_str(), "--key", w.key.to_str().unwrap()],
            "secret key",
        ),
        (
            vec!["x", "http://127.0.0.1:1/", "--key", key, "--tls-ca", key],
            "https",
        ),
    ] {
        let mut all = vec!["remote", "add", "--repo", dev];
        all.extend(args);
        let run = update(all);
        assert_eq!(run.code(), Some(1), "{}", run.describe());
        assert!(
            run.describe().contains(needle),
            "{needle}: {}",
            run.describe()
        );
    }
    update(["remote", "remove", "--repo", dev, "origin"]).success();
    let run = update(["remote", "remove", "--repo", dev, "origin"]);
    assert!(
        run.describe().contains("no such remote"),
        "{}",
        run.describe()
    );
    let list = update(["remote", "list", "--repo", dev]);
    assert_eq!(list.success().out().trim(), "");
}

#[test]
fn hostile_summaries_are_refused() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let summary = w.builder.join("summary");
    let good1 = std::fs::read(&summary).unwrap();
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);

    // A flipped byte in the body: the signature no longer verifies.
    let mut bad = good1.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    std::fs::write(&summary, &bad).unwrap();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "summary");

    // Signed by a key the device does not trust.
    std::fs::write(&summary, &good1).unwrap();
    let other = w.root.join("keys/other");
    update(["key", "generate", "--output", other.to_str().unwrap()]).success();
    let v2 = w.commit("2.0", 1_700_000_100);
    update([
        "publish",
        "--repo",
        w.builder.to_str().unwrap(),
        "--key",
        other.to_str().unwrap(),
    ])
    .success();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "no trusted signature");

    // A good serial 3, then the old serial 1 again: rollback.
    w.publish(&[]);
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    let good3 = std::fs::read(&summary).unwrap();
    std::fs::write(&summary, &good1).unwrap();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v2), "rollback");
    std::fs::write(&summary, &good3).unwrap();
    pull(&device, "origin", &[]);

    // An expired summary (freeze attack): signed an hour ago, valid for a second.
    w.publish_at(unix_now() - 3600, 1);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v2), "expired");

    // Over the 16 MiB cap: refused before parsing.
    std::fs::write(&summary, vec![0u8; 17 << 20]).unwrap();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v2), "16777216");
    std::fs::write(&summary, &good3).unwrap();
    w.publish(&[]);
    pull(&device, "origin", &[]);
}

#[test]
fn tampered_files_are_refused_and_the_next_pull_succeeds() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);

    let packs: Vec<PathBuf> = std::fs::read_dir(w.builder.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    let cidx = w.builder.join(format!("chunks/{v1}.cidx"));
    let sigs: PathBuf = std::fs::read_dir(w.builder.join("sigs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (file, offset, needle) in [
        (packs[0].clone(), 4096usize, "pack"),
        (packs[0].clone(), 0, "pack"),
        (cidx.clone(), 40, "summary"),
        (sigs.clone(), 10, "summary"),
    ] {
        let device = w.device(
            &format!(
                "device-{}",
                rand_bytes(3, offset as u64 + file.as_os_str().len() as u64)[0]
            ),
            "bare",
        );
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let at = offset.min(bad.len() - 1);
        bad[at] ^= 0x01;
        std::fs::write(&file, &bad).unwrap();
        let run = try_pull(&device, "origin", &[]);
        assert_refused(&run, &device, None, needle);
        std::fs::write(&file, &good).unwrap();
        pull(&device, "origin", &[]);
        assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
        assert_tree(&device, &w.src, &w.root);
    }
}

#[test]
fn downgrades_are_refused_unless_allowed() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);
    // The builder publishes a commit older than v1 (a replayed old build).
    write(&w.src.join("etc/os-release"), b"NAME=test\nVERSION=0.9\n");
    let old = w.commit("0.9", 1_600_000_000);
    w.publish(&[]);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "downgrade");
    let report = pull(&device, "origin", &["--allow-downgrade"]);
    assert_eq!(report["refs"][0]["commit"], old.as_str());

    let run = try_pull(&device, "origin:nope", &[]);
    assert_refused(&run, &device, Some(&old), "does not publish");
}

#[test]
fn updates_use_a_static_delta_when_offered() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);
    let chunks_only = w.device("device-chunks", "archive");
    pull(&chunks_only, "origin", &[]);
    let damaged = w.device("device-damaged", "bare");
    pull(&damaged, "origin", &[]);

    let mut big = std::fs::read(w.src.join("usr/lib/big.bin")).unwrap();
    big[200_000..200_020].copy_from_slice(b"a small change here.");
    write(&w.src.join("usr/lib/big.bin"), &big);
    write(&w.src.join("usr/share/doc/added"), &texty(9_000, 5));
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    let deltas: Vec<PathBuf> = std::fs::read_dir(w.builder.join("deltas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    let delta_size = std::fs::metadata(&deltas[0]).unwrap().len();

    // A damaged delta is refused before it is parsed, and the pull goes on with chunks.
    let good = std::fs::read(&deltas[0]).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x10;
    std::fs::write(&deltas[0], &bad).unwrap();
    let run = try_pull(&damaged, "origin", &[]);
    run.success();
    assert!(run.out().contains("delta-failed"), "{}", run.out());
    assert!(run.out().contains("BLAKE3"), "{}", run.out());
    assert_eq!(pulled(&damaged).as_deref(), Some(v2.as_str()));
    assert_tree(&damaged, &w.src, &w.root);
    cli::fsck(&damaged).success();
    std::fs::write(&deltas[0], &good).unwrap();

    let run = try_pull(&device, "origin", &[]);
    run.success();
    let planned: serde_json::Value = run
        .out()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "planned")
        .expect("a planned event");
    assert_eq!(planned["delta"], true, "{}", run.out());
    assert_eq!(pulled(&device).as_deref(), Some(v2.as_str()));
    let report: serde_json::Value =
        serde_json::from_str(run.out().lines().last().unwrap()).unwrap();
    let bytes = report["bytes"].as_u64().unwrap();
    assert!(
        bytes < delta_size + 4096,
        "fetched {bytes} bytes for a {delta_size}-byte delta"
    );
    assert_tree(&device, &w.src, &w.root);
    cli::fsck(&device).success();

    // The same hop without the delta, chunk by chunk, gives the same tree.
    let report = pull(&chunks_only, "origin:main", &["--no-deltas"]);
    assert_eq!(report["refs"][0]["commit"], v2.as_str());
    assert_eq!(report["refs"][0]["previous"], v1.as_str());
    assert_tree(&chunks_only, &w.src, &w.root);
    cli::fsck(&chunks_only).success();
}

fn mirror(w: &World, dest: &std::path::Path) -> cli::Run {
    update([
        "mirror",
        &w.url(),
        dest.to_str().unwrap(),
        "--key",
        w.pubkey().to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn mirror_is_incremental_and_verified() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let dest = w.root.join("mirror");
    let first: serde_json::Value = serde_json::from_str(mirror(&w, &dest).success().out()).unwrap();
    assert!(first["fetched_files"].as_u64().unwrap() >= 4, "{first}");

    // A device pulls from the mirror as from the origin.
    let device = w.device_at("device", "bare", &format!("file://{}", dest.display()), &[]);
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    assert_tree(&device, &w.src, &w.root);

    // Nothing new: nothing fetched but the summary.
    let again: serde_json::Value = serde_json::from_str(mirror(&w, &dest).success().out()).unwrap();
    assert_eq!(again["fetched_files"], 0, "{again}");

    // v2: only the new files.
    write(&w.src.join("usr/share/doc/v2"), &texty(20_000, 42));
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    let third: serde_json::Value = serde_json::from_str(mirror(&w, &dest).success().out()).unwrap();
    let fetched = third["fetched_files"].as_u64().unwrap();
    assert!(
        fetched >= 1 && fetched < third["files"].as_u64().unwrap(),
        "{third}"
    );
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v2.as_str()));

    // A tampered file upstream: refused, the mirror's summary untouched.
    let mirrored_summary = std::fs::read(dest.join("summary")).unwrap();
    write(&w.src.join("usr/share/doc/v3"), &texty(20_000, 43));
    w.commit("3.0", 1_700_000_200);
    w.publish(&["--no-deltas"]);
    let cidx: Vec<PathBuf> = std::fs::read_dir(w.builder.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for p in &cidx {
        let mut b = std::fs::read(p).unwrap();
        b[50] ^= 1;
        std::fs::write(p, b).unwrap();
    }
    let run = mirror(&w, &dest);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.describe().contains("summary pins"),
        "{}",
        run.describe()
    );
    assert_eq!(
        std::fs::read(dest.join("summary")).unwrap(),
        mirrored_summary
    );
}

#[test]
fn commits_without_a_trusted_signature_are_refused() {
    let w = World::new();
    let device = w.device("device", "bare");
    let b = w.builder.to_str().unwrap().to_owned();

    // A2: an unsigned commit, in a summary the device trusts.
    let unsigned = cli::commit(
        &w.builder,
        "main",
        w.src.as_os_str(),
        &["--timestamp", "1700000000"],
    );
    w.publish(&[]);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, None, "unsigned");

    // A1: signed only by a key the device does not trust.
    let other = w.root.join("keys/other");
    update(["key", "generate", "--output", other.to_str().unwrap()]).success();
    update([
        "sign",
        "--repo",
        &b,
        &unsigned,
        "--key",
        other.to_str().unwrap(),
    ])
    .success();
    w.publish(&[]);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, None, "no trusted signature");

    // A3: a trusted signature of another commit copied onto this one.
    write(&w.src.join("etc/motd"), b"another tree\n");
    let signed = w.commit("2.0", 1_700_000_100);
    let sig_of = |c: &str| {
        w.builder
            .join(format!("objects/{}/{}.sig", &c[..2], &c[2..]))
    };
    std::fs::copy(sig_of(&signed), sig_of(&unsigned)).unwrap();
    update(["refs", "--repo", &b]).success();
    std::fs::write(w.builder.join("refs/heads/main"), format!("{unsigned}\n")).unwrap();
    w.publish(&[]);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, None, "no trusted signature");

    // The good commit goes through.
    std::fs::write(w.builder.join("refs/heads/main"), format!("{signed}\n")).unwrap();
    w.publish(&[]);
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(signed.as_str()));
}

#[test]
fn equivocation_future_commits_and_html_are_refused() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);

    // B2: the same serial with other content (the publisher started over at serial 1).
    // Signed a minute earlier than the first, so the bytes differ whatever the clock says.
    std::fs::remove_file(w.builder.join("summary")).unwrap();
    w.publish_at(unix_now() - 60, transport::publish::DEFAULT_EXPIRY);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "equivocation");
    w.publish(&[]);
    pull(&device, "origin", &[]);

    // B7: a commit dated 2100 is refused, so it cannot block later updates.
    write(&w.src.join("etc/motd"), b"from the future\n");
    w.commit("9.9", 4_102_444_800);
    w.publish(&[]);
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "over a day after");

    // F1: an HTML page where the summary should be.
    std::fs::write(
        w.builder.join("summary"),
        "<html><body>Please log in to the hotel Wi-Fi</body></html>",
    )
    .unwrap();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(&run, &device, Some(&v1), "looks like an HTML page");
    // Classified, never quoted: what came may be anything.
    assert!(
        !run.describe().contains("Please log in"),
        "{}",
        run.describe()
    );
}

#[test]
fn one_pull_per_remote_at_a_time() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let lock = std::fs::File::create(device.join("remotes/origin/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let run = try_pull(&device, "origin", &[]);
    assert_refused(
        &run,
        &device,
        None,
        "another pull from this remote is running",
    );
    drop(lock);
    pull(&device, "origin", &[]);
}

#[test]
fn a_delta_that_cannot_apply_falls_back_to_chunks() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "archive");
    pull(&device, "origin", &[]);
    let mut big = std::fs::read(w.src.join("usr/lib/big.bin")).unwrap();
    big[1000..1010].copy_from_slice(b"0123456789");
    write(&w.src.join("usr/lib/big.bin"), &big);
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&[]);
    // The device lost the old big.bin (the delta's base): the delta cannot apply.
    let base = std::fs::read_dir(device.join("objects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "filez"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&base).unwrap();
    let run = try_pull(&device, "origin", &[]);
    run.success();
    assert!(run.out().contains("delta-failed"), "{}", run.out());
    assert_eq!(pulled(&device).as_deref(), Some(v2.as_str()));
    assert_tree(&device, &w.src, &w.root);
}

#[test]
fn republishing_reuses_what_is_published_and_one_publish_runs_at_a_time() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let publish = |extra: &[&str]| w.try_publish(extra);
    // Nothing changed: no pack written, the chunk index reused, the serial moves on.
    let again = publish(&[]);
    assert!(
        again.success().out().contains("0 new packs"),
        "{}",
        again.out()
    );
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);
    assert_tree(&device, &w.src, &w.root);

    // A chunk index whose blobs are not all packed any more is rebuilt, not trusted.
    let packs = w.builder.join("packs");
    let moved = w.root.join("old-packs");
    std::fs::rename(&packs, &moved).unwrap();
    let rebuilt = publish(&[]);
    assert!(
        rebuilt.success().out().contains("1 new packs"),
        "{}",
        rebuilt.out()
    );
    let device2 = w.device("device2", "bare");
    pull(&device2, "origin", &[]);
    assert_tree(&device2, &w.src, &w.root);

    // While a publish holds the directory, another one stops at once.
    let lock = std::fs::File::create(w.builder.join(".publish-lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let run = publish(&[]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.describe()
            .contains("another publish into this directory is running"),
        "{}",
        run.describe()
    );
}

#[test]
fn publish_prune_keeps_what_the_last_two_summaries_name() {
    let w = World::new();
    let publish = |extra: &[&str]| {
        let mut args = vec!["--no-deltas", "--prune"];
        args.extend_from_slice(extra);
        w.try_publish(&args).success().out().to_owned()
    };
    let count = |dir: &str| std::fs::read_dir(w.builder.join(dir)).map_or(0, |d| d.count());
    w.commit("1.0", 1_700_000_000);
    publish(&[]);
    let device = w.device("device", "bare");
    pull(&device, "origin", &[]);
    // Three versions, each replacing the big file entirely.
    for (i, v) in ["2.0", "3.0", "4.0"].iter().enumerate() {
        write(
            &w.src.join("usr/lib/random.bin"),
            &rand_bytes(300_000, 900 + i as u64),
        );
        w.commit(v, 1_700_000_100 + i as u64);
        let out = publish(&[]);
        assert!(out.contains("pruned"), "{out}");
    }
    // Two summaries' worth of chunk indexes and signature sets, no more.
    assert_eq!(count("chunks"), 2);
    assert_eq!(count("sigs"), 2);
    // The device, two publishes behind, still pulls the newest.
    pull(&device, "origin", &[]);
    assert_tree(&device, &w.src, &w.root);
}

/// The bare object holding `content`.
fn object_of(device: &std::path::Path, content: &[u8]) -> PathBuf {
    std::fs::read_dir(device.join("objects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "file"))
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
        .find(|p| std::fs::read(p).unwrap() == content)
        .expect("the object holding that content")
}

#[test]
fn large_files_stream_and_damage_is_repaired_by_the_next_pull() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&["--no-deltas"]);
    // Files larger than a batch stream in windows of the batch size.
    let device = w.device("device", "bare");
    pull(&device, "origin", &["--batch-bytes", "65536"]);
    assert_tree(&device, &w.src, &w.root);

    // A file object of the pulled commit disappears (a crash, a prune gone wrong): the
    // next pull does not say "up to date", it fetches what is missing.
    let big = std::fs::read(w.src.join("usr/lib/big.bin")).unwrap();
    std::fs::remove_file(object_of(&device, &big)).unwrap();
    assert_ne!(cli::fsck(&device).code(), Some(0));
    let report = pull(&device, "origin", &[]);
    assert_eq!(report["refs"][0]["commit"], v1.as_str());
    assert_eq!(report["refs"][0]["files"], 1, "{report}");
    cli::fsck(&device).success();

    // A local object whose bytes are damaged is not used as a source of chunks: the
    // update fetches those chunks instead and still rebuilds v2 exactly.
    let random = std::fs::read(w.src.join("usr/lib/random.bin")).unwrap();
    let object = object_of(&device, &random);
    let mut damaged = random.clone();
    damaged[150_000] ^= 0xff;
    std::fs::write(&object, &damaged).unwrap();
    let mut grown = random.clone();
    grown.extend_from_slice(b"appended in 2.0");
    write(&w.src.join("usr/lib/random.bin"), &grown);
    let v2 = w.commit("2.0", 1_700_000_100);
    w.publish(&["--no-deltas"]);
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v2.as_str()));
    assert_tree(&device, &w.src, &w.root);
}

#[test]
fn remote_remove_and_mirror_wait_for_no_one() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let dev = device.to_str().unwrap();
    let lock = std::fs::File::create(device.join("remotes/origin/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let run = update(["remote", "remove", "--repo", dev, "origin"]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.describe().contains("another pull"),
        "{}",
        run.describe()
    );
    drop(lock);
    update(["remote", "remove", "--repo", dev, "origin"]).success();

    let dest = w.root.join("mirror");
    mirror(&w, &dest).success();
    let lock = std::fs::File::create(dest.join(".update-mirror/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let run = mirror(&w, &dest);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.describe().contains("another mirror run"),
        "{}",
        run.describe()
    );
}

/// The bytes of the published files under `dir` of `builder` whose names end with `ext`.
fn published_bytes(builder: &std::path::Path, dir: &str, ext: &str) -> u64 {
    std::fs::read_dir(builder.join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn a_pull_fetches_exactly_what_it_planned() {
    // Files sharing most of their chunks, in small batches: later batches read the shared
    // chunks back from files earlier batches stored, never fetching them again.
    let w = World::new();
    let shared = rand_bytes(400_000, 900);
    for i in 0..8 {
        let mut content = shared.clone();
        content.extend(rand_bytes(30_000, 910 + i));
        write(&w.src.join(format!("usr/lib/dup{i}.bin")), &content);
    }
    // A file larger than a batch, whose chunks repeat: it takes them from the pack stream
    // while it is written, each fetched once and kept until its last use.
    let block = rand_bytes(150_000, 990);
    write(&w.src.join("usr/lib/repeats.bin"), &block.repeat(6));
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let run = try_pull(&device, "origin", &["--batch-bytes", "60000"]);
    run.success();
    let events: Vec<serde_json::Value> = run
        .out()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let planned = events.iter().find(|v| v["event"] == "planned").unwrap();
    let report = events.last().unwrap();
    // Besides the planned blobs: the summary, the signature set and the indexes.
    let b = &w.builder;
    let around = std::fs::metadata(b.join("summary")).unwrap().len()
        + published_bytes(b, "sigs", ".sig")
        + published_bytes(b, "chunks", ".cidx")
        + published_bytes(b, "packs", ".idx");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        planned["bytes"].as_u64().unwrap() + around,
        "{}",
        run.out()
    );
    // The shared and repeated chunks were fetched once: far less than their copies
    // (3.2 MB and 0.9 MB).
    assert!(planned["bytes"].as_u64().unwrap() < 2_300_000, "{planned}");
    assert_tree(&device, &w.src, &w.root);
    cli::fsck(&device).success();
}

/// The system clock in unix seconds, for summaries signed relative to now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[test]
fn mirror_never_writes_through_a_symlink_in_the_mirror_directory() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let dest = w.root.join("mirror");
    let outside = w.root.join("outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("packs")).unwrap();

    let run = mirror(&w, &dest);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.describe().contains("packs"), "{}", run.describe());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!dest.join("summary").exists());
}

#[test]
fn pull_cache_never_writes_through_a_symlink_in_the_repository() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let cache = device.join("remotes/origin/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let outside = w.root.join("outside");
    for sub in ["packs", "chunks"] {
        std::fs::create_dir_all(outside.join(sub)).unwrap();
        std::os::unix::fs::symlink(outside.join(sub), cache.join(sub)).unwrap();
    }

    // The cache is best effort: the pull works, and nothing lands behind the symlinks.
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    for sub in ["packs", "chunks"] {
        assert_eq!(
            std::fs::read_dir(outside.join(sub)).unwrap().count(),
            0,
            "{sub}"
        );
    }
    cli::fsck(&device).success();
}
