#!/usr/bin/env bash
# A brand-new machine, recreated: clean Debian roots (debootstrap), in which the project's
# own set-up runs as it would for a new user. CI runs on a developer machine where
# everything was installed long ago, so it cannot see a missing install step; this can.
#
#   scripts/fresh.sh test [ROOT...]   scripts/deps.sh in a fresh copy of each ROOT (chroot),
#                                     then: every command deps.sh --list names is there and
#                                     runs, the kernel source of that release is there,
#                                     QEMU's two packages agree, the guest's OpenZFS packages
#                                     download and unpack, and a second deps.sh run is
#                                     silent. `make fresh-test`, run by .ci/run. ~1-2 min a
#                                     root with the roots cached.
#   scripts/fresh.sh demo ROOT        the whole `make demo` (deps, guest kernel, build, demo)
#                                     on a clean clone of HEAD in a fresh copy of ROOT, then
#                                     the QEMU subset of the e2e suite there (see below).
#                                     `make fresh-demo DIST=ROOT`; not in CI (~15-20 min).
#
# ROOTs (default for test: all three):
#   bookworm        Debian 12 as our machine image has it: qemu-utils 1:10.x from
#                   bookworm-backports preinstalled (Breaks Debian 12's qemu-system-common),
#                   no backports source. The package is the image's own .deb where
#                   FILE_RESTORE_FRESH_QEMU_UTILS names it (or ../shared/fresh-machine/ has
#                   it), else the current one from bookworm-backports.
#   bookworm-plain  Debian 12 as debootstrap makes it.
#   trixie          Debian 13 as debootstrap makes it.
#
# Each root is `debootstrap --variant=minbase` from the mirror of this machine's own apt
# sources, made once and cached in ${FILE_RESTORE_CACHE:-~/.cache/file-restore}/fresh/
# (~1 min each, with network), with the downloaded packages kept beside it so reruns do not
# download again; every run works on a fresh copy and removes it. Rust comes from this
# machine's toolchain (~/.rustup bind-mounted read-only), as the README's prerequisite says:
# `test` also mounts ~/.cargo read-only (so deps.sh finds vhost-device-vsock there), `demo`
# gives the root a CARGO_HOME of its own with only rustup's proxies, so deps.sh builds
# vhost-device-vsock as on a new machine.
#
# Options: --deps FILE  run FILE instead of scripts/deps.sh (to show an old deps.sh fail)
#          --keep       leave the root copy and its mounts for a look (prints how to clean)
# Needs root (debootstrap, chroot, mounts) and the Debian mirror.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/distro.sh
. "$HERE/distro.sh"

die() { echo "fresh: error: $*" >&2; exit 1; }
say() { echo "fresh: $*"; }
usage() { sed -n '2,40p' "$0"; exit "${1:-0}"; }

MODE=${1:-}
[ -n "$MODE" ] || usage 2
shift
DEPS="$REPO/scripts/deps.sh"
KEEP=0
ROOTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --deps) DEPS=$(realpath "${2:?--deps needs a file}"); shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage ;;
        bookworm|bookworm-plain|trixie) ROOTS+=("$1") ;;
        *) die "unknown argument: $1 (roots: bookworm, bookworm-plain, trixie; try --help)" ;;
    esac
    shift
done
case "$MODE" in
    test) [ "${#ROOTS[@]}" -gt 0 ] || ROOTS=(bookworm bookworm-plain trixie) ;;
    demo) [ "${#ROOTS[@]}" -eq 1 ] || die "demo takes one root: bookworm, bookworm-plain or trixie" ;;
    -h|--help) usage ;;
    *) die "unknown mode: $MODE (test or demo)" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for tool in debootstrap chroot mount tar git; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/deps.sh"
done
RUSTUP=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
[ -d "$RUSTUP/toolchains" ] && [ -x "$CARGO_DIR/bin/rustup" ] ||
    die "no rustup toolchain in $RUSTUP and $CARGO_DIR (the README's prerequisite)"

CACHE=${FILE_RESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/file-restore}/fresh
mkdir -p "$CACHE"
# The recipe's version: a change to how roots are made bumps it, so old roots are remade.
RECIPE=2

MIRROR_SRC=$(debian_source_of bookworm || debian_source_of trixie) ||
    die "no Debian entry in this machine's apt sources to take the mirror from"
read -r MIRROR KEYRING <<<"$MIRROR_SRC"
[ -n "$KEYRING" ] || KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SECURITY=$(debian_source_of bookworm-security || debian_source_of trixie-security || true)
SECURITY=${SECURITY%% *}

dist_of() { case "$1" in trixie) echo trixie ;; *) echo bookworm ;; esac; }

# The image's qemu-utils backport: a file given, or the one shared with the team.
image_qemu_utils() {
    local f=${FILE_RESTORE_FRESH_QEMU_UTILS:-}
    if [ -z "$f" ]; then
        f=$(compgen -G "$REPO/../shared/fresh-machine/qemu-utils_*~bpo12*_amd64.deb" | head -n 1 || true)
    fi
    echo "$f"
}

# in_root DIR CMD...: runs CMD in the chroot with a clean environment.
in_root() {
    local dir=$1
    shift
    chroot "$dir" /usr/bin/env -i PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# Makes (once) the cached root NAME; prints its directory.
base_root() {
    local name=$1 dist dir tmp qu
    dist=$(dist_of "$name")
    dir="$CACHE/$name-r$RECIPE"
    if [ -f "$dir/.ready" ]; then echo "$dir"; return 0; fi
    tmp="$dir.tmp"
    rm -rf --one-file-system "$tmp"
    mkdir -p "$tmp" "$CACHE/archives-$name"
    say "making the $name root (debootstrap --variant=minbase $dist from $MIRROR, ~1 min)" >&2
    # make: the README's set-up commands are make targets (its prerequisites: root, make,
    # rustup's toolchain); everything else is deps.sh's job.
    if ! debootstrap --variant=minbase --include=make --cache-dir="$CACHE/archives-$name" "$dist" "$tmp" "$MIRROR" \
            >"$CACHE/$name.debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/$name.debootstrap.log" >&2
        die "debootstrap $dist failed (log: $CACHE/$name.debootstrap.log)"
    fi
    # The machine's apt sources, for this release: the mirror and keyring of this machine's.
    rm -f "$tmp/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
            "$MIRROR" "$dist" "$dist" "$KEYRING"
        if [ -n "$SECURITY" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
                "$SECURITY" "$dist" "$KEYRING"
        fi
    } >"$tmp/etc/apt/sources.list.d/debian.sources"
    # The test roots' dpkg does not fsync (a root is thrown away after one run); this
    # halves the time deps.sh takes in them and changes nothing it decides.
    echo force-unsafe-io >"$tmp/etc/dpkg/dpkg.cfg.d/file-restore-fresh-unsafe-io"
    if [ "$name" = bookworm ]; then
        with_mounts "$tmp" "$name" install_image_qemu_utils "$tmp"
    fi
    in_root "$tmp" apt-get clean
    touch "$tmp/.ready"
    mv "$tmp" "$dir"
    echo "$dir"
}

# The bookworm root gets the image's qemu-utils backport, and no backports source.
install_image_qemu_utils() {
    local dir=$1 deb
    deb=$(image_qemu_utils)
    in_root "$dir" apt-get update -qq >/dev/null
    if [ -n "$deb" ]; then
        say "installing the image's $(basename "$deb") in the bookworm root" >&2
        cp "$deb" "$dir/tmp/"
        in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "/tmp/$(basename "$deb")" >"$CACHE/bookworm.qemu-utils.log" 2>&1 ||
            { tail -n 20 "$CACHE/bookworm.qemu-utils.log" >&2; die "installing $deb failed"; }
        rm -f "$dir/tmp/$(basename "$deb")"
    else
        say "no image qemu-utils .deb here: taking the current one from bookworm-backports" >&2
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
            "$MIRROR" "$KEYRING" >"$dir/etc/apt/sources.list.d/tmp-backports.sources"
        in_root "$dir" apt-get update -qq >/dev/null
        in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports qemu-utils >"$CACHE/bookworm.qemu-utils.log" 2>&1 ||
            { tail -n 20 "$CACHE/bookworm.qemu-utils.log" >&2; die "installing qemu-utils from bookworm-backports failed"; }
        rm -f "$dir/etc/apt/sources.list.d/tmp-backports.sources"
        in_root "$dir" apt-get update -qq >/dev/null
    fi
    local v
    v=$(in_root "$dir" dpkg-query -W -f='${Version}' qemu-utils)
    case "$v" in *~bpo12*) ;; *) die "the bookworm root got qemu-utils $v, not a backport" ;; esac
}

MOUNTED=()
# with_mounts DIR NAME CMD...: CMD with /proc, /sys, /dev and root NAME's apt archive
# cache mounted in DIR (unmounted afterwards, also on failure).
with_mounts() {
    local dir=$1 name=$2 lock
    shift 2
    # Two runs on one root name (a fresh-test and a fresh-demo) share its package cache,
    # and apt locks that for a whole install: the second run waits for the first.
    exec {lock}>"$CACHE/archives-$name.lock"
    if ! flock -n "$lock"; then
        say "[$name] another run uses this root's package cache; waiting for it" >&2
        flock "$lock"
    fi
    mount -t proc proc "$dir/proc"
    mount -t sysfs sysfs "$dir/sys"
    mount --rbind /dev "$dir/dev" && mount --make-rslave "$dir/dev"
    mkdir -p "$CACHE/archives-$name" "$dir/var/cache/apt/archives"
    mount --bind "$CACHE/archives-$name" "$dir/var/cache/apt/archives"
    MOUNTED+=("$dir/var/cache/apt/archives" "$dir/dev" "$dir/sys" "$dir/proc")
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    local rc=0
    "$@" || rc=$?
    unmount_all
    exec {lock}>&-
    return "$rc"
}
unmount_all() {
    local m
    for m in "${MOUNTED[@]}"; do
        umount -R "$m" 2>/dev/null || umount -lR "$m" 2>/dev/null || true
    done
    MOUNTED=()
}

WORK=
cleanup() {
    unmount_all
    [ -n "$WORK" ] || return 0
    local top
    top=$(dirname "$WORK")
    if [ "$KEEP" = 1 ]; then
        say "kept $WORK (a tmpfs: umount $top && rmdir $top when done)"
        return 0
    fi
    umount "$top" 2>/dev/null || umount -l "$top" 2>/dev/null || true
    rmdir "$top" 2>/dev/null || true
    WORK=
}
trap cleanup EXIT

# A fresh copy of root NAME (made with base_root before) in $WORK, on a tmpfs of its own:
# a root grows to ~3 GB and is thrown away, so it never needs the disk.
fresh_copy() {
    local top
    top=$(mktemp -d /var/tmp/file-restore-fresh.XXXXXX)
    mount -t tmpfs -o size=10g,mode=0755 "fresh-$1" "$top"
    WORK=$top/$1
    cp -a "$CACHE/$1-r$RECIPE" "$WORK"
    rm -f "$WORK/.ready"
}

bind_ro() {
    mkdir -p "$2"
    mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"
    MOUNTED=("$2" "${MOUNTED[@]}")
}

# In a root with mounts: deps.sh, then the checks. Prints a summary line; status 1 on failure.
check_root() {
    local name=$1 dir=$WORK out start took ok=1 need cmd pkg missing=() ksrc
    bind_ro "$RUSTUP" "$dir/root/.rustup"
    bind_ro "$CARGO_DIR" "$dir/root/.cargo"
    bind_ro "$REPO" "$dir/src"
    mkdir -p "$dir/tmp/deps"
    cp "$DEPS" "$dir/tmp/deps/deps.sh"
    cp "$REPO/scripts/distro.sh" "$dir/tmp/deps/distro.sh"
    say "[$name] scripts/deps.sh in a fresh $name root"
    start=$(date +%s)
    if ! in_root "$dir" bash /tmp/deps/deps.sh 2>&1 | tee "$dir/tmp/deps.out" | sed "s/^/  [$name] /"; then
        ok=0
    fi
    took=$(( $(date +%s) - start ))
    grep -q 'deps.sh: error' "$dir/tmp/deps.out" && ok=0
    if [ "$ok" = 0 ]; then
        echo "FAILED [$name]: deps.sh failed after $took s"
        return 1
    fi
    # Every need, checked here again (deps.sh could be wrong about itself).
    while read -r need pkg; do
        if [[ $need == /* ]]; then
            in_root "$dir" bash -c "compgen -G '$need' >/dev/null" || missing+=("$need ($pkg)")
        else
            in_root "$dir" bash -c "command -v '$need' >/dev/null" || missing+=("$need ($pkg)")
        fi
    done < <(in_root "$dir" bash /src/scripts/deps.sh --list)
    ksrc=$(in_root "$dir" bash -c '. /src/scripts/distro.sh; kernel_source_package') || missing+=("a kernel source package")
    in_root "$dir" test -f "/usr/src/$ksrc.tar.xz" || missing+=("/usr/src/$ksrc.tar.xz")
    # The tools must run, not only exist (a half-removed QEMU would show here).
    for cmd in "qemu-system-x86_64 --version" "qemu-img --version" "qemu-nbd --version" \
               "guestfish --version" "vhost-device-vsock --help" "cryptsetup --version" \
               "lvm version" "mdadm --version" "chromedriver --version"; do
        in_root "$dir" $cmd >/dev/null 2>&1 || missing+=("'$cmd' does not run")
    done
    # The guest's OpenZFS comes from the release's contrib, which deps.sh adds: its
    # packages must download and unpack there (scripts/zfs-debs.sh, as build-kernel.sh
    # and build-tools-image.sh call it), with a configure script and zpool/zfs.
    local zfs
    zfs=$(in_root "$dir" env FILE_RESTORE_CACHE=/tmp/fr-cache bash /src/scripts/zfs-debs.sh 2>&1) ||
        missing+=("OpenZFS packages: $(tail -n 2 <<<"$zfs")")
    in_root "$dir" bash -c 'd=$(FILE_RESTORE_CACHE=/tmp/fr-cache bash /src/scripts/zfs-debs.sh) &&
        test -x "$d/src/configure" && test -x "$d/root/sbin/zpool" && test -x "$d/root/sbin/zfs"' ||
        missing+=("OpenZFS source or zpool/zfs not unpacked")
    local vs vu
    vs=$(in_root "$dir" dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
    vu=$(in_root "$dir" dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    [ -n "$vs" ] && [ "$vs" = "$vu" ] || missing+=("qemu-system-x86 $vs and qemu-utils $vu differ")
    # Idempotent: a second run says nothing and installs nothing.
    out=$(in_root "$dir" bash /tmp/deps/deps.sh 2>&1) || missing+=("the second deps.sh run failed: $out")
    [ -z "$out" ] || missing+=("the second deps.sh run printed: $out")
    if [ "${#missing[@]}" -gt 0 ]; then
        printf '  [%s] missing: %s\n' "$name" "${missing[@]}"
        echo "FAILED [$name]: deps.sh ran in $took s, but ${#missing[@]} thing(s) are missing"
        return 1
    fi
    echo "ok [$name]: deps.sh in $took s; QEMU $vs; kernel source $ksrc; OpenZFS $(in_root "$dir" cat "$(tail -n 1 <<<"$zfs")/VERSION" 2>/dev/null); a second run is silent"
}

# All roots at once (each in its own tmpfs; dpkg unpacking is mostly waiting), then one
# line per root and the count.
run_test() {
    local name failed=0 passed=0 pids=() i
    for name in "${ROOTS[@]}"; do base_root "$name" >/dev/null; done
    for name in "${ROOTS[@]}"; do
        (
            trap cleanup EXIT
            fresh_copy "$name"
            with_mounts "$WORK" "$name" check_root "$name" >"$CACHE/$name.test.log" 2>&1
        ) &
        pids+=($!)
    done
    for i in "${!ROOTS[@]}"; do
        name=${ROOTS[$i]}
        if wait "${pids[$i]}"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
        cat "$CACHE/$name.test.log"
    done
    echo "fresh-test: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}

# The cases that run against the root's QEMU after the demo (its version differs from the
# main suite's: QEMU 10.0.13 on Debian 13, 7.2 on a plain Debian 12): a cold list, every
# bucket listed, files extracted and tar/zip of a qcow2 (e2e group gpt.qcow2), boot, reuse,
# status and stop (vm_lifecycle), and a LUKS unlock through serve's API (web). The stack
# fixtures are not built (NO_STACKS=1: they need the libguestfs appliance, ~5 min).
# FILE_RESTORE_FRESH_E2E="E2E-FILTERS|WEB-FILTERS" overrides; "none" skips.
E2E_SUBSET=${FILE_RESTORE_FRESH_E2E:-gpt.qcow2 vm_lifecycle|luks::api_unlock}

demo_root() {
    local name=$1 dir=$WORK start
    bind_ro "$RUSTUP" "$dir/root/.rustup"
    # A CARGO_HOME of its own with only rustup's proxies: cargo and deps.sh download and
    # build as on a new machine.
    mkdir -p "$dir/root/.cargo/bin"
    cp -a "$CARGO_DIR/bin/rustup" "$dir/root/.cargo/bin/"
    local p
    for p in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
        ln -sf rustup "$dir/root/.cargo/bin/$p"
    done
    # This machine's CA bundle, for a network that intercepts TLS (ours does: cargo's
    # downloads from crates.io fail in a root with Debian's bundle alone); ca-certificates,
    # which deps.sh installs, adds it to the root's bundle. A real new machine has its own.
    mkdir -p "$dir/usr/local/share/ca-certificates"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/usr/local/share/ca-certificates/file-restore-host-bundle.crt"
    git clone -q --no-local "$REPO" "$dir/root/file-restore"
    say "[$name] make demo on a clean clone of $(git -C "$REPO" rev-parse --short HEAD) (deps, kernel, build, demo)"
    start=$(date +%s)
    if ! in_root "$dir" bash -c 'cd /root/file-restore && make demo' 2>&1 | sed "s/^/  [$name] /"; then
        echo "FAILED [$name]: make demo after $(( $(date +%s) - start )) s"
        return 1
    fi
    local took=$(( $(date +%s) - start )) qemu
    qemu=$(in_root "$dir" qemu-system-x86_64 --version | head -n 1)
    say "[$name] make demo passed in $took s ($qemu)"
    # Cold starts of the demo image on this root's QEMU and guest kernel: the whole
    # command, and the guest's own boot line (uptime at /init and when listening).
    local i
    for i in 1 2 3; do
        in_root "$dir" bash -c 'cd /root/file-restore && export FILE_RESTORE_RUNTIME_DIR=/tmp/fresh-boot &&
            target/release/file-restore stop --all >/dev/null 2>&1
            s=$(date +%s%N)
            target/release/file-restore --accel tcg list /tmp/file-restore-demo/demo-vm.qcow2 /demo-vm/part/2 >/dev/null || exit 1
            e=$(date +%s%N)
            echo "cold list $(( (e - s) / 1000000 )) ms; $(grep -h "boot: init" /tmp/fresh-boot/vms/vm-*/console.log | tail -n 1)"
            target/release/file-restore stop --all >/dev/null 2>&1' 2>&1 | sed "s/^/  [$name] /"
    done
    if [ "$E2E_SUBSET" != none ]; then
        local e2e=${E2E_SUBSET%%|*} web=${E2E_SUBSET#*|}
        say "[$name] e2e subset on $qemu: e2e $e2e; web $web"
        start=$(date +%s)
        if ! in_root "$dir" bash -c "cd /root/file-restore && export NO_STACKS=1 &&
                cargo test --release -p file-restore-tests --test e2e -- $e2e &&
                cargo test --release -p file-restore-tests --test web -- $web" 2>&1 |
                sed "s/^/  [$name] /"; then
            echo "FAILED [$name]: the e2e subset on $qemu"
            return 1
        fi
        say "[$name] e2e subset passed in $(( $(date +%s) - start )) s on $qemu"
    fi
    echo "ok [$name]: make demo in $took s on $qemu"
}

case "$MODE" in
    test) run_test ;;
    demo)
        base_root "${ROOTS[0]}" >/dev/null
        fresh_copy "${ROOTS[0]}"
        with_mounts "$WORK" "${ROOTS[0]}" demo_root "${ROOTS[0]}"
        ;;
esac
