#!/usr/bin/env bash
# make deb-test: installs build/file-restore_<version>_amd64.deb into a clean Debian 12
# root with apt (so its Depends are resolved from the archive) and runs `file-restore list`
# and `extract` on a small demo image inside it, as root in a chroot (/dev, /proc, /sys
# mounted), the VM under TCG with the vhost-user vsock backend the package ships.
#
# The clean root is `debootstrap --variant=minbase bookworm`, made once and cached as a
# tarball in ${FILE_RESTORE_CACHE:-~/.cache/file-restore}/debian12-minbase.tar.gz
# (~3 min the first time, with network); each run unpacks a fresh copy and removes it.
# Needs root, debootstrap, mkfs.ext4 and network access to the Debian archive
# (DEB_TEST_MIRROR, default http://deb.debian.org/debian). Not part of `make test`.
#
# Usage: scripts/deb-test.sh [--no-vm] [--keep] PACKAGE.deb
#   --no-vm  install and check the package, but do not boot a VM
#   --keep   leave the root (and its mounts) for a look; prints how to clean up
set -euo pipefail

NO_VM=0
KEEP=0
DEB=
for arg in "$@"; do
    case "$arg" in
        --no-vm) NO_VM=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "deb-test: unknown option: $arg (try --help)" >&2; exit 2 ;;
        *) DEB=$arg ;;
    esac
done
die() { echo "deb-test: error: $*" >&2; exit 1; }
say() { echo "deb-test: $*"; }

[ -n "$DEB" ] || die "give the package: scripts/deb-test.sh build/file-restore_<version>_amd64.deb"
[ -f "$DEB" ] || die "$DEB does not exist: run make deb"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for tool in debootstrap chroot mkfs.ext4 tar; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap e2fsprogs)"
done

CACHE=${FILE_RESTORE_CACHE:-$HOME/.cache/file-restore}
BASE_TAR="$CACHE/debian12-minbase.tar.gz"
MIRROR=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}

if [ ! -s "$BASE_TAR" ]; then
    mkdir -p "$CACHE"
    staging=$(mktemp -d /var/tmp/file-restore-debootstrap.XXXXXX)
    say "making a clean Debian 12 root (debootstrap --variant=minbase bookworm, a few minutes)"
    if ! debootstrap --variant=minbase bookworm "$staging" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log" >&2
        rm -rf "$staging"
        die "debootstrap failed (log: $CACHE/debootstrap.log)"
    fi
    tar -C "$staging" -czf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$staging"
    say "cached the clean root as $BASE_TAR"
fi

ROOT=$(mktemp -d /var/tmp/file-restore-deb-test.XXXXXX)
MOUNTS=()
cleanup() {
    local i
    if [ "$KEEP" = 1 ]; then
        say "kept $ROOT; clean up with: umount -R ${MOUNTS[*]:-} ; rm -rf $ROOT"
        return
    fi
    chroot "$ROOT" /usr/bin/file-restore stop --all >/dev/null 2>&1 || true
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R "${MOUNTS[$i]}" 2>/dev/null || umount -lR "${MOUNTS[$i]}" || true
    done
    rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
tar -C "$ROOT" -xzf "$BASE_TAR"
for m in proc sys dev; do
    case "$m" in
        proc) mount -t proc proc "$ROOT/proc" ;;
        sys) mount -t sysfs sysfs "$ROOT/sys" ;;
        dev) mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev" ;;
    esac
    MOUNTS+=("$ROOT/$m")
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$DEB" "$ROOT/tmp/"
PKG="/tmp/$(basename "$DEB")"

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

say "installing $(basename "$DEB") with apt (Depends from the archive)"
in_root apt-get update -qq >"$ROOT/tmp/apt.log" 2>&1 || { cat "$ROOT/tmp/apt.log" >&2; die "apt-get update failed"; }
if ! in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$PKG" \
        >>"$ROOT/tmp/apt.log" 2>&1; then
    tail -n 30 "$ROOT/tmp/apt.log" >&2
    die "apt-get install of the package failed"
fi

say "checking the installed files"
in_root file-restore --version
for f in /usr/bin/file-restore /usr/lib/file-restore/file-restore-helper \
         /usr/lib/file-restore/file-restore-keeper \
         /usr/lib/file-restore/vhost-device-vsock; do
    in_root test -x "$f" || die "$f is missing or not executable"
done
for f in /usr/lib/file-restore/vmlinux /usr/lib/file-restore/initramfs.img \
         /usr/share/man/man1/file-restore.1.gz /usr/share/man/man1/file-restore-list.1.gz \
         /usr/share/bash-completion/completions/file-restore \
         /usr/share/zsh/vendor-completions/_file-restore \
         /usr/share/fish/vendor_completions.d/file-restore.fish; do
    in_root test -s "$f" || die "$f is missing"
done
mode=$(in_root stat -c %a /usr/lib/file-restore/file-restore-helper)
[ "$mode" = 755 ] || die "file-restore-helper has mode $mode, want 755 (not setuid by default)"
in_root bash -n /usr/share/bash-completion/completions/file-restore ||
    die "the bash completion does not parse"
for p in qemu-system-x86_64 qemu-img; do
    in_root sh -c "command -v $p" >/dev/null || die "$p was not installed (Depends)"
done
say "the package installed cleanly; Depends resolved (qemu-system-x86, qemu-utils)"

if [ "$NO_VM" = 1 ]; then
    say "--no-vm: not booting a VM"
    exit 0
fi

say "making a demo image (ext4 on the whole disk, as qcow2)"
demo=$(mktemp -d /var/tmp/file-restore-deb-demo.XXXXXX)
mkdir -p "$demo/tree/docs"
echo "hello from the demo image" > "$demo/tree/docs/hello.txt"
truncate -s 16M "$demo/demo.raw"
mkfs.ext4 -q -F -L demo -d "$demo/tree" "$demo/demo.raw"
cp "$demo/demo.raw" "$ROOT/root/demo.raw"
rm -rf "$demo"
in_root qemu-img convert -O qcow2 /root/demo.raw /root/demo.qcow2

ACCEL=${DEB_TEST_ACCEL:-tcg}
fr() { in_root env FILE_RESTORE_RUNTIME_DIR=/root/fr-runtime file-restore --accel "$ACCEL" "$@"; }
say "file-restore list /root/demo.qcow2 (boots the VM under $ACCEL)"
fr list /root/demo.qcow2
fr list /root/demo.qcow2 /demo/raw/raw/docs | tee "$ROOT/tmp/listing"
grep -q ' hello.txt$' "$ROOT/tmp/listing" || die "the listing lacks docs/hello.txt"
got=$(fr extract /root/demo.qcow2 /demo/raw/raw/docs/hello.txt)
[ "$got" = "hello from the demo image" ] || die "extract gave '$got'"
fr status
fr stop /root/demo.qcow2
say "ok: the package lists and extracts in a clean Debian 12 root"
