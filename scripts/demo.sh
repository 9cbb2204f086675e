#!/usr/bin/env bash
# make demo: builds a demo disk image (GPT: an ext4 and a vfat partition with
# a few files) and runs the real file-restore CLI against it: the disk is
# attached read-only to a restore VM, listed at several levels, a file and a
# directory are extracted, status is shown and the VM is stopped.
# Each command is printed before its output.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/file-restore-demo}
FR=${FILE_RESTORE:-target/release/file-restore}
export FILE_RESTORE_RUNTIME_DIR="$DEMO/runtime"

[ -x "$FR" ] || { echo "demo: $FR is missing: run make build" >&2; exit 1; }
rm -rf "$DEMO" && mkdir -p "$DEMO/root/etc" "$DEMO/root/home/alice/docs" "$DEMO/boot"
trap '"$FR" stop --all >/dev/null 2>&1 || true' EXIT

echo "demo: building a demo disk image in $DEMO (GPT: ext4 root, vfat boot)"
printf 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n' > "$DEMO/root/etc/passwd"
echo "demo-host" > "$DEMO/root/etc/hostname"
echo "quarterly numbers: 42" > "$DEMO/root/home/alice/docs/report.txt"
seq 1 2000 > "$DEMO/root/home/alice/docs/data.csv"
ln -s docs/report.txt "$DEMO/root/home/alice/latest-report"
echo "title Demo Linux" > "$DEMO/boot/loader.conf"
truncate -s 64M "$DEMO/root.img" && mkfs.ext4 -q -F -L root -d "$DEMO/root" "$DEMO/root.img"
truncate -s 32M "$DEMO/boot.img" && mkfs.vfat -n BOOT "$DEMO/boot.img" >/dev/null
mcopy -s -i "$DEMO/boot.img" "$DEMO/boot/loader.conf" ::/
truncate -s 100M "$DEMO/demo-vm.img"
printf 'label: gpt\nstart=2048, size=65536, type=uefi, name=boot\nstart=67584, size=131072, name=root\n' \
    | sfdisk -q "$DEMO/demo-vm.img"
dd if="$DEMO/boot.img" of="$DEMO/demo-vm.img" bs=512 seek=2048 conv=notrunc status=none
dd if="$DEMO/root.img" of="$DEMO/demo-vm.img" bs=512 seek=67584 conv=notrunc status=none
qemu-img convert -O qcow2 "$DEMO/demo-vm.img" "$DEMO/demo-vm.qcow2"
IMG="$DEMO/demo-vm.qcow2"

run() {
    echo
    echo "\$ $*"
    local start end
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    echo "  ($(( (end - start) / 1000000 )) ms)"
}
run "$FR" list "$IMG"
run "$FR" list "$IMG" /demo-vm
run "$FR" list "$IMG" /demo-vm/part
run "$FR" list "$IMG" /demo-vm/part/2/home/alice
run "$FR" list "$IMG" /demo-vm/part/1 --output-format json-pretty
run "$FR" extract "$IMG" /demo-vm/part/2/home/alice/docs/report.txt
run "$FR" extract "$IMG" /demo-vm/part/2/home/alice "$DEMO/restored-alice"
run find "$DEMO/restored-alice" -printf '%M %6s %P\n'
run "$FR" extract "$IMG" /demo-vm/part/2/etc "$DEMO/etc.tar" --format tar
run tar -tvf "$DEMO/etc.tar"
run "$FR" status
run "$FR" stop --all
run "$FR" status
