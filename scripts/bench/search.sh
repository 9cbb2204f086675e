# Find and versions (issue 22): part of scripts/bench.sh (sourced; uses its measure,
# check, fail, log, loop_attach, rm_out, $FR, $W, $LIB). `find` over 100,000 files (cold
# VM and warm) beside libguestfs (`virt-ls -R` + grep, an appliance per call) and a host
# mount (`find -name`); `versions` of one path over 10 snapshots (with and without
# --hash; each run starts and stops its 10 VMs) beside libguestfs (`virt-ls -l` or
# `guestfish checksum` per snapshot; `virt-diff` of two snapshots) and host mounts (mount + stat/sha256sum +
# umount per snapshot).
#
# Images: tests/fixtures/mksearch.sh with SEARCH_FILES=100000 SEARCH_SNAPSHOTS=10, built
# once into target/fixtures/bench-search (~40 s).

SR_DIR="$ROOT/target/fixtures/bench-search"
SR_RUNS=$(( RUNS < 3 ? RUNS : 3 ))
SR_SLOW_RUNS=1                      # libguestfs: an appliance boot per snapshot
meta sr_files 100000
meta sr_snapshots 10
log "find/versions: images (SEARCH_FILES=100000 SEARCH_SNAPSHOTS=10 mksearch.sh $SR_DIR)"
if ! SEARCH_FILES=100000 SEARCH_SNAPSHOTS=10 bash "$ROOT/tests/fixtures/mksearch.sh" "$SR_DIR" \
        >"$W/sr-build.log" 2>&1; then
    fail sr_find_cold "building the images failed: $(lastlines "$W/sr-build.log")"
    return 0
fi
SR_IMG="$SR_DIR/search/find.img"
SR_STORE="$SR_DIR/search/store/300"
SR_APP=/drive-scsi0/raw/raw/etc/app.conf
# 100 files match: file-0999NN.* (K = 99900..99999).
SR_GLOB='file-0999??.*'

sr_find() { "$FR" find "$SR_IMG" --name "$SR_GLOB" --max-results 100000; }
sr_lines() {  # sr_lines N: the last output has N lines
    local n; n=$(wc -l <"$W/cmd.out")
    [ "$n" = "$1" ] || { echo "$n lines, expected $1"; return 1; }
}
log "find: cold (stop --all before each), 100,000 files, --name '$SR_GLOB'"
measure sr_find_cold "$SR_RUNS" fr_stop sr_find
check sr_find_cold "100 matches" sr_lines 100
log "find: warm (VM running)"
measure sr_find_warm "$SR_RUNS" - sr_find
check sr_find_warm "100 matches" sr_lines 100
sr_find_all() { "$FR" find "$SR_IMG" --max-results 1000000 --output-format jsonl; }
log "find: warm, every entry (100,000+ matches as JSON Lines)"
measure sr_find_all "$SR_RUNS" - sr_find_all
SR_ALL=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))) + 1)' \
    "$SR_DIR/search/find.manifest.json")   # + lost+found
check sr_find_all "every entry ($SR_ALL)" sr_lines "$SR_ALL"
fr_stop >/dev/null 2>&1 || true

sr_versions() { "$FR" versions "$SR_STORE" --path "$SR_APP" --output-format json "$@"; }
sr_rows() {  # the last versions output has 10 rows, the oldest missing
    python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 10, f"{len(rows)} rows"
assert [r["exists"] for r in rows] == [True] * 9 + [False], rows
assert all(r["error"] is None for r in rows), rows' "$W/cmd.out"
}
log "versions: 10 snapshots (VMs started and stopped by each run)"
measure sr_versions "$SR_RUNS" fr_stop sr_versions
check sr_versions "10 rows" sr_rows
log "versions --hash: 10 snapshots"
measure sr_versions_hash "$SR_RUNS" fr_stop sr_versions --hash
check sr_versions_hash "10 rows" sr_rows

sr_lg_find() { virt-ls --format=raw -a "$SR_IMG" -m /dev/sda -R / | grep -E '/file-0999[0-9]{2}\.[a-z]+$'; }
log "find: libguestfs virt-ls -R | grep (an appliance per call)"
measure sr_lg_find "$SR_SLOW_RUNS" - sr_lg_find
check sr_lg_find "100 matches" sr_lines 100
sr_lg_versions() {
    local s
    for s in "$SR_STORE"/qemu-*; do
        virt-ls --format=raw -a "$s/drive-scsi0.raw" -m /dev/sda -l /etc/app.conf 2>/dev/null ||
            echo "missing $s"
    done
}
log "versions: libguestfs virt-ls -l per snapshot (10 appliances)"
measure sr_lg_versions "$SR_SLOW_RUNS" - sr_lg_versions
sr_lg_versions_hash() {
    local s
    for s in "$SR_STORE"/qemu-*; do
        guestfish --ro --format=raw -a "$s/drive-scsi0.raw" -m /dev/sda \
            checksum sha256 /etc/app.conf 2>/dev/null || echo "missing $s"
    done
}
log "versions --hash: libguestfs guestfish checksum per snapshot (10 appliances)"
measure sr_lg_versions_hash "$SR_SLOW_RUNS" - sr_lg_versions_hash
sr_lg_diff() {
    virt-diff --format=raw -a "$SR_STORE/qemu-1700000000/drive-scsi0.raw" \
        -A "$SR_STORE/qemu-1700777600/drive-scsi0.raw" || [ $? = 1 ]
}
log "versions: libguestfs virt-diff of two snapshots"
measure sr_lg_diff "$SR_SLOW_RUNS" - sr_lg_diff

mkdir -p "$W/mnt-sr"
sr_mnt_find() { find "$W/mnt-sr" -name "$SR_GLOB"; }
dev=$(losetup -r -f --show "$SR_IMG" 2>"$W/cmd.err") && LOOPS+=("$dev")
if [ -n "${dev:-}" ] && mount -o ro,noload "$dev" "$W/mnt-sr" 2>>"$W/cmd.err"; then
    MOUNTS+=("$W/mnt-sr")
    log "find: host mount, find -name (page cache dropped before each)"
    sr_drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
    measure sr_mnt_find "$SR_RUNS" sr_drop sr_mnt_find
    check sr_mnt_find "100 matches" sr_lines 100
    umount "$W/mnt-sr"
else
    fail sr_mnt_find "mount failed: $(lastlines "$W/cmd.err")"
fi
[ -z "${dev:-}" ] || losetup -d "$dev" 2>/dev/null || true
dev=
sr_mnt_versions() {  # mount, stat + sha256sum, umount per snapshot
    local s d
    for s in "$SR_STORE"/qemu-*; do
        d=$(losetup -r -f --show "$s/drive-scsi0.raw") || return 1
        mount -o ro,noload "$d" "$W/mnt-sr" || { losetup -d "$d"; return 1; }
        stat -c '%s %Y' "$W/mnt-sr/etc/app.conf" 2>/dev/null && sha256sum "$W/mnt-sr/etc/app.conf" ||
            echo "missing $s"
        umount "$W/mnt-sr"
        losetup -d "$d"
    done
}
log "versions: host mounts (mount + stat + sha256sum + umount per snapshot)"
measure sr_mnt_versions "$SR_RUNS" - sr_mnt_versions
