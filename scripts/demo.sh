#!/usr/bin/env bash
# make demo: build a small demo disk (GPT, ext4 + vfat) and show the restore
# daemon serving it. Prints each command before its output.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/file-restore-demo}
rm -rf "$DEMO" && mkdir -p "$DEMO/src/etc" "$DEMO/src/home/alice/docs"
echo "demo: building a demo disk in $DEMO"
printf 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n' > "$DEMO/src/etc/passwd"
echo "restore me" > "$DEMO/src/home/alice/docs/report.txt"
ln -s docs/report.txt "$DEMO/src/home/alice/latest"
truncate -s 64M "$DEMO/p1.img"
mkfs.ext4 -q -F -L demo -d "$DEMO/src" "$DEMO/p1.img"
truncate -s 100M "$DEMO/disk.img"
printf 'label: gpt\nstart=2048, size=131072, name=root\n' | sfdisk -q "$DEMO/disk.img"
dd if="$DEMO/p1.img" of="$DEMO/disk.img" bs=512 seek=2048 conv=notrunc status=none
LOOP=$(losetup -f --show -r -o $((2048 * 512)) --sizelimit $((131072 * 512)) "$DEMO/disk.img")
trap 'kill $PID 2>/dev/null || true; sleep 0.3; losetup -d $LOOP 2>/dev/null || true' EXIT
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEMO/ticket"
target/release/restore-daemon dev --listen "unix:$DEMO/api.sock" --ticket-file "$DEMO/ticket" \
    --bucket "demo-disk/part/1=$LOOP" --mount-dir "$DEMO/mnt" --log-level warn &
PID=$!
for _ in $(seq 50); do [ -S "$DEMO/api.sock" ] && break; sleep 0.1; done
AUTH="Authorization: FileRestoreTicket $(cat "$DEMO/ticket")"
show() { echo; echo "\$ $*"; "$@"; echo; }
b64() { printf '%s' "$1" | base64 -w0 | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g'; }
api() { curl -sS --unix-socket "$DEMO/api.sock" -H "$AUTH" "http://localhost$1"; }
show api "/api/list?path=$(b64 /)"
show api "/api/list?path=$(b64 /demo-disk/part)"
show api "/api/list?path=$(b64 /demo-disk/part/1/home/alice)"
show api "/api/extract?path=$(b64 /demo-disk/part/1/home/alice/docs/report.txt)"
echo "\$ api '/api/extract?path=$(b64 /demo-disk/part/1/home)&format=tar' | tar -tv"
api "/api/extract?path=$(b64 /demo-disk/part/1/home)&format=tar" | tar -tv
show api "/api/status"
