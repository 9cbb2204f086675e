# Big files (issue 21): part of scripts/bench.sh (sourced; uses its measure, check, fail,
# log, loop_attach, mount_dev, rm_out, $FR, $W). A 1 GiB file on ext4, XFS and NTFS, in a
# raw image and in a qcow2 overlay with a backing file, from a warm VM: file-restore's map
# path (the default for big files), its stream through the guest (FILE_RESTORE_MAP=off),
# libguestfs (virt-cat) and a host mount; plus the two fallbacks (a compressed NTFS file,
# btrfs), where the map path must cost nothing over the stream.
#
# Images: scripts/bench/mkbigfiles.sh (built once into target/fixtures/bigfiles).

BF_DIR="$ROOT/target/fixtures/bigfiles"
BF_RUNS=$(( RUNS < 3 ? RUNS : 3 ))   # the map path and the mount: fast
BF_SLOW_RUNS=1                       # 1 GiB through the guest or libguestfs: 30 s to 2 min each
meta bf_file_bytes 1073741824
meta bf_fallback_bytes 268435456
meta bf_runs "$BF_RUNS"

log "big files: images (scripts/bench/mkbigfiles.sh $BF_DIR; built once, ~2 min)"
if ! bash "$ROOT/scripts/bench/mkbigfiles.sh" "$BF_DIR" >"$W/bf-build.log" 2>&1; then
    for k in bf_map_ext4_raw; do fail "$k" "building the images failed: $(lastlines "$W/bf-build.log")"; done
    return 0
fi
bf_sha() { awk -v f="$1" '$2 == f { print $1 }' "$BF_DIR/SHA256SUMS"; }
SHA_1G=$(bf_sha big/1G.bin)
SHA_Z=$(bf_sha compressed/256M.txt)
SHA_B=$(bf_sha big/256M.bin)
BF_RAW="$BF_DIR/bigfiles.img"
BF_QCOW="$BF_DIR/bigfiles.qcow2"
declare -A BF_PART=([ext4]=1 [xfs]=2 [ntfs]=3 [btrfs]=4)

bf_extract() {  # bf_extract IMG PATH MAP-POLICY
    FILE_RESTORE_MAP=$3 "$FR" -v extract "$1" "$2" "$W/out.bin"
}
bf_said() {  # bf_said WHAT: the last run's -v line says WHAT
    grep -q "$1" "$W/cmd.err" || { echo "-v did not say '$1': $(lastlines "$W/cmd.err" 2)"; return 1; }
}

for fmt in raw qcow2; do
    img=$BF_RAW
    [ "$fmt" = raw ] || img=$BF_QCOW
    log "big files: $fmt VM (started untimed)"
    "$FR" list "$img" /bigfiles/part/1 >/dev/null 2>"$W/cmd.err" ||
        log "  starting the VM failed: $(lastlines "$W/cmd.err")"
    for fs in ext4 xfs ntfs; do
        p=/bigfiles/part/${BF_PART[$fs]}/big/1G.bin
        log "big files: 1 GiB on $fs ($fmt), map path"
        measure "bf_map_${fs}_$fmt" "$BF_RUNS" rm_out bf_extract "$img" "$p" auto
        check "bf_map_${fs}_$fmt" "read through the export" bf_said "read from the disks"
        check "bf_map_${fs}_$fmt" "sha256 of 1G.bin" sha_is "$W/out.bin" "$SHA_1G"
        if [ "$fmt" = raw ]; then
            log "big files: 1 GiB on $fs ($fmt), stream through the guest"
            measure "bf_stream_${fs}_$fmt" "$BF_SLOW_RUNS" rm_out bf_extract "$img" "$p" off
            check "bf_stream_${fs}_$fmt" "sha256 of 1G.bin" sha_is "$W/out.bin" "$SHA_1G"
        fi
        rm_out
    done
    if [ "$fmt" = raw ]; then
        for fb in ntfsz btrfs; do
            if [ $fb = ntfsz ]; then p=/bigfiles/part/3/compressed/256M.txt sha=$SHA_Z
            else p=/bigfiles/part/4/big/256M.bin sha=$SHA_B; fi
            log "big files: 256 MiB fallback ($fb): map path asked, then the stream"
            measure "bf_map_$fb" "$BF_RUNS" rm_out bf_extract "$img" "$p" auto
            check "bf_map_$fb" "fell back to the stream" bf_said "streamed through the guest"
            check "bf_map_$fb" "sha256" sha_is "$W/out.bin" "$sha"
            measure "bf_stream_$fb" "$BF_RUNS" rm_out bf_extract "$img" "$p" off
            check "bf_stream_$fb" "sha256" sha_is "$W/out.bin" "$sha"
            rm_out
        done
    fi
    "$FR" stop --all >/dev/null 2>&1 || true
done

# Host mount (the floor) and libguestfs, raw image only.
bf_start_size() {  # bf_start_size N -> "START SIZE" in bytes of partition N
    sfdisk -J "$BF_RAW" | python3 -c 'import json,sys
t = json.load(sys.stdin)["partitiontable"]; p = t["partitions"][int(sys.argv[1]) - 1]
print(p["start"] * 512, p["size"] * 512)' "$1"
}
bf_cat() { cat "$W/mnt-bf/big/1G.bin" >"$W/out.bin"; }
mkdir -p "$W/mnt-bf"
for fs in ext4 xfs ntfs; do
    read -r start size < <(bf_start_size "${BF_PART[$fs]}")
    log "big files: host mount of the $fs partition, cat 1 GiB"
    dev=$(loop_attach "$BF_RAW" "$start" "$size" 2>"$W/cmd.err") && LOOPS+=("$dev")
    opts=ro
    [ "$fs" != ext4 ] || opts=ro,noload
    [ "$fs" != xfs ] || opts=ro,norecovery
    if [ -n "${dev:-}" ] && mount -o "$opts" "$dev" "$W/mnt-bf" 2>>"$W/cmd.err"; then
        MOUNTS+=("$W/mnt-bf")
        measure "bf_mnt_$fs" "$BF_RUNS" rm_out bf_cat
        check "bf_mnt_$fs" "sha256 of 1G.bin" sha_is "$W/out.bin" "$SHA_1G"
        umount "$W/mnt-bf"
    else
        fail "bf_mnt_$fs" "mount failed: $(lastlines "$W/cmd.err")"
    fi
    losetup -d "$dev" 2>/dev/null || true
    dev=
    rm_out
    log "big files: libguestfs virt-cat of 1 GiB on $fs"
    lg_bf() { virt-cat --format=raw -a "$BF_RAW" -m "/dev/sda${BF_PART[$fs]}" /big/1G.bin >"$W/out.bin"; }
    measure "bf_lg_$fs" "$BF_SLOW_RUNS" rm_out lg_bf
    check "bf_lg_$fs" "sha256 of 1G.bin" sha_is "$W/out.bin" "$SHA_1G"
    rm_out
done
