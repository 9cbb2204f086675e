//! What the dev-mode daemon tests share: loop devices, the daemon binary
//! started in dev mode on a Unix socket, and curl as the HTTP client.

#![allow(dead_code)] // each test file uses its own subset

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const TICKET: &str = "dev-test-ticket-0123456789";

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A read-only loop device, detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn new(image: &Path) -> Loop {
        let dev = run(Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image));
        Loop(dev.trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A running dev-mode daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub sock: PathBuf,
    _loops: Vec<Loop>,
    pub log: PathBuf,
    mount_dir: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, buckets: Vec<(&str, Loop)>, idle: u64) -> Daemon {
        let sock = dir.join("api.sock");
        let ticket = dir.join("ticket");
        fs::write(&ticket, TICKET).unwrap();
        let log = dir.join("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_restore-daemon"));
        cmd.arg("dev")
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .arg("--ticket-file")
            .arg(&ticket)
            .arg("--idle-timeout")
            .arg(idle.to_string())
            .arg("--mount-dir")
            .arg(dir.join("mnt"))
            .stderr(fs::File::create(&log).unwrap());
        for (spec, l) in &buckets {
            cmd.arg("--bucket").arg(format!("{spec}={}", l.0));
        }
        let child = cmd.spawn().expect("start daemon");
        let d = Daemon {
            child,
            sock,
            _loops: buckets.into_iter().map(|(_, l)| l).collect(),
            log,
            mount_dir: dir.join("mnt"),
        };
        let t = Instant::now();
        while !d.sock.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// GET with the ticket: (status code, body).
    pub fn get(&self, query: &str, extra: &[&str]) -> (u16, Vec<u8>) {
        self.curl(
            query,
            &[
                &["-H", &format!("Authorization: FileRestoreTicket {TICKET}")],
                extra,
            ]
            .concat(),
        )
    }

    pub fn curl(&self, query: &str, args: &[&str]) -> (u16, Vec<u8>) {
        let out = Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(&self.sock)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("http://localhost{query}"))
            .output()
            .expect("curl");
        let mut body = out.stdout;
        let nl = body.iter().rposition(|&c| c == b'\n').expect("status line");
        let code = String::from_utf8_lossy(&body[nl + 1..])
            .parse()
            .expect("code");
        body.truncate(nl);
        (code, body)
    }

    pub fn list(&self, path: &[u8]) -> (u16, serde_json::Value) {
        let (code, body) = self.get(&format!("/api/list?path={}", q(path)), &[]);
        (
            code,
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("bad JSON {e}: {}", String::from_utf8_lossy(&body))),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The killed daemon never unmounts what it mounted: without this,
        // every test run left its mounts behind and its loop devices busy.
        unmount_below(&self.mount_dir);
        if std::thread::panicking() {
            eprintln!(
                "daemon log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

pub fn q(path: &[u8]) -> String {
    file_restore_wire::query_escape(&STANDARD.encode(path))
}

pub fn error_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
    v["error"].as_str().expect("error field").to_owned()
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // Field 5 is the mount point (test paths hold no characters that
    // mountinfo escapes).
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A 64 MiB ext4 image of `src`.
pub fn ext4_image(dir: &Path, src: &Path) -> PathBuf {
    let img = dir.join("ext4.img");
    run(Command::new("truncate").args(["-s", "64M"]).arg(&img));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(&img));
    img
}
