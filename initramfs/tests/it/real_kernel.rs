//! Tests against the kernel installed on this machine (`linux-image-amd64`); each one is
//! skipped with a note when there is none.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use file_restore_initramfs::{
    build, extract_vmlinux, find_default_kernel, has_pvh_note, module_closure, BuildOptions,
    KernelChoice, DEFAULT_MODULES,
};

fn installed_kernel() -> Option<KernelChoice> {
    match find_default_kernel(Path::new("/boot"), Path::new("/lib/modules")) {
        Ok(choice) => Some(choice),
        Err(e) => {
            eprintln!("note: skipped, no installed kernel: {e}");
            None
        }
    }
}

#[test]
fn real_closure_has_dependencies_first() {
    let Some(kernel) = installed_kernel() else {
        return;
    };
    let set = module_closure(&kernel.modules_dir, DEFAULT_MODULES).unwrap();
    let names: Vec<&str> = set.modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "{}: {} modules; built in: {:?}; missing: {:?}",
        kernel.release,
        names.len(),
        set.builtin,
        set.missing
    );
    let pos = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} not in {names:?}"))
    };
    for (dep, module) in [
        ("virtio_ring", "virtio"),
        ("virtio", "virtio_blk"),
        ("virtio", "virtio_pci"),
        ("vsock", "vmw_vsock_virtio_transport_common"),
        (
            "vmw_vsock_virtio_transport_common",
            "vmw_vsock_virtio_transport",
        ),
        ("jbd2", "ext4"),
        ("mbcache", "ext4"),
        ("crc16", "ext4"),
        ("crc32c_generic", "ext4"),
        ("crc32c_generic", "libcrc32c"),
        ("libcrc32c", "xfs"),
        ("libcrc32c", "btrfs"),
        ("xxhash_generic", "btrfs"),
        ("blake2b_generic", "btrfs"),
        ("crc32_generic", "f2fs"),
    ] {
        assert!(
            pos(dep) < pos(module),
            "{dep} must load before {module}: {names:?}"
        );
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "each module once");
    assert!(
        set.modules.iter().all(|m| m.path.is_file()),
        "every module file exists"
    );
}

#[test]
fn real_vmlinux_has_pvh_note() {
    let Some(kernel) = installed_kernel() else {
        return;
    };
    let image = std::fs::read(&kernel.image).unwrap();
    let started = Instant::now();
    let elf = extract_vmlinux(&image).unwrap();
    eprintln!(
        "{}: {} -> {} bytes in {:.2?}",
        kernel.image.display(),
        image.len(),
        elf.len(),
        started.elapsed()
    );
    assert!(elf.starts_with(b"\x7fELF"));
    assert!(
        has_pvh_note(&elf),
        "CONFIG_PVH kernel without the PVH note?"
    );
}

#[test]
fn real_build_lists_expected_paths() {
    let Some(kernel) = installed_kernel() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let daemon = tmp.path().join("daemon");
    std::fs::write(&daemon, b"dummy daemon").unwrap();
    let opts = BuildOptions::new(&daemon, tmp.path().join("out"));
    let out = build(&opts).unwrap();
    assert_eq!(out.kernel_release, kernel.release);
    assert!(out.pvh, "warnings: {:?}", out.warnings);
    assert!(
        out.missing_modules.is_empty(),
        "missing: {:?}",
        out.missing_modules
    );

    let listing = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(&out.initramfs)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    let paths: Vec<&str> = listing.lines().collect();
    for expected in [
        "init",
        "dev/console",
        "dev/null",
        "etc/modules.load",
        "etc/restore-daemon.json",
        "lib/modules/virtio_blk.ko",
        "lib/modules/ext4.ko",
        "lib/modules/vmw_vsock_virtio_transport.ko",
        "lib/modules/dm_mod.ko",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {paths:?}");
    }
    assert_eq!(
        paths.iter().filter(|p| p.ends_with(".ko")).count(),
        out.modules.len()
    );
}
