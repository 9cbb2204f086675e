//! Helpers shared by the real-VM tests.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Pids of live (non-zombie) processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(&needle)
        })
        .collect()
}

/// The project's guest kernel (`build/vmlinux`, from `make build`): every driver built
/// in, so a stand-in `/init` needs no modules. `None` (the test skips, saying so) when it
/// has not been built, except under CI, where a missing kernel is a failure.
pub fn guest_kernel() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/vmlinux");
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: run `make build`",
        path.display()
    );
    eprintln!("skipping: {} not built (make build)", path.display());
    None
}

/// The C source of a stand-in guest (`fake_guest/<name>.c`) with the ticket
/// proof (`fake_guest/proof.c`) in front of it.
pub fn fake_guest_source(name: &str) -> String {
    let own = match name {
        "init" => include_str!("../fake_guest/init.c"),
        "hostile" => include_str!("../fake_guest/hostile.c"),
        other => panic!("no stand-in guest {other}"),
    };
    format!("{}\n{own}", include_str!("../fake_guest/proof.c"))
}

/// Builds an initramfs whose `/init` is `c_source` compiled statically,
/// plus `extra` files (guest path relative to `/`, host source).
pub fn initramfs_with_init(dir: &Path, c_source: &str, extra: &[(&str, &Path)]) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let src = dir.join("init.c");
    std::fs::write(&src, c_source).unwrap();
    let st = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("init"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "gcc failed");
    let mut names = vec!["init".to_string()];
    for (guest, host) in extra {
        let to = root.join(guest);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host, &to).unwrap();
        let mut parent = Path::new(guest).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            names.push(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
        names.push(guest.to_string());
    }
    names.sort();
    names.dedup();
    std::fs::write(dir.join("cpio.list"), names.join("\n") + "\n").unwrap();
    let img = dir.join("initramfs.img");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && cpio -o -H newc --quiet < '{}' > '{}'",
            root.display(),
            dir.join("cpio.list").display(),
            img.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "cpio failed");
    img
}

/// Kills a test VM's QEMU and sidecar when dropped, so that a failed
/// assertion does not leave a VM running. Only pids whose command line still
/// names the VM's run directory are killed.
pub struct KillOnDrop(pub file_restore::vm::RunningVm);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let vm = &self.0;
        let run_dir = vm.run_dir.to_string_lossy().into_owned();
        for pid in std::iter::once(vm.pid).chain(vm.sidecar_pid) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&run_dir) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}
