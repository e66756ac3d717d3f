#!/bin/sh
# dracut pre-pivot hook of the `update` package (sourced by dracut; the root is mounted at
# $NEWROOT). With update.deployment=OS/COMMIT.SERIAL on the kernel command line, makes that
# deployment appear at $NEWROOT (the physical root at $NEWROOT/sysroot, the OS's shared
# /var on /var, /usr read-only) before dracut switches to it. Without it, does nothing.
#
# The root must be read-write (the deployment's /etc and the shared /var live on it, and
# the bind mounts made here keep a read-only flag that a later remount of / does not lift):
# `update install` writes `rw` on the command line; without it dracut mounts the root
# read-only, so it is remounted read-write here.
#
# On failure: die, so the boot stops (with panic=N the machine reboots), the boot try is
# spent, and after boot-retry-limit failed tries the boot loader falls back.

type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

if getarg update.deployment= >/dev/null; then
    # access(2) says EROFS to root too when the filesystem is mounted read-only.
    if ! [ -w "$NEWROOT" ]; then
        warn "update: root mounted read-only (no rw on the command line): remounting it read-write"
        mount -o remount,rw "$NEWROOT" ||
            die "update: cannot remount the root $NEWROOT read-write for the deployment"
    fi
    info "update: preparing the deployment at $NEWROOT"
    /usr/lib/update/update-prepare-root --sysroot "$NEWROOT" ||
        die "update: update-prepare-root --sysroot $NEWROOT failed; cannot boot this deployment"
fi
