# Which Debian release this machine runs and what that means for the build, and where its
# Debian mirror is. Sourced by scripts/deps.sh, scripts/build-kernel.sh and
# scripts/fresh.sh, so all agree on the kernel source and the mirror.
#
# Supported: Debian 12 (bookworm) and Debian 13 (trixie). Each ships one kernel source
# package; the guest kernel is built from it (docs/KERNEL.md):
#   bookworm  linux-source-6.1   (6.1.x)
#   trixie    linux-source-6.12  (6.12.x)
# FILE_RESTORE_KERNEL_SOURCE=linux-source-X.Y overrides the choice (e.g. a backported
# kernel source); kernel/file-restore.config must then survive that version's olddefconfig.

# The release's code name (bookworm, trixie, ...), from /etc/os-release.
distro_codename() {
    local VERSION_CODENAME=
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && . /etc/os-release
    echo "${VERSION_CODENAME:-unknown}"
}

# The kernel source package for this release, or a message on stderr and status 1.
kernel_source_package() {
    if [ -n "${FILE_RESTORE_KERNEL_SOURCE:-}" ]; then
        echo "$FILE_RESTORE_KERNEL_SOURCE"
        return 0
    fi
    case "$(distro_codename)" in
        bookworm) echo linux-source-6.1 ;;
        trixie) echo linux-source-6.12 ;;
        *)
            echo "this is $(distro_codename), not Debian 12 (bookworm) or 13 (trixie): set" \
                "FILE_RESTORE_KERNEL_SOURCE=linux-source-X.Y to the kernel source package to build from" >&2
            return 1
            ;;
    esac
}

# The machine's own apt entry for SUITE: prints "URI SIGNED-BY" (SIGNED-BY may be empty),
# from a deb822 .sources stanza or a one-line entry, for a source file of ours that
# repeats both (apt refuses two entries for one URI with different Signed-By values).
debian_source_of() {
    local suite=$1 f found
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        found=$(awk -v suite="$suite" '
            function flush() {
                if (deb && hit && uri != "") { print uri, signed; done = 1; exit }
                deb = 0; hit = 0; uri = ""; signed = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
            /^URIs:/ { uri = $2 }
            /^Signed-By:/ { signed = $2 }
            END { if (!done) flush() }
        ' "$f")
        [ -z "$found" ] || { echo "$found"; return 0; }
    done
    # One-line format: deb [signed-by=K ...] URI SUITE COMPONENTS...
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$suite" '
        $1 != "deb" { next }
        {
            signed = ""; i = 2
            if ($2 ~ /^\[/) {
                for (; i <= NF; i++) {
                    o = $i; gsub(/[][]/, "", o)
                    if (o ~ /^signed-by=/) signed = substr(o, 11)
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            if ($(i + 1) == suite) { print $i, signed; exit }
        }')
    [ -n "$found" ] && echo "$found"
}
