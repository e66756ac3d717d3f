#!/bin/bash
# make-tree.sh TREE VERSION [DEB]: turn the Debian tree TREE into version VERSION (1, 2 or 3)
# of the test device's OS, in place (no copy of the tree), the way a builder would:
#   1: install the project's .deb DEB with apt in a chroot (its initramfs-tools hook goes
#      into the initramfs that apt's trigger rebuilds), the test's probe unit, networkd for
#      the one virtual NIC, /etc/vmtest defaults;
#   2: install one more package (DEB: the cached extra .deb) and change an /etc default;
#   3: add a health check that fails before boot-complete.target.
# Needs root (chroot, mounts of /proc, /sys, /dev inside TREE, always unmounted on exit).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TREE=${1:?usage: make-tree.sh TREE VERSION [DEB]}
VERSION=${2:?usage: make-tree.sh TREE VERSION [DEB]}
DEB=${3:-}
mounted=()
cleanup() { local m; for m in "${mounted[@]}"; do umount -R -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
in_chroot() {
  local fs
  for fs in proc sys dev; do
    mount --rbind "/$fs" "$TREE/$fs"; mounted=("$TREE/$fs" "${mounted[@]}")
    mount --make-rslave "$TREE/$fs"  # an unmount in the tree must never propagate to the host
  done
  LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$TREE" "$@"
  cleanup; mounted=()
}
mkdir -p "$TREE/usr/lib/vmtest" "$TREE/etc/vmtest"
case $VERSION in
1)
  [ -n "$DEB" ] || { echo "make-tree.sh: version 1 needs the update .deb" >&2; exit 2; }
  cp "$DEB" "$TREE/tmp/"
  in_chroot apt-get install -y -q "/tmp/$(basename "$DEB")"
  rm -f "$TREE/tmp/$(basename "$DEB")"
  echo device > "$TREE/etc/hostname"
  install -m 0755 "$HERE/guest/vmtest-driver" "$TREE/usr/lib/vmtest/vmtest-driver"
  install -m 0644 "$HERE/guest/vmtest-driver.service" "$HERE/guest/vmtest-journal.service" \
    "$TREE/usr/lib/systemd/system/"
  install -m 0644 "$HERE/guest/80-vmtest.network" "$TREE/etc/systemd/network/"
  systemctl --root="$TREE" enable vmtest-driver.service vmtest-journal.service systemd-networkd.service >/dev/null 2>&1
  echo default-v1 > "$TREE/etc/vmtest/local.conf"
  echo v1 > "$TREE/etc/vmtest/default.conf"
  ;;
2)
  [ -n "$DEB" ] || { echo "make-tree.sh: version 2 needs the extra .deb" >&2; exit 2; }
  cp "$DEB" "$TREE/tmp/"
  in_chroot dpkg -i "/tmp/$(basename "$DEB")" >/dev/null
  rm -f "$TREE/tmp/$(basename "$DEB")"
  echo v2 > "$TREE/etc/vmtest/default.conf"
  ;;
3)
  install -m 0644 "$HERE/guest/vmtest-fail.service" "$TREE/usr/lib/systemd/system/"
  systemctl --root="$TREE" enable vmtest-fail.service >/dev/null 2>&1
  ;;
*) echo "make-tree.sh: unknown version $VERSION" >&2; exit 2 ;;
esac
echo "$VERSION" > "$TREE/usr/lib/vmtest/version"
