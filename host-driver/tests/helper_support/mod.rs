//! Shared by the `file-restore-helper` tests: the unprivileged test user,
//! fixtures (run directory, images), a setuid-root copy of the helper, and
//! starting QEMU through the helper as that user.

#![allow(dead_code)] // each test crate uses a different subset

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::have;
use file_restore::helper::{
    Action, DiskRequest, DiskSource, HelperRequest, TransportRequest, PROTOCOL_VERSION,
};
use file_restore::qemu::Accel;

pub const HELPER: &str = env!("CARGO_BIN_EXE_file-restore-helper");
pub const TEST_USER: &str = "fr-test-user";
/// `make build`'s boot files.
pub const BUILD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../build");

#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    pub uid: u32,
    pub gid: u32,
}

/// The unprivileged test user (created if missing), or `None` when not root.
pub fn test_user() -> Option<TestUser> {
    static CREATE: Mutex<()> = Mutex::new(());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (to create {TEST_USER} and a setuid helper)");
        return None;
    }
    if !have("setpriv") {
        eprintln!("skipping: setpriv not found (util-linux)");
        return None;
    }
    let _g = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let lookup = || nix::unistd::User::from_name(TEST_USER).ok().flatten();
    for _ in 0..5 {
        if let Some(u) = lookup() {
            return Some(TestUser {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            });
        }
        // Idempotent: another process may create it at the same time.
        let _ = Command::new("useradd")
            .args(["-M", "-r", "-s", "/usr/sbin/nologin", TEST_USER])
            .status();
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("cannot create the test user {TEST_USER} with useradd");
}

/// `program` as `user` (real and effective ids, the user's groups).
pub fn as_user(user: TestUser, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--init-groups", "--"])
        .arg(program);
    c
}

/// Runs the helper as `user` with `request` on stdin; waits for it.
pub fn run_helper(user: TestUser, helper: &Path, request: &str, args: &[&str]) -> Output {
    let mut child = as_user(user, helper)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn chown(path: &Path, user: TestUser) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
    )
    .unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A test directory the user can enter (0755, root's) with a run directory
/// (the user's, 0700), an image the user owns and one only root can read.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub run_dir: PathBuf,
    pub image: PathBuf,
    pub secret: PathBuf,
}

pub fn fixture(user: TestUser) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("fr-helper-test")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    chmod(dir.path(), 0o755);
    let run_dir = dir.path().join("vm-test");
    std::fs::create_dir(&run_dir).unwrap();
    chown(&run_dir, user);
    chmod(&run_dir, 0o700);
    let image = dir.path().join("user.img");
    make_image(dir.path(), &image);
    chown(&image, user);
    chmod(&image, 0o600);
    let secret = dir.path().join("root-only.img");
    std::fs::write(&secret, vec![0u8; 1 << 20]).unwrap();
    chmod(&secret, 0o600);
    Fixture {
        dir,
        run_dir,
        image,
        secret,
    }
}

/// A small ext4 image holding `hello.txt` (zeros when mkfs.ext4 is missing).
pub fn make_image(dir: &Path, img: &Path) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello from the user's image\n").unwrap();
    let ok = have("mkfs.ext4")
        && Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(img)
            .arg("4M")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        std::fs::write(img, vec![0u8; 4 << 20]).unwrap();
    }
}

pub fn request(fx: &Fixture, kernel: &Path, initramfs: &Path, image: &Path) -> HelperRequest {
    HelperRequest {
        version: PROTOCOL_VERSION,
        action: Action::Start,
        qemu: None,
        kernel: kernel.to_path_buf(),
        initramfs: initramfs.to_path_buf(),
        tools: None,
        ticket: "0123456789abcdef0123456789abcdef".into(),
        disks: vec![DiskRequest {
            source: DiskSource::Path(image.to_path_buf()),
            format: "raw".into(),
            serial: "userdisk".into(),
        }],
        memory_mib: 256,
        cpus: 1,
        accel: Accel::Tcg,
        transport: TransportRequest::VhostUser {
            socket: fx.run_dir.join("vhu.sock"),
        },
        run_dir: fx.run_dir.clone(),
        console_log: fx.run_dir.join("console.log"),
        qmp_socket: fx.run_dir.join("qmp.sock"),
    }
}

/// `make build`'s kernel and initramfs, or `None` (the test skips).
pub fn build_boot_files() -> Option<(PathBuf, PathBuf)> {
    let k = Path::new(BUILD_DIR).join("vmlinux");
    let i = Path::new(BUILD_DIR).join("initramfs.img");
    if k.is_file() && i.is_file() {
        Some((k.canonicalize().unwrap(), i.canonicalize().unwrap()))
    } else {
        eprintln!("skipping: {BUILD_DIR}/{{vmlinux,initramfs.img}} missing; run `make build`");
        None
    }
}

/// A setuid-root copy of the helper in `dir`, with `make build`'s boot files
/// beside it (hard links, root's, 0644), or `None` with the reason printed
/// when `dir`'s file system ignores setuid.
pub fn setuid_helper(dir: &Path) -> Option<PathBuf> {
    let opts = Command::new("findmnt")
        .args(["-no", "OPTIONS", "-T"])
        .arg(dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if opts.split(',').any(|o| o.trim() == "nosuid") {
        eprintln!(
            "skipping the setuid part: {} is mounted nosuid",
            dir.display()
        );
        return None;
    }
    let sbin = dir.join("sbin");
    std::fs::create_dir(&sbin).unwrap();
    chmod(&sbin, 0o755);
    let helper = sbin.join("file-restore-helper");
    copy_executable(Path::new(HELPER), &helper);
    chmod(&helper, 0o4755);
    if let Some((k, i)) = build_boot_files() {
        for (from, name) in [(k, "vmlinux"), (i, "initramfs.img")] {
            let to = sbin.join(name);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).unwrap();
            }
            chmod(&to, 0o644);
        }
    }
    Some(helper)
}

/// Copies an executable with `cp`: no descriptor open for writing ever
/// exists in this (multi-threaded, forking) process, so exec'ing the copy
/// cannot fail with ETXTBSY because another test forked meanwhile.
pub fn copy_executable(from: &Path, to: &Path) {
    let st = Command::new("cp").arg(from).arg(to).status().unwrap();
    assert!(st.success(), "cp {} {}", from.display(), to.display());
    chmod(to, 0o755);
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Processes started for a test, SIGKILLed and reaped when dropped.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `vhost-device-vsock` as `user`, serving `run_dir/vhu.sock` (copied into
/// `dir` so that the user can execute it wherever cargo installed it).
pub fn start_sidecar(user: TestUser, dir: &Path, run_dir: &Path) -> Option<Child> {
    let Some(found) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("vhost-device-vsock"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("skipping: vhost-device-vsock not found");
        return None;
    };
    let copy = dir.join("vhost-device-vsock");
    if !copy.exists() {
        copy_executable(&found, &copy);
    }
    let log = std::fs::File::create(dir.join("sidecar.log")).unwrap();
    let child = as_user(user, &copy)
        .args(["--guest-cid", "3", "--socket"])
        .arg(run_dir.join("vhu.sock"))
        .arg("--uds-path")
        .arg(run_dir.join("vm.vsock"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run_dir.join("vhu.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "sidecar socket did not appear; its log:\n{}",
            std::fs::read_to_string(dir.join("sidecar.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

/// Starts QEMU through `helper` as `user`; returns once the pid runs QEMU.
pub fn start_qemu(user: TestUser, helper: &Path, req: &HelperRequest, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut child = as_user(user, helper)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let json = serde_json::to_vec(req).unwrap();
    child.stdin.take().unwrap().write_all(&json).unwrap();
    child
}

/// Waits until `pid` execs QEMU; panics with the log if it exits first.
pub fn wait_for_qemu(child: &mut Child, log: &Path) {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "helper/QEMU exited ({st}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.to_string_lossy().contains("qemu-system") {
            return;
        }
        assert!(Instant::now() < deadline, "QEMU did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The numbers of a `/proc/<pid>/status` line (`Uid:`, `Gid:`, …).
pub fn status_field(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

pub fn assert_runs_as(pid: u32, user: TestUser) {
    let uid = user.uid.to_string();
    let gid = user.gid.to_string();
    assert_eq!(status_field(pid, "Uid:"), [uid.as_str(); 4]);
    assert_eq!(status_field(pid, "Gid:"), [gid.as_str(); 4]);
    assert_eq!(status_field(pid, "CapEff:"), ["0000000000000000"]);
    assert_eq!(status_field(pid, "CapPrm:"), ["0000000000000000"]);
    assert_eq!(status_field(pid, "NoNewPrivs:"), ["1"]);
}
