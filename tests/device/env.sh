# Settings shared by the device VM test scripts (source this file).
# Slow fixtures (the debootstrap base tree, the v2 package) are cached under $DEV_CACHE, keyed
# by their inputs, and rebuilt when missing; a run's work goes to the directory it is given.
DEV_CACHE=${DEV_CACHE:-/var/cache/update-tests/device}
DEV_SUITE=${DEV_SUITE:-bookworm}
DEV_MIRROR=${DEV_MIRROR:-http://deb.debian.org/debian}
# What a small real Debian device is made of: systemd as init, udev, a Debian kernel, the
# initramfs generator our package hooks into, the EFI binary of systemd-boot (so the commit
# carries its own boot loader), zstd for the initramfs, dbus for systemctl's friends.
DEV_PACKAGES=${DEV_PACKAGES:-systemd-sysv,udev,linux-image-amd64,initramfs-tools,zstd,kmod,e2fsprogs,dbus,systemd-boot-efi}
# The package v2 adds (no dependencies beyond libc6).
DEV_EXTRA_PACKAGE=${DEV_EXTRA_PACKAGE:-hello}
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS_TEMPLATE=${OVMF_VARS_TEMPLATE:-/usr/share/OVMF/OVMF_VARS_4M.fd}
export MTOOLS_SKIP_CHECK=1

dev_die() { echo "device-test: error: $*" >&2; exit 1; }
