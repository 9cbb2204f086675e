#!/usr/bin/env python3
"""Turns the raw samples of scripts/bench.sh into docs/BENCHMARKS.md (markdown on stdout).

usage: report.py SAMPLES.tsv META.tsv

SAMPLES: "KEY<TAB>microseconds" per run, or "KEY<TAB>FAIL<TAB>reason".
META:    "KEY<TAB>value" (machine, memory figures, output checks, ...).
Every figure is the median of its runs with min-max; nothing here is typed in by hand.
"""
import statistics
import sys
from collections import defaultdict

TARGET_COLD_S = 1.0
TARGET_FIRST_S = 1.2
TARGET_WARM_S = 0.150
TARGET_MBPS = 30.0
TARGET_BIG_MBPS = 500.0


def load(samples_path, meta_path):
    samples, fails = defaultdict(list), {}
    with open(samples_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[1] == "FAIL":
                fails[parts[0]] = parts[2]
            elif len(parts) == 2:
                samples[parts[0]].append(int(parts[1]) / 1e6)
    meta = {}
    with open(meta_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    return samples, fails, meta


class Notes:
    """Numbered footnotes, shared text gets one number."""

    def __init__(self):
        self.texts = []

    def ref(self, text):
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def fmt_time(v, unit=None):
    unit = unit or ("ms" if v < 1 else "s")
    if unit == "ms":
        ms = v * 1000
        return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"
    return f"{v:.2f}"


def stat_time(xs):
    med = statistics.median(xs)
    unit = "ms" if med < 1 else "s"
    return med, f"{fmt_time(med, unit)} {unit} ({fmt_time(min(xs), unit)}–{fmt_time(max(xs), unit)})"


def stat_rate(xs, nbytes):
    rates = [nbytes / x / 1e6 for x in xs]
    med = nbytes / statistics.median(xs) / 1e6
    d = 1 if med < 100 else 0
    return med, f"{med:.{d}f} MB/s ({min(rates):.{d}f}–{max(rates):.{d}f})"


def ratio(fr, other, lower_is_better=True, words=("faster", "slower")):
    """How file-restore compares with `other`, in words."""
    if fr is None or other is None or fr <= 0 or other <= 0:
        return "–"
    r = other / fr if lower_is_better else fr / other
    if abs(r - 1) < 0.05:
        return "about the same"
    x = r if r > 1 else 1 / r
    x = f"{x:.0f}" if x >= 10 else f"{x:.1f}"
    return f"{x}× {words[0]}" if r > 1 else f"{x}× {words[1]}"


class Report:
    def __init__(self, samples, fails, meta):
        self.s, self.f, self.m = samples, fails, meta
        self.notes = Notes()

    def cell(self, key, kind="time", nbytes=None, extra=""):
        """(median or None, cell text). kind: time | rate."""
        if key in self.f:
            return None, "failed " + self.notes.ref(f"`{key}` failed: {self.f[key]}")
        xs = self.s.get(key)
        if not xs:
            return None, "n/a"
        med, text = stat_time(xs) if kind == "time" else stat_rate(xs, nbytes)
        chk = self.m.get(f"check:{key}", "")
        if chk.startswith("FAILED"):
            text += " " + self.notes.ref(f"output check of `{key}` {chk}")
        if len(xs) < int(self.m.get("runs", "5")) and key not in ("fr_warm", "mnt_warm", "lgr_warm"):
            text += f" (n={len(xs)})"
        return med, text + extra

    def kib(self, key):
        v = self.m.get(key)
        return int(v) if v not in (None, "", "0") else None

    def main_table(self):
        out = []
        nbytes = int(self.m.get("big_file_bytes", 268435456))
        out.append("| measurement | target | file-restore | met? | libguestfs | host mount (floor) "
                   "| file-restore vs libguestfs | file-restore vs mount |")
        out.append("|---|---|---|---|---|---|---|---|")

        def row(name, target, met, fr, lg, mnt, vs_lg, vs_mnt):
            out.append(f"| {name} | {target} | {fr} | {met} | {lg} | {mnt} | {vs_lg} | {vs_mnt} |")

        def met(v, ok):
            return "–" if v is None else ("yes" if ok(v) else "**no**")

        fr, frt = self.cell("fr_cold")
        lg, lgt = self.cell("lg_cold")
        mn, mnt = self.cell("mnt_cold")
        row("Cold list of a partition root (new VM)", f"≤ {TARGET_COLD_S} s", met(fr, lambda v: v <= TARGET_COLD_S),
            frt, lgt, mnt, ratio(fr, lg), ratio(fr, mn))

        fr, frt = self.cell("fr_first")
        if fr is not None:
            frt += " " + self.notes.ref(
                "The same cold list with nothing remembered about KVM (the `kvm-unusable` and "
                "`kvm-works` memos of the runtime directory removed), as on the first start after "
                "a host boot. Where `/dev/kvm` opens, `auto` then starts a KVM and a TCG VM at once "
                "and keeps the first that answers (docs/ARCHITECTURE.md); on a host whose KVM cannot "
                "run the guest (these PVM hosts) it is the TCG one.")
        row("First start after host boot (no KVM memo): cold list", f"≤ {TARGET_FIRST_S} s",
            met(fr, lambda v: v <= TARGET_FIRST_S), frt, "–", "–", "–", "–")

        fr, frt = self.cell("fr_warm")
        lg, lgt = self.cell("lg_warm")
        if lg is not None:
            lgt += " per call " + self.notes.ref(
                "libguestfs tools have no warm mode: every `virt-ls` call boots a new appliance, so "
                "this is its per-call time. `guestfish --listen` keeps one running; see the second table.")
        mn, mnt = self.cell("mnt_warm")
        row("Warm list of a 1,000-entry directory", f"≤ {TARGET_WARM_S * 1000:.0f} ms",
            met(fr, lambda v: v <= TARGET_WARM_S), frt, lgt, mnt, ratio(fr, lg), ratio(fr, mn))

        fr, frt = self.cell("fr_extract", "rate", nbytes)
        lg, lgt = self.cell("lg_extract", "rate", nbytes)
        if lg is not None:
            lgt += " " + self.notes.ref("`virt-cat` boots its appliance for the call: the time includes the boot.")
        mn, mnt = self.cell("mnt_extract", "rate", nbytes)
        row("Extract a 256 MiB file (warm VM)", f"≥ {TARGET_MBPS:.0f} MB/s", met(fr, lambda v: v >= TARGET_MBPS),
            frt, lgt, mnt, ratio(fr, lg, False), ratio(fr, mn, False))

        fr, frt = self.cell("fr_tar")
        lg, lgt = self.cell("lg_tar")
        if lg is not None:
            lgt += " " + self.notes.ref(
                "`virt-tar-out` is `guestfish --ro -i tar-out`; `-i` needs an installed OS (inspection), "
                "which the fixture has not, so the bench runs the same `tar-out` with `-m /dev/sda1` "
                "(a new appliance per call).")
        mn, mnt = self.cell("mnt_tar")
        row("1,000-file directory as tar (warm VM)", "–", "–", frt, lgt, mnt, ratio(fr, lg), ratio(fr, mn))

        fr_ram = self.kib("fr_ram_mib")
        lg_ram = self.kib("lgr_big_ram_mib") or self.kib("lgr_gpt_ram_mib")
        row("Guest RAM (configured `-m`)", "–", "–",
            f"{fr_ram} MiB" if fr_ram else "n/a", f"{lg_ram} MiB" if lg_ram else "n/a",
            "n/a (host kernel)", ratio(fr_ram, lg_ram, True, ("less", "more")), "–")

        fr_rss = self.kib("fr_rss_kib")
        lg_rss = max(filter(None, [self.kib("lgr_gpt_rss_kib"), self.kib("lgr_big_rss_kib")]), default=None)
        side = self.kib("fr_sidecar_rss_kib")
        frt = f"{fr_rss / 1024:.0f} MiB" if fr_rss else "n/a"
        if fr_rss:
            vms = [(k, v) for k, v in self.m.items() if k.startswith("frvm:")]
            detail = "; ".join(v for _, v in vms)
            frt += " " + self.notes.ref(
                "VmRSS of the QEMU process: the guest RAM it has touched (a shared memfd) plus QEMU "
                "itself, including TCG's translation cache, so it can exceed `-m`; "
                "read from /proc/PID/status after the workload; the larger of the two VMs (gpt.img: "
                "lists + tar; big-ext4.img: extracts). " + detail +
                (f". The vhost-device-vsock sidecar adds {side / 1024:.1f} MiB." if side else "."))
        lgt = f"{lg_rss / 1024:.0f} MiB" if lg_rss else "n/a"
        if lg_rss:
            lgt += " " + self.notes.ref(
                "VmRSS of the appliance's QEMU under a `guestfish --listen` server after the same kind of "
                f"workload (ll + tar-out on gpt.img: {(self.kib('lgr_gpt_rss_kib') or 0) / 1024:.0f} MiB; "
                f"download of the 256 MiB file: {(self.kib('lgr_big_rss_kib') or 0) / 1024:.0f} MiB); "
                "the one-shot tools run the same appliance.")
        row("QEMU RSS after the workload", "–", "–", frt, lgt, "n/a (host kernel)",
            ratio(fr_rss, lg_rss, True, ("less", "more")), "–")
        return out

    def stacks_table(self):
        out = ["| measurement | file-restore | libguestfs | file-restore vs libguestfs |",
               "|---|---|---|---|"]
        fr, frt = self.cell("fr_lv_cold")
        lg, lgt = self.cell("lg_lv_cold")
        out.append(f"| Cold list of an LV root (new VM; LVM activated in the guest) | {frt} | {lgt} | {ratio(fr, lg)} |")
        fr, frt = self.cell("fr_luks_unlock")
        out.append(f"| LUKS2 unlock with `--key-file` on a running VM, then list the LV inside "
                   f"(argon2id 32 MiB, 4 iterations) | {frt} | – | – |")
        fr, frt = self.cell("fr_zfs_cold")
        out.append(f"| Cold list of a ZFS dataset (new VM; OpenZFS loaded, a 2-disk mirror imported "
                   f"read-only) | {frt} | – (no ZFS since 1.56) | – |")
        return out

    def warm_lg_table(self):
        nbytes = int(self.m.get("big_file_bytes", 268435456))
        out = ["| measurement | file-restore (warm VM) | libguestfs (`guestfish --remote`) | file-restore vs libguestfs |",
               "|---|---|---|---|"]
        for name, frk, lgk, kind in [
            ("list of the 1,000-entry directory (`ll`)", "fr_warm", "lgr_warm", "time"),
            ("1,000-file directory as tar (`tar-out`)", "fr_tar", "lgr_tar", "time"),
            ("256 MiB file (`download`)", "fr_extract", "lgr_extract", "rate"),
        ]:
            fr, frt = self.cell(frk, kind, nbytes)
            lg, lgt = self.cell(lgk, kind, nbytes)
            out.append(f"| {name} | {frt} | {lgt} | {ratio(fr, lg, kind == 'time')} |")
        start = self.m.get("lgr_start_us")
        if start:
            out.append("")
            out.append(f"Starting the `guestfish --listen` server (appliance boot) took {int(start) / 1e6:.1f} s (one run).")
        return out

    def bigfiles_table(self):
        nbytes = int(self.m.get("bf_file_bytes", 1 << 30))
        fbytes = int(self.m.get("bf_fallback_bytes", 1 << 28))
        out = ["| file (warm VM) | target | file-restore: map path | met? | file-restore: stream through the guest "
               "| libguestfs (`virt-cat`) | host mount (floor) | map vs stream | map vs libguestfs | map vs mount |",
               "|---|---|---|---|---|---|---|---|---|---|"]

        def met(v):
            return "–" if v is None else ("yes" if v >= TARGET_BIG_MBPS else "**no**")

        for fs, name in [("ext4", "ext4"), ("xfs", "XFS"), ("ntfs", "NTFS")]:
            for fmt, fname in [("raw", "raw"), ("qcow2", "qcow2 overlay on a qcow2 backing file")]:
                fr, frt = self.cell(f"bf_map_{fs}_{fmt}", "rate", nbytes)
                st, stt = self.cell(f"bf_stream_{fs}_{fmt}", "rate", nbytes)
                lg, lgt = (None, "–")
                mn, mnt = (None, "–")
                if fmt == "raw":
                    lg, lgt = self.cell(f"bf_lg_{fs}", "rate", nbytes)
                    mn, mnt = self.cell(f"bf_mnt_{fs}", "rate", nbytes)
                    if lg is not None:
                        lgt += " " + self.notes.ref("`virt-cat` boots its appliance for the call: the time "
                                                    "includes the boot (~20 s here).")
                out.append(f"| 1 GiB on {name}, {fname} | ≥ {TARGET_BIG_MBPS:.0f} MB/s | {frt} | {met(fr)} | {stt} | {lgt} | {mnt} "
                           f"| {ratio(fr, st, False)} | {ratio(fr, lg, False)} | {ratio(fr, mn, False)} |")
        for key, name in [("ntfsz", "256 MiB LZNT1-compressed on NTFS"), ("btrfs", "256 MiB on btrfs")]:
            fr, frt = self.cell(f"bf_map_{key}", "rate", fbytes)
            st, stt = self.cell(f"bf_stream_{key}", "rate", fbytes)
            out.append(f"| {name}: not mappable, falls back | – | {frt} (map asked, then streamed) | – | {stt} | – | – "
                       f"| {ratio(fr, st, False)} | – | – |")
        return out

    def search_table(self):
        files = int(self.m.get("sr_files", 100000))
        snaps = int(self.m.get("sr_snapshots", 10))
        out = ["| measurement | file-restore | libguestfs | host mount (floor) | file-restore vs libguestfs "
               "| file-restore vs mount |", "|---|---|---|---|---|---|"]
        rows = [
            (f"`find --name` over {files:,} files, cold VM", "sr_find_cold", "sr_lg_find", "sr_mnt_find"),
            (f"`find --name` over {files:,} files, warm VM", "sr_find_warm", None, "sr_mnt_find"),
            (f"`find` of every entry ({files:,}+ matches as JSON Lines), warm VM", "sr_find_all", None, None),
            (f"`versions` of one path over {snaps} snapshots (starts and stops {snaps} VMs)",
             "sr_versions", "sr_lg_versions", "sr_mnt_versions"),
            (f"`versions --hash` over {snaps} snapshots", "sr_versions_hash", "sr_lg_versions_hash",
             "sr_mnt_versions"),
        ]
        for name, fk, lk, mk in rows:
            fr, frt = self.cell(fk)
            lg, lgt = self.cell(lk) if lk else (None, "–")
            mn, mnt = self.cell(mk) if mk else (None, "–")
            out.append(f"| {name} | {frt} | {lgt} | {mnt} | {ratio(fr, lg)} | {ratio(fr, mn)} |")
        _, dt = self.cell("sr_lg_diff")
        out.append("")
        out.append(f"libguestfs: `find` is `virt-ls -R` piped to grep (one appliance); `versions` is `virt-ls -l` "
                   f"per snapshot, `--hash` `guestfish checksum sha256` per snapshot ({snaps} appliances each); "
                   f"`virt-diff` of two snapshots took {dt}. The host mount: "
                   "`find -name` with the page cache dropped; per snapshot losetup + mount + stat + sha256sum "
                   "+ umount.")
        return out

    def boot_table(self):
        out = ["| measurement | target | value | met? |", "|---|---|---|---|"]
        b, bt = self.cell("fa_boot")
        out.append(f"| Time to first status answer (QEMU spawn → daemon answers) | – | {bt} | – |")
        _, tt = self.cell("fa_total")
        out.append(f"| `file-restore list IMG /` on a new VM, wall time | – | {tt} | – |")
        size = int(self.m.get("initramfs_bytes", 0))
        out.append(f"| initramfs size (build/initramfs.img, uncompressed cpio, no modules) | – "
                   f"| {size / 1048576:.1f} MiB | – |")
        out += ["", "Where the time of a cold `list gpt.img /gpt/part/1` goes (`-vv` runs, interleaved with the "
                "first-answer runs; each phase is its own median, so they need not add up exactly):", "",
                "| phase | how it is measured | median (min–max) |", "|---|---|---|"]
        phases = [
            ("ph_spawn", "host: CLI start, image checks, sidecar, helper", "until the launcher's 'started … pid' line"),
            ("ph_firmware", "QEMU start + firmware + early kernel", "spawn → first answer, minus the guest uptime at "
             "the daemon's first connection"),
            ("ph_kernel", "kernel to `/init`", "guest uptime when `/init` starts (console line)"),
            ("ph_daemon", "daemon to listening", "guest uptime at listen − at `/init`"),
            ("ph_answer", "listening to first connection", "guest uptime at first accepted connection − at listen"),
            ("ph_list", "first mount + listing + CLI exit", "'started VM' note → exit"),
            ("ph_total", "**cold list, total**", "wall time of the command"),
        ]
        for key, label, how in phases:
            _, t = self.cell(key)
            out.append(f"| {label} | {how} | {t} |")
        return out

    def header(self):
        m = self.m
        mem_gib = int(m.get("mem_kib", 0)) / 1048576
        commit = m.get("commit", "?") + (" (with uncommitted changes)" if m.get("commit_dirty") else "")
        fr_accel = m.get("fr_accel", "?")
        if fr_accel == "tcg" and m.get("kvm_pvm") == "1":
            fr_accel += " (auto: /dev/kvm is PVM, the KVM try exits at once, TCG runs)"
        runs = m.get("runs", "?")
        quick = " — **quick smoke run, not for comparison**" if m.get("quick") == "1" else ""
        few = " — **fewer than 5 runs**" if runs.isdigit() and int(runs) < 5 and not quick else ""
        lines = [
            "# Benchmarks",
            "",
            "<!-- Generated by scripts/bench.sh (`make bench`); overwritten on every run. Do not edit by hand. -->",
            "",
            f"- Date: {m.get('date', '?')}",
            f"- Machine: Linux {m.get('uname_r', '?')}, {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), "
            f"{mem_gib:.1f} GiB RAM; load average {m.get('load_start', '?')} at the start, "
            f"{m.get('load_end', '?')} at the end",
            f"- Commit: {commit}",
            f"- Accelerator: file-restore {fr_accel}; libguestfs {m.get('lg_accel', '?')}",
            f"- Versions: {m.get('qemu_version', '?')}; libguestfs {m.get('libguestfs_version', '?')}; "
            f"guest kernel {m.get('guest_kernel', '?')} booted as {m.get('kernel', '?')}",
            f"- Runs: each figure is the median (min–max) of {runs} run{'' if runs == '1' else 's'}, the warm "
            f"lists of {m.get('warm_runs', '?')}{quick}{few}; the whole bench took "
            f"{int(m.get('duration_s', 0)) / 60:.1f} min",
        ]
        first = m.get("lg_first_call_us")
        if first:
            lines.append(f"- libguestfs's first call (appliance build or cache check, not counted): {int(first) / 1e6:.1f} s")
        elif m.get("lg_first_call_error"):
            lines.append(f"- libguestfs's first call failed: {m['lg_first_call_error']}")
        return lines

    def method(self):
        return [
            "## How it is measured",
            "",
            "Images: private sparse copies of the test fixtures (`tests/fixtures/mkfixtures.sh target/fixtures --big`): "
            "`gpt.img` (GPT; partition 1 is ext4 with `many/`, 1,000 files) and `big-ext4.img` (unpartitioned "
            "ext4 with `big/256M.bin`). Host page cache is warm for all three ways (nothing is dropped). "
            "Times are wall-clock around each command, including process start.",
            "",
            "- **file-restore** (`target/release/file-restore`, its own `FILE_RESTORE_RUNTIME_DIR`): cold list = "
            "`stop --all` (untimed), then `list gpt.img /gpt/part/1 --output-format json`; warm list = "
            "`list gpt.img /gpt/part/1/many --output-format json` with the VM running, after one untimed call; "
            "tar = `extract gpt.img /gpt/part/1/many OUT --format tar`; extract = "
            "`extract big-ext4.img /big-ext4/raw/raw/big/256M.bin OUT` with that VM started beforehand.",
            "- **libguestfs** (`LIBGUESTFS_BACKEND=direct`): cold list = `virt-ls -l --format=raw -a gpt.img "
            "-m /dev/sda1 /`; list of many/ = the same with `/many`; tar = `guestfish --ro … tar-out /many OUT`; "
            "extract = `virt-cat … /big/256M.bin > OUT`. Each call boots its appliance.",
            "- **host mount** (the unsafe floor: the host kernel parses the image): cold = `losetup -r -o START "
            "--sizelimit SIZE` + `mount -o ro,noload` + `ls -la` + `umount` + `losetup -d`; warm = `ls -la many/`; "
            "tar = `tar -cf OUT -C MNT many`; extract = `cat 256M.bin > OUT`.",
            "- Every output is checked once after its runs (entry counts, tar members, sha256 of the 256 MiB file); "
            "a failed check is footnoted. Ratios compare medians: \"N× faster\" means file-restore takes 1/N of "
            "the other's time (or moves N times the bytes per second).",
            "- Time to first answer: `file-restore -vv list gpt.img /` on a new VM; its debug line at QEMU's spawn "
            "and the 'started VM' note (printed once the daemon answered the readiness status call) are "
            "time-stamped as they arrive.",
            "- Phases: the same stamps on `file-restore -vv list gpt.img /gpt/part/1`, plus the guest uptimes the "
            "daemon prints on the console (`restore-daemon: boot: init … s, listening … s` and `first connection "
            "… s`); the guest clock starts early in the kernel, so QEMU start, firmware and the kernel's first "
            "milliseconds are one phase.",
            "- Memory: guest RAM is QEMU's `-m`; RSS is VmRSS from /proc/PID/status.",
            "- Big files: `scripts/bench/mkbigfiles.sh` builds `bigfiles.img` (GPT: ext4, XFS, NTFS with `big/1G.bin`, "
            "the same random GiB; NTFS also `compressed/256M.txt`, btrfs `big/256M.bin`), `bigfiles-base.qcow2` "
            "(the same as qcow2) and `bigfiles.qcow2` (an empty overlay on it). file-restore: `extract IMG "
            "/bigfiles/part/N/big/1G.bin OUT` on a running VM, with the default (`FILE_RESTORE_MAP=auto`: the map "
            "path) and with `FILE_RESTORE_MAP=off` (every byte through the guest); `-v` must name the path taken. "
            "libguestfs: `virt-cat -a bigfiles.img -m /dev/sdaN`. Host mount: `cat` from a read-only loop mount of "
            "the partition (ext4 `noload`, XFS `norecovery`, NTFS with the host's driver). The map path and the "
            "mount run 3 times, the slow ways once (n=1).",
        ]

    def render(self):
        out = self.header()
        out += ["", "## file-restore vs libguestfs vs a host mount", ""]
        out += self.main_table()
        out += ["", "## libguestfs kept running (`guestfish --listen`, one appliance for all calls)", ""]
        out += self.warm_lg_table()
        out += ["", "### Storage stacks", ""]
        out += self.stacks_table()
        if any(k.startswith("bf_") for k in list(self.s) + list(self.f)):
            out += ["", "## Big files (map path: the guest names the extents, the host reads QEMU's export)", ""]
            out += self.bigfiles_table()
        if any(k.startswith("sr_") for k in list(self.s) + list(self.f)):
            out += ["", "## Find and versions", ""]
            out += self.search_table()
        out += ["", "## Boot", ""]
        out += self.boot_table()
        if self.notes.texts:
            out += ["", "## Notes", ""]
            out += [f"{i + 1}. {t}" for i, t in enumerate(self.notes.texts)]
        out += [""] + self.method()
        return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(Report(*load(sys.argv[1], sys.argv[2])).render(), end="")


if __name__ == "__main__":
    main()
