#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time (`make fuzz`).
#
# Every target starts from its checked-in seeds (fuzz/seeds/TARGET, read only) and a
# scratch corpus (fuzz/corpus/TARGET, not checked in, kept between runs). A crash stops
# the run: libFuzzer leaves the input in fuzz/artifacts/TARGET/; copy it to
# fuzz/seeds/TARGET/regress-NAME with the fix, so the stable replay in `make test`
# (fuzz-checks/tests/replay.rs) keeps checking it.
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: all targets)
#   FUZZ_SECONDS=N   seconds per target (default 60)
# Needs the nightly toolchain and cargo-fuzz (scripts/deps.sh --fuzz installs cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(fsmagic api_path unpack image_header)
CARGO=${CARGO:-cargo}

# Without -O cargo-fuzz builds optimized code with debug assertions and overflow checks.
$CARGO +nightly fuzz build

# The unpack and image targets write a sandbox per input: on tmpfs, fsync is free.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/last-run.log"
    echo "fuzz: $t for ${SECONDS_PER_TARGET} s..." >&2
    if ! $CARGO +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: target $t FAILED (log: $log, input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    stat() { sed -n "s/^stat::$1: *//p" "$log"; }
    summary+=("$(printf '%-13s %6s s %10s execs %8s exec/s %5s new units, corpus %s' "$t" \
        "$SECONDS_PER_TARGET" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
        "$(stat new_units_added)" "$(find "fuzz/corpus/$t" -type f | wc -l)")")
done
printf '%s\n' "${summary[@]}"
