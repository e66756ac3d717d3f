#!/bin/sh
# /sbin/init of the VM test's guest OS trees: PID 1 after dist/initramfs/update-init has run
# `update prepare-root` and switch_root. It reports what it sees on the serial console, in
# lines starting with VMTEST- that cli/tests/vm.rs reads, then acts by its version
# (/usr/lib/vmtest/version):
#   A  blesses itself (`update mark-good`), edits /etc and /var, deploys B, reboots
#   B  blesses itself; the first time deploys C and reboots; the second time (after C failed
#      and the boot loader fell back to B) prints `update status --json` and powers off
#   C  fails its health check (/usr/lib/vmtest/health = bad): no mark-good, reboots, so the
#      boot counter runs out and systemd-boot falls back to B
# Anything unexpected prints "VMTEST-ERROR: ..." and powers off, which ends the qemu run.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
exec </dev/console >/dev/console 2>&1
# update-init moved these in; mount them if it did not (a direct boot without it).
[ -r /proc/mounts ] || mount -t proc proc /proc
# busybox `mountpoint` compares device numbers, which a bind mount of the same filesystem
# (the deployment, /var, the physical root) shares with its parent: read /proc/mounts.
mounted() { awk -v m="$1" '$2 == m {found = 1} END {exit !found}' /proc/mounts; }
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
finish() {  # finish reboot|poweroff: flush everything, leave the ESP clean, then go
    sync
    mounted /sysroot/efi && umount /sysroot/efi
    sync
    echo "VMTEST-END: $1 uptime=$(up)"
    "$1" -f
    sleep 10
}
error() {
    echo "VMTEST-ERROR: $*"
    finish poweroff
}
run() {  # run CMD...: show it, run it, stop the test if it fails
    echo "VMTEST-RUN: $*"
    "$@" || error "'$*' failed with status $?"
}
LGUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
efivar() {  # 4-byte attribute header, then UTF-16LE (ASCII here: drop the NULs)
    f=/sys/firmware/efi/efivars/$1-$LGUID
    [ -r "$f" ] && dd if="$f" bs=1 skip=4 2>/dev/null | tr -d '\0'
}

if [ -d /sys/firmware/efi/efivars ]; then
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars || error "cannot mount efivarfs"
fi
version=$(cat /usr/lib/vmtest/version)
health=$(cat /usr/lib/vmtest/health)
deployment=
for arg in $(cat /proc/cmdline); do
    case $arg in update.deployment=*) deployment=${arg#update.deployment=} ;; esac
done
echo "VMTEST-BOOTED: version=$version deployment=$deployment selected=$(efivar LoaderEntrySelected) countpath=$(efivar LoaderBootCountPath | tr '\\' /) uptime=$(up)"
mounted /sysroot || error "/sysroot (the physical root) is not a mount point"
mount -t vfat /dev/vda1 /sysroot/efi || error "cannot mount the ESP /dev/vda1 at /sysroot/efi"
echo "VMTEST-ENTRIES: $(ls /sysroot/efi/loader/entries | tr '\n' ' ')"
# What prepare-root promised: /usr read-only, /var shared, the physical root at /sysroot.
if touch /usr/.vmtest-rw 2>/dev/null; then rm -f /usr/.vmtest-rw; usr=rw; else usr=ro; fi
mounted /var && var=mounted || var=not-mounted
etc_version=$(sed -n 's/^VERSION=//p' /etc/os-release)
echo "VMTEST-MOUNTS: usr=$usr var=$var etc-version=$etc_version"
# Hardlink checkouts: busybox is one inode shared by the repo and every deployment.
echo "VMTEST-LINKS: busybox=$(stat -c %h /usr/bin/busybox)"

case $version in
A)
    run update mark-good --sysroot /sysroot
    # Local state the next deployment must carry: a new file and an edited default in /etc,
    # and a file in the shared /var.
    echo "edited-by=A" > /etc/local.conf
    sed -i 's/^setting=default$/setting=local-A/' /etc/vmtest.conf
    echo A > /var/vmtest-a-was-here
    t0=$(up)
    run update deploy --sysroot /sysroot vm:vm/b
    echo "VMTEST-TIMING: deploy-b=$(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.2f", b-a}')"
    run update status --sysroot /sysroot
    finish reboot
    ;;
B)
    run update mark-good --sysroot /sysroot
    if [ "$(cat /etc/local.conf 2>/dev/null)" = "edited-by=A" ] &&
        grep -qx 'setting=local-A' /etc/vmtest.conf; then
        echo "VMTEST-ETC-CARRIED: /etc/local.conf and /etc/vmtest.conf kept A's local edits"
    else
        echo "VMTEST-ETC-NOT-CARRIED: local.conf=$(cat /etc/local.conf 2>&1) vmtest.conf=$(grep setting /etc/vmtest.conf)"
    fi
    [ -f /var/vmtest-a-was-here ] && echo "VMTEST-VAR-SHARED: /var/vmtest-a-was-here is there"
    if [ ! -e /var/vmtest-c-deployed ]; then
        touch /var/vmtest-c-deployed
        t0=$(up)
        run update deploy --sysroot /sysroot vm:vm/c
        echo "VMTEST-TIMING: deploy-c=$(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.2f", b-a}')"
        run update status --sysroot /sysroot
        finish reboot
    fi
    echo "VMTEST-FALLBACK: B booted again after C"
    echo "VMTEST-STATUS-BEGIN"
    update status --sysroot /sysroot --json || echo "VMTEST-ERROR: update status --json failed"
    echo "VMTEST-STATUS-END"
    finish poweroff
    ;;
*)
    if [ "$health" != good ]; then
        echo "VMTEST-HEALTH-FAILED: $version is bad, not blessing it"
        finish reboot
    fi
    error "unexpected version $version"
    ;;
esac
