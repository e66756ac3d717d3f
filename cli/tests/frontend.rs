//! The front end end to end (issue 5): every `update config` setter and every bad value,
//! the crash safety of the rewrite, the systemd units, the audit log (syslog socket and
//! file), the "Not implemented" path, the whole device story from a fresh sysroot, and an
//! external backend speaking the JSON protocol. Nothing reboots: the reboot command touches
//! a file. Syslog is a datagram socket the test binds (`UPDATE_SYSLOG_SOCKET`); the booted
//! kernel command line is a file (`UPDATE_PROC_CMDLINE`).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::cli::{run_command, update, update_bin, Run};
use testkit::device::{make_bootable, Device};
use testkit::world::{write, World};

const NOT_IMPLEMENTED: &str =
    "Not implemented: no update backend is installed on this system. Consider";

/// A system root driven through the front end, with its own syslog socket and PATH.
struct Sys {
    root: PathBuf,
    cmdline: PathBuf,
    sock: PathBuf,
    syslog: UnixDatagram,
    path: String,
}

impl Sys {
    /// `root` (created), booted with `cmdline`, an empty `ROOT/bin` first on PATH.
    fn new(root: &Path, cmdline: &Path) -> Sys {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let sock = root.join("syslog.sock");
        let syslog = UnixDatagram::bind(&sock).unwrap();
        syslog.set_nonblocking(true).unwrap();
        let path = format!("{}:/usr/bin:/bin", root.join("bin").display());
        let (root, cmdline) = (root.to_path_buf(), cmdline.to_path_buf());
        Sys {
            root,
            cmdline,
            sock,
            syslog,
            path,
        }
    }

    /// `update ARGS` with this root (`UPDATE_ROOT`), syslog socket, cmdline and PATH.
    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(update_bin());
        cmd.args(args)
            .env("UPDATE_ROOT", &self.root)
            .env("UPDATE_PROC_CMDLINE", &self.cmdline)
            .env("UPDATE_SYSLOG_SOCKET", &self.sock)
            .env("PATH", &self.path);
        run_command(cmd, Duration::from_secs(60))
    }

    fn config(&self, args: &[&str]) -> Run {
        self.run(&[&["config"], args].concat())
    }

    /// `update config show --json`, which must succeed (the file parses and validates).
    fn show(&self) -> Value {
        let r = self.config(&["show", "--json"]);
        r.success();
        serde_json::from_str(r.out()).unwrap_or_else(|e| panic!("{e}\n{}", r.describe()))
    }

    fn file(&self) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("etc/update/update.toml")).ok()
    }

    /// The syslog datagrams received so far: (priority, message after `update[PID]: `).
    fn syslog(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.syslog.recv(&mut buf) {
            let m = String::from_utf8(buf[..n].to_vec()).unwrap();
            let (pri, rest) = m.strip_prefix('<').and_then(|m| m.split_once('>')).unwrap();
            let tag = rest
                .strip_prefix("update[")
                .and_then(|r| r.split_once("]: "));
            out.push((pri.parse().unwrap(), tag.expect(&m).1.to_owned()));
        }
        out
    }
}

/// Where audit records are read: the syslog socket, or the configured file.
struct Audit {
    file: Option<PathBuf>,
    seen: usize,
}

impl Audit {
    fn syslog() -> Audit {
        Audit {
            file: None,
            seen: 0,
        }
    }

    /// The records written since the last call; checks fields and syslog severities.
    fn take(&mut self, sys: &Sys) -> Vec<Value> {
        let lines: Vec<(Option<u32>, String)> = match &self.file {
            None => sys
                .syslog()
                .into_iter()
                .map(|(p, m)| (Some(p), m))
                .collect(),
            Some(f) => {
                assert!(
                    sys.syslog().is_empty(),
                    "with a log file, nothing goes to syslog"
                );
                let text = std::fs::read_to_string(f).unwrap_or_default();
                let all: Vec<_> = text.lines().map(|l| (None, l.to_owned())).collect();
                let new = all[self.seen..].to_vec();
                self.seen = all.len();
                new
            }
        };
        let mut out = Vec::new();
        for (pri, line) in lines {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let bad = v["result"] == "error" || v["result"] == "rollback";
            if let Some(p) = pri {
                assert_eq!(
                    p,
                    if bad { 27 } else { 30 },
                    "daemon.err/daemon.info: {line}"
                );
            }
            let keys =
                "time backend from to signer bytes_fetched duration_ms result error verify source";
            for k in keys.split(' ') {
                assert!(v.get(k).is_some(), "{k} missing: {line}");
            }
            let t = v["time"].as_str().unwrap();
            assert!(
                t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{t}"
            );
            assert!(
                v["duration_ms"].is_u64() && v["bytes_fetched"].is_u64(),
                "{line}"
            );
            out.push(v);
        }
        out
    }
}

/// The fields `keys` of `v`, to compare several at once.
fn pick(v: &Value, keys: &str) -> Value {
    Value::Object(
        keys.split(' ')
            .map(|k| (k.to_owned(), v[k].clone()))
            .collect(),
    )
}

fn world() -> World {
    let w = World::new();
    make_bootable(&w, b"kernel v1");
    w
}

fn release(w: &World, version: &str, ts: u64) -> String {
    write(&w.src.join("usr/share/version"), version.as_bytes());
    let c = w.commit(version, ts);
    w.publish(&[]);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A fresh key pair at `dir/name` (+ `.pub`); returns the public key's base64.
fn keygen(dir: &Path, name: &str) -> String {
    update(["key", "generate", "--output", s(&dir.join(name))]).success();
    let pubkey = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    pubkey.trim().to_owned()
}

/// `update` with space-separated `args` (no argument contains a space).
fn up(args: &str) -> Run {
    update(args.split(' '))
}

/// Panic unless `r` succeeded and printed `needle`.
#[track_caller]
fn out_has(r: &Run, needle: &str) {
    assert!(
        r.success().out().contains(needle),
        "want {needle:?}\n{}",
        r.describe()
    );
}

#[track_caller]
fn stderr_has(r: &Run, needles: &[&str]) {
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "stderr should contain {n:?}\n{}",
            r.describe()
        );
    }
}

/// Lines `ARG|ARG... => X => Y` with `{NAME}` placeholders replaced.
fn table(text: &str, vars: &[(&str, &str)]) -> Vec<(Vec<String>, String, String)> {
    let fill = |s: &str| vars.iter().fold(s.to_owned(), |s, (k, v)| s.replace(k, v));
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(" => ").collect();
        let args = f[0].split('|').map(fill).collect();
        out.push((args, fill(f[1]), fill(f[2])));
    }
    out
}

const ROUND_TRIPS: &str = r#"
source|file:///srv/os => /source => "file:///srv/os"
source|http://h:8080/os#os/x86_64/stable => /source => "http://h:8080/os#os/x86_64/stable"
key|add|release|{D}/k1.pub => /keys/release => "{K1}"
key|add|second|{K2} => /keys/second => "{K2}"
key|update|second|{K1} => /keys/second => "{K1}"
key|delete|second => /keys/second => null
schedule|minute|15 => /schedule => "minute 15"
schedule|monthly|3 => /schedule => "monthly 3"
log|/var/log/update.jsonl => /log => "/var/log/update.jsonl"
log|syslog => /log => "syslog"
verify|false => /verify => false
verify|true => /verify => true
boot-retry-limit|5 => /boot-retry-limit => 5
tls-client-cert|{D}/c.pem => /tls-client-cert => "{D}/c.pem"
tls-client-key|{D}/sub/../k.pem => /tls-client-key => "{D}/k.pem"
tls-ca|{D}/ca.pem => /tls-ca => "{D}/ca.pem"
source|https://updates.example.com/os => /source => "https://updates.example.com/os"
secure|true => /secure => true
secure|false => /secure => false
reboot-command|touch /tmp/x/rebooted => /reboot-command => "touch /tmp/x/rebooted"
backend|fake => /backend => "fake"
backend|builtin => /backend => "builtin"
"#;

#[test]
fn every_config_setting_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().canonicalize().unwrap();
    let sys = Sys::new(&d, &d.join("cmdline"));
    let defaults = pick(
        &sys.show(),
        "verify log reboot-command boot-retry-limit secure",
    );
    let want = r#"{"verify":true,"log":"syslog","reboot-command":"systemctl reboot","boot-retry-limit":3,"secure":false}"#;
    assert_eq!(
        defaults,
        serde_json::from_str::<Value>(want).unwrap(),
        "no file: defaults"
    );
    let (k1, k2) = (keygen(&d, "k1"), keygen(&d, "k2"));
    std::fs::create_dir_all(d.join("sub")).unwrap();
    for f in ["c.pem", "k.pem", "ca.pem"] {
        write(&d.join(f), b"-----BEGIN X-----\n");
    }
    let vars = [("{D}", s(&d)), ("{K1}", &k1), ("{K2}", &k2)];
    for (args, ptr, want) in table(ROUND_TRIPS, &vars) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sys.config(&args);
        r.success();
        assert!(
            r.out().contains("saved") || args[0] == "schedule",
            "{}",
            r.describe()
        );
        let shown = sys.show();
        let want: Value = serde_json::from_str(&want).unwrap();
        let got = shown.pointer(&ptr).cloned().unwrap_or(Value::Null);
        assert_eq!(got, want, "{args:?}: {shown:#}");
        let text = String::from_utf8(sys.file().unwrap()).unwrap();
        assert!(text.starts_with("# update's settings"), "{text}");
        assert_eq!(
            listing(&d.join("etc/update")),
            ["update.toml"],
            "no temp files left"
        );
    }
    assert_eq!(sys.show()["keys"], json!({ "release": k1 }));
    let r = sys.run(&["config", "--root", s(&d), "show"]);
    out_has(&r, "source = \"https://updates.example.com/os\"");
    stderr_has(
        &sys.config(&["verify", "false"]),
        &["WARNING", "verification is now OFF"],
    );
}

const BAD_VALUES: &str = r#"
source|ftp://h/os => 1 => source 'ftp://h/os';accepted: an http://, https:// or file:// URL
source|/srv/os => 1 => source '/srv/os';accepted
source|https:// => 1 => source 'https://';accepted
source|https://h/os?arch=x86 => 1 => https://h/os?arch=x86;may not contain a query
source|https://h/os#os/../etc => 1 => source ref 'os/../etc';may not start with '.'
source|https://h/os# => 1 => source ref ''
source|https://h/o s => 1 => whitespace
key|add|release|{K1} => 1 => key 'release' exists already;key update release
key|add|x|not-a-key => 1 => invalid public key;accepted: the base64 text of an ed25519 public key
key|add|x|AAAA => 1 => invalid public key;accepted
key|add|x|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= => 1 => weak;accepted
key|add|x|{D}/k1 => 1 => secret key;give the .pub file
key|add|bad name|{K1} => 1 => key name 'bad name';accepted: 1 to 64 of
key|add|x => 1 => needs the key
key|update|missing|{K1} => 1 => no key 'missing' to update;keys: release
key|delete|missing => 1 => no key 'missing' to delete;keys: release
key|delete|release|{K1} => 1 => takes no key
key|rotate|release|{K1} => 2 => possible values: add, delete, update
schedule|weekly|1 => 2 => 'weekly';possible values: monthly, hourly, minute
schedule|hourly|0 => 1 => schedule hourly 0;accepted counts for hourly: 1, 2, 3, 4, 6, 8, 12
schedule|minute|7 => 1 => schedule minute 7;accepted counts for minute
schedule|monthly|13 => 1 => schedule monthly 13;accepted counts for monthly
schedule|hourly|x => 1 => schedule count 'x';accepted: a positive integer
log|var/log/update.jsonl => 1 => log 'var/log/update.jsonl';accepted: syslog, or an absolute file path
log|/var/log/ => 1 => accepted: syslog, or an absolute file path
verify|maybe => 1 => verify 'maybe';accepted: true or false
boot-retry-limit|0 => 1 => boot-retry-limit '0';accepted: an integer from 1 to 9
boot-retry-limit|10 => 1 => boot-retry-limit '10';from 1 to 9
boot-retry-limit|x => 1 => boot-retry-limit 'x';from 1 to 9
secure|true => 1 => secure true;tls-client-cert and tls-client-key
secure|yes => 1 => secure 'yes';accepted: true or false
tls-client-cert|/nonexistent/c.pem => 1 => tls-client-cert '/nonexistent/c.pem';accepted: the path of a readable PEM file
tls-client-key|/nonexistent/k.pem => 1 => tls-client-key '/nonexistent/k.pem';accepted
tls-ca|/nonexistent/ca.pem => 1 => tls-ca '/nonexistent/ca.pem';accepted
tls-ca|{D} => 1 => not a file;accepted
reboot-command| => 1 => reboot-command;may not be empty;accepted: a shell command
reboot-command|    => 1 => may not be empty
backend|../evil => 1 => backend '../evil';accepted: builtin, or NAME
"#;

#[test]
fn every_bad_value_is_refused_and_the_file_stays() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sys = Sys::new(d, &d.join("cmdline"));
    let k1 = keygen(d, "k1");
    sys.config(&["source", "file:///srv/os"]).success();
    sys.config(&["key", "add", "release", &k1]).success();
    let before = sys.file().unwrap();
    for (args, code, needles) in table(BAD_VALUES, &[("{D}", s(d)), ("{K1}", &k1)]) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sys.config(&args);
        r.exit_code(code.parse().unwrap());
        stderr_has(&r, &needles.split(';').collect::<Vec<_>>());
        assert_eq!(sys.file().unwrap(), before, "{args:?} changed the file");
        assert_eq!(listing(&d.join("etc/update")), ["update.toml"], "{args:?}");
    }
    assert!(
        !d.join("etc/systemd").exists(),
        "a refused schedule writes no units"
    );
    // With the cert and key set, secure still needs an https:// source.
    for (f, setting) in [("c.pem", "tls-client-cert"), ("k.pem", "tls-client-key")] {
        write(&d.join(f), b"pem");
        sys.config(&[setting, s(&d.join(f))]).success();
    }
    let before = sys.file().unwrap();
    let r = sys.config(&["secure", "true"]);
    r.exit_code(1);
    stderr_has(&r, &["needs an https:// source"]);
    assert_eq!(sys.file().unwrap(), before);
    // The flags of a run are checked the same way, before anything runs.
    for (flag, v, n) in [
        ("--verify", "maybe", "--verify 'maybe'"),
        ("--secure", "1", "--secure '1'"),
        ("--source", "ftp://h", "source 'ftp://h'"),
    ] {
        let r = sys.run(&[flag, v, "--now"]);
        r.exit_code(1);
        stderr_has(&r, &[n, "accepted"]);
    }
    // A hand-broken file is reported, not silently replaced.
    std::fs::write(d.join("etc/update/update.toml"), "verify = \"maybe\"\n").unwrap();
    let r = sys.config(&["log", "syslog"]);
    r.exit_code(1);
    stderr_has(&r, &["update.toml"]);
    assert_eq!(sys.file().unwrap(), b"verify = \"maybe\"\n");
}

#[test]
fn a_killed_rewrite_leaves_the_old_or_the_new_file() {
    testkit::require_tool("strace");
    let t = tempfile::tempdir().unwrap();
    let sys = Sys::new(t.path(), &t.path().join("cmdline"));
    sys.config(&["source", "file:///old"]).success();
    let old = sys.file().unwrap();
    let mut killed = 0;
    for calls in [
        "rename,renameat,renameat2",
        "write,pwrite64",
        "fsync,fdatasync",
        "openat",
    ] {
        for n in 1..=3 {
            std::fs::write(sys.root.join("etc/update/update.toml"), &old).unwrap();
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-o", "/dev/null", &format!("-etrace={calls}")])
                .arg(format!("-einject={calls}:signal=KILL:when={n}"))
                .arg(update_bin())
                .args(["config", "--root", s(&sys.root), "source", "file:///new"]);
            let r = run_command(cmd, Duration::from_secs(30));
            killed += usize::from(r.code() != Some(0));
            let now = sys.file().expect("the config file is never missing");
            let text = String::from_utf8_lossy(&now);
            let new = text.contains("source = \"file:///new\"");
            assert!(
                now == old || new,
                "{calls} #{n}: neither old nor new:\n{text}\n{}",
                r.describe()
            );
            let shown = sys.show()["source"].clone();
            assert!(shown == "file:///old" || shown == "file:///new", "{shown}");
        }
    }
    assert!(
        killed >= 6,
        "only {killed} runs were killed: does strace fault injection work?"
    );
    // Temp files of killed writers do not get in the way of the next rewrite.
    sys.config(&["source", "file:///after"]).success();
    assert_eq!(sys.show()["source"], "file:///after");
}

#[test]
fn schedule_writes_the_units() {
    let t = tempfile::tempdir().unwrap();
    let sys = Sys::new(t.path(), &t.path().join("cmdline"));
    let units = t.path().join("etc/systemd/system");
    for _ in 0..2 {
        out_has(
            &sys.config(&["schedule", "hourly", "6"]),
            "OnCalendar=*-*-* 00/6:00:00",
        );
    }
    assert_eq!(sys.show()["schedule"], "hourly 6");
    let read = |name: &str| std::fs::read_to_string(units.join(name)).unwrap();
    let timer = read("update.timer");
    let want = "[Timer] OnCalendar=*-*-*_00/6:00:00 RandomizedDelaySec=2160 Persistent=true WantedBy=timers.target";
    for line in want.split(' ').map(|l| l.replace('_', " ")) {
        assert!(
            timer.lines().any(|l| l == line),
            "update.timer lacks {line:?}:\n{timer}"
        );
    }
    let service = read("update.service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect(&service);
    assert!(
        exec.starts_with('/') && exec.ends_with(" --now"),
        "{service}"
    );
    assert!(service.contains("Type=oneshot\n"), "{service}");
    let mark_good = read("update-mark-good.service");
    assert!(
        mark_good.contains(" mark-good --sysroot /sysroot\n"),
        "{mark_good}"
    );
    assert!(mark_good.contains("WantedBy=basic.target\n"), "{mark_good}");
    for (wants, unit) in [
        ("timers.target", "update.timer"),
        ("basic.target", "update-mark-good.service"),
    ] {
        let link = units.join(format!("{wants}.wants")).join(unit);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("..").join(unit)
        );
        assert!(link.is_file(), "{} resolves", link.display());
    }
    sys.config(&["schedule", "minute", "15"]).success();
    let timer = read("update.timer");
    assert!(
        timer.contains("OnCalendar=*-*-* *:00/15:00\nRandomizedDelaySec=90\n"),
        "{timer}"
    );
}

/// success, nothing-to-do, network failure, signature refusal and rollback, read from
/// syslog or from the configured file.
fn audit_story(log_file: bool) {
    let w = world();
    let v1 = release(&w, "1", 1_700_000_000);
    // ROOT is the world's temp dir: the sysroot is ROOT/sysroot.
    let dev = Device::new(&w, "sysroot");
    let sys = Sys::new(&w.root, &dev.cmdline);
    let url = w.url();
    sys.config(&["source", &url]).success();
    sys.config(&["key", "add", "release", s(&w.pubkey())])
        .success();
    let mut audit = Audit::syslog();
    if log_file {
        let f = w.root.join("var/log/update/audit.jsonl");
        sys.config(&["log", s(&f)]).success();
        audit.file = Some(f);
    }
    let mut once = |sys: &Sys| {
        let recs = audit.take(sys);
        assert_eq!(recs.len(), 1, "one line per run: {recs:#?}");
        recs[0].clone()
    };

    sys.run(&["--now", "--noreboot"]).success();
    let r = once(&sys);
    let want = json!({"result": "success", "backend": "builtin", "signer": "release", "from": null,
        "to": {"commit": v1, "version": "1"}, "verify": true, "source": url, "error": null});
    assert_eq!(
        pick(&r, "result backend signer from to verify source error"),
        want
    );
    assert!(r["bytes_fetched"].as_u64().unwrap() > 100_000, "{r}");

    let d1 = dev.boot();
    dev.run(&["mark-good"], &[]).success();
    out_has(&sys.run(&["--now", "--noreboot"]), "nothing to do");
    let r = once(&sys);
    let v1j = json!({"commit": v1, "version": "1"});
    let want = json!({"result": "nothing-to-do", "from": v1j, "to": v1j, "error": null});
    assert_eq!(pick(&r, "result from to error"), want);

    // Nothing listens on port 1; verification off for this run is recorded.
    let bad = "http://127.0.0.1:1/";
    let run = sys.run(&["--now", "--noreboot", "--source", bad, "--verify", "false"]);
    run.exit_code(1);
    stderr_has(&run, &["WARNING", "127.0.0.1:1"]);
    let r = once(&sys);
    let want = json!({"result": "error", "source": bad, "verify": false});
    assert_eq!(pick(&r, "result source verify"), want);
    // Checked at the end: what the device runs is known even when the source is not.
    let mut wrong = Vec::new();
    if r["from"] != v1j {
        wrong.push(format!(
            "a failed attempt's line lacks `from` (what runs): {r}"
        ));
    }
    assert!(r["error"].as_str().unwrap().contains("127.0.0.1:1"), "{r}");

    // Only `other` is trusted now: commits signed by `release` are refused.
    let v2 = release(&w, "2", 1_700_000_100);
    keygen(&w.root.join("keys"), "other");
    sys.config(&["key", "add", "other", s(&w.root.join("keys/other.pub"))])
        .success();
    sys.config(&["key", "delete", "release"]).success();
    let run = sys.run(&["--now", "--noreboot"]);
    run.exit_code(1);
    let r = once(&sys);
    assert_eq!(
        pick(&r, "result signer"),
        json!({"result": "error", "signer": null})
    );
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("sign") && run.stderr.contains(err),
        "{err}\n{}",
        run.describe()
    );
    assert_eq!(dev.entries().len(), 1, "nothing deployed");

    // Trusted again: v2 deploys, never comes up, and the firmware falls back to v1.
    sys.config(&["key", "add", "release", s(&w.pubkey())])
        .success();
    sys.run(&["--now", "--noreboot"]).success();
    let r = once(&sys);
    let want = json!({"result": "success", "from": v1j, "to": {"commit": v2, "version": "2"}});
    assert_eq!(pick(&r, "result from to"), want);
    let d2 = dev.boot();
    assert_ne!(d1, d2);
    assert_eq!((dev.boot(), dev.boot()), (d2.clone(), d2.clone()));
    assert!(
        dev.entries().iter().any(|e| e.ends_with("+0-3.conf")),
        "{:?}",
        dev.entries()
    );
    assert_eq!(dev.boot(), d1, "the firmware falls back");
    let run = sys.run(&["--now", "--noreboot"]);
    let recs = audit.take(&sys);
    assert_eq!(
        recs.len(),
        2,
        "a rollback line, then the run's: {recs:#?}\n{}",
        run.describe()
    );
    let want = json!({"result": "rollback", "from": {"commit": v2, "version": "2"}, "to": v1j});
    assert_eq!(pick(&recs[0], "result from to"), want);
    let why = recs[0]["error"].as_str().unwrap();
    assert!(
        why.contains(&d2) && why.contains("boot tries") && why.contains("fell back"),
        "{why}"
    );
    assert_ne!(recs[1]["result"], "rollback");
    let run2 = sys.run(&["--now", "--noreboot"]);
    let recs2 = audit.take(&sys);
    assert!(
        recs2.iter().all(|r| r["result"] != "rollback"),
        "logged once: {recs2:#?}"
    );
    // The commit that just failed to boot is not deployed again by itself: that would
    // boot-loop a fleet (deploy, fail boot-retry-limit times, fall back, deploy again...).
    if recs[1]["result"] == "success" && recs[1]["to"]["commit"] == v2.as_str() {
        wrong.push(format!(
            "the run after the rollback re-deployed the commit that failed to boot: {:#}\n{}\n{}",
            recs[1],
            run.describe(),
            run2.describe()
        ));
    }
    // The same commit deployed again (by hand) and failing again is a new rollback.
    dev.run(&["deploy"], &["update:main"]).success();
    for _ in 0..3 {
        assert!(
            dev.boot().starts_with(&format!("{v2}.")),
            "{:?}",
            dev.entries()
        );
    }
    assert_eq!(dev.boot(), d1, "the firmware falls back again");
    let run3 = sys.run(&["--now", "--noreboot"]);
    let recs3 = audit.take(&sys);
    if recs3.first().is_none_or(|r| r["result"] != "rollback") {
        wrong.push(format!(
            "the second failed boot of the same commit is not logged (reported-rollbacks \
             remembers commits, not deployments): {recs3:#?}\n{}\nentries {:?}",
            run3.describe(),
            dev.entries()
        ));
    }
    // A commit signed by a key nobody trusts: refused, unless verification is off for the
    // run, which warns and is recorded.
    keygen(&w.root.join("keys"), "stranger");
    let v4 = testkit::cli::commit(
        &w.builder,
        "main",
        w.src.as_os_str(),
        &[
            "--version",
            "4",
            "--timestamp",
            "1700000300",
            "--sign-with",
            s(&w.root.join("keys/stranger")),
        ],
    );
    w.publish(&[]);
    sys.run(&["--now", "--noreboot"]).exit_code(1);
    let r = audit.take(&sys).pop().unwrap();
    assert_eq!(r["result"], "error", "{r}");
    let run = sys.run(&["--now", "--noreboot", "--verify", "false"]);
    run.success();
    stderr_has(&run, &["WARNING", "verification is OFF"]);
    let r = audit.take(&sys).pop().unwrap();
    let want = json!({"result": "success", "verify": false, "signer": null, "to": {"commit": v4, "version": "4"}});
    assert_eq!(pick(&r, "result verify signer to"), want);
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn audit_lines_go_to_syslog() {
    audit_story(false);
}

#[test]
fn audit_lines_go_to_the_configured_file() {
    audit_story(true);
}

#[test]
fn no_backend_is_not_implemented_with_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let mut sys = Sys::new(t.path(), &t.path().join("cmdline"));
    sys.path = s(&t.path().join("bin")).to_owned();
    for args in [
        &["--now"][..],
        &["--now", "--noreboot"],
        &[],
        &["agent", "--max-runs", "1"],
    ] {
        let r = sys.run(args);
        r.exit_code(3);
        stderr_has(&r, &[NOT_IMPLEMENTED]);
        assert!(r.stdout.is_empty(), "{}", r.describe());
        let logged = sys.syslog();
        assert_eq!(logged.len(), 1, "{args:?}: {logged:?}");
        assert_eq!(logged[0].0, 27, "daemon.err");
        assert!(logged[0].1.starts_with(NOT_IMPLEMENTED), "{logged:?}");
        assert!(
            r.stderr.contains(logged[0].1.trim()),
            "the same text: {logged:?}"
        );
    }
    // Naming a backend does not make it exist; `config` itself needs none.
    for name in ["builtin", "nosuch"] {
        sys.config(&["backend", name]).success();
        stderr_has(sys.run(&["--now"]).exit_code(3), &[NOT_IMPLEMENTED]);
        assert_eq!(sys.syslog().len(), 1);
    }
}

#[test]
fn the_device_story_from_a_fresh_sysroot() {
    let w = world();
    let v1 = release(&w, "1", 1_700_000_000);
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (sysroot, cmdline) = (root.join("sysroot"), root.join("cmdline"));
    std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz quiet\n").unwrap();
    let sys = Sys::new(root, &cmdline);
    let now = |extra: &[&str]| sys.run(&[&["--root", s(root), "--now"], extra].concat());
    now(&["--noreboot"]).exit_code(3);
    assert_eq!(sys.syslog().len(), 1, "not implemented, logged");
    std::fs::create_dir_all(&sysroot).unwrap();
    let pubkey = w.pubkey();
    let (r, sr, pubkey) = (s(root), s(&sysroot), s(&pubkey));
    up(&format!(
        "sysroot init --sysroot {sr} --os os --esp {sr}/efi"
    ))
    .success();
    up(&format!("config --root {r} source {}", w.url())).success();
    up(&format!("config --root {r} key add release {pubkey}")).success();
    out_has(&now(&["--noreboot"]), "boots at the next reboot");
    let status = || {
        let r = up(&format!(
            "status --sysroot {sr} --proc-cmdline {} --json",
            s(&cmdline)
        ));
        let v: Value = serde_json::from_str(r.success().out()).unwrap();
        v["oses"][0]["deployments"].as_array().unwrap().clone()
    };
    let st = status();
    assert_eq!(st.len(), 1, "{st:#?}");
    let want = json!({"version": "1", "pending": true, "booted": false});
    assert_eq!(pick(&st[0], "version pending booted"), want, "{st:#?}");

    let flag = root.join("rebooted");
    sys.config(&["reboot-command", &format!("touch {}", flag.display())])
        .success();
    out_has(&now(&[]), "nothing to do");
    assert!(!flag.exists(), "no reboot without an update");
    let v2 = release(&w, "2", 1_700_000_100);
    out_has(&now(&[]), "updated; rebooting");
    assert!(flag.exists(), "the reboot command ran");
    let st = status();
    assert_eq!(
        pick(&st[0], "version pending"),
        json!({"version": "2", "pending": true})
    );
    let got = Audit::syslog().take(&sys);
    let got: Vec<Value> = got
        .iter()
        .map(|v| json!([v["result"], v["to"]["commit"]]))
        .collect();
    assert_eq!(
        got,
        [
            json!(["success", v1]),
            json!(["nothing-to-do", v1]),
            json!(["success", v2])
        ]
    );
}

/// An executable `bin/update-backend-NAME` that logs its requests to `bin/NAME.requests`
/// and then runs `body` (the request is in `$req`).
fn backend(bin: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = bin.join(format!("update-backend-{name}"));
    let log = bin.join(format!("{name}.requests"));
    let head = format!(
        "#!/bin/sh\nreq=$(cat)\nprintf '%s\\n' \"$req\" >> '{}'\n",
        log.display()
    );
    std::fs::write(&p, head + body + "\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const FAKE: &str = r#"case "$req" in
*'"op":"check"'*) cat "$(dirname "$0")/check.json" ;;
*'"op":"apply"'*) echo '{"ok":true,"result":{"from":{"commit":"aaa","version":"1"},"to":{"commit":"bbb","version":"2"},"bytes_fetched":42,"signer":"release"}}' ;;
*) echo '{"ok":false,"error":"unknown op"}' ;;
esac"#;

#[test]
fn an_external_backend_speaks_the_protocol() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sys = Sys::new(d, &d.join("cmdline"));
    let bin = d.join("bin");
    backend(&bin, "fake", FAKE);
    let answer = |available: bool| {
        let c = json!({"ok": true, "result": {"current": {"commit": "aaa", "version": "1"},
            "available": {"commit": "bbb", "version": "2"}, "update_available": available}});
        std::fs::write(bin.join("check.json"), c.to_string()).unwrap();
    };
    answer(true);
    sys.config(&["source", "https://updates.example.com/os"])
        .success();
    sys.config(&["key", "add", "release", &keygen(d, "k")])
        .success();
    let mut audit = Audit::syslog();

    // No sysroot and one backend on PATH: it is used without being configured.
    sys.run(&["--now", "--noreboot"]).success();
    let recs = audit.take(&sys);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let want = json!({"result": "success", "backend": "fake", "bytes_fetched": 42,
        "from": {"commit": "aaa", "version": "1"}, "to": {"commit": "bbb", "version": "2"}, "signer": "release"});
    assert_eq!(
        pick(&recs[0], "result backend bytes_fetched from to signer"),
        want
    );
    let reqs = std::fs::read_to_string(bin.join("fake.requests")).unwrap();
    let reqs: Vec<Value> = reqs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = reqs.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["check", "apply"]);
    assert_eq!(
        pick(&reqs[0], "protocol root"),
        json!({"protocol": 1, "root": d})
    );
    let c = &reqs[0]["config"];
    assert_eq!(c["source"], "https://updates.example.com/os");
    assert!(
        c["keys"]["release"].is_string() && c["verify"] == true,
        "{c}"
    );

    // Configured by name, with the reboot command; then nothing to do.
    let flag = d.join("rebooted");
    sys.config(&["backend", "fake"]).success();
    sys.config(&["reboot-command", &format!("touch {}", flag.display())])
        .success();
    out_has(&sys.run(&["--now"]), "updated; rebooting");
    std::fs::remove_file(&flag).unwrap();
    answer(false);
    out_has(&sys.run(&["--now"]), "nothing to do");
    assert!(!flag.exists());
    let results: Vec<Value> = audit
        .take(&sys)
        .iter()
        .map(|r| r["result"].clone())
        .collect();
    assert_eq!(results, ["success", "nothing-to-do"]);

    // Backends that print garbage, exit non-zero or refuse: the error names them.
    backend(&bin, "garbage", "echo 'hello, not json'");
    let broken = "echo 'half an answer'; echo 'disk on fire' >&2; exit 7";
    backend(&bin, "broken", broken);
    backend(
        &bin,
        "refuse",
        r#"echo '{"ok":false,"error":"the mirror is down"}'"#,
    );
    for (name, needles) in [
        (
            "garbage",
            "backend garbage;not one JSON object;hello, not json",
        ),
        (
            "broken",
            "backend broken;exit status: 7;half an answer;disk on fire",
        ),
        ("refuse", "backend refuse: the mirror is down"),
    ] {
        sys.config(&["backend", name]).success();
        let r = sys.run(&["--now", "--noreboot"]);
        r.exit_code(1);
        stderr_has(&r, &needles.split(';').collect::<Vec<_>>());
        let recs = audit.take(&sys);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        assert_eq!(
            pick(&recs[0], "result backend"),
            json!({"result": "error", "backend": name})
        );
        let err = recs[0]["error"].as_str().unwrap();
        assert!(err.starts_with(&format!("backend {name}: ")), "{err}");
    }
    // A backend named in the config but not on PATH: not implemented.
    sys.config(&["backend", "nosuch"]).success();
    stderr_has(sys.run(&["--now"]).exit_code(3), &[NOT_IMPLEMENTED]);
}

// Regression tests of the hardening issue (14), items 15 and 16: what the user types gets
// a message about what they typed.

#[test]
fn a_log_path_with_control_characters_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sys = Sys::new(d, &d.join("cmdline"));
    sys.config(&["log", "/var/log/update.jsonl"]).success();
    let before = sys.file().unwrap();
    for bad in [
        "/var/log/a\nverify = false",
        "/var/log/a\tb",
        "/var/log/\u{1b}[2Jx",
    ] {
        let r = sys.config(&["log", bad]);
        r.exit_code(1);
        stderr_has(&r, &["invalid log", "may not contain control characters"]);
        assert_eq!(sys.file().unwrap(), before, "{bad:?} changed the file");
    }
    assert_eq!(sys.show()["log"], "/var/log/update.jsonl");
}

#[test]
fn a_missing_key_file_is_named_not_parsed_as_base64() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sys = Sys::new(d, &d.join("cmdline"));
    let missing = d.join("missing.pub");
    for given in [s(&missing), "/nonexistent/release.pub", "release.pub"] {
        let r = sys.config(&["key", "add", "release", given]);
        r.exit_code(1);
        stderr_has(
            &r,
            &[
                &format!("invalid key file {given}"),
                "No such file or directory",
            ],
        );
        assert!(!r.stderr.contains("base64:"), "{}", r.describe());
    }
    // A directory is not a key file either; text that is no path is still judged as a key.
    let r = sys.config(&["key", "add", "release", s(d)]);
    stderr_has(r.exit_code(1), &["invalid key file", "not a regular file"]);
    let r = sys.config(&["key", "add", "release", "AAAA"]);
    stderr_has(r.exit_code(1), &["invalid public key"]);
    assert!(sys.file().is_none(), "nothing was saved");
}

#[test]
fn a_negative_boot_retry_limit_gets_the_accepted_range() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sys = Sys::new(d, &d.join("cmdline"));
    for n in ["-3", "-1", "-0"] {
        let r = sys.config(&["boot-retry-limit", n]);
        r.exit_code(1);
        stderr_has(
            &r,
            &[&format!("boot-retry-limit '{n}'"), "an integer from 1 to 9"],
        );
        assert!(!r.stderr.contains("-- "), "no clap hint: {}", r.describe());
    }
    assert!(sys.file().is_none(), "nothing was saved");
}

#[test]
fn status_json_names_the_sysroot_by_its_absolute_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(d.join("sys")).unwrap();
    std::fs::write(d.join("cmdline"), "quiet\n").unwrap();
    update([
        "sysroot",
        "init",
        "--sysroot",
        s(&d.join("sys")),
        "--os",
        "os",
        "--boot",
        s(&d.join("sys/boot")),
    ])
    .success();
    let mut cmd = Command::new(update_bin());
    cmd.current_dir(&d).args([
        "status",
        "--sysroot",
        "sys",
        "--proc-cmdline",
        "cmdline",
        "--json",
    ]);
    let r = run_command(cmd, Duration::from_secs(60));
    let v: Value = serde_json::from_str(r.success().out()).unwrap();
    assert_eq!(v["sysroot"], json!(d.join("sys")), "{v:#}");
}

#[test]
fn an_audit_log_that_cannot_be_written_is_reported_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut sys = Sys::new(d, &d.join("cmdline"));
    // No syslog daemon: the socket is not there.
    sys.sock = d.join("no-syslog/log.sock");
    let warning = format!(
        "warning: could not write the audit log to syslog (socket {})",
        sys.sock.display()
    );
    // The "Not implemented" line.
    let r = sys.run(&["--now"]);
    r.exit_code(3);
    stderr_has(
        &r,
        &[NOT_IMPLEMENTED, &warning, "No such file or directory"],
    );
    assert_eq!(r.stderr.matches(&warning).count(), 1, "{}", r.describe());
    // A run with a backend: its audit line.
    let bin = d.join("bin");
    backend(&bin, "fake", FAKE);
    let check = json!({"ok": true, "result": {"current": {"commit": "aaa", "version": "1"},
        "available": {"commit": "aaa", "version": "1"}, "update_available": false}});
    std::fs::write(bin.join("check.json"), check.to_string()).unwrap();
    sys.config(&["source", "https://updates.example.com/os"])
        .success();
    let r = sys.run(&["--now"]);
    out_has(&r, "nothing to do");
    stderr_has(&r, &[&warning]);
    assert_eq!(r.stderr.matches("warning: could not write").count(), 1);
    // A log file that cannot be created names the file.
    sys.config(&["log", &format!("{}/log.jsonl", d.join("cmdline").display())])
        .success();
    std::fs::write(d.join("cmdline"), "quiet\n").unwrap();
    let r = sys.run(&["--now"]);
    out_has(&r, "nothing to do");
    stderr_has(
        &r,
        &[&format!(
            "warning: could not write the audit log to {}/log.jsonl",
            d.join("cmdline").display()
        )],
    );
}
