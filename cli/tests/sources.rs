//! Sources that misbehave (a `file://` source holding FIFOs or symlinks, a server that
//! trickles an endless summary, a mirror serving a damaged pack) and the one depth limit
//! of a tree. After each refusal the device's store checks clean and the next good pull
//! succeeds.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use store::object::{Commit, DirMeta, DirTree, EntryName, Xattrs};
use store::{RefName, Repo};
use testkit::cli::{self, update, update_with_deadline};
use testkit::serve::{ServeOptions, Served};
use testkit::world::{assert_refused, pull, pulled, World};

/// Long enough for a pull of the test world, short enough that a pull blocked for good
/// fails the test instead of hanging it.
const PULL_DEADLINE: Duration = Duration::from_secs(60);

fn try_pull_within(device: &Path) -> cli::Run {
    update_with_deadline(
        [
            "pull",
            "--repo",
            device.to_str().unwrap(),
            "origin",
            "--json",
        ],
        PULL_DEADLINE,
    )
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// The largest pack file the builder published.
fn largest_pack(builder: &Path) -> PathBuf {
    std::fs::read_dir(builder.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a published pack")
}

#[test]
fn fifos_in_a_file_source_are_refused_not_waited_on() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");

    // The summary is a FIFO nobody writes: refused at once, named by its type.
    let summary = w.builder.join("summary");
    let saved = w.root.join("summary.saved");
    std::fs::rename(&summary, &saved).unwrap();
    mkfifo(&summary);
    let start = Instant::now();
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "is a FIFO");
    assert!(start.elapsed() < Duration::from_secs(30), "{run:?}");
    std::fs::remove_file(&summary).unwrap();
    std::fs::rename(&saved, &summary).unwrap();

    // A pack is a FIFO: the same.
    let pack = largest_pack(&w.builder);
    let saved = w.root.join("pack.saved");
    std::fs::rename(&pack, &saved).unwrap();
    mkfifo(&pack);
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "is a FIFO");
    let shown = pack.strip_prefix(&w.builder).unwrap().display().to_string();
    assert!(run.describe().contains(&shown), "{}", run.describe());
    std::fs::remove_file(&pack).unwrap();
    std::fs::rename(&saved, &pack).unwrap();

    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    cli::fsck(&device).success();
}

#[test]
fn a_symlinked_summary_is_refused_and_never_quoted() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");

    // A summary that links to a file of the host: not followed, not read.
    let host_file = w.root.join("host-secret");
    std::fs::write(&host_file, "root:TOP-SECRET-HASH:19000:0:99999:7:::\n").unwrap();
    let summary = w.builder.join("summary");
    let saved = w.root.join("summary.saved");
    std::fs::rename(&summary, &saved).unwrap();
    std::os::unix::fs::symlink(&host_file, &summary).unwrap();
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "is a symbolic link");
    assert!(!run.describe().contains("TOP-SECRET"), "{}", run.describe());

    // A summary that is a plain file of other bytes: named as such, not quoted.
    std::fs::remove_file(&summary).unwrap();
    std::fs::copy(&host_file, &summary).unwrap();
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "is not an update summary");
    assert!(!run.describe().contains("TOP-SECRET"), "{}", run.describe());
    assert!(!run.describe().contains("root:"), "{}", run.describe());

    // A captive portal's page: classified, not quoted.
    std::fs::write(
        &summary,
        "<html><body>Please log in to the hotel Wi-Fi</body></html>",
    )
    .unwrap();
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "looks like an HTML page");
    assert!(
        !run.describe().contains("Please log in"),
        "{}",
        run.describe()
    );

    std::fs::remove_file(&summary).unwrap();
    std::fs::rename(&saved, &summary).unwrap();
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    cli::fsck(&device).success();
}

#[test]
fn a_damaged_pack_names_the_remote_and_the_published_file() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");

    let pack = largest_pack(&w.builder);
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&pack, &bad).unwrap();
    let run = try_pull_within(&device);
    assert_refused(&run, &device, None, "remote 'origin' serves damaged data");
    let text = run.describe();
    let file = pack.strip_prefix(&w.builder).unwrap().display().to_string();
    assert!(text.contains(&file), "{text}");
    assert!(!text.contains("/tmp/txn-"), "{text}");
    assert!(!text.contains("txn-"), "{text}");

    std::fs::write(&pack, &good).unwrap();
    pull(&device, "origin", &[]);
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    cli::fsck(&device).success();
}

/// Serves one endless summary that trickles (`step` bytes every `every`), valid-looking
/// at its start, to the first connection; returns its URL.
fn trickling_summary(step: usize, every: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut request = [0u8; 4096];
        let _ = conn.read(&mut request);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut data = b"USSF".to_vec();
        data.resize(step, 0);
        // Ends when the client hangs up, or after a minute at most.
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let chunk = format!("{:x}\r\n", data.len());
            let ok = conn.write_all(chunk.as_bytes()).is_ok()
                && conn.write_all(&data).is_ok()
                && conn.write_all(b"\r\n").is_ok();
            if !ok {
                return;
            }
            data.fill(0);
            std::thread::sleep(every);
        }
    });
    url
}

#[test]
fn an_endless_trickled_summary_has_a_deadline_of_its_own() {
    let w = World::new();
    let v1 = w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let device = w.device("device", "bare");
    let repo = Repo::open(&device).unwrap();
    let mut remote = store::remote::Remote::open(&repo, "origin").unwrap();

    // 10 KB/s: far above the low-speed floor of 100 B/s, so only the summary's deadline
    // (2 s + 1 s + 16 MiB at 8 MiB/s = 5 s) can end it, long before the overall timeout.
    remote.url = trickling_summary(1000, Duration::from_millis(100));
    let cfg = fetch::FetchConfig {
        connect_timeout: Duration::from_secs(2),
        low_speed_limit: 100,
        low_speed_time: Duration::from_secs(1),
        overall_timeout: Duration::from_secs(120),
        whole_file_speed: 8 << 20,
        retries: 0,
        ..transport::pull::fetch_config(&remote)
    };
    let opts = transport::pull::PullOptions {
        fetch: Some(cfg),
        ..Default::default()
    };
    let start = Instant::now();
    let err = transport::pull::pull(&repo, &remote, None, &opts, &mut |_| {}).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, transport::pull::PullError::Fetch(fetch::Error::TimedOut { after, .. }) if after < Duration::from_secs(6)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(err.to_string().contains("summary"), "{err}");
    assert_eq!(pulled(&device), None);
    cli::fsck(&device).success();

    // The same remote served properly: the next pull succeeds.
    let served = Served::start(&w.builder, ServeOptions::plain());
    remote.url = served.url();
    transport::pull::pull(&repo, &remote, None, &opts, &mut |_| {}).unwrap();
    assert_eq!(pulled(&device).as_deref(), Some(v1.as_str()));
    cli::fsck(&device).success();
}

/// `depth` nested directories `d/d/…` with a file at the bottom.
fn deep_tree(root: &Path, depth: usize) {
    let mut dir = root.to_path_buf();
    for _ in 0..depth {
        dir.push("d");
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), b"deep\n").unwrap();
}

#[test]
fn one_depth_limit_from_commit_to_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    cli::init(&repo, "archive");

    // 300 levels: refused at commit, with the limit named.
    let src = dir.path().join("deep300");
    deep_tree(&src, 300);
    let run = cli::try_commit(&repo, "main", src.as_os_str(), &[]);
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.describe().contains("deeper than 256 directories"),
        "{}",
        run.describe()
    );

    // 256 levels, the limit itself: committed, checked out, fsck clean.
    let src = dir.path().join("deep256");
    deep_tree(&src, store::walk::MAX_DEPTH);
    let commit = cli::commit(&repo, "main", src.as_os_str(), &[]);
    cli::checkout(&repo, &commit, &dir.path().join("co"), &[]).success();
    cli::fsck(&repo).success();

    // A 257-level tree that got into a store anyway: fsck names it.
    let store = Repo::open(&repo).unwrap();
    let txn = store.begin().unwrap();
    let meta = txn
        .write_dirmeta(&DirMeta::new(0o755, 0, 0, Xattrs::empty()).unwrap())
        .unwrap();
    let mut tree = txn
        .write_dirtree(&DirTree::new(Vec::new(), Vec::new()).unwrap())
        .unwrap();
    for _ in 0..=store::walk::MAX_DEPTH {
        let dirs = vec![(EntryName::new("d").unwrap(), tree, meta)];
        tree = txn
            .write_dirtree(&DirTree::new(Vec::new(), dirs).unwrap())
            .unwrap();
    }
    let deep = txn
        .write_commit(&Commit {
            parent: None,
            timestamp: 1_700_000_000,
            subject: String::new(),
            body: String::new(),
            metadata: Vec::new(),
            root_tree: tree,
            root_meta: meta,
        })
        .unwrap();
    txn.commit_and_set_ref(&RefName::new("deep").unwrap(), &deep)
        .unwrap();
    let run = cli::fsck(&repo);
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.describe().contains("deeper than the limit of 256"),
        "{}",
        run.describe()
    );

    // Publish refuses to publish it.
    let key = dir.path().join("release");
    update(
        ["key", "generate", "--output"]
            .map(Into::into)
            .into_iter()
            .chain([key.as_os_str().to_owned()]),
    )
    .success();
    let run = update([
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.describe().contains("depth limit of 256"),
        "{}",
        run.describe()
    );
}
