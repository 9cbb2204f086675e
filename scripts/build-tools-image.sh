#!/usr/bin/env bash
# Build the storage-tools image: Debian's lvm, mdadm, cryptsetup and dmsetup with their
# shared-library closure and a read-only configuration, on an uncompressed squashfs.
#
# usage: scripts/build-tools-image.sh OUTDIR      (writes OUTDIR/tools.img)
#
# Also OpenZFS: Debian's zpool and zfs (from zfsutils-linux, unpacked by
# scripts/zfs-debs.sh, never installed on the host) with their libraries, and the
# spl.ko/zfs.ko that scripts/build-kernel.sh built against the guest kernel
# (OUTDIR/zfs/, so `make kernel` comes first) in lib/modules/.
#
# Why a disk and not the initramfs: the tools and their libraries are ~18 MB. Unpacked
# at every boot they cost ~0.1 s under TCG, for every VM, also those of plain disks.
# On a read-only disk the guest reads only what it runs, and only when a disk carries
# an LVM, md or LUKS signature (restore-daemon/src/stacks/tools.rs mounts it then).
# Uncompressed, because decompression is what TCG is slowest at; the image is
# reproducible (fixed times, root owner) so its hash changes only with the tools.
#
# The closure comes from ldd, the dynamic loader's own answer; the daemon runs each
# tool through the image's loader with --library-path, so nothing in the guest's root
# needs to change. Needs: lvm2, mdadm, cryptsetup-bin, dmsetup, squashfs-tools
# (scripts/deps.sh).
set -euo pipefail

die() { echo "build-tools-image: error: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$1
TOOLS=(lvm mdadm cryptsetup dmsetup)
LOADER=/lib64/ld-linux-x86-64.so.2

command -v mksquashfs >/dev/null || die "mksquashfs not found (apt-get install squashfs-tools)"
mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,lib,etc/lvm}

for t in "${TOOLS[@]}"; do
    path=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v "$t") ||
        die "$t not found (apt-get install lvm2 mdadm cryptsetup-bin dmsetup)"
    install -m 0755 "$(readlink -f "$path")" "$STAGE/bin/$t"
    # ldd lines: "libx.so.1 => /lib/.../libx.so.1 (0x...)" and the loader itself.
    ldd "$path" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
        [ -e "$STAGE/lib/$(basename "$lib")" ] || install -m 0644 "$(readlink -f "$lib")" "$STAGE/lib/$(basename "$lib")"
    done
done
# OpenZFS's userland, from the unpacked packages: their own libzfs & co. first on the
# library path, the rest (libtirpc, libcrypto, libudev, ...) from the host.
ZFS=$(bash "$(dirname "$0")/zfs-debs.sh") || die "no OpenZFS packages (see above)"
ZLIB="$ZFS/root/lib/x86_64-linux-gnu"
[ -d "$ZLIB" ] || ZLIB="$ZFS/root/usr/lib/x86_64-linux-gnu"
for t in zpool zfs; do
    bin=$(find "$ZFS/root" -path "*/sbin/$t" -type f | head -n 1)
    [ -n "$bin" ] || die "$t not found in $ZFS/root (zfsutils-linux $(cat "$ZFS/VERSION"))"
    install -m 0755 "$bin" "$STAGE/bin/$t"
    closure=$(LD_LIBRARY_PATH="$ZLIB" ldd "$bin") || die "ldd $bin failed"
    if grep -q 'not found' <<<"$closure"; then
        die "$t needs libraries this machine lacks: $(grep 'not found' <<<"$closure" | tr -s ' \t' ' ') (run scripts/deps.sh)"
    fi
    awk '/=> \//{print $3}' <<<"$closure" | while read -r lib; do
        [ -e "$STAGE/lib/$(basename "$lib")" ] || install -m 0644 "$(readlink -f "$lib")" "$STAGE/lib/$(basename "$lib")"
    done
done
mkdir -p "$STAGE/lib/modules"
for m in spl.ko zfs.ko; do
    [ -f "$OUT/zfs/$m" ] || die "$OUT/zfs/$m is missing: build the guest kernel first (make kernel)"
    install -m 0644 "$OUT/zfs/$m" "$STAGE/lib/modules/$m"
done

[ -e "$STAGE/lib/$(basename "$LOADER")" ] || install -m 0755 "$(readlink -f "$LOADER")" "$STAGE/lib/$(basename "$LOADER")"
chmod 0755 "$STAGE/lib/$(basename "$LOADER")"

# LVM: no udev, no daemons, no lock manager, no metadata writes ever (metadata_read_only),
# no backups; activation only of what is complete (degraded: raid with redundancy left);
# thin_check would need thin-provisioning-tools and reads nothing we need, as the pool is
# activated read-only. Locks and caches live in /run (tmpfs).
cat >"$STAGE/etc/lvm/lvm.conf" <<'EOF'
# file-restore guest: read-only activation of untrusted disks (see build-tools-image.sh)
devices {
    dir = "/dev"
    scan = [ "/dev" ]
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    use_devicesfile = 0
    hints = "none"
    scan_lvs = 1
    multipath_component_detection = 0
    md_component_detection = 1
    fw_raid_component_detection = 0
    write_cache_state = 0
    cache_dir = "/run/lvm"
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 0
    monitoring = 0
    activation_mode = "degraded"
    missing_stripe_filler = "error"
}
global {
    use_lvmpolld = 0
    use_lvmlockd = 0
    metadata_read_only = 1
    locking_dir = "/run/lock/lvm"
    thin_check_executable = ""
    cache_check_executable = ""
    event_activation = 0
    system_id_source = "none"
}
backup {
    backup = 0
    archive = 0
}
log {
    syslog = 0
    verbose = 0
}
EOF

{
    echo "tools image of file-restore, from:"
    for t in "${TOOLS[@]}"; do
        p=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v "$t")
        # dpkg knows the file by the path its package installed (/sbin or /usr/sbin).
        pkg=$({ dpkg -S "$p" || dpkg -S "$(readlink -f "$p")" || dpkg -S "/sbin/$t"; } 2>/dev/null | head -1 | cut -d: -f1) || true
        ver=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null) || ver="?"
        echo "$t ${pkg:-?} $ver"
    done
    echo "zpool zfsutils-linux $(cat "$ZFS/VERSION")"
    echo "zfs zfsutils-linux $(cat "$ZFS/VERSION")"
    echo "spl.ko zfs.ko zfs-dkms $(cat "$OUT/zfs/VERSION")"
} >"$STAGE/VERSIONS"

rm -f "$OUT/tools.img.tmp"
mksquashfs "$STAGE" "$OUT/tools.img.tmp" -noappend -all-root -no-xattrs -noI -noD -noF -noX \
    -mkfs-time 0 -all-time 0 -quiet >/dev/null
mv "$OUT/tools.img.tmp" "$OUT/tools.img"
echo "build-tools-image: $OUT/tools.img ($(du -k --apparent-size "$OUT/tools.img" | cut -f1) KiB)" >&2
