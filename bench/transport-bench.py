#!/usr/bin/env python3
"""Transport benchmark: publish, pull and serve, against OSTree, casync, zstd and nginx.

Usage: bench/transport-bench.py [--runs N] [--quick]
(normally through `bench/run transport`, which installs deps and builds first).

Two versions of a rootfs-like tree made of real Debian packages (the store
bench's package set): v2 is the store bench's tree plus two added packages;
v1 has older versions of a few packages (those with an older version in the
configured archives: bookworm, bookworm-updates, bookworm-security) and the
previous kernel ABI (linux-image-6.1.0-(NN-1)-amd64). The hop v1 -> v2 is
what a device updates over. Both trees are cached under
${BENCH_DIR:-/var/tmp/update-bench}.

Every repo is served by one nginx on 127.0.0.1 started by the bench with its
own config (as tests/src/nginx.rs does); bytes and requests are counted from
its access log, so both sides are counted the same way, metadata included.
`update serve` is only used for the throughput row, against a second nginx
serving the same files.

Timings never fail the script; only a command that errors does. A row whose
feature is missing on our side (a command or flag not there yet) prints n/a.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    FULL_PACKAGES,
    GNU_TIME,
    MB,
    QUICK_PACKAGES,
    REPO_ROOT,
    Apt,
    CommandError,
    log,
    med,
    ratio,
    rm_rf,
    run,
    timed,
    unpack_debs,
    verdict,
)

NGINX = "/usr/sbin/nginx"

# Packages of v2 that v1 has in an older version (when the archives have one),
# and packages v2 adds. "@kernel" is the kernel: v1 gets the previous ABI.
FULL_UPGRADED = ["@kernel", "libc6", "locales", "systemd", "git", "tzdata", "perl-modules-5.36"]
QUICK_UPGRADED = ["tzdata", "git-man", "perl-modules-5.36", "libpython3.11-stdlib"]
ADDED = ["libperl5.36", "openssl"]

TARGETS = {
    "full_pull_speedup": 5.0,  # ostree pull time / ours, at least
    "full_pull_bytes_vs_ostree": 1.0,  # at most
    "delta_bytes_vs_ostree": 1.0,  # at most
    "delta_bytes_vs_zstd": 1.2,  # at most
    "chunks_bytes_vs_ostree": 0.8,  # at most
    "chunks_bytes_vs_casync": 1.0,  # below
    "update_requests": 20,  # at most
    "full_pull_requests_per_file": 0.01,  # below
    "publish_speedup": 10.0,  # ostree static-delta generate time / our publish, at least
    "publish_rss_mib": 512.0,  # at most
    "pull_rss_mib": 64.0,  # at most
    "serve_throughput_vs_nginx": 0.8,  # at least
}

T1 = 1_700_000_000  # commit timestamps of v1 and v2
T2 = T1 + 86_400


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def has_flag(binary: str, sub: list[str], flag: str) -> bool:
    p = subprocess.run([binary, *sub, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode == 0 and flag in p.stdout


# --------------------------------------------------------------------------
# The two trees


def deb_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field]).strip()


def older_version(apt, pkg: str, than: str) -> str | None:
    """The newest version of pkg in the archives that is older than `than`."""
    out = apt._retry(lambda: run(["apt-cache", "madison", pkg]))
    versions = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0] == pkg and parts[1] not in versions:
            versions.append(parts[1])
    older = [
        v for v in versions
        if subprocess.run(["dpkg", "--compare-versions", v, "lt", than]).returncode == 0
    ]
    best = None
    for v in older:
        if best is None or subprocess.run(["dpkg", "--compare-versions", v, "gt", best]).returncode == 0:
            best = v
    return best


def download_version(apt, pkg: str, version: str, dest: Path) -> Path:
    pattern = f"{pkg}_{version.replace(':', '%3a')}_*.deb"
    found = sorted(glob.glob(str(dest / pattern)))
    if found:
        return Path(found[-1])
    log(f"  apt-get download {pkg}={version}")
    cmd = ["apt-get", "download", "-qq", f"{pkg}={version}"]
    if os.geteuid() == 0:
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    apt._retry(lambda: run(cmd, cwd=dest))
    found = sorted(glob.glob(str(dest / pattern)))
    if not found:
        raise CommandError(f"apt-get download {pkg}={version} left no {pattern} in {dest}")
    return Path(found[-1])


def previous_kernel(apt, kernel: str) -> str | None:
    m = re.fullmatch(r"linux-image-(\d+\.\d+\.\d+)-(\d+)-(.+)", kernel)
    if not m:
        return None
    base, abi, flavour = m.group(1), int(m.group(2)), m.group(3)
    for n in range(abi - 1, max(abi - 10, 0), -1):
        name = f"linux-image-{base}-{n}-{flavour}"
        if run(["apt-cache", "madison", name]).strip():
            return name
    return None


def build_trees(quick: bool, apt) -> dict:
    """v1 and v2 trees, and a description of the hop between them."""
    base = QUICK_PACKAGES if quick else FULL_PACKAGES
    upgraded = QUICK_UPGRADED if quick else FULL_UPGRADED
    debs_dir = BENCH_DIR / "debs"  # the store bench's cache: newest versions
    # Older versions and added packages live apart, so that the store bench's
    # `{pkg}_*.deb` lookups never pick them up.
    extra_dir = BENCH_DIR / "debs-transport"
    debs_dir.mkdir(parents=True, exist_ok=True)
    extra_dir.mkdir(parents=True, exist_ok=True)

    v1, v2, hop = [], [], {"upgraded": [], "not_upgraded": [], "added": [], "kernel": None}
    for pkg in base:
        kernel = pkg == "@kernel"
        if kernel:
            pkg = apt.kernel_package()
        new = apt.download(pkg, debs_dir)
        v2.append(new)
        if (("@kernel" if kernel else pkg) not in upgraded):
            v1.append(new)
            continue
        if kernel:
            prev = previous_kernel(apt, pkg)
            if prev is None:
                hop["not_upgraded"].append(pkg)
                v1.append(new)
                continue
            old = apt.download(prev, extra_dir)
            hop["kernel"] = f"{prev} {deb_field(old, 'Version')} -> {pkg} {deb_field(new, 'Version')}"
        else:
            newv = deb_field(new, "Version")
            oldv = older_version(apt, pkg, newv)
            if oldv is None:
                hop["not_upgraded"].append(pkg)
                v1.append(new)
                continue
            old = download_version(apt, pkg, oldv, extra_dir)
            hop["upgraded"].append(f"{pkg} {oldv} -> {newv}")
        v1.append(old)
    for pkg in ADDED:
        deb = apt.download(pkg, extra_dir)
        v2.append(deb)
        hop["added"].append(f"{pkg} {deb_field(deb, 'Version')}")

    mode = "quick" if quick else "full"
    t1, s1 = unpack_debs(f"transport-{mode}-v1", v1)
    t2, s2 = unpack_debs(f"transport-{mode}-v2", v2)
    return {"v1": t1, "v2": t2, "v1_stats": s1, "v2_stats": s2, "hop": hop, "mode": mode}


# --------------------------------------------------------------------------
# nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(f"{what} exited {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise CommandError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Nginx:
    """nginx serving `root` on a free port, with a counting access log (like tests/src/nginx.rs)."""

    def __init__(self, root: Path, workdir: Path, *, log_requests: bool = True, workers: str = "1") -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
        (self.prefix / "tmp").mkdir()
        self.port = free_port()
        self.access = self.prefix / "access.log"
        p = lambda n: f'"{self.prefix / n}"'  # noqa: E731
        user = "user root root;\n" if os.geteuid() == 0 else ""
        access = (
            f"    log_format bench \"$request_method\\t$request_uri\\t$status\\t$body_bytes_sent\\t$http_range\";\n"
            f"    access_log {p('access.log')} bench;\n"
            if log_requests
            else "    access_log off;\n"
        )
        conf = (
            "daemon off;\nmaster_process " + ("off" if workers == "1" else "on") + ";\n"
            f"worker_processes {workers};\n{user}pid {p('nginx.pid')};\n"
            f"error_log {p('error.log')} warn;\n"
            "events {\n    worker_connections 1024;\n}\n"
            "http {\n"
            f"    client_body_temp_path {p('tmp/client_body')};\n"
            f"    proxy_temp_path {p('tmp/proxy')};\n"
            f"    fastcgi_temp_path {p('tmp/fastcgi')};\n"
            f"    uwsgi_temp_path {p('tmp/uwsgi')};\n"
            f"    scgi_temp_path {p('tmp/scgi')};\n"
            "    types { }\n    default_type application/octet-stream;\n"
            "    sendfile on;\n    tcp_nopush on;\n    gzip off;\n    server_tokens off;\n"
            "    keepalive_timeout 15s;\n    keepalive_requests 100000;\n"
            f"{access}"
            "    server {\n"
            f"        listen 127.0.0.1:{self.port};\n"
            f"        root \"{root}\";\n"
            "        location / { }\n"
            "    }\n}\n"
        )
        conf_path = self.prefix / "nginx.conf"
        conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(conf_path), "-e", str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "stderr", "w"),
        )
        try:
            wait_port(self.port, self.proc, "nginx")
        except CommandError as e:
            err = (self.prefix / "error.log").read_text() if (self.prefix / "error.log").exists() else ""
            raise CommandError(f"{e}\n{err}") from None
        self.url = f"http://127.0.0.1:{self.port}/"

    def mark(self) -> int:
        return self.access.stat().st_size if self.access.exists() else 0

    def since(self, mark: int, settle: float = 0.3) -> list[tuple[str, str, int, int, str]]:
        """Access log entries written after `mark`: (method, uri, status, bytes, range)."""
        time.sleep(settle)  # nginx logs a request after its response went out
        with open(self.access, "rb") as f:
            f.seek(mark)
            data = f.read().decode()
        out = []
        for line in data.splitlines():
            m, uri, status, sent, rng = (line.split("\t") + [""] * 5)[:5]
            out.append((m, uri, int(status), int(sent), "" if rng == "-" else rng))
        return out

    def stop(self) -> None:
        stop(self.proc)


def traffic(entries) -> dict:
    return {
        "requests": len(entries),
        "bytes": sum(e[3] for e in entries),
        "errors": sum(1 for e in entries if e[2] >= 400),
    }


# --------------------------------------------------------------------------
# Our side


class Ours:
    def __init__(self, binary: Path, work: Path, www: Path, nginx: Nginx) -> None:
        self.bin = str(binary)
        self.work = work
        self.www = www
        self.nginx = nginx
        self.key = work / "ours.key"
        self.builder = work / "ours-builder"
        self.can_timestamp = has_flag(self.bin, ["commit"], "--timestamp")
        self.can_deltas = has_flag(self.bin, ["publish"], "--no-deltas")
        self.can_pull_no_deltas = has_flag(self.bin, ["pull"], "--no-deltas")

    def u(self, *args: str) -> str:
        return run([self.bin, *map(str, args)])

    def commit(self, tree: Path, version: str, ts: int) -> str:
        cmd = [self.bin, "commit", "--repo", str(self.builder), "--branch", "os", "--version", version,
               "--sign-with", str(self.key)]
        if self.can_timestamp:
            cmd += ["--timestamp", str(ts)]
        secs, rss, out = timed([*cmd, str(tree)])
        return out.strip().splitlines()[-1]

    def publish(self, out: Path, *extra: str) -> tuple[float, int]:
        secs, rss, _ = timed([self.bin, "publish", "--repo", str(self.builder), "--key", str(self.key),
                              "--output", str(out), *extra])
        return secs, rss

    def device(self, path: Path, url_path: str) -> None:
        self.u("init", "--repo", path, "--mode", "bare")
        self.u("remote", "add", "--repo", path, "origin", self.nginx.url + url_path, "--key", f"{self.key}.pub")

    def pull(self, device: Path, *extra: str) -> dict:
        mark = self.nginx.mark()
        secs, rss, out = timed([self.bin, "pull", "--repo", str(device), "origin", "--json", *extra])
        entries = self.nginx.since(mark)
        lines = [l for l in out.splitlines() if l.strip()]
        report = json.loads(lines[-1]) if lines else {}
        planned = [json.loads(l) for l in lines[:-1] if '"planned"' in l]
        r = {"seconds": secs, "rss_kib": rss, **traffic(entries),
             "report_bytes": report.get("bytes"), "report_requests": report.get("requests"),
             "delta_fetched": any("/deltas/" in e[1] for e in entries),
             "planned_delta": [p.get("delta") for p in planned]}
        r["by_kind"] = by_kind(entries)
        return r


def by_kind(entries) -> dict:
    kinds: dict[str, list[int]] = {}
    for e in entries:
        parts = e[1].strip("/").split("?")[0].split("/")
        k = parts[1] if len(parts) > 2 else parts[-1]
        last = parts[-1]
        if len(parts) > 2 and "." in last:
            k += "/*" + last[last.rfind("."):]
        if e[4]:
            k += " (range)"
        kinds.setdefault(k, [0, 0])
        kinds[k][0] += 1
        kinds[k][1] += e[3]
    return kinds


# --------------------------------------------------------------------------
# OSTree


class OSTree:
    def __init__(self, work: Path, nginx: Nginx) -> None:
        self.work = work
        self.nginx = nginx
        self.builder = work / "www" / "ostree"

    def o(self, repo: Path, *args: str) -> str:
        return run(["ostree", f"--repo={repo}", *map(str, args)])

    def commit(self, tree: Path, version: str) -> str:
        return self.o(self.builder, "commit", "--branch=os", f"--tree=dir={tree}",
                      f"--add-metadata-string=version={version}").strip()

    def device(self, path: Path) -> None:
        self.o(path, "init", "--mode=bare")
        self.o(path, "remote", "add", "--no-gpg-verify", "origin", self.nginx.url + "ostree/")

    def pull(self, device: Path, *extra: str) -> dict:
        mark = self.nginx.mark()
        secs, rss, _ = timed(["ostree", f"--repo={device}", "pull", *extra, "origin", "os"])
        entries = self.nginx.since(mark)
        return {"seconds": secs, "rss_kib": rss, **traffic(entries),
                "delta_fetched": any("/deltas/" in e[1] for e in entries), "by_kind": by_kind(entries)}


# --------------------------------------------------------------------------
# Peers that are measured once (their bytes do not vary between runs)


def zstd_patch(trees: dict, work: Path) -> dict:
    """zstd -19 --long=27 --patch-from of the two trees as tar files (cached by tree stamps)."""
    mode = trees["mode"]
    key = (BENCH_DIR / f"tree-transport-{mode}-v1.stamp").read_text() + \
        (BENCH_DIR / f"tree-transport-{mode}-v2.stamp").read_text()
    cache = BENCH_DIR / f"transport-{mode}-zstd.json"
    if cache.exists():
        c = json.loads(cache.read_text())
        if c.get("key") == key:
            return c
    tars = []
    for v in ("v1", "v2"):
        t = work / f"{v}.tar"
        run(["tar", "--sort=name", "--numeric-owner", "-C", str(trees[v]), "-cf", str(t), "."])
        tars.append(t)
    out = work / "v2.tar.zst"
    log("zstd -19 --long=27 --patch-from (once per pair of trees; slow) ...")
    start = time.perf_counter()
    run(["zstd", "-q", "-f", "-19", "--long=27", f"--patch-from={tars[0]}", str(tars[1]), "-o", str(out)])
    c = {"key": key, "bytes": out.stat().st_size, "seconds": time.perf_counter() - start,
         "v1_tar": tars[0].stat().st_size, "v2_tar": tars[1].stat().st_size}
    for p in (*tars, out):
        p.unlink()
    cache.write_text(json.dumps(c))
    return c


def casync_seeded(trees: dict, www: Path, work: Path, nginx: Nginx) -> dict:
    """casync make of v2 into a chunk store served by nginx, then `casync extract --seed=v1`."""
    store = www / "casync"
    store.mkdir()
    start = time.perf_counter()
    run(["casync", "make", f"--store={store / 'default.castr'}", str(store / "v2.caidx"), str(trees["v2"])])
    make_secs = time.perf_counter() - start
    dest = work / "casync-extract"
    mark = nginx.mark()
    start = time.perf_counter()
    run(["casync", "extract", f"--store={nginx.url}casync/default.castr", f"--seed={trees['v1']}",
         f"{nginx.url}casync/v2.caidx", str(dest)])
    secs = time.perf_counter() - start
    entries = nginx.since(mark)
    rm_rf(dest)
    return {"make_seconds": make_secs, "seconds": secs, **traffic(entries)}


# --------------------------------------------------------------------------
# Throughput: 200 concurrent clients, bounded in time


WRK_LUA = """
local reqs = {%s}
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) %% 1000)
  i = math.random(#reqs)
end
request = function()
  i = i %% #reqs + 1
  local r = reqs[i]
  if r[2] ~= "" then
    return wrk.format("GET", r[1], {["Range"] = r[2]})
  end
  return wrk.format("GET", r[1])
end
"""


def wrk_script(pub: Path, work: Path) -> Path:
    """A fixed mix: 80 % Range requests of 64 KiB into pack files, 20 % whole small files."""
    rng = random.Random(42)
    packs = [(p, p.stat().st_size) for p in sorted((pub / "packs").glob("*.pack"))]
    small = [p for p in sorted(pub.rglob("*")) if p.is_file() and p.suffix in (".idx", ".cidx", ".sig")
             and p.stat().st_size <= 1 << 20] + [pub / "summary"]
    total = sum(s for _, s in packs)
    reqs = []
    for _ in range(4000):
        if rng.random() < 0.8 and total:
            x = rng.randrange(total)
            for p, s in packs:
                if x < s:
                    break
                x -= s
            start = min(x, max(0, s - 65536))
            end = min(s, start + 65536) - 1
            reqs.append((f"/{p.relative_to(pub)}", f"bytes={start}-{end}"))
        else:
            p = rng.choice(small)
            reqs.append((f"/{p.relative_to(pub)}", ""))
    body = ",".join(f'{{"{a}","{b}"}}' for a, b in reqs)
    path = work / "wrk.lua"
    path.write_text(WRK_LUA % body)
    return path


UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wrk(url: str, script: Path, seconds: int) -> dict:
    out = run(["wrk", "-t2", "-c200", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    bps = float(m.group(1)) * UNITS[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "mbps": bps / MB, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errs.group(1) if errs else ""}


def throughput(ours_bin: str, pub: Path, work: Path, seconds: int) -> dict:
    script = wrk_script(pub, work)
    nx = Nginx(pub, work, log_requests=False, workers="auto")
    try:
        n = wrk(nx.url, script, seconds)
    finally:
        nx.stop()
    port = free_port()
    proc = subprocess.Popen([ours_bin, "serve", "--root", str(pub), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc, "update serve")
        o = wrk(f"http://127.0.0.1:{port}/", script, seconds)
    finally:
        stop(proc)
    return {"ours": o, "nginx": n}


# --------------------------------------------------------------------------
# One bench


class Bench:
    def __init__(self, args, trees: dict, work: Path) -> None:
        self.args = args
        self.trees = trees
        self.work = work
        self.www = work / "www"
        self.www.mkdir()
        self.nginx = Nginx(self.www, work)
        self.ours = Ours(args.update_bin, work, self.www, self.nginx)
        self.ostree = OSTree(work, self.nginx)
        self.counter = 0
        self.notes: list[str] = []

    def fresh(self, name: str) -> Path:
        self.counter += 1
        return self.work / f"{name}-{self.counter}"

    def setup(self) -> dict:
        """Builder repos with v1 published, devices holding v1, then v2 committed."""
        t, o, s = self.trees, self.ours, self.ostree
        r: dict = {}
        # Ours: v1 published and pulled by a seed device.
        o.u("init", "--repo", o.builder, "--mode", "archive")
        o.u("key", "generate", "--output", o.key)
        o.commit(t["v1"], "1", T1)
        self.pub_v1 = self.work / "pub-v1"
        o.publish(self.pub_v1)
        (self.www / "pub").symlink_to(self.pub_v1)
        self.ours_seed = self.work / "ours-device-v1"
        o.device(self.ours_seed, "pub/")
        r["ours_v1_pull"] = o.pull(self.ours_seed)
        self.v2 = o.commit(t["v2"], "2", T2)
        # OSTree: the same.
        s.o(s.builder, "init", "--mode=archive")
        s.v1 = s.commit(t["v1"], "1")
        s.o(s.builder, "summary", "-u")
        self.ostree_seed = self.work / "ostree-device-v1"
        s.device(self.ostree_seed)
        s.pull(self.ostree_seed)
        s.v2 = s.commit(t["v2"], "2")
        s.o(s.builder, "summary", "-u")
        return r

    def one_run(self, i: int) -> dict:
        busy0, mine0, wall0 = busy_cpu_seconds(), children_cpu_seconds(), time.monotonic()
        r = self._one_run(i)
        # CPU that other processes on the machine used during this run (our own
        # commands are reaped children; the bench's nginx adds a little): on a
        # shared machine this is what makes timings noisy.
        r["other_cpu"] = {
            "seconds": max(0.0, (busy_cpu_seconds() - busy0) - (children_cpu_seconds() - mine0)),
            "wall": time.monotonic() - wall0,
        }
        return r

    def _one_run(self, i: int) -> dict:
        o, s = self.ours, self.ostree
        r: dict = {}
        # Publish v2 (with its default static delta v1 -> v2) into a fresh copy of
        # the v1 publication, and OSTree's static delta of the same hop.
        pub = self.fresh("pub-v2")
        run(["cp", "-a", str(self.pub_v1), str(pub)])
        try:
            secs, rss = o.publish(pub)
            r["ours_publish"] = {"seconds": secs, "rss_kib": rss,
                                 "deltas": len(list((pub / "deltas").glob("*.delta"))) if (pub / "deltas").is_dir() else 0}
        except CommandError as e:
            self.notes.append(f"publish with deltas failed, published with --no-deltas: {str(e).splitlines()[0]}")
            rm_rf(pub)
            run(["cp", "-a", str(self.pub_v1), str(pub)])
            secs, rss = o.publish(pub, "--no-deltas")
            r["ours_publish_nodelta"] = {"seconds": secs, "rss_kib": rss}
        (self.www / "pub").unlink()
        (self.www / "pub").symlink_to(pub)
        self.pub_v2 = pub

        secs, rss, _ = timed(["ostree", f"--repo={s.builder}", "static-delta", "generate",
                              f"--from={s.v1}", f"--to={s.v2}"])
        r["ostree_delta_generate"] = {"seconds": secs, "rss_kib": rss}
        s.o(s.builder, "summary", "-u")

        # Full pulls of v2 into empty devices.
        d = self.fresh("ours-full")
        o.device(d, "pub/")
        r["ours_full"] = o.pull(d)
        d = self.fresh("ostree-full")
        s.device(d)
        r["ostree_full"] = s.pull(d)

        # Updates v1 -> v2: with the static delta, then chunks / objects only.
        for name, extra_ours, extra_ostree in (("delta", [], []),
                                               ("chunks", ["--no-deltas"], ["--disable-static-deltas"])):
            if extra_ours and not o.can_pull_no_deltas:
                r[f"ours_{name}"] = None
            else:
                d = self.fresh(f"ours-{name}")
                run(["cp", "-a", str(self.ours_seed), str(d)])
                r[f"ours_{name}"] = o.pull(d, *extra_ours)
            d = self.fresh(f"ostree-{name}")
            run(["cp", "-a", str(self.ostree_seed), str(d)])
            r[f"ostree_{name}"] = s.pull(d, *extra_ostree)

        r["throughput"] = throughput(o.bin, pub, self.work, self.args.wrk_seconds)
        return r


def small_tree_pull_rss(args, work: Path, apt) -> int | None:
    """Peak RSS of a full pull of the quick v2 tree, to set beside the big tree's."""
    trees = build_trees(True, apt)
    w = work / "small"
    w.mkdir()
    www = w / "www"
    www.mkdir()
    nx = Nginx(www, w)
    try:
        o = Ours(args.update_bin, w, www, nx)
        o.u("init", "--repo", o.builder, "--mode", "archive")
        o.u("key", "generate", "--output", o.key)
        o.commit(trees["v2"], "2", T2)
        o.publish(www / "pub")
        d = w / "device"
        o.device(d, "pub/")
        return o.pull(d)["rss_kib"]
    finally:
        nx.stop()


# --------------------------------------------------------------------------
# Reporting


def fs(v):
    return "n/a" if v is None else f"{v:.2f} s"


def fb(v):
    if v is None:
        return "n/a"
    return f"{v / MB:,.2f} MB" if v >= 100_000 else f"{v:,.0f} B"


def fx(v):
    return "n/a" if v is None else f"{v:.2f}x"


def fmib(v):
    return "n/a" if v is None else f"{v / 1024:.1f} MiB"


def report(runs: list[dict], once: dict, trees: dict, rss_small: int | None) -> tuple[str, dict]:
    T = TARGETS
    s1, s2 = trees["v1_stats"], trees["v2_stats"]
    files = s2["files"]
    rows = []

    def row(name, ours, peer, rat, target, ok):
        rows.append((name, ours, peer, rat, target, "–" if target == "–" else verdict(ok)))

    def le(v, t):
        return None if v is None else v <= t

    def ge(v, t):
        return None if v is None else v >= t

    def lt(v, t):
        return None if v is None else v < t

    delta_used = all(r.get("ours_delta") and r["ours_delta"]["delta_fetched"] for r in runs)

    # Full pull
    of, xf = med(runs, "ours_full", "seconds"), med(runs, "ostree_full", "seconds")
    sp = ratio(xf, of)
    row("full pull v2: time", fs(of), f"ostree {fs(xf)}", fx(sp) + " faster" if sp else "n/a",
        f">= {T['full_pull_speedup']:g}x faster", ge(sp, T["full_pull_speedup"]))
    ob, xb = med(runs, "ours_full", "bytes"), med(runs, "ostree_full", "bytes")
    rb = ratio(ob, xb)
    row("full pull v2: bytes", fb(ob), f"ostree {fb(xb)}", fx(rb), "<= ostree", le(rb, 1.0))
    oreq, xreq = med(runs, "ours_full", "requests"), med(runs, "ostree_full", "requests")
    per = ratio(oreq, files)
    row("full pull v2: requests", f"{oreq:.0f}" if oreq is not None else "n/a",
        f"ostree {xreq:.0f}" if xreq is not None else "n/a",
        f"{per * 100:.3f} per 100 files" if per is not None else "n/a",
        f"< 1 per 100 files ({files:,} files)", lt(per, T["full_pull_requests_per_file"]))

    # Update with a static delta
    od, xd = med(runs, "ours_delta", "bytes"), med(runs, "ostree_delta", "bytes")
    zb = once.get("zstd", {}).get("bytes")
    od_ok = od if delta_used else None
    rdo = ratio(od_ok, xd)
    row("update v1->v2, static delta: bytes", fb(od_ok) if delta_used else f"n/a (no delta fetched; {fb(od)})",
        f"ostree {fb(xd)}", fx(rdo), "<= ostree", le(rdo, 1.0))
    rdz = ratio(od_ok, zb)
    row("update v1->v2, static delta: bytes vs zstd", fb(od_ok),
        f"zstd -19 --long=27 --patch-from {fb(zb)}", fx(rdz), f"<= {T['delta_bytes_vs_zstd']:g}x",
        le(rdz, T["delta_bytes_vs_zstd"]))
    odr, xdr = med(runs, "ours_delta", "requests"), med(runs, "ostree_delta", "requests")
    row("update v1->v2, static delta: requests", "n/a" if odr is None else f"{odr:.0f}",
        "n/a" if xdr is None else f"ostree {xdr:.0f}", "–", f"<= {T['update_requests']}",
        le(odr, T["update_requests"]))
    odt, xdt = med(runs, "ours_delta", "seconds"), med(runs, "ostree_delta", "seconds")
    row("update v1->v2, static delta: time", fs(odt), f"ostree {fs(xdt)}", fx(ratio(xdt, odt)) + " faster"
        if odt and xdt else "n/a", "–", None)

    # Update with chunks only
    oc, xc = med(runs, "ours_chunks", "bytes"), med(runs, "ostree_chunks", "bytes")
    cb = once.get("casync", {}).get("bytes")
    rco = ratio(oc, xc)
    row("update v1->v2, no delta: bytes", fb(oc), f"ostree objects {fb(xc)}", fx(rco),
        f"<= {T['chunks_bytes_vs_ostree']:g}x", le(rco, T["chunks_bytes_vs_ostree"]))
    rcc = ratio(oc, cb)
    row("update v1->v2, no delta: bytes vs casync", fb(oc), f"casync --seed {fb(cb)}", fx(rcc), "< casync",
        lt(rcc, 1.0))
    ocr, xcr = med(runs, "ours_chunks", "requests"), med(runs, "ostree_chunks", "requests")
    cr = once.get("casync", {}).get("requests")
    row("update v1->v2, no delta: requests", "n/a" if ocr is None else f"{ocr:.0f}",
        ("n/a" if xcr is None else f"ostree {xcr:.0f}") + ("" if cr is None else f", casync {cr}"), "–",
        f"<= {T['update_requests']}", le(ocr, T["update_requests"]))
    oct_, xct = med(runs, "ours_chunks", "seconds"), med(runs, "ostree_chunks", "seconds")
    row("update v1->v2, no delta: time", fs(oct_), f"ostree {fs(xct)}", fx(ratio(xct, oct_)) + " faster"
        if oct_ and xct else "n/a", "–", None)

    # Publish
    op_, xg = med(runs, "ours_publish", "seconds"), med(runs, "ostree_delta_generate", "seconds")
    rp = ratio(xg, op_)
    row("publish v2 + 1 static delta: time", fs(op_), f"ostree static-delta generate {fs(xg)}",
        fx(rp) + " faster" if rp else "n/a", f">= {T['publish_speedup']:g}x faster", ge(rp, T["publish_speedup"]))
    prss = [r["ours_publish"]["rss_kib"] for r in runs if r.get("ours_publish")]
    pmax = max(prss) if prss else None
    row("publish v2 + 1 static delta: peak RSS", fmib(pmax),
        f"ostree generate {fmib(med(runs, 'ostree_delta_generate', 'rss_kib'))}", "–",
        f"<= {T['publish_rss_mib']:g} MiB", le(None if pmax is None else pmax / 1024, T["publish_rss_mib"]))

    # Pull RSS
    rss_all = [r[op]["rss_kib"] for r in runs for op in ("ours_full", "ours_delta", "ours_chunks") if r.get(op)]
    rmax = max(rss_all) if rss_all else None
    xr = max([r[op]["rss_kib"] for r in runs for op in ("ostree_full", "ostree_delta", "ostree_chunks")], default=None)
    row("pull peak RSS (max of full, delta, chunks)", fmib(rmax), f"ostree {fmib(xr)}",
        "–" if rss_small is None else f"small tree {fmib(rss_small)}", f"<= {T['pull_rss_mib']:g} MiB",
        le(None if rmax is None else rmax / 1024, T["pull_rss_mib"]))

    # Throughput
    def tp(side, key):
        vals = [r["throughput"][side][key] for r in runs if r.get("throughput")]
        return statistics.median(vals) if vals else None

    omb, nmb, orps, nrps = tp("ours", "mbps"), tp("nginx", "mbps"), tp("ours", "rps"), tp("nginx", "rps")
    rt = ratio(omb, nmb)
    row("serve, 200 clients (wrk -c200): MB/s", "n/a" if omb is None else f"{omb:,.0f} MB/s",
        "n/a" if nmb is None else f"nginx {nmb:,.0f} MB/s", fx(rt), f">= {T['serve_throughput_vs_nginx']:g}x nginx",
        ge(rt, T["serve_throughput_vs_nginx"]))
    rr = ratio(orps, nrps)
    row("serve, 200 clients (wrk -c200): requests/s", "n/a" if orps is None else f"{orps:,.0f}/s",
        "n/a" if nrps is None else f"nginx {nrps:,.0f}/s", fx(rr), "–", None)

    others = [r["other_cpu"] for r in runs if r.get("other_cpu")]
    hop = trees["hop"]
    head = (
        f"### Transport bench ({trees['mode']} trees), median of {len(runs)} run(s)\n\n"
        f"v1: {s1['files']:,} files, {s1['bytes'] / MB:,.0f} MB; v2: {s2['files']:,} files, "
        f"{s2['bytes'] / MB:,.0f} MB. Hop: upgraded {', '.join(hop['upgraded']) or '-'}; "
        f"kernel {hop['kernel'] or '-'}; added {', '.join(hop['added'])}"
        + (f"; no older version of {', '.join(hop['not_upgraded'])}" if hop["not_upgraded"] else "")
        + ".\n\n| row | ours | peer | ratio | target | result |\n| --- | --- | --- | --- | --- | --- |\n"
    )
    text = head + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    per_run = []
    for op in ("ours_publish", "ostree_delta_generate", "ours_full", "ostree_full", "ours_delta", "ostree_delta",
               "ours_chunks", "ostree_chunks"):
        vals = [r[op]["seconds"] for r in runs if r.get(op)]
        if vals:
            per_run.append(f"{op} " + " / ".join(f"{v:.2f}" for v in vals))
    if len(runs) > 1 and per_run:
        text += "\n\nSeconds per run: " + "; ".join(per_run) + "."
    if others:
        text += (
            "\n\nCPU used outside the bench's own commands during each run (other users' processes, "
            "kernel writeback threads, the bench's nginx; noise on the timings; the machine has "
            f"{os.cpu_count()} CPUs): "
            + ", ".join(f"{o['seconds']:.0f} CPU-s in {o['wall']:.0f} s" for o in others)
            + "."
        )
    return text, {"rows": rows}


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per operation (default 3)")
    ap.add_argument("--quick", action="store_true", help="small trees, for a smoke test")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="duration of each throughput run")
    ap.add_argument("--update-bin", type=Path, default=REPO_ROOT / "target/release/update")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not os.access(args.update_bin, os.X_OK):
        log(f"error: {args.update_bin} missing; build it with `cargo build --release -p update-cli`")
        return 1
    for tool in ("ostree", "casync", "wrk", "zstd", "tar", NGINX, GNU_TIME, "dpkg-deb"):
        if not shutil.which(tool):
            log(f"error: {tool} not found; run scripts/install-deps.sh --bench")
            return 1
    for sub in (["pull"], ["remote", "add"]):
        if not has_flag(str(args.update_bin), sub, "--repo"):
            log(f"error: `update {' '.join(sub)}` does not exist in {args.update_bin} yet")
            return 1

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    apt = Apt()
    trees = build_trees(args.quick, apt)
    for v in ("v1", "v2"):
        st = trees[f"{v}_stats"]
        log(f"{v} {trees[v]}: {st['files']:,} files, {st['bytes'] / MB:,.0f} MB")
    log(f"hop: {json.dumps(trees['hop'])}")

    work = BENCH_DIR / "transport-work"
    rm_rf(work)
    work.mkdir()
    bench = Bench(args, trees, work)
    runs = []
    once: dict = {}
    rss_small = None
    try:
        log("setup: builder repos, v1 published, seed devices ...")
        setup = bench.setup()
        for i in range(args.runs):
            log(f"run {i + 1}/{args.runs} ...")
            runs.append(bench.one_run(i))
            log(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "by_kind"} if isinstance(v, dict) else v
                            for k, v in runs[-1].items()}))
        log("casync make / extract --seed ...")
        once["casync"] = casync_seeded(trees, bench.www, work, bench.nginx)
        once["zstd"] = zstd_patch(trees, work)
        if not args.quick:
            rss_small = small_tree_pull_rss(args, work, apt)
    finally:
        bench.nginx.stop()

    text, rep = report(runs, once, trees, rss_small)
    print(text)
    notes = list(dict.fromkeys(bench.notes))
    r0 = runs[0]
    for op in ("ours_full", "ours_delta", "ours_chunks", "ostree_delta"):
        if r0.get(op):
            print(f"\n{op} (run 1), per kind of file: requests, bytes: {json.dumps(r0[op]['by_kind'])}"
                  + (f"; pull's own report: {r0[op].get('report_requests')} requests, "
                     f"{r0[op].get('report_bytes')} bytes" if op.startswith("ours") else ""))
    for n in notes:
        print(f"\nnote: {n}")

    result = {
        "trees": {k: str(v) if isinstance(v, Path) else v for k, v in trees.items()},
        "setup": setup, "runs": runs, "once": once, "rss_small_kib": rss_small, "rows": rep["rows"],
        "targets": TARGETS, "notes": notes,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "ostree": run(["ostree", "--version"]).splitlines()[1].split(":", 1)[1].strip(" '")},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = BENCH_DIR / f"transport-bench{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    log(f"results written to {out}")
    rm_rf(work)
    return 0


def _interrupted(signum, frame):
    raise KeyboardInterrupt  # so that `finally` stops nginx


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        sys.exit(main())
    except CommandError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
