#!/usr/bin/env python3
"""Small helpers for scripts/bench.sh (fixture look-ups, output checks, process memory,
boot-time stamps). Each subcommand prints plain text for the shell; errors go to stderr
with a non-zero exit.

  benchlib.py fixture FIXDIR IMAGE BUCKET      -> "START SIZE" (bytes) of a bucket
  benchlib.py expected-sha FIXDIR TREE PATH    -> sha256 of PATH in tree TREE's manifest
  benchlib.py count-json FILE N                -> ok when FILE is a JSON array of N entries
  benchlib.py count-lines FILE N [SKIP]        -> ok when FILE has N lines after SKIP ones
  benchlib.py count-tar FILE N                 -> ok when the tar holds N regular files
  benchlib.py contains FILE WORD               -> ok when a line of FILE ends with WORD
  benchlib.py stamp -- CMD...                  -> runs a `file-restore -vv` command and
                                                  prints "TOTAL_US SPAWN_US READY_US"
                                                  ("-" where its log line was not seen)
  benchlib.py phases RUN_DIR -- CMD...         -> runs a `file-restore -vv` command that
                                                  starts one VM (FILE_RESTORE_RUNTIME_DIR=
                                                  RUN_DIR, VMs in RUN_DIR/vms) and prints
                                                  "TOTAL SPAWN READY INIT LISTEN FIRST" (us;
                                                  the last three: guest uptime from the
                                                  daemon's console lines)
  benchlib.py proc-mem PID                     -> "RAM_MIB RSS HWM RSS_SHMEM RSS_ANON" (KiB;
                                                  RAM_MIB from qemu's -m)
  benchlib.py qemu-with-file PATH              -> pid of the qemu process that has PATH open
  benchlib.py sidecar-rss DIR                  -> summed VmRSS (KiB) of vhost-device-vsock
                                                  processes whose command line names DIR
  benchlib.py fr-vms STATUS_JSON               -> "PID ACCEL RUN_DIR IMAGE" per VM
"""
import base64
import json
import os
import re
import subprocess
import sys
import tarfile
import time


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def fixture(fixdir, image, bucket):
    idx = json.load(open(os.path.join(fixdir, "fixtures.json")))
    b = idx["images"][image]["buckets"][bucket]
    print(b["start"], b["size"])


def expected_sha(fixdir, tree, path):
    man = json.load(open(os.path.join(fixdir, "tree", tree + ".manifest.json")))
    want = base64.b64encode(path.encode()).decode()
    for e in man:
        if e["path"] == want:
            print(e["sha256"])
            return
    die(f"{path} not in the {tree} manifest")


def count_json(path, n):
    data = json.load(open(path))
    if len(data) != n:
        die(f"expected {n} entries, got {len(data)}")


def count_lines(path, n, skip=0):
    with open(path, "rb") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    got = len(lines) - skip
    if got != n:
        die(f"expected {n} non-empty lines (after {skip}), got {got}")


def count_tar(path, n):
    with tarfile.open(path) as t:
        got = sum(1 for m in t.getmembers() if m.isfile())
    if got != n:
        die(f"expected {n} regular files in the tar, got {got}")


def contains(path, word):
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if line.rstrip().endswith(word.encode()):
                return
    die(f"{word!r} not found in the output")


def run_stamped(cmd):
    """Runs CMD, returning (total, spawn, ready) in seconds from its start (None where
    the log line was not seen); dies with the last lines of its stderr on failure."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    spawn = ready = None
    tail = []
    for raw in p.stderr:
        now = time.monotonic()
        line = raw.decode(errors="replace").rstrip("\n")
        if "file_restore::vm::launch::attempt" in line and re.search(r"\bstarted .* pid ", line):
            spawn = now
        elif line.startswith("file-restore: started VM"):
            ready = now
        if not line.startswith("[") or "ERROR" in line or "WARN" in line:
            tail = (tail + [line])[-3:]
    rc = p.wait()
    end = time.monotonic()
    if rc != 0:
        die(f"exit {rc}: " + " | ".join(tail))
    rel = lambda t: None if t is None else t - t0
    return rel(end), rel(spawn), rel(ready)


def phases(run_dir, cmd):
    """A cold start split into phases: the daemon prints its guest uptime at /init, when
    it listens and at its first connection (`restore-daemon: boot: ...` console lines);
    the host stamps QEMU's spawn and the first answer."""
    total, spawn, ready = run_stamped(cmd)
    if spawn is None or ready is None:
        die("the -vv output had no 'started ... pid' debug line or no 'started VM' note")
    vms = os.path.join(run_dir, "vms")
    logs = [os.path.join(vms, d, "console.log") for d in os.listdir(vms) if d.startswith("vm-")]
    if len(logs) != 1:
        die(f"expected one VM run directory in {vms}, found {len(logs)}")
    text = open(logs[0], errors="replace").read()
    m1 = re.search(r"boot: init ([0-9.]+) s, listening ([0-9.]+) s", text)
    m2 = re.search(r"boot: first connection ([0-9.]+) s", text)
    if not m1 or not m2:
        die(f"{logs[0]} has no 'restore-daemon: boot:' lines")
    us = lambda t: str(int(round(t * 1e6)))
    print(us(total), us(spawn), us(ready), us(float(m1.group(1))), us(float(m1.group(2))), us(float(m2.group(1))))


def stamp(cmd):
    """Runs a `file-restore -vv …` command that starts a new VM and times, from the
    moment it is spawned: the last QEMU spawn (the debug line 'started … pid'; an
    auto accelerator may first try KVM), the 'started VM' note (printed once the daemon
    answered its first status call) and the exit."""
    total, spawn, ready = run_stamped(cmd)
    us = lambda t: "-" if t is None else str(int(round(t * 1e6)))
    print(us(total), us(spawn), us(ready))


def status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def ram_mib(args):
    for i, a in enumerate(args):
        if a == "-m" and i + 1 < len(args):
            v = args[i + 1].split(",")[0]
            v = v.removeprefix("size=")
            m = re.fullmatch(r"(\d+)([MmGg]?)", v)
            if m:
                return int(m.group(1)) * (1024 if m.group(2) in ("G", "g") else 1)
    return 0


def proc_mem(pid):
    print(ram_mib(cmdline(pid)), *(status_field(pid, f) for f in ("VmRSS", "VmHWM", "RssShmem", "RssAnon")))


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def ppid_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return int(s[s.rindex(")") + 2 :].split()[1])


def qemu_with_file(path):
    """The qemu process that has PATH open (directly, or as the backing file of an
    overlay, as libguestfs's --ro does). Its parent is no help: a daemonized guestfish
    leaves its appliance to init."""
    path = os.path.realpath(path)
    for p in pids():
        try:
            args = cmdline(p)
            if not args or not os.path.basename(args[0]).startswith("qemu-system"):
                continue
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}") == path:
                    print(p)
                    return
        except OSError:
            pass
    die(f"no qemu process has {path} open")


def sidecar_rss(d):
    total = 0
    for p in pids():
        try:
            args = cmdline(p)
            if args and os.path.basename(args[0]) == "vhost-device-vsock" and any(d in a for a in args):
                total += status_field(p, "VmRSS")
        except OSError:
            pass
    print(total)


def fr_vms(path):
    for vm in json.load(open(path)):
        addr = vm.get("addr", "")
        m = re.search(r" via (\S+)/[^/]+$", addr)
        images = vm.get("images") or ["?"]
        print(vm["pid"], vm.get("accel", "?"), m.group(1) if m else "-", os.path.basename(images[0]))


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, a = argv[1], argv[2:]
    if cmd == "fixture":
        fixture(*a)
    elif cmd == "expected-sha":
        expected_sha(*a)
    elif cmd == "count-json":
        count_json(a[0], int(a[1]))
    elif cmd == "count-lines":
        count_lines(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 0)
    elif cmd == "count-tar":
        count_tar(a[0], int(a[1]))
    elif cmd == "contains":
        contains(a[0], a[1])
    elif cmd == "stamp":
        if a and a[0] == "--":
            a = a[1:]
        stamp(a)
    elif cmd == "phases":
        run_dir, rest = a[0], a[1:]
        if rest and rest[0] == "--":
            rest = rest[1:]
        phases(run_dir, rest)
    elif cmd == "proc-mem":
        proc_mem(int(a[0]))
    elif cmd == "qemu-with-file":
        qemu_with_file(a[0])
    elif cmd == "sidecar-rss":
        sidecar_rss(a[0])
    elif cmd == "fr-vms":
        fr_vms(a[0])
    else:
        die(f"unknown subcommand {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
