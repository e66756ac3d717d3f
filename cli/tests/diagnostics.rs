//! Diagnostics: `-v`/`-vv` and `RUST_LOG` explain a pull or a deploy on stderr, one line per
//! HTTP request (URL, status) and per deploy step, while a command without them prints
//! none of it and `--json` output on stdout stays clean.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, update_bin, Run};
use testkit::device::{make_bootable, Device};
use testkit::serve::{ServeOptions, Served};
use testkit::world::World;

/// `update ARGS` with `RUST_LOG` set to `rust_log`, or removed, whatever the test's own
/// environment holds.
fn update_logged(args: &[&str], rust_log: Option<&str>) -> Run {
    let mut cmd = Command::new(update_bin());
    cmd.args(args);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    run_command(cmd, Duration::from_secs(120))
}

/// `update pull --json` of origin into `repo`, with `extra` options; returns the run and
/// its report, which must be the JSON on stdout whatever stderr holds.
fn pull(repo: &Path, extra: &[&str], rust_log: Option<&str>) -> (Run, serde_json::Value) {
    let mut args = vec!["pull", "--repo", repo.to_str().unwrap(), "origin", "--json"];
    args.extend_from_slice(extra);
    let run = update_logged(&args, rust_log);
    run.success();
    let last = run.out().lines().last().unwrap_or_default().to_owned();
    let report = serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("stdout is not clean JSON ({e}):\n{}", run.describe()));
    (run, report)
}

/// The stderr lines that log one HTTP request.
fn request_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" GET ") && l.contains("url="))
        .collect()
}

#[test]
fn pull_with_vv_logs_each_request_with_url_and_status_and_is_silent_without() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let server = Served::start(&w.builder, ServeOptions::plain());

    // Without -v: nothing about requests on stderr.
    let quiet = w.device_at("quiet", "bare", &server.url(), &[]);
    let (run, _) = pull(&quiet, &[], None);
    assert!(
        request_lines(&run.stderr).is_empty() && !run.stderr.contains("url="),
        "a pull without -v logged requests:\n{}",
        run.describe()
    );
    let before = server.wait_for_requests(1, Duration::from_secs(10)).len();

    // With -vv: one line per request the server answered, with its URL and status.
    let loud = w.device_at("loud", "bare", &server.url(), &[]);
    let (run, report) = pull(&loud, &["-vv"], None);
    let requests = report["requests"].as_u64().unwrap() as usize;
    let log = server.wait_for_requests(before + requests, Duration::from_secs(10));
    let served = &log[before..];
    let lines = request_lines(&run.stderr);
    assert_eq!(
        lines.len(),
        served.len(),
        "one stderr line per request expected; served {served:#?}\n{}",
        run.describe()
    );
    for entry in served {
        let url = format!("url={}{}", server.url().trim_end_matches('/'), entry.path);
        let status = format!("status={}", entry.status);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&url) && l.contains(&status)),
            "no line with {url} and {status}:\n{}",
            run.describe()
        );
    }
    // -vv also shows the steps of the pull.
    for step in [
        "pull: summary verified",
        "pull: planned",
        "pull: commit point",
    ] {
        assert!(
            run.stderr.contains(step),
            "no {step:?}:\n{}",
            run.describe()
        );
    }
}

#[test]
fn rust_log_selects_what_is_logged_without_v() {
    let w = World::new();
    w.commit("1.0", 1_700_000_000);
    w.publish(&[]);
    let server = Served::start(&w.builder, ServeOptions::plain());
    let device = w.device_at("device", "bare", &server.url(), &[]);
    let (run, report) = pull(&device, &[], Some("fetch=debug"));
    assert_eq!(
        request_lines(&run.stderr).len() as u64,
        report["requests"].as_u64().unwrap(),
        "{}",
        run.describe()
    );
    // Only the fetch crate was asked for.
    assert!(!run.stderr.contains("pull: planned"), "{}", run.describe());
}

#[test]
fn deploy_with_v_logs_each_step_and_keeps_json_clean() {
    let w = World::new();
    make_bootable(&w, b"kernel v1");
    w.commit("1", 1_700_000_000);
    w.publish(&[]);
    let dev = Device::new(&w, "dev");
    dev.pull();
    let sysroot = dev.sysroot.to_str().unwrap();
    let cmdline = dev.cmdline.to_str().unwrap();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "--sysroot",
            sysroot,
            "--proc-cmdline",
            cmdline,
            "origin:main",
            "--json",
        ];
        args.extend_from_slice(extra);
        let run = update_logged(&args, None);
        run.success();
        let report: serde_json::Value = serde_json::from_str(run.out())
            .unwrap_or_else(|e| panic!("stdout is not clean JSON ({e}):\n{}", run.describe()));
        assert!(report["deployment"].is_string(), "{}", run.describe());
        run
    };

    let quiet = deploy(&[]);
    assert!(
        !quiet.stderr.contains("deploy:"),
        "a deploy without -v logged its steps:\n{}",
        quiet.describe()
    );

    let loud = deploy(&["-v"]);
    let steps = [
        "deploy: commit resolved",
        "deploy: leftovers cleaned, free space checked",
        "deploy: checked out",
        "deploy: /etc merged",
        "deploy: boot files installed",
        "deploy: deployment published",
        "deploy: boot entry written",
        "deploy: old deployments cleaned up",
    ];
    let mut at = 0;
    for step in steps {
        let found = loud.stderr[at..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after the steps before:\n{}", loud.describe()));
        at += found + step.len();
    }
    // -v is steps, not requests or fsyncs.
    assert!(!loud.stderr.contains("DEBUG"), "{}", loud.describe());
}

#[test]
fn v_goes_before_or_after_a_subcommand_and_update_options_still_conflict_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    testkit::cli::init(&repo, "bare");
    let repo = repo.to_str().unwrap();
    update_logged(&["-v", "refs", "--repo", repo], None).success();
    update_logged(&["refs", "--repo", repo, "-vv"], None).success();
    // An option of `update` itself (one run) makes no sense with a subcommand.
    let run = update_logged(&["--now", "refs", "--repo", repo], None);
    run.exit_code(2);
    assert!(
        run.stderr.contains("cannot be used with '--now'"),
        "{}",
        run.describe()
    );
    // A subcommand's own global option of the same name is not such a conflict.
    let root = dir.path().to_str().unwrap();
    update_logged(&["config", "--root", root, "show"], None).success();
}
