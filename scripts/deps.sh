#!/usr/bin/env bash
# Install what file-restore needs to build, test and (with --bench) benchmark.
#
# Decides by the commands and files it needs, not by package names: a machine may come
# with a backported qemu-utils that installing qemu-system-x86 removes, so after
# installing, everything is checked again, what went missing is installed once more, and
# a command that is still missing is an error.
#
# Idempotent and quick: when everything is present it only asks PATH and the file system
# (well under a second) and prints nothing. `apt-get update` runs only when a package has
# to be installed. Prints one line per thing it installed.
#
# Usage: scripts/deps.sh [--bench] [--fuzz] [-q]
#   --bench  also install hyperfine (libguestfs-tools, the reference implementation,
#            is always installed: the stack fixtures are built with it)
#   --fuzz   also install cargo-fuzz (`cargo install`, about 1.5 min) for `make fuzz`;
#            it needs the nightly toolchain, which rustup cannot download here
#   -q       print nothing when all is present (default already), errors only
set -euo pipefail

BENCH=0
FUZZ=0
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        --fuzz) FUZZ=1 ;;
        -q) ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "deps.sh: error: $*" >&2; exit 1; }

# What is needed, as "command-or-absolute-path package" pairs: QEMU, the guest kernel's
# source and build tools, the tools that build test images, and what the builders and
# tests call (the browser test included).
NEEDS=(
    "qemu-system-x86_64 qemu-system-x86"
    "qemu-img qemu-utils"
    "qemu-nbd qemu-utils"
    "/usr/src/linux-source-6.1.tar.xz linux-source-6.1"
    "make build-essential"
    "patch patch"
    "gcc build-essential"
    "bc bc"
    "bison bison"
    "flex flex"
    "/usr/include/libelf.h libelf-dev"
    "/usr/include/openssl/ssl.h libssl-dev"
    "mkfs.ext4 e2fsprogs"
    "mkfs.xfs xfsprogs"
    "mkfs.btrfs btrfs-progs"
    "mkfs.vfat dosfstools"
    "mcopy mtools"
    "mkfs.exfat exfatprogs"
    "mksquashfs squashfs-tools"
    "xorriso xorriso"
    "mkntfs ntfs-3g"
    "ntfscp ntfs-3g"
    "lvm lvm2"
    # The guest's storage tools (scripts/build-tools-image.sh copies them onto tools.img);
    # the host checks the stack fixtures with mdadm --examine and cryptsetup luksDump.
    "mdadm mdadm"
    "cryptsetup cryptsetup-bin"
    "dmsetup dmsetup"
    # The storage-stack fixtures (tests/fixtures/mkstacks.sh) are built in the libguestfs
    # appliance, which supermin makes from the host's packages and kernel.
    "guestfish libguestfs-tools"
    "/boot/vmlinuz-*-amd64 linux-image-amd64"
    "sfdisk fdisk"
    "cpio cpio"
    "xz xz-utils"
    "zstd zstd"
    "jq jq"
    "python3 python3"
    "flock util-linux"
    "losetup util-linux"
    "blkid util-linux"
    "busybox busybox"
    "curl curl"
    "unzip unzip"
    # The web UI's browser test (tests/web/browser.rs) drives headless Chromium
    # through chromedriver.
    "chromium chromium"
    "chromedriver chromium-driver"
)
if [ "$BENCH" = 1 ]; then
    NEEDS+=(
        "virt-ls libguestfs-tools"
        "hyperfine hyperfine"
    )
fi

have() {
    case "$1" in
        /*) compgen -G "$1" >/dev/null ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

# The packages of the needs that are not met, each once.
missing_packages() {
    local need pkgs=()
    for need in "${NEEDS[@]}"; do
        set -- $need
        if ! have "$1" && [[ " ${pkgs[*]:-} " != *" $2 "* ]]; then
            pkgs+=("$2")
        fi
    done
    echo "${pkgs[*]:-}"
}

apt_install() {
    [ "$(id -u)" = 0 ] || die "missing packages ($*) and not root: run as root or install them with apt-get"
    command -v apt-get >/dev/null || die "missing packages ($*) and apt-get not found (Debian/Ubuntu only)"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/tmp/deps-apt-update.log 2>&1 ||
            { cat /tmp/deps-apt-update.log >&2; die "apt-get update failed (log above)"; }
        APT_UPDATED=1
    fi
    if ! apt-get install -y -qq --no-install-recommends "$@" >/tmp/deps-apt-install.log 2>&1; then
        tail -n 30 /tmp/deps-apt-install.log >&2
        die "apt-get install $* failed (last lines of /tmp/deps-apt-install.log above)"
    fi
    local p
    for p in "$@"; do echo "installed: $p (apt)"; done
}

# Two rounds: the second catches what the first one's installs removed (qemu-utils).
for round in 1 2; do
    read -r -a pkgs <<<"$(missing_packages)"
    [ "${#pkgs[@]}" -gt 0 ] || break
    apt_install "${pkgs[@]}"
done
still=()
for need in "${NEEDS[@]}"; do
    set -- $need
    have "$1" || still+=("$1 (package $2)")
done
[ "${#still[@]}" -eq 0 ] || die "still missing after installing: ${still[*]}"

# vhost-device-vsock: the userspace vsock backend (no /dev/vhost-vsock on our machines).
have_vhost_vsock() {
    command -v vhost-device-vsock >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/vhost-device-vsock" ]
}
if ! have_vhost_vsock; then
    CARGO=$(command -v cargo || true)
    [ -n "$CARGO" ] || [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ] || CARGO="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    [ -n "$CARGO" ] || die "vhost-device-vsock is missing and cargo was not found to build it"
    echo "building vhost-device-vsock with cargo install (about a minute)..." >&2
    if ! "$CARGO" install vhost-device-vsock --locked >/tmp/deps-cargo-vsock.log 2>&1; then
        tail -n 30 /tmp/deps-cargo-vsock.log >&2
        die "cargo install vhost-device-vsock failed (last lines of /tmp/deps-cargo-vsock.log above)"
    fi
    have_vhost_vsock || die "cargo install vhost-device-vsock succeeded but the binary is not there"
    echo "installed: vhost-device-vsock (cargo)"
fi

# cargo-fuzz (make fuzz only): built from crates.io; the nightly toolchain must be there.
have_cargo_fuzz() {
    command -v cargo-fuzz >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]
}
if [ "$FUZZ" = 1 ]; then
    CARGO=$(command -v cargo || true)
    [ -n "$CARGO" ] || [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ] || CARGO="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    [ -n "$CARGO" ] || die "cargo not found (needed for make fuzz)"
    "$CARGO" +nightly --version >/dev/null 2>&1 ||
        die "make fuzz needs the nightly toolchain (rustup toolchain list), which is not installed"
    if ! have_cargo_fuzz; then
        echo "building cargo-fuzz with cargo install (about 1.5 minutes)..." >&2
        if ! "$CARGO" install cargo-fuzz --locked >/tmp/deps-cargo-fuzz.log 2>&1; then
            tail -n 30 /tmp/deps-cargo-fuzz.log >&2
            die "cargo install cargo-fuzz failed (last lines of /tmp/deps-cargo-fuzz.log above)"
        fi
        have_cargo_fuzz || die "cargo install cargo-fuzz succeeded but the binary is not there"
        echo "installed: cargo-fuzz (cargo)"
    fi
fi
