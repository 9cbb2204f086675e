# file-restore: the two set-up commands are `make demo` and `make test`.
# Both install what they need first (scripts/deps.sh, idempotent).

CARGO        ?= cargo
BUILD        := build
GUEST_TARGET := x86_64-unknown-linux-gnu
PREFIX       ?= /usr/local

.PHONY: all deps build guest kernel initramfs install bench soak lint test unit-test demo install clean fuzz

all: build

deps:
	@bash scripts/deps.sh

# The guest daemon is a static (glibc crt-static) binary: it runs as /init of
# the initramfs. RUSTFLAGS apply only to the --target build, so host binaries
# are not rebuilt static.
guest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p restore-daemon --target $(GUEST_TARGET)
	@mkdir -p $(BUILD)
	install -s -m 0755 target/$(GUEST_TARGET)/release/restore-daemon $(BUILD)/restore-daemon

# The guest kernel (kernel/file-restore.config on tinyconfig, from Debian's
# linux-source package): built once per (source version, fragment + patches)
# into a cache outside the work tree (~4-6 min on 2 cores), copied to
# $(BUILD)/vmlinux. See docs/KERNEL.md.
kernel:
	@bash scripts/build-kernel.sh $(BUILD)

# The initramfs (static daemon + config) next to the kernel, and boot.json.
initramfs: guest kernel
	$(CARGO) build --release -p file-restore-initramfs
	target/release/file-restore-mkinitramfs --daemon $(BUILD)/restore-daemon --kernel $(BUILD)/vmlinux --out $(BUILD)

build: initramfs
	$(CARGO) build --release --workspace

# Installs the CLI, the helper and the boot files (root-owned: a setuid
# helper accepts only root-controlled boot files). The CLI finds them in
# $(PREFIX)/lib/file-restore. `chmod 4755` on the helper enables kernel vsock
# for ordinary users where /dev/vhost-vsock exists; it works without.
install: build
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/file-restore
	install -m 0755 target/release/file-restore $(DESTDIR)$(PREFIX)/bin/file-restore
	install -m 0755 target/release/file-restore-helper $(DESTDIR)$(PREFIX)/lib/file-restore/file-restore-helper
	install -m 0644 $(BUILD)/initramfs.img $(DESTDIR)$(PREFIX)/lib/file-restore/initramfs.img
	install -m 0644 $(BUILD)/vmlinux $(DESTDIR)$(PREFIX)/lib/file-restore/vmlinux

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps build lint
	$(CARGO) test --workspace -- --test-threads=2

# Cold start, warm list, extraction throughput and memory, side by side with
# libguestfs and a direct host mount; medians of >= 5 runs. Writes
# docs/BENCHMARKS.md. Takes ~8 min; run on a quiet machine.
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
