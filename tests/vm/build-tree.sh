#!/bin/bash
# build-tree.sh DEST VERSION HEALTH UPDATE_BIN KCACHE INITRD: one guest OS tree for the VM test,
# merged-/usr, ready for `update commit`:
#   /usr/bin/busybox + applet symlinks, /bin /sbin /lib /lib64 -> usr/...
#   /usr/bin/update + its shared libraries under /usr/lib (the initramfs has its own copy)
#   /usr/sbin/init                     tests/vm/guest-init.sh: the test's PID 1
#   /usr/lib/modules/KVER/vmlinuz      the Debian kernel
#   /usr/lib/modules/KVER/initramfs.img
#   /usr/lib/vmtest/{version,health}   VERSION and HEALTH (good|bad), what guest-init.sh acts on
#   /usr/etc/...                       the /etc defaults: os-release (VERSION), vmtest.conf,
#                                      hostname
#   empty /sysroot /var /proc /sys /dev /run /tmp (mount points)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
usage="usage: build-tree.sh DEST VERSION HEALTH UPDATE_BIN KCACHE INITRD"
DEST=${1:?$usage}; VERSION=${2:?$usage}; HEALTH=${3:?$usage}; BIN=${4:?$usage}
KCACHE=${5:?$usage}; INITRD=${6:?$usage}
KVER=$(cat "$KCACHE/kver")
rm -rf "$DEST"; mkdir -p "$DEST"
cd "$DEST"
mkdir -p usr/bin usr/sbin usr/lib usr/lib64 usr/etc sysroot var proc sys dev run tmp
chmod 1777 tmp
for l in bin sbin lib lib64; do ln -s "usr/$l" "$l"; done
cp /bin/busybox usr/bin/busybox
for a in $(/bin/busybox --list); do
  case $a in busybox | init | linuxrc) ;; *) ln -s busybox "usr/bin/$a" ;; esac
done
install -m 0755 "$BIN" usr/bin/update
"$HERE/copy-libs.sh" "$BIN" "$DEST" usr
install -m 0755 "$HERE/guest-init.sh" usr/sbin/init
mkdir -p "usr/lib/modules/$KVER"
cp "$KCACHE/vmlinuz" "usr/lib/modules/$KVER/vmlinuz"
cp "$INITRD" "usr/lib/modules/$KVER/initramfs.img"
mkdir -p usr/lib/vmtest
echo "$VERSION" > usr/lib/vmtest/version
echo "$HEALTH" > usr/lib/vmtest/health
cat > usr/etc/os-release <<EOT
NAME="update VM test OS"
ID=vmos
VERSION=$VERSION
VERSION_ID=$VERSION
EOT
printf 'vmtest\n' > usr/etc/hostname
printf '# a default every version ships unchanged; guest A edits it locally\nsetting=default\n' \
  > usr/etc/vmtest.conf
