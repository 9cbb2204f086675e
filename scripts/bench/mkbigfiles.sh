#!/bin/bash
# Build the images of the big-file benchmark (make bench, "Big files"), once; later runs
# reuse them while the stamp matches this script.
#
# usage: scripts/bench/mkbigfiles.sh OUTDIR
#
#   bigfiles.img        GPT, sparse: part 1 ext4, part 2 XFS, part 3 NTFS, part 4 btrfs.
#                       ext4, XFS and NTFS hold big/1G.bin (the same random GiB); NTFS also
#                       compressed/256M.txt (LZNT1, a compressed directory) and btrfs
#                       big/256M.bin: the fallbacks (their bytes on disk are not the file's).
#   bigfiles-base.qcow2 the same disk as qcow2;
#   bigfiles.qcow2      an empty qcow2 overlay on it: reads go through a backing chain.
#   SHA256SUMS          of the three files.
#
# Needs root only for NTFS (ntfs-3g, a FUSE mount of a file): everything else is made by
# the mkfs tools from directories, as the test fixtures are. ~6 GiB of disk, ~1 min.
set -euo pipefail
OUT=${1:?usage: $0 OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$(cd "$HERE/../../tests/fixtures" && pwd)
STAMP=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$OUT/bigfiles.qcow2" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
    exit 0
fi
mkdir -p "$OUT"
rm -f "$OUT/.stamp"
W=$(mktemp -d "$OUT/work.XXXXXX")
trap 'rm -rf "$W"' EXIT
MiB=$((1024 * 1024))

mkdir -p "$W/t/big" "$W/n/big" "$W/n/compressed" "$W/b/big"
head -c $((1024 * MiB)) /dev/urandom >"$W/t/big/1G.bin"
ln "$W/t/big/1G.bin" "$W/n/big/1G.bin"
# Text compresses about 3:1 with LZNT1: a log file's kind of content.
python3 - "$W/n/compressed/256M.txt" <<'PY'
import random, sys
r = random.Random(21)
words = [("".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))) for _ in range(4000)]
with open(sys.argv[1], "w") as f:
    n = 0
    while n < 256 * 1024 * 1024:
        line = "%08d %s\n" % (n, " ".join(r.choice(words) for _ in range(12)))
        line = line[: 256 * 1024 * 1024 - n]
        f.write(line)
        n += len(line)
PY
head -c $((256 * MiB)) /dev/urandom >"$W/b/big/256M.bin"

truncate -s $((1200 * MiB)) "$W/ext4"
env -u SOURCE_DATE_EPOCH mkfs.ext4 -q -F -b 4096 -L bf-ext4 -d "$W/t" "$W/ext4"
printf 'bigfiles\n0 0\nd--755 0 0\n  big d--755 0 0\n    1G.bin ---644 0 0 %s\n  $\n$\n' \
    "$W/t/big/1G.bin" >"$W/xfs.proto"
# mkfs.xfs 6.1 writes a protofile's file data contiguously, over the headers of the next
# allocation group when the file does not fit in its own (xfs_repair then finds bad AGF
# CRCs and no log): two AGs of 1300 MiB, the GiB in the first, the log in the second.
truncate -s $((2600 * MiB)) "$W/xfs"
mkfs.xfs -q -f -L bf-xfs -d agsize=1300m -p "$W/xfs.proto" "$W/xfs"
if xfs_repair -n "$W/xfs" 2>&1 | grep -qi 'crc error\|inconsistent\|corrupt'; then
    echo "mkbigfiles.sh: mkfs.xfs made a damaged filesystem (xfs_repair -n)" >&2
    exit 1
fi
truncate -s $((1500 * MiB)) "$W/ntfs"
mkntfs -q -F -f -L bf-ntfs -s 512 -c 4096 "$W/ntfs" >/dev/null 2>&1
python3 "$FIX/ntfs_tool.py" populate "$W/ntfs" "$W/n" "$W/ntfs-mnt" --compress compressed
truncate -s $((400 * MiB)) "$W/btrfs"
mkfs.btrfs -q -f -L bf-btrfs --rootdir "$W/b" "$W/btrfs" >/dev/null

# Partitions as large as the filesystems (mkfs.btrfs --rootdir may grow its file).
img="$W/bigfiles.img"
table='label: gpt\n'
total=2
for fs in ext4 xfs ntfs btrfs; do
    mib=$((($(stat -c %s "$W/$fs") + MiB - 1) / MiB))
    truncate -s $((mib * MiB)) "$W/$fs"
    table+="size=${mib}MiB"
    [ "$fs" != ntfs ] || table+=", type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    table+='\n'
    total=$((total + mib))
done
truncate -s $((total * MiB)) "$img"
printf "$table" | sfdisk -q "$img"
n=1
for fs in ext4 xfs ntfs btrfs; do
    read -r start psize < <(sfdisk -d "$img" | awk -v p="$img$n" '$1 == p { sub(",", "", $4); sub(",", "", $6); print $4, $6 }')
    if [ "$(stat -c %s "$W/$fs")" != $((psize * 512)) ]; then
        echo "mkbigfiles.sh: the $fs image is $(stat -c %s "$W/$fs") bytes, its partition $((psize * 512))" >&2
        exit 1
    fi
    dd if="$W/$fs" of="$img" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
    n=$((n + 1))
done
qemu-img convert -O qcow2 "$img" "$W/bigfiles-base.qcow2"
qemu-img create -q -f qcow2 -b bigfiles-base.qcow2 -F qcow2 "$W/bigfiles.qcow2"
(cd "$W" && sha256sum t/big/1G.bin n/compressed/256M.txt b/big/256M.bin) |
    sed 's| [tnb]/| |' >"$W/SHA256SUMS"
mv "$img" "$W/bigfiles-base.qcow2" "$W/bigfiles.qcow2" "$W/SHA256SUMS" "$OUT/"
echo "$STAMP" >"$OUT/.stamp"
