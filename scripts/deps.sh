#!/usr/bin/env bash
# Install what file-restore needs to build, test and (with --bench) benchmark.
#
# Idempotent and quick: when everything is present it only asks dpkg and PATH
# (well under 2 s) and prints nothing. `apt-get update` runs only when a package
# has to be installed. Prints one line per thing it installed.
#
# Usage: scripts/deps.sh [--bench] [-q]
#   --bench  also install libguestfs-tools (the reference implementation) and hyperfine
#   -q       print nothing when all is present (default already), errors only
set -euo pipefail

BENCH=0
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        -q) ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "deps.sh: error: $*" >&2; exit 1; }

# Debian packages: the guest kernel and QEMU, the tools that build test images,
# and what the initramfs builder and tests call.
PKGS=(
    qemu-system-x86 qemu-utils linux-image-amd64
    e2fsprogs xfsprogs btrfs-progs dosfstools mtools exfatprogs squashfs-tools xorriso
    lvm2 fdisk cpio xz-utils zstd jq python3 util-linux curl unzip
    busybox  # tests/fixtures/vmcheck.sh
)
if [ "$BENCH" = 1 ]; then
    PKGS+=(libguestfs-tools hyperfine)
fi

# One dpkg-query call for all packages; a package that is unknown to dpkg makes
# dpkg-query print to stderr and exit 1, which we treat as "missing".
missing=()
status_out=$(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true)
for p in "${PKGS[@]}"; do
    if ! grep -q "^$p install ok installed\$" <<<"$status_out"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root: run as root or install them with apt-get"
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and apt-get not found (Debian/Ubuntu only)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq >/tmp/deps-apt-update.log 2>&1; then
        cat /tmp/deps-apt-update.log >&2
        die "apt-get update failed (log above)"
    fi
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/deps-apt-install.log 2>&1; then
        tail -n 30 /tmp/deps-apt-install.log >&2
        die "apt-get install ${missing[*]} failed (last lines of /tmp/deps-apt-install.log above)"
    fi
    for p in "${missing[@]}"; do
        echo "installed: $p (apt)"
    done
fi

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
    echo "installed: vhost-device-vsock (cargo)"
fi
