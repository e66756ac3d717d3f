#!/bin/bash
# dracut module of the `update` package: puts /usr/lib/update/update-prepare-root into the
# initramfs and runs it from a pre-pivot hook (update-prepare-root.sh) when the kernel
# command line names a deployment (update.deployment=OS/COMMIT.SERIAL).

# Included whenever the binary is installed, also on a machine not (yet) deployed by
# update: initramfs images are usually built in an image chroot, where nothing tells how
# the image will boot. The hook does nothing without update.deployment=.
check() {
    [[ -x /usr/lib/update/update-prepare-root ]] || return 1
    return 0
}

depends() {
    return 0
}

install() {
    local bin=/usr/lib/update/update-prepare-root
    # A package built without the small binary ships a script there that runs
    # `/usr/bin/update prepare-root`: then the initramfs needs that binary too.
    if [[ "$(head -c 2 "$bin")" == "#!" ]]; then
        inst_script "$bin"
        inst_binary /usr/bin/update
    else
        inst_binary "$bin"
    fi
    inst_hook pre-pivot 50 "$moddir/update-prepare-root.sh"
}
