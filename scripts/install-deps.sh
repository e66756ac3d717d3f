#!/usr/bin/env bash
# Install the Debian packages that the tests and benchmarks need, and cargo-deny.
#
# Idempotent and cheap when nothing is missing: each package is checked with
# `dpkg -s` first, and `apt-get update` (slow, network) runs only when there
# is something to install; cargo-deny is built only when ~/.cargo/bin lacks
# the pinned version. Works as root, or through sudo otherwise.
set -euo pipefail

# cargo-deny (licenses, duplicate versions, sources, advisories: deny.toml) is no Debian
# package: `cargo install` builds it into ~/.cargo/bin, a few minutes on 2 cores, paid
# once per machine. Pinned, so every machine checks with the same rules.
CARGO_DENY_VERSION=0.20.2
install_cargo_deny() {
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny"
    if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
        return 0
    fi
    echo "install-deps: building cargo-deny $CARGO_DENY_VERSION (cargo install, once)" >&2
    # A target directory of its own (the default: a temp dir), not the caller's.
    env -u CARGO_TARGET_DIR cargo install --quiet --locked --force cargo-deny \
        --version "$CARGO_DENY_VERSION"
}

# What the test suite needs.
PACKAGES=(
    gcc           # C compiler for the zstd and blake3 crates' C parts
    g++           # libfuzzer-sys's build script compiles libFuzzer (C++): `cargo check` of fuzz/
    zstd          # the zstd CLI, to inspect archive objects by hand
    time          # GNU /usr/bin/time, for peak RSS (-f %M)
    strace        # crash tests kill `update commit` at chosen syscalls (fault injection)
    python3       # bench/store-bench.py
    git           # tests build git fixtures with it (update itself reads git with gix)
    tar           # GNU tar with --xattrs, for tar-source round trips
    nginx-light   # tests serve published repos from a real nginx (testkit/src/nginx.rs)
    curl          # tests fetch from the served repos with a real HTTP(S) client
    ostree        # backend-ostree/tests/ostree.rs drives the real `ostree admin` (and the bench races it)
    # The VM test (cli/tests/vm.rs, tests/vm/): a Debian kernel booted under qemu (TCG)
    # with OVMF and systemd-boot, a busybox initramfs, a GPT disk packed without mounts.
    qemu-system-x86   # qemu-system-x86_64
    ovmf              # UEFI firmware (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)
    systemd-boot-efi  # systemd-bootx64.efi, the boot loader reading the BLS entries
    busybox-static    # the initramfs and the guest OS trees
    mtools            # writes and reads the ESP image without mounting it
    dosfstools        # mkfs.vfat -C
    fdisk             # sfdisk writes the GPT on a plain file
    e2fsprogs         # mkfs.ext4 -d fills the root image from a directory
    cpio              # packs the initramfs
    kmod              # depmod / modprobe --show-depends on the unpacked kernel
    # The Debian package (scripts/build-deb.sh, cli/tests/package.rs).
    dpkg-dev          # dpkg-shlibdeps computes the package's Depends from the binaries
    binutils          # objcopy strips the packaged binaries
    lintian           # the package must be lintian clean of errors
    dracut-core       # the dracut module is proven by building an initramfs with it
    # The device VM test (cli/tests/device_vm.rs, tests/device/): a real Debian tree.
    debootstrap       # builds the bookworm base tree (cached in /var/cache/update-tests)
    zstd              # the cached base tree is a zstd tar
    python3           # picks a free port and reads sfdisk's JSON
    socat             # qemu's guestfwd runs it per guest connection, relaying to the server
)
# What the benchmarks add (`--bench`): the peers they race.
if [ "${1:-}" = --bench ]; then
    PACKAGES+=(
        dpkg-dev  # dpkg -x unpacks the .debs the bench tree is made of
        casync    # the transport bench's chunk-only peer (casync extract --seed)
        wrk       # the transport bench's load generator (200 concurrent clients)
    )
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # `dpkg -s` succeeds for removed-but-configured packages too, so check the
    # status line for "install ok installed".
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi

    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as nginx start their service when installed. The tests start their own
    # servers on 127.0.0.1 and need no system service (and a container may have no init to
    # run one), so service starts are refused for the duration of the install (policy-rc.d,
    # exit 101), unless the machine already has a policy of its own.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    cleanup() { if [ "$own_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
    trap cleanup EXIT
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The test suite's tool; the benches (--bench) do not need it.
if [ "${1:-}" != --bench ]; then
    install_cargo_deny
fi
