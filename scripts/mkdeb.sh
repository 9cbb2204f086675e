#!/usr/bin/env bash
# make deb: builds build/file-restore_<version>_amd64.deb with dpkg-deb from what
# `make build` produced and the checked-in debian/ directory (control template,
# copyright, README.Debian):
#   /usr/bin/file-restore
#   /usr/lib/file-restore/{file-restore-helper,file-restore-keeper,vmlinux,initramfs.img,tools.img,vhost-device-vsock}
#   /usr/share/man/man1/file-restore*.1.gz, bash/zsh/fish completions, /usr/share/doc
# The helper is installed 0755, not setuid (README.Debian says how to enable it).
#
# Usage: scripts/mkdeb.sh BUILD_DIR CARGO_RELEASE_DIR
#   VHOST_DEVICE_VSOCK  the backend binary to ship (default: on PATH, else
#                       ~/.cargo/bin/vhost-device-vsock, as scripts/deps.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: scripts/mkdeb.sh BUILD_DIR CARGO_RELEASE_DIR}
REL=${2:?usage: scripts/mkdeb.sh BUILD_DIR CARGO_RELEASE_DIR}
die() { echo "mkdeb: error: $*" >&2; exit 1; }

for f in "$REL/file-restore" "$REL/file-restore-helper" "$REL/file-restore-keeper" "$BUILD/vmlinux" "$BUILD/initramfs.img" "$BUILD/tools.img" \
         "$BUILD/man/file-restore.1" "$BUILD/completions/file-restore.bash"; do
    [ -s "$f" ] || die "$f is missing: run make build"
done
VSOCK=${VHOST_DEVICE_VSOCK:-$(command -v vhost-device-vsock || echo "${CARGO_HOME:-$HOME/.cargo}/bin/vhost-device-vsock")}
[ -x "$VSOCK" ] || die "vhost-device-vsock not found (set VHOST_DEVICE_VSOCK or run scripts/deps.sh)"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"

VERSION=$("$REL/file-restore" --version | awk '{print $2}')
[[ "$VERSION" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "cannot read the version from file-restore --version"
DEB="$BUILD/file-restore_${VERSION}_amd64.deb"
ROOT="$BUILD/deb/root"
rm -rf "$BUILD/deb" && mkdir -p "$ROOT/DEBIAN"

LIB="$ROOT/usr/lib/file-restore"
DOC="$ROOT/usr/share/doc/file-restore"
install -d -m 0755 "$ROOT/usr/bin" "$LIB" "$ROOT/usr/share/man/man1" "$DOC" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d"
install -s -m 0755 "$REL/file-restore" "$ROOT/usr/bin/file-restore"
install -s -m 0755 "$REL/file-restore-helper" "$LIB/file-restore-helper"
install -s -m 0755 "$REL/file-restore-keeper" "$LIB/file-restore-keeper"
install -s -m 0755 "$VSOCK" "$LIB/vhost-device-vsock"
install -m 0644 "$BUILD/vmlinux" "$LIB/vmlinux"
install -m 0644 "$BUILD/initramfs.img" "$LIB/initramfs.img"
install -m 0644 "$BUILD/tools.img" "$LIB/tools.img"
for page in "$BUILD"/man/*.1; do
    gzip -9n -c "$page" > "$ROOT/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$BUILD/completions/file-restore.bash" "$ROOT/usr/share/bash-completion/completions/file-restore"
install -m 0644 "$BUILD/completions/_file-restore" "$ROOT/usr/share/zsh/vendor-completions/_file-restore"
install -m 0644 "$BUILD/completions/file-restore.fish" "$ROOT/usr/share/fish/vendor_completions.d/file-restore.fish"
install -m 0644 debian/copyright "$DOC/copyright"
install -m 0644 debian/README.Debian "$DOC/README.Debian"
install -m 0644 docs/ARCHITECTURE.md docs/API.md "$DOC/"
chmod 0644 "$ROOT"/usr/share/man/man1/*.gz

# The newest glibc symbol version any shipped binary needs.
LIBC=$(for b in "$ROOT/usr/bin/file-restore" "$LIB/file-restore-helper" "$LIB/file-restore-keeper" "$LIB/vhost-device-vsock"; do
           objdump -T "$b" | grep -o 'GLIBC_[0-9][0-9.]*' ; done | sed 's/GLIBC_//' | sort -uV | tail -n 1)
[ -n "$LIBC" ] || die "cannot find the glibc version the binaries need (objdump)"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$SIZE/" -e "s/@LIBC_VERSION@/$LIBC/" \
    debian/control.in > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
rm -rf "$BUILD/deb"
echo "mkdeb: wrote $DEB ($(du -h "$DEB" | cut -f1); Depends: $(dpkg-deb -f "$DEB" Depends))"
