//! The `file-restore` CLI against a hostile guest (`fake_guest/hostile.c`): a
//! real VM on the project's kernel whose `/init` answers status correctly and
//! then serves what a guest owned by a crafted filesystem could send — terminal
//! escapes in names and errors, a 20 GiB pax header, a 2 GiB GNU long name, a
//! GNU sparse bomb, path traversal in a tar stream, a stalled body, an endless
//! header line and a flood of guest-initiated connections. Each case must end
//! with a clear error (or clean output) in bounded time and memory, and nothing
//! may be written outside TARGET.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{fake_guest_source, guest_kernel, have, initramfs_with_init};

/// The CLI may use at most this much memory on any hostile stream.
const MAX_RSS_KIB: i64 = 200 * 1024;

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    max_rss_kib: i64,
    took: Duration,
}

struct Guest {
    _dir: tempfile::TempDir,
    disk: PathBuf,
    runtime: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
}

impl Guest {
    fn new() -> Option<Guest> {
        for p in [
            "qemu-system-x86_64",
            "gcc",
            "cpio",
            "vhost-device-vsock",
            "mkfs.ext4",
        ] {
            if !have(p) {
                eprintln!("skipping: {p} not found");
                return None;
            }
        }
        let kernel = guest_kernel()?;
        let dir = tempfile::tempdir().unwrap();
        let initramfs = initramfs_with_init(dir.path(), &fake_guest_source("hostile"), &[]);
        let disk = dir.path().join("disk.raw");
        // A real (empty) filesystem, so the CLI's sanity check lets it through.
        std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&disk)
            .status()
            .unwrap();
        assert!(st.success(), "mkfs.ext4 failed");
        let runtime = dir.path().join("run");
        Some(Guest {
            _dir: dir,
            disk,
            runtime,
            kernel,
            initramfs,
        })
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Runs `file-restore ARGS` (killed after 120 s) and measures it with wait4.
    fn cli(&self, args: &[&str]) -> Run {
        let out_path = self.dir().join("stdout");
        let err_path = self.dir().join("stderr");
        let started = Instant::now();
        let child = Command::new("timeout")
            .args(["-s", "KILL", "120", env!("CARGO_BIN_EXE_file-restore")])
            .args(["--accel", "tcg"])
            .args(args)
            .env("FILE_RESTORE_RUNTIME_DIR", &self.runtime)
            .env("FILE_RESTORE_KERNEL", &self.kernel)
            .env("FILE_RESTORE_INITRAMFS", &self.initramfs)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: plain wait4 on our own child with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
        // Reaped by wait4 already; dropping `child` neither waits nor kills.
        drop(child);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        Run {
            code,
            stdout: std::fs::read(&out_path).unwrap(),
            stderr: std::fs::read_to_string(&err_path).unwrap(),
            max_rss_kib: usage.ru_maxrss,
            took: started.elapsed(),
        }
    }

    fn path(case: &str) -> String {
        format!("/disk0/raw/raw/{case}")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_file-restore"))
            .args(["stop", "--all"])
            .env("FILE_RESTORE_RUNTIME_DIR", &self.runtime)
            .output();
    }
}

fn bounded(what: &str, run: &Run, limit: Duration) {
    eprintln!(
        "{what}: exit {} after {:?}, max RSS {} KiB\n{}",
        run.code, run.took, run.max_rss_kib, run.stderr
    );
    assert_ne!(run.code, -1, "{what}: killed by the 120 s guard");
    assert!(run.took < limit, "{what}: took {:?}", run.took);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "{what}: max RSS {} KiB",
        run.max_rss_kib
    );
}

fn no_escapes(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
        "{what}: raw control characters reached the terminal: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// Every case against one VM (the first CLI call starts it, the rest reuse it).
#[test]
fn cli_survives_a_hostile_guest() {
    let Some(g) = Guest::new() else {
        return;
    };
    let disk = g.disk.to_str().unwrap().to_string();
    let target = g.dir().join("target");
    std::fs::create_dir(&target).unwrap();
    let abs = Path::new("/tmp/file-restore-hostile-abs");
    let _ = std::fs::remove_file(abs);

    // Names, link targets and error texts with terminal escapes: escaped in
    // text output, exact in JSON.
    let run = g.cli(&["list", &disk, &Guest::path("names")]);
    bounded("names", &run, Duration::from_secs(90));
    assert_eq!(run.code, 0, "{}", run.stderr);
    no_escapes("names (text)", &run.stdout);
    no_escapes("names (stderr)", run.stderr.as_bytes());
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("evil\\x1b]0;owned\\x07name"), "{text}");
    assert!(text.contains("\\x1b[31mred\\x1b[0m"), "{text}");
    let run = g.cli(&[
        "list",
        &disk,
        &Guest::path("names"),
        "--output-format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let entries: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let texts: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(texts.contains(&"evil\u{1b}]0;owned\u{7}name"), "{texts:?}");
    assert!(texts.contains(&"dir\u{1b}[2J"), "{texts:?}");

    let run = g.cli(&["list", &disk, &Guest::path("errtext")]);
    bounded("errtext", &run, Duration::from_secs(30));
    assert_eq!(run.code, 1);
    no_escapes("errtext", run.stderr.as_bytes());
    assert!(
        run.stderr.contains("no such \\x1b[2Jthing"),
        "{}",
        run.stderr
    );

    // Oversized extension headers: refused at the header, no 20 GiB read.
    for (case, what) in [("pax", "pax extended"), ("longname", "GNU long name")] {
        let run = g.cli(&[
            "extract",
            &disk,
            &Guest::path(case),
            target.to_str().unwrap(),
        ]);
        bounded(case, &run, Duration::from_secs(30));
        assert_eq!(run.code, 1, "{case}");
        assert!(
            run.stderr.contains(&format!("has a {what} header of")),
            "{case}: {}",
            run.stderr
        );
        assert_eq!(
            run.stderr.matches("header of").count(),
            1,
            "said once: {}",
            run.stderr
        );
    }

    // A GNU sparse entry: refused, nothing written for it.
    let run = g.cli(&[
        "extract",
        &disk,
        &Guest::path("sparse"),
        target.to_str().unwrap(),
    ]);
    bounded("sparse", &run, Duration::from_secs(30));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("GNU sparse tar entries are not supported"),
        "{}",
        run.stderr
    );
    assert!(!target.join("bomb").exists());

    // Path traversal: refused by name, nothing lands outside TARGET.
    let run = g.cli(&[
        "extract",
        &disk,
        &Guest::path("traversal"),
        target.to_str().unwrap(),
    ]);
    bounded("traversal", &run, Duration::from_secs(30));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("refused archive entry"),
        "{}",
        run.stderr
    );
    for outside in [
        g.dir().join("outside"),
        g.dir().join("outside2"),
        abs.to_path_buf(),
    ] {
        assert!(!outside.exists(), "{} was written", outside.display());
    }

    // A body that stops mid-way, and a header line that never ends.
    let run = g.cli(&["list", &disk, &Guest::path("stall"), "--timeout", "10"]);
    bounded("stall", &run, Duration::from_secs(20));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("gave up after 10 s"), "{}", run.stderr);
    let run = g.cli(&["list", &disk, &Guest::path("hugeheader")]);
    bounded("hugeheader", &run, Duration::from_secs(30));
    assert_eq!(run.code, 1);

    // A flood of guest-initiated connections: the host keeps working.
    let run = g.cli(&["list", &disk, &Guest::path("flood")]);
    bounded("flood", &run, Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
    for i in 0..5 {
        let run = g.cli(&["list", &disk, &Guest::path("empty")]);
        bounded(
            &format!("list {i} during the flood"),
            &run,
            Duration::from_secs(30),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let run = g.cli(&["status"]);
    bounded("status during the flood", &run, Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
}
