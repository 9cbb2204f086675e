#!/usr/bin/env python3
"""make soak: N cold starts in a row, to catch the rare boot that never answers.

Each round stops every VM of its own runtime directory, then times
`file-restore -vv list IMAGE /` (a new VM: boot, readiness, the disk level). A round
counts as
  ok       the command succeeded and the first VM answered,
  retried  it succeeded only because the launcher gave up on a silent VM and started a
           fresh one (its 'starting a fresh one once' warning), or
  failed   the command failed.
The console logs of retried and failed rounds are copied to the work directory for
diagnosis. Prints the failures and p50/p99/max of the wall time, and writes them as the
"Soak" section of docs/BENCHMARKS.md (kept when `make bench` rewrites the rest).

Usage: scripts/soak.py [N]   (default 200; SOAK_RUNS overrides; SOAK_OUT=FILE writes the
                               section there instead of docs/BENCHMARKS.md)
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FR = os.path.join(ROOT, "target/release/file-restore")
FIXDIR = os.path.join(ROOT, "target/fixtures")
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
ROUND_LIMIT_S = 120


def percentile(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def run(cmd, env, timeout):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)


def main():
    n = int(os.environ.get("SOAK_RUNS") or (sys.argv[1] if len(sys.argv) > 1 else 200))
    if not os.access(FR, os.X_OK):
        sys.exit(f"soak: {FR} missing: run make build")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/mkfixtures.sh"), FIXDIR], check=True,
                   stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="file-restore-soak.")
    image = os.path.join(work, "soak.img")
    shutil.copyfile(os.path.join(FIXDIR, "raw-ext4.img"), image)
    env = dict(os.environ, FILE_RESTORE_RUNTIME_DIR=os.path.join(work, "run"),
               FILE_RESTORE_KERNEL=os.path.join(ROOT, "build/vmlinux"),
               FILE_RESTORE_INITRAMFS=os.path.join(ROOT, "build/initramfs.img"))
    times, retried, failed, kvm_tries = [], [], [], []
    started = time.monotonic()
    for i in range(1, n + 1):
        run([FR, "stop", "--all"], env, 60)
        t0 = time.monotonic()
        try:
            p = run([FR, "-vv", "list", image, "/"], env, ROUND_LIMIT_S)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        dt = time.monotonic() - t0
        times.append(dt)
        if "kvm did not work" in err:
            kvm_tries.append((i, dt))
        keep = None
        if rc != 0:
            failed.append((i, dt, err.strip().splitlines()[-1:] or ["?"]))
            keep = f"failed-{i}"
        elif "starting a fresh one once" in err:
            retried.append((i, dt))
            keep = f"retried-{i}"
        if keep:
            dest = os.path.join(work, keep)
            os.makedirs(dest, exist_ok=True)
            for f in glob.glob(os.path.join(work, "run/vms/**/*.log"), recursive=True):
                shutil.copy(f, dest)
            with open(os.path.join(dest, "stderr.txt"), "w") as f:
                f.write(err)
        if i % 20 == 0 or keep:
            print(f"[soak] {i}/{n}: {dt:.2f} s{' ' + keep if keep else ''}", file=sys.stderr)
    run([FR, "stop", "--all"], env, 60)
    total = time.monotonic() - started

    ok = n - len(retried) - len(failed)
    lines = [
        BEGIN,
        "## Soak (`make soak`)",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
        f"{subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}, "
        f"load average at the end {open('/proc/loadavg').read().split()[0]}; {total / 60:.1f} min",
        f"- {n} cold starts of `file-restore list raw-ext4.img /` (stop --all before each): "
        f"**{ok} answered at once, {len(retried)} only after the launcher replaced a silent VM, "
        f"{len(failed)} failed**",
        f"- wall time per start: p50 {percentile(times, 50):.2f} s, p99 {percentile(times, 99):.2f} s, "
        f"max {max(times):.2f} s",
    ]
    for i, dt, last in failed:
        lines.append(f"- round {i} failed after {dt:.1f} s: {last[0][:300]}")
    for i, dt in retried:
        lines.append(f"- round {i} needed a fresh VM ({dt:.1f} s)")
    for i, dt in kvm_tries:
        lines.append(f"- round {i} tried KVM first ({dt:.1f} s; /dev/kvm opens but runs no guest here, "
                     "and the failure is remembered for later rounds)")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    out = os.environ.get("SOAK_OUT") or os.path.join(ROOT, "docs/BENCHMARKS.md")
    old = open(out).read() if os.path.exists(out) else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + section.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    with open(out, "w") as f:
        f.write(new)
    if not retried and not failed:
        shutil.rmtree(work)
    else:
        print(f"soak: console logs of the bad rounds kept in {work}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
