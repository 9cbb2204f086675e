#!/usr/bin/env bash
# Fetch Debian's OpenZFS packages for this release and unpack them into a cache; print the
# cache directory. Used by scripts/build-kernel.sh (the module source) and
# scripts/build-tools-image.sh (zpool, zfs and their libraries for the guest).
#
# Which OpenZFS (scripts/deps.sh makes the suite known to apt):
#   bookworm  zfs-dkms/zfsutils-linux 2.3.x from bookworm-backports contrib (bookworm's own
#             2.1.11 predates the kernels we build and has no 2.x feature flags beyond 2.1)
#   trixie    zfs-dkms/zfsutils-linux 2.3.x from trixie contrib
# The packages are only downloaded (`apt-get download`) and unpacked, never installed:
# installing zfsutils-linux on the host would start the host's own ZFS services and
# conflicts with zfs-fuse (the fixtures use it); zfs-dkms would build for the host kernel.
#
# Cache: ${FILE_RESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/file-restore}/zfs/<version>/
#   src/   the module source (zfs-dkms's /usr/src/zfs-<upstream version>)
#   root/  the unpacked userland (zfsutils-linux and its libzfs libraries), always with
#          root/sbin/{zpool,zfs} and root/lib/x86_64-linux-gnu/ (Debian 13's packages
#          install below /usr: root/sbin and root/lib are then links into root/usr)
#   VERSION  the Debian version
# Usage: scripts/zfs-debs.sh    (prints the cache directory on stdout)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/distro.sh
. "$HERE/distro.sh"

die() { echo "zfs-debs: error: $*" >&2; exit 1; }

case "$(distro_codename)" in
    bookworm) suite=bookworm-backports ;;
    trixie) suite=trixie ;;
    *) die "no OpenZFS source known for $(distro_codename) (Debian 12 or 13 only)" ;;
esac

# The version apt offers from that suite (the suite pinned: a bookworm machine that also
# has bookworm contrib would otherwise get 2.1.11, whose priority is higher).
version=$(apt-cache madison zfs-dkms 2>/dev/null | awk -F'|' -v s="$suite" '
    $3 ~ (" " s "/contrib ") { gsub(/ /, "", $2); print $2; exit }')
[ -n "$version" ] ||
    die "apt knows no zfs-dkms in $suite contrib: run scripts/deps.sh as root (it adds that apt source)"

CACHE=${FILE_RESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/file-restore}/zfs
DIR="$CACHE/$version"
if [ -f "$DIR/.done" ]; then
    echo "$DIR"
    exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$DIR/.done" ]; then
    echo "$DIR"
    exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR/debs" "$DIR/root" "$DIR/unpacked"
# The userland and the libraries it links (their names carry the soname: take them from
# zfsutils-linux's own dependencies rather than spelling them here).
libs=$(apt-cache depends "zfsutils-linux=$version" 2>/dev/null |
    awk '/Depends: lib(zfs|nvpair|uutil|zpool)[0-9]*linux$/ { print $2 }' | sort -u)
[ -n "$libs" ] || die "cannot read the dependencies of zfsutils-linux $version"
pkgs=(zfs-dkms zfsutils-linux $libs)
echo "zfs-debs: downloading OpenZFS $version from $suite: ${pkgs[*]}" >&2
(
    cd "$DIR/debs"
    args=()
    for p in "${pkgs[@]}"; do args+=("$p=$version"); done
    apt-get download -q "${args[@]}" >"$DIR/download.log" 2>&1
) || { tail -n 5 "$DIR/download.log" >&2; die "apt-get download failed (log: $DIR/download.log)"; }

for deb in "$DIR"/debs/*.deb; do
    case "$(basename "$deb")" in
        zfs-dkms_*) dpkg-deb -x "$deb" "$DIR/unpacked" ;;
        *) dpkg-deb -x "$deb" "$DIR/root" ;;
    esac
done
# One layout for both releases (merged /usr on Debian 13).
for d in sbin lib; do
    if [ ! -e "$DIR/root/$d" ] && [ -d "$DIR/root/usr/$d" ]; then
        ln -s "usr/$d" "$DIR/root/$d"
    fi
done
[ -x "$DIR/root/sbin/zpool" ] && [ -x "$DIR/root/sbin/zfs" ] ||
    die "zfsutils-linux $version holds no sbin/zpool and sbin/zfs"
src=$(find "$DIR/unpacked/usr/src" -maxdepth 1 -name 'zfs-*' -type d | head -n 1)
[ -n "$src" ] && [ -x "$src/configure" ] || die "zfs-dkms $version holds no configurable source"
mv "$src" "$DIR/src"
rm -rf "$DIR/unpacked"
echo "$version" >"$DIR/VERSION"
touch "$DIR/.done"
echo "$DIR"
