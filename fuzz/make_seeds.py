#!/usr/bin/env python3
"""Writes the seed corpus fuzz/seeds/TARGET/ (checked in; rerun only to change it).

Needs the image tools scripts/deps.sh installs (mkfs.*, mksquashfs, xorriso,
sfdisk, qemu-img). Seeds are kept small: device starts are cut to the 72 KiB
fsmagic reads, qcow2 images use 512-byte clusters. Inputs of crashes that
fuzzing found are kept next to these as regress-* files and are not touched.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
PROBE_LEN = 72 * 1024


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fsmagic(tmp):
    makers = {
        "ext4": (64, ["mkfs.ext4", "-q", "-F"]),
        "ext2": (64, ["mkfs.ext2", "-q", "-F"]),
        "xfs": (300, ["mkfs.xfs", "-q", "-f"]),
        "btrfs": (120, ["mkfs.btrfs", "-q", "-f"]),
        "vfat": (64, ["mkfs.vfat"]),
        "exfat": (64, ["mkfs.exfat"]),
        "ntfs": (64, ["mkntfs", "-q", "-F", "-f"]),
        "f2fs": (64, ["mkfs.f2fs", "-q", "-f"]),
        "swap": (64, ["mkswap"]),
    }
    for name, (mib, cmd) in makers.items():
        img = os.path.join(tmp, name)
        with open(img, "wb") as f:
            f.truncate(mib << 20)
        run(*cmd, img)
        with open(img, "rb") as f:
            write("fsmagic", name, f.read(PROBE_LEN))
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    sq = os.path.join(tmp, "sq")
    run("mksquashfs", src, sq, "-quiet", "-noappend")
    iso = os.path.join(tmp, "iso")
    run("xorriso", "-as", "mkisofs", "-quiet", "-o", iso, src)
    for name, path in [("squashfs", sq), ("iso9660", iso)]:
        with open(path, "rb") as f:
            write("fsmagic", name, f.read(PROBE_LEN))
    for label in ["gpt", "dos"]:
        disk = os.path.join(tmp, label)
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        subprocess.run(["sfdisk", "-q", disk], input=f"label: {label}\n,,L\n".encode(),
                       check=True, stdout=subprocess.DEVNULL)
        with open(disk, "rb") as f:
            write("fsmagic", "table-" + label, f.read(PROBE_LEN))
    lvm = bytearray(4096)
    lvm[512:520] = b"LABELONE"
    lvm[536:544] = b"LVM2 001"
    write("fsmagic", "lvm-label", bytes(lvm))


def api_path():
    for i, p in enumerate([
        b"/", b"", b"//./", b"/d0", b"/d0/part/", b"/d0/part/2/etc//passwd",
        b"/d0/lvm/vg", b"/d0/lvm/vg/root/x", b"/d/raw/raw/../../x\xff", b"/../x",
        b"/d/zfs", b"/d/a\x00b", b"/\xff", b"/d0/part/1/./a/../b/",
    ]):
        write("api_path", f"path-{i:02}", p)


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT, cut=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    # tarfile pads to 10 KiB records: keep the two end-of-archive blocks only.
    end = len(raw.rstrip(b"\0"))
    raw = raw[: (end + 511) // 512 * 512 + 1024]
    return raw[:cut] if cut else raw


def info(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.mode = mode
    i.mtime = 1_600_000_000
    i.linkname = link
    if kind == tarfile.REGTYPE:
        i.size = len(data)
        return i, data
    return i, None


def unpack():
    tree = [
        info("d", tarfile.DIRTYPE, mode=0o755),
        info("d/file", data=b"hello\n"),
        info("d/exec", data=b"#!/bin/sh\n", mode=0o4755),
        info("d/link", tarfile.SYMTYPE, link="file"),
        info("d/hard", tarfile.LNKTYPE, link="d/file"),
        info("d/fifo", tarfile.FIFOTYPE),
        info("d/sub", tarfile.DIRTYPE, mode=0o500),
        info("d/sub/zeros", data=bytes(8192) + b"end"),
    ]
    seeds = {
        "tree-gnu": (0x00, tar_bytes(tree)),
        "tree-pax-same-owner": (0x02, tar_bytes(tree, fmt=tarfile.PAX_FORMAT)),
        "tree-strip-overwrite": (0x05, tar_bytes(tree)),
        "long-names": (0x00, tar_bytes([
            info("n" * 150 + "/", tarfile.DIRTYPE, mode=0o755),
            info("n" * 150 + "/" + "f" * 120, data=b"x"),
            info("l" * 10, tarfile.SYMTYPE, link="t" * 300),
        ])),
        "long-names-pax": (0x00, tar_bytes([
            info("p" * 200, data=b"x"),
            info("q" * 10, tarfile.SYMTYPE, link="u" * 400),
        ], fmt=tarfile.PAX_FORMAT)),
        "escapes": (0x00, tar_bytes([
            info("../up", data=b"x"),
            info("/abs", data=b"x"),
            info("ok/../../up2", data=b"x"),
        ])),
        "through-symlink": (0x00, tar_bytes([
            info("s", tarfile.SYMTYPE, link=".."),
            info("s/x", data=b"x"),
            info("h", tarfile.LNKTYPE, link="../outside/canary"),
        ])),
        "through-existing-symlinks": (0x11, tar_bytes([
            info("esc/x", data=b"x"),
            info("abs/y", data=b"y"),
            info("esc", tarfile.DIRTYPE, mode=0o777),
            info("existing", tarfile.LNKTYPE, link="esc/canary"),
            info("abs", tarfile.SYMTYPE, link="/"),
        ])),
        "truncated": (0x00, tar_bytes(tree, cut=1536)),
        "no-end-marker": (0x00, tar_bytes(tree)[:-1024]),
    }
    for name, (flags, data) in seeds.items():
        write("unpack", name, bytes([flags]) + data)


def image_header(tmp):
    # Selector byte: 0 .qcow2, 1 .vmdk, 2 .img (probed); see fuzz-checks/src/image.rs.
    def qcow2(name, *opts):
        path = os.path.join(tmp, name)
        run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", *opts, path, "1M")
        with open(path, "rb") as f:
            return f.read()

    base = ["-u", "-F", "raw", "-b"]
    seeds = {
        "qcow2-plain": (0, qcow2("a")),
        "qcow2-backing-in-store": (0, qcow2("b", *base, "base.raw")),
        "qcow2-backing-outside": (0, qcow2("c", *base, "../secret.raw")),
        "qcow2-backing-absolute": (0, qcow2("d", *base, "/etc/hostname")),
        "qcow2-backing-protocol": (0, qcow2("e", *base, "nbd:localhost:10809")),
        "img-qcow2-with-backing": (2, qcow2("g", *base, "base.raw")),
        "img-qcow2-plain": (2, qcow2("h")),
    }
    for extent in ["base.raw", "../secret.raw", "/etc/hostname"]:
        desc = (
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
            'createType="monolithicFlat"\n\n# Extent description\n'
            f'RW 128 FLAT "{extent}" 0\n\n# The Disk Data Base\n#DDB\n'
            'ddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "0"\n'
            'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\n'
            'ddb.adapterType = "ide"\n'
        )
        seeds["vmdk-" + extent.strip("./").replace("/", "-")] = (1, desc.encode())
    for name, (selector, data) in seeds.items():
        write("image_header", name, bytes([selector]) + data)


def big_file():
    """An NBD handshake (greeting, an option reply head, an export info) and
    guest map pages: a good two-page map, one without progress, one with a gap."""
    import struct
    greeting = struct.pack(">QQH", 0x4E42444D41474943, 0x49484156454F5054, 3)
    head = struct.pack(">QIII", 0x0003E889045565A9, 7, 3, 12)
    write("big_file", "handshake.bin", greeting + head + bytes([1]) + struct.pack(">HQH", 0, 4096, 1))
    pages = [
        ("two-pages.jsonl",
         '{"size":100,"extents":[{"offset":0,"length":40,"disk":"d0","disk_offset":4096},'
         '{"offset":40,"length":10}],"next":50}\n'
         '{"size":100,"extents":[{"offset":50,"length":50,"disk":"d1","disk_offset":0}]}\n'),
        ("no-progress.jsonl", '{"size":10,"extents":[{"offset":0,"length":5}],"next":0}\n'),
        ("gap.jsonl",
         '{"size":10,"extents":[{"offset":0,"length":4,"disk":"d0","disk_offset":0},'
         '{"offset":5,"length":5}]}\n'),
    ]
    for name, text in pages:
        write("big_file", name, text.encode())


def find_answer():
    """A guest's search answers (first byte: matches asked - 1, second: piece size - 1):
    an honest one, one with more matches than asked, one that lies in its end line."""
    m = ('{"match":{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,'
         '"size":1,"mtime":0,"path":"/d/part/1/a"}}\n')
    end = '{"end":{"visited":5,"matched":%d,"skipped":1,"truncated":false}}\n'
    skip = '{"skip":{"path":"/d/part/2","reason":"locked"}}\n'
    answers = [
        ("honest.jsonl", 1, 6, m + skip + '{"progress":{"visited":3}}\n' + m + end % 2),
        ("too-many.jsonl", 0, 255, m * 3 + end % 3),
        ("lying-end.jsonl", 9, 0, m + end % 7),
    ]
    for name, asked, piece, text in answers:
        write("find_answer", name, bytes([asked, piece]) + text.encode())


def main():
    for target in ["fsmagic", "api_path", "unpack", "image_header", "big_file", "find_answer"]:
        d = os.path.join(SEEDS, target)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if not f.startswith("regress-"):
                    os.remove(os.path.join(d, f))
    with tempfile.TemporaryDirectory() as tmp:
        fsmagic(tmp)
    api_path()
    unpack()
    with tempfile.TemporaryDirectory() as tmp:
        image_header(tmp)
    big_file()
    find_answer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
