# file-restore: the two set-up commands are `make demo` and `make test`.
# Both install what they need first (scripts/deps.sh, idempotent).

CARGO        ?= cargo
BUILD        := build
GUEST_TARGET := x86_64-unknown-linux-gnu
PREFIX       ?= /usr/local
# Where cargo builds (CARGO_TARGET_DIR when set, as cargo itself does).
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),target)
REL          := $(TARGET_DIR)/release

.PHONY: all deps build guest kernel initramfs tools docs install bench soak lint test unit-test demo clean deb deb-test fuzz fresh-test fresh-demo

all: build

deps:
	@bash scripts/deps.sh

# The guest daemon is a static (glibc crt-static) binary: it runs as /init of
# the initramfs. RUSTFLAGS apply only to the --target build, so host binaries
# are not rebuilt static.
guest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p restore-daemon --target $(GUEST_TARGET)
	@mkdir -p $(BUILD)
	install -s -m 0755 $(TARGET_DIR)/$(GUEST_TARGET)/release/restore-daemon $(BUILD)/restore-daemon

# The guest kernel (kernel/file-restore.config on tinyconfig, from Debian's
# linux-source package): built once per (source version, fragment + patches)
# into a cache outside the work tree (~4-6 min on 2 cores), copied to
# $(BUILD)/vmlinux. See docs/KERNEL.md.
kernel:
	@bash scripts/build-kernel.sh $(BUILD)

# The initramfs (static daemon + config) next to the kernel, and boot.json.
initramfs: guest kernel
	$(CARGO) build --release -p file-restore-initramfs
	$(REL)/file-restore-mkinitramfs --daemon $(BUILD)/restore-daemon --kernel $(BUILD)/vmlinux --out $(BUILD)

# The storage-tools image next to the initramfs: Debian's lvm, mdadm, cryptsetup,
# OpenZFS's zpool/zfs and modules (built with the kernel) and their libraries on an
# uncompressed squashfs the guest mounts only when a disk holds LVM, md, LUKS or ZFS
# (scripts/build-tools-image.sh says why a disk).
tools: kernel
	@bash scripts/build-tools-image.sh $(BUILD)

build: initramfs tools
	$(CARGO) build --release --workspace
	@$(MAKE) --no-print-directory docs

# Man pages (build/man/file-restore.1 and one per subcommand, clap_mangen) and
# shell completions (build/completions/), both generated from the CLI's clap
# definition.
docs:
	@mkdir -p $(BUILD)/man $(BUILD)/completions
	$(REL)/file-restore-man $(BUILD)/man >/dev/null
	$(REL)/file-restore completions bash > $(BUILD)/completions/file-restore.bash
	$(REL)/file-restore completions zsh > $(BUILD)/completions/_file-restore
	$(REL)/file-restore completions fish > $(BUILD)/completions/file-restore.fish

# Installs the CLI, the helper, the boot files (root-owned: a setuid helper
# accepts only root-controlled boot files), vhost-device-vsock when it is found,
# the man pages and the completions. The CLI finds its files in
# $(PREFIX)/lib/file-restore. `chmod 4755` on the helper enables kernel vsock
# for ordinary users where /dev/vhost-vsock exists; it works without.
VHOST_DEVICE_VSOCK ?= $(or $(shell command -v vhost-device-vsock),$(wildcard $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/vhost-device-vsock))
install: build
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/file-restore $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	    $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(REL)/file-restore $(DESTDIR)$(PREFIX)/bin/file-restore
	install -m 0755 $(REL)/file-restore-helper $(DESTDIR)$(PREFIX)/lib/file-restore/file-restore-helper
	install -m 0755 $(REL)/file-restore-keeper $(DESTDIR)$(PREFIX)/lib/file-restore/file-restore-keeper
	install -m 0644 $(BUILD)/initramfs.img $(DESTDIR)$(PREFIX)/lib/file-restore/initramfs.img
	install -m 0644 $(BUILD)/vmlinux $(DESTDIR)$(PREFIX)/lib/file-restore/vmlinux
	install -m 0644 $(BUILD)/tools.img $(DESTDIR)$(PREFIX)/lib/file-restore/tools.img
	$(if $(VHOST_DEVICE_VSOCK),install -m 0755 $(VHOST_DEVICE_VSOCK) $(DESTDIR)$(PREFIX)/lib/file-restore/vhost-device-vsock,@echo "install: vhost-device-vsock not found; kernel vsock only unless it is on PATH")
	install -m 0644 $(BUILD)/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 $(BUILD)/completions/file-restore.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/file-restore
	install -m 0644 $(BUILD)/completions/_file-restore $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_file-restore
	install -m 0644 $(BUILD)/completions/file-restore.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/file-restore.fish

# build/file-restore_<version>_amd64.deb (dpkg-deb, debian/control.in); see
# scripts/mkdeb.sh for its contents.
deb: build
	VHOST_DEVICE_VSOCK=$(VHOST_DEVICE_VSOCK) bash scripts/mkdeb.sh $(BUILD) $(REL)

# Installs the .deb into a clean Debian 12 root (debootstrap, cached) with apt and
# runs `file-restore list` on a demo image in it (a VM under TCG). Needs root and
# network; minutes the first time. Not part of `make test`.
deb-test: deb
	bash scripts/deb-test.sh $(BUILD)/file-restore_$$($(REL)/file-restore --version | awk '{print $$2}')_amd64.deb

# A brand-new machine, recreated (scripts/fresh.sh): scripts/deps.sh in fresh debootstrap'd
# roots of Debian 12 as our machine image has it (a backported qemu-utils), plain Debian 12
# and Debian 13, then a check that everything it should install is there and runs. Run by
# .ci/run; ~1-2 min a root with the roots cached (the first time ~1 min more each).
fresh-test: deps
	@bash scripts/fresh.sh test

# The whole `make demo` (deps, guest kernel, build, demo) on a clean clone of HEAD in a
# fresh root: DIST=bookworm (our machine image), bookworm-plain or trixie (Debian 13).
# Then the QEMU subset of the e2e suite on that root's QEMU. Not in CI: ~15-20 min.
DIST ?= bookworm
fresh-demo: deps
	@bash scripts/fresh.sh demo $(DIST)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps build lint
	$(CARGO) test --workspace -- --test-threads=2

# Cold start, warm list, extraction throughput and memory, side by side with
# libguestfs and a direct host mount; medians of >= 5 runs. Writes
# docs/BENCHMARKS.md. Takes ~25 min (8 of them the big files;
# BENCH_BIG=0 skips those); run on a quiet machine.
bench: build
	@bash scripts/bench.sh

# N cold starts in a row (default 200, SOAK_RUNS=N): failures, starts that needed a
# fresh VM, p50/p99/max; writes the Soak section of docs/BENCHMARKS.md. ~4 min.
soak: build
	@python3 scripts/soak.py

# Coverage-guided fuzzing (cargo-fuzz, nightly, libFuzzer) of the fsmagic detection,
# the API path grammar, the tar unpacker and the image header checks, FUZZ_SECONDS
# (default 60) per target; see fuzz/README.md. `make test` only replays the seeds,
# on stable (building the libFuzzer targets takes minutes).
FUZZ_SECONDS ?= 60
fuzz:
	@bash scripts/deps.sh --fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

demo: deps build
	@bash scripts/demo.sh
