#!/usr/bin/env bash
# make bench: file-restore side by side with libguestfs and a direct host mount
# (the unsafe floor), on the same images, in one run.
#
# Prints one table (median and min-max of each figure, ratios, targets) to stdout and
# writes it, with the date, machine, commit and accelerator, to docs/BENCHMARKS.md
# (overwritten on every run; never edit that file by hand).
#
# Environment:
#   BENCH_RUNS=N    runs per figure (default 5; the warm list uses max(10, 2N))
#   BENCH_QUICK=1   smoke mode: 2 runs (4 for the warm list); writes
#                   target/bench/BENCHMARKS-quick.md instead of docs/BENCHMARKS.md
#   BENCH_OUT=FILE  write the report there instead
#   BENCH_KEEP=1    keep the work directory (outputs, raw samples) for inspection
#   BENCH_BIG=0     skip the big-file section (scripts/bench/bigfiles.sh)
#   BENCH_SEARCH=0  skip the find/versions section (scripts/bench/search.sh)
#
# Needs root (losetup, mount). Progress goes to stderr, the table to stdout.
# About 15 minutes on a quiet 2-core machine with the default 5 runs, plus ~8 for the big
# files (BENCH_BIG=0 skips them; their images are built once, ~1 min) (~2.5 with
# BENCH_QUICK=1), longer when other VMs run; two thirds of it is libguestfs booting
# its appliance for every call. The first libguestfs call on a fresh machine also
# builds the supermin appliance (reported in the header, not counted).
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME with a '.' separator

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LIB="python3 $ROOT/scripts/bench/benchlib.py"
REPORT="$ROOT/scripts/bench/report.py"
FR="$ROOT/target/release/file-restore"
FIXDIR="$ROOT/target/fixtures"
START_EPOCH=${EPOCHREALTIME/./}

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNS=${BENCH_RUNS:-2}; else RUNS=${BENCH_RUNS:-5}; fi
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: BENCH_RUNS must be a positive integer" >&2; exit 2; }
if [ "$QUICK" = 1 ]; then WARM_RUNS=$((2 * RUNS)); else WARM_RUNS=$((2 * RUNS > 10 ? 2 * RUNS : 10)); fi
if [ -n "${BENCH_OUT:-}" ]; then OUTFILE=$BENCH_OUT
elif [ "$QUICK" = 1 ]; then OUTFILE="$ROOT/target/bench/BENCHMARKS-quick.md"
else OUTFILE="$ROOT/docs/BENCHMARKS.md"; fi

log() { printf '[bench %4ds] %s\n' "$(( (${EPOCHREALTIME/./} - START_EPOCH) / 1000000 ))" "$*" >&2; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the host-mount floor needs losetup and mount)"

# ---------------------------------------------------------------- set-up
log "dependencies (scripts/deps.sh --bench)"
bash "$ROOT/scripts/deps.sh" --bench >&2

if [ ! -x "$FR" ] || [ ! -f "$ROOT/build/initramfs.img" ] || [ ! -f "$ROOT/build/boot.json" ]; then
    log "release binaries or build/initramfs.img missing: make build"
    make -C "$ROOT" build >&2
fi

log "fixtures (tests/fixtures/mkfixtures.sh target/fixtures --big)"
bash "$ROOT/tests/fixtures/mkfixtures.sh" "$FIXDIR" --big >&2

W=$(mktemp -d /tmp/file-restore-bench.XXXXXX)
SAMPLES=$W/samples.tsv   # KEY<TAB>microseconds | KEY<TAB>FAIL<TAB>reason
META=$W/meta.tsv         # KEY<TAB>value
: >"$SAMPLES"
: >"$META"
export FILE_RESTORE_RUNTIME_DIR="$W/run"   # our own VM map: stop --all stops only ours
# The boot files of this build (an installed copy in /usr/local/lib/file-restore would
# otherwise come first).
bootfile() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$ROOT/build/boot.json" "$1"; }
FILE_RESTORE_KERNEL=$(bootfile kernel 2>/dev/null || echo "$ROOT/build/vmlinux")
FILE_RESTORE_INITRAMFS=$(bootfile initramfs 2>/dev/null || echo "$ROOT/build/initramfs.img")
export FILE_RESTORE_KERNEL FILE_RESTORE_INITRAMFS
mkdir -p "$W/img" "$W/run" "$W/mnt-cold" "$W/mnt-gpt" "$W/mnt-big"

LOOPS=()      # loop devices we attached
MOUNTS=()     # mount points we mounted
GF_PIDS=()    # guestfish --listen servers we started

cleanup() {
    local rc=$? p m d
    set +e
    for p in "${GF_PIDS[@]}"; do gf_stop "$p"; done
    [ ! -x "$FR" ] || "$FR" stop --all >/dev/null 2>&1
    for m in "${MOUNTS[@]}"; do
        if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
    done
    for d in "${LOOPS[@]}"; do
        # Detach only while it still is ours: a detached number may have been reused.
        case "$(losetup -n -O BACK-FILE "$d" 2>/dev/null)" in
            "$W"/*) losetup -d "$d" ;;
        esac
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench.sh: work directory kept: $W" >&2
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
lastlines() { tail -n "${2:-3}" "$1" 2>/dev/null | tr '\t\n' '  ' | cut -c1-300; }

declare -A FAILED=()
fail() {
    FAILED[$1]=1
    printf '%s\tFAIL\t%s\n' "$1" "$(tr '\t\n' '  ' <<<"$2" | cut -c1-300)" >>"$SAMPLES"
    log "  $1 FAILED: $2"
}

# measure KEY N PREP CMD...: runs CMD N times, timing each run (PREP runs untimed before
# each; "-" for none). CMD's stdout goes to $W/cmd.out, its stderr to $W/cmd.err. The
# first failure is recorded with its reason and ends this measurement (not the bench).
measure() {
    local key=$1 n=$2 prep=$3 i t0 t1 rc
    shift 3
    for ((i = 1; i <= n; i++)); do
        [ -z "${FAILED[$key]:-}" ] || return 0
        if [ "$prep" != - ] && ! "$prep" >"$W/prep.log" 2>&1; then
            fail "$key" "preparation failed: $(lastlines "$W/prep.log")"
            return 0
        fi
        t0=$EPOCHREALTIME
        if "$@" >"$W/cmd.out" 2>"$W/cmd.err"; then
            t1=$EPOCHREALTIME
            printf '%s\t%s\n' "$key" "$((${t1/./} - ${t0/./}))" >>"$SAMPLES"
        else
            rc=$?
            fail "$key" "exit $rc: $(lastlines "$W/cmd.err")"
            return 0
        fi
    done
    log "  $key: $(awk -F'\t' -v k="$key" '$1 == k && $2 != "FAIL" { printf "%.3fs ", $2 / 1e6 }' "$SAMPLES")"
}

# check KEY WHAT CMD...: an output check after a measurement; a failed check is shown
# as a footnote next to the figure (the figure is kept).
check() {
    local key=$1 what=$2 err
    shift 2
    if err=$("$@" 2>&1); then
        meta "check:$key" "ok: $what"
    else
        meta "check:$key" "FAILED: $what: $(tr '\t\n' '  ' <<<"$err" | cut -c1-200)"
        log "  $key: output check FAILED: $what: $err"
    fi
}

sha_is() { local got; got=$(sha256sum "$1" | cut -d' ' -f1); [ "$got" = "$2" ] || { echo "sha256 $got"; return 1; }; }

# ---------------------------------------------------------------- images
# Private copies: a concurrent fixture rebuild cannot change them under us. The shared
# lock only keeps a rebuild from running while we copy.
log "copying gpt.img and big-ext4.img into $W/img"
flock -s -w 900 "$FIXDIR/.lock" cp --sparse=always "$FIXDIR/gpt.img" "$FIXDIR/big-ext4.img" "$W/img/"
GPT=$W/img/gpt.img                          # disk name (virtio serial) "gpt"
BIG=$W/img/big-ext4.img                     # disk name "big-ext4"
read -r P1_START P1_SIZE < <($LIB fixture "$FIXDIR" gpt.img part/1)
read -r BIG_START BIG_SIZE < <($LIB fixture "$FIXDIR" big-ext4.img raw/raw)
BIG_SHA=$($LIB expected-sha "$FIXDIR" big big/256M.bin)
BIG_PATH_FR=/big-ext4/raw/raw/big/256M.bin
MANY_FR=/gpt/part/1/many
meta big_file_bytes 268435456
# Storage stacks (tests/fixtures/mkstacks.sh): an LV of a VG with thin and COW
# snapshots, and LVM inside LUKS2 (argon2id, 32 MiB, 4 iterations).
log "copying the lvm-layouts and luks2-lvm stack sources into $W/img"
for d in lvm-layouts luks2-lvm; do
    mkdir -p "$W/img/$d"
    flock -s -w 900 "$FIXDIR/.lock" cp --sparse=always "$FIXDIR/stacks/$d/$d.raw" "$W/img/$d/"
done
LV_SRC=$W/img/lvm-layouts
LUKS_SRC=$W/img/luks2-lvm
printf 'second-pass\n' >"$W/luks.keys"
# ZFS (tests/fixtures/mkzfs.sh): the OpenZFS mirror of two disks, when it was built.
ZFS_SRC=""
if [ -f "$FIXDIR/zfs/openzfs/oz-a.raw" ]; then
    log "copying the OpenZFS fixture pool into $W/img/zfs"
    mkdir -p "$W/img/zfs"
    flock -s -w 900 "$FIXDIR/zfs/.lock" cp --sparse=always "$FIXDIR/zfs/openzfs/oz-a.raw" \
        "$FIXDIR/zfs/openzfs/oz-b.raw" "$W/img/zfs/"
    ZFS_SRC=$W/img/zfs
fi

# ---------------------------------------------------------------- machine
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta uname_r "$(uname -r)"
meta nproc "$(nproc)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta mem_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
meta commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    meta commit_dirty 1
fi
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta qemu_version "$(qemu-system-x86_64 --version | head -1)"
meta libguestfs_version "$(virt-ls --version 2>/dev/null | head -1)"
meta guest_kernel "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("kernel_release","?"))' "$ROOT/build/boot.json" 2>/dev/null || echo '?')"
meta kvm_pvm "$([ -d /sys/module/kvm_pvm ] && echo 1 || echo 0)"
meta runs "$RUNS"
meta warm_runs "$WARM_RUNS"
meta quick "$QUICK"
meta initramfs_bytes "$(stat -c %s "$FILE_RESTORE_INITRAMFS")"
meta kernel "$(basename "$FILE_RESTORE_KERNEL")$(python3 -c 'import json,sys; print(" (PVH)" if json.load(open(sys.argv[1])).get("pvh") else "")' "$ROOT/build/boot.json" 2>/dev/null || true)"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN { exit !(l > 1.5) }'; then
    log "WARNING: load average $load1 > 1.5: other work is running, the numbers will be noisy"
fi
log "runs: $RUNS (warm list: $WARM_RUNS); report: $OUTFILE"

# ================================================================ file-restore
fr_stop() { "$FR" stop --all; }
rm_out() { rm -f "$W"/out.*; }

# Time to the first status answer: `file-restore -vv list IMG /` on a new VM, stamped
# at QEMU's spawn and at the 'started VM' note (printed when the daemon answered).
first_answer() {
    local key=$1 out
    shift
    [ -z "${FAILED[$key]:-}" ] || return 0
    if ! fr_stop >"$W/prep.log" 2>&1; then fail "$key" "stop --all failed: $(lastlines "$W/prep.log")"; return 0; fi
    if out=$($LIB stamp -- "$FR" -vv "$@" list "$GPT" / 2>&1); then
        read -r total spawn ready <<<"$out"
        printf '%s_total\t%s\n' "$key" "$total" >>"$SAMPLES"
        if [ "$spawn" = - ] || [ "$ready" = - ]; then
            [ -n "${FAILED[${key}_boot]:-}" ] ||
                fail "${key}_boot" "the -vv output had no 'started … (accel) pid' debug line or no 'started VM' note to time-stamp"
        else
            printf '%s_boot\t%s\n%s_spawn\t%s\n' "$key" "$((ready - spawn))" "$key" "$spawn" >>"$SAMPLES"
        fi
    else
        FAILED[$key]=1
        fail "${key}_boot" "$out"
        fail "${key}_total" "$out"
    fi
}
# A cold list of /gpt/part/1 split into phases (docs/KERNEL.md): host side until QEMU
# is spawned, QEMU + firmware until the guest clock starts, kernel to /init, daemon to
# listening, listening to the first connection, then the first mount and listing.
cold_phases() {
    local out total spawn ready init listen first
    [ -z "${FAILED[ph_total]:-}" ] || return 0
    if ! fr_stop >"$W/prep.log" 2>&1; then fail ph_total "stop --all failed: $(lastlines "$W/prep.log")"; return 0; fi
    if out=$($LIB phases "$W/run" -- "$FR" -vv list "$GPT" /gpt/part/1 --output-format json 2>&1); then
        read -r total spawn ready init listen first <<<"$out"
        printf 'ph_total\t%s\nph_spawn\t%s\nph_firmware\t%s\nph_kernel\t%s\nph_daemon\t%s\nph_answer\t%s\nph_list\t%s\n' \
            "$total" "$spawn" "$((ready - spawn - first))" "$init" "$((listen - init))" \
            "$((first - listen))" "$((total - ready))" >>"$SAMPLES"
    else
        fail ph_total "$out"
    fi
}
log "file-restore: time to first answer and cold-list phases ($RUNS boots each, interleaved)"
for ((i = 1; i <= RUNS; i++)); do
    first_answer fa
    cold_phases
done
for k in fa_boot ph_total ph_kernel; do
    log "  $k: $(awk -F'\t' -v k="$k" '$1 == k && $2 != "FAIL" { printf "%.3fs ", $2 / 1e6 }' "$SAMPLES")"
done

log "file-restore: cold list of /gpt/part/1 (stop --all before each)"
measure fr_cold "$RUNS" fr_stop "$FR" list "$GPT" /gpt/part/1 --output-format json
check fr_cold "the root lists many/" python3 -c '
import json, sys
assert any(e["text"] == "many" for e in json.load(open(sys.argv[1]))), "no many/ entry"' "$W/cmd.out"

# The first start after a host boot: nothing remembered about KVM in the runtime dir.
fr_forget_kvm() { fr_stop && rm -f "$W/run/kvm-unusable" "$W/run/kvm-works"; }
log "file-restore: first start after host boot (no KVM memo; stop --all before each)"
measure fr_first "$RUNS" fr_forget_kvm "$FR" list "$GPT" /gpt/part/1 --output-format json
check fr_first "the root lists many/" python3 -c '
import json, sys
assert any(e["text"] == "many" for e in json.load(open(sys.argv[1]))), "no many/ entry"' "$W/cmd.out"

log "file-restore: warm list of $MANY_FR (VM running, one untimed warm-up)"
"$FR" list "$GPT" "$MANY_FR" --output-format json >/dev/null 2>"$W/cmd.err" || true
measure fr_warm "$WARM_RUNS" - "$FR" list "$GPT" "$MANY_FR" --output-format json
check fr_warm "1,000 entries" $LIB count-json "$W/cmd.out" 1000

log "file-restore: $MANY_FR as tar"
measure fr_tar "$RUNS" rm_out "$FR" extract "$GPT" "$MANY_FR" "$W/out.tar" --format tar
check fr_tar "1,000 files in the tar" $LIB count-tar "$W/out.tar" 1000

log "file-restore: extract the 256 MiB file (big-ext4.img, VM started untimed)"
"$FR" list "$BIG" / >/dev/null 2>"$W/cmd.err" || log "  starting the big-ext4 VM failed: $(lastlines "$W/cmd.err")"
measure fr_extract "$RUNS" rm_out "$FR" extract "$BIG" "$BIG_PATH_FR" "$W/out.bin"
check fr_extract "sha256 of 256M.bin" sha_is "$W/out.bin" "$BIG_SHA"
rm_out

log "file-restore: memory after the workload"
if "$FR" status --output-format json >"$W/status.json" 2>"$W/cmd.err"; then
    rss_max=0 hwm_max=0 ram=0 side=0 accels=()
    while read -r pid accel rundir image; do
        accels+=("$accel")
        if read -r r rss hwm shm anon < <($LIB proc-mem "$pid"); then
            ram=$r
            [ "$rss" -le "$rss_max" ] || rss_max=$rss
            [ "$hwm" -le "$hwm_max" ] || hwm_max=$hwm
            meta "frvm:$pid" "$image: RSS $((rss / 1024)) MiB = RssShmem $((shm / 1024)) MiB (mostly the shared-memfd guest RAM it has touched) + RssAnon $((anon / 1024)) MiB (QEMU's heap, TCG code cache) + RssFile $(((rss - shm - anon) / 1024)) MiB (mapped files)"
        fi
        if [ "$rundir" != - ]; then
            s=$($LIB sidecar-rss "$rundir")
            [ "$s" -le "$side" ] || side=$s
        fi
    done < <($LIB fr-vms "$W/status.json")
    meta fr_ram_mib "$ram"
    meta fr_rss_kib "$rss_max"
    meta fr_hwm_kib "$hwm_max"
    meta fr_sidecar_rss_kib "$side"
    meta fr_vm_count "${#accels[@]}"
    meta fr_accel "$(printf '%s\n' "${accels[@]}" | sort -u | paste -sd/)"
else
    meta fr_mem_error "status failed: $(lastlines "$W/cmd.err")"
fi
fr_stop >/dev/null 2>&1 || true

# After the memory figures, which read the VMs of the workload above.
log "file-restore: cold list of an LV root (lvm-layouts: a VG of 7 LVs, thin pool, snapshots)"
measure fr_lv_cold "$RUNS" fr_stop "$FR" list "$LV_SRC" /lvm-layouts/lvm/vg-main.1/root --output-format json
has_id_txt() { python3 -c 'import json, sys; assert any(e["text"] == "id.txt" for e in json.load(open(sys.argv[1]))), "no id.txt"' "$1"; }
check fr_lv_cold "the LV lists id.txt" has_id_txt "$W/cmd.out"

# A new VM listed once (untimed), then --key-file: the unlock alone (argon2id in the guest,
# cryptsetup open, the LVM scan of what appeared).
luks_vm() { fr_stop && "$FR" list "$LUKS_SRC" /; }
log "file-restore: LUKS2 unlock (--key-file on a running VM) and the LV inside"
measure fr_luks_unlock "$RUNS" luks_vm "$FR" list "$LUKS_SRC" /luks2-lvm/lvm/cryptvg2/root --key-file "$W/luks.keys" --output-format json
check fr_luks_unlock "the LV inside LUKS lists id.txt" has_id_txt "$W/cmd.out"
fr_stop >/dev/null 2>&1 || true

# ZFS: a cold list of a dataset (OpenZFS loaded into the new VM, the mirror imported
# read-only); neither libguestfs (no ZFS since 1.56) nor a host mount (no ZFS on the host)
# can do it.
if [ -n "$ZFS_SRC" ]; then
    log "file-restore: cold list of a ZFS dataset (the OpenZFS fixture mirror)"
    measure fr_zfs_cold "$RUNS" fr_stop "$FR" list "$ZFS_SRC" /oz-a/zfs/ozpool/data --output-format json
    has_changed() { python3 -c 'import json, sys; assert any(e["text"] == "changed.txt" for e in json.load(open(sys.argv[1]))), "no changed.txt"' "$1"; }
    check fr_zfs_cold "the dataset lists changed.txt" has_changed "$W/cmd.out"
    fr_stop >/dev/null 2>&1 || true
else
    fail fr_zfs_cold "no ZFS fixture pool in $FIXDIR/zfs (tests/fixtures/mkzfs.sh did not build it)"
fi


# ================================================================ host mount (the floor)
# Read-only loop device over the partition's byte range; ext4 mounted without journal
# replay. This parses the image with the host kernel: the unsafe thing file-restore avoids.
loop_attach() {   # loop_attach IMG START SIZE -> prints the device
    losetup -r -f --show -o "$2" --sizelimit "$3" "$1"
}
mount_cold() {
    local dev
    dev=$(loop_attach "$GPT" "$P1_START" "$P1_SIZE") || return 1
    LOOPS+=("$dev")
    mount -o ro,noload "$dev" "$W/mnt-cold" || { losetup -d "$dev"; return 1; }
    MOUNTS+=("$W/mnt-cold")
    ls -la "$W/mnt-cold/" || { umount "$W/mnt-cold"; losetup -d "$dev"; return 1; }
    umount "$W/mnt-cold" || return 1
    losetup -d "$dev"
}
log "host mount: cold (losetup + mount + ls -la + umount + losetup -d)"
measure mnt_cold "$RUNS" - mount_cold
check mnt_cold "the root lists many/" $LIB contains "$W/cmd.out" " many"

mount_dev() {  # mount_dev IMG START SIZE DIR
    local dev
    dev=$(loop_attach "$1" "$2" "$3") || return 1
    LOOPS+=("$dev")
    mount -o ro,noload "$dev" "$4" || return 1
    MOUNTS+=("$4")
}
if mount_dev "$GPT" "$P1_START" "$P1_SIZE" "$W/mnt-gpt" 2>"$W/cmd.err"; then
    log "host mount: warm ls -la of many/ (one untimed warm-up)"
    ls -la "$W/mnt-gpt/many" >/dev/null
    measure mnt_warm "$WARM_RUNS" - ls -la "$W/mnt-gpt/many"
    check mnt_warm "1,000 entries" $LIB count-lines "$W/cmd.out" 1000 3
    log "host mount: tar -cf of many/"
    measure mnt_tar "$RUNS" rm_out tar -cf "$W/out.tar" -C "$W/mnt-gpt" many
    check mnt_tar "1,000 files in the tar" $LIB count-tar "$W/out.tar" 1000
    umount "$W/mnt-gpt"
else
    for k in mnt_warm mnt_tar; do fail "$k" "mount failed: $(lastlines "$W/cmd.err")"; done
fi
cat_big() { cat "$W/mnt-big/big/256M.bin" >"$W/out.bin"; }
if mount_dev "$BIG" "$BIG_START" "$BIG_SIZE" "$W/mnt-big" 2>"$W/cmd.err"; then
    log "host mount: cat of the 256 MiB file"
    measure mnt_extract "$RUNS" rm_out cat_big
    check mnt_extract "sha256 of 256M.bin" sha_is "$W/out.bin" "$BIG_SHA"
    rm_out
    umount "$W/mnt-big"
else
    fail mnt_extract "mount failed: $(lastlines "$W/cmd.err")"
fi

# ================================================================ libguestfs
# The direct backend; TCG unless file-restore's own auto choice found a working KVM.
export LIBGUESTFS_BACKEND=direct
fr_accel=$(awk -F'\t' '$1 == "fr_accel" { print $2 }' "$META")
if [ "$fr_accel" = kvm ]; then
    unset LIBGUESTFS_BACKEND_SETTINGS
    meta lg_accel "kvm (direct backend)"
else
    export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    meta lg_accel "tcg (direct backend, force_tcg)"
fi
LG_A=(--format=raw -a "$GPT" -m /dev/sda1)
LG_B=(--format=raw -a "$BIG" -m /dev/sda)

log "libguestfs: first call (builds or checks the cached supermin appliance; not counted)"
t0=$EPOCHREALTIME
if virt-ls "${LG_A[@]}" / >"$W/cmd.out" 2>"$W/cmd.err"; then
    meta lg_first_call_us "$((${EPOCHREALTIME/./} - ${t0/./}))"
else
    meta lg_first_call_error "$(lastlines "$W/cmd.err")"
    log "  libguestfs first call failed: $(lastlines "$W/cmd.err")"
fi

log "libguestfs: cold list of the same LV root (virt-ls -m /dev/vg-main.1/root)"
measure lg_lv_cold "$RUNS" - virt-ls -l --format=raw -a "$LV_SRC/lvm-layouts.raw" -m /dev/vg-main.1/root /
check lg_lv_cold "the LV lists id.txt" $LIB contains "$W/cmd.out" "id.txt"

log "libguestfs: cold list (virt-ls -l /)"
measure lg_cold "$RUNS" - virt-ls -l "${LG_A[@]}" /
check lg_cold "the root lists many/" $LIB contains "$W/cmd.out" " many"

log "libguestfs: list of many/ (virt-ls -l: a new appliance per call)"
measure lg_warm "$RUNS" - virt-ls -l "${LG_A[@]}" /many
check lg_warm "1,000 entries" $LIB count-lines "$W/cmd.out" 1000 3

# virt-tar-out is `guestfish --ro -i tar-out`; -i needs an installed OS (inspection), which
# the fixture has not, so we make the same tar-out call with the partition mounted by -m.
log "libguestfs: many/ as tar (guestfish tar-out, as virt-tar-out does)"
measure lg_tar "$RUNS" rm_out guestfish --ro "${LG_A[@]}" tar-out /many "$W/out.tar"
check lg_tar "1,000 files in the tar" $LIB count-tar "$W/out.tar" 1000

lg_cat() { virt-cat "${LG_B[@]}" /big/256M.bin >"$W/out.bin"; }
log "libguestfs: virt-cat of the 256 MiB file"
measure lg_extract "$RUNS" rm_out lg_cat
check lg_extract "sha256 of 256M.bin" sha_is "$W/out.bin" "$BIG_SHA"
rm_out

# libguestfs kept running: a `guestfish --listen` server answering `--remote` calls.
gf_listen() {   # gf_listen ARGS... -> sets GF (the server's pid)
    local env
    GF=
    env=$(guestfish --listen --ro "$@" 2>"$W/cmd.err") || return 1
    GF=$(sed -n 's/^GUESTFISH_PID=\([0-9]*\);.*/\1/p' <<<"$env")
    [ -n "$GF" ] || return 1
    GF_PIDS+=("$GF")
}
# gf_stop PID: ends a server we started (the pid is checked to still be a guestfish).
gf_stop() {
    local p
    guestfish --remote="$1" -- exit >/dev/null 2>&1 || true
    sleep 0.5
    if grep -qa guestfish "/proc/$1/cmdline" 2>/dev/null; then kill "$1" 2>/dev/null || true; fi
    for p in "${!GF_PIDS[@]}"; do [ "${GF_PIDS[$p]}" != "$1" ] || unset "GF_PIDS[$p]"; done
}
gf_mem() {      # gf_mem KEY_PREFIX IMG: memory of the appliance qemu that has IMG open
    local q r rss hwm _
    if q=$($LIB qemu-with-file "$2" 2>"$W/cmd.err") && read -r r rss hwm _ _ < <($LIB proc-mem "$q"); then
        meta "${1}_ram_mib" "$r"
        meta "${1}_rss_kib" "$rss"
        meta "${1}_hwm_kib" "$hwm"
    else
        meta "${1}_mem_error" "$(lastlines "$W/cmd.err")"
    fi
}
log "libguestfs: guestfish --listen on gpt.img (ll /many, tar-out)"
t0=$EPOCHREALTIME
if gf_listen "${LG_A[@]}"; then
    meta lgr_start_us "$((${EPOCHREALTIME/./} - ${t0/./}))"
    guestfish --remote="$GF" -- ll /many >/dev/null 2>&1 || true
    measure lgr_warm "$WARM_RUNS" - guestfish --remote="$GF" -- ll /many
    check lgr_warm "1,000 entries" $LIB count-lines "$W/cmd.out" 1000 3
    measure lgr_tar "$RUNS" rm_out guestfish --remote="$GF" -- tar-out /many "$W/out.tar"
    check lgr_tar "1,000 files in the tar" $LIB count-tar "$W/out.tar" 1000
    gf_mem lgr_gpt "$GPT"
    gf_stop "$GF"
else
    for k in lgr_warm lgr_tar; do fail "$k" "guestfish --listen failed: $(lastlines "$W/cmd.err")"; done
fi
log "libguestfs: guestfish --listen on big-ext4.img (download)"
if gf_listen "${LG_B[@]}"; then
    measure lgr_extract "$RUNS" rm_out guestfish --remote="$GF" -- download /big/256M.bin "$W/out.bin"
    check lgr_extract "sha256 of 256M.bin" sha_is "$W/out.bin" "$BIG_SHA"
    rm_out
    gf_mem lgr_big "$BIG"
    gf_stop "$GF"
else
    fail lgr_extract "guestfish --listen failed: $(lastlines "$W/cmd.err")"
fi

# ================================================================ big files
if [ "${BENCH_BIG:-1}" = 1 ]; then
    # shellcheck source=scripts/bench/bigfiles.sh
    source "$ROOT/scripts/bench/bigfiles.sh"
fi

# ================================================================ find and versions
if [ "${BENCH_SEARCH:-1}" = 1 ]; then
    # shellcheck source=scripts/bench/search.sh
    source "$ROOT/scripts/bench/search.sh"
fi

# ---------------------------------------------------------------- report
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta duration_s "$(((${EPOCHREALTIME/./} - START_EPOCH) / 1000000))"
mkdir -p "$(dirname "$OUTFILE")"
python3 "$REPORT" "$SAMPLES" "$META" >"$W/report.md"
# The soak section (scripts/soak.py, `make soak`) is its own run's: keep it.
if [ -f "$OUTFILE" ] && grep -q '<!-- soak:begin -->' "$OUTFILE"; then
    { echo; sed -n '/<!-- soak:begin -->/,/<!-- soak:end -->/p' "$OUTFILE"; } >>"$W/report.md"
fi
cp "$W/report.md" "$OUTFILE.tmp" && mv "$OUTFILE.tmp" "$OUTFILE"
cat "$W/report.md"
log "done in $(((${EPOCHREALTIME/./} - START_EPOCH) / 1000000)) s; written to $OUTFILE"
