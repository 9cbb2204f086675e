//! `build()` end to end with synthetic kernels.

use std::fs;
use std::path::Path;
use std::process::Command;

use file_restore_initramfs::{build, has_pvh_note, BootInfo, BuildOptions, DaemonConfig};

use crate::newc;

/// A minimal ELF64 whose only program header is a PT_NOTE with the Xen PVH entry note.
fn pvh_elf() -> Vec<u8> {
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz ("Xen\0")
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&0x0100_0000u32.to_le_bytes());

    let mut elf = vec![0u8; 64 + 56];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    elf[72..80].copy_from_slice(&120u64.to_le_bytes()); // p_offset
    elf[96..104].copy_from_slice(&(note.len() as u64).to_le_bytes()); // p_filesz
    elf[112..120].copy_from_slice(&4u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&note);
    elf.extend_from_slice(b"\0Linux version 9.9.9-test (builder) #1\0");
    elf.resize(64 * 1024, 0xcc);
    elf
}

/// A file with just a bzImage setup header signature.
fn fake_bzimage() -> Vec<u8> {
    let mut image = vec![0u8; 8192];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image
}

fn options(tmp: &Path, kernel: &[u8]) -> BuildOptions {
    let daemon = tmp.join("restore-daemon");
    fs::write(&daemon, b"#!/bin/false\nnot really a daemon\n").unwrap();
    let kernel_path = tmp.join("kernel-in");
    fs::write(&kernel_path, kernel).unwrap();
    let mut opts = BuildOptions::new(&daemon, kernel_path, tmp.join("out"));
    opts.config = DaemonConfig {
        idle_timeout: 30,
        ..DaemonConfig::default()
    };
    opts
}

fn cpio_list(image: &Path) -> Vec<String> {
    let output = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(image)
        .output()
        .expect("run cpio");
    assert!(
        output.status.success(),
        "cpio -t: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn builds_pvh_kernel_initramfs_and_boot_json() {
    let tmp = tempfile::tempdir().unwrap();
    let elf = pvh_elf();
    assert!(has_pvh_note(&elf));
    let opts = options(tmp.path(), &elf);
    let out = build(&opts).unwrap();

    let out_dir = fs::canonicalize(tmp.path().join("out")).unwrap();
    assert!(out.pvh);
    assert_eq!(out.kernel, out_dir.join("vmlinux"));
    assert_eq!(fs::read(&out.kernel).unwrap(), elf);
    assert!(!out_dir.join("vmlinuz").exists());
    assert_eq!(out.kernel_release, "9.9.9-test");
    assert!(
        out.warnings.iter().any(|w| w.contains("not an ELF")),
        "{:?}",
        out.warnings
    );

    let boot = BootInfo::read(&out_dir.join("boot.json")).unwrap();
    assert_eq!(boot, out.boot_info());
    assert!(boot.kernel.is_absolute() && boot.initramfs.is_absolute());
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out_dir.join("boot.json")).unwrap()).unwrap();
    assert_eq!(json["pvh"], true);
    assert_eq!(json["kernel_release"], "9.9.9-test");

    let image = fs::read(&out.initramfs).unwrap();
    assert_eq!(image.len() as u64, out.initramfs_size);
    assert_eq!(image.len() % 512, 0);
    let mut listed = cpio_list(&out.initramfs);
    listed.sort();
    let mut expected: Vec<String> = [
        "proc",
        "sys",
        "dev",
        "run",
        "mnt",
        "tmp",
        "etc",
        "dev/console",
        "dev/null",
        "init",
        "etc/restore-daemon.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(listed, expected);

    let entries = newc::parse(&image);
    let get = |name: &str| entries.iter().find(|e| e.name == name).unwrap();
    assert_eq!(get("init").mode, 0o100_755);
    assert_eq!(get("init").data, fs::read(&opts.daemon).unwrap());
    assert_eq!(get("tmp").mode, 0o040_755);
    assert_eq!(
        (get("dev/console").mode, get("dev/console").rdev),
        (0o020_600, (5, 1))
    );
    assert_eq!(
        (get("dev/null").mode, get("dev/null").rdev),
        (0o020_666, (1, 3))
    );
    assert_eq!(
        String::from_utf8(get("etc/restore-daemon.json").data.clone()).unwrap(),
        r#"{"idle_timeout":30,"port":1024,"log_level":"info"}"#
    );
    // No temporary files are left behind.
    let mut files: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["boot.json", "initramfs.img", "vmlinux"]);
}

#[test]
fn a_bzimage_is_copied_as_vmlinuz_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage();
    let opts = options(tmp.path(), &kernel);
    // A stale vmlinux from an earlier build must go.
    fs::create_dir_all(&opts.out_dir).unwrap();
    fs::write(opts.out_dir.join("vmlinux"), b"stale").unwrap();
    let out = build(&opts).unwrap();
    assert!(!out.pvh);
    assert!(out.kernel.ends_with("vmlinuz"));
    assert_eq!(fs::read(&out.kernel).unwrap(), kernel);
    assert!(!opts.out_dir.join("vmlinux").exists());
    assert!(
        out.warnings.iter().any(|w| w.contains("is a bzImage")),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.kernel_release, "unknown");
    let boot = BootInfo::read(&out.boot_json).unwrap();
    assert!(!boot.pvh);
}

#[test]
fn a_kernel_in_place_is_not_copied_onto_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), &pvh_elf());
    fs::create_dir_all(&opts.out_dir).unwrap();
    let in_place = opts.out_dir.join("vmlinux");
    fs::copy(&opts.kernel, &in_place).unwrap();
    opts.kernel = in_place.clone();
    let out = build(&opts).unwrap();
    assert_eq!(out.kernel, fs::canonicalize(&in_place).unwrap());
    assert_eq!(fs::read(&in_place).unwrap(), pvh_elf());
}

#[test]
fn errors_name_the_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), &pvh_elf());
    opts.daemon = tmp.path().join("no-such-daemon");
    let err = build(&opts).unwrap_err().to_string();
    assert!(err.contains("no-such-daemon"), "{err}");

    let opts = options(tmp.path(), b"not a kernel at all");
    let err = build(&opts).unwrap_err().to_string();
    assert!(
        err.contains("kernel-in") && err.contains("not a bootable kernel"),
        "{err}"
    );
    let mut elf_without_note = pvh_elf();
    elf_without_note[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD, not PT_NOTE
    let opts = options(tmp.path(), &elf_without_note);
    let err = build(&opts).unwrap_err().to_string();
    assert!(err.contains("without the PVH entry note"), "{err}");
    assert!(!tmp.path().join("out/initramfs.img").exists());
}
