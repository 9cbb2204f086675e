//! VM map tests: real files, real locks, threads and processes.

use super::*;
use serde::Deserialize;
use std::process::Command;

const CHILD_ENV: &str = "FILE_RESTORE_VM_MAP_TEST_CHILD_DIR";

fn increment(dir: &Path) {
    let mut m = LockedMap::<u64>::lock(dir, Duration::from_secs(60)).unwrap();
    let n = m.get("counter").copied().unwrap_or(0);
    // Widen the window between read and write so lost updates would show.
    std::thread::sleep(Duration::from_millis(10));
    m.insert("counter", n + 1);
    m.save().unwrap();
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn eight_threads_increment_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || increment(&d))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = LockedMap::<u64>::lock(dir.path(), Duration::from_secs(5)).unwrap();
    assert_eq!(m.get("counter"), Some(&8));
    // Atomic writes leave no temporary files behind.
    assert_eq!(dir_names(dir.path()), [MAP_FILE, LOCK_FILE]);
    let mode = fs::metadata(m.path()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Runs only as a child of [`eight_processes_increment_under_the_lock`].
#[test]
fn child_increment() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        increment(Path::new(&dir));
    }
}

#[test]
fn eight_processes_increment_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args(["manager::vm_map::tests::child_increment", "--exact", "-q"])
                .env(CHILD_ENV, dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let m = LockedMap::<u64>::lock(dir.path(), Duration::from_secs(5)).unwrap();
    assert_eq!(m.get("counter"), Some(&8));
    assert_eq!(dir_names(dir.path()), [MAP_FILE, LOCK_FILE]);
}

#[test]
fn lock_timeout_names_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let held = LockedMap::<u64>::lock(dir.path(), Duration::from_secs(1)).unwrap();
    let start = Instant::now();
    let e = LockedMap::<u64>::lock(dir.path(), Duration::from_millis(300)).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(matches!(e, VmMapError::LockTimeout { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains(dir.path().join(LOCK_FILE).to_str().unwrap()),
        "{msg}"
    );
    assert!(msg.contains("another file-restore holds it"), "{msg}");
    drop(held);
    LockedMap::<u64>::lock(dir.path(), Duration::from_millis(300)).unwrap();
}

#[test]
fn corrupt_map_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(MAP_FILE),
        b"{\"version\": 1, \"vms\": {\"a\": 1",
    )
    .unwrap();
    let mut m = LockedMap::<u64>::lock(dir.path(), Duration::from_secs(1)).unwrap();
    assert!(m.is_empty());
    assert_eq!(m.warnings().len(), 1);
    assert!(m.warnings()[0].contains("corrupt"), "{:?}", m.warnings());
    let names = dir_names(dir.path());
    let aside: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("vms.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{names:?}");
    assert_eq!(
        fs::read(dir.path().join(aside[0])).unwrap(),
        b"{\"version\": 1, \"vms\": {\"a\": 1"
    );
    // It keeps working.
    m.insert("b", 2);
    m.save().unwrap();
    drop(m);
    let m = LockedMap::<u64>::lock(dir.path(), Duration::from_secs(1)).unwrap();
    assert_eq!(m.get("b"), Some(&2));
    assert!(m.warnings().is_empty());
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    pid: u32,
    images: Vec<String>,
}

#[test]
fn struct_entries_round_trip_and_bad_entries_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = LockedMap::<Entry>::lock(dir.path(), Duration::from_secs(1)).unwrap();
    m.insert(
        "qemu_-a",
        Entry {
            pid: 7,
            images: vec!["/a".into()],
        },
    );
    m.save().unwrap();
    drop(m);
    let text = fs::read_to_string(dir.path().join(MAP_FILE)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], MAP_VERSION);
    assert_eq!(v["vms"]["qemu_-a"]["pid"], 7);

    // An entry of an older shape is dropped; the good one survives.
    let mut v = v;
    v["vms"]["old"] = serde_json::json!({"pid": "not a number"});
    fs::write(dir.path().join(MAP_FILE), v.to_string()).unwrap();
    let m = LockedMap::<Entry>::lock(dir.path(), Duration::from_secs(1)).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m.get("qemu_-a").unwrap().pid, 7);
    assert!(m.warnings()[0].contains("old"), "{:?}", m.warnings());
    assert_eq!(m.names(), ["qemu_-a"]);
}

#[test]
fn runtime_dir_choice_and_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let over = tmp.path().join("a/b");
    let (d, parents) = choose_runtime_dir(Some(over.clone().into()), None, 0);
    assert_eq!((d.as_path(), parents), (over.as_path(), true));
    let uid = unsafe { libc::getuid() };
    let (d, _) = choose_runtime_dir(None, Some(tmp.path().into()), uid);
    assert_eq!(d, tmp.path().join("file-restore"));
    // Another user's XDG_RUNTIME_DIR is not used.
    let (d, _) = choose_runtime_dir(None, Some(tmp.path().into()), uid + 1);
    assert_ne!(d, tmp.path().join("file-restore"));
    // A relative or missing XDG_RUNTIME_DIR is ignored.
    let (d, _) = choose_runtime_dir(None, Some("relative".into()), 4242);
    assert!(
        d == Path::new("/run/user/4242/file-restore") || d == Path::new("/run/file-restore-4242")
    );

    ensure_private_dir(&over, true, uid).unwrap();
    assert_eq!(fs::metadata(&over).unwrap().mode() & 0o777, 0o700);
    fs::set_permissions(&over, fs::Permissions::from_mode(0o755)).unwrap();
    ensure_private_dir(&over, true, uid).unwrap();
    assert_eq!(fs::metadata(&over).unwrap().mode() & 0o777, 0o700);
    // Owned by someone else, or a symlink: refused.
    let e = ensure_private_dir(&over, true, uid + 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("owned by uid"), "{e}");
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&over, &link).unwrap();
    let e = ensure_private_dir(&link, false, uid)
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink"), "{e}");
}
