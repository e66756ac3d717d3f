#!/usr/bin/env python3
"""Device bench (issue 15): the real Debian tree of the device VM test, measured three ways.

    bench/run device [--runs N] [--no-vm] [--size 4G]

1. Bootable commit: `update commit --bootable` of the v1 tree (the cached debootstrap
   bookworm base of tests/device/build-base.sh plus the project's .deb, installed with apt
   in a chroot) against a plain `update commit` of the same tree (run with an empty
   directory mounted over its /dev in a private mount namespace, since a plain commit
   refuses debootstrap's device nodes). Fresh bare repository each run; alternating order.
   Target: bootable no more than 10 % slower.
2. `update install to-disk` of that commit into a new image file (objects hardlinked from
   the bare repository) against the floor: `mkfs.ext4 -d` of the same tree plus
   `mkfs.vfat` of the ESP, at the same offsets of a same-size sparse image. Target: 1.5x.
3. (unless --no-vm) The device VM scenario (tests/device/run-scenario.sh) once, and the
   same v1 tree booted from a plain ext4 root (no update, direct kernel boot): kernel start
   to boot-complete.target for each, what early boot spent in update-prepare-root (the
   initramfs script's uptime line: target < 1 s under TCG), and for each update the run's
   duration (audit log) and its end to the reboot.

Everything lives under ${BENCH_DIR:-/var/tmp/update-bench}/device-work, deleted at the end.
Medians of --runs runs (the VM part runs once per --runs too, it takes about 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, log, rm_rf, run, timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "tests/device"
MIB = 1 << 20


def fixture(work: Path, deb: str | None) -> tuple[Path, Path]:
    """The v1 tree (base + .deb) and the .deb (built unless given)."""
    out = run([str(DEV / "build-base.sh")])
    base = re.search(r"^base=(.*)$", out, re.M).group(1)
    if not deb:
        deb = run([str(ROOT / "scripts/build-deb.sh"), str(work / "deb")]).strip().splitlines()[-1]
    tree = work / "tree"
    tree.mkdir(parents=True)
    run(["sh", "-c", f"zstd -q -dc '{base}' | tar -C '{tree}' --numeric-owner --xattrs --acls -xf -"])
    run([str(DEV / "make-tree.sh"), str(tree), "1", deb])
    return tree, Path(deb)


def commits(work: Path, upd: str, tree: Path, runs: int, key: Path) -> dict:
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    res: dict[str, list[float]] = {"plain": [], "bootable": []}
    for i in range(runs):
        order = ["plain", "bootable"] if i % 2 == 0 else ["bootable", "plain"]
        for kind in order:
            repo = work / f"repo-{kind}"
            rm_rf(repo)
            run([upd, "init", "--repo", str(repo), "--mode", "bare"])
            args = [upd, "commit", "--repo", str(repo), "--branch", "bench/os",
                    "--sign-with", str(key), str(tree)]
            if kind == "bootable":
                secs, _, _ = timed(args[:2] + ["--bootable"] + args[2:])
            else:
                inner = " ".join(f"'{a}'" for a in args)
                secs, _, _ = timed(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    f"mount --bind '{empty}' '{tree}/dev' && exec {inner}"])
            res[kind].append(secs)
            log(f"commit run {i + 1} {kind}: {secs:.2f} s")
    return res


def installs(work: Path, upd: str, tree: Path, runs: int, size: str, key: Path) -> dict:
    repo = work / "repo-bootable"
    total = int(run(["numfmt", "--from=iec", size]).strip())
    esp_off, esp_size = MIB, 512 * MIB
    root_off = esp_off + esp_size
    root_size = (total // MIB - 1) * MIB - root_off
    res: dict[str, list[float]] = {"install": [], "floor": []}
    for i in range(runs):
        img = work / "disk.img"
        rm_rf(img)
        secs, _, _ = timed([upd, "install", "to-disk", str(img), "--size", size,
                            "--repo", str(repo), "--ref", "bench/os",
                            "--key", f"release={key}.pub",
                            "--source", "http://10.0.2.100:8080/#bench/os"])
        res["install"].append(secs)
        rm_rf(img)
        fimg = work / "floor.img"
        rm_rf(fimg)
        run(["truncate", "-s", str(total), str(fimg)])
        s1, _, _ = timed(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={root_off}",
                          str(fimg), f"{root_size // 1024}k"])
        s2, _, _ = timed(["mkfs.vfat", "-F", "32", f"--offset={esp_off // 512}", str(fimg),
                          str(esp_size // 1024)])
        res["floor"].append(s1 + s2)
        rm_rf(fimg)
        log(f"install run {i + 1}: install {secs:.2f} s, floor {s1 + s2:.2f} s")
    return res


def plain_boot(work: Path, tree: Path) -> float | None:
    """Boot the v1 tree from a plain ext4 root; kernel start to boot-complete.target (s)."""
    img = work / "plain.img"
    rm_rf(img)
    # The API directories' contents are not part of a root filesystem image.
    run(["sh", "-c", f"find '{tree}/dev' -mindepth 1 -delete"])
    run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(img), "3G"])
    kernel = sorted(tree.glob("boot/vmlinuz-*"))[-1]
    initrd = sorted(tree.glob("boot/initrd.img-*"))[-1]
    serial = work / "plain-serial.log"
    run(["timeout", "600", "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max",
         "-nodefaults", "-smp", "1", "-m", "1024", "-display", "none", "-vga", "none",
         "-monitor", "none", "-serial", f"file:{serial}", "-nic", "none", "-no-reboot",
         "-kernel", str(kernel), "-initrd", str(initrd),
         "-append", "root=/dev/vda rw console=ttyS0 vmtest.poweroff=1",
         "-drive", f"if=virtio,format=raw,file={img}"])
    text = serial.read_text(errors="replace")
    m = re.search(r"VMTEST-BOOTED .*?boot_complete_us=(\d+)", text)
    rm_rf(img)
    return int(m.group(1)) / 1e6 if m else None


def vm(work: Path, upd: str, deb: Path) -> dict:
    out = work / "vm"
    run(["env", f"UPDATE_BIN={upd}", f"DEB={deb}", str(DEV / "run-scenario.sh"), str(out)])
    console = (out / "console.txt").read_text(errors="replace")
    boots = [int(x) / 1e6 for x in re.findall(r"VMTEST-BOOTED .*?boot_complete_us=(\d+)", console)]
    prep = [float(b) - float(a) for a, b in
            re.findall(r"update: deployment ready at \S+ \(uptime ([\d.]+)s to ([\d.]+)s\)", console)]
    updates = []
    for line in console.splitlines():
        m = re.search(r"VMTEST-LOG \[\s*([\d.]+)\] \S+ update\[\d+\]: (\{.*\})", line)
        if m:
            try:
                a = json.loads(m.group(2))
            except ValueError:
                continue
            if a.get("result") == "success":
                updates.append({"from": a["from"]["version"], "to": a["to"]["version"],
                                "seconds": a["duration_ms"] / 1000, "bytes": a["bytes_fetched"],
                                "logged_at": float(m.group(1))})
    reboots = [float(x) for x in re.findall(r"\[\s*([\d.]+)\] reboot: Restarting system", console)]
    for u in updates:
        after = [r for r in reboots if r >= u["logged_at"]]
        u["to_reboot"] = round(after[0] - u["logged_at"], 1) if after else None
    timings = dict(l.split() for l in (out / "timings.txt").read_text().splitlines() if l.strip())
    return {"boot_complete": boots, "prepare_root": prep, "updates": updates,
            "scenario_total": float(timings.get("total", "nan"))}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="4G")
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--bin", default=str(ROOT / "target/release/update"))
    ap.add_argument("--deb", help="the .deb to install in the tree (default: scripts/build-deb.sh)")
    a = ap.parse_args()
    upd = a.bin
    work = Path(BENCH_DIR) / "device-work"
    rm_rf(work)
    work.mkdir(parents=True)
    try:
        run([upd, "key", "generate", "--output", str(work / "release")])
        key = work / "release"
        log("fixture: the v1 tree of the device test (cached base + the .deb)")
        tree, deb = fixture(work, a.deb)
        c = commits(work, upd, tree, a.runs, key)
        i = installs(work, upd, tree, a.runs, a.size, key)
        mp, mb = med(c["plain"]), med(c["bootable"])
        mi, mf = med(i["install"]), med(i["floor"])
        print(f"commit of the v1 tree: plain median {mp:.2f} s, --bootable median {mb:.2f} s: "
              f"{(mb / mp - 1) * 100:+.1f}% (target <= +10%) "
              f"{'PASS' if mb <= mp * 1.10 else 'FAIL'}  runs plain {c['plain']} bootable {c['bootable']}")
        print(f"install to-disk: median {mi:.2f} s; floor (mkfs.ext4 -d + mkfs.vfat) median {mf:.2f} s: "
              f"{mi / mf:.2f}x (target <= 1.5x) {'PASS' if mi <= mf * 1.5 else 'FAIL'}")
        if not a.no_vm:
            results = [vm(work, upd, deb) for _ in range(a.runs)]
            plains = [p for p in (plain_boot(work, tree) for _ in range(a.runs)) if p]
            ours = [r["boot_complete"][0] for r in results if r["boot_complete"]]
            prep = [p for r in results for p in r["prepare_root"]]
            print(f"boot to boot-complete.target (kernel start, TCG): our deployment median "
                  f"{med(ours):.1f} s, plain ext4 root median {med(plains):.1f} s: "
                  f"{med(ours) - med(plains):+.1f} s")
            print(f"update-prepare-root in early boot: median {med(prep) * 1000:.0f} ms over "
                  f"{len(prep)} boots (target < 1 s) {'PASS' if med(prep) < 1 else 'FAIL'}")
            for r in results:
                for u in r["updates"]:
                    print(f"update v{u['from']} -> v{u['to']}: check+pull+deploy {u['seconds']:.1f} s, "
                          f"{u['bytes']} bytes fetched, then {u['to_reboot']} s to the reboot")
                print(f"whole scenario: {r['scenario_total']:.0f} s")
    finally:
        run(["sh", "-c", f"umount -R -l '{work}/tree/dev' 2>/dev/null; true"])
        rm_rf(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
