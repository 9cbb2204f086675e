#!/usr/bin/env bash
# Install what file-restore needs to build, test and (with --bench) benchmark, on Debian 12
# (bookworm) or Debian 13 (trixie), as root. scripts/fresh-test.sh checks it from fresh roots.
#
# Decides by the commands and files it needs, not by package names, and checks them all
# again afterwards: a command still missing then is an error.
#
# QEMU. A machine may come with a QEMU of its own that is not its release's: our machine
# image ships qemu-utils 1:10.0.2 from bookworm-backports. That version Breaks the
# qemu-system-common of Debian 12 (7.2), so `apt-get install qemu-system-x86` removes it,
# and with libguestfs-tools (which needs qemu-utils) in the same transaction apt gives up
# ("held broken packages"). The two ways out are downgrading qemu-utils to 7.2 or taking
# qemu-system-x86 from the same backports suite. We take the second:
#   - a package the administrator chose is never downgraded by our installer (anything else
#     on the machine may rely on that qemu-img);
#   - QEMU 10 is what Debian 13 ships and Proxmox VE 8/9 users run, so Debian 12 and 13
#     machines test one QEMU generation; a cold list was 813 vs 723 ms and a 1 GiB extract
#     ~60 MB/s on both (no reason of speed either way);
#   - the cost is one apt source file for bookworm-backports, with the keyring and mirror
#     of the machine's own Debian source; backports has priority 100, so nothing else is
#     upgraded from it unless asked for. The file is printed when it is added.
# Whatever QEMU is installed from which suite is printed too. Without a backported
# qemu-utils (a plain Debian 12), QEMU comes from the release (7.2 on 12, 10 on 13).
#
# Idempotent and quick: when everything is present it only asks PATH and the file system
# (well under a second) and prints nothing. `apt-get update` runs only when a package has
# to be installed. Prints one line per thing it installed or added.
#
# Usage: scripts/deps.sh [--bench] [--fuzz] [-q]
#   --bench  also install hyperfine (libguestfs-tools, the reference implementation,
#            is always installed: the stack fixtures are built with it)
#   --fuzz   also install cargo-fuzz (`cargo install`, about 1.5 min) for `make fuzz`;
#            it needs the nightly toolchain, which rustup cannot download here
#   -q       print nothing when all is present (default already), errors only
#   --list   print what is needed ("command-or-path package", one a line) and exit;
#            scripts/fresh.sh checks a fresh root against it
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/distro.sh
. "$HERE/distro.sh"

BENCH=0
FUZZ=0
LIST=0
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        --fuzz) FUZZ=1 ;;
        -q) ;;
        --list) LIST=1 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "deps.sh: error: $*" >&2; exit 1; }

KERNEL_SRC_PKG=$(kernel_source_package) || die "unsupported release (see the message above)"
# Debian 13 renamed libraries for the 64-bit time_t transition.
case "$(distro_codename)" in
    bookworm) T64_TIRPC=libtirpc3 T64_SSL=libssl3 ;;
    *) T64_TIRPC=libtirpc3t64 T64_SSL=libssl3t64 ;;
esac

# What is needed, as "command-or-absolute-path package" pairs: QEMU, the guest kernel's
# source and build tools, the tools that build test images, and what the builders and
# tests call (the browser test included).
NEEDS=(
    "qemu-system-x86_64 qemu-system-x86"
    "qemu-img qemu-utils"
    "qemu-nbd qemu-utils"
    "/usr/src/$KERNEL_SRC_PKG.tar.xz $KERNEL_SRC_PKG"
    "make build-essential"
    "patch patch"
    "gcc build-essential"
    "bc bc"
    "bison bison"
    "flex flex"
    "/usr/include/libelf.h libelf-dev"
    "/usr/include/openssl/ssl.h libssl-dev"
    # The guest daemon links util-linux's libblkid statically (restore-daemon/build.rs).
    "/usr/lib/*/libblkid.a libblkid-dev"
    "pkg-config pkgconf"
    "mkfs.ext4 e2fsprogs"
    "mkfs.xfs xfsprogs"
    "mkfs.btrfs btrfs-progs"
    "mkfs.vfat dosfstools"
    "mcopy mtools"
    "mkfs.exfat exfatprogs"
    "mksquashfs squashfs-tools"
    "xorriso xorriso"
    # A real APFS container for the test that it is named when refused.
    "mkapfs apfsprogs"
    # Filesystems the guest names or reads beyond the common ones (restore-daemon's probe
    # tests, the e2e suite): in util-linux on Debian 12, util-linux-extra on Debian 13.
    "mkfs.minix util-linux-extra"
    "mkfs.bfs util-linux-extra"
    "mkfs.cramfs util-linux-extra"
    # Older and other filesystems (tests/fixtures/mkolder.sh): made or formatted on the host,
    # populated from a directory or in the libguestfs appliance.
    "mkreiserfs reiserfsprogs"
    "mkfs.nilfs2 nilfs-tools"
    "mkfs.jfs jfsutils"
    "mkfs.gfs2 gfs2-utils"
    "mkfs.ocfs2 ocfs2-tools"
    "debugfs.ocfs2 ocfs2-tools"
    "mkudffs udftools"
    "genromfs genromfs"
    "mkfs.erofs erofs-utils"
    "makefs makefs"
    "mkfs.f2fs f2fs-tools"
    "sload.f2fs f2fs-tools"
    "mkntfs ntfs-3g"
    "ntfscp ntfs-3g"
    "lvm lvm2"
    # The guest's storage tools (scripts/build-tools-image.sh copies them onto tools.img);
    # the host checks the stack fixtures with mdadm --examine and cryptsetup luksDump.
    "mdadm mdadm"
    "cryptsetup cryptsetup-bin"
    "dmsetup dmsetup"
    # The libraries Debian's zpool and zfs link beyond their own (build-tools-image.sh
    # copies them from the host onto tools.img).
    "/usr/lib/x86_64-linux-gnu/libtirpc.so.3 $T64_TIRPC"
    "/usr/lib/x86_64-linux-gnu/libudev.so.1 libudev1"
    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3 $T64_SSL"
    # ZFS fixtures (tests/fixtures/mkzfs.sh): a pool made by another implementation.
    "zfs-fuse zfs-fuse"
    # The storage-stack fixtures (tests/fixtures/mkstacks.sh) are built in the libguestfs
    # appliance, which supermin makes from the host's packages and kernel.
    "guestfish libguestfs-tools"
    "/boot/vmlinuz-*-amd64 linux-image-amd64"
    "sfdisk fdisk"
    # Partition tables of other systems (tests/fixtures/mklabels.sh).
    "parted parted"
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
    # cargo fetches crates over TLS with the system's certificates.
    "/etc/ssl/certs/ca-certificates.crt ca-certificates"
    "unzip unzip"
    # make fresh-test and make deb-test build clean Debian roots.
    "debootstrap debootstrap"
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

if [ "$LIST" = 1 ]; then
    printf '%s\n' "${NEEDS[@]}" "vhost-device-vsock cargo:vhost-device-vsock"
    exit 0
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

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 0 ] || return 0
    apt-get update -qq >/tmp/deps-apt-update.log 2>&1 ||
        { cat /tmp/deps-apt-update.log >&2; die "apt-get update failed (log above)"; }
    APT_UPDATED=1
}

# apt_install PACKAGE[/SUITE]...: one apt transaction; prints what it installed.
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing packages ($*) and not root: run as root or install them with apt-get"
    command -v apt-get >/dev/null || die "missing packages ($*) and apt-get not found (Debian only)"
    export DEBIAN_FRONTEND=noninteractive
    apt_update
    if ! apt-get install -y -qq --no-install-recommends "$@" >/tmp/deps-apt-install.log 2>&1; then
        tail -n 30 /tmp/deps-apt-install.log >&2
        die "apt-get install $* failed (last lines of /tmp/deps-apt-install.log above)"
    fi
    local p
    for p in "$@"; do echo "installed: $p (apt)"; done
}

# The version of an installed package, or nothing.
installed_version() {
    { dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null || true; } | awk '/^ii/ { print $2 }'
}

# write_source FILE "URI SIGNED-BY" SUITE COMPONENTS WHY...: an apt source file of ours
# with the mirror and keyring of the machine's own entry (apt refuses two entries for one
# URI with different Signed-By values); WHY... are its comment lines. Prints what it added.
write_source() {
    local file=$1 uri signed suite=$3 components=$4 line
    read -r uri signed <<<"$2"
    shift 4
    [ -n "$signed" ] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        printf '# Added by file-restore'"'"'s scripts/deps.sh: %s\n' "$1"
        shift
        for line in "$@"; do printf '# %s\n' "$line"; done
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: $suite"
        echo "Components: $components"
        echo "Signed-By: $signed"
    } >"$file"
    echo "added: $file (apt source: $uri $suite $components, keyring $signed)"
}

BACKPORTS_LIST=/etc/apt/sources.list.d/file-restore-bookworm-backports.sources
# Makes bookworm-backports (main) known to apt, with the mirror and keyring of the
# machine's own bookworm entry; prints the file it adds. Nothing when apt knows it already.
ensure_bookworm_backports() {
    apt_update
    if apt-cache policy | grep -q 'n=bookworm-backports,.*c=main'; then
        return 0
    fi
    local src
    src=$(debian_source_of bookworm) ||
        die "qemu-utils comes from bookworm-backports, but apt has no bookworm entry to take the mirror from: add bookworm-backports (main) to apt's sources, or remove that qemu-utils"
    write_source "$BACKPORTS_LIST" "$src" bookworm-backports main \
        "this machine's qemu-utils is a bookworm" \
        "backport, so qemu-system-x86 comes from the same suite (deps.sh says why)." \
        "Backports have apt priority 100: nothing else is taken from here unless asked for."
    APT_UPDATED=0
    apt_update
}

# QEMU first, in a transaction of its own, from the suite the installed qemu-utils came
# from (the top of this file says why).
if ! have qemu-system-x86_64; then
    qemu_utils=$(installed_version qemu-utils)
    case "$(distro_codename)/$qemu_utils" in
        bookworm/*~bpo12*)
            echo "deps.sh: qemu-utils $qemu_utils is a bookworm backport: qemu-system-x86 comes from bookworm-backports too (no downgrade)"
            ensure_bookworm_backports
            # Only QEMU's own packages from backports (qemu-system-x86 wants its -common
            # and -data of the same version and a newer seabios); their other needs come
            # from bookworm, as apt picks them. `-t bookworm-backports` would take every
            # library from backports too, and then e.g. libelf-dev no longer installs.
            apt_install qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports \
                qemu-system-data/bookworm-backports seabios/bookworm-backports qemu-utils/bookworm-backports
            ;;
        *) apt_install qemu-system-x86 qemu-utils ;;
    esac
    echo "deps.sh: $(qemu-system-x86_64 --version | head -n 1)"
fi

ZFS_LIST=/etc/apt/sources.list.d/file-restore-zfs.sources
# OpenZFS for the guest (scripts/zfs-debs.sh downloads and unpacks zfs-dkms and
# zfsutils-linux, never installs them) lives in contrib: bookworm-backports contrib on
# Debian 12 (2.3.x; bookworm's own 2.1.11 is older than the kernels we build), trixie
# contrib on Debian 13. Makes that suite's contrib known to apt, with the mirror and
# keyring of the machine's own entry; prints the file it adds.
ensure_zfs_source() {
    local codename suite src
    codename=$(distro_codename)
    case "$codename" in
        bookworm) suite=bookworm-backports ;;
        trixie) suite=trixie ;;
        *) die "no OpenZFS source known for $codename" ;;
    esac
    if apt-cache madison zfs-dkms 2>/dev/null | grep -q " $suite/contrib "; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "apt knows no zfs-dkms in $suite contrib and this is not root: run scripts/deps.sh as root"
    src=$(debian_source_of "$codename") ||
        die "apt has no $codename entry to take the mirror from: add $suite contrib to apt's sources"
    write_source "$ZFS_LIST" "$src" "$suite" contrib \
        "the guest's OpenZFS module and tools are" \
        "built from Debian's zfs-dkms and zfsutils-linux, which live in contrib; they are" \
        "only downloaded (scripts/zfs-debs.sh), never installed on this machine."
    APT_UPDATED=0
    apt_update
    apt-cache madison zfs-dkms 2>/dev/null | grep -q " $suite/contrib " ||
        die "apt still knows no zfs-dkms in $suite contrib after adding $ZFS_LIST"
}
ensure_zfs_source

# zfs-fuse is for the ZFS test fixtures only (tests/fixtures/mkzfs.sh runs its own daemon
# in a private mount namespace); its package enables a system service, which a machine
# with systemd would start at boot. When we install it, that service is disabled.
HAD_ZFS_FUSE=0
have zfs-fuse && HAD_ZFS_FUSE=1

# Two rounds: the second catches what the first one's installs removed.
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
if [ "$HAD_ZFS_FUSE" = 0 ] && have zfs-fuse && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now zfs-fuse.service >/dev/null 2>&1 || true
    echo "disabled: zfs-fuse.service (installed for the ZFS test fixtures, which run their own daemon)"
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
