#!/usr/bin/env python3
"""`update install to-disk` of a real rootfs vs the floor: `mkfs.ext4 -d` of the same tree
plus `mkfs.vfat` of the ESP, at the same offsets of a same-size sparse image.

    bench/run install [--runs N] [--tree DIR] [--size 4G] [--bin PATH]

The tree (default: /var/tmp/deb-trial/root, a debootstrap bookworm rootfs) is read only:
it is copied once into a bootable shape (kernel and initramfs from /boot into
/usr/lib/modules/VER/) in a work directory on the same filesystem, committed signed into a
bare repository there, and installed from it (objects hardlinked). Prints the median of
the runs of each and their ratio (issue 15: at most 1.5x).
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, rm_rf, run, timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", default="/var/tmp/deb-trial/root")
    ap.add_argument("--size", default="4G")
    ap.add_argument("--work", default="/var/tmp/update-install-bench")
    ap.add_argument("--bin", default=str(ROOT / "target/release/update"))
    a = ap.parse_args()
    upd = a.bin
    work = Path(a.work)
    rm_rf(work)
    work.mkdir(parents=True)
    tree = work / "tree"
    log(f"copying {a.tree} into a bootable shape at {tree}")
    run(["cp", "-a", a.tree, str(tree)])
    boot = tree / "boot"
    for k in sorted(boot.glob("vmlinuz-*")):
        ver = k.name[len("vmlinuz-"):]
        mod = tree / "usr/lib/modules" / ver
        mod.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", str(k), str(mod / "vmlinuz")])
        initrd = boot / f"initrd.img-{ver}"
        if initrd.exists():
            run(["cp", "-a", str(initrd), str(mod / "initramfs.img")])
    (tree / "efi").mkdir(exist_ok=True)
    # A commit keeps regular files, symlinks and directories: device nodes (debootstrap's
    # /dev), FIFOs and sockets go from the copy (the floor gets the same tree).
    run(["find", str(tree), "-xdev", "(", "-type", "b", "-o", "-type", "c", "-o", "-type", "p",
         "-o", "-type", "s", ")", "-delete"])
    repo = work / "repo"
    run([upd, "init", "--repo", str(repo), "--mode", "bare"])
    run([upd, "key", "generate", "--output", str(work / "release")])
    run([upd, "commit", "--repo", str(repo), "--branch", "os/main", "--sign-with",
         str(work / "release"), str(tree)])
    size = int(run(["numfmt", "--from=iec", a.size]).strip())
    esp_off, esp_size = MIB, 512 * MIB
    root_off = esp_off + esp_size
    root_size = (size // MIB - 1) * MIB - root_off
    ours, floor = [], []
    for i in range(a.runs):
        img = work / "disk.img"
        rm_rf(img)
        secs, _, _ = timed([upd, "install", "to-disk", str(img), "--size", a.size,
                            "--repo", str(repo), "--ref", "os/main",
                            "--key", f"release={work / 'release.pub'}",
                            "--source", "http://10.0.2.2:8080/repo#os/main"])
        ours.append(secs)
        rm_rf(img)
        fimg = work / "floor.img"
        rm_rf(fimg)
        run(["truncate", "-s", str(size), str(fimg)])
        s1, _, _ = timed(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={root_off}",
                          str(fimg), f"{root_size // 1024}k"])
        s2, _, _ = timed(["mkfs.vfat", "-F", "32", f"--offset={esp_off // 512}", str(fimg),
                          str(esp_size // 1024)])
        floor.append(s1 + s2)
        rm_rf(fimg)
        log(f"run {i + 1}: install {secs:.2f} s, floor {s1 + s2:.2f} s")
    mo, mf = statistics.median(ours), statistics.median(floor)
    print(f"install to-disk: median {mo:.2f} s of {a.runs}; floor (mkfs.ext4 -d + mkfs.vfat): "
          f"median {mf:.2f} s; ratio {mo / mf:.2f}x (target <= 1.5x)")
    rm_rf(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
