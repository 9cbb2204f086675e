#!/usr/bin/env bash
# Build the file-restore guest kernel (an ELF vmlinux with a PVH entry) from Debian's
# kernel source package and kernel/file-restore.config, and copy it to OUT.
#
# The source package is the release's (scripts/distro.sh): linux-source-6.1 on Debian 12,
# linux-source-6.12 on Debian 13. One fragment and one patch set serve both; the check
# below that every option of the fragment survived runs on each.
#
# The build happens out of tree in a cache outside the work tree, keyed by the source
# package's version and the fragment's hash:
#     ${FILE_RESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/file-restore}/kernel/<key>/
# so `make build`, `make test` and CI on the same machine rebuild only when one of the two
# changes. A build takes ~4 min on 2 cores; progress is printed every 15 s.
#
# The patches in kernel/patches/ (each explains itself) are applied to the unpacked source;
# they are part of the cache key too.
#
# OpenZFS (CDDL) is built against the same tree as a module, never into vmlinux: its
# source is Debian's zfs-dkms (scripts/zfs-debs.sh fetches and unpacks it), its version
# is part of the cache key, and its spl.ko and zfs.ko land next to the kernel; the tools
# image carries them (scripts/build-tools-image.sh, docs/KERNEL.md).
#
# Usage: scripts/build-kernel.sh OUT_DIR
# Writes OUT_DIR/vmlinux, OUT_DIR/kernel.config (the full resolved config) and
# OUT_DIR/zfs/{spl.ko,zfs.ko,VERSION}.
set -euo pipefail

OUT=${1:?usage: scripts/build-kernel.sh OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FRAGMENT="$ROOT/kernel/file-restore.config"
JOBS=${KERNEL_JOBS:-$(($(nproc) + 1))}

die() { echo "build-kernel: error: $*" >&2; exit 1; }

# shellcheck source=scripts/distro.sh
. "$ROOT/scripts/distro.sh"
SRC_PKG=$(kernel_source_package) || die "no kernel source for this release (see above)"
SRC_TAR=/usr/src/$SRC_PKG.tar.xz

[ -f "$FRAGMENT" ] || die "$FRAGMENT is missing"
version=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null || true)
[ -n "$version" ] && [ -f "$SRC_TAR" ] ||
    die "$SRC_PKG is not installed ($SRC_TAR missing): run scripts/deps.sh as root"
for tool in make gcc bc bison flex ld objcopy patch; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/deps.sh as root"
done
[ -e /usr/include/libelf.h ] || die "libelf headers missing (libelf-dev): run scripts/deps.sh"
[ -e /usr/include/openssl/ssl.h ] || die "OpenSSL headers missing (libssl-dev): run scripts/deps.sh"

shopt -s nullglob
PATCHES=("$ROOT"/kernel/patches/*.patch)
shopt -u nullglob
patch_hash=$(cat /dev/null "${PATCHES[@]}" | sha256sum | cut -c1-12)
ZFS=$(bash "$ROOT/scripts/zfs-debs.sh") || die "no OpenZFS source (see above)"
zfs_version=$(cat "$ZFS/VERSION")
frag_hash=$( { cat "$FRAGMENT"; echo "$patch_hash"; echo "zfs $zfs_version"; } | sha256sum | cut -c1-16)
key="${version}-${frag_hash}"
CACHE=${FILE_RESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/file-restore}/kernel
DIR="$CACHE/$key"
mkdir -p "$OUT"

install_result() {
    install -m 0644 "$DIR/vmlinux" "$OUT/vmlinux.tmp.$$"
    mv -f "$OUT/vmlinux.tmp.$$" "$OUT/vmlinux"
    install -m 0644 "$DIR/kernel.config" "$OUT/kernel.config"
    mkdir -p "$OUT/zfs"
    for f in spl.ko zfs.ko VERSION; do
        install -m 0644 "$DIR/zfs/$f" "$OUT/zfs/$f.tmp.$$"
        mv -f "$OUT/zfs/$f.tmp.$$" "$OUT/zfs/$f"
    done
}

if [ -f "$DIR/vmlinux" ] && [ -f "$DIR/kernel.config" ] && [ -f "$DIR/zfs/zfs.ko" ]; then
    install_result
    exit 0
fi

# One build at a time per cache (make test and make demo may run together).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$DIR/vmlinux" ] && [ -f "$DIR/zfs/zfs.ko" ]; then install_result; exit 0; fi

SRC="$CACHE/src-$version-$patch_hash"
if [ ! -f "$SRC/.unpacked" ]; then
    echo "build-kernel: unpacking $SRC_TAR ($version) and applying ${#PATCHES[@]} patches..." >&2
    rm -rf "$SRC"
    mkdir -p "$SRC"
    tar -xf "$SRC_TAR" -C "$SRC" --strip-components=1 || die "unpacking $SRC_TAR failed"
    for p in "${PATCHES[@]}"; do
        patch -d "$SRC" -p1 --batch --quiet <"$p" || die "patch $p does not apply to $SRC_PKG $version"
    done
    touch "$SRC/.unpacked"
fi

# One object tree per patched source, shared by all fragments: a changed fragment
# rebuilds incrementally (most options change autoconf.h, which rebuilds most objects).
OBJ="$CACHE/obj-$version-$patch_hash"
LOG="$DIR/build.log"
mkdir -p "$OBJ" "$DIR"
rm -f "$OBJ/.config"
: >"$LOG"
echo "build-kernel: building the guest kernel ($version, fragment $frag_hash) with $JOBS jobs;" \
    "takes ~4 min on 2 cores; log: $LOG" >&2

fail() {
    echo "build-kernel: error: $1; last lines of $LOG:" >&2
    tail -n 25 "$LOG" >&2
    exit 1
}

# KCONFIG_CONFIG is relative to O=.
make -C "$SRC" O="$OBJ" tinyconfig >>"$LOG" 2>&1 || fail "make tinyconfig failed"
(cd "$OBJ" && "$SRC/scripts/kconfig/merge_config.sh" -m .config "$FRAGMENT") >>"$LOG" 2>&1 ||
    fail "merging $FRAGMENT failed"
make -C "$SRC" O="$OBJ" olddefconfig >>"$LOG" 2>&1 || fail "make olddefconfig failed"

# Every option the fragment sets must have survived olddefconfig (a misspelt or
# dependency-less option silently vanishes otherwise).
missing=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=n) opt=${line%%=*}
            grep -qx "$opt=y" "$OBJ/.config" && missing+=("$line (is y)") ;;
        CONFIG_*=*) grep -qxF "$line" "$OBJ/.config" || missing+=("$line") ;;
    esac
done < <(grep -E '^CONFIG_' "$FRAGMENT")
if [ "${#missing[@]}" -gt 0 ]; then
    printf '  %s\n' "${missing[@]}" >>"$LOG"
    fail "options of $FRAGMENT not in the resolved config: ${missing[*]}"
fi

start=$(date +%s)
touch "$DIR/.started"
make -C "$SRC" O="$OBJ" -j"$JOBS" vmlinux modules >>"$LOG" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 15); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        objs=$(find "$OBJ" -name '*.o' -newer "$DIR/.started" 2>/dev/null | wc -l)
        echo "build-kernel: $(( $(date +%s) - start )) s, $objs objects compiled" >&2
    fi
done
wait "$pid" || fail "make vmlinux modules failed"

# OpenZFS against this very tree (its configure probes the kernel's API, ~1 min; the
# module ~5 min on 2 cores). Debug info is dropped: the modules are read in the guest.
ZB="$CACHE/zfs-build-$key"
rm -rf "$ZB"
cp -a "$ZFS/src" "$ZB"
echo "build-kernel: building OpenZFS $zfs_version against it (~6 min on 2 cores)..." >&2
(cd "$ZB" && ./configure --with-config=kernel --with-linux="$SRC" --with-linux-obj="$OBJ") \
    >>"$LOG" 2>&1 || fail "OpenZFS configure failed"
make -C "$ZB" -j"$JOBS" >>"$LOG" 2>&1 || fail "OpenZFS module build failed"
mkdir -p "$DIR/zfs"
for m in spl zfs; do
    ko=$(find "$ZB/module" -name "$m.ko" | head -n 1)
    [ -n "$ko" ] || fail "OpenZFS built no $m.ko"
    strip --strip-debug -o "$DIR/zfs/$m.ko" "$ko" || fail "strip $m.ko failed"
done
echo "$zfs_version" >"$DIR/zfs/VERSION"
rm -rf "$ZB"

# Keep the PVH note and the loadable segments, drop the symbols (18 MB -> ~8 MB).
objcopy --strip-all "$OBJ/vmlinux" "$DIR/vmlinux.tmp" || fail "objcopy --strip-all failed"
cp "$OBJ/.config" "$DIR/kernel.config"
mv "$DIR/vmlinux.tmp" "$DIR/vmlinux"
echo "build-kernel: built in $(( $(date +%s) - start )) s" >&2
install_result
