#!/bin/bash
# build-initramfs.sh OUT UPDATE_BIN KCACHE: the VM test's initramfs, a gzip'd newc cpio holding
#   /init                  dist/initramfs/update-init (mounts the root, `update prepare-root`,
#                          switch_root)
#   /bin/busybox + applets busybox-static
#   /usr/bin/update        UPDATE_BIN (give a stripped copy: it is loaded from the ESP under TCG)
#   its shared libraries   at the paths ldd names, the loader included
#   /lib/modules/...       the modules in KCACHE/modules.list, listed in /etc/initrd-modules
# KCACHE is the directory fetch-kernel.sh printed. No root privileges needed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
OUT=${1:?usage: build-initramfs.sh OUT UPDATE_BIN KCACHE}
BIN=${2:?usage: build-initramfs.sh OUT UPDATE_BIN KCACHE}
KCACHE=${3:?usage: build-initramfs.sh OUT UPDATE_BIN KCACHE}
INIT=$HERE/../../dist/initramfs/update-init
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null || vm_die "no /bin/busybox: run scripts/install-deps.sh"
T=$(mktemp -d "$VM_WORK/initramfs.XXXXXX"); trap 'rm -rf "$T"' EXIT
mkdir -p "$T"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,etc,sysroot}
cp /bin/busybox "$T/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/bin/$a"; done
install -m 0755 "$INIT" "$T/init"
install -m 0755 "$BIN" "$T/usr/bin/update"
# Shared libraries and the loader, at the paths the binary asks for.
"$HERE/copy-libs.sh" "$BIN" "$T"
: > "$T/etc/initrd-modules"
while read -r rel; do
  mkdir -p "$T/$(dirname "$rel")"; cp "$KCACHE/$rel" "$T/$rel"; echo "/$rel" >> "$T/etc/initrd-modules"
done < "$KCACHE/modules.list"
# Device nodes the kernel needs before devtmpfs is mounted (mknod needs root; without it the
# kernel still opens the console through devtmpfs once /init mounts it).
mknod -m 600 "$T/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$T/dev/null" c 1 3 2>/dev/null || true
(cd "$T" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$OUT"
