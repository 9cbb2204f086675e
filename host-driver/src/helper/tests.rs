//! Unit tests of the helper request: parsing, validation, boot policy,
//! the QEMU command line and the system checks that need no second user.

use super::checks::{check_disk, check_inherited_fd, check_run_dir};
use super::*;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn request() -> HelperRequest {
    HelperRequest {
        version: PROTOCOL_VERSION,
        action: Action::Start,
        qemu: None,
        kernel: "/usr/local/lib/file-restore/vmlinux".into(),
        initramfs: "/usr/local/lib/file-restore/initramfs.img".into(),
        tools: None,
        ticket: "0123456789abcdef0123456789abcdef".into(),
        disks: vec![DiskRequest {
            source: DiskSource::Path("/srv/img/disk.qcow2".into()),
            format: "qcow2".into(),
            serial: "drive-scsi0".into(),
        }],
        memory_mib: 256,
        cpus: 1,
        accel: Accel::Tcg,
        transport: TransportRequest::VhostUser {
            socket: "/run/fr/vm-1/vhu.sock".into(),
        },
        run_dir: "/run/fr/vm-1".into(),
        console_log: "/run/fr/vm-1/console.log".into(),
        qmp_socket: "/run/fr/vm-1/qmp.sock".into(),
    }
}

/// The error message of validating `req`.
fn refusal(req: &HelperRequest) -> String {
    let e = req.validate().unwrap_err();
    assert!(e.is_refusal(), "{e}");
    e.to_string()
}

fn parse(json: &str) -> Result<HelperRequest, HelperError> {
    read_request(json.as_bytes())
}

#[test]
fn request_round_trips_and_validates() {
    let r = request();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""kind":"vhost-user""#), "{json}");
    assert!(
        json.contains(r#""source":{"path":"/srv/img/disk.qcow2"}"#),
        "{json}"
    );
    let back = parse(&json).unwrap();
    assert_eq!(back, r);
    back.validate().unwrap();
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let mut v = serde_json::to_value(request()).unwrap();
    v["extra_qemu_args"] = "-device foo".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("unknown field `extra_qemu_args`"), "{e}");

    let mut v = serde_json::to_value(request()).unwrap();
    v["disks"][0]["cache"] = "unsafe".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("unknown field `cache`"), "{e}");

    let mut v = serde_json::to_value(request()).unwrap();
    v["transport"]["vhostfd"] = 3.into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("unknown field `vhostfd`"), "{e}");

    let mut v = serde_json::to_value(request()).unwrap();
    v["disks"][0]["source"] = serde_json::json!({"url": "http://x/y"});
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("unknown variant `url`"), "{e}");

    let mut v = serde_json::to_value(request()).unwrap();
    v["action"] = "exec".into();
    assert!(parse(&v.to_string()).is_err());

    let mut v = serde_json::to_value(request()).unwrap();
    v.as_object_mut().unwrap().remove("ticket");
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("missing field `ticket`"), "{e}");
}

#[test]
fn oversized_and_garbage_input_are_refused() {
    let big = format!(
        r#"{{"version":1,"pad":"{}"}}"#,
        "x".repeat(MAX_REQUEST_BYTES)
    );
    let e = parse(&big).unwrap_err();
    assert!(matches!(e, HelperError::TooLarge { .. }), "{e}");
    assert!(e.is_refusal());
    assert!(matches!(
        parse("not json").unwrap_err(),
        HelperError::Parse(_)
    ));
    assert!(parse("").is_err());
}

#[test]
fn version_must_match() {
    let mut r = request();
    r.version = 2;
    assert!(refusal(&r).contains("protocol version 2"));
}

#[test]
fn memory_and_cpu_ranges() {
    for (mem, ok) in [(63, false), (64, true), (4096, true), (4097, false)] {
        let mut r = request();
        r.memory_mib = mem;
        assert_eq!(r.validate().is_ok(), ok, "memory {mem}");
    }
    for (cpus, ok) in [(0, false), (1, true), (4, true), (5, false)] {
        let mut r = request();
        r.cpus = cpus;
        assert_eq!(r.validate().is_ok(), ok, "cpus {cpus}");
    }
    let mut r = request();
    r.cpus = 64;
    assert!(refusal(&r).contains("cpus: 64 is outside 1..=4"));
}

#[test]
fn formats_come_from_the_allow_list() {
    for f in ALLOWED_FORMATS {
        let mut r = request();
        r.disks[0].format = f.to_string();
        r.validate().unwrap();
    }
    for f in ["raw,file.driver=ssh", "cloop", "RAW", "", "qcow2 "] {
        let mut r = request();
        r.disks[0].format = f.into();
        let e = refusal(&r);
        assert!(e.contains("disks[0].format") && e.contains("qcow2"), "{e}");
    }
}

#[test]
fn serials_are_checked_and_unique() {
    assert!(is_valid_serial("drive-scsi0"));
    assert!(is_valid_serial("a_b.c-D9"));
    assert!(is_valid_serial(&"x".repeat(20)));
    for bad in ["", "a,b", "a b", "a=b", "é", &"x".repeat(21)] {
        assert!(!is_valid_serial(bad), "{bad:?}");
        let mut r = request();
        r.disks[0].serial = bad.to_string();
        assert!(refusal(&r).contains("disks[0].serial"));
    }
    let mut r = request();
    r.disks.push(r.disks[0].clone());
    assert!(refusal(&r).contains("used by two disks"));
}

#[test]
fn disk_count_limits() {
    let mut r = request();
    r.disks.clear();
    assert!(refusal(&r).contains("0 disks given"));
    let mut r = request();
    r.disks = (0..=MAX_DISKS)
        .map(|i| DiskRequest {
            source: DiskSource::Path(format!("/img/{i}.raw").into()),
            format: "raw".into(),
            serial: format!("d{i}"),
        })
        .collect();
    assert!(refusal(&r).contains("disks"));
    r.disks.pop();
    r.validate().unwrap();
}

#[test]
fn paths_must_be_plain_and_absolute() {
    assert!(is_plain_absolute(Path::new("/a/b")));
    for bad in [
        "a/b", "/", "/a/../b", "/a/./b", "/a//b", "/a/b/", "json:{}", "/a\0b",
    ] {
        assert!(!is_plain_absolute(Path::new(bad)), "{bad:?}");
    }
    let mut r = request();
    r.kernel = "vmlinux".into();
    assert!(refusal(&r).contains("kernel"));
    let mut r = request();
    r.initramfs = "/usr/local/lib/file-restore/../../../tmp/initramfs.img".into();
    assert!(refusal(&r).contains("initramfs"));
    let mut r = request();
    r.qemu = Some("qemu-system-x86_64".into());
    assert!(refusal(&r).contains("qemu"));
    let mut r = request();
    r.disks[0].source = DiskSource::Path("json:{\"driver\":\"file\"}".into());
    assert!(refusal(&r).contains("disks[0].source.path"));
    let mut r = request();
    r.disks[0].source = DiskSource::Path("nbd://evil/x".into());
    assert!(refusal(&r).contains("disks[0].source.path"));
}

#[test]
fn logs_and_sockets_live_directly_in_the_run_dir() {
    let mut r = request();
    r.console_log = "/tmp/console.log".into();
    assert!(refusal(&r).contains("console_log"));
    let mut r = request();
    r.qmp_socket = "/run/fr/vm-1/sub/qmp.sock".into();
    assert!(refusal(&r).contains("qmp_socket"));
    let mut r = request();
    r.transport = TransportRequest::VhostUser {
        socket: "/run/other/vhu.sock".into(),
    };
    assert!(refusal(&r).contains("transport.socket"));
    let mut r = request();
    r.qmp_socket = r.console_log.clone();
    assert!(refusal(&r).contains("used twice"));
}

#[test]
fn descriptors_tickets_cids_and_uris() {
    for fd in [0, 1, 2, -1] {
        let mut r = request();
        r.disks[0].source = DiskSource::Fd(fd);
        assert!(refusal(&r).contains("source.fd"), "fd {fd}");
    }
    let mut r = request();
    r.disks[0].source = DiskSource::Fd(7);
    r.validate().unwrap();
    assert_eq!(r.inherited_fds(), [7]);

    for t in ["short", "0123456789abcdef,x", &"a".repeat(129)] {
        let mut r = request();
        r.ticket = t.to_string();
        assert!(refusal(&r).contains("ticket"), "{t:?}");
    }

    for (cid, ok) in [(0, false), (2, false), (3, true), (u32::MAX, false)] {
        let mut r = request();
        r.transport = TransportRequest::Kernel { cid };
        assert_eq!(r.validate().is_ok(), ok, "cid {cid}");
    }

    let mut r = request();
    r.disks[0].source = DiskSource::Nbd("nbd://backup.example:10809/disk0".into());
    r.disks[0].format = "raw".into();
    r.validate().unwrap();
    for bad in ["http://x/y", "nbd:/x", "/dev/sda"] {
        r.disks[0].source = DiskSource::Nbd(bad.into());
        assert!(refusal(&r).contains("source.nbd"), "{bad}");
    }
}

/// A kernel vsock CID is accepted only from the caller's own block; other
/// transports need none.
#[test]
fn kernel_cids_only_from_the_callers_block() {
    let mut r = request();
    r.check_cid_for(1000).unwrap();
    r.check_cid_for(u32::MAX).unwrap();
    for (uid, cid, ok) in [
        (1000, 20096, true),
        (1000, 20111, true),
        (1000, 20112, false),
        (1000, 20095, false),
        (1001, 20096, false),
        (0, 4096, true),
        (0, 3, false),
    ] {
        r.transport = TransportRequest::Kernel { cid };
        r.validate().unwrap();
        match r.check_cid_for(uid) {
            Ok(()) => assert!(ok, "uid {uid} cid {cid} accepted"),
            Err(e) => {
                assert!(!ok && e.is_refusal(), "uid {uid} cid {cid}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("CID {cid} is not in uid {uid}'s block")),
                    "{msg}"
                );
            }
        }
    }
    r.transport = TransportRequest::Kernel { cid: 4096 };
    let e = r.check_cid_for(cids::MAX_UID + 1).unwrap_err();
    assert!(e.is_refusal());
    assert!(
        e.to_string().contains("has no kernel vsock CID block"),
        "{e}"
    );
}

#[test]
fn command_line_comes_from_vm_config() {
    let mut r = request();
    r.disks = vec![
        DiskRequest {
            source: DiskSource::Path("/img/a,format=raw,file.driver=ssh".into()),
            format: "qcow2".into(),
            serial: "a".into(),
        },
        DiskRequest {
            source: DiskSource::Fd(9),
            format: "raw".into(),
            serial: "b".into(),
        },
        DiskRequest {
            source: DiskSource::Nbd("nbd://h/e".into()),
            format: "raw".into(),
            serial: "c".into(),
        },
    ];
    r.transport = TransportRequest::Kernel { cid: 77 };
    r.validate().unwrap();
    let args: Vec<String> = r
        .vm_config("/dev/fd/5".into(), Some(6))
        .to_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let pair = |o: &str, v: &str| args.windows(2).any(|w| w[0] == o && w[1] == v);
    assert!(pair(
        "-drive",
        "file=/img/a,,format=raw,,file.driver=ssh,format=qcow2,if=none,id=drive0,read-only=on"
    ));
    assert!(pair(
        "-drive",
        "file=/dev/fd/9,format=raw,if=none,id=drive1,read-only=on"
    ));
    assert!(pair(
        "-drive",
        "file=nbd://h/e,format=raw,if=none,id=drive2,read-only=on"
    ));
    assert!(pair("-device", "vhost-vsock-device,guest-cid=77,vhostfd=6"));
    assert!(pair("-initrd", "/dev/fd/5"));
    assert!(pair("-kernel", "/usr/local/lib/file-restore/vmlinux"));
    assert!(
        !args.iter().any(|a| a.contains(&r.ticket)),
        "ticket on argv"
    );
}

#[test]
fn unprivileged_policy_accepts_any_boot_files() {
    let p = BootPolicy::new(false, None);
    let mut r = request();
    r.kernel = "/home/u/my-kernel".into();
    r.initramfs = "/home/u/my.cpio".into();
    r.qemu = Some("/opt/qemu/bin/qemu-system-x86_64".into());
    p.check_boot_files(&r).unwrap();
    assert_eq!(
        p.qemu_binary(&r).unwrap(),
        Path::new("/opt/qemu/bin/qemu-system-x86_64")
    );
}

#[test]
fn privileged_policy_accepts_only_installed_qemu() {
    let p = BootPolicy::new(true, None);
    let mut r = request();
    r.qemu = Some("/usr/bin/qemu-system-x86_64".into());
    assert_eq!(p.qemu_binary(&r).unwrap(), Path::new(QEMU_PATHS[0]));
    r.qemu = Some("/tmp/qemu-system-x86_64".into());
    let e = p.qemu_binary(&r).unwrap_err();
    assert!(e.is_refusal());
    assert!(e.to_string().contains("/tmp/qemu-system-x86_64"), "{e}");
    r.qemu = None;
    if Path::new(QEMU_PATHS[0]).exists() {
        assert_eq!(p.qemu_binary(&r).unwrap(), Path::new(QEMU_PATHS[0]));
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn privileged_policy_accepts_only_root_owned_files_in_trusted_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(HELPER_NAME);
    let p = BootPolicy::new(true, Some(&exe));
    assert!(p.trusted_dirs.iter().any(|d| d == dir.path()));
    let mut r = request();
    r.kernel = dir.path().join("vmlinux");
    r.initramfs = dir.path().join("initramfs.img");
    std::fs::write(&r.kernel, b"k").unwrap();
    std::fs::write(&r.initramfs, b"i").unwrap();
    // A forged kernel elsewhere, or under another name, is refused.
    let mut forged = r.clone();
    forged.kernel = "/tmp/evil/vmlinux".into();
    let e = p.check_boot_files(&forged).unwrap_err().to_string();
    assert!(e.contains("kernel '/tmp/evil/vmlinux'"), "{e}");
    assert!(
        e.contains(&dir.path().join("vmlinux").display().to_string()),
        "{e}"
    );
    let mut forged = r.clone();
    forged.kernel = dir.path().join("bzImage");
    assert!(p.check_boot_files(&forged).is_err());
    if !is_root() {
        eprintln!("skipping the root-owned half: not running as root");
        return;
    }
    p.check_boot_files(&r).unwrap();
    // Writable by others: refused.
    std::fs::set_permissions(&r.kernel, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = p.check_boot_files(&r).unwrap_err().to_string();
    assert!(e.contains("writable only by root"), "{e}");
    std::fs::set_permissions(&r.kernel, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Not root's: refused.
    nix::unistd::chown(&r.initramfs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let e = p.check_boot_files(&r).unwrap_err().to_string();
    assert!(e.contains("initramfs"), "{e}");
}

#[test]
fn inherited_descriptors_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.raw");
    std::fs::write(&path, b"data").unwrap();
    let ro = std::fs::File::open(&path).unwrap();
    check_inherited_fd(ro.as_raw_fd()).unwrap();
    let wo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let e = check_inherited_fd(wo.as_raw_fd()).unwrap_err().to_string();
    assert!(e.contains("writing only"), "{e}");
    let (r, _w) = nix::unistd::pipe().unwrap();
    let e = check_inherited_fd(r.as_raw_fd()).unwrap_err().to_string();
    assert!(e.contains("neither a regular file"), "{e}");
    let e = check_inherited_fd(987_654).unwrap_err().to_string();
    assert!(
        e.contains("/dev/fd/987654") && e.contains("not an open descriptor"),
        "{e}"
    );
}

#[test]
fn run_dir_must_be_private_and_owned() {
    let base = tempfile::tempdir().unwrap();
    let run = base.path().join("vm-1");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let uid = std::fs::metadata(&run).unwrap().uid();
    let mut r = request();
    r.run_dir = run.clone();
    check_run_dir(&r, uid).unwrap();
    let e = check_run_dir(&r, uid + 1).unwrap_err().to_string();
    assert!(e.contains("not to the invoking user"), "{e}");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = check_run_dir(&r, uid).unwrap_err().to_string();
    assert!(e.contains("writable by group or others"), "{e}");
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&run, &link).unwrap();
    r.run_dir = link;
    let e = check_run_dir(&r, uid).unwrap_err().to_string();
    assert!(e.contains("symlinks are refused"), "{e}");
    r.run_dir = base.path().join("missing");
    assert!(check_run_dir(&r, uid).is_err());
}

#[test]
fn disks_are_checked_by_opening_them() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.raw");
    std::fs::write(&img, b"x").unwrap();
    let disk = |p: &Path| DiskRequest {
        source: DiskSource::Path(p.to_path_buf()),
        format: "raw".into(),
        serial: "d".into(),
    };
    check_disk(&disk(&img), 0).unwrap();
    let missing = dir.path().join("missing.raw");
    let e = check_disk(&disk(&missing), 1000).unwrap_err();
    assert!(e.is_refusal());
    let e = e.to_string();
    assert!(e.contains("missing.raw") && e.contains("uid 1000"), "{e}");
    let e = check_disk(&disk(dir.path()), 0).unwrap_err().to_string();
    assert!(e.contains("neither a regular file"), "{e}");
    let nbd = DiskRequest {
        source: DiskSource::Nbd("nbd://h/e".into()),
        format: "raw".into(),
        serial: "n".into(),
    };
    check_disk(&nbd, 0).unwrap();
}

#[test]
fn setuid_root_detection() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(HELPER_NAME);
    std::fs::write(&f, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!helper_is_setuid_root(&f));
    if is_root() {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(helper_is_setuid_root(&f));
    }
    assert!(!helper_is_setuid_root(&dir.path().join("missing")));
}

#[test]
fn refusals_and_failures_are_told_apart() {
    assert!(HelperError::TooLarge { limit: 1 }.is_refusal());
    assert!(!HelperError::VhostVsock(io::Error::from(io::ErrorKind::NotFound)).is_refusal());
    assert!(!HelperError::Privileges {
        uid: 1,
        gid: 1,
        detail: "x".into()
    }
    .is_refusal());
}
