#!/bin/bash
# fetch-kernel.sh: make sure the kernel cache holds the stock Debian 12 kernel the VM test boots,
# then print the cache directory (one line) on stdout.
#
# The kernel is the package Debian's linux-image-amd64 depends on (linux-image-6.1.0-NN-amd64),
# fetched with `apt-get download` (never installed), unpacked with `dpkg -x`, `depmod`ed. Only
# what the test needs is kept, in $VM_WORK/kernel/KVER/:
#   vmlinuz               the kernel
#   modules.list          the .ko files to insmod, in order (modprobe --show-depends), relative
#   lib/modules/KVER/...  those .ko files
#   kver                  the kernel version
# The cache is reused across runs; an older kernel version's directory is removed once a newer
# one is in place, and used (with a warning) when the newer one cannot be downloaded. Set
# KPKG=linux-image-... to pin a package.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
mkdir -p "$VM_KCACHE"
exec 9>"$VM_KCACHE/.lock"
flock 9

resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=${KPKG:-$(resolve)}
if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then
  # No package lists yet (a fresh container): fetch them once.
  echo "fetch-kernel: apt-get update (no package lists to resolve linux-image-amd64)" >&2
  apt-get update -qq >&2 || true
  KPKG=$(resolve)
fi
# An older kernel from an earlier run, when the current one cannot be had (offline).
use_cached() {  # use_cached WHY
  local cached; cached=$(ls -d "$VM_KCACHE"/*/kver 2>/dev/null | head -1 || true)
  [ -n "$cached" ] || return 1
  echo "fetch-kernel: warning: $1; using the cached kernel $(cat "$cached")" >&2
  dirname "$cached"; exit 0
}
if [ -z "$KPKG" ]; then
  use_cached "cannot resolve linux-image-amd64" || vm_die "cannot resolve the kernel package \
linux-image-amd64 depends on (apt-cache depends linux-image-amd64 printed nothing): run \
scripts/install-deps.sh, or apt-get update"
fi
KVER=${KPKG#linux-image-}
OUT=$VM_KCACHE/$KVER
if [ -f "$OUT/kver" ]; then echo "$OUT"; exit 0; fi

T=$(mktemp -d "$VM_WORK/fetch-kernel.XXXXXX"); trap 'rm -rf "$T"' EXIT
echo "fetch-kernel: downloading $KPKG" >&2
# apt-get download as root warns unless the _apt user can write the download directory.
chmod 755 "$T"; chown _apt "$T" 2>/dev/null || true
if ! (cd "$T" && apt-get download -q "$KPKG" >&2); then
  use_cached "apt-get download $KPKG failed" ||
  vm_die "apt-get download $KPKG failed: the VM test needs the Debian kernel package \
(network access to the Debian archive, or a cache in $VM_KCACHE from an earlier run)"
fi
dpkg -x "$T"/"${KPKG}"_*.deb "$T/root"
depmod -b "$T/root" "$KVER"
mkdir -p "$T/out"
cp "$T/root/boot/vmlinuz-$KVER" "$T/out/vmlinuz"
# modprobe --show-depends prints the insmod lines in dependency order, softdeps included.
for m in $VM_MODULES; do
  modprobe -d "$T/root" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r p; do
  rel=${p#"$T/root/"}
  mkdir -p "$T/out/$(dirname "$rel")"; cp "$p" "$T/out/$rel"; echo "$rel" >> "$T/out/modules.list"
done
[ -s "$T/out/modules.list" ] || vm_die "no modules found for: $VM_MODULES"
echo "$KVER" > "$T/out/kver"
rm -rf "$OUT"; mv "$T/out" "$OUT"
# Keep only the current kernel.
for d in "$VM_KCACHE"/*/; do [ "${d%/}" = "$OUT" ] || rm -rf "$d"; done
echo "fetch-kernel: cached $KVER in $OUT ($(wc -l < "$OUT/modules.list") modules)" >&2
echo "$OUT"
